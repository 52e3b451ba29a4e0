"""The tracked training run: one MLflow run around :func:`seqrec.core.training.fit`, and what every run logs.

A training run logs its params (booleans as ``true``/``false``, the value used), the data it read
(:func:`seqrec.experiment.records.log_data`), per-epoch curves, best-epoch validation metrics, test metrics,
plots and the serving model ``recommender``. Each run is tagged with the process that owns it
(:mod:`seqrec.experiment.owners`), and a training run first ends the runs that killed processes of this host left
RUNNING.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np

from seqrec.core.config import TrainConfig
from seqrec.core.data import Split, split_half
from seqrec.core.metrics import metric_name, mlflow_name
from seqrec.core.recommend import ServingCatalogue
from seqrec.core.sampling import imputed_target_mask
from seqrec.core.scoring import evaluate_scores, format_table, new_user_curve, new_user_metrics, score_users
from seqrec.core.ties import TRAIN_TIMES_SOURCES, tie_order_name, train_tie_order, train_timestamps
from seqrec.core.training import TrainResult, fit
from seqrec.experiment.owners import close_orphaned_runs, owner
from seqrec.experiment.plots import log_run_plots
from seqrec.experiment.records import (log_data, log_params_once, logged_params, resolved_params, train_defaults,
                                       used_params)
from seqrec.experiment.resume import log_missing_epochs, record_run, run_to_continue
from seqrec.experiment.serve import log_recommender

if TYPE_CHECKING:
    import keras


@dataclass
class RunSummary:
    """What a training run produced: its MLflow id, the selected epoch and its metrics."""

    run_id: str
    best_epoch: int
    val: dict[str, float]  # validation metrics of the best epoch (sps@10, recall@10, ...)
    test: dict[str, float] | None  # with the new-user curve; None when the test users were not evaluated (trials)
    train_seconds: float
    tokens_per_second: float


def finished_run(config: TrainConfig, split: Split) -> RunSummary | None:
    """The latest FINISHED run of the active experiment that trained ``config`` on this split (every param equal,
    the same data checksum) and evaluated the test users, as :func:`train_run` returned it; None if there is none.

    A benchmark run again after an interruption keeps the cells it has instead of training them again. A run
    logged before a param existed matches where ``config`` has that param's default: an option is added with the
    default that keeps the earlier behaviour (``tied_output=false`` is what every earlier model did)."""
    wanted = resolved_params({**logged_params(config), **used_params(config)})
    defaults = train_defaults()
    candidates = mlflow.search_runs(
        filter_string=f"attributes.status = 'FINISHED' and params.data_sha256 = '{split.checksum}'",
        order_by=["attributes.start_time DESC"], output_format="list")

    def trained_config(run) -> bool:
        logged = resolved_params(run.data.params)
        return all(logged.get(name, defaults[name]) == value for name, value in wanted.items())

    runs = [run for run in candidates if trained_config(run)][:1]
    metrics = runs[0].data.metrics if runs else {}
    if "best_epoch" not in metrics or not any(name.startswith("test_") for name in metrics):
        return None

    def named(prefix: str) -> dict[str, float]:
        return {metric_name(name, prefix): value for name, value in metrics.items() if name.startswith(prefix)}

    return RunSummary(runs[0].info.run_id, int(metrics["best_epoch"]), named("best_val_"), named("test_"),
                      metrics["train_seconds"], metrics["train_tokens_per_second"])


def training_inputs(config: TrainConfig, split: Split) -> dict[str, object]:
    """The tie order, imputed-target mask and known-rating mask of the fit, and the params that say which.

    Timestamps are read once, and only when needed: for the authors' split they are joined from the raw
    MovieLens files. In the authors' rebuilt file 109,591 of the 113,043 rows of unknown time have an imputed
    rating (3), so with ``rating_input`` those are fed as unknown.
    """
    needs_times = (config.tie_order != "file" or config.imputed_targets != "keep" or config.rating_input
                   or config.burst_targets)
    timestamps = train_timestamps(split) if needs_times else None
    if config.burst_targets and timestamps is None:
        warnings.warn(f"burst_targets: {split.directory} has no training times ({TRAIN_TIMES_SOURCES}); each step "
                      f"trains on the next item only", stacklevel=2)
    ties = train_tie_order(split, config.tie_order, config.tie_noise, timestamps)
    target_ok = imputed_target_mask(timestamps, config.imputed_targets)
    rating_known = timestamps >= 0 if config.rating_input and timestamps is not None else None
    mlflow.log_params({"tie_order_used": tie_order_name(ties),
                       "imputed_targets_masked": 0 if target_ok is None else int(np.sum(~target_ok)),
                       "unknown_rating_inputs": 0 if rating_known is None else int(np.sum(~rating_known))})
    return {"ties": ties, "target_ok": target_ok, "rating_known": rating_known,
            "times": timestamps if config.burst_targets else None}


def default_run_name(config: TrainConfig) -> str:
    """What tells runs apart in ``mlflow ui``: model (and cell), loss, regime, width, seed."""
    model = f"{config.model}-{config.cell}" if config.model == "rnn" and config.cell != "gru" else config.model
    return f"{model}-{config.loss}-{config.regime}-h{config.hidden}-s{config.seed}"


def train_run(config: TrainConfig, split: Split, output: Path | None = None, *, nested: bool = False,
              run_name: str | None = None, callbacks: list | None = None, evaluate_test: bool = True,
              verbose: int = 2, backup_dir: Path | None = None, show_test: bool = True) -> RunSummary:
    """One MLflow run: params, per-epoch curves, best-epoch model, (test metrics) and data record.

    ``nested``/``callbacks``/``evaluate_test=False`` serve tuning: a trial is a nested run whose
    pruning callback sees the validation curve and which never touches the test users.
    ``show_test=False`` logs the test figures without printing them (a benchmark choosing on validation).
    ``backup_dir`` makes the run resumable (:mod:`seqrec.experiment.resume`): run again after a kill or a
    crash, it continues the interrupted MLflow run from its last completed epoch. A top-level run first ends
    (KILLED) the runs left RUNNING by dead processes of this host, the interrupted one too when a new run
    replaces it (``mlflow run``).
    """
    name = run_name or default_run_name(config)
    reopen, interrupted = run_to_continue(backup_dir) if not nested else (None, None)
    if not nested:
        close_orphaned_runs(keep=(reopen,))
    with mlflow.start_run(run_id=reopen, run_name=None if reopen else name, nested=nested) as run:
        mlflow.set_tags(owner())
        if backup_dir is not None:
            record_run(backup_dir, run.info.run_id)
            if interrupted is not None and interrupted != run.info.run_id:
                mlflow.set_tag("seqrec.resumed_from_run", interrupted)
        log_params_once({**asdict(config), **used_params(config)})
        log_data(split)
        result = fit(split, config, callbacks=[mlflow.keras.MlflowCallback(), *(callbacks or [])],
                     verbose=verbose, backup_dir=backup_dir, **training_inputs(config, split))
        if result.resumed_epochs:
            mlflow.log_metric("resumed_from_epoch", result.resumed_epochs)
            log_missing_epochs(run.info.run_id, result.history, result.resumed_epochs)
        val = {metric_name(name, "val_"): values[result.best_epoch - 1]
               for name, values in result.history.items() if name.startswith("val_")}
        val.update({f"held_out_{name}": value for name, value in result.held_out.items()})
        log_params_once({"replicas": result.replicas})
        mlflow.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
                            "train_tokens_per_second": result.tokens_per_second,
                            **{mlflow_name(name, "best_val_"): value for name, value in val.items()}})
        test, test_metrics = _evaluate_and_plot(result, split, config.k, evaluate_test)
        _log_model(result.model, split, output)
    if test is not None and show_test:
        print(format_table(test, title=f"test users ({len(split.test)}), best epoch {result.best_epoch}:"))
    return RunSummary(run.info.run_id, result.best_epoch, val, test_metrics, result.train_seconds,
                      result.tokens_per_second)


def _evaluate_and_plot(result: TrainResult, split: Split, k: int, evaluate_test: bool
                       ) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """The kept model on the test users (their metrics, then with the new-user curve's) and the run's plots.
    Trials never see the test users: their plots are drawn on the validation users and they get (None, None)."""
    if not evaluate_test:
        scores = score_users(result.model, split_half(split.val)[0])
        log_run_plots(result.model, result.history, split, "val", k, scores, None)
        return None, None
    scores = score_users(result.model, split_half(split.test)[0])
    test = evaluate_scores(scores, split.test, k, split.item_popularity, split.item_similarity)
    new_users = new_user_curve(lambda given: score_users(result.model, given), split.test, k)
    test_metrics = {**test, **new_user_metrics(new_users, k)}
    mlflow.log_metrics({mlflow_name(name, "test_"): value for name, value in test_metrics.items()})
    log_run_plots(result.model, result.history, split, "test", k, scores, new_users)
    return test, test_metrics


def _log_model(model: keras.Model, split: Split, output: Path | None) -> None:
    """The kept model as the run's servable recommender, and as ``output`` where one is asked for."""
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "scoring_model.keras"
        model.save(model_file)
        log_recommender(model_file, ServingCatalogue.build(split.catalogue, split.item_popularity))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        model.save(output)
