"""Finished runs of different models or options as one ensemble: the mean of their softmax probabilities.

    python benchmarks/ensemble.py --runs SASREC_SEED0,SASREC_SEED1 --runs GRU_SEED0,GRU_SEED1

The zoo's ``--ensemble`` grows one variant's seeds, all trained with the same options. This one mixes any finished
runs of a tracking store (``MLFLOW_TRACKING_URI``): the searched SASRec+ with the default GRU, say, two models that
err on different users more than two seeds of one model do. Each ``--runs`` is one group, comma-separated run ids:
a group's members are averaged first, then the groups, so each model weighs the same however many seeds it has.

The members must have trained on the same data (their ``data_sha256`` param); the split is read from their
``data_path`` unless ``--data`` gives where it is now. Prints each group's row and the mixed ensemble's, with
validation and test figures as in the zoo's table; choose a mix on the validation columns, never the test ones
(``--validation-only`` prints no test figure at all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import add_validation_only, table_head  # noqa: E402
from zoo import (ensemble_columns, ensemble_row, mean_probabilities, member_probabilities,  # noqa: E402
                 scored_inputs)  # the zoo's ensembles

from seqrec.core.sources import load_data  # noqa: E402
from seqrec.core.ties import with_times  # noqa: E402
from seqrec.experiment.cli import Parser, script_status  # noqa: E402
from seqrec.experiment.errors import ParameterError  # noqa: E402

if TYPE_CHECKING:
    from mlflow.entities import Run


def run_ids(text: str) -> list[str]:
    """One group: comma-separated MLflow run ids, at least one."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"expected comma-separated run ids, got {text!r}")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=run_ids, action="append", required=True,
                        help="one group of the ensemble: comma-separated run ids (repeat for each group)")
    parser.add_argument("--data", help="where the members' split is now (default: their logged data_path)")
    add_validation_only(parser)
    args = parser.parse_args(argv)

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = {run_id: client.get_run(run_id) for group in args.runs for run_id in group}  # unknown ids: one line
    split = with_times(load_data(args.data or shared_param(runs, "data_path")))
    trained_on = shared_param(runs, "data_sha256")
    if split.checksum != trained_on:
        raise ParameterError(f"--data: {split.directory} is not the data the runs trained on (data_sha256 "
                             f"{trained_on[:12]}..., this split's {split.checksum[:12]}...)")
    k = int(shared_param(runs, "k"))
    shown = ensemble_columns(k, args.validation_only)
    inputs = scored_inputs(split, args.validation_only)
    print(table_head("ensemble", shown))
    groups, seconds = [], 0.0
    for group in args.runs:
        groups.append(mean_probabilities([member_probabilities(run_id, inputs) for run_id in group]))
        spent = sum(runs[run_id].data.metrics.get("train_seconds", np.nan) for run_id in group)
        print(ensemble_row(group_name(runs, group), groups[-1], spent, split, k, shown), flush=True)
        seconds += spent
    if len(groups) > 1:
        print(ensemble_row(" + ".join(group_name(runs, group) for group in args.runs), mean_probabilities(groups),
                           seconds, split, k, shown))
    return 0


def shared_param(runs: dict[str, Run], name: str) -> str:
    """A param every member logged with one value (the data, the cut-off): a mix of splits is refused."""
    values = {run.data.params.get(name) for run in runs.values()}
    if len(values) != 1 or None in values:
        raise ParameterError(f"--runs: the members must share one {name}, got {sorted(map(str, values))}")
    return values.pop()


def group_name(runs: dict[str, Run], group: list[str]) -> str:
    """A group's row name: its members' model (and loss, when not cce) and how many runs."""
    names = sorted({member_name(runs[run_id].data.params) for run_id in group})
    return f"{'/'.join(names)} × {len(group)}"


def member_name(params: dict[str, str]) -> str:
    """A run's model, and its loss when not the CCE: ``sasrec``, ``rnn:bpr``."""
    model, loss = params.get("model", "?"), params.get("loss", "cce")
    return model if loss == "cce" else f"{model}:{loss}"


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/ensemble.py", main))
