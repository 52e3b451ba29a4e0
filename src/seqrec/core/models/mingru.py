"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates read the input only, so that the
recurrence is linear in the state.

The GRU's time on a small CPU is its sequential steps (docs/operations.md), each a matrix product with the state:
here the matrix products run over the whole window at once, and only an element-wise update is left in order.
``blocks`` pre-norm residual layers, each a minGRU of ``hidden`` units and a GELU feed-forward layer, as in the
minGRU paper's sequence model. Like the RNN it reads any history length: evaluation and serving feed the whole
input half.
"""

from __future__ import annotations

from seqrec.core.backend import tf
from seqrec.core.models.common import NetSpec, feed_forward, history_input, keras, sequence_model


@keras.saving.register_keras_serializable(package="seqrec")
class MinGRU(keras.layers.Layer):
    """h_t = (1 - z_t) h_{t-1} + z_t c_t, with z_t = sigmoid(W_z x_t + b_z) and c_t = W_h x_t + b_h, h_0 = 0.

    The gate and the candidate are two dense products over every step at once; what is left in order is an
    element-wise multiply-add per step (``tf.scan``), cheap next to the GRU's recurrent matrix products, and on
    a CPU cheaper than the paper's parallel form (a cumulative log-sum-exp). Padded steps leave the state as it is."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        self.gate = keras.layers.Dense(self.units, name="gate")
        self.candidate = keras.layers.Dense(self.units, name="candidate")
        self.gate.build(input_shape)
        self.candidate.build(input_shape)

    def call(self, inputs, mask=None):
        update = keras.ops.sigmoid(self.gate(inputs))
        keep, added = 1.0 - update, update * self.candidate(inputs)
        if mask is not None:
            present = keras.ops.cast(keras.ops.expand_dims(mask, -1), keep.dtype)
            keep, added = keep * present + (1.0 - present), added * present
        time_major = [keras.ops.transpose(t, (1, 0, 2)) for t in (keep, added)]
        initial = keras.ops.zeros_like(time_major[1][0])
        states = tf.scan(lambda state, step: step[0] * state + step[1], tuple(time_major), initializer=initial)
        return keras.ops.transpose(states, (1, 0, 2))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


def block(x: keras.KerasTensor, net: NetSpec, index: int) -> keras.KerasTensor:
    """x + minGRU(norm(x)), then x + feed-forward(norm(x)); the first block widens the embedding to ``hidden``."""
    h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"recurrence_norm_{index}")(x)
    h = MinGRU(net.hidden, name=f"recurrence_{index}")(h)
    x = keras.layers.Add(name=f"recurrence_residual_{index}")([x, h]) if x.shape[-1] == net.hidden else h
    return feed_forward(x, net, index)


def build(n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    inputs, x, table = history_input(n_items, net)
    x = keras.layers.Dropout(net.dropout, name="embedding_dropout")(x)
    for index in range(net.blocks):
        x = block(x, net, index)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return sequence_model("mingru", inputs, x, table, n_items, net, return_sequences)
