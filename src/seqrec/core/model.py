"""The network of a run: one of the sequence models of :mod:`seqrec.core.models`, and what the rest of the
project needs from it, whichever it is (the last-step scoring model, its inputs, its catalogue size).

Inputs are ``item + 1`` (0 is padding and is masked), left-padded so the last time step is the
user's latest item. The training model of the ``all_steps`` regime returns logits at every step;
the saved *scoring* model returns only the last step's logits, which is what recommendation needs.
Both share the same weights (:func:`scoring_model`). The loss is :class:`NextItemsCrossentropy` (full softmax)
or one of the sampled ranking losses of :mod:`seqrec.core.losses`.

With ``rating_input`` the net also reads the rating the user gave each item of the history: a second
input ``ratings`` of :data:`seqrec.core.models.common.RATING_TOKENS` ids (0 = unknown or padding, 1..5 stars),
embedded and added to the item embedding. Such a model takes ``{"items": ..., "ratings": ...}`` (see
:func:`model_inputs`). With ``rating_min_history`` it scores a history of fewer items as if no star were known
(:class:`seqrec.core.models.common.ShortHistoryStars`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from seqrec.core.config import check_tied_output
from seqrec.core.losses import step_targets
from seqrec.core.models import cnn, mingru, pooling, rnn, sasrec
from seqrec.core.models.common import EXCLUDED_LOGIT, ItemBias, NetSpec, keras, seen_items_excluded

CELLS = rnn.CELLS
BUILDERS = {
    "rnn": rnn.build, "sasrec": sasrec.build, "cnn": cnn.build, "pooling": pooling.build, "mingru": mingru.build}
MODELS = tuple(BUILDERS)


def build_model(n_items: int, hidden: int = 256, embedding: int = 128, dropout: float = 0.2,
                cell: str = "gru", projection: int = 0, return_sequences: bool = False,
                rating_input: bool = False, rating_min_history: int = 0, model: str = "rnn", max_len: int = 50,
                blocks: int = 2, heads: int = 1, skip_padding: bool = False, tied_output: bool = False,
                exclude_seen: bool = False, item_dropout: float = 0.0) -> keras.Model:
    """Sequence model ``model`` (see :data:`MODELS`); ``n_items`` output logits (the catalogue), ``n_items + 1``
    input ids.

    ``projection > 0`` inserts a linear bottleneck before the logits: the softmax layer dominates
    the cost (hidden x n_items per step), so a bottleneck buys a wider recurrent layer for free.
    ``rating_input`` adds the ``ratings`` input (see the module docstring); padding stays masked by the items.
    ``rating_min_history`` (with ``rating_input``): when scoring, a history of fewer items is read with every star
    unknown; training reads every star it is given.
    ``max_len``, ``blocks`` and ``heads`` shape the self-attention and convolution models (the RNN reads any
    length).
    ``skip_padding`` (with ``return_sequences``) computes the logits of the steps holding an item only: the
    output is then (such steps) x ``n_items``, and the targets are gathered to match
    (:func:`seqrec.core.losses.step_targets`, which needs padded cells' targets at
    :data:`seqrec.core.losses.PADDED_TARGET`, as the ``all_steps`` windows have them).
    ``tied_output`` scores with the item embedding itself plus a bias per item (SASRec's shared item table): the
    network's output width must then be ``embedding`` (:func:`seqrec.core.config.check_tied_output`).
    ``exclude_seen`` (with ``return_sequences``) adds the ``seen`` input and leaves the items already read out of
    the logits (:class:`seqrec.core.models.common.SeenItems`); a scoring model needs no such input, since
    evaluation drops them from the ranking.
    ``item_dropout``: in training, that share of the history's items is read as an empty vector (a scoring model
    reads every item, so it is built without it).
    """
    if model not in BUILDERS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if tied_output:
        check_tied_output(model, hidden, embedding, projection)
    if rating_min_history and not rating_input:
        raise ValueError("rating_min_history is for models with rating_input only")
    net = NetSpec(model=model, hidden=hidden, embedding=embedding, dropout=dropout, cell=cell, projection=projection,
                  rating_input=rating_input, rating_min_history=rating_min_history, max_len=max_len, blocks=blocks,
                  heads=heads, skip_padding=skip_padding, tied_output=tied_output, item_dropout=item_dropout)
    network = BUILDERS[model](n_items, net, return_sequences)
    return seen_items_excluded(network) if exclude_seen and return_sequences else network


def model_config(model: keras.Model) -> dict:
    """Hyper-parameters of a built model, read back from its layers (for rebuilding and checks)."""
    layers = {layer.name: layer for layer in model.layers}
    kind = model.name.removesuffix("_steps")
    config = {
        "model": "rnn" if kind == "rnn_cce" else kind,
        "n_items": layers["logits"].units,
        "embedding": layers["item_embedding"].output_dim,
        "dropout": layers["dropout"].rate,
        "projection": layers["projection"].units if "projection" in layers else 0,
        "rating_input": reads_ratings(model),
        "rating_min_history": layers["short_history_stars"].min_items if "short_history_stars" in layers else 0,
        "tied_output": isinstance(layers["logits"], ItemBias),
    }
    if "rnn" in layers:
        rnn_layer = layers["rnn"]
        config.update(hidden=rnn_layer.units, cell="lstm" if isinstance(rnn_layer, keras.layers.LSTM) else "gru")
    if "latest_items" in layers:
        config["max_len"] = layers["latest_items"].length
    config["blocks"] = sum(bool(re.fullmatch(r"(attention|convolution|recurrence)_\d+", name)) for name in layers)
    if "attention_0" in layers:
        config.update(hidden=layers["feed_forward_in_0"].units, heads=layers["attention_0"].num_heads)
    if "recurrence_0" in layers:
        config["hidden"] = layers["recurrence_0"].units
    if "convolution_0" in layers:
        config["hidden"] = layers["convolution_0"].filters
    return config


def reads_ratings(model: keras.Model) -> bool:
    """Whether ``model`` takes the ratings of the history as a second input (a network with ``rating_input``, or
    an ensemble with such a member): read from its inputs, so that it holds for models nested in others."""
    return any(tensor.name == "ratings" for tensor in model.inputs)


def model_inputs(model: keras.Model, items: np.ndarray,
                 ratings: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """What ``model`` is called with: the ``item + 1`` matrix, plus the rating tokens (same shape; None:
    all unknown) if it reads them."""
    if not reads_ratings(model):
        return items
    return {"items": items, "ratings": np.zeros_like(items) if ratings is None else ratings}


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``name`` (``float32``, ``mixed_float16``...) for the layers built inside."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def scoring_model(model: keras.Model) -> keras.Model:
    """A last-step model with the same weights, in float32 whatever the training precision: what is saved,
    evaluated and served."""
    if not model.name.endswith("_steps") and model.dtype_policy.name == "float32":  # already last-step logits
        return model
    with dtype_policy("float32"):
        scorer = build_model(**model_config(model), return_sequences=False)
    scorer.set_weights(model.get_weights())
    return scorer


def n_items_of(model: keras.Model) -> int:
    """Catalogue size a saved model was built for (its number of output logits)."""
    return int(model.output_shape[-1])
@keras.saving.register_keras_serializable(package="seqrec")
class NextItemsCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy against the next ``lookahead`` items, weighted ``decay ** (j - 1)``.

    With ``lookahead=1`` this is exactly the paper's next-item CCE. Longer lookaheads soften the
    target where the order is arbitrary (MovieLens users rate bursts of movies in the same second).
    Targets below 0 (-1 past the end of a sequence, :data:`seqrec.core.losses.PADDED_TARGET` in padding) carry
    no weight. Against a model that skips its padded steps the targets are gathered to its steps
    (:func:`seqrec.core.losses.step_targets`). ``label_smoothing`` moves that share of a step's target weight to
    the uniform distribution over the items its softmax ranks (those not set to -1e9 by ``exclude_seen``), so a
    catalogue of near-ties is not pushed to one certain answer.
    """

    def __init__(self, decay: float = 0.5, label_smoothing: float = 0.0, name: str = "next_items_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.decay, self.label_smoothing = decay, label_smoothing

    def call(self, targets, logits):
        ops = keras.ops
        targets = step_targets(ops.cast(targets, "int32"), logits)
        if targets.shape[-1] == 1 and not self.label_smoothing:
            # one target a step (the default): the backend's fused softmax cross-entropy, which keeps no log-softmax
            # of the whole catalogue for its gradient: half the time of the general form below, the same loss
            target = targets[..., 0]
            crossentropy = ops.sparse_categorical_crossentropy(ops.maximum(target, 0), logits, from_logits=True)
            return crossentropy * ops.cast(target >= 0, crossentropy.dtype)
        steps = ops.arange(ops.shape(targets)[-1], dtype="float32")
        weights = ops.power(self.decay, steps) * ops.cast(targets >= 0, "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        picked = ops.take_along_axis(log_probs, ops.maximum(targets, 0), axis=-1)
        loss = -ops.sum(weights * picked, axis=-1) / ops.maximum(ops.sum(weights, axis=-1), 1e-9)
        if not self.label_smoothing:
            return loss
        ranked = ops.cast(logits > EXCLUDED_LOGIT / 2, "float32")  # the items this step's softmax ranks
        uniform = -ops.sum(ranked * log_probs, axis=-1) / ops.maximum(ops.sum(ranked, axis=-1), 1.0)
        has_target = ops.cast(ops.sum(weights, axis=-1) > 0, "float32")
        return (1.0 - self.label_smoothing) * loss + self.label_smoothing * has_target * uniform

    def get_config(self) -> dict:
        return {**super().get_config(), "decay": self.decay, "label_smoothing": self.label_smoothing}
