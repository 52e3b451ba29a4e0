"""The model zoo side by side: every model and loss, several seeds, one table per split.

    python benchmarks/zoo.py --seeds 3 --data ../shared/data/ml1m-split --data /tmp/clean
    python benchmarks/zoo.py --variants rnn:cce,rnn:hinge,sasrec:cce,lstm:cce --seeds 3 --epochs 3
    python benchmarks/zoo.py --variants sasrec:cce --first-seed 2 --seeds 1   # one more seed, on its own

Each variant (``model:loss``; ``lstm`` is the RNN with ``cell=lstm``) trains with the same configuration otherwise
(the defaults, or the options given) and is an ordinary MLflow run (experiment ``seqrec-zoo``), so the report shows
each variant's seeds as one row (mean ± std). The table gives validation and test figures (mean ± std over the
seeds), the tie-aware sps where the split's times are known, and the train time; a second table gives each variant's
new-user curve. Defaults are chosen on the validation columns, never the test ones. Slow: a benchmark. Run again, it
reuses the finished runs of the same configuration and data (``--rerun`` trains them again) and resumes an
interrupted one from its last epoch, so the whole zoo can be run in pieces.

``--ensemble`` adds a table of ensembles: each variant's first 1, 2, ... seeds as one model (how an ensemble grows),
and all the variants' runs as one, each scoring an item by the mean of its members' softmax probabilities
(:func:`seqrec.core.scoring.ensemble_scores`). Their train time is their members' summed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import (add_seed_arguments, add_validation_only, cell, check_cutoff, columns,  # noqa: E402
                       is_clean, run_figures, seed_range, table_head)  # the reproduction's cells and seeds

from seqrec.core.config import LOSSES, MODELS, TrainConfig  # noqa: E402
from seqrec.core.data import Sequences, Split, split_half  # noqa: E402
from seqrec.core.ensemble import network_of  # noqa: E402
from seqrec.core.scoring import NEW_USER_COUNTS, ensemble_scores, evaluate_scores  # noqa: E402
from seqrec.core.sources import load_data  # noqa: E402
from seqrec.core.ties import with_times  # noqa: E402
from seqrec.experiment.cli import Parser, add_config_arguments, script_status  # noqa: E402
from seqrec.experiment.commands import open_tracking_store, train_config  # noqa: E402
from seqrec.experiment.serve import load_model  # noqa: E402

# a variant's model: the models of seqrec.core.models, and Spotlight's LSTM representation (the RNN's other cell)
REPRESENTATIONS = {**{model: {"model": model} for model in MODELS}, "lstm": {"model": "rnn", "cell": "lstm"}}
ALL_VARIANTS = [f"{name}:cce" for name in REPRESENTATIONS] + [f"rnn:{loss}" for loss in LOSSES if loss != "cce"]


def variant(text: str) -> tuple[str, str]:
    """``model:loss``, both known (``lstm`` is the RNN with ``cell=lstm``)."""
    model, _, loss = text.partition(":")
    if model not in REPRESENTATIONS or loss not in LOSSES:
        raise argparse.ArgumentTypeError(f"expected model:loss with a model of {', '.join(REPRESENTATIONS)} and a "
                                         f"loss of {', '.join(LOSSES)}, got {text!r}")
    return model, loss


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=lambda text: list(dict.fromkeys(variant(part) for part in text.split(","))),
                        default=[variant(text) for text in ALL_VARIANTS],
                        help="comma-separated model:loss pairs (default: every model with cce, then the RNN "
                             "with every sampled loss)")
    add_seed_arguments(parser)
    parser.add_argument("--data", action="append", help="a split; repeat it for one table per split (default: auto)")
    parser.add_argument("--rerun", action="store_true",
                        help="train every cell again, even where this experiment has its finished run")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score each variant's first 1, 2, ... seeds, and all the variants' runs, as one "
                             "ensemble (the mean of the members' softmax probabilities)")
    add_validation_only(parser)
    add_config_arguments(parser, defaults=False, skip=("seed", "model", "loss"))
    args = parser.parse_args(argv)

    import mlflow

    overrides = {spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)
                 if spec.name not in ("seed", "model", "loss") and getattr(args, spec.name) is not None}
    # each variant's configuration, checked before any run: an option may fit one model and not another
    configs = {(model, loss): train_config(**overrides, **REPRESENTATIONS[model], loss=loss)
               for model, loss in args.variants}
    k = next(iter(configs.values())).k
    seeds = seed_range(args.first_seed, args.seeds)
    splits = [with_times(load_data(data)) for data in args.data or ["auto"]]  # bad data refused before any run
    check_cutoff(k, splits)
    open_tracking_store()  # workers started together on a new SQLite store
    mlflow.set_experiment("seqrec-zoo")
    shown = columns(k, args.validation_only)
    for split in splits:
        kind = "clean split" if is_clean(split) else "authors' kind of split"
        print(f"\n{kind}: {split.directory} (seeds {args.first_seed}–{args.first_seed + args.seeds - 1})")
        print(table_head("model:loss", shown))
        rows = {}
        for model, loss in args.variants:
            runs = rows[f"{model}:{loss}"] = [
                run_figures(replace(configs[model, loss], seed=seed), split, args.rerun, verbose=0,
                            show_test=not args.validation_only)
                for seed in seeds]
            print(f"| {model}:{loss} | " + " | ".join(cell([run.get(key) for run in runs], scale, digits)
                                                     for key, _, scale, digits in shown) + " |", flush=True)
        if not args.validation_only:  # the new-user curve is drawn on the test users
            print(new_user_table(rows, k))
        if args.ensemble:
            print(ensemble_table(rows, split, k, args.validation_only))
    return 0


def ensemble_table(rows: dict[str, list[dict[str, float | str]]], split: Split, k: int,
                   validation_only: bool = False) -> str:
    """Each variant's first 1, 2, ... finished runs as one ensemble, then every variant's runs as one (when there are
    several): validation and test figures as in the zoo's table, and the members' summed train time."""
    shown = ensemble_columns(k, validation_only)
    lines = ["\nensembles: the mean of the members' softmax probabilities", table_head("ensemble", shown)]
    inputs = scored_inputs(split, validation_only)
    probabilities, seconds = {}, {}
    for name, runs in rows.items():
        scored = [member_probabilities(str(run["run_id"]), inputs) for run in runs]
        members = {users: [member[users] for member in scored] for users in inputs}
        spent = np.cumsum([run["train_seconds"] for run in runs])  # the first 1, 2, ... members' train time
        for size in range(1, len(runs) + 1):  # the first 1, 2, ... seeds: how far more members carry it
            grown = {users: np.mean(each[:size], axis=0) for users, each in members.items()}
            lines.append(ensemble_row(f"{name} × {size}", grown, float(spent[size - 1]), split, k, shown))
        probabilities[name], seconds[name] = grown, float(spent[-1])  # all the seeds: the all-variants row's
    if len(rows) > 1:  # every run weighs the same: the variants have as many seeds each
        everything = mean_probabilities(list(probabilities.values()))
        lines.append(ensemble_row(" + ".join(rows), everything, sum(seconds.values()), split, k, shown))
    return "\n".join(lines)


def ensemble_columns(k: int, validation_only: bool) -> list[tuple[str, str, float, int]]:
    """An ensemble table's columns: the zoo's, less its throughput (an ensemble trains nothing) and the held-out
    picks (an ensemble picks no epoch)."""
    return [column for column in columns(k, validation_only)
            if column[0] != "tokens_per_second" and not column[0].startswith("val held_out_")]


def scored_inputs(split: Split, validation_only: bool) -> dict[str, Sequences]:
    """The input halves an ensemble scores: the validation users', and the test users' unless ``validation_only``."""
    parts = {"val": split.val} if validation_only else {"val": split.val, "test": split.test}
    return {users: split_half(sequences)[0] for users, sequences in parts.items()}


def mean_probabilities(members: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The members' probabilities averaged, each group of users (``val``, ``test``) on its own: one ensemble's."""
    return {users: np.mean([member[users] for member in members], axis=0) for users in members[0]}


