"""RNN-CCE: item embedding -> GRU/LSTM -> dropout -> logits over all items, trained with softmax CCE.

Inputs are ``item + 1`` (0 is padding and is masked), left-padded so the last time step is the
user's latest item. The training model of the ``all_steps`` regime returns logits at every step;
the saved *scoring* model returns only the last step's logits, which is what recommendation needs.
Both share the same weights (:func:`scoring_model`).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


def build_model(n_items: int, hidden: int = 256, embedding: int = 128, dropout: float = 0.2,
                cell: str = "gru", projection: int = 0, return_sequences: bool = False) -> keras.Model:
    """The RNN-CCE network; ``n_items`` output logits (the catalogue), ``n_items + 1`` input ids.

    ``projection > 0`` inserts a linear bottleneck before the logits: the softmax layer dominates
    the cost (hidden x n_items per step), so a bottleneck buys a wider recurrent layer for free.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    x = keras.layers.Embedding(n_items + 1, embedding, mask_zero=True, name="item_embedding")(items)
    x = CELLS[cell](hidden, return_sequences=return_sequences, name="rnn")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if projection > 0:
        x = keras.layers.Dense(projection, name="projection")(x)
    logits = keras.layers.Dense(n_items, name="logits")(x)
    name = "rnn_cce_steps" if return_sequences else "rnn_cce"
    return keras.Model(items, logits, name=name)


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
    }


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
