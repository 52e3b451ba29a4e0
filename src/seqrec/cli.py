"""``seqrec prepare | train | evaluate | recommend``: thin command line over the library; MLproject calls it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable

from seqrec.data import DataError

# Defaults live in TrainConfig only; the parser reads them from there.
_TRAIN_HELP = {
    "hidden": "recurrent units",
    "embedding": "item embedding size",
    "dropout": "dropout rate after the recurrent layer",
    "max_len": "training window length (items); evaluation always reads the full history",
    "batch_size": "examples per batch",
    "lr": "peak Adam learning rate (cosine decay over the epochs)",
    "epochs": "maximum epochs; the best validation epoch is kept",
    "cell": "recurrent cell: gru or lstm",
    "projection": "linear bottleneck before the softmax layer (0 = none): a wider RNN at the same cost",
    "regime": "all_steps (loss at every step of max_len windows) or paper (random user and cut, loss on the next item only)",
    "lookahead": "train against the next N items (1 = the paper's next-item CCE)",
    "lookahead_decay": "weight of the j-th next item is decay ** (j - 1)",
    "tie_order": "order of same-second training ratings, re-drawn every epoch: file, shuffle or movie "
                 "(by MovieID with noise, as in the authors' files; needs timestamps)",
    "tie_noise": "std of the noise on the MovieID rank within a second for tie_order=movie",
    "rating_weight": "weight targets by rating: 1 + rating_weight * (rating - 3) / 2, at least 0 (0 = all alike)",
    "rating_input": "also feed the rating of every history item to the network (a second model input; unknown "
                    "training ratings, imputed in the authors' file, are fed as unknown)",
    "cuts_per_user": "regime=paper only: 0 draws users with replacement (as many examples as all_steps windows); "
                     "N > 0 is the authors' sampler: every user each epoch, N distinct cuts each",
    "imputed_targets": "mask: training ratings of unknown time (imputed position) stay in the input but are never "
                       "targets; keep: train on them like the others",
    "seed": "random seed (numpy, Python, TensorFlow)",
    "patience": "epochs without validation sps improvement before stopping",
    "k": "cut-off of the ranking metrics",
}


def _integer(text: str) -> int:
    """An int that also accepts "50.0": MLproject has no integer type, so numbers may arrive as floats."""
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def _boolean(text: str) -> bool:
    """true/false, yes/no, 1/0 (MLproject passes every value as text)."""
    value = text.strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "yes", "1")


def _argument_type(default: object):
    """Parser of a TrainConfig field, from its default's type."""
    if isinstance(default, bool):
        return _boolean
    return _integer if isinstance(default, int) else type(default)


def _add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="auto",
                        help="split directory (*_set_sequences), a raw ratings file/directory to prepare, or 'auto' "
                             "($SEQREC_DATA, ../shared/data/ml1m-split, the cache, else download ml-1m)")


def build_parser() -> argparse.ArgumentParser:
    from seqrec.train import IMPUTED_TARGETS, REGIMES, TIE_ORDERS, TrainConfig

    parser = argparse.ArgumentParser(prog="seqrec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="turn a raw MovieLens ratings file into the sequences split")
    prepare.add_argument("ratings", type=Path, help="ratings.dat (UserID::MovieID::Rating::Timestamp) or CSV/TSV")
    prepare.add_argument("out", type=Path, help="output split directory")
    prepare.add_argument("--movies", type=Path, default=None, help="movies.dat for titles (default: next to ratings)")
    prepare.add_argument("--n-val", type=_integer, default=500)
    prepare.add_argument("--n-test", type=_integer, default=500)
    prepare.add_argument("--seed", type=_integer, default=0)

    train = commands.add_parser("train", help="train RNN-CCE in an MLflow run and evaluate it on the test users")
    _add_data_argument(train)
    for spec in fields(TrainConfig):
        kind = _argument_type(spec.default)
        choices = {"cell": ["gru", "lstm"], "regime": list(REGIMES), "tie_order": list(TIE_ORDERS),
                   "imputed_targets": list(IMPUTED_TARGETS)}.get(spec.name)
        train.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=kind, default=spec.default,
                           choices=choices, help=f"{_TRAIN_HELP[spec.name]} (default: {spec.default})")
    train.add_argument("--output", type=Path, default=None, help="also save the best model to this .keras file")
    train.add_argument("--backup-dir", default="auto",
                       help="back up the training state every epoch and resume from it when run again after a kill "
                            "or crash: 'auto' = .seqrec-backup/<hash of the parameters and data>, 'none' = no backup")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on the test (or validation) users")
    evaluate.add_argument("--model", required=True, help="a .keras file or an MLflow model URI (models:/seqrec@champion)")
    _add_data_argument(evaluate)
    evaluate.add_argument("--users", choices=["test", "val"], default="test")
    evaluate.add_argument("--k", type=_integer, default=10)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    recommend = commands.add_parser("recommend", help="top-k movies for a (new) user's history of MovieIDs")
    recommend.add_argument("--items", required=True,
                           help="the user's MovieLens MovieIDs, oldest first, comma-separated (e.g. 1193,661,914; "
                                "'' for none: the most popular movies)")
    recommend.add_argument("--model", default="models:/seqrec@champion",
                           help="the serving model (models:/seqrec@champion, runs:/<id>/recommender), or a Keras model "
                                "(a .keras file, runs:/<id>/model) whose MovieIDs, titles and popularity then come from "
                                "--data (default: models:/seqrec@champion)")
    recommend.add_argument("--ratings", default=None,
                           help="the stars (1-5) given to those movies, comma-separated in the same order; read only "
                                "by a model trained with --rating-input (default: 'unknown')")
    recommend.add_argument("--k", type=_integer, default=10, help="number of movies (default: 10)")
    _add_data_argument(recommend)
    recommend.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _load(data: str):
    from seqrec.data import load_split
    from seqrec.prepare import resolve_data

    return load_split(resolve_data(None if data == "auto" else data))


