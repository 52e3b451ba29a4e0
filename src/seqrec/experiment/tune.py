"""Hyper-parameter tuning of RNN-CCE: an Optuna study whose trials are nested MLflow runs.

    seqrec tune --n-trials 30 --timeout 3600 --study-name seqrec \\
        --storage sqlite:///tuning/optuna.db --epochs-per-trial 6 --seed 0 --data auto

* The search space is ``tuning/search_space.py`` (``suggest(trial) -> dict`` of TrainConfig overrides).
* The objective is the best-epoch validation sps@10 of a trial; the test users are never looked at
  while tuning. Unpromising trials are pruned after each epoch (median rule).
* The study lives in an Optuna RDB storage (any SQLAlchemy URL): running the command again with the
  same ``--study-name`` adds ``--n-trials`` more trials to it, and several processes pointed at the
  same storage (and the same MLflow tracking server) work on one study together. A worker that dies
  mid-trial stops sending heartbeats; after the grace period its trial is marked failed, its MLflow run
  KILLED, and its params re-queued. Each trial records its worker (:func:`seqrec.experiment.owners.owner`),
  so a worker started on the same host fails and re-queues a dead worker's trials at once, and ends the
  MLflow runs it left RUNNING (the parent's too) as KILLED. Interrupted (Ctrl-C), a worker fails its trial
  and ends its runs FAILED.
* Each invocation is one parent MLflow run; each trial is a nested run (params, per-epoch validation
  curve, best-epoch metrics, its model). After the study the parent gets the best params and value,
  plots of the study, and the best trial's test metrics; the best trial's serving model (the pyfunc
  ``recommender`` of :mod:`seqrec.experiment.serve`) is registered as ``seqrec`` with the alias ``champion``, so
  ``mlflow models serve -m models:/seqrec@champion`` serves it, and its Keras model is exported as
  ``best_model.keras``.
"""

from __future__ import annotations

import copy
import datetime
import importlib.util
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from seqrec.core.config import TrainConfig
from seqrec.core.data import DataError, Split
from seqrec.core.metrics import mlflow_name
from seqrec.core.model import keras
from seqrec.core.scoring import check_catalogue, evaluate_users, format_table
from seqrec.experiment.errors import TuningError
from seqrec.experiment.owners import HOST_TAG, PID_TAG, close_orphaned_runs, owner, owner_is_gone
from seqrec.experiment.records import log_data
from seqrec.experiment.serve import MODEL_NAME, load_recommender
from seqrec.experiment.settings import CHAMPION, DEFAULT_SEARCH_SPACE, DEFAULT_STORAGE, REGISTERED_MODEL
from seqrec.experiment.tracking import train_run

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

RUN_ID_ATTR = "mlflow_run_id"  # trial user attribute: the trial's MLflow run
OWNER_ATTR = "owner"  # trial user attribute: the worker process running it (seqrec.experiment.owners.owner)
VAL_ATTR = "val_metrics"  # trial user attribute: the best epoch's validation metrics
ENDED_ATTR = "ended_by_worker"  # trial user attribute: its worker saw the objective end (not a lost trial)
K = TrainConfig.k  # cut-off of the objective and of the reported metrics (10)
STARTUP_TRIALS = 8  # random trials before TPE models the search space
RETRY_QUEUE_SECONDS = 60  # time a lost trial's retry may take to be queued after it is failed
WORKER_ATTR_PREFIX = "worker:"  # study user attributes, one per worker: its owner, last seen, whether it has left
WORKER_SILENCE_SECONDS = 600  # a worker unseen this long (no trial started or ended) counts as lost
SCHEMA_ATTEMPTS = 4  # tries at opening a storage whose tables other workers may be creating