def member_probabilities(run_id: str, inputs: dict[str, Sequences],
                         network_only: bool = False) -> dict[str, np.ndarray]:
    """One finished run's next-item probabilities of each group of users (``val``, ``test``) after their inputs;
    with ``network_only``, those of its network alone when the run's model is a blend with SLIST (``slist_weight``)."""
    model = load_model(f"runs:/{run_id}/recommender")
    model = network_of(model) if network_only else model
    return {users: ensemble_scores([model], given) for users, given in inputs.items()}


def ensemble_row(name: str, probabilities: dict[str, np.ndarray], train_seconds: float, split: Split, k: int,
                 shown: list[tuple[str, str, float, int]]) -> str:
    """One ensemble's row: its validation and test figures from its probabilities of the users' items."""
    users = {"val": split.val, "test": split.test}
    figures = {f"{part} {metric}": value for part, scores in probabilities.items()
               for metric, value in evaluate_scores(scores, users[part], k, split.item_popularity,
                                                    split.item_similarity).items()}
    figures["train_seconds"] = train_seconds
    cells = [cell([figures.get(key)], scale, digits) for key, _, scale, digits in shown]
    return f"| {name} | " + " | ".join(cells) + " |"


def new_user_table(rows: dict[str, list[dict[str, float]]], k: int) -> str:
    """Test sps@k of each variant given only the first 1, 2, 3, 5, 10, 20 items of the input half, and the whole
    half (mean ± std over the seeds): the new-user curve of every model."""
    keys = [f"test new_user_sps@{k}_given_{given}" for given in NEW_USER_COUNTS] + [f"test sps@{k}"]
    lines = [f"\nnew users: test sps@{k} (%) given the first N items of the input half",
             "| model:loss | " + " | ".join(f"N = {given}" for given in NEW_USER_COUNTS) + " | whole half |",
             "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(cell([run.get(key) for run in runs], 100, 1) for key in keys) + " |"
              for name, runs in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/zoo.py", main))
