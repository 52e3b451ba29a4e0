"""What the sequence models share: the history's embedding, a learned position table and the last step."""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

RATING_TOKENS = 6  # 0: unknown (or padding), 1..5: stars


@dataclass(frozen=True)
class NetSpec:
    """The architecture knobs of a training config; their defaults and meaning are
    :class:`seqrec.core.config.TrainConfig`'s (``build_model`` fills every one)."""

    model: str
    hidden: int
    embedding: int
    dropout: float
    cell: str
    projection: int
    rating_input: bool
    max_len: int
    blocks: int
    heads: int
    skip_padding: bool  # a training model computes the logits of the steps holding an item only (ItemSteps)


def history_input(n_items: int, net: NetSpec, window: int | None = None) -> tuple[keras.KerasTensor | dict,
                                                                                   keras.KerasTensor]:
    """The model's inputs and the embedded history (batch x steps x ``net.embedding``; padding masked).

    With ``net.rating_input`` the rating of every item (0 = unknown) is embedded and added to the item's.
    ``window``: only the latest ``window`` items are read (a model with a position table of that length).
    """
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    ids = items if window is None else LastItems(window, name="latest_items")(items)
    x = keras.layers.Embedding(n_items + 1, net.embedding, mask_zero=True, name="item_embedding")(ids)
    if not net.rating_input:
        return items, x
    ratings = keras.Input(shape=(None,), dtype="int32", name="ratings")
    stars = ratings if window is None else LastItems(window, name="latest_ratings")(ratings)
    rated = keras.layers.Embedding(RATING_TOKENS, net.embedding, name="rating_embedding")(stars)
    return {"items": items, "ratings": ratings}, keras.layers.Add(name="item_and_rating")([x, rated])


def output_logits(x: keras.KerasTensor, n_items: int, net: NetSpec,
                  steps_of: keras.KerasTensor | None = None) -> keras.KerasTensor:
    """Dropout, the optional linear bottleneck (``net.projection``) and the logits over the catalogue.

    ``steps_of``: the item input of a training model whose padded steps are dropped first (:class:`ItemSteps`);
    its logits are then (steps holding an item) x items.

    Under a mixed-precision policy the logits are computed in 16 bits (the largest product of the step) and cast to
    float32 for the softmax, whose sum over the catalogue would lose too much in 16 bits."""
    if steps_of is not None:
        x = ItemSteps(name="item_steps")([x, steps_of])
    x = keras.layers.Dropout(net.dropout, name="dropout")(x)
    if net.projection > 0:
        x = keras.layers.Dense(net.projection, name="projection")(x)
    logits = keras.layers.Dense(n_items, name="logits")(x)
    if keras.config.dtype_policy().compute_dtype != "float32":
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    return logits


def padding_skipped(inputs: keras.KerasTensor | dict, net: NetSpec,
                    return_sequences: bool) -> keras.KerasTensor | None:
    """The item input for :func:`output_logits`'s ``steps_of`` when a training model skips its padded steps
    (``net.skip_padding`` and logits at every step), else None."""
    if not (return_sequences and net.skip_padding):
        return None
    return inputs["items"] if isinstance(inputs, dict) else inputs


@keras.saving.register_keras_serializable(package="seqrec")
class ItemSteps(keras.layers.Layer):
    """The steps of a left-padded batch that hold an item, flattened to (such steps) x features, in row order.

    The logits are the largest product of a training step (features x catalogue per step) and a quarter of the
    default's window cells are padding: the softmax loss of a padded step was masked out anyway, so computing
    it only where there is an item gives the same loss for less. The targets are gathered to match by
    :func:`seqrec.core.losses.step_targets`."""

    def call(self, inputs):
        x, items = inputs
        present = keras.ops.reshape(items[:, -keras.ops.shape(x)[1]:] > 0, (-1,))
        rows = keras.ops.reshape(x, (-1, x.shape[-1]))
        return keras.ops.take(rows, keras.ops.nonzero(present)[0], axis=0)

    def compute_output_shape(self, input_shape):
        return (None, input_shape[0][-1])

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="seqrec")
class LastItems(keras.layers.Layer):
    """The latest ``length`` steps of a left-padded batch: a model with a position table of that length then
    scores histories of any length (serving and evaluation feed the whole input half)."""

    def __init__(self, length: int, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def call(self, inputs):
        return inputs[:, -self.length:]

    def get_config(self) -> dict:
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="seqrec")
class LastStep(keras.layers.Layer):
    """The last time step of a left-padded sequence: the user's latest item, whatever the padding."""

    def call(self, inputs):
        return inputs[:, -1]

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="seqrec")
class PositionEmbedding(keras.layers.Layer):
    """A learned vector per position counted from the latest item (left padding puts it last), added to the
    items' embedding: the latest item always gets the same position, whatever the history's length."""

    def __init__(self, length: int, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.supports_masking = True

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.length, input_shape[-1]), initializer="glorot_uniform",
                                     name="positions")

    def call(self, inputs):
        steps = keras.ops.shape(inputs)[1]
        return inputs + self.table[self.length - steps:]

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self) -> dict:
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="seqrec")
class ZeroPadding(keras.layers.Layer):
    """Zero the padded steps and drop the mask: for layers that do not read masks (convolutions, sums)."""

    def call(self, inputs, mask=None):
        return inputs if mask is None else inputs * keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)

    def compute_mask(self, inputs, mask=None):
        return None
