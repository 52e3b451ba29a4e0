"""RNN-CCE (Devooght & Bersini 2017): item embedding -> GRU/LSTM -> dropout -> logits over all items.

Spotlight's LSTM representation is ``cell=lstm``. The recurrent state after the latest item summarises the
whole history, however long: evaluation and serving feed the full input half.
"""

from __future__ import annotations

from seqrec.core.models.common import NetSpec, history_input, keras, output_logits, padding_skipped

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


def build(n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    if net.cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {net.cell!r}")
    inputs, x, table = history_input(n_items, net)
    x = CELLS[net.cell](net.hidden, return_sequences=return_sequences, name="rnn")(x)
    name = "rnn_cce_steps" if return_sequences else "rnn_cce"
    logits = output_logits(x, n_items, net, table, padding_skipped(inputs, net, return_sequences))
    return keras.Model(inputs, logits, name=name)
