"""Interrupted training: a crashed run is FAILED with its metrics and resumes where it stopped (killed processes: test_kills.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest

from seqrec.core.data import load_split
from seqrec.core.model import keras
from seqrec.core.backup import default_backup_dir
from seqrec.core.config import TrainConfig
from seqrec.core.sampling import TrainingBatches
from seqrec.experiment.tracking import train_run

pytestmark = pytest.mark.slow  # trains or logs models, starts processes

CONFIG = TrainConfig(hidden=16, embedding=8, max_len=10, batch_size=16, lr=0.01, epochs=4, patience=50,
                     tie_order="file")
CLI_ARGS = ["--hidden", "16", "--embedding", "8", "--max-len", "10", "--batch-size", "16", "--lr", "0.01",
            "--patience", "50", "--tie-order", "file"]


class CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError("power cut")


def steps(run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, metric))


def test_batches_depend_only_on_seed_and_epoch(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    stepped = TrainingBatches(split.train, CONFIG, seed=3, n_items=split.n_items)
    for _ in range(3):
        stepped.on_epoch_end()
    jumped = TrainingBatches(split.train, CONFIG, seed=3, n_items=split.n_items)
    jumped.set_epoch(3)
    assert stepped.epoch == jumped.epoch == 3
    np.testing.assert_array_equal(stepped.inputs, jumped.inputs)
    np.testing.assert_array_equal(stepped.targets, jumped.targets)
    other = TrainingBatches(split.train, CONFIG, seed=3, n_items=split.n_items)
    other.set_epoch(2)
    assert not np.array_equal(other.inputs, jumped.inputs)


def test_default_backup_dir_is_keyed_by_config_and_data(tmp_path):
    first = default_backup_dir(CONFIG, tmp_path / "a")
    assert first == default_backup_dir(CONFIG, tmp_path / "a") and first.parent == Path(".seqrec-backup")
    assert first != default_backup_dir(replace(CONFIG, seed=1), tmp_path / "a")
    assert first != default_backup_dir(CONFIG, tmp_path / "b")


@pytest.mark.parametrize("ema_momentum", [0.0, 0.9])  # 0.9: the backup keeps trained weights and average apart
def test_crashed_run_is_failed_keeps_its_metrics_and_resumes_to_the_same_result(synthetic_split_dir, tmp_path,
                                                                               mlflow_tracking, ema_momentum):
    split = load_split(synthetic_split_dir)
    config = replace(CONFIG, ema_momentum=ema_momentum)
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError, match="power cut"):
        train_run(config, split, callbacks=[CrashAt(2)], backup_dir=backup, verbose=0)
    (crashed,) = mlflow.search_runs(output_format="list")
    assert crashed.info.status == "FAILED"
    assert steps(crashed.info.run_id, "val_sps_at_10") == steps(crashed.info.run_id, "loss") == [0, 1]
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    keras.backend.clear_session()

    resumed = train_run(config, split, backup_dir=backup, verbose=0)
    run = mlflow.get_run(resumed.run_id)
    assert resumed.run_id == crashed.info.run_id  # the interrupted MLflow run is continued, not a new one
    assert run.info.status == "FINISHED" and run.data.metrics["resumed_from_epoch"] == 2
    assert steps(resumed.run_id, "val_sps_at_10") == steps(resumed.run_id, "loss") == [0, 1, 2, 3]
    # the train time counts the epochs of both processes, not the resumed process's alone
    epoch_seconds = mlflow.MlflowClient().get_metric_history(resumed.run_id, "epoch_seconds")
    assert sorted(m.step for m in epoch_seconds) == [0, 1, 2, 3] and all(m.value > 0 for m in epoch_seconds)
    assert run.data.metrics["train_seconds"] == pytest.approx(sum(m.value for m in epoch_seconds))
    assert not backup.exists()  # deleted once the fit is complete
    keras.backend.clear_session()

    reference = train_run(config, split, verbose=0)  # never interrupted
    client = mlflow.MlflowClient()
    for metric in ("loss", "val_sps_at_10", "val_recall_at_10"):
        curve = [m.value for m in sorted(client.get_metric_history(resumed.run_id, metric), key=lambda m: m.step)]
        expected = [m.value for m in sorted(client.get_metric_history(reference.run_id, metric), key=lambda m: m.step)]
        assert curve == pytest.approx(expected, rel=1e-6)
    assert resumed.best_epoch == reference.best_epoch and resumed.val == pytest.approx(reference.val)
    assert resumed.test == pytest.approx(reference.test)


def test_a_backup_of_another_experiments_run_resumes_into_a_new_run_here(tmp_path, mlflow_tracking):
    """Backups are keyed by configuration and data: the zoo's interrupted cell can be picked up by reproduce.py.
    Its fit resumes, but MLflow cannot reopen a run of another experiment: a new run names the interrupted one."""
    from seqrec.experiment.resume import record_run, run_to_continue

    mlflow.set_experiment("seqrec-zoo")
    with mlflow.start_run() as interrupted:
        record_run(tmp_path / "backup", interrupted.info.run_id)
    mlflow.set_experiment("seqrec-benchmark")
    assert run_to_continue(tmp_path / "backup") == (None, interrupted.info.run_id)
    mlflow.set_experiment("seqrec-zoo")
    assert run_to_continue(tmp_path / "backup") == (interrupted.info.run_id, interrupted.info.run_id)
