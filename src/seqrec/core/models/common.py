"""What the sequence models share: the history's embedding, a learned position table and the last step; and the
layers that average several models as one (:mod:`seqrec.core.ensemble`) and blend a network with SLIST
(:func:`seqrec.core.ensemble.slist_blended`), here so that loading any saved model registers them."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from seqrec.core.backend import keras

# Attention over a one-movie history has one key: its softmax is 1, as it should be, yet Keras warns about any
# softmax over an axis of size 1 (served requests, the pyfunc's warm-up). Only that message of Keras' ops is silenced.
warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning,
                        module=r"keras\.src\.ops\.nn")

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
    rating_min_history: int  # scoring reads the stars of histories of at least this many items (0: of all)
    max_len: int
    blocks: int
    heads: int
    skip_padding: bool  # a training model computes the logits of the steps holding an item only (ItemSteps)
    tied_output: bool = False  # the logits are the features' dot products with the item embedding (ItemTable)
    item_dropout: float = 0.0  # training only: that share of the history's items is read as an empty vector


def history_input(n_items: int, net: NetSpec, window: int | None = None) -> tuple[keras.KerasTensor | dict,
                                                                                   keras.KerasTensor, ItemTable]:
    """The model's inputs, the embedded history (batch x steps x ``net.embedding``; padding masked) and the item
    table that embedded it (:func:`output_logits` scores with it when ``net.tied_output``).

    With ``net.rating_input`` the rating of every item (0 = unknown) is embedded and added to the item's (when
    scoring, with ``net.rating_min_history``, only in histories of that many items: :class:`ShortHistoryStars`).
    ``window``: only the latest ``window`` items are read (a model with a position table of that length).
    ``net.item_dropout``: in training, that share of the history's items is embedded as a zero vector (the step
    and its position stay, its identity is gone), so the network cannot lean on any one item of a history.
    """
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    ids = items if window is None else LastItems(window, name="latest_items")(items)
    table = ItemTable(n_items + 1, net.embedding, mask_zero=True, name="item_embedding")
    x = table(ids)
    if net.item_dropout:  # whole items: one draw per (window, step), shared by the embedding's coordinates
        x = keras.layers.Dropout(net.item_dropout, noise_shape=(None, None, 1), name="item_dropout")(x)
    if not net.rating_input:
        return items, x, table
    ratings = keras.Input(shape=(None,), dtype="int32", name="ratings")
    stars = ratings
    if net.rating_min_history:
        stars = ShortHistoryStars(net.rating_min_history, name="short_history_stars")([stars, items])
    stars = stars if window is None else LastItems(window, name="latest_ratings")(stars)
    rated = keras.layers.Embedding(RATING_TOKENS, net.embedding, name="rating_embedding")(stars)
    return {"items": items, "ratings": ratings}, keras.layers.Add(name="item_and_rating")([x, rated]), table


def output_logits(x: keras.KerasTensor, n_items: int, net: NetSpec, table: ItemTable,
                  steps_of: keras.KerasTensor | None = None) -> keras.KerasTensor:
    """Dropout, the optional linear bottleneck (``net.projection``) and the logits over the catalogue: a layer of
    their own, or with ``net.tied_output`` the dot products with the input's item ``table`` plus a bias per item.

    ``steps_of``: the item input of a training model whose padded steps are dropped first (:class:`ItemSteps`);
    its logits are then (steps holding an item) x items.

    Under a mixed-precision policy the logits are computed in 16 bits (the largest product of the step) and cast to
    float32 for the softmax, whose sum over the catalogue would lose too much in 16 bits."""
    if steps_of is not None:
        x = ItemSteps(name="item_steps")([x, steps_of])
    x = keras.layers.Dropout(net.dropout, name="dropout")(x)
    if net.projection > 0:
        x = keras.layers.Dense(net.projection, name="projection")(x)
    if net.tied_output:
        logits = ItemBias(name="logits")(table(x))
    else:
        logits = keras.layers.Dense(n_items, name="logits")(x)
    if keras.config.dtype_policy().compute_dtype != "float32":
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    return logits


def feed_forward(x: keras.KerasTensor, net: NetSpec, index: int) -> keras.KerasTensor:
    """x + feed-forward(norm(x)): the position-wise GELU layer of ``net.hidden`` units of a pre-norm block."""
    h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"feed_forward_norm_{index}")(x)
    h = keras.layers.Dense(net.hidden, activation="gelu", name=f"feed_forward_in_{index}")(h)
    h = keras.layers.Dropout(net.dropout, name=f"feed_forward_dropout_{index}")(h)
    h = keras.layers.Dense(x.shape[-1], name=f"feed_forward_out_{index}")(h)
    return keras.layers.Add(name=f"feed_forward_residual_{index}")([x, h])


def sequence_model(kind: str, inputs: keras.KerasTensor | dict, x: keras.KerasTensor, table: ItemTable,
                   n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    """The model named ``kind`` from its step features ``x``: the logits at every step (``<kind>_steps``, for
    training) or at the last step only (``<kind>``, for scoring), the same layers either way."""
    if not return_sequences:
        x = LastStep(name="last_step")(x)
    logits = output_logits(x, n_items, net, table, padding_skipped(inputs, net, return_sequences))
    return keras.Model(inputs, logits, name=f"{kind}_steps" if return_sequences else kind)


def padding_skipped(inputs: keras.KerasTensor | dict, net: NetSpec,
                    return_sequences: bool) -> keras.KerasTensor | None:
    """The item input for :func:`output_logits`'s ``steps_of`` when a training model skips its padded steps
    (``net.skip_padding`` and logits at every step), else None."""
    if not (return_sequences and net.skip_padding):
        return None
    return inputs["items"] if isinstance(inputs, dict) else inputs


@keras.saving.register_keras_serializable(package="seqrec")
class ItemTable(keras.layers.Embedding):
    """The item embedding, which can also score (``tied_output``: SASRec's one item table for input and output).

    Called on item ids it embeds them, as ``keras.layers.Embedding``; called on float features (the network's
    output) it returns their dot products with every item's row, the padding row 0 left out: one logit per item,
    from the same weights. Sharing them halves the item parameters and lets each item's output row learn from
    every time it is read as well as every time it is a target."""

    def call(self, inputs):
        if _holds_ids(inputs):
            return super().call(inputs)
        rows = keras.ops.cast(self.embeddings[1:], inputs.dtype)
        return keras.ops.matmul(inputs, keras.ops.transpose(rows))

    def compute_mask(self, inputs, mask=None):
        return super().compute_mask(inputs, mask) if _holds_ids(inputs) else None

    def compute_output_spec(self, inputs):
        if _holds_ids(inputs):
            return super().compute_output_spec(inputs)
        return keras.KerasTensor((*inputs.shape[:-1], self.input_dim - 1), dtype=inputs.dtype)


def _holds_ids(inputs) -> bool:
    return "int" in keras.backend.standardize_dtype(inputs.dtype)


@keras.saving.register_keras_serializable(package="seqrec")
class ItemBias(keras.layers.Layer):
    """A learned bias per item added to tied logits (an item's popularity, which a dot product alone lacks)."""

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    @property
    def units(self) -> int:
        """The number of logits, as a ``Dense`` output layer has it."""
        return int(self.bias.shape[0])

    def call(self, inputs):
        return inputs + keras.ops.cast(self.bias, inputs.dtype)


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


EXCLUDED_LOGIT = -1e9  # added to the logit of an item left out of the training softmax (SeenItems)


@keras.saving.register_keras_serializable(package="seqrec")
class SeenItems(keras.layers.Layer):
    """Training logits with the items the user has already read set to -1e9, so that they leave the softmax.

    Evaluation and serving never recommend an item of the input: with ``exclude_seen`` the training softmax
    leaves them out too, and the network need not learn to push them down. Inputs: the logits (batch x steps x
    items, or the item steps of :class:`ItemSteps`), the window's ``item + 1`` ids, and the items read before the
    window as packed bits (:func:`seqrec.core.sampling.items_before`). An item counts as read from its own step
    on. Finite, not -inf: a row whose every item was read stays finite (its target, a repeat, carries no weight).
    Added, not selected: the gradient reaching the logits is the softmax's."""

    def call(self, inputs):
        logits, items, packed = inputs
        ops = keras.ops
        n_items, steps = ops.shape(logits)[-1], ops.shape(items)[1]
        held = items > 0
        # the logits' row of every window cell: all cells, or the cells holding an item in row order (ItemSteps)
        has_row = held if len(logits.shape) == 2 else ops.ones_like(held)
        row_of_cell = ops.reshape(ops.cumsum(ops.reshape(ops.cast(has_row, "int32"), (-1,))) - 1, (-1,))
        # the items read before the window, one dense row per window, copied to each of its logits rows: a gather
        # of the rows is far cheaper than listing (row, item) pairs, a few hundred items at each of 50 steps
        window_of_row = ops.nonzero(ops.reshape(has_row, (-1,)))[0] // steps
        before = ops.cast(self.unpacked(packed, n_items), logits.dtype) * EXCLUDED_LOGIT
        penalty = ops.take(before, window_of_row, axis=0)
        # the window's own items, each from its step on: (window, step, earlier step) triples
        earlier = ops.expand_dims(ops.arange(steps), 1) >= ops.expand_dims(ops.arange(steps), 0)
        window, step, source = ops.nonzero(ops.expand_dims(has_row, 2) & ops.expand_dims(held, 1) & earlier)
        rows = ops.take(row_of_cell, window * steps + step)
        read = ops.take(ops.reshape(items, (-1,)), window * steps + source) - 1
        penalty = ops.scatter_update(penalty, ops.stack([rows, read], axis=1),
                                     ops.full(ops.shape(rows), EXCLUDED_LOGIT, dtype=logits.dtype))
        return ops.reshape(ops.reshape(logits, (-1, n_items)) + penalty, ops.shape(logits))

    @staticmethod
    def unpacked(packed, n_items):
        """The packed bits of :func:`seqrec.core.sampling.items_before` as windows x items 0/1 (bit 0 dropped)."""
        ops = keras.ops
        bits = ops.bitwise_and(ops.right_shift(ops.expand_dims(ops.cast(packed, "int32"), -1),
                                               ops.arange(8, dtype="int32")), 1)
        return ops.reshape(bits, (ops.shape(packed)[0], -1))[:, 1:n_items + 1]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def seen_items_excluded(network: keras.Model) -> keras.Model:
    """``network`` (a training model, logits at every step) with a ``seen`` input (the packed items read before the
    window) and its logits of items already read left out (:class:`SeenItems`); the same layers and weights."""
    inputs = network.input if isinstance(network.input, dict) else {"items": network.input}
    seen = keras.Input(shape=(None,), dtype="uint8", name="seen")
    # float32 whatever the policy: the logits are float32 (output_logits) and -1e9 is past float16's range
    logits = SeenItems(dtype="float32", name="seen_items")([network.output, inputs["items"], seen])
    return keras.Model({**inputs, "seen": seen}, logits, name=network.name)


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
class ShortHistoryStars(keras.layers.Layer):
    """The rating tokens of a history of fewer than ``min_items`` items all read as unknown (0), when scoring only.

    Why: SASRec+ trained with the stars serves histories of up to about 8 items worse with them than with every star
    unknown, and longer ones far better (docs/models.md, "A cut-off for the stars"). Training (``training=True``)
    reads every star it is given, so a run trains the same with or without the cut-off; the cut-off travels inside
    the saved model to every scorer.
    Inputs: the rating tokens and the ``item + 1`` ids (the history's length is its count of non-zero ids)."""

    def __init__(self, min_items: int, **kwargs):
        super().__init__(**kwargs)
        self.min_items = min_items

    def call(self, inputs, training=None):
        ratings, items = inputs
        if training:
            return ratings
        held = keras.ops.sum(keras.ops.cast(items > 0, "int32"), axis=1, keepdims=True)
        return ratings * keras.ops.cast(held >= self.min_items, ratings.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "min_items": self.min_items}


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


@keras.saving.register_keras_serializable(package="seqrec")
class LogMeanProbability(keras.layers.Layer):
    """log(mean of softmax(logits_i)) over an ensemble's members, computed as a log-sum-exp of log-softmaxes (no
    underflow where a member gives an item a tiny probability)."""

    def call(self, member_logits: list) -> keras.KerasTensor:
        log_probabilities = keras.ops.log_softmax(keras.ops.stack(member_logits, axis=0), axis=-1)
        return keras.ops.logsumexp(log_probabilities, axis=0) - math.log(len(member_logits))


@keras.saving.register_keras_serializable(package="seqrec")
class SlistBlend(keras.layers.Layer):
    """``log((1 - share) p + share q)`` per item, from a left-padded history of ``item + 1`` ids and a network's
    logits: ``p`` the softmax of the logits, ``q`` SLIST's positive outputs (the history's last ``window`` items, the
    one ``lag`` steps back weighing ``decay ** (lag - 1)``, times the fixed items x items ``weights``), each normalised
    over the items the history has not read. A read item scores about -1e9 (:data:`EXCLUDED_LOGIT`): it is never
    recommended anyway. See :func:`seqrec.core.ensemble.slist_blended`."""

    def __init__(self, n_items: int, window: int, decay: float, share: float, **kwargs):
        super().__init__(**kwargs)
        self.n_items, self.window, self.decay, self.share = n_items, window, decay, share

    def build(self, input_shape):
        self.weights_matrix = self.add_weight(shape=(self.n_items, self.n_items), initializer="zeros",
                                              trainable=False, name="slist_weights")

    def call(self, inputs):
        items, logits = inputs
        ops = keras.ops
        items = ops.cast(items, "int32")
        read = self.read_items(items)
        recent = items[:, -self.window:]  # left-padded: the latest item is the last column
        lags = ops.arange(ops.shape(recent)[1] - 1, -1, -1, dtype="float32")
        weights = ops.power(self.decay, lags) * ops.cast(recent > 0, "float32")  # batch x window
        rows = ops.take(self.weights_matrix, ops.maximum(recent - 1, 0), axis=0)  # batch x window x items
        outputs = ops.where(read, 0.0, ops.relu(ops.sum(ops.expand_dims(weights, -1) * rows, axis=1)))
        total = ops.sum(outputs, axis=-1, keepdims=True)
        log_p = ops.log_softmax(ops.where(read, EXCLUDED_LOGIT, ops.cast(logits, "float32")), axis=-1)
        # a history SLIST gives nothing (no item read yet, or all outputs at 0) is scored by the network alone
        has_linear = total > 0
        log_q = ops.where(has_linear, ops.log(outputs / ops.maximum(total, 1e-30)) + math.log(self.share), -math.inf)
        return ops.logaddexp(log_p + ops.where(has_linear, math.log(1.0 - self.share), 0.0), log_q)

    def read_items(self, items):
        """Batch x items booleans: the items of each history (``item + 1`` ids, 0 = padding)."""
        ops = keras.ops
        row, column = ops.nonzero(items > 0)
        ids = ops.take(ops.reshape(items, (-1,)), row * ops.shape(items)[1] + column) - 1
        counts = ops.scatter(ops.stack([row, ids], axis=1), ops.ones_like(ids, dtype="float32"),
                             (ops.shape(items)[0], self.n_items))
        return counts > 0

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self) -> dict:
        return {**super().get_config(), "n_items": self.n_items, "window": self.window, "decay": self.decay,
                "share": self.share}
