"""Settings of one baseline compared on the validation users: how a baseline's defaults are chosen.

    python benchmarks/baseline_grid.py --data /tmp/clean --method dotmf '{"factors": 64}' '{"factors": 128}'
    python benchmarks/baseline_grid.py --data /tmp/clean --method dotmf --seeds 3 '{"factors": 128}'

Each JSON object is a set of the baseline's constructor arguments (``seqrec.core.baselines``); every one is fitted
on the training users (same-second ratings in ``--tie-order``, ``movie`` as ``seqrec baselines`` fits them) and
scored on the **validation** users only (never the test users), once per seed
(``seed`` 0, 1, ...). Prints one Markdown row per setting: mean ± std over the seeds of sps@10, the tie-aware
sps@10 where the split's times are known, recall@10 and item coverage, and the fit time. Nothing is logged to
MLflow: run the chosen setting with ``seqrec baselines`` for that.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import cell  # noqa: E402  (mean ± std over the seeds, as the reproduction's tables)

from seqrec.core.baselines import BASELINES, evaluate_baseline, make_baseline  # noqa: E402
from seqrec.core.sources import load_data  # noqa: E402
from seqrec.core.ties import TIE_ORDERS, fitted_in_tie_order, train_tie_order, with_times  # noqa: E402
from seqrec.experiment.cli import Parser, integer, script_status  # noqa: E402

COLUMNS = [("sps@10", 100), ("sps_tie@10", 100), ("recall@10", 100), ("item_coverage", 1)]


def settings(text: str) -> dict[str, object]:
    """A JSON object of constructor arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"factors\": 64}}', got {text!r} "
                                         f"({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"factors\": 64}}', got {text!r}")
    if not all(map(is_finite, value.values())):  # JSON's NaN, Infinity and 1e999 pass every range check
        raise argparse.ArgumentTypeError(f"expected a JSON object of finite numbers, got {text!r}")
    return value


def is_finite(value: object) -> bool:
    """A setting with no nan or infinite number in it (a list's too)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return all(map(is_finite, value)) if isinstance(value, list) else True


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="auto", help="a prepared split (default: auto)")
    parser.add_argument("--method", choices=sorted(BASELINES), required=True)
    parser.add_argument("--seeds", type=integer, default=1, help="seeds 0..N-1 per setting (default: 1)")
    parser.add_argument("--tie-order", choices=list(TIE_ORDERS), default="movie",
                        help="order of same-second training ratings, as `seqrec baselines` (default: movie)")
    parser.add_argument("settings", type=settings, nargs="+", help="JSON objects of constructor arguments")
    args = parser.parse_args(argv)
    if args.seeds < 1:  # no seed: every row nan
        parser.error(f"argument --seeds: expected at least 1 seed, got {args.seeds}")
    split = with_times(load_data(args.data))
    # as seqrec baselines fits them (seed 0), so the chosen setting is the one it runs
    split = fitted_in_tie_order(split, train_tie_order(split, args.tie_order))
    takes_seed = "seed" in inspect.signature(BASELINES[args.method]).parameters
    for number, setting in enumerate(args.settings):
        runs, seconds = [], []
        for seed in range(args.seeds):
            started = time.perf_counter()
            try:
                model = make_baseline(args.method, **{**({"seed": seed} if takes_seed else {}), **setting})
            except (TypeError, ValueError) as error:  # an unknown argument or a value out of range
                parser.error(f"settings {json.dumps(setting)}: {error}")
            model.fit(split.train, split.n_items)
            seconds.append(time.perf_counter() - started)
            runs.append(evaluate_baseline(model, split, "val", 10))
        shown = [(name, scale) for name, scale in COLUMNS if name in runs[0]]  # sps_tie@10 where times are known
        if number == 0:
            print("| settings (validation users) | " + " | ".join(name for name, _ in shown) + " | fit (s) |")
            print("|---|" + "---:|" * (len(shown) + 1))
        print(f"| `{json.dumps(setting)}` | " + " | ".join(cell([run[name] for run in runs], scale, 2)
                                                         for name, scale in shown)
              + f" | {np.mean(seconds):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/baseline_grid.py", main))
