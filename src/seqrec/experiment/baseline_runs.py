"""Each baseline of :mod:`seqrec.core.baselines` in its own MLflow run (run name = baseline name, tag ``method``),
with validation (``val_``) and test (``test_``) metrics, and the new-user curve of the test users (metrics and
``plots/new_users.png``, as a trained model's): what ``seqrec report`` puts beside RNN-CCE. Like a training run, the
baselines first end the runs that killed processes of this host left RUNNING
(:func:`seqrec.experiment.owners.close_orphaned_runs`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow

from seqrec.core.baselines import TABLE3_BASELINES, Baseline, evaluate_baseline, make_baseline
from seqrec.core.data import DataError, Split
from seqrec.core.figures import new_user_figure
from seqrec.core.metrics import format_metric, mlflow_name
from seqrec.core.scoring import new_user_curve, new_user_metrics
from seqrec.core.ties import fitted_in_tie_order, tie_order_name, train_tie_order
from seqrec.experiment.owners import close_orphaned_runs, owner
from seqrec.experiment.plots import log_figures
from seqrec.experiment.records import entry_point_run, log_data, log_params_once


@dataclass(frozen=True)
class BaselineRun:
    """One baseline's MLflow run: its id, parameters, fit time and metrics (fractions, item coverage a count)."""

    name: str
    method: str
    run_id: str
    params: dict[str, object]
    fit_seconds: float
    val: dict[str, float]
    test: dict[str, float]


def run_baselines(split: Split, names: list[str] | tuple[str, ...] = TABLE3_BASELINES, k: int = 10,
                  params: dict[str, dict[str, object]] | None = None, tie_order: str = "movie",
                  seed: int = 0) -> dict[str, BaselineRun]:
    """Fit and evaluate each named baseline in its own MLflow run (run name = name, tag ``method``).

    ``tie_order`` puts same-second training ratings in the order RNN-CCE trains on (``movie``: by MovieID,
    as the authors' files mostly have them; drawn once, without noise): it matters to MC.
    """
    if not 1 <= k <= split.n_items:
        raise DataError("--k", None, f"a cut-off between 1 and {split.n_items} (the catalogue size)", str(k))
    movie_ids = split.catalogue.movie_ids if split.catalogue is not None else None
    models = [make_baseline(name, movie_ids, **(params or {}).get(name, {})) for name in names]  # bad params: now
    ties = train_tie_order(split, tie_order)
    split = fitted_in_tie_order(split, ties, seed)
    run_params = {"k": k, "tie_order_used": tie_order_name(ties)}
    close_orphaned_runs()
    # Under `mlflow run` the entry point's run (MLFLOW_RUN_ID) becomes the parent of one nested run per
    # baseline; otherwise the first baseline would resume it and the others would be unrelated runs.
    with entry_point_run("baselines") as parent:
        if parent is not None:
            log_data(split)
        nested = mlflow.active_run() is not None
        return {name: _run_one(model, split, k, run_params, nested) for name, model in zip(names, models)}


def _run_one(model: Baseline, split: Split, k: int, run_params: dict[str, object], nested: bool) -> BaselineRun:
    with mlflow.start_run(run_name=model.name, nested=nested) as run:
        mlflow.set_tags({"method": model.method, "seqrec.kind": "baseline", **owner()})
        log_params_once({**model.params(), **run_params})
        log_data(split)
        started = time.perf_counter()
        model.fit(split.train, split.n_items)
        fit_seconds = time.perf_counter() - started
        val = evaluate_baseline(model, split, "val", k)
        test = evaluate_baseline(model, split, "test", k)
        mlflow.log_metrics({"fit_seconds": fit_seconds,
                            **{mlflow_name(metric, "val_"): value for metric, value in val.items()},
                            **{mlflow_name(metric, "test_"): value for metric, value in test.items()}})
        log_new_user_curve(model, split, k)
    return BaselineRun(model.name, model.method, run.info.run_id, model.params(), fit_seconds, val, test)


def log_new_user_curve(model: Baseline, split: Split, k: int) -> None:
    """The test users' sps@k and recall@k given their first 1, 2, 3, 5, 10, 20 items (the new-user question, asked
    of every model): ``test_new_user_sps_at_10_given_3``... and ``plots/new_users.png`` in the active run."""
    curve = new_user_curve(model.score, split.test, k)
    mlflow.log_metrics({mlflow_name(name, "test_"): value for name, value in new_user_metrics(curve, k).items()})
    log_figures({"new_users.png": new_user_figure(curve, k, "test")})


def format_results(results: dict[str, BaselineRun], title: str = "") -> str:
    """One line per baseline (see :func:`seqrec.core.metrics.format_metric`)."""
    lines = [title] if title else []
    for result in results.values():
        shown = "  ".join(f"{metric}={format_metric(metric, value).removesuffix(' %')}"
                          for metric, value in result.test.items())
        lines.append(f"{result.method:<4} {shown}  (fit {result.fit_seconds:.1f} s, run {result.run_id})")
    return "\n".join(lines)
