"""Several trained networks as one Keras model: the mean of their next-item probabilities.

The zoo's ensembles (:func:`seqrec.core.scoring.ensemble_scores`) score users with each member in turn; this builds
the same mean as one model, whose output is the log of the members' mean probability. Its softmax is that mean, it
ranks as the mean does, and it saves, loads, evaluates and serves like any single network (one ``.keras`` file, the
same inputs), so an ensemble that wins on validation can be logged, registered and deployed as it is. When a member
reads the stars (``rating_input``), the ensemble takes them too, as that member does, and passes them on only to
the members that read them.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqrec.core.model import keras, n_items_of, reads_ratings
from seqrec.core.models.common import LogMeanProbability


def ensemble_model(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model over the item histories that scores as the mean of ``members``' probabilities.

    The members must score the same catalogue (item index for item index); another catalogue is refused
    (ValueError), as is an empty list. Each member keeps its own window (``max_len``), weights and, for one that
    reads the stars, its ``rating_min_history``; none is copied."""
    if not members:
        raise ValueError("an ensemble needs at least one model")
    sizes = sorted({n_items_of(member) for member in members})
    if len(sizes) != 1:
        raise ValueError(f"an ensemble's models must share one catalogue, got {sizes} items")
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    inputs = items
    if any(reads_ratings(member) for member in members):
        inputs = {"items": items, "ratings": keras.Input(shape=(None,), dtype="int32", name="ratings")}
    # each member under a name of its own: a functional model's layers need unique names, and seeds share theirs
    renamed = [keras.Model(member.input, member.output, name=f"member_{index}") for index, member in enumerate(members)]
    outputs = [member(inputs if reads_ratings(member) else items) for member in renamed]
    return keras.Model(inputs, LogMeanProbability(name="mean_probability")(outputs), name=name)
