"""RNN-CCE: item embedding -> GRU/LSTM -> dropout -> logits over all items, trained with softmax CCE.

Inputs are ``item + 1`` (0 is padding and is masked), left-padded so the last time step is the
user's latest item. The training model of the ``all_steps`` regime returns logits at every step;
the saved *scoring* model returns only the last step's logits, which is what recommendation needs.
Both share the same weights (:func:`scoring_model`). The loss is :class:`NextItemsCrossentropy`.

With ``rating_input`` the net also reads the rating the user gave each item of the history: a second
input ``ratings`` of :data:`RATING_TOKENS` ids (0 = unknown or padding, 1..5 stars), embedded and added to
the item embedding. Such a model takes ``{"items": ..., "ratings": ...}`` (see :func:`model_inputs`).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}
RATING_TOKENS = 6  # 0: unknown (or padding), 1..5: stars


def build_model(n_items: int, hidden: int = 256, embedding: int = 128, dropout: float = 0.2,
                cell: str = "gru", projection: int = 0, return_sequences: bool = False,
                rating_input: bool = False) -> keras.Model:
    """The RNN-CCE network; ``n_items`` output logits (the catalogue), ``n_items + 1`` input ids.

    ``projection > 0`` inserts a linear bottleneck before the logits: the softmax layer dominates
    the cost (hidden x n_items per step), so a bottleneck buys a wider recurrent layer for free.
    ``rating_input`` adds the ``ratings`` input (see the module docstring); padding stays masked by the items.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    x = keras.layers.Embedding(n_items + 1, embedding, mask_zero=True, name="item_embedding")(items)
    inputs = items
    if rating_input:
        ratings = keras.Input(shape=(None,), dtype="int32", name="ratings")
        rated = keras.layers.Embedding(RATING_TOKENS, embedding, name="rating_embedding")(ratings)
        x = keras.layers.Add(name="item_and_rating")([x, rated])
        inputs = {"items": items, "ratings": ratings}
    x = CELLS[cell](hidden, return_sequences=return_sequences, name="rnn")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if projection > 0:
        x = keras.layers.Dense(projection, name="projection")(x)
    logits = keras.layers.Dense(n_items, name="logits")(x)
    name = "rnn_cce_steps" if return_sequences else "rnn_cce"
    return keras.Model(inputs, logits, name=name)


def model_config(model: keras.Model) -> dict:
    """Hyper-parameters of a built model, read back from its layers (for rebuilding and checks)."""
    rnn = model.get_layer("rnn")
    names = {layer.name for layer in model.layers}
    return {
        "n_items": model.get_layer("logits").units,
        "hidden": rnn.units,
        "embedding": model.get_layer("item_embedding").output_dim,
        "dropout": model.get_layer("dropout").rate,
        "cell": "lstm" if isinstance(rnn, keras.layers.LSTM) else "gru",
        "projection": model.get_layer("projection").units if "projection" in names else 0,
        "rating_input": reads_ratings(model),
    }


def reads_ratings(model: keras.Model) -> bool:
    """Whether ``model`` takes the ratings of the history as a second input."""
    return any(layer.name == "rating_embedding" for layer in model.layers)


def model_inputs(model: keras.Model, items: np.ndarray,
                 ratings: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """What ``model`` is called with: the ``item + 1`` matrix, plus the rating tokens (same shape; None:
    all unknown) if it reads them."""
    if not reads_ratings(model):
        return items
    return {"items": items, "ratings": np.zeros_like(items) if ratings is None else ratings}


def scoring_model(model: keras.Model) -> keras.Model:
    """A last-step model with the same weights: what is saved, evaluated and served."""
    if not model.get_layer("rnn").return_sequences:
        return model
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
    Targets of -1 (past the end of a sequence) carry no weight.
    """

    def __init__(self, decay: float = 0.5, name: str = "next_items_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.decay = decay

    def call(self, targets, logits):
        targets = keras.ops.cast(targets, "int32")
        log_probs = keras.ops.log_softmax(logits, axis=-1)
        picked = keras.ops.take_along_axis(log_probs, keras.ops.maximum(targets, 0), axis=-1)
        steps = keras.ops.arange(keras.ops.shape(targets)[-1], dtype="float32")
        weights = keras.ops.power(self.decay, steps) * keras.ops.cast(targets >= 0, "float32")
        return -keras.ops.sum(weights * picked, axis=-1) / keras.ops.maximum(keras.ops.sum(weights, axis=-1), 1e-9)

    def get_config(self) -> dict:
        return {**super().get_config(), "decay": self.decay}
