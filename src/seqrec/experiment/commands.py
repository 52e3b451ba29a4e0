"""What each ``seqrec`` command does, given its parsed arguments (:mod:`seqrec.experiment.cli` parses them).

Under `mlflow run` every command logs to the entry point's run what it read (:func:`log_data`) and what it
computed: metrics for ``evaluate``, the recommendations as ``recommendations.json`` for ``recommend``, the
split's sizes and ``prepare.json`` for ``prepare``; ``train``, ``tune``, ``baselines`` and ``report`` log
their own runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import mlflow

from seqrec.core.config import TrainConfig
from seqrec.core.data import DataError, Split, load_split
from seqrec.core.metrics import mlflow_name
from seqrec.core.sources import load_data
from seqrec.core.ties import with_times
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.owners import close_orphaned_runs
from seqrec.experiment.records import entry_point_run, log_data, log_params_once

MAX_HEARTBEAT_INTERVAL = 24 * 3600  # seconds between an Optuna worker's heartbeats


def check_tracking_server(timeout: float = 10.0) -> None:
    """Refuse at once an MLflow tracking server that does not answer: the client would otherwise retry each call
    for minutes before failing. Only ``http(s)://`` tracking URIs are checked (a file or database store is opened
    by MLflow itself)."""
    from seqrec.experiment.stack import server_problem

    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")) and (reason := server_problem(uri, timeout)) is not None:
        raise ParameterError(f"MLFLOW_TRACKING_URI={uri}: expected a reachable MLflow tracking server "
                             f"(seqrec stack up starts one), got {reason}")


def open_tracking_store() -> None:
    """Open a SQLite tracking store (MLflow's default, ``sqlite:///mlflow.db``) under a lock on its folder. MLflow
    creates a new store's tables on first use, so workers started together on a fresh project would all create
    them, and most fail ("duplicate column name"); with the lock the first creates them and the others find
    them. Other stores are left to MLflow. Each command calls it once its input is checked, before its runs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(mlflow.get_tracking_uri())
    except ArgumentError:  # a file store or an http(s) server: not a database URL
        return
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    folder = Path(url.database).absolute().parent
    if folder.is_dir():  # a missing folder is MLflow's to report
        with folder_lock(folder):
            mlflow.MlflowClient().search_experiments(max_results=1)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder``, held by one process of this host at a time (none on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def config_from(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the parsed ``--hidden``, ``--lr``, ... options."""
    return train_config(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)})


def train_config(**values) -> TrainConfig:
    """``TrainConfig(**values)``; a value out of range is the user's input, refused as a ParameterError."""
    try:
        return TrainConfig(**values)
    except ValueError as error:
        raise ParameterError(str(error)) from None


def check_keras_path(option: str, path: Path) -> None:
    """A file to save a model to: a ``.keras`` name (Keras saves nothing else) that is not a directory, refused
    before any training rather than when the trained model is saved."""
    if path.suffix != ".keras" or path.is_dir():
        raise ParameterError(f"{option}: expected a .keras file to save the model to, got "
                             f"{str(path)!r}{' (a directory)' if path.is_dir() else ''}")


def check_model_name(option: str, name: str) -> None:
    """A name the MLflow model registry takes (not empty, no '/' or ':'), refused before any run."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
    except MlflowException:
        raise ParameterError(f"{option}: expected a registered model name (not empty, without '/' or ':'), "
                             f"got {name!r}") from None


def check_k(k: int, n_items: int, what: str = "a cut-off") -> None:
    if not 1 <= k <= n_items:
        raise DataError("--k", None, f"{what} between 1 and {n_items} (the catalogue size)", str(k))


def prepare(args: argparse.Namespace) -> None:
    from seqrec.core.prepare import PREPARE_FILE, prepare_split

    if args.n_val < 1 or args.n_test < 1:
        raise ParameterError(f"expected --n-val and --n-test of at least 1, got {args.n_val} and {args.n_test}")
    out = prepare_split(args.ratings, args.out, movies_path=args.movies, n_val=args.n_val, n_test=args.n_test,
                        seed=args.seed, within_second=args.within_second)
    print(f"prepared split in {out}")
    with entry_point_run("prepare") as run:
        if run is not None:
            split = load_split(out)
            log_data(split)
            mlflow.log_metrics({"n_users": len(split.train) + len(split.val) + len(split.test),
                                "n_interactions": len(split.train.items) + len(split.val.items)
                                + len(split.test.items)})
            mlflow.log_artifact(str(out / PREPARE_FILE), artifact_path="data")


def train(args: argparse.Namespace) -> None:
    from seqrec.core.backup import default_backup_dir
    from seqrec.experiment.tracking import train_run

    config = config_from(args)
    if args.output is not None:
        check_keras_path("--output", args.output)
    split = with_times(load_data(args.data))
    check_k(config.k, split.n_items)  # before training, not at its first validation
    backup = {"none": None, "auto": default_backup_dir(config, split.directory)}.get(args.backup_dir,
                                                                                      Path(args.backup_dir))
    open_tracking_store()
    train_run(config, split, output=args.output, backup_dir=backup)


def evaluate(args: argparse.Namespace) -> None:
    from seqrec.core.scoring import check_catalogue, evaluate_users, format_table
    from seqrec.experiment.serve import load_scorer

    model, catalogue = load_scorer(args.model)
    split = with_times(load_data(args.data))
    check_catalogue(model, split, args.model, catalogue.movie_ids if catalogue is not None else None)
    check_k(args.k, split.n_items)
    users = split.test if args.users == "test" else split.val
    metrics = evaluate_users(model, users, args.k, split.item_popularity, similarity=split.item_similarity)
    with entry_point_run("evaluate") as run:
        if run is not None:
            log_data(split)
            mlflow.log_metrics({mlflow_name(name, f"{args.users}_"): value for name, value in metrics.items()})
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_table(metrics, title=f"{args.model} on {len(users)} {args.users} users:"))


LARGEST_ID = 2**63 - 1  # a MovieID the served model's int64 column holds


def _integers(option: str, text: str, expected: str, low: int = -LARGEST_ID, high: int = LARGEST_ID) -> list[int]:
    """A comma-separated list of integers from ``low`` to ``high`` (spaces allowed); empty means none."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if not all(part.lstrip("-").isdigit() for part in parts) or not all(low <= int(part) <= high for part in parts):
        raise DataError(option, None, expected, text)
    return [int(part) for part in parts]


def _recommender(model: str, data: str) -> tuple[object, Split | None]:
    """The serving model and the split it took its catalogue from (None: the pyfunc carries its own)."""
    from seqrec.core.recommend import ServingCatalogue
    from seqrec.core.scoring import check_catalogue
    from seqrec.experiment.serve import Recommender, load_scorer

    network, catalogue = load_scorer(model)
    if catalogue is not None:
        return Recommender(network, catalogue), None
    split = load_data(data)
    check_catalogue(network, split, model)
    return Recommender(network, ServingCatalogue.build(split.catalogue, split.item_popularity)), split


def recommend(args: argparse.Namespace) -> None:
    history = _integers("--items", args.items, "comma-separated integer MovieIDs, oldest first (e.g. 1193,661,914)")
    recommender, split = _recommender(args.model, args.data)
    check_k(args.k, recommender.catalogue.n_items, "a number of movies")
    expected_stars = "comma-separated stars 1-5 (0: unknown), one per movie of --items (e.g. 5,3,4), or 'unknown'"
    ratings = None if args.ratings in (None, "unknown") else _integers("--ratings", args.ratings, expected_stars, 0, 5)
    if ratings is not None and len(ratings) != len(history):
        raise DataError("--ratings", None, expected_stars, f"{len(ratings)} stars for {len(history)} movies")
    row = recommender.recommend({"items": [history], "ratings": [ratings], "k": [args.k]}).to_dict("records")[0]
    with entry_point_run("recommend") as run:
        if run is not None:
            if split is not None:
                log_data(split)
            log_params_once({"model_uri": args.model})
            mlflow.log_dict({"items": history, "ratings": ratings, "k": args.k, **row}, "recommendations.json")
    if args.json:
        print(json.dumps(row))
        return
    print(f"top {len(row['movie_ids'])} for a history of {len(history)} movies ({args.model}"
          f"{', popularity fallback' if row['popularity_fallback'] else ''}):")
    for rank, (movie, score, title) in enumerate(zip(row["movie_ids"], row["scores"], row["titles"]), start=1):
        print(f"{rank:>3}  {movie:>7}  {score:8.5f}  {title}")
    if row["warning"]:
        print(f"seqrec recommend: warning: {row['warning']}", file=sys.stderr)


def tune(args: argparse.Namespace) -> None:
    from seqrec.experiment.tune import run_study

    check_tune(args)
    split = with_times(load_data(args.data))
    open_tracking_store()
    run_study(split, n_trials=args.n_trials, timeout=args.timeout, study_name=args.study_name,
              storage=args.storage, epochs_per_trial=args.epochs_per_trial, seed=args.seed,
              search_space_path=args.search_space, export_path=args.export, register_name=args.register_name,
              heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
              final_epochs=args.final_epochs, warmup_epochs=args.warmup_epochs)


def check_tune(args: argparse.Namespace) -> None:
    """Refuse what a study would fail on, before the data is read and any trial trains (`seqrec tune`'s options;
    benchmarks/tune.py's too, with ``heartbeat_interval`` and ``grace_period`` at their defaults)."""
    from seqrec.experiment.tune import load_search_space, parse_storage_url

    if args.epochs_per_trial < 1 or args.n_trials < 1 or args.final_epochs < 0:
        raise ParameterError("expected --n-trials and --epochs-per-trial of at least 1 and --final-epochs >= 0, got "
                             f"{args.n_trials}, {args.epochs_per_trial} and {args.final_epochs}")
    if args.warmup_epochs < 0:
        raise ParameterError(f"--warmup-epochs: expected 0 or more epochs, got {args.warmup_epochs}")
    if args.warmup_epochs >= args.epochs_per_trial:
        warnings.warn(f"--warmup-epochs {args.warmup_epochs} is not under --epochs-per-trial "
                      f"{args.epochs_per_trial}: the pruner can stop no trial", stacklevel=2)
    for option, seconds in (("--heartbeat-interval", args.heartbeat_interval), ("--grace-period", args.grace_period)):
        if seconds is not None and seconds < 1:
            raise ParameterError(f"{option}: expected at least 1 second, got {seconds}")
    if args.heartbeat_interval > MAX_HEARTBEAT_INTERVAL:  # far longer waits overflow the heartbeat thread's timer
        raise ParameterError(f"--heartbeat-interval: expected at most {MAX_HEARTBEAT_INTERVAL} seconds (a day), "
                             f"got {args.heartbeat_interval}")
    if not args.study_name.strip():
        raise ParameterError(f"--study-name: expected the name of an Optuna study, got {args.study_name!r}")
    check_model_name("--register-name", args.register_name)
    check_keras_path("--export", args.export)
    load_search_space(args.search_space)  # before the data: "auto" may have to download it
    parse_storage_url(args.storage)


def baselines(args: argparse.Namespace) -> None:
    from seqrec.experiment.baseline_runs import format_results, run_baselines

    params = {"knn": {"neighbours": args.knn_neighbours},
              "mf": {"factors": args.mf_factors, "alpha": args.mf_alpha, "reg": args.mf_reg,
                     "iterations": args.mf_iterations, "seed": args.seed},
              "dae": {"seed": args.seed}, "dotmf": {"seed": args.seed}}
    split = with_times(load_data(args.data))
    open_tracking_store()
    try:
        results = run_baselines(split, args.methods, args.k, params, args.tie_order, args.seed)
    except ValueError as error:  # a baseline's parameter out of range
        if isinstance(error, DataError):
            raise
        raise ParameterError(str(error)) from None
    print(format_results(results, title=f"test users ({len(split.test)}), metrics at k={args.k} (%):"))


def ratings(args: argparse.Namespace) -> None:
    from seqrec.core.explicit import AUTOREC_REG, held_out, random_split
    from seqrec.core.ratings import read_ratings
    from seqrec.core.sources import resolve_ratings
    from seqrec.experiment.rating_runs import format_results, run_rating_predictors

    if not 0 < args.test_share < 1:
        raise ParameterError(f"argument --test-share: expected a share between 0 and 1, got {args.test_share}")
    if not 0 <= args.validation_share < 1:
        raise ParameterError(f"argument --validation-share: expected a share in [0, 1), got {args.validation_share}")
    for option in ("mf_factors", "mf_epochs", "autorec_hidden", "autorec_epochs", "patience"):
        if getattr(args, option) < 1:
            raise ParameterError(f"argument --{option.replace('_', '-')}: expected a positive integer, "
                                 f"got {getattr(args, option)}")
    if not 0 <= args.autorec_dropout < 1:
        raise ParameterError(f"argument --autorec-dropout: expected a rate in [0, 1), got {args.autorec_dropout}")
    if not args.autorec_lr > 0:
        raise ParameterError(f"argument --autorec-lr: expected a learning rate > 0, got {args.autorec_lr}")
    for option in ("mf_reg", "autorec_reg"):
        if getattr(args, option) is not None and getattr(args, option) < 0:
            raise ParameterError(f"argument --{option.replace('_', '-')}: expected a weight >= 0, "
                                 f"got {getattr(args, option)}")
    path = resolve_ratings(args.ratings)
    table = read_ratings(path)
    try:
        split = random_split(table, args.test_share, args.seed)
    except ValueError as error:  # a share of too few ratings: an empty test or training set
        raise ParameterError(f"argument --test-share: {error}") from None
    try:  # the learned predictors' early-stopping share, checked before any of them trains
        held_out(len(split.train_ratings), args.validation_share, args.seed)
    except ValueError as error:
        raise ParameterError(f"argument --validation-share: {error}") from None
    stopping = {"validation_share": args.validation_share, "patience": args.patience}
    params = {"biased_mf": {"factors": args.mf_factors, "epochs": args.mf_epochs, "reg": args.mf_reg, **stopping},
              **{f"{by}_autorec": {"layers": (args.autorec_hidden,), "epochs": args.autorec_epochs,
                                   "lr": args.autorec_lr,
                                   "reg": AUTOREC_REG[by] if args.autorec_reg is None else args.autorec_reg,
                                   "activation": args.autorec_activation, "dropout": args.autorec_dropout,
                                   "refeed": args.autorec_refeed, "tied": args.autorec_tied, **stopping}
                 for by in ("item", "user")}}
    open_tracking_store()
    results = run_rating_predictors(split, args.predictors, path, args.seed, args.test_share, params)
    print(format_results(results))


def ensemble(args: argparse.Namespace) -> None:
    from seqrec.experiment.ensemble_run import ensemble_run

    groups = [group for given in args.runs for group in given]
    open_tracking_store()
    ensemble_run(groups, data=None if args.data == "members" else args.data, validation_only=args.validation_only)


def report(args: argparse.Namespace) -> None:
    from seqrec.experiment.report import write_report

    if args.k < 1:
        raise ParameterError(f"--k: expected a cut-off of at least 1, got {args.k}")
    open_tracking_store()
    close_orphaned_runs()  # a run a killed process left RUNNING is no candidate for the table
    if args.out is not None:
        markdown, *_ = write_report(args.out, args.k, args.rnn_run_id, args.experiments)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            markdown, *_ = write_report(Path(tmp), args.k, args.rnn_run_id, args.experiments)
    print(markdown, end="")


def stack(args: argparse.Namespace) -> None:
    from seqrec.experiment import stack as team_stack

    for option, port in (("--pg-port", args.pg_port), ("--mlflow-port", args.mlflow_port)):
        if port is not None and not 1 <= port <= 65535:
            raise ParameterError(f"{option}: expected a TCP port (1-65535), got {port}")
    if args.action == "up":
        state = team_stack.up(args.dir, args.host, args.pg_port, args.mlflow_port)
        print(f"# PostgreSQL on {state.host}:{state.pg_port}, MLflow server on {state.tracking_uri} "
              f"(data in {args.dir.resolve()}); for every worker:")
        print(team_stack.exports(state))
    elif args.action == "down":
        stopped = team_stack.down(args.dir)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    else:
        for name, running in team_stack.status(args.dir).items():
            print(f"{name}: {'running' if running else 'stopped'}")
