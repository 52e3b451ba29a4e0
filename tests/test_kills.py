"""No MLflow run and no Optuna trial stays RUNNING once its process is gone: the next command on the host ends them.

The units are fast; the tests marked slow train, or kill `mlflow run` and `seqrec tune` subprocesses (SIGKILL to
the process group) and run the same command again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import optuna
import pytest

from conftest import TINY_SPACE, write_synthetic_split
from seqrec.core.data import load_split
from seqrec.core.model import keras
from seqrec.experiment.baseline_runs import run_baselines
from seqrec.experiment.owners import (CLOSED_TAG, HOST_TAG, PID_TAG, STARTED_TAG, close_orphaned_runs, owner,
                                      owner_is_gone)
from seqrec.experiment.tracking import train_run
from seqrec.experiment.tune import OWNER_ATTR, RUN_ID_ATTR, fail_orphaned_trials, open_storage, run_study
from test_resume import CONFIG

ROOT = Path(__file__).resolve().parents[1]
TrialState = optuna.trial.TrialState


def dead_owner() -> dict[str, str]:
    """The owner tags of a process of this host that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return {**owner(), PID_TAG: str(process.pid), STARTED_TAG: "1"}


def running_run(tags: dict[str, str]) -> str:
    return mlflow.MlflowClient().create_run("0", tags=tags).info.run_id


def running_runs() -> list[mlflow.entities.Run]:
    return mlflow.search_runs(search_all_experiments=True, filter_string="attributes.status = 'RUNNING'",
                              output_format="list")


# --- fast units -------------------------------------------------------------------------------------------


def test_owner_is_gone_only_for_a_dead_or_replaced_process_of_this_host():
    me = owner()
    assert me[PID_TAG] == str(os.getpid()) and me[STARTED_TAG].isdigit()
    assert not owner_is_gone(me)
    assert owner_is_gone(dead_owner())
    assert owner_is_gone({**me, STARTED_TAG: str(int(me[STARTED_TAG]) + 1)})  # the pid reused by a later process
    assert not owner_is_gone({**dead_owner(), HOST_TAG: "elsewhere.invalid"})
    assert not owner_is_gone({}) and not owner_is_gone({HOST_TAG: me[HOST_TAG]})
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exited, not yet reaped
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert owner_is_gone({HOST_TAG: me[HOST_TAG], PID_TAG: str(zombie.pid)})
    finally:
        zombie.wait()


def test_close_orphaned_runs_kills_only_the_runs_of_dead_owners_of_this_host(mlflow_tracking, capsys):
    dead = running_run(dead_owner())
    reused = running_run({**owner(), STARTED_TAG: "1"})
    kept = running_run(dead_owner())
    alive = running_run(owner())
    elsewhere = running_run({**dead_owner(), HOST_TAG: "elsewhere.invalid"})
    untagged = running_run({})
    started = int(time.time() * 1000)

    assert sorted(close_orphaned_runs(keep=[kept])) == sorted([dead, reused])
    client = mlflow.MlflowClient()
    for run_id in (dead, reused):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.info.end_time >= started and CLOSED_TAG in run.data.tags
    assert {run.info.run_id for run in running_runs()} == {kept, alive, elsewhere, untagged}
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seqrec:")]
    assert len(said) == 2 and all("left RUNNING" in line and "marked KILLED" in line for line in said)
    assert close_orphaned_runs() == [kept]


def test_entry_point_and_baseline_runs_are_tagged_with_their_owner(synthetic_split_dir, mlflow_tracking, monkeypatch):
    client = mlflow.MlflowClient()
    entry_point = client.create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", entry_point)  # under `mlflow run`: the entry point's process owns it
    (baseline,) = run_baselines(load_split(synthetic_split_dir), ["pop"], k=5).values()
    for run_id in (entry_point, baseline.run_id):
        assert owner().items() <= client.get_run(run_id).data.tags.items()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # trials asked, not optimised
def test_trials_of_dead_workers_of_this_host_are_failed_and_requeued_at_once(tmp_path, mlflow_tracking):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    run_id = running_run(dead_owner())
    trials = {}
    for name, worker in (("dead", dead_owner()), ("alive", owner()),
                         ("elsewhere", {**dead_owner(), HOST_TAG: "elsewhere.invalid"})):
        trial = study.ask()
        trial.suggest_float("lr", 0.001, 0.1)
        trial.set_user_attr(OWNER_ATTR, worker)
        trial.set_user_attr(RUN_ID_ATTR, run_id if name == "dead" else "")
        trials[name] = trial.number
    study.ask()  # no owner recorded yet

    assert fail_orphaned_trials(study, storage) == [trials["dead"]]
    after = study.get_trials()
    assert [t.state for t in after] == [TrialState.FAIL, *[TrialState.RUNNING] * 3, TrialState.WAITING]
    retry = after[-1]
    assert retry.params == after[trials["dead"]].params and retry.system_attrs["failed_trial"] == trials["dead"]
    assert OWNER_ATTR not in retry.user_attrs and RUN_ID_ATTR not in retry.user_attrs  # not the dead worker's
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["optuna.state"].startswith("FAIL")
    assert fail_orphaned_trials(study, storage) == []


