"""Resume an interrupted training run from its last completed epoch, as if it had never stopped.

Keras' ``BackupAndRestore`` saves the weights, the optimizer state (Adam moments, step count, hence
the learning-rate schedule) and the epoch at the end of every epoch, and restores them when ``fit``
starts again with the same backup directory. It keeps nothing of the other callbacks and no history,
so :class:`ResumableTraining` adds to the same backup what this project's fit needs to end exactly
like an uninterrupted run: early stopping's best value, epoch, patience count and best weights, the
checkpoint's best value, the per-epoch logs and the dropout layers' random-seed states. The training batches of epoch ``e`` depend only on
(seed, e) (:meth:`seqrec.train.TrainingBatches.set_epoch`); :class:`EpochSampling` tells them the epoch.

The backup lives in ``.seqrec-backup/<hash of config and data directory>`` by default, so running
the same command again finds it; it is deleted when ``fit`` ends. The MLflow run of the interrupted
attempt is recorded there too and continued by the restart (see :func:`run_to_continue`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from seqrec.data import DataError
from seqrec.model import keras

BACKUP_ROOT = Path(".seqrec-backup")
RUN_FILE = "mlflow_run_id"


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
    """``BackupAndRestore`` plus the state of early stopping, the checkpoint and the history.

    Must come after the callbacks whose state it saves (their ``on_train_begin`` resets it, their
    ``on_epoch_end`` updates it). The extra state of epoch ``e`` is ``state-<e>.npz``; the last two are
    kept, like the weights (``double_checkpoint``), so a backup torn by a kill falls back consistently.
    """

    def __init__(self, backup_dir: str | Path, early_stopping: keras.callbacks.EarlyStopping,
                 checkpoint: keras.callbacks.ModelCheckpoint | None = None):
        super().__init__(str(backup_dir), double_checkpoint=True)
        self.directory, self.early_stopping, self.checkpoint = Path(backup_dir), early_stopping, checkpoint
        self.history: dict[str, list[float]] = {}
        self.resumed_epochs = 0  # epochs restored from the backup instead of trained by this fit

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.resumed_epochs = int(getattr(self.model, "_initial_epoch", None) or 0)
        self.history = {}
        if self.resumed_epochs:
            self._restore(self.resumed_epochs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self._save(epoch + 1)
        super().on_epoch_end(epoch, logs)
        (self.directory / f"state-{epoch - 1}.npz").unlink(missing_ok=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)  # deletes the backup
        if self.directory.parent.name == BACKUP_ROOT.name and self.directory.parent.is_dir() \
                and not any(self.directory.parent.iterdir()):
            self.directory.parent.rmdir()  # leave no empty .seqrec-backup behind

    def _save(self, epochs_done: int) -> None:
        stopping = self.early_stopping
        meta = {"epochs_done": epochs_done, "history": self.history, "best": _number(stopping.best),
                "wait": stopping.wait, "best_epoch": stopping.best_epoch, "stopped_epoch": stopping.stopped_epoch,
                "checkpoint_best": _number(self.checkpoint.best) if self.checkpoint is not None else None}
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
        if self.checkpoint is not None and meta["checkpoint_best"] is not None:
            self.checkpoint.best = meta["checkpoint_best"]
            if weights and not Path(self.checkpoint.filepath).exists():  # the earlier process's file is gone
                current = self.model.get_weights()
                self.model.set_weights(weights)
                Path(self.checkpoint.filepath).parent.mkdir(parents=True, exist_ok=True)
                self.model.save(self.checkpoint.filepath)
                self.model.set_weights(current)
        self.history = meta["history"]


def _seed_states(model: keras.Model) -> list:
    """The random-seed states of the model's layers (dropout masks): not in Keras' weight files."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def _number(value: object) -> float | None:
    return None if value is None else float(value)


def record_run(backup_dir: Path, run_id: str) -> None:
    """Note the MLflow run training into ``backup_dir``, for a restart to continue it."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    (backup_dir / RUN_FILE).write_text(run_id + "\n", encoding="utf-8")


def run_to_continue(backup_dir: Path | None) -> tuple[str | None, str | None]:
    """(run to reopen, interrupted run) for a restart training into ``backup_dir``.

    The interrupted attempt's MLflow run is reopened when this process is free to choose its run (no
    active run, no ``MLFLOW_RUN_ID`` set by ``mlflow run``) and the run still exists in this tracking
    store; otherwise a new run is started and the interrupted one is only named (for a tag).
    """
    file = backup_dir / RUN_FILE if backup_dir is not None else None
    if file is None or not file.is_file():
        return None, None
    previous = file.read_text(encoding="utf-8").strip()
    import mlflow
    from mlflow.exceptions import MlflowException

    if mlflow.active_run() is not None or os.environ.get("MLFLOW_RUN_ID"):
        return None, previous
    try:
        run = mlflow.MlflowClient().get_run(previous)
    except MlflowException:
        return None, None  # another tracking store, or deleted: nothing to continue
    return (previous if run.info.lifecycle_stage == "active" else None), previous


def log_missing_epochs(run_id: str, history: dict[str, list[float]], epochs: int) -> int:
    """Log the restored epochs' metrics that ``run_id`` lacks; returns how many were added.

    Keras' MLflow callback logs asynchronously, so a killed process may lose its last epochs' curve
    points; a restart into a new run (``mlflow run``) has none of them.
    """
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client, now = MlflowClient(), int(time.time() * 1000)
    missing = []
    for name, values in history.items():
        logged = {metric.step for metric in client.get_metric_history(run_id, name)}
        missing += [Metric(name, value, now, step) for step, value in enumerate(values[:epochs]) if step not in logged]
    for start in range(0, len(missing), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=missing[start : start + 1000])
    return len(missing)
