"""Choosing ``rating_min_history`` for finished ``rating_input`` runs: their new-user curve with the stars and
without.

    python benchmarks/star_cutoff.py --runs ID,ID,ID,ID,ID                 # the validation users: choose here
    python benchmarks/star_cutoff.py --runs ID,ID,ID,ID,ID --users test    # after the choice

Each run's logged ``recommender`` scores the first L = 1, 2, ... ``--longest`` items of every user's input half
(the goal is the second half, as in the new-user curve), once with the stars and once with every star unknown (0).
A model with ``rating_min_history=N`` gives the second for L < N and the first from N on, and training is the same
with it or without, so each candidate N's curve follows from these two without training anything. Its score is the
mean sps@k over L = 1..``--longest`` (every length weighs the same), per run, then over the runs; N = 0 reads the
stars always. Users of the authors' split have at least 10 items in their input half, so N <= 10 leaves the
whole-half figures as they are. Runs are read from the tracking store (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np

from seqrec.core.data import Sequences
from seqrec.core.scoring import new_user_curve, score_users
from seqrec.experiment.cli import Parser, integer, run_groups, script_status
from seqrec.experiment.ensemble_run import member_runs, members_split, shared_param
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.serve import load_model


def star_curves(run_id: str, users: Sequences, longest: int, k: int) -> np.ndarray:
    """sps@k of one run given the first 1..``longest`` items, then the whole input half: row 0 with the stars, row 1
    with every star unknown (its whole-half figure is what a request that sends no stars gets)."""
    model = load_model(f"runs:/{run_id}/recommender")
    unknown = replace(users, ratings=np.zeros_like(users.ratings))
    counts = tuple(range(1, longest + 1))
    return np.array([new_user_curve(lambda given: score_users(model, given), group, k, counts)["sps"]
                     for group in (users, unknown)])


def cutoff_scores(curves: np.ndarray, cutoffs: list[int]) -> np.ndarray:
    """Runs x cut-offs: each run's mean sps over the lengths when histories shorter than N go without their stars.
    ``curves``: runs x (stars, unknown) x lengths 1, 2, ... (the whole half, last, is left out)."""
    curves = curves[:, :, :-1]
    lengths = np.arange(1, curves.shape[2] + 1)
    shorter = lengths[None, :] < np.array(cutoffs)[:, None]  # cut-offs x lengths
    chosen = np.where(shorter[None], curves[:, None, 1], curves[:, None, 0])  # runs x cut-offs x lengths
    return chosen.mean(axis=2)


def print_tables(curves: np.ndarray, cutoffs: list[int], k: int) -> None:
    """The two mean curves by length, then each cut-off's score, its gain over N = 0 and on how many runs it wins."""
    longest = curves.shape[2] - 1
    print(f"| mean of {len(curves)} runs, sps@{k} (%) | " + " | ".join(f"L = {n}" for n in range(1, longest + 1))
          + " | whole half |")
    print("|---|" + "---:|" * (longest + 1))
    for name, row in (("with the stars", 0), ("every star unknown", 1)):
        print(f"| {name} | " + " | ".join(f"{100 * value:.2f}" for value in curves[:, row].mean(axis=0)) + " |")
    scores = 100 * cutoff_scores(curves, [0, *cutoffs])
    print(f"\n| rating_min_history | mean sps@{k} over L = 1..{longest} (%) | gain over 0 | runs it wins |")
    print("|---:|---:|---:|---:|")
    for column, cutoff in enumerate([0, *cutoffs]):
        gain = scores[:, column] - scores[:, 0]
        spread = f" ± {scores[:, column].std(ddof=1):.2f}" if len(scores) > 1 else ""
        print(f"| {cutoff} | {scores[:, column].mean():.3f}{spread} | {gain.mean():+.3f} | "
              f"{int((gain > 0).sum())} of {len(gain)} |")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=run_groups, required=True,
                        help="comma-separated ids of finished runs trained with rating_input=true")
    parser.add_argument("--users", choices=["validation", "test"], default="validation",
                        help="whose curves: choose on validation, read test after the choice")
    parser.add_argument("--longest", type=integer, default=20, help="the longest history scored (items)")
    parser.add_argument("--max-cutoff", type=integer, default=10, help="candidates N = 2..this")
    parser.add_argument("--data", help="where the runs' split is now (default: their logged data_path)")
    args = parser.parse_args(argv)
    for name in ("longest", "max_cutoff"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    ids = [run_id for group in args.runs for run_id in group]
    runs = member_runs([ids])
    without = [run_id for run_id, run in runs.items() if run.data.params.get("rating_input") != "true"]
    if without:
        raise ParameterError(f"--runs: run {without[0]} did not train with rating_input=true: it reads no stars")
    split = members_split(runs, args.data)
    k = int(shared_param(runs, "k"))
    users = split.val if args.users == "validation" else split.test
    curves = np.array([star_curves(run_id, users, args.longest, k) for run_id in ids])
    print(f"{args.users} users of {split.directory}, runs {', '.join(run_id[:8] for run_id in ids)}\n")
    print_tables(curves, list(range(2, args.max_cutoff + 1)), k)
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/star_cutoff.py", main))