# --- interrupted in-process (Ctrl-C) ----------------------------------------------------------------------


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 1:
            raise KeyboardInterrupt


class InterruptingPruner(optuna.pruners.BasePruner):
    """Ctrl-C as the first epoch of a trial ends."""

    def prune(self, study, trial) -> bool:
        raise KeyboardInterrupt


def tiny_suggest(trial: optuna.Trial) -> dict:
    return {"hidden": trial.suggest_categorical("hidden", [8, 16]), "embedding": 8, "max_len": 10,
            "batch_size": 32, "tie_order": "file"}


@pytest.mark.slow
def test_interrupted_training_and_study_leave_nothing_running(tmp_path, synthetic_split_dir, mlflow_tracking):
    split = load_split(synthetic_split_dir)
    with pytest.raises(KeyboardInterrupt):
        train_run(CONFIG, split, callbacks=[Interrupt()], verbose=0)
    keras.backend.clear_session()
    (run,) = mlflow.search_runs(output_format="list")
    assert run.info.status == "FAILED"

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(KeyboardInterrupt):
        run_study(split, n_trials=2, study_name="ctrl-c", storage=storage, epochs_per_trial=2, suggest=tiny_suggest,
                  pruner=InterruptingPruner(), export_path=tmp_path / "best.keras")
    trials = optuna.load_study(study_name="ctrl-c", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]  # Optuna fails the trial on Ctrl-C
    assert running_runs() == []
    statuses = {r.info.run_name: r.info.status for r in mlflow.search_runs(output_format="list")}
    assert statuses["trial-0"] == statuses["tune-ctrl-c"] == "FAILED"


@pytest.mark.slow
def test_a_benchmark_stopped_by_sigterm_ends_its_run_failed_with_one_line(tmp_path, mlflow_tracking):
    """`kill` on a benchmark (as on the seqrec command) is Ctrl-C: its run ends FAILED, not RUNNING until the next
    command on the host closes it, and it says so in one line."""
    split_dir = write_synthetic_split(tmp_path / "split", n_train=200)
    command = [sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--seeds", "1", "--data", str(split_dir),
               "--epochs", "50", "--patience", "50", "--hidden", "16", "--embedding", "8", "--max-len", "10",
               "--batch-size", "16", "--tie-order", "file"]
    log = tmp_path / "benchmark.log"
    with log.open("w") as out:
        benchmark = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out, env=env_with_venv(), cwd=tmp_path)
    try:
        (run,) = wait_for(running_runs, benchmark, log, "a RUNNING run")
        wait_for(lambda: "val_sps_at_10" in mlflow.MlflowClient().get_run(run.info.run_id).data.metrics,
                 benchmark, log, "a trained epoch")
        benchmark.send_signal(signal.SIGTERM)
        assert benchmark.wait(timeout=120) == 130
    finally:
        if benchmark.poll() is None:
            benchmark.kill()
    assert log.read_text().strip().splitlines()[-1].startswith("seqrec benchmarks/reproduce.py: interrupted")
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "FAILED"
    assert running_runs() == []


# --- SIGKILL, then the same command again -----------------------------------------------------------------


