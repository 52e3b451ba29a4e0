"""Rating prediction (:mod:`seqrec.core.explicit`) in MLflow: one run per predictor, tagged ``rating_predictor``,
with the split's params, ``test_rmse``, ``test_mae`` and ``fit_seconds``; printed beside the published anchors."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow

from seqrec.core.explicit import RatingSplit, evaluate_predictor, make_predictor
from seqrec.core.prepare import sha256_file
from seqrec.experiment.owners import close_orphaned_runs, owner
from seqrec.experiment.records import entry_point_run

# Published RMSE figures to read ours against (their data and split, not ours: see docs/models.md).
ANCHORS = {
    "item_autorec": "I-AutoRec 0.831 (ML-1M, 90/10; Sedhain et al. 2015)",
    "user_autorec": "DeepRecommender 0.9099 (full Netflix Prize; Kuchaiev & Ginsburg 2017)",
    "biased_mf": "Keras dot-product MF 0.862 (ML-1M); Spotlight explicit MF 0.946 (ML-100K)",
}


def run_rating_predictors(split: RatingSplit, names: list[str], ratings_path: Path, seed: int, test_share: float,
                          params: dict[str, dict[str, object]]) -> dict[str, dict[str, float]]:
    """Fit and evaluate each predictor in its own MLflow run (nested under an `mlflow run` entry point's run)."""
    close_orphaned_runs()
    results = {}
    checksum = sha256_file(ratings_path)
    with entry_point_run("ratings"):
        for name in names:
            with mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None):
                mlflow.set_tags({**owner(), "rating_predictor": name})
                mlflow.log_params({"predictor": name, "ratings_path": str(ratings_path.resolve()),
                                   "ratings_sha256": checksum, "seed": seed, "test_share": test_share,
                                   "n_train_ratings": len(split.train_ratings),
                                   "n_test_ratings": len(split.test_ratings), **params.get(name, {})})
                started = time.perf_counter()
                predictor = make_predictor(name, **params.get(name, {})).fit(split, seed)
                fit_seconds = time.perf_counter() - started
                test = evaluate_predictor(predictor, split)
                mlflow.log_metrics({**{f"test_{key}": value for key, value in test.items()},
                                    "fit_seconds": fit_seconds, **stopped_at(predictor)})
                results[name] = {**test, "fit_seconds": fit_seconds}
    return results


def stopped_at(predictor) -> dict[str, float]:
    """The held-out training ratings' RMSE and the epoch kept, for a predictor that stopped early."""
    if getattr(predictor, "validation_rmse", None) is None:
        return {}
    return {"validation_rmse": predictor.validation_rmse, "best_epoch": predictor.stopping.best_epoch + 1}


def format_results(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of test RMSE/MAE and fit time, with the published anchor of each model."""
    lines = ["| predictor | RMSE | MAE | fit time (s) | published anchor |", "|---|---:|---:|---:|---|"]
    lines += [f"| {name} | {m['rmse']:.4f} | {m['mae']:.4f} | {m['fit_seconds']:.0f} | {ANCHORS.get(name, '–')} |"
              for name, m in results.items()]
    return "\n".join(lines)
