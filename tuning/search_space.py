"""The Optuna search space of ``seqrec tune`` (the RNN): edit the ranges here, nothing else needs to change.

``suggest(trial)`` returns overrides of :class:`seqrec.core.config.TrainConfig` (field names, plain values).
``epochs`` and ``seed`` are set by the tuner (``--epochs-per-trial``, ``--seed``), ``k`` stays 10.
The ranges are sized for a few CPU cores: one trial of 6 epochs on MovieLens-1M takes minutes.

Changing the ranges of an existing study is allowed, but its earlier trials keep their old values:
start a new ``--study-name`` when the space changes much.
"""

from __future__ import annotations


def suggest(trial) -> dict:
    return {
        "hidden": trial.suggest_int("hidden", 64, 512, step=64),
        "embedding": trial.suggest_categorical("embedding", [32, 64, 128, 256]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "max_len": trial.suggest_categorical("max_len", [20, 30, 50, 100]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "lr": trial.suggest_float("lr", 5e-4, 8e-3, log=True),
        "cell": trial.suggest_categorical("cell", ["gru", "lstm"]),
        "lookahead": trial.suggest_int("lookahead", 1, 3),  # 1 = the paper's next-item CCE
    }
