"""Spotlight's ranking losses for sequence models, beside the full-softmax CCE (:class:`NextItemsCrossentropy`).

Each target item's score is compared with the scores of ``negatives`` items drawn uniformly from the catalogue
at every step (a drawn item may be a positive, as in Spotlight):

* ``pointwise``: logistic loss, the target pushed up and each negative down on its own;
* ``bpr``: Bayesian personalised ranking, -log sigmoid(target - negative);
* ``hinge``: max(0, 1 - target + negative), the paper's RNN-Hinge family;
* ``adaptive_hinge``: the hinge against the highest-scored negative only (Spotlight's approximation of WARP).

Targets are weighted like the CCE's lookahead (``decay ** (j - 1)``; -1 = no target). The network still computes
every item's logit, so the losses compare on the same model and batches; only what is learned from them differs.
"""

from __future__ import annotations

from seqrec.core.config import LOSSES
from seqrec.core.models.common import keras

SAMPLED_LOSSES = tuple(name for name in LOSSES if name != "cce")
PADDED_TARGET = -2  # the targets of a padded window cell (-1: a cell holding an item, with no target there)


def step_targets(targets, logits):
    """The targets of the steps ``logits`` holds: all of them, or, when a training model skips its padded steps
    (:class:`seqrec.core.models.common.ItemSteps`: logits of rank 2 against per-step targets, batch x steps x
    lookahead), those of the cells holding an item, flattened in the same row order."""
    ops = keras.ops
    if len(targets.shape) == len(logits.shape):
        return targets
    flat = ops.reshape(targets, (-1, ops.shape(targets)[-1]))
    return ops.take(flat, ops.nonzero(flat[:, 0] != PADDED_TARGET)[0], axis=0)


@keras.saving.register_keras_serializable(package="seqrec")
class SampledRankingLoss(keras.losses.Loss):
    """One of :data:`SAMPLED_LOSSES` against ``negatives`` uniformly drawn items per step (see the module)."""

    def __init__(self, kind: str = "bpr", negatives: int = 5, decay: float = 0.5, seed: int = 0,
                 name: str = "sampled_ranking_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in SAMPLED_LOSSES:
            raise ValueError(f"kind must be one of {SAMPLED_LOSSES}, got {kind!r}")
        self.kind, self.negatives, self.decay, self.seed = kind, negatives, decay, seed
        self.seed_generator = keras.random.SeedGenerator(seed)  # saved with the training backup

    def call(self, targets, logits):
        ops = keras.ops
        targets = step_targets(ops.cast(targets, "int32"), logits)
        positive = ops.expand_dims(ops.take_along_axis(logits, ops.maximum(targets, 0), axis=-1), -1)  # ... x L x 1
        drawn = keras.random.randint((*ops.shape(targets)[:-1], self.negatives), 0, ops.shape(logits)[-1],
                                     seed=self.seed_generator)
        negative = ops.expand_dims(ops.take_along_axis(logits, drawn, axis=-1), -2)  # ... x 1 x N
        per_target = self.per_target(positive, negative)  # ... x L
        steps = ops.arange(ops.shape(targets)[-1], dtype="float32")
        weights = ops.power(self.decay, steps) * ops.cast(targets >= 0, "float32")
        return ops.sum(weights * per_target, axis=-1) / ops.maximum(ops.sum(weights, axis=-1), 1e-9)

    def per_target(self, positive, negative):
        """The loss of each target (``positive``: ... x L x 1) against the drawn items (``negative``: ... x 1 x N)."""
        ops = keras.ops
        if self.kind == "pointwise":
            return ops.softplus(-positive[..., 0]) + ops.mean(ops.softplus(negative), axis=-1)
        if self.kind == "bpr":
            return ops.mean(ops.softplus(negative - positive), axis=-1)
        if self.kind == "hinge":
            return ops.mean(ops.relu(1.0 - positive + negative), axis=-1)
        return ops.relu(1.0 - positive[..., 0] + ops.max(negative, axis=-1))  # adaptive_hinge

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "negatives": self.negatives, "decay": self.decay,
                "seed": self.seed}
