"""Why MC gets ~25 % sps@10 here and ~29 % in the paper: MC under each training order, with and without the
training rows whose position is imputed (unknown time, 13.6 % of the authors' rebuilt training file).

    python benchmarks/mc_ablation.py            # authors' split (../shared/data/ml1m-split)

Prints two tables of the first-order Markov chain (``seqrec.baselines``). The first: validation and test
sps@10 / recall@10 for each order of the training file. The second is the controlled comparison the training
file cannot give: MC fitted on the 500 *validation* users' whole sequences, which are in the authors' exact
order, against the same sequences with each second re-ordered as the training file has to be; scored on the
test users. Nothing is logged to MLflow: this is a diagnostic, a few seconds per row on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from seqrec.core.baselines import MarkovChain, evaluate_baseline, transition_counts
from seqrec.core.data import DataError, Sequences, Split
from seqrec.core.sources import load_data
from seqrec.core.ties import TieOrder, raw_timestamps, tie_order, train_tie_order, train_timestamps
from seqrec.experiment.cli import Parser, integer, script_status


def evaluate(split: Split, train: Sequences, transitions: sp.csr_matrix | None = None) -> list[float]:
    """val sps, test sps, test recall (%) of MC fitted on ``train`` (popularity from it), optionally with
    its transition counts replaced."""
    model = MarkovChain().fit(train, split.n_items)
    if transitions is not None:
        model.transitions = transitions
    shown = replace(split, train=train)
    val, test = evaluate_baseline(model, shown, "val"), evaluate_baseline(model, shown, "test")
    return [100 * val["sps@10"], 100 * test["sps@10"], 100 * test["recall@10"]]


def summed_draws(ties: TieOrder, sequences: Sequences, n_items: int, draws: int) -> tuple[Sequences, sp.csr_matrix]:
    """The first of ``draws`` tie-order draws and the transition counts summed over all of them."""
    drawn = [ties.apply(sequences, np.random.default_rng(seed)) for seed in range(draws)]
    return drawn[0], sum(transition_counts(draw, n_items) for draw in drawn)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="auto")
    parser.add_argument("--draws", type=integer, default=8, help="tie-order draws summed for the noisy rows")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"argument --draws: expected at least 1 draw, got {args.draws}")
    split = load_data(args.data)
    timestamps = train_timestamps(split)
    if timestamps is None:
        raise DataError(split.directory, None, "a split with training times (train_set_timestamps, or raw ratings in "
                        "../ml-1m/): without them neither the tie orders nor the imputed rows are known", "none")
    known = timestamps >= 0
    movie = train_tie_order(split, "movie", 0.0, timestamps).apply(split.train, np.random.default_rng(0))
    rows: list[tuple[str, list[float]]] = [
        ("file order (the rebuilt file)", evaluate(split, split.train)),
        ("same-second ratings shuffled (seed 0)",
         evaluate(split, train_tie_order(split, "shuffle", 0.0, timestamps).apply(split.train,
                                                                                   np.random.default_rng(0)))),
        ("by MovieID inside a second (baselines' default)", evaluate(split, movie)),
        # unknown-time rows are their own tie groups, so the movie order leaves them where they are
        ("  + only transitions between known-time rows",
         evaluate(split, movie, transition_counts(movie, split.n_items, known[:-1] & known[1:]))),
        ("  + imputed rows removed before chaining", evaluate(split, movie.select(known))),
    ]
    for noise in (0.4, 0.8):
        ties = train_tie_order(split, "movie", noise, timestamps)
        rows.append((f"MovieID + N(0, {noise}) noise, {args.draws} draws summed",
                     evaluate(split, *summed_draws(ties, split.train, split.n_items, args.draws))))
    print(f"MC (first-order Markov chain), {len(split.val)} validation / {len(split.test)} test users, k = 10")
    print("| training order | val sps@10 (%) | test sps@10 (%) | test recall@10 (%) |")
    print("|---|---|---|---|")
    for label, (val_sps, test_sps, test_recall) in rows:
        print(f"| {label} | {val_sps:.2f} | {test_sps:.2f} | {test_recall:.2f} |")
    print()
    print_exact_order_comparison(split, args.draws)
    return 0


def print_exact_order_comparison(split: Split, draws: int) -> None:
    """MC fitted on the validation users' whole sequences: the authors' exact order inside each second against
    the orders the rebuilt training file has to use (the test users score both; no validation figure)."""
    fitted = split.val
    times = raw_timestamps(split, fitted)
    if times is None:
        print("(no raw ratings next to the split: the exact-order comparison needs the validation users' times)")
        return
    movie_ids = split.catalogue.movie_ids
    shuffle, movie = tie_order("shuffle", fitted, times, movie_ids), tie_order("movie", fitted, times, movie_ids)
    noisy = tie_order("movie", fitted, times, movie_ids, 0.8)
    rows = [
        ("the authors' exact order (the validation file)", evaluate(split, fitted)),
        ("same-second ratings shuffled (seed 0)", evaluate(split, shuffle.apply(fitted, np.random.default_rng(0)))),
        ("by MovieID inside a second", evaluate(split, movie.apply(fitted, np.random.default_rng(0)))),
        (f"MovieID + N(0, 0.8) noise, {draws} draws summed",
         evaluate(split, *summed_draws(noisy, fitted, split.n_items, draws))),
    ]
    print(f"MC fitted on the {len(fitted)} validation users' whole sequences ({len(fitted.items)} ratings, "
          f"{np.mean(times >= 0):.1%} of known time), scored on the {len(split.test)} test users")
    print("| order inside a second | test sps@10 (%) | test recall@10 (%) |")
    print("|---|---|---|")
    for label, (_, test_sps, test_recall) in rows:
        print(f"| {label} | {test_sps:.2f} | {test_recall:.2f} |")


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/mc_ablation.py", main))