def wait_for(condition, process: subprocess.Popen, log: Path, what: str, seconds: float = 180):
    """Poll ``condition()`` until it returns something true, while ``process`` runs."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds} s"
        time.sleep(0.05)
    return found


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # start_new_session=True: the process group is the command's
    process.wait()


def env_with_venv() -> dict[str, str]:
    """MLproject commands call ``python``: this interpreter's."""
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.slow
def test_killed_mlflow_run_is_closed_by_its_rerun_which_resumes_to_the_same_result(tmp_path, mlflow_tracking):
    project = tmp_path / "project"  # a copy: the default backup dir lies in the project directory
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(ROOT / name, project / name)
    split_dir = write_synthetic_split(tmp_path / "split", n_train=200)
    epochs = 4
    params = {"data": split_dir, "epochs": epochs, "hidden": 16, "embedding": 8, "max_len": 10, "batch_size": 16,
              "lr": 0.01, "patience": 50, "tie_order": "file"}
    command = [sys.executable, "-m", "mlflow", "run", str(project), "--env-manager", "local",
               *[arg for name, value in params.items() for arg in ("-P", f"{name}={value}")]]

    def backed_up_epoch() -> int:
        for metadata in project.glob(".seqrec-backup/*/training_metadata.json"):
            try:
                return json.loads(metadata.read_text())["epoch"]
            except (OSError, ValueError):  # being written
                pass
        return 0

    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env_with_venv(), cwd=tmp_path,
                                 start_new_session=True)
    try:
        done = wait_for(backed_up_epoch, first, log, "a backed-up epoch")
    finally:
        kill_group(first)
    assert 1 <= done < epochs
    (killed,) = running_runs()

    second = subprocess.run(command, capture_output=True, text=True, env=env_with_venv(), cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"run {killed.info.run_id}" in second.stderr and "marked KILLED" in second.stderr
    assert running_runs() == []
    client = mlflow.MlflowClient()
    closed = client.get_run(killed.info.run_id)
    assert closed.info.status == "KILLED" and closed.info.end_time is not None and CLOSED_TAG in closed.data.tags
    (resumed,) = [run for run in mlflow.search_runs(output_format="list") if run.info.run_id != killed.info.run_id]
    assert resumed.info.status == "FINISHED" and resumed.data.tags["seqrec.resumed_from_run"] == killed.info.run_id
    assert done <= resumed.data.metrics["resumed_from_epoch"] < epochs

    reference = train_run(replace(CONFIG, epochs=epochs), load_split(split_dir), verbose=0)
    assert resumed.data.metrics["test_sps_at_10"] == pytest.approx(reference.test["sps@10"], abs=0.005)
    assert resumed.data.metrics["best_val_sps_at_10"] == pytest.approx(reference.val["sps@10"], abs=0.005)


ENQUEUED = [{"hidden": 16, "lr": 0.01}, {"hidden": 8, "lr": 0.02}]


def enqueued_study(url: str, name: str) -> optuna.Study:
    """A study whose first trials have fixed params: a killed and an uninterrupted study train the same ones."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for params in ENQUEUED:
        study.enqueue_trial(params)
    return study


@pytest.mark.slow
def test_killed_tune_is_cleaned_up_by_its_restart_which_retries_the_trial_to_the_same_result(tmp_path,
                                                                                            mlflow_tracking):
    split_dir = write_synthetic_split(tmp_path / "split")
    space = tmp_path / "space.py"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = enqueued_study(url, "s")
    command = [sys.executable, "-m", "seqrec", "tune", "--data", str(split_dir), "--storage", url, "--study-name", "s",
               "--epochs-per-trial", "2", "--warmup-epochs", "1", "--search-space", str(space),
               "--export", str(tmp_path / "best.keras"), "--seed", "0", "--heartbeat-interval", "60"]

    def second_trial_training() -> bool:
        trials = study.get_trials()
        return len(trials) > 1 and trials[1].state == TrialState.RUNNING and RUN_ID_ATTR in trials[1].user_attrs

    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen([*command, "--n-trials", "2"], stdout=out, stderr=subprocess.STDOUT,
                                 env=env_with_venv(), start_new_session=True)
    try:
        wait_for(second_trial_training, first, log, "trial 1's training")
    finally:
        kill_group(first)
    killed = study.get_trials()
    assert [t.state for t in killed[:2]] == [TrialState.COMPLETE, TrialState.RUNNING]
    left_running = {run.info.run_name: run.info.run_id for run in running_runs()}
    assert set(left_running) == {"tune-s", "trial-1"}

    restart = subprocess.run([*command, "--n-trials", "1"], capture_output=True, text=True, env=env_with_venv(),
                             timeout=300)  # at once: well inside the heartbeat grace period (120 s)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert "trial 1 of study 's' was left RUNNING" in restart.stderr, restart.stderr[-3000:]
    assert "1 running" not in restart.stdout
    after = study.get_trials()
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert after[2].params == killed[1].params == ENQUEUED[1] and after[2].system_attrs["failed_trial"] == 1
    assert running_runs() == []
    client = mlflow.MlflowClient()
    assert {client.get_run(run_id).info.status for run_id in left_running.values()} == {"KILLED"}
    assert CLOSED_TAG in client.get_run(left_running["tune-s"]).data.tags
    (parent,) = mlflow.search_runs(filter_string="attributes.run_name = 'tune-s' and attributes.status = 'FINISHED'",
                                   output_format="list")

    enqueued_study(f"sqlite:///{tmp_path / 'reference.db'}", "reference")
    reference = run_study(load_split(split_dir), n_trials=2, study_name="reference",
                          storage=f"sqlite:///{tmp_path / 'reference.db'}", epochs_per_trial=2, warmup_epochs=1,
                          seed=0, search_space_path=space, export_path=tmp_path / "reference.keras",
                          register_name="reference")
    assert parent.data.metrics["best_val_sps_at_10"] == pytest.approx(reference.best_value, abs=0.005)
    assert parent.data.metrics["test_sps_at_10"] == pytest.approx(reference.test["sps@10"], abs=0.005)
