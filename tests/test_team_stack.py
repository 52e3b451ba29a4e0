"""The team stack for real: a PostgreSQL server and an MLflow tracking server (seqrec stack), three tune workers
sharing one study on them, one worker SIGKILLed, the tracking server restarted mid-study, the stack restarted.

Needs PostgreSQL's server programs (.ci/run installs Debian's package); without them the module is skipped, unless
SEQREC_REQUIRE_STACK=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
from sqlalchemy.pool import NullPool

from conftest import TINY_SPACE, write_synthetic_split
from seqrec.experiment import stack
from seqrec.experiment.cli import main
from seqrec.experiment.errors import StackError
from seqrec.experiment.tune import OWNER_ATTR, RUN_ID_ATTR

ROOT = Path(__file__).resolve().parents[1]
TrialState = optuna.trial.TrialState


def _postgres_missing() -> str | None:
    try:
        stack.postgres_bin(install=False)
        stack.server_account()
    except StackError as error:
        return str(error)
    return None


MISSING = _postgres_missing()
if MISSING and os.environ.get("SEQREC_REQUIRE_STACK") == "1":
    raise RuntimeError(f"SEQREC_REQUIRE_STACK=1 but {MISSING}")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seqrec(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqrec", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kwargs)


@pytest.fixture(scope="module")
def team():
    # PostgreSQL runs as the 'postgres' user when we are root: its folder must be reachable by that user
    root = Path(tempfile.mkdtemp(prefix="seqrec-team-"))
    root.chmod(0o755)
    base_env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    up = seqrec("stack", "up", "--dir", str(root / "stack"), "--pg-port", str(free_port()),
                "--mlflow-port", str(free_port()), env=base_env)
    try:
        assert up.returncode == 0, up.stderr
        exported = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
                        if line.startswith("export "))
        assert set(exported) == {"MLFLOW_TRACKING_URI", "SEQREC_OPTUNA_STORAGE"}
        (root / "space.py").write_text(TINY_SPACE)
        write_synthetic_split(root / "split")
        with pytest.MonkeyPatch.context() as patch:
            for name, value in exported.items():
                patch.setenv(name, value)
            patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
            patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
            mlflow.set_tracking_uri(exported["MLFLOW_TRACKING_URI"])
            yield root, {**base_env, **exported}, exported
    finally:
        mlflow.set_tracking_uri(None)
        seqrec("stack", "down", "--dir", str(root / "stack"), env=base_env)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def worker(root: Path, env: dict[str, str], seed: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "seqrec", "tune", "--study-name", "team", "--n-trials", "2", "--seed", str(seed),
               "--epochs-per-trial", "2", "--timeout", "0", "--data", str(root / "split"),
               "--search-space", str(root / "space.py"), "--export", str(root / f"best-{seed}.keras"),
               "--heartbeat-interval", "1", "--grace-period", "4"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=root)


def wait_for(condition, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@functools.cache
def rdb(url: str) -> optuna.storages.RDBStorage:
    """One storage per URL, without a connection pool: the test polls every 0.3 s, and a new storage per poll left
    its pooled connection open until garbage collection, which ran PostgreSQL out of connection slots."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})


def trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="team", storage=rdb(storage)).get_trials()
    except KeyError:  # no worker has created the study yet
        return []


def snapshot(storage: str) -> tuple:
    """Every run, model version and trial the stack holds (to compare across restarts)."""
    client = mlflow.MlflowClient()
    runs = sorted((run.info.run_id, run.info.status) for run in
                  mlflow.search_runs(search_all_experiments=True, output_format="list"))
    versions = sorted((v.version, v.run_id) for v in client.search_model_versions("name = 'seqrec'"))
    return runs, versions, [(t.number, t.state, t.value) for t in trials(storage)]


