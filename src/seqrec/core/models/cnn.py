"""Causal convolutions over the history (Spotlight's ``CNNNet``): ``blocks`` layers of width-3 causal Conv1D
with tanh and residual connections; each step sees only the items before it. Reads the latest ``max_len`` items."""

from __future__ import annotations

from seqrec.core.models.common import NetSpec, ZeroPadding, history_input, keras, sequence_model

KERNEL_WIDTH = 3


def build(n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    inputs, x, table = history_input(n_items, net, window=net.max_len)
    x = ZeroPadding(name="zero_padding")(x)
    for index in range(net.blocks):
        convolved = keras.layers.Conv1D(net.hidden, KERNEL_WIDTH, padding="causal", activation="tanh",
                                        name=f"convolution_{index}")(x)
        x = keras.layers.Add(name=f"residual_{index}")([x, convolved]) if x.shape[-1] == net.hidden else convolved
    return sequence_model("cnn", inputs, x, table, n_items, net, return_sequences)
