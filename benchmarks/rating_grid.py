"""Settings of one rating predictor compared on validation ratings: how the rating defaults are chosen.

    python benchmarks/rating_grid.py --ratings ../shared/data/ml-1m/ratings.partial.dat --predictor item_autorec \
        '{"reg": 1e-4}' '{"reg": 1e-5, "activation": "selu", "dropout": 0.5}'

The ratings are split 90/10 as ``seqrec ratings --seed S`` splits them, and the test 10 % are set aside unread.
A seeded 10 % of the *training* ratings is the validation set: each setting (a JSON object of the predictor's
constructor arguments, ``seqrec.core.explicit``) is fitted on the rest (its own early stopping holds out a
further share of those) and scored on it, once per seed (``seed`` 0, 1, ...). Prints one Markdown row per
setting: mean ± std over the seeds of the validation RMSE and MAE, the epoch early stopping kept, and the fit
time. Nothing is logged to MLflow: run the chosen setting with ``seqrec ratings`` for that.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_grid import settings  # noqa: E402  (the same JSON settings)
from reproduce import cell  # noqa: E402  (mean ± std over the seeds, as the reproduction's tables)

from seqrec.core.config import PREDICTORS  # noqa: E402
from seqrec.core.data import DataError  # noqa: E402
from seqrec.core.explicit import RatingSplit, evaluate_predictor, make_predictor, random_split  # noqa: E402
from seqrec.core.ratings import read_ratings  # noqa: E402
from seqrec.core.sources import resolve_ratings  # noqa: E402
from seqrec.experiment.cli import Parser, integer, script_status  # noqa: E402

VALIDATION_SHARE = 0.1


def validation_split(split: RatingSplit, seed: int) -> RatingSplit:
    """The training ratings split again: fit on 90 % of them, score on the other 10 % (the test ratings unused)."""
    order = np.random.default_rng(100 + seed).permutation(len(split.train_ratings))
    held, kept = np.split(order, [len(order) // int(round(1 / VALIDATION_SHARE))])
    pick = lambda rows: (split.train_users[rows], split.train_items[rows], split.train_ratings[rows])  # noqa: E731
    return RatingSplit(*pick(kept), *pick(held), split.n_users, split.n_items)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", default="auto", help="raw ratings, as `seqrec ratings --ratings` (default: auto)")
    parser.add_argument("--predictor", choices=PREDICTORS, required=True)
    parser.add_argument("--seeds", type=integer, default=1, help="seeds 0..N-1 per setting (default: 1)")
    parser.add_argument("settings", type=settings, nargs="+", help="JSON objects of constructor arguments")
    args = parser.parse_args(argv)
    if args.seeds < 1:  # no seed: every row nan
        parser.error(f"argument --seeds: expected at least 1 seed, got {args.seeds}")
    source = resolve_ratings(args.ratings)
    table = read_ratings(source)
    try:
        splits = [validation_split(random_split(table, 0.1, seed), seed) for seed in range(args.seeds)]
    except ValueError as error:  # too few ratings to hold 10 % out, twice
        raise DataError(source, None, "enough ratings for a 90/10 split and a 10 % validation share of its training "
                        "ratings", str(error)) from None
    print("| settings (validation ratings) | RMSE | MAE | epoch kept | fit (s) |\n|---|---:|---:|---:|---:|")
    for setting in args.settings:
        runs, epochs, seconds = [], [], []
        for seed, split in enumerate(splits):
            started = time.perf_counter()
            try:
                predictor = make_predictor(args.predictor, **setting)
            except (TypeError, ValueError) as error:  # an unknown argument or a value out of range
                parser.error(f"settings {json.dumps(setting)}: {error}")
            predictor.fit(split, seed)
            seconds.append(time.perf_counter() - started)
            runs.append(evaluate_predictor(predictor, split))
            stopping = getattr(predictor, "stopping", None)
            epochs.append(stopping.best_epoch + 1 if stopping is not None and stopping.best_weights is not None
                          else None)
        print(f"| `{json.dumps(setting)}` | {cell([run['rmse'] for run in runs], 1, 4)} | "
              f"{cell([run['mae'] for run in runs], 1, 4)} | {cell(epochs, 1, 0)} | {np.mean(seconds):.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/rating_grid.py", main))
