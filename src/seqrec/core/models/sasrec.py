"""Causal self-attention (SASRec, Kang & McAuley 2018), trained as "SASRec+" (Klenitskiy & Vasilev, RecSys 2023):
the full-softmax cross-entropy at every step instead of sampled negatives.

Pre-norm blocks of causal multi-head attention and a feed-forward layer, a learned position table counted from
the latest item. It reads the latest ``max_len`` items only: longer histories are cut to those.
"""

from __future__ import annotations

from seqrec.core.models.common import (NetSpec, PositionEmbedding, feed_forward, history_input, keras,
                                        sequence_model)


def block(x: keras.KerasTensor, net: NetSpec, index: int) -> keras.KerasTensor:
    """One pre-norm transformer block: x + attention(norm(x)), then x + feed-forward(norm(x))."""
    h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"attention_norm_{index}")(x)
    attended = keras.layers.MultiHeadAttention(net.heads, max(1, net.embedding // net.heads), dropout=net.dropout,
                                               name=f"attention_{index}")(h, h, use_causal_mask=True)
    x = keras.layers.Add(name=f"attention_residual_{index}")([x, attended])
    return feed_forward(x, net, index)


def build(n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    inputs, x, table = history_input(n_items, net, window=net.max_len)
    x = PositionEmbedding(net.max_len, name="positions")(x)
    x = keras.layers.Dropout(net.dropout, name="embedding_dropout")(x)
    for index in range(net.blocks):
        x = block(x, net, index)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return sequence_model("sasrec", inputs, x, table, n_items, net, return_sequences)
