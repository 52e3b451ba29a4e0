"""An Optuna search space for the causal self-attention model: ``seqrec tune --search-space tuning/sasrec_space.py``.

SASRec is not the RNN: at the RNN's settings (learning rate 0.003, the latest 50 items) it trails it by 6 points
of sps@10 (docs/models.md). The ranges are those that SASRec+ (Klenitskiy & Vasilev, RecSys 2023) and SASRec
(Kang & McAuley 2018) tuned on MovieLens-1M: a lower learning rate, longer windows, one to three blocks.
``suggest(trial)`` returns overrides of :class:`seqrec.core.config.TrainConfig`; the tuner sets ``epochs`` and
``seed``. Decide on the study's validation figures, then confirm the winner over seeds on validation users.
"""

from __future__ import annotations


def suggest(trial) -> dict:
    return {
        "model": "sasrec",
        "embedding": trial.suggest_categorical("embedding", [64, 128]),
        "hidden": trial.suggest_categorical("hidden", [128, 256, 512]),  # the feed-forward width
        "blocks": trial.suggest_int("blocks", 1, 3),
        "heads": trial.suggest_categorical("heads", [1, 2]),
        "dropout": trial.suggest_float("dropout", 0.1, 0.5),
        "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128]),
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
    }
