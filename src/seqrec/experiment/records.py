"""What every run of every entry point records: the data it read, its params as used, its own run.

:func:`log_data` logs the resolved split directory and its SHA-256 (never just ``auto``), so two runs that
read the same data say so in `mlflow ui` whatever path they found it at.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict

import mlflow

from seqrec.core.config import AUTO, AUTO_OPTIONS, TrainConfig, auto_value, is_default_recipe
from seqrec.core.data import Split
from seqrec.core.prepare import read_prepare_record
from seqrec.experiment.owners import close_orphaned_runs, owner


def param_value(value: object) -> object:
    """A param as MLflow shows it: booleans as ``true``/``false`` (what MLproject passes), the rest as is."""
    return str(value).lower() if isinstance(value, bool) else value


def logged_params(config: TrainConfig) -> dict[str, str]:
    """A training configuration's params as a run logs them (every field of ``TrainConfig``)."""
    return {name: str(param_value(value)) for name, value in asdict(config).items()}


# The options that default to auto, as a run logged before they existed trained: their earlier values
AUTO_OPTIONS_BEFORE = {name: str(param_value(off)) for name, (off, _) in AUTO_OPTIONS.items()}


def used_params(config: TrainConfig) -> dict[str, str]:
    """What each ``auto`` option of ``config`` resolved to, logged beside it as ``<name>_used`` (like
    ``tie_order_used``): `mlflow run` logs the param as given, ``auto``."""
    return {f"{name}_used": str(param_value(config.resolved(name))) for name in AUTO_OPTIONS}


def auto_values(params: dict[str, str]) -> dict[str, str]:
    """What the ``auto`` options resolve to for a training run of these params, as it would log them."""
    recipe = is_default_recipe(params.get("model", "rnn"), params.get("regime", "all_steps"),
                               params.get("loss", "cce"), params.get("rating_input") == "true")
    return {name: str(param_value(auto_value(name, recipe))) for name in AUTO_OPTIONS}


def resolved_params(params: dict[str, str]) -> dict[str, str]:
    """A training run's params as it trained: an ``auto`` option replaced by what it resolved to (its
    ``<name>_used`` param, else the rule itself), one the run did not log by its value from before it existed
    (:data:`AUTO_OPTIONS_BEFORE`); no ``_used`` params."""
    resolved, rule = {**AUTO_OPTIONS_BEFORE, **params}, auto_values(params)
    for name in AUTO_OPTIONS_BEFORE:
        used = resolved.pop(f"{name}_used", rule[name])
        if resolved[name] == AUTO:
            resolved[name] = used
    return resolved


def train_defaults() -> dict[str, str]:
    """Every training param at its default, as a run logs it. A run logged before a param existed had that
    param's default: options are added with the default that keeps the earlier behaviour, but for the ``auto``
    options, whose earlier behaviour is :data:`AUTO_OPTIONS_BEFORE`."""
    return logged_params(TrainConfig())


def log_params_once(params: dict[str, object]) -> None:
    """Log the params the active run lacks. `mlflow run` has already logged the MLproject params as the
    command line gave them, and MLflow refuses to change a param."""
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({name: param_value(value) for name, value in params.items() if name not in logged})


def log_data(split: Split) -> None:
    """What a run read: the resolved split directory, its checksum and sizes, and its ``stats`` file."""
    record = read_prepare_record(split.directory)
    log_params_once({"data_path": str(split.directory.resolve()), "data_sha256": split.checksum,
                     "within_second": (record or {}).get("within_second", "file"),  # "random": a clean split
                     "n_items": split.n_items, "n_train_users": len(split.train), "n_val_users": len(split.val),
                     "n_test_users": len(split.test)})
    if split.stats_path is not None:
        mlflow.log_artifact(str(split.stats_path), artifact_path="data")


@contextlib.contextmanager
def entry_point_run(run_name: str) -> Iterator[mlflow.ActiveRun | None]:
    """The run of an entry point that logs results but is no training run (evaluate, recommend, prepare, ...):
    under `mlflow run` (``MLFLOW_RUN_ID`` set) that run, which it ends; otherwise none (the command only prints).
    The entry point's process, not the `mlflow run` launcher, is tagged as the run's owner."""
    if mlflow.active_run() is not None or not os.environ.get("MLFLOW_RUN_ID"):
        yield mlflow.active_run()
        return
    close_orphaned_runs()
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags(owner())
        yield run
