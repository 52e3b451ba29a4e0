"""Continue an interrupted training run's MLflow run after a kill or a crash (the fit itself resumes through
:mod:`seqrec.core.backup`).

The run training into a backup directory is recorded there (:func:`record_run`); running the same command
again reopens it (:func:`run_to_continue`) and logs the curve points the killed process had not sent yet
(:func:`log_missing_epochs`). Under `mlflow run` the restart trains into the launcher's new run instead, and the
killed run, which its dead process left RUNNING, is ended as KILLED
(:func:`seqrec.experiment.owners.close_orphaned_runs`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow
import mlflow.tracking.fluent as fluent
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

RUN_FILE = "mlflow_run_id"


def record_run(backup_dir: Path, run_id: str) -> None:
    """Note the MLflow run training into ``backup_dir``, for a restart to continue it."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    (backup_dir / RUN_FILE).write_text(run_id + "\n", encoding="utf-8")


def run_to_continue(backup_dir: Path | None) -> tuple[str | None, str | None]:
    """(run to reopen, interrupted run) for a restart training into ``backup_dir``.

    The interrupted attempt's MLflow run is reopened when this process is free to choose its run (no
    active run, no ``MLFLOW_RUN_ID`` set by ``mlflow run``) and the run still exists in this tracking
    store, in the active experiment (a backup is keyed by the configuration and the data, so the zoo's
    interrupted cell may be resumed by `reproduce.py`, whose runs belong elsewhere); otherwise a new run is
    started and the interrupted one is only named (for a tag; the caller ends it).
    """
    file = backup_dir / RUN_FILE if backup_dir is not None else None
    if file is None or not file.is_file():
        return None, None
    previous = file.read_text(encoding="utf-8").strip()
    if mlflow.active_run() is not None or os.environ.get("MLFLOW_RUN_ID"):
        return None, previous
    try:
        run = MlflowClient().get_run(previous)
    except MlflowException:
        return None, None  # another tracking store, or deleted: nothing to continue
    here = run.info.experiment_id == fluent._get_experiment_id()  # the experiment start_run would use
    return (previous if here and run.info.lifecycle_stage == "active" else None), previous


def log_missing_epochs(run_id: str, history: dict[str, list[float]], epochs: int) -> int:
    """Log the restored epochs' metrics that ``run_id`` lacks; returns how many were added.

    Keras' MLflow callback logs asynchronously, so a killed process may lose its last epochs' curve
    points; a restart into a new run (``mlflow run``) has none of them.
    """
    client, now = MlflowClient(), int(time.time() * 1000)
    missing = []
    for name, values in history.items():
        logged = {metric.step for metric in client.get_metric_history(run_id, name)}
        missing += [Metric(name, value, now, step) for step, value in enumerate(values[:epochs]) if step not in logged]
    for start in range(0, len(missing), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=missing[start : start + 1000])
    return len(missing)