def test_three_workers_share_one_study_through_a_kill_and_restarts(team):
    root, env, exported = team
    storage = exported["SEQREC_OPTUNA_STORAGE"]
    status = seqrec("stack", "status", "--dir", str(root / "stack"), env=env)
    assert status.stdout.split("\n")[:2] == ["postgresql: running", "mlflow server: running"]
    workers = {seed: worker(root, env, seed, root / f"worker-{seed}.log") for seed in (0, 1, 2)}
    try:
        # SIGKILL worker 0 once its trial is training (its MLflow run exists)
        victim = str(workers[0].pid)
        killed = wait_for(lambda: next((t for t in trials(storage) if t.state == TrialState.RUNNING
                                        and t.user_attrs.get(OWNER_ATTR, {}).get("seqrec.pid") == victim
                                        and RUN_ID_ATTR in t.user_attrs), None), "worker 0's first trial")
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        # restart the tracking server while the others train: their MLflow calls wait and retry
        assert stack.stop_process_group(root / "stack" / "mlflow.pid")
        time.sleep(2)
        assert seqrec("stack", "up", "--dir", str(root / "stack"), env=env).returncode == 0
        for seed in (1, 2):
            assert workers[seed].wait(timeout=400) == 0, (root / f"worker-{seed}.log").read_text()[-3000:]
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()

    study = trials(storage)
    states = Counter(t.state for t in study)
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    # 2 + 2 trials and the killed one; its retry is one of the 4, or a 5th when it was found stale after them
    assert states[TrialState.FAIL] == 1 and len(study) in (5, 6)
    lost = study[killed.number]
    assert lost.state == TrialState.FAIL
    retry = [t for t in study if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == lost.params and retry[0].state != TrialState.FAIL

    client = mlflow.MlflowClient()
    trial_runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                    filter_string="tags.`optuna.study_name` = 'team'")
    by_trial = Counter(run.data.tags["optuna.trial_number"] for run in trial_runs
                       if "optuna.trial_number" in run.data.tags)
    assert by_trial == Counter({str(t.number): 1 for t in study})  # every trial exactly once as a run
    for t in study:
        assert client.get_run(t.user_attrs[RUN_ID_ATTR]).data.tags["mlflow.parentRunId"]
    assert client.get_run(lost.user_attrs[RUN_ID_ATTR]).info.status == "KILLED"
    assert not [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
                if run.info.status == "RUNNING"]  # the killed worker's own tune run was ended too

    parents = [run for run in trial_runs if "seqrec.publisher" in run.data.tags]
    assert sorted(run.data.tags["seqrec.publisher"] for run in parents) == ["false", "true"]
    best = optuna.load_study(study_name="team", storage=rdb(storage)).best_trial
    versions = client.search_model_versions("name = 'seqrec'")
    assert len(versions) == 1  # the champion was published once, by the last worker to finish
    assert client.get_model_version_by_alias("seqrec", "champion").run_id == best.user_attrs[RUN_ID_ATTR]

    before = snapshot(storage)
    down = seqrec("stack", "down", "--dir", str(root / "stack"), env=env)
    assert down.returncode == 0 and "postgresql" in down.stdout
    assert seqrec("stack", "up", "--dir", str(root / "stack"), env=env).returncode == 0
    assert snapshot(storage) == before


def test_bad_credentials_a_database_down_or_no_tracking_server_are_one_line(team, capsys):
    root, env, exported = team
    user, rest = exported["SEQREC_OPTUNA_STORAGE"].removeprefix("postgresql://").split("@")
    down_port = free_port()
    cases = {
        f"postgresql://{user.split(':')[0]}:wrong@{rest}": "password authentication failed",
        f"postgresql://{user}@127.0.0.1:{down_port}/optuna": "Connection refused",
    }
    for url, message in cases.items():
        assert main(["tune", "--storage", url, "--data", str(root / "split"),
                     "--search-space", str(root / "space.py")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "wrong" not in err  # password masked
    mlflow.set_tracking_uri(f"http://127.0.0.1:{down_port}")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "expected a reachable MLflow tracking server" in err and len(err.strip().splitlines()) == 1
    mlflow.set_tracking_uri(exported["MLFLOW_TRACKING_URI"])
    assert main(["stack", "up", "--dir", str(root / "stack"), "--pg-port", str(down_port)]) == 2
    assert "expected that or a new --dir" in capsys.readouterr().err