@dataclass
class TuneSummary:
    """What a ``run_study`` invocation ended with (the study may hold trials of earlier invocations)."""

    study_name: str
    storage: str  # the URL with any password hidden
    parent_run_id: str
    n_trials: int  # all trials of the study: earlier invocations and other workers included
    states: dict[str, int]  # trial count per state name (COMPLETE, PRUNED, FAIL, RUNNING, ...)
    best_trial: int
    best_value: float  # best-epoch validation sps@10 of the best trial
    best_params: dict
    best_run_id: str  # MLflow run of the best trial
    model_run_id: str  # MLflow run of the registered, exported model: the best trial's, or its refit's
    model_version: str | None  # registered version that ``champion`` points to; None: another worker publishes
    export_path: Path
    val: dict[str, float]  # the published model's validation metrics at its best epoch ({} when not published)
    test: dict[str, float] | None  # the exported model on the test users (None when not published)
    study_seconds: float  # wall time of this invocation's trials (the refit and the export excluded)


# --- Keras callbacks --------------------------------------------------------------------------------------


class PruningCallback(keras.callbacks.Callback):
    """Report the validation metric to an Optuna trial after every epoch; stop the fit when it is pruned.

    ``optuna_integration``'s Keras callback targets tf.keras; this is the same idea for Keras 3.
    It must come after :class:`seqrec.core.training.RankingValidation`, which puts the metric in the logs.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = mlflow_name(f"sps@{K}", "val_")):
        super().__init__()
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.monitor not in logs:
            raise KeyError(f"{self.monitor!r} is not in the epoch logs (RankingValidation must run first)")
        self.trial.report(float(logs[self.monitor]), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned after epoch {epoch + 1}: "
                                     f"{self.monitor}={float(logs[self.monitor]):.4f}")


class _RecordRun(keras.callbacks.Callback):
    """Links trial and MLflow run both ways as soon as the trial's run exists (so even a killed trial has it)."""

    def __init__(self, trial: optuna.Trial, study_name: str):
        super().__init__()
        self.trial, self.study_name = trial, study_name
        self.run_id: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.run_id = mlflow.active_run().info.run_id
        self.trial.set_user_attr(RUN_ID_ATTR, self.run_id)
        mlflow.set_tags({"optuna.study_name": self.study_name, "optuna.trial_number": self.trial.number})


# --- search space and storage -----------------------------------------------------------------------------


def load_search_space(path: Path = DEFAULT_SEARCH_SPACE) -> tuple[Callable[[optuna.Trial], dict], Path]:
    """``suggest`` from a search-space file, and the file found (a relative path may also be the project's)."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute():
        in_project = Path(__file__).resolve().parents[2] / path  # src/seqrec/tune.py -> the project root
        path = in_project if in_project.is_file() else path
    if not path.is_file():
        raise DataError(path, None, "a search-space file defining suggest(trial) -> dict", "no such file")
    spec = importlib.util.spec_from_file_location("seqrec_search_space", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any error (or exit) of the user's file is the file's
        raise DataError(path, _error_line(error, path), "a Python file that runs", _describe(error)) from None
    suggest = getattr(module, "suggest", None)
    if not callable(suggest):
        raise DataError(path, None, "a function suggest(trial) -> dict of TrainConfig overrides", "no suggest")
    check_search_space(suggest, str(path))
    return suggest, path


def check_search_space(suggest: Callable[[optuna.Trial], dict], source: str) -> None:
    """Draw one configuration from ``suggest`` in a throw-away study: a search space that fails, or proposes
    values TrainConfig refuses, is one line before the study starts, not a failed trial (which Optuna logs with
    a traceback) in it."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        overrides = suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code (an exit() too)
        raise DataError(source, _error_line(error, Path(source)), "suggest(trial) to return a dict of TrainConfig "
                        "overrides", _describe(error)) from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not isinstance(overrides, dict):
        raise DataError(source, None, "suggest(trial) to return a dict of TrainConfig overrides",
                        type(overrides).__name__)
    trial_config(overrides, TrainConfig.epochs, TrainConfig.seed, source)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _error_line(error: Exception, path: Path) -> int | None:
    """The line of ``path`` where ``error`` was raised (or, for a syntax error, found), if it is in that file."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        return error.lineno
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    return frames[-1].lineno if frames else None


def trial_config(overrides: dict, epochs: int, seed: int, source: str = "suggest(trial)") -> TrainConfig:
    """The TrainConfig of a trial: the tuner's epochs and seed, then the search space's overrides."""
    known = {spec.name for spec in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DataError(source, None, f"TrainConfig fields as keys ({', '.join(sorted(known))})", ", ".join(unknown))
    try:
        return replace(TrainConfig(epochs=epochs, seed=seed), **overrides)
    except (TypeError, ValueError) as error:
        raise DataError(source, None, "valid TrainConfig values", str(error)) from None


def shown_url(url: str) -> str:
    """A storage URL fit for logs and MLflow params: any password is masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage
        return url


