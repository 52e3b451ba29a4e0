"""Several recommenders as one Keras model: the mean of trained networks' next-item probabilities, or a network
blended with SLIST.

The zoo's ensembles (:func:`seqrec.core.scoring.ensemble_scores`) score users with each member in turn; this builds
the same mean as one model, whose output is the log of the members' mean probability. Its softmax is that mean, it
ranks as the mean does, and it saves, loads, evaluates and serves like any single network (one ``.keras`` file, the
same inputs), so an ensemble that wins on validation can be logged, registered and deployed as it is. When a member
reads the stars (``rating_input``), the ensemble takes them too, as that member does, and passes them on only to
the members that read them.

A network and SLIST (:class:`seqrec.core.baselines.SLIST`, a linear model of the transitions fitted in seconds) err
on different users: ``(1 - b) x`` the network's softmax ``+ b x`` SLIST's distribution lifted a 3-epoch GRU by 2.7
points of validation sps@10 (docs/models.md). :func:`slist_blended` makes that blend one model too, carrying SLIST's
items x items weights, so that training (``slist_weight``) validates, keeps, saves and serves the blend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqrec.core.baselines import SLIST
from seqrec.core.model import keras, n_items_of, reads_ratings
from seqrec.core.models.common import LogMeanProbability, SlistBlend


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


def slist_blended(network: keras.Model, linear: SLIST, share: float) -> keras.Model:
    """A scoring model whose output is ``log((1 - share) p + share q)``: ``p`` the network's softmax and ``q`` the
    fitted ``linear`` SLIST's positive outputs, both over the items the history has not read (:class:`SlistBlend`).
    Its softmax is the blend; it saves, loads, evaluates and serves as one ``.keras`` file, as a network does.
    The network is not copied: the blend follows its weights."""
    if reads_ratings(network):
        raise ValueError("a blend with SLIST reads the items only: its network must too (rating_input=false)")
    if linear.weights is None or linear.alpha:
        raise ValueError("a blend with SLIST needs a fitted SLIST without the order-blind part (alpha=0)")
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    blend = SlistBlend(n_items_of(network), linear.window, linear.decay, share, name="slist_blend")
    output = blend([items, network(items)])
    blend.set_weights([linear.weights.astype("float32")])
    return keras.Model(items, output, name=f"{network.name}_slist")


def blended_distribution(probabilities: np.ndarray, outputs: np.ndarray, read: np.ndarray,
                         share: float) -> np.ndarray:
    """What :func:`slist_blended` scores, from scores at hand (users x items each): ``(1 - share) x`` the network's
    ``probabilities`` ``+ share x`` SLIST's positive ``outputs``, each renormalised over the items not ``read``; a user
    SLIST gives nothing gets the network's distribution alone. Read items get 0."""
    network = np.where(read, 0.0, probabilities)
    network /= np.maximum(network.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    linear = np.where(read, 0.0, np.maximum(outputs, 0.0))
    total = linear.sum(axis=1, keepdims=True)
    blend = (1.0 - share) * network + share * linear / np.maximum(total, np.finfo(np.float64).tiny)
    return np.where(total > 0, blend, network)


def network_of(model: keras.Model) -> keras.Model:
    """The network inside a blend with SLIST (:func:`slist_blended`); any other model as it is."""
    if not any(isinstance(layer, SlistBlend) for layer in model.layers):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