def _prepare(args: argparse.Namespace) -> None:
    from seqrec.prepare import prepare_split

    out = prepare_split(args.ratings, args.out, movies_path=args.movies, n_val=args.n_val, n_test=args.n_test,
                        seed=args.seed)
    print(f"prepared split in {out}")


def _train(args: argparse.Namespace) -> None:
    from seqrec.train import TrainConfig, train_run

    try:
        config = TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)})
    except ValueError as error:
        raise DataError("seqrec train", None, "valid training parameters", str(error)) from None
    from seqrec.resume import default_backup_dir

    split = _load(args.data)
    backup = {"none": None, "auto": default_backup_dir(config, split.directory)}.get(args.backup_dir,
                                                                                      Path(args.backup_dir))
    train_run(config, split, output=args.output, backup_dir=backup)


def _evaluate(args: argparse.Namespace) -> None:
    from seqrec.evaluate import check_catalogue, evaluate_users, format_table, load_scorer

    from mlflow.exceptions import MlflowException

    try:
        model, catalogue = load_scorer(args.model)
    except MlflowException as error:
        raise DataError(args.model, None, "a saved model (a .keras file, runs:/ or models:/ URI)",
                        error.message) from None
    split = _load(args.data)
    check_catalogue(model, split, args.model, catalogue.movie_ids if catalogue is not None else None)
    if not 1 <= args.k <= split.n_items:
        raise DataError("--k", None, f"a cut-off between 1 and {split.n_items} (the catalogue size)", str(args.k))
    users = split.test if args.users == "test" else split.val
    metrics = evaluate_users(model, users, args.k, split.item_popularity, similarity=split.item_similarity)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_table(metrics, title=f"{args.model} on {len(users)} {args.users} users:"))


def _integers(option: str, text: str, expected: str) -> list[int]:
    """A comma-separated list of integers (spaces allowed); empty means none."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if not all(part.lstrip("-").isdigit() for part in parts):
        raise DataError(option, None, expected, text)
    return [int(part) for part in parts]


def _movie_ids(text: str) -> list[int]:
    """``--items``: comma-separated integer MovieIDs; empty means no history."""
    return _integers("--items", text, "comma-separated integer MovieIDs, oldest first (e.g. 1193,661,914)")


def _recommender(model: str, data: str):
    """The serving model: the pyfunc carries its catalogue; a Keras model (file or URI) takes the split's."""
    from mlflow.exceptions import MlflowException

    from seqrec.evaluate import check_catalogue, load_scorer
    from seqrec.serve import Recommender, ServingCatalogue

    try:
        network, catalogue = load_scorer(model)
    except MlflowException as error:
        raise DataError(model, None, "a seqrec model (models:/seqrec@champion, runs:/<id>/recommender, a .keras "
                        "file)", error.message.splitlines()[0] if error.message else "") from None
    if catalogue is None:
        split = _load(data)
        check_catalogue(network, split, model)
        catalogue = ServingCatalogue.build(split.catalogue, split.item_popularity)
    return Recommender(network, catalogue)


def _recommend(args: argparse.Namespace) -> None:
    history = _movie_ids(args.items)
    recommender = _recommender(args.model, args.data)
    n_items = recommender.catalogue.n_items
    if not 1 <= args.k <= n_items:
        raise DataError("--k", None, f"a number of movies between 1 and {n_items} (the catalogue size)", str(args.k))
    ratings = None if args.ratings in (None, "unknown") else _integers(
        "--ratings", args.ratings, "comma-separated stars 1-5, one per movie of --items (e.g. 5,3,4), or 'unknown'")
    row = recommender.recommend({"items": [history], "ratings": [ratings], "k": [args.k]}).to_dict("records")[0]
    if args.json:
        print(json.dumps(row))
        return
    print(f"top {len(row['movie_ids'])} for a history of {len(history)} movies ({args.model}"
          f"{', popularity fallback' if row['popularity_fallback'] else ''}):")
    for rank, (movie, score, title) in enumerate(zip(row["movie_ids"], row["scores"], row["titles"]), start=1):
        print(f"{rank:>3}  {movie:>7}  {score:8.5f}  {title}")
    if row["warning"]:
        print(f"seqrec recommend: warning: {row['warning']}", file=sys.stderr)


def exit_status(command: str, action: Callable[[], object],
                refused: tuple[type[Exception], ...] = (DataError,),
                failed: tuple[type[Exception], ...] = ()) -> int:
    """Run one command for a CLI: refused input is one line on stderr and status 2, a run that
    could not produce its result (``failed``) one line and status 1 — never a traceback."""
    try:
        action()
    except refused as error:
        print(f"seqrec {command}: error: {error}", file=sys.stderr)
        return 2
    except failed as error:
        print(f"seqrec {command}: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"prepare": _prepare, "train": _train, "evaluate": _evaluate, "recommend": _recommend}[args.command]
    if args.command == "recommend":
        from seqrec.serve import RequestError

        return exit_status(args.command, lambda: handler(args), refused=(DataError, RequestError))
    return exit_status(args.command, lambda: handler(args))


if __name__ == "__main__":
    sys.exit(main())