class _RetryStale:
    """Trial of a dead worker (stale heartbeat, or owner gone): mark its MLflow run KILLED, re-queue its params.

    The retry inherits the trial's user attributes, but not its owner or MLflow run: until the retry's own
    objective records them, the dead worker's would make it look orphaned too.
    """

    def __init__(self, max_retry: int | None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.max_retry = max_retry

    def will_retry(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a lost trial gets a re-queued copy (as Optuna's callback decides: retries left)."""
        return self.max_retry is None or len(trial.system_attrs.get("retry_history", [])) < self.max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if RUN_ID_ATTR in trial.user_attrs:
            _end_run(trial.user_attrs[RUN_ID_ATTR], "KILLED", "FAIL (worker lost)")
            _end_lost_parent(trial.user_attrs[RUN_ID_ATTR])
        trial = copy.copy(trial)
        trial.user_attrs = {name: value for name, value in trial.user_attrs.items()
                            if name not in (OWNER_ATTR, RUN_ID_ATTR, ENDED_ATTR)}
        self.retry(study, trial)


def fail_orphaned_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """Fail the RUNNING trials whose worker on this host is gone and hand them to the storage's stale-trial
    callback (:class:`_RetryStale`), as Optuna's heartbeat check does, without waiting for the grace period.
    Returns their numbers; another host's trials are left to the heartbeats."""
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not owner_is_gone(trial.user_attrs.get(OWNER_ATTR, {})):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        print(f"seqrec: trial {trial.number} of study {study.study_name!r} was left RUNNING by process "
              f"{trial.user_attrs[OWNER_ATTR].get('seqrec.pid')}, which is gone: marked FAIL and re-queued",
              file=sys.stderr)
        storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def parse_storage_url(url: str) -> URL:
    """The storage URL parsed, or a DataError naming it: checked before a command touches any store."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise DataError(url, None, "an SQLAlchemy database URL (sqlite:///tuning/optuna.db, "
                        "postgresql://user@host/db, ...)", str(error)) from None


def open_storage(url: str = DEFAULT_STORAGE, heartbeat_interval: int = 60, grace_period: int | None = None,
                 max_retry: int | None = 3) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with worker heartbeats; an SQLite file's folder is created if missing."""
    import sqlalchemy.exc

    parsed = parse_storage_url(url)
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # local workers wait for the file lock
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                      heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                                      heartbeat_stale_trial_callback=_RetryStale(max_retry))
            except sqlalchemy.exc.IntegrityError:
                # workers started together on an empty database race to create Optuna's tables and version row;
                # the losers find them made on the next attempt
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(1.0 + attempt)
    except ImportError as error:
        raise DataError(shown_url(url), None, f"{expected} whose database driver is installed",
                        str(error.__cause__ or error)) from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise DataError(shown_url(url), None, "a reachable Optuna storage database", database_reason(error)) from None


def database_reason(error: Exception) -> str:
    """The part of a database driver's error that says what went wrong: 'password authentication failed for user
    "optuna"', 'Connection refused', ... (psycopg puts it after the server address and 'FATAL:')."""
    text = str(getattr(error, "orig", None) or error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return re.split(r"FATAL:|failed:", first)[-1].strip() or first


# --- MLflow edges -----------------------------------------------------------------------------------------


def _end_run(run_id: str, status: str, state: str) -> None:
    """Give a trial's MLflow run its final status and the Optuna state as a tag (best effort)."""
    client = MlflowClient()
    try:
        client.set_tag(run_id, "optuna.state", state)
        if status != "FINISHED":
            client.set_terminated(run_id, status)
    except MlflowException as error:
        warnings.warn(f"could not update MLflow run {run_id}: {error.message}", stacklevel=2)


def _end_lost_parent(run_id: str) -> None:
    """End the lost worker's own ``tune`` run as KILLED: its trial's heartbeats stopped, so did the process that
    held both (on another host no other check could tell). Best effort, like :func:`_end_run`."""
    client = MlflowClient()
    try:
        parent_id = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if parent_id and client.get_run(parent_id).info.status == "RUNNING":
            client.set_tag(parent_id, "seqrec.closed_reason", "a trial's heartbeats stopped: worker lost")
            client.set_terminated(parent_id, "KILLED")
    except MlflowException as error:
        warnings.warn(f"could not end the lost worker's run: {error.message}", stacklevel=2)


def _log_plots(study: optuna.Study) -> list[str]:
    """Optimisation history, parallel coordinates and (from 2 completed trials) param importances.

    Interactive HTML with plotly, else PNG with matplotlib; a plot that fails is skipped with a warning.
    """
    n_complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if n_complete == 0:
        return []
    try:
        import plotly  # noqa: F401  (optuna's interactive plots need it)

        from optuna import visualization as vis
        suffix = "html"
    except ImportError:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as vis
        suffix = "png"
    plots = {"optimization_history": vis.plot_optimization_history,
             "parallel_coordinate": vis.plot_parallel_coordinate}
    if n_complete >= 2:
        plots["param_importances"] = vis.plot_param_importances
    logged = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # experimental API; degenerate axes of few trials
                warnings.simplefilter("ignore")
                figure = plot(study)
            if suffix == "png":
                figure = getattr(figure, "figure", figure)  # optuna returns the Axes
                figure.set_size_inches(10, 6)
                figure.tight_layout()
            mlflow.log_figure(figure, f"plots/{name}.{suffix}")
            if suffix == "png":
                plt.close(figure)
            logged.append(f"plots/{name}.{suffix}")
        except Exception as error:  # noqa: BLE001 - plots must never lose a finished study
            warnings.warn(f"plot {name} skipped: {error}", stacklevel=2)
    return logged


def _log_trials_table(study: optuna.Study) -> None:
    """All trials (number, state, value, params, user attributes) as ``tuning/trials.csv``."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "trials.csv"
            study.trials_dataframe().to_csv(table, index=False)
            mlflow.log_artifact(str(table), artifact_path="tuning")
    except Exception as error:  # noqa: BLE001 - a convenience table must never lose a finished study
        warnings.warn(f"trials table skipped: {error}", stacklevel=2)


def _export(model_uri: str, export_path: Path) -> keras.Model:
    """Save the network of the serving model ``model_uri`` as ``export_path`` (a ``.keras`` file) and return it."""
    model = load_recommender(model_uri).model
    export_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(export_path)
    return model


def _model_uri(run_id: str) -> str:
    """The run's serving pyfunc (:mod:`seqrec.experiment.serve`): ``models:/<model id>`` in MLflow 3 (what
    ``runs:/<run>/recommender`` resolves to). Registered, it is what ``mlflow models serve`` answers with."""
    logged = [model for model in mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'",
                                                             output_format="list") if model.name == MODEL_NAME]
    return logged[0].model_uri if logged else f"runs:/{run_id}/{MODEL_NAME}"


def _register(run_id: str, name: str, description: str, tags: dict[str, str]) -> str:
    """Register the trial's model (unless the champion already is that run's) and point ``champion`` at it."""
    import mlflow
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no such model or alias yet
        current = None
    if current is not None and current.run_id == run_id:
        version = current.version
    else:
        version = mlflow.register_model(_model_uri(run_id), name).version
    client.set_registered_model_alias(name, CHAMPION, version)
    client.update_model_version(name, version, description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return str(version)


def _percent(metrics: dict[str, float], name: str) -> str:
    return f"{100 * metrics[name]:.2f} %" if name in metrics else "n/a"


# --- the study --------------------------------------------------------------------------------------------


def _objective(split: Split, suggest: Callable, epochs: int, seed: int, study_name: str, source: str) -> Callable:
    def objective(trial: optuna.Trial) -> float:
        mark_worker(trial.study, left=False)
        trial.set_user_attr(OWNER_ATTR, owner())
        config = trial_config(suggest(trial), epochs, seed, source)
        recorder = _RecordRun(trial, study_name)
        pruning = PruningCallback(trial, mlflow_name(f"sps@{config.k}", "val_"))
        try:
            summary = train_run(config, split, nested=True, run_name=f"trial-{trial.number}",
                                callbacks=[recorder, pruning], evaluate_test=False, verbose=0)
        except optuna.TrialPruned:
            if recorder.run_id is not None:
                _end_run(recorder.run_id, "KILLED", "PRUNED")
            raise
        finally:
            trial.set_user_attr(ENDED_ATTR, True)
            keras.backend.clear_session()
        trial.set_user_attr(RUN_ID_ATTR, summary.run_id)
        trial.set_user_attr(VAL_ATTR, summary.val)
        trial.set_user_attr("best_epoch", summary.best_epoch)
        _end_run(summary.run_id, "FINISHED", "COMPLETE")
        return summary.val[f"sps@{config.k}"]

    return objective


def create_study(split: Split, study_name: str, storage: str, seed: int, warmup_epochs: int,
                 pruner: optuna.pruners.BasePruner | None, **storage_options) -> optuna.Study:
    """The study ``study_name`` in ``storage`` (created, or loaded to continue it), with a TPE sampler seeded with
    ``seed`` plus the trials already there, so a resumed study does not replay its first random trials.
    Trials that a dead worker of this host left RUNNING are failed and re-queued first."""
    rdb = open_storage(storage, **storage_options)
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup_epochs)
    study = optuna.create_study(study_name=study_name, storage=rdb, direction="maximize", load_if_exists=True,
                                pruner=pruner)
    fail_orphaned_trials(study, rdb)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)),
                                               n_startup_trials=STARTUP_TRIALS)
    study.set_user_attr("data", study.user_attrs.get("data", str(split.directory)))
    return study


def _run_requeued(study: optuna.Study, objective: Callable) -> None:
    """Before leaving, fail the trials of lost workers whose heartbeats are stale and run the re-queued copies of
    those (and any other waiting trial), so that a killed worker's trial is re-run while a worker is still up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if waiting:
        study.optimize(objective, n_trials=len(waiting), gc_after_trial=True)


def _retry_pending(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Whether a lost trial was just failed but its retry is not queued yet. Optuna marks a stale trial FAIL and
    then queues its copy, in two steps: a worker looking in between would see no trial left to run and publish too.
    Older failures count as final (a worker that died between the steps, a trial failed before this check)."""
    retry = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    if not isinstance(retry, _RetryStale):
        return False  # no retries on this storage: a failed trial is final
    retried = {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}
    recent = datetime.datetime.now() - datetime.timedelta(seconds=RETRY_QUEUE_SECONDS)
    return any(trial.state == optuna.trial.TrialState.FAIL and ENDED_ATTR not in trial.user_attrs
               and trial.number not in retried and retry.will_retry(trial)
               and trial.datetime_complete is not None and trial.datetime_complete > recent for trial in trials)


def mark_worker(study: optuna.Study, left: bool) -> None:
    """Record in the study that this worker is still adding trials (or has left). Between two of its trials a
    worker owns no RUNNING trial: without this, another worker ending just then would publish, and so would this
    one after its next trial."""
    me = owner()
    study.set_user_attr(f"{WORKER_ATTR_PREFIX}{me[HOST_TAG]}:{me[PID_TAG]}",
                        {"owner": me, "seen": time.time(), "left": left})


def _others_still_working(study: optuna.Study) -> bool:
    """Whether another worker has not left the study: not marked so, not known gone (a dead process of this
    host), and seen within ``WORKER_SILENCE_SECONDS`` (one killed between trials on another host is given up)."""
    me, now = owner(), time.time()
    return any(name.startswith(WORKER_ATTR_PREFIX) and worker["owner"] != me and not worker["left"]
               and not owner_is_gone(worker["owner"]) and now - worker["seen"] < WORKER_SILENCE_SECONDS
               for name, worker in study.user_attrs.items())


def last_finisher(study: optuna.Study) -> bool:
    """Whether this worker publishes the study's champion: no trial is still running (on any worker), no other
    worker is still adding trials (:func:`mark_worker`), and the trial that finished last (complete or pruned) was
    this process's. So of several workers the one that ends the study publishes, once, the best trial of all; a
    worker that finishes while others train leaves it to them. A waiting trial (a lost worker's, re-queued) counts
    as unfinished: the worker that runs it finishes after us."""
    trials = study.get_trials(deepcopy=False)
    unfinished = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    busy = any(trial.state in unfinished for trial in trials)
    if busy or _retry_pending(study, trials) or _others_still_working(study):
        return False
    finished = [trial for trial in trials if trial.state in (optuna.trial.TrialState.COMPLETE,
                                                              optuna.trial.TrialState.PRUNED)]
    if not finished:
        return False
    latest = max(finished, key=lambda trial: (trial.datetime_complete, trial.number))
    return latest.user_attrs.get(OWNER_ATTR) == owner()


def _log_outcome(study: optuna.Study) -> tuple[optuna.trial.FrozenTrial, dict[str, int]]:
    """Log the trial counts, plots and table of the study to the parent run; return its best trial."""
    states = dict(Counter(trial.state.name for trial in study.get_trials(deepcopy=False)))
    mlflow.log_metrics({f"n_trials_{state.lower()}": count for state, count in states.items()})
    _log_plots(study)
    _log_trials_table(study)
    if "COMPLETE" not in states:
        raise TuningError(f"study {study.study_name!r} has no completed trial yet ({states or 'no trials'})")
    best = study.best_trial
    if RUN_ID_ATTR not in best.user_attrs:
        raise TuningError(f"best trial {best.number} of study {study.study_name!r} has no MLflow run id")
    val = dict(best.user_attrs.get(VAL_ATTR, {f"sps@{K}": best.value}))
    mlflow.log_params({f"best_{name}": value for name, value in best.params.items()})
    mlflow.log_metrics({"best_trial_number": best.number, mlflow_name(f"sps@{K}", "best_val_"): best.value,
                        **{mlflow_name(name, "best_val_"): value for name, value in val.items() if name != f"sps@{K}"}})
    mlflow.set_tags({"best_trial_run_id": best.user_attrs[RUN_ID_ATTR]})
    return best, states


def _refit(best: optuna.trial.FrozenTrial, split: Split, suggest: Callable, final_epochs: int, seed: int,
           source: str) -> tuple[str, dict[str, float], str]:
    """(run, validation metrics, origin) of the model to publish: the best trial's, or its ``final_epochs`` refit's
    when that scores at least as high on validation (the test users never take part in the choice)."""
    run_id, val = best.user_attrs[RUN_ID_ATTR], dict(best.user_attrs.get(VAL_ATTR, {f"sps@{K}": best.value}))
    if final_epochs <= 0:
        return run_id, val, f"Best trial {best.number}"
    config = trial_config(suggest(optuna.trial.FixedTrial(best.params, best.number)), final_epochs, seed, source)
    refit = train_run(config, split, nested=True, run_name=f"refit-trial-{best.number}", evaluate_test=False,
                      verbose=0)
    keras.backend.clear_session()
    mlflow.log_metrics({mlflow_name(name, "refit_val_"): value for name, value in refit.val.items()})
    mlflow.set_tags({"refit_run_id": refit.run_id})
    refit_sps = refit.val[f"sps@{K}"]
    if refit_sps >= best.value:
        return refit.run_id, refit.val, (f"Best trial {best.number} retrained for {final_epochs} epochs "
                                         f"(run {refit.run_id})")
    return run_id, val, (f"Best trial {best.number} (its {final_epochs}-epoch refit, run {refit.run_id}, scored "
                         f"lower on validation: sps@{K} {100 * refit_sps:.2f} %)")


def _publish(study: optuna.Study, best: optuna.trial.FrozenTrial, split: Split, model_run_id: str,
             val: dict[str, float], origin: str, export_path: Path, register_name: str) -> tuple[str, dict]:
    """Export the model, evaluate it on the test users (after the choice), register it as ``@champion``."""
    mlflow.set_tags({"published_run_id": model_run_id})
    model_uri = _model_uri(model_run_id)
    model = _export(model_uri, export_path)
    check_catalogue(model, split, str(export_path))
    test = evaluate_users(model, split.test, K, split.item_popularity)
    mlflow.log_metrics({mlflow_name(name, "test_"): value for name, value in test.items()})
    description = (f"{origin} of Optuna study '{study.study_name}' (trial run {best.user_attrs[RUN_ID_ATTR]}). "
                   f"Validation sps@{K} {_percent(val, f'sps@{K}')}, recall@{K} {_percent(val, f'recall@{K}')}; "
                   f"test sps@{K} {_percent(test, f'sps@{K}')}, recall@{K} {_percent(test, f'recall@{K}')} "
                   f"({len(split.test)} test users of {split.directory}).")
    version = _register(model_run_id, register_name, description, {
        "optuna.study_name": study.study_name, "optuna.trial_number": str(best.number),
        mlflow_name(f"sps@{K}", "val_"): f"{val.get(f'sps@{K}', best.value):.6f}",
        mlflow_name(f"sps@{K}", "test_"): f"{test[f'sps@{K}']:.6f}"})
    mlflow.set_tags({"registered_model": f"models:/{register_name}/{version}"})
    return version, test


def run_study(split: Split, *, n_trials: int | None, timeout: float | None = None, study_name: str = "seqrec",
              storage: str = DEFAULT_STORAGE, epochs_per_trial: int = 6, seed: int = 0,
              search_space_path: Path = DEFAULT_SEARCH_SPACE, export_path: Path = Path("best_model.keras"),
              register_name: str = REGISTERED_MODEL, suggest: Callable[[optuna.Trial], dict] | None = None,
              pruner: optuna.pruners.BasePruner | None = None, heartbeat_interval: int = 60,
              grace_period: int | None = None, max_retry: int | None = 3, final_epochs: int = 0,
              warmup_epochs: int = 2) -> TuneSummary:
    """Add up to ``n_trials`` trials (or ``timeout`` seconds of them) to the study, then publish its winner.

    The winner is the best trial's own model. With ``final_epochs > 0`` its configuration is also retrained
    for that many epochs (same seed) in a nested ``refit-trial-<n>`` run, since short trials rank
    configurations cheaply but may not give the chosen one its full budget; the refit replaces the trial's
    model only if its best validation sps@k is at least as high. The test users never take part in the choice.

    ``suggest`` replaces the search-space file (tests); ``pruner`` defaults to a median pruner that may stop a
    trial once it has run more than ``warmup_epochs`` epochs (set it below the epochs per trial). Give
    concurrent workers different seeds.
    """
    suggest, space_file, source = _search_space(suggest, search_space_path)
    export_path = Path(export_path)
    study = create_study(split, study_name, storage, seed, warmup_epochs, pruner,
                         heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry)
    close_orphaned_runs()
    with mlflow.start_run(run_name=f"tune-{study_name}") as parent:
        mlflow.set_tags({"optuna.study_name": study_name, "optuna.storage": shown_url(storage), **owner()})
        mlflow.log_params({"tune_n_trials": n_trials, "tune_timeout": timeout, "tune_seed": seed,
                           "tune_epochs_per_trial": epochs_per_trial, "tune_search_space": source})
        log_data(split)
        if space_file is not None:
            mlflow.log_artifact(str(space_file), artifact_path="tuning")
        started = time.perf_counter()
        objective = _objective(split, suggest, epochs_per_trial, seed, study_name, source)
        _optimize(study, objective, n_trials, timeout)
        study_seconds = time.perf_counter() - started
        mlflow.log_metric("study_seconds", study_seconds)
        best, states = _log_outcome(study)
        publisher = last_finisher(study)
        mlflow.set_tags({"seqrec.publisher": str(publisher).lower()})
        model_run_id, val, version, test, origin = best.user_attrs[RUN_ID_ATTR], {}, None, None, None
        if publisher:
            model_run_id, val, origin = _refit(best, split, suggest, final_epochs, seed, source)
            version, test = _publish(study, best, split, model_run_id, val, origin, export_path, register_name)

    summary = TuneSummary(study_name, shown_url(storage), parent.info.run_id, sum(states.values()), states,
                          best.number, best.value, dict(best.params), best.user_attrs[RUN_ID_ATTR], model_run_id,
                          version, export_path, val, test, study_seconds)
    _print_summary(summary, register_name, origin, len(split.test))
    return summary


def _search_space(suggest: Callable[[optuna.Trial], dict] | None,
                  path: Path) -> tuple[Callable[[optuna.Trial], dict], Path | None, str]:
    """The study's suggest function, the file it came from (None for one given in code) and its name for the logs:
    a function given in code is checked as a file's would be, before any trial starts."""
    if suggest is None:
        suggest, space_file = load_search_space(path)
        return suggest, space_file, str(space_file)
    source = getattr(suggest, "__name__", "suggest")
    check_search_space(suggest, source)
    return suggest, None, source


def _optimize(study: optuna.Study, objective: Callable, n_trials: int | None, timeout: float | None) -> None:
    """This worker's trials, then any that a lost worker left to be requeued; the worker is marked as working
    meanwhile, so that the last one to finish (:func:`last_finisher`) publishes the study."""
    mark_worker(study, left=False)
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
        _run_requeued(study, objective)
    finally:
        mark_worker(study, left=True)


def _print_summary(summary: TuneSummary, register_name: str, origin: str | None, n_test_users: int) -> None:
    """The study's outcome on the terminal. ``origin`` names the published model (the best trial or its refit);
    None where another worker publishes."""
    counts = ", ".join(f"{count} {state.lower()}" for state, count in summary.states.items())
    print(f"study {summary.study_name!r} ({summary.storage}): {summary.n_trials} trials ({counts})")
    print(f"best trial {summary.best_trial}: validation sps@{K} {100 * summary.best_value:.2f} %, "
          f"params {summary.best_params}")
    if origin is None:
        print("other workers' trials finished after this worker's: the last of them to finish publishes the study's "
              f"best trial as @{CHAMPION}")
        return
    print(f"registered models:/{register_name}/{summary.model_version} (alias @{CHAMPION}, run "
          f"{summary.model_run_id}), exported to {summary.export_path}")
    print(format_table(summary.test, title=f"{origin.lower()} on the test users ({n_test_users}):"))
