"""Pooling (Spotlight's ``PoolNet``): the user at each step is the mean of the embeddings of the items so far.
No order inside the history: the baseline that says what the sequence models gain from order."""

from __future__ import annotations

from seqrec.core.models.common import NetSpec, history_input, keras, sequence_model


@keras.saving.register_keras_serializable(package="seqrec")
class RunningMean(keras.layers.Layer):
    """Mean of the unpadded steps up to and including each step (0 before the first item)."""

    def call(self, inputs, mask=None):
        weight = (keras.ops.ones_like(inputs[..., :1]) if mask is None
                  else keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1))
        total = keras.ops.cumsum(inputs * weight, axis=1)
        return total / keras.ops.maximum(keras.ops.cumsum(weight, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None


def build(n_items: int, net: NetSpec, return_sequences: bool) -> keras.Model:
    inputs, x, table = history_input(n_items, net)
    x = RunningMean(name="running_mean")(x)
    return sequence_model("pooling", inputs, x, table, n_items, net, return_sequences)
