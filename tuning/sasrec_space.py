"""An Optuna search space for the causal self-attention model: ``seqrec tune --search-space tuning/sasrec_space.py``.

SASRec is not the RNN: at the RNN's settings (learning rate 0.003, the latest 50 items) it trails it by 8 points
of sps@10 (docs/models.md). The architecture ranges are those SASRec (Kang & McAuley 2018) and SASRec+ (Klenitskiy
& Vasilev, RecSys 2023) were tuned over on MovieLens-1M: longer windows, one to three blocks. Their learning rate,
1e-3 over hundreds of epochs, is not the range here: with every step of a window a target, an epoch of the authors'
split is 86 batches at max_len 100 and batch 128 (594 at 50 and 32), and a first trial at 3.5e-4 (max_len 100,
batch 128) learned next to nothing in 4 epochs (validation sps@10 3.8 %).
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
        "heads": 1,  # SASRec's own choice: more heads did not help it on MovieLens-1M
        "dropout": trial.suggest_float("dropout", 0.1, 0.5),
        "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
        "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
        # SASRec's and SASRec+'s one item table for input and output; added after trial 14 (absent: False)
        "tied_output": trial.suggest_categorical("tied_output", [False, True]),
    }
