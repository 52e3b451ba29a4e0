"""Resume an interrupted fit from its last completed epoch, as if it had never stopped (Keras only, no MLflow).

Keras' ``BackupAndRestore`` saves the weights, the optimizer state (Adam moments, step count, hence
the learning-rate schedule) and the epoch at the end of every epoch, and restores them when ``fit``
starts again with the same backup directory. It keeps nothing of the other callbacks and no history,
so :class:`ResumableTraining` adds to the same backup what this project's fit needs to end exactly
like an uninterrupted run: early stopping's best value, epoch, patience count and best weights, the
per-epoch logs and the dropout layers' random-seed states. The training batches of epoch ``e`` depend only
on (seed, e) (:meth:`seqrec.core.sampling.TrainingBatches.set_epoch`); :class:`EpochSampling` tells them the epoch.

The backup lives in ``.seqrec-backup/<hash of config and data directory>`` by default, so running
the same command again finds it; it is deleted when ``fit`` ends. The MLflow run of the interrupted
attempt is recorded there too and continued by the restart (:mod:`seqrec.experiment.resume`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from seqrec.core.data import DataError
from seqrec.core.model import keras

BACKUP_ROOT = Path(".seqrec-backup")


def default_backup_dir(config: object, data_dir: str | Path, root: Path = BACKUP_ROOT) -> Path:
    """``root/<hash>`` of the training config (a dataclass) and the resolved data directory."""
    key = json.dumps({"config": asdict(config), "data": str(Path(data_dir).resolve())}, sort_keys=True, default=str)
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


class EpochSampling(keras.callbacks.Callback):
    """Sets the training batches to the epoch about to run (also the first epoch of a resumed fit)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.set_epoch(epoch)


class ResumableTraining(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` plus the state of early stopping and the history.

    Must come after the callbacks whose state it saves (their ``on_train_begin`` resets it, their
    ``on_epoch_end`` updates it). The extra state of epoch ``e`` is ``state-<e>.npz``; the last two are
    kept, like the weights (``double_checkpoint``), so a backup torn by a kill falls back consistently.
    The epoch Keras resumes at is the first ``on_epoch_begin``'s (or, when every epoch was done before the
    kill, the fit's last), so no private attribute of the model is read.
    """

    def __init__(self, backup_dir: str | Path, early_stopping: keras.callbacks.EarlyStopping):
        super().__init__(str(backup_dir), double_checkpoint=True)
        self.directory, self.early_stopping = Path(backup_dir), early_stopping
        self.history: dict[str, list[float]] = {}
        self.resumed_epochs: int | None = None  # epochs restored from the backup instead of trained by this fit

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.history, self.resumed_epochs = {}, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.resumed_epochs is None:
            self._resume_at(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self._save(epoch + 1)
        super().on_epoch_end(epoch, logs)
        (self.directory / f"state-{epoch - 1}.npz").unlink(missing_ok=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.resumed_epochs is None:  # no epoch left to run: the kill came after the last backup
            self._resume_at(self.params["epochs"])
            if self.early_stopping.best_weights is not None:  # its on_train_end ran before this restore
                self.model.set_weights(self.early_stopping.best_weights)
        super().on_train_end(logs)  # deletes the backup
        if self.directory.parent.name == BACKUP_ROOT.name and self.directory.parent.is_dir() \
                and not any(self.directory.parent.iterdir()):
            self.directory.parent.rmdir()  # leave no empty .seqrec-backup behind

    def _resume_at(self, epoch: int) -> None:
        self.resumed_epochs = epoch
        if epoch:
            self._restore(epoch)

    def _save(self, epochs_done: int) -> None:
        stopping = self.early_stopping
        meta = {"epochs_done": epochs_done, "history": self.history, "best": _number(stopping.best),
                "wait": stopping.wait, "best_epoch": stopping.best_epoch, "stopped_epoch": stopping.stopped_epoch}
        weights = stopping.best_weights or []
        seeds = [np.asarray(state) for state in _seed_states(self.model)]
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f"state-{epochs_done}.partial.npz"
        np.savez(partial, meta=np.array(json.dumps(meta)), **{f"w{i}": w for i, w in enumerate(weights)},
                 **{f"seed{i}": seed for i, seed in enumerate(seeds)})
        os.replace(partial, self.directory / f"state-{epochs_done}.npz")  # atomic: never a torn state file

    def _restore(self, epochs_done: int) -> None:
        path = self.directory / f"state-{epochs_done}.npz"
        if not path.is_file():
            raise DataError(self.directory, None, f"a complete training backup (weights and {path.name}); "
                            "delete the directory to train from scratch", "no such state file")
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            weights = [saved[f"w{i}"] for i in range(sum(name.startswith("w") for name in saved.files))]
            for i, state in enumerate(_seed_states(self.model)):
                state.assign(saved[f"seed{i}"])
        stopping = self.early_stopping
        stopping.best, stopping.wait = meta["best"], meta["wait"]
        stopping.best_epoch, stopping.stopped_epoch = meta["best_epoch"], meta["stopped_epoch"]
        stopping.best_weights = weights or None
        self.history = meta["history"]


def _seed_states(model: keras.Model) -> list:
    """The random-seed states of the model's layers (dropout masks) and of its loss (sampled negatives): not in
    Keras' weight files."""
    loss_seed = getattr(getattr(model, "loss", None), "seed_generator", None)
    return [*(variable for variable in model.variables if variable.path.endswith("seed_generator_state")),
            *([loss_seed.state] if loss_seed is not None else [])]


def _number(value: object) -> float | None:
    return None if value is None else float(value)
