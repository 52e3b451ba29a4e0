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

``--slist-weights 0.2,0.5`` also prints each group, and the mix, blended with SLIST (``seqrec.core.baselines``,
fitted here in seconds on the members' training users, in their order inside a second, drawn as a run fits it:
their ``tie_noise``, their seed where they share one): ``(1 - b) × the
group's probabilities + b × SLIST's outputs as a distribution``, each over the items a user has not read, one row
per weight ``b``: the blend ``seqrec train --slist-weight b`` serves (``seqrec.core.ensemble.blended_distribution``).
A run trained with ``slist_weight`` then enters with its network alone. A network and a linear model of the
transitions err on different users; choose ``b`` on the validation columns. ``--slist-settings '{"window": 10}'``
(repeatable) blends SLIST fitted with other settings than a run's (window 20, decay 0.8, L2 300, alpha 0), one set of
rows each, the group's probabilities computed once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_grid import settings  # noqa: E402
from reproduce import add_validation_only, table_head  # noqa: E402
from zoo import (ensemble_columns, ensemble_row, mean_probabilities, member_probabilities,  # noqa: E402
                 scored_inputs)  # the zoo's ensembles

from mlflow.entities import Run  # noqa: E402
from seqrec.core.baselines import SLIST, user_item_matrix  # noqa: E402
from seqrec.core.data import Sequences, Split  # noqa: E402
from seqrec.core.ensemble import blended_distribution  # noqa: E402
from seqrec.core.ties import train_tie_order  # noqa: E402
from seqrec.core.training import run_slist  # noqa: E402
from seqrec.experiment.cli import Parser, run_groups, script_status  # noqa: E402
from seqrec.experiment.ensemble_run import group_name, member_runs, members_split, shared_param  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=run_groups, action="append", required=True,
                        help="one group of the ensemble: comma-separated run ids (repeat for each group)")
    parser.add_argument("--data", help="where the members' split is now (default: their logged data_path)")
    parser.add_argument("--slist-weights", type=blend_weights, default=[],
                        help="comma-separated weights in (0, 1] of SLIST in a blend with each group and the mix")
    parser.add_argument("--slist-settings", type=settings, action="append",
                        help="a JSON object of SLIST's settings for the blends, such as '{\"window\": 10}' (repeat "
                             "for more; default: a run's own)")
    add_validation_only(parser)
    args = parser.parse_args(argv)
    if args.slist_settings and not args.slist_weights:
        parser.error("--slist-settings needs --slist-weights: the weights of SLIST in the blends")
    for setting in args.slist_settings or []:  # refused before any run is read
        try:
            SLIST(**setting)
        except (TypeError, ValueError) as error:  # an unknown setting or a value out of range
            parser.error(f"--slist-settings {json.dumps(setting)}: {error}")
    groups_of_ids = [group for given in args.runs for group in given]
    runs = member_runs(groups_of_ids)  # unknown ids: one line
    split = members_split(runs, args.data)
    k = int(shared_param(runs, "k"))
    shown = ensemble_columns(k, args.validation_only)
    inputs = scored_inputs(split, args.validation_only)
    linear = {json.dumps(setting) if setting else "": slist_outputs(split, runs, inputs, setting)
              for setting in (args.slist_settings or [{}])} if args.slist_weights else {}
    print(table_head("ensemble", shown))
    groups, seconds = [], 0.0
    for group in groups_of_ids:
        groups.append(mean_probabilities([member_probabilities(run_id, inputs, network_only=bool(args.slist_weights))
                                          for run_id in group]))
        spent = sum(runs[run_id].data.metrics.get("train_seconds", np.nan) for run_id in group)
        print_rows(group_name(runs, group), groups[-1], spent, linear, args.slist_weights, split, k, shown)
        seconds += spent
    if len(groups) > 1:
        print_rows(" + ".join(group_name(runs, group) for group in groups_of_ids), mean_probabilities(groups),
                   seconds, linear, args.slist_weights, split, k, shown)
    return 0


def blend_weights(text: str) -> list[float]:
    """``0.2,0.5``: SLIST's weights in the blends, each in (0, 1]."""
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        weights = []
    if not weights or not all(0 < weight <= 1 for weight in weights):
        raise argparse.ArgumentTypeError(f"expected comma-separated weights in (0, 1] such as 0.2,0.5, got {text!r}")
    return weights


def slist_outputs(split: Split, runs: dict[str, Run], inputs: dict[str, Sequences],
                  setting: dict[str, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SLIST fitted on the training users as a run trained with ``slist_weight`` fits it: in the members' order
    inside a second (their ``tie_order`` and ``tie_noise``), drawn with their seed where they share one (else 0),
    with ``setting``'s arguments. Its outputs for each group of users, and which items each user has read."""
    seeds = {run.data.params.get("seed", "0") for run in runs.values()}
    ties = train_tie_order(split, shared_param(runs, "tie_order"), float(shared_param(runs, "tie_noise")))
    model = run_slist(split, ties, int(seeds.pop()) if len(seeds) == 1 else 0, setting)
    return {users: (model.predicted(given), user_item_matrix(given, split.n_items).toarray() > 0)
            for users, given in inputs.items()}


def print_rows(name: str, probabilities: dict[str, np.ndarray], seconds: float,
               linear: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], weights: list[float], split: Split, k: int,
               shown: list[tuple[str, str, float, int]]) -> None:
    """A group's (or the mix's) row, then its blend at each weight with SLIST fitted with each setting."""
    print(ensemble_row(name, probabilities, seconds, split, k, shown), flush=True)
    for setting, outputs in linear.items():
        for weight in weights:
            blend = {users: blended_distribution(probabilities[users], *outputs[users], weight)
                     for users in probabilities}
            label = f"{name} + SLIST {setting} × {weight:g}" if setting else f"{name} + SLIST × {weight:g}"
            print(ensemble_row(label, blend, seconds, split, k, shown), flush=True)


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/ensemble.py", main))
