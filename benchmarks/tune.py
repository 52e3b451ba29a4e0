"""Tuning benchmark: a fixed-budget Optuna study on the real data against the untuned default configuration.

    python benchmarks/tune.py --n-trials 20 --timeout 3600 --epochs-per-trial 6
    python benchmarks/tune.py --n-trials 20 --timeout 3300 --epochs-per-trial 3 --warmup-epochs 1 \
        --final-epochs 10 --default-run-id <run id>

Prints the study's best validation sps@10, the exported model's test sps@10 / recall@10 beside those of the
default configuration (trained here with ``TrainConfig()``, or read from an existing MLflow run given with
``--default-run-id``, e.g. one of ``benchmarks/reproduce.py``), and the wall times. Every run goes to the
MLflow experiment ``seqrec-benchmark``. Slow (about an hour on 2 CPU cores): a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqrec.core.sources import load_data
from seqrec.experiment.cli import (Parser, add_data_argument, integer, path, positive_seconds, script_status,
                                   seed)
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.settings import DEFAULT_SEARCH_SPACE


def _default_from_run(run_id: str) -> dict[str, float]:
    """The default configuration's figures, read from a finished run: before the study, so that a wrong id is
    refused before an hour of trials rather than after."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        metrics = MlflowClient().get_run(run_id).data.metrics
    except MlflowException:
        raise ParameterError(f"--default-run-id: no run {run_id!r} in the tracking store") from None
    missing = [name for name in ("test_sps_at_10", "test_recall_at_10") if name not in metrics]
    if missing:
        raise ParameterError(f"--default-run-id: run {run_id} has no {', '.join(missing)}; expected a training run "
                             f"with test metrics")
    return {"sps@10": metrics["test_sps_at_10"], "recall@10": metrics["test_recall_at_10"],
            "val_sps@10": metrics.get("best_val_sps_at_10", float("nan"))}


def table(rows: list[tuple[str, float, float, float, float]]) -> str:
    lines = ["| configuration | val sps@10 (%) | test sps@10 (%) | test recall@10 (%) | wall time (s) |",
             "|---|---|---|---|---|"]
    for label, val, sps, recall, seconds in rows:
        shown_val = "–" if val != val else f"{100 * val:.2f}"  # NaN: not logged
        shown_time = "–" if seconds != seconds else f"{seconds:.0f}"
        lines.append(f"| {label} | {shown_val} | {100 * sps:.2f} | {100 * recall:.2f} | {shown_time} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=integer, default=20)
    parser.add_argument("--timeout", type=positive_seconds, default=3600,
                        help="seconds of the study; 0 = no limit (default: 3600)")
    parser.add_argument("--epochs-per-trial", type=integer, default=6)
    parser.add_argument("--warmup-epochs", type=integer, default=2, help="epochs before pruning may stop a trial")
    parser.add_argument("--final-epochs", type=integer, default=0,
                        help="retrain the best configuration for this many epochs and export that (0 = the trial's)")
    parser.add_argument("--seed", type=seed, default=0)
    add_data_argument(parser)
    parser.add_argument("--study-name", default=None,
                        help="default: a fresh benchmark-<timestamp> study (a fixed budget must not resume one)")
    parser.add_argument("--storage", default="sqlite:///tuning/benchmark.db")
    parser.add_argument("--search-space", type=path, default=DEFAULT_SEARCH_SPACE)
    parser.add_argument("--export", type=path, default=Path("tuning/benchmark_best_model.keras"))
    parser.add_argument("--register-name", default="seqrec-benchmark",
                        help="registered model of the benchmark (not the served 'seqrec')")
    parser.add_argument("--default-run-id", default=None,
                        help="read the default configuration's test metrics from this MLflow run instead of training")
    args = parser.parse_args(argv)

    import mlflow

    from seqrec.core.config import TrainConfig

    from seqrec.experiment.commands import check_tune, open_tracking_store
    from seqrec.experiment.tracking import train_run
    from seqrec.experiment.tune import run_study

    study_name = args.study_name or time.strftime("benchmark-%Y%m%d-%H%M%S")
    check_tune(argparse.Namespace(**{**vars(args), "study_name": study_name}, heartbeat_interval=60,
                                  grace_period=None))
    open_tracking_store()  # workers started together on a new SQLite store
    default_logged = _default_from_run(args.default_run_id) if args.default_run_id else None
    mlflow.set_experiment("seqrec-benchmark")
    split = load_data(args.data)

    started = time.perf_counter()
    tuned = run_study(split, n_trials=args.n_trials, timeout=args.timeout, study_name=study_name,
                      storage=args.storage, epochs_per_trial=args.epochs_per_trial, seed=args.seed,
                      search_space_path=args.search_space, export_path=args.export,
                      register_name=args.register_name, final_epochs=args.final_epochs,
                      warmup_epochs=args.warmup_epochs)
    tune_seconds = time.perf_counter() - started

    if default_logged:
        default, default_seconds = default_logged, float("nan")
        default_label = f"default TrainConfig (run {args.default_run_id[:8]})"
    else:
        started = time.perf_counter()
        summary = train_run(TrainConfig(seed=args.seed), split, run_name=f"default-for-{study_name}")
        default_seconds = time.perf_counter() - started
        default = {**summary.test, "val_sps@10": summary.val["sps@10"]}
        default_label = "default TrainConfig"

    print(f"\nstudy {study_name!r}: {tuned.n_trials} trials {tuned.states}, {args.epochs_per_trial} epochs each, "
          f"best trial {tuned.best_trial} (validation sps@10 {100 * tuned.best_value:.2f} %), "
          f"trials {tuned.study_seconds:.0f} s of the {tune_seconds:.0f} s")
    print("best params:", ", ".join(f"{name}={value}" for name, value in tuned.best_params.items()))
    print("default:", ", ".join(f"{name}={value}" for name, value in vars(TrainConfig(seed=args.seed)).items()))
    print(table([
        (f"tuned ({args.n_trials} trials{f', refit {args.final_epochs} epochs' if args.final_epochs else ''}, "
         f"exported {args.export.name})", tuned.val["sps@10"], tuned.test["sps@10"],
         tuned.test["recall@10"], tune_seconds),
        (default_label, default["val_sps@10"], default["sps@10"], default["recall@10"], default_seconds),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/tune.py", main))
