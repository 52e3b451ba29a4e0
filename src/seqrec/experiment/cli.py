"""seqrec: the one command line of the project; every MLproject entry point calls it.

    seqrec prepare | train | evaluate | recommend | tune | baselines | ratings | ensemble | report | stack
    (--help on each)

Each command is a thin layer over the library. Refused input (a bad file, parameter or request) is one
line on stderr and exit status 2; a run that could not produce its result is one line and status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from seqrec.core.baselines import BASELINES, TABLE3_BASELINES
from seqrec.core.config import (AUTO, AUTO_OPTIONS, AUTOREC_LR, DISTRIBUTE, IMPUTED_TARGETS, LOSSES, MAX_SEED, MODELS,
                                 PRECISIONS, PREDICTORS, RATING_PATIENCE, REGIMES, TrainConfig)
from seqrec.core.data import DataError, RequestError
from seqrec.core.prepare import WITHIN_SECOND
from seqrec.core.ties import TIE_ORDERS
from seqrec.experiment.settings import DEFAULT_SEARCH_SPACE, DEFAULT_STORAGE, EXPECTED_MODEL

# Defaults live in TrainConfig only; the parser reads them from there.
TRAIN_HELP = {
    "model": "sequence model: rnn (RNN-CCE), sasrec (causal self-attention), cnn (causal convolutions), pooling "
             "(mean of the history's embeddings) or mingru (minGRU: gates from the input only)",
    "hidden": "recurrent units (rnn, mingru), feed-forward width (sasrec) or convolution channels (cnn)",
    "embedding": "item embedding size",
    "dropout": "dropout rate after the sequence layers (and inside the attention and minGRU blocks); "
               "auto: 0 where exclude_seen's auto is true (3 epochs barely fit), else 0.2",
    "max_len": "training window length (items); evaluation always reads the full history",
    "batch_size": "examples per batch",
    "lr": "peak Adam learning rate (cosine decay over the epochs)",
    "weight_decay": "0: Adam; more: AdamW, each step shrinking weights and item tables (not biases or norms) by "
                    "lr * weight_decay of themselves",
    "ema_momentum": "0: off; more: validate, keep and save the moving average of the weights (updated every step "
                    "with this momentum) instead of the trained weights",
    "lr_warmup_epochs": "epochs (a fraction too) over which the learning rate rises linearly from 0 to lr before "
                        "its cosine decay (0: none)",
    "label_smoothing": "loss=cce only: share of each target's weight spread evenly over the items the softmax "
                       "ranks (0: the plain CCE)",
    "epochs": "maximum epochs; the best validation epoch is kept",
    "cell": "recurrent cell: gru or lstm",
    "projection": "linear bottleneck before the softmax layer (0 = none): a wider RNN at the same cost",
    "tied_output": "score items with the input item embedding plus a bias per item (SASRec's shared item table) "
                   "instead of an output layer of their own; the network's output width must be embedding "
                   "(rnn and cnn: projection=embedding)",
    "regime": "all_steps (loss at every step of max_len windows) or paper (random user and cut, loss on the next "
              "item only)",
    "lookahead": "train against the next N items (1 = the paper's next-item CCE)",
    "lookahead_decay": "weight of the j-th next item is decay ** (j - 1)",
    "burst_targets": "regime=all_steps, lookahead >= 2 only: the j-th next item (j >= 2) is a target only when rated "
                     "in the same second as the next item, so a step's targets are the next burst, whose order "
                     "means nothing (times needed: without them, the next item only)",
    "loss": "cce (full softmax) or a ranking loss against sampled negatives: pointwise, bpr, hinge, adaptive_hinge",
    "negatives": "items drawn uniformly per step as negatives for the sampled losses",
    "blocks": "self-attention blocks (sasrec) or convolution layers (cnn)",
    "heads": "attention heads per block (sasrec)",
    "tie_order": "order of same-second training ratings, re-drawn every epoch: file, shuffle or movie "
                 "(by MovieID with noise, as in the authors' files; needs timestamps)",
    "tie_noise": "std of the noise on the MovieID rank within a second for tie_order=movie",
    "rating_weight": "weight targets by rating: 1 + rating_weight * (rating - 3) / 2, at least 0 (0 = all alike)",
    "rating_input": "also feed the rating of every history item to the network (a second model input; unknown "
                    "training ratings, imputed in the authors' file, are fed as unknown)",
    "rating_min_history": "rating_input=true only: when scoring, a history of fewer items is read with every star "
                          "unknown (0: stars always read); training reads every star",
    "item_dropout": "share of a training window's items read as an empty vector at their step, drawn anew "
                    "every batch (0: none; training only)",
    "rating_dropout": "rating_input=true only: share of the known stars of every training window fed as unknown, "
                      "drawn anew every epoch (0: none)",
    "exclude_seen": "regime=all_steps only: the training softmax leaves out the items the user has already read, "
                    "as evaluation never recommends them (true) or ranks them with the others (false: the paper); "
                    "auto: true for model=rnn, regime=all_steps, loss=cce without rating_input, else false",
    "slist_weight": "SLIST's share b of the blend the network is validated, kept and served as: (1 - b) x its "
                    "softmax + b x SLIST's distribution, both over the unread items (0: the network alone; loss=cce); "
                    "auto: 0.7 where exclude_seen's auto is true, else 0",
    "cuts_per_user": "regime=paper only: 0 draws users with replacement (as many examples as all_steps windows); "
                     "N > 0 is the authors' sampler: every user each epoch, N distinct cuts each",
    "imputed_targets": "mask: training ratings of unknown time (imputed position) stay in the input but are never "
                       "targets; keep: train on them like the others",
    "seed": "random seed (numpy, Python, TensorFlow)",
    "patience": "epochs without validation sps improvement before stopping",
    "k": "cut-off of the ranking metrics",
    "precision": "float32, or mixed_float16 (GPUs) / mixed_bfloat16 (TPUs, CPUs with AMX): compute in 16 bits, keep "
                 "float32 weights and logits",
    "distribute": "auto: MirroredStrategy over all visible GPUs when there are 2 or more, else one device; none: one "
                  "device; mirrored: MirroredStrategy over all GPUs (or all CPU devices). batch_size is per device "
                  "and lr is scaled by the number of devices",
}
CHOICES = {"model": list(MODELS), "loss": list(LOSSES), "cell": ["gru", "lstm"], "regime": list(REGIMES),
           "tie_order": list(TIE_ORDERS), "imputed_targets": list(IMPUTED_TARGETS), "precision": list(PRECISIONS),
           "distribute": list(DISTRIBUTE)}


# --- argument types ----------------------------------------------------------------------------------------


def integer(text: str) -> int:
    """An int; "50.0" is accepted too, since MLflow and some shells pass numbers as floats."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not value.is_integer() or abs(value) >= 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text) if text.strip().lstrip("+-").isdigit() else int(value)  # "123456789012345678" stays exact


def count(text: str) -> int:
    """0, 1, 2, ...: how many of something."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count (0, 1, 2, ...), got {text!r}")
    return int(text)


def positive(text: str) -> int:
    """1, 2, 3, ...: a size or a number of repeats that cannot be none."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def boolean(text: str) -> bool:
    """``true`` or ``false``: exactly what MLflow logs, so a run's param is the value it used."""
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value == "true"


def finite(text: str) -> float:
    """A float that is a number: ``nan`` passes every range check and ``inf`` trains to nan."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed as numpy takes it: 0 to 2**32 - 1."""
    value = integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed between 0 and {MAX_SEED}, got {text!r}")
    return value


def auto_or(parse: Callable[[str], object]) -> Callable[[str], object]:
    """``auto`` (the field resolves it from the others: :meth:`TrainConfig.is_default_recipe`) or a ``parse``d value."""
    def parse_auto(text: str) -> object:
        if text.strip().lower() == AUTO:
            return AUTO
        try:
            return parse(text)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(str(error).replace("expected ", f"expected {AUTO} or ", 1)) from None
    return parse_auto


def argument_type(name: str, default: object) -> Callable[[str], object]:
    """Parser of a TrainConfig field, from its name and its default's type."""
    if name == "seed":
        return seed
    if name in AUTO_OPTIONS:  # typed by their value when off
        return auto_or(boolean if isinstance(AUTO_OPTIONS[name][0], bool) else finite)
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return integer
    return finite if isinstance(default, float) else type(default)


def add_config_arguments(parser: argparse.ArgumentParser, defaults: bool = True,
                         skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per TrainConfig field (``defaults=False``: None when not given, for overrides)."""
    for spec in fields(TrainConfig):
        if spec.name in skip:
            continue
        parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name,
                            type=argument_type(spec.name, spec.default),
                            default=spec.default if defaults else None, choices=CHOICES.get(spec.name),
                            help=f"{TRAIN_HELP[spec.name]} (default: {spec.default})")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="auto", type=nonblank("a split directory, a ratings file or 'auto'"),
                        help="split directory (*_set_sequences), a raw ratings file/directory to prepare, or 'auto' "
                             "($SEQREC_DATA, ../shared/data/ml1m-split, the cache, else download ml-1m)")


def nonblank(expected: str) -> Callable[[str], str]:
    """Parser of a text argument that must not be blank: an empty path or model would be read as the working
    directory, an empty address as every interface."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return text
    return parse


def path(text: str) -> Path:
    """A file or directory path; an empty one is refused (``Path("")`` would be the working directory)."""
    return Path(nonblank("a path")(text))


def positive_seconds(text: str) -> float | None:
    """A time limit in seconds; 0 or less means none."""
    value = finite(text)
    return None if value <= 0 else value


def comma_list(choices: tuple[str, ...]):
    """An argument type: a comma-separated list of some of ``choices`` (each once, in the order given)."""
    def parse(text: str) -> list[str]:
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        if not names or any(name not in choices for name in names):
            raise argparse.ArgumentTypeError(f"choose a comma-separated list of {', '.join(choices)}, got {text!r}")
        return list(dict.fromkeys(names))
    return parse


methods = comma_list(BASELINES)


# --- the parser --------------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the option and what was expected, then where to read more (the usage
    block of ``train`` alone is fifteen lines, which would bury the one that matters)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


DASH_VALUE = re.compile(r"-(?!-)[\d\s,.+eE-]+|-(inf|infinity|nan)", re.IGNORECASE)  # "-5,1000", "-1e3", "-inf"


def _prepare_parser(commands) -> None:
    prepare = commands.add_parser("prepare", help="turn a raw MovieLens ratings file into the sequences split")
    prepare.add_argument("ratings", type=path,
                         help="ratings.dat (UserID::MovieID::Rating::Timestamp), a CSV/TSV with a header, or the "
                              "Netflix Prize format (a combined_data_N.txt file or their directory)")
    prepare.add_argument("out", type=path, help="output split directory")
    prepare.add_argument("--movies", type=path, default=None, help="movies.dat for titles (default: next to ratings)")
    prepare.add_argument("--n-val", type=integer, default=500, help="validation users (default: 500)")
    prepare.add_argument("--n-test", type=integer, default=500, help="test users (default: 500)")
    prepare.add_argument("--seed", type=seed, default=0,
                         help="seed of the user draw and of --within-second random (default: 0)")
    prepare.add_argument("--within-second", choices=WITHIN_SECOND, default="file",
                         help="order of a user's same-second ratings: file (the authors' protocol) or random, drawn "
                              "from --seed: the clean split, with no order inside a second to learn (default: file)")


def _train_parser(commands) -> None:
    train = commands.add_parser("train", help="train RNN-CCE in an MLflow run and evaluate it on the test users")
    add_data_argument(train)
    add_config_arguments(train)
    train.add_argument("--output", type=path, default=None, help="also save the best model to this .keras file")
    train.add_argument("--backup-dir", default="auto",
                       help="back up the training state every epoch and resume from it when run again after a kill "
                            "or crash: 'auto' = .seqrec-backup/<hash of the parameters and data>, 'none' = no backup")


def _evaluate_parser(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on the test (or validation) users")
    evaluate.add_argument("--model", required=True, type=nonblank(EXPECTED_MODEL),
                          help="a .keras file or an MLflow model URI (runs:/<id>/recommender, models:/seqrec@champion)")
    add_data_argument(evaluate)
    evaluate.add_argument("--users", choices=["test", "val"], default="test")
    evaluate.add_argument("--k", type=integer, default=10, help="cut-off of the metrics (default: 10)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _recommend_parser(commands) -> None:
    recommend = commands.add_parser("recommend", help="top-k movies for a (new) user's history of MovieIDs")
    recommend.add_argument("--items", required=True,
                           help="the user's MovieLens MovieIDs, oldest first, comma-separated (e.g. 1193,661,914; "
                                "'' for none: the most popular movies)")
    recommend.add_argument("--model", default="models:/seqrec@champion", type=nonblank(EXPECTED_MODEL),
                           help="the serving model (models:/seqrec@champion, runs:/<id>/recommender), or a .keras file "
                                "whose MovieIDs, titles and popularity then come from --data")
    recommend.add_argument("--ratings", default=None,
                           help="the stars (1-5) given to those movies, comma-separated in the same order; read only "
                                "by a model trained with --rating-input (default: 'unknown')")
    recommend.add_argument("--k", type=integer, default=10, help="number of movies (default: 10)")
    add_data_argument(recommend)
    recommend.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _tune_parser(commands) -> None:
    tune = commands.add_parser("tune", help="Optuna study on validation sps@10; registers and exports the winner")
    tune.add_argument("--n-trials", type=integer, default=30, help="trials to add in this invocation (default: 30)")
    tune.add_argument("--timeout", type=positive_seconds, default=3600,
                      help="stop starting trials after this many seconds; 0 = no limit (default: 3600)")
    tune.add_argument("--study-name", default="seqrec", help="Optuna study; an existing one is continued")
    tune.add_argument("--storage", default=DEFAULT_STORAGE,
                      help=f"SQLAlchemy URL of the Optuna storage shared by all workers (default: {DEFAULT_STORAGE})")
    tune.add_argument("--epochs-per-trial", type=integer, default=6, help="epochs of each trial (default: 6)")
    tune.add_argument("--warmup-epochs", type=integer, default=2,
                      help="epochs a trial always runs before the median pruner may stop it (default: 2)")
    tune.add_argument("--final-epochs", type=integer, default=0,
                      help="retrain the best trial's configuration for this many epochs and publish that model "
                           "(default: 0 = publish the best trial's own model)")
    tune.add_argument("--seed", type=seed, default=0,
                      help="training seed of every trial and sampler seed; give parallel workers different seeds")
    add_data_argument(tune)
    tune.add_argument("--search-space", type=path, default=DEFAULT_SEARCH_SPACE,
                      help=f"file defining suggest(trial) -> dict (default: {DEFAULT_SEARCH_SPACE})")
    tune.add_argument("--export", type=path, default=Path("best_model.keras"),
                      help="where to save the best model (default: best_model.keras)")
    tune.add_argument("--register-name", default="seqrec", help="MLflow registered model name (default: seqrec)")
    tune.add_argument("--heartbeat-interval", type=integer, default=60,
                      help="seconds between a worker's heartbeats (default: 60)")
    tune.add_argument("--grace-period", type=integer, default=None,
                      help="seconds without heartbeat before a RUNNING trial counts as lost and is re-queued "
                           "(default: twice the heartbeat interval)")


def _baselines_parser(commands) -> None:
    baselines = commands.add_parser("baselines", help="POP, MC, user-KNN and implicit MF, one MLflow run each")
    add_data_argument(baselines)
    baselines.add_argument("--methods", type=methods, default=list(TABLE3_BASELINES),
                           help=f"comma-separated baselines among {','.join(BASELINES)} "
                                f"(default: {','.join(TABLE3_BASELINES)})")
    baselines.add_argument("--k", type=integer, default=10, help="cut-off of the ranking metrics (default: 10)")
    baselines.add_argument("--knn-neighbours", type=integer, default=80, help="user-KNN neighbourhood size")
    baselines.add_argument("--mf-factors", type=integer, default=64, help="MF latent dimension")
    baselines.add_argument("--mf-alpha", type=finite, default=10.0, help="MF confidence of a seen item is 1 + alpha")
    baselines.add_argument("--mf-reg", type=finite, default=0.01,
                           help="MF regularisation per unit of confidence weight")
    baselines.add_argument("--mf-iterations", type=integer, default=15, help="MF alternating least-squares sweeps")
    baselines.add_argument("--tie-order", choices=list(TIE_ORDERS), default="movie",
                           help="order of same-second training ratings (default: movie, as in the authors' files)")
    baselines.add_argument("--seed", type=seed, default=0, help="MF initialisation and tie-order seed")


def _ratings_parser(commands) -> None:
    ratings = commands.add_parser("ratings", help="rating prediction: RMSE and MAE on a seeded 90/10 split of the "
                                                  "ratings, one MLflow run per predictor")
    ratings.add_argument("--ratings", default="auto", type=nonblank("a ratings file or 'auto'"),
                         help="raw ratings (ratings.dat, a CSV, Netflix Prize files) or 'auto' ($SEQREC_RATINGS, "
                              "../shared/data/ml-1m/ratings.dat, the cache, else download ml-1m)")
    ratings.add_argument("--predictors", type=comma_list(PREDICTORS), default=list(PREDICTORS),
                         help=f"comma-separated predictors among {','.join(PREDICTORS)} (default: all)")
    ratings.add_argument("--test-share", type=finite, default=0.1, help="share of the ratings held out (default: 0.1)")
    ratings.add_argument("--seed", type=seed, default=0, help="seed of the split and of the models (default: 0)")
    ratings.add_argument("--mf-factors", type=integer, default=64, help="biased MF latent dimension (default: 64)")
    ratings.add_argument("--mf-epochs", type=integer, default=20, help="biased MF's most epochs (default: 20)")
    ratings.add_argument("--mf-reg", type=finite, default=1e-6, help="biased MF's L2 on the factors (default: 1e-6)")
    ratings.add_argument("--autorec-hidden", type=integer, default=500, help="autoencoder code size (default: 500)")
    ratings.add_argument("--autorec-epochs", type=integer, default=100,
                         help="autoencoder's most epochs (default: 100)")
    ratings.add_argument("--autorec-lr", type=finite, default=AUTOREC_LR,
                         help=f"autoencoder's Adam learning rate (default: {AUTOREC_LR})")
    ratings.add_argument("--autorec-reg", type=lambda text: None if text == "auto" else finite(text), default=None,
                         help="autoencoder's L2, or auto: 1e-4 for item_autorec and 1e-5 for user_autorec, the best "
                              "on validation ratings (default: auto)")
    ratings.add_argument("--autorec-activation", choices=("sigmoid", "selu"), default="sigmoid",
                         help="autoencoder's hidden activation: I-AutoRec's sigmoid or DeepRecommender's selu "
                              "(default: sigmoid)")
    ratings.add_argument("--autorec-dropout", type=finite, default=0.0,
                         help="dropout on the autoencoder's code, from 0 to below 1 (default: 0)")
    ratings.add_argument("--validation-share", type=finite, default=0.1,
                         help="share of the training ratings held out to stop training early; 0 trains every epoch "
                              "(default: 0.1)")
    ratings.add_argument("--patience", type=integer, default=RATING_PATIENCE,
                         help="epochs without a better held-out RMSE before training stops "
                              f"(default: {RATING_PATIENCE})")
    ratings.add_argument("--autorec-refeed", type=boolean, default=False,
                         help="autoencoder dense re-feeding, true or false (default: false)")
    ratings.add_argument("--autorec-tied", type=boolean, default=False,
                         help="autoencoder decoder tied to the encoder's weights (DeepRecommender's constrained "
                              "decoder), true or false (default: false)")


def run_groups(text: str) -> list[list[str]]:
    """An ensemble's groups: comma-separated MLflow run ids, groups separated by ';' (``A0,A1;B0``)."""
    groups = [[part.strip() for part in group.split(",") if part.strip()] for group in text.split(";")]
    if not all(groups):
        raise argparse.ArgumentTypeError(f"expected comma-separated run ids, groups separated by ';', got {text!r}")
    return groups


def _ensemble_parser(commands) -> None:
    ensemble = commands.add_parser("ensemble", help="finished training runs as one model (the mean of their "
                                   "probabilities), evaluated and logged as a servable run of its own")
    ensemble.add_argument("--runs", type=run_groups, action="append", required=True,
                          help="comma-separated run ids; groups, which weigh the same however many seeds each has, "
                               "separated by ';' or given as more --runs (e.g. 'SASREC_S0,SASREC_S1;GRU_S0')")
    ensemble.add_argument("--data", default="members",
                          help="where the members' split is now ('members': the data_path they logged)")
    ensemble.add_argument("--validation-only", action="store_true",
                          help="score the validation users only: no test figure is computed, logged or printed")


def _report_parser(commands) -> None:
    report = commands.add_parser("report", help="Table 3: the latest runs of every method beside the paper's figures")
    report.add_argument("--k", type=integer, default=10, help="cut-off of the metrics to report (default: 10)")
    report.add_argument("--rnn-run-id", default=None, help="RNN-CCE run to report (default: the latest finished)")
    report.add_argument("--experiment", action="append", default=None, dest="experiments",
                        help="only runs of this MLflow experiment (repeatable; default: all experiments)")
    report.add_argument("--out", type=path, default=None,
                        help="also keep table3.md and table3.html in this directory (default: only as artifacts)")


def _stack_parser(commands) -> None:
    stack = commands.add_parser("stack", help="a local team stack: PostgreSQL and an MLflow tracking server on it")
    stack.add_argument("action", choices=["up", "down", "status"], help="start (and print the URIs to export), "
                       "stop, or say what runs")
    stack.add_argument("--dir", type=path, default=Path("team-stack"),
                       help="where the databases, artifacts, logs and passwords live (default: team-stack)")
    stack.add_argument("--host", default=None, type=nonblank("an address to listen on, such as 127.0.0.1"),
                       help="address both servers listen on (default: 127.0.0.1)")
    stack.add_argument("--pg-port", type=integer, default=None, help="PostgreSQL's port (default: 5433)")
    stack.add_argument("--mlflow-port", type=integer, default=None, help="the MLflow server's port (default: 5000)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seqrec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_prepare_parser, _train_parser, _evaluate_parser, _recommend_parser, _tune_parser,
                _baselines_parser, _ratings_parser, _ensemble_parser, _report_parser, _stack_parser):
        add(commands)
    return parser


TRAIN_SIZES = "--hidden, --embedding, --batch-size, --max-len"
SIZE_OPTIONS = {  # what to make smaller after running out of memory, by command (default: a network's sizes)
    "baselines": "--mf-factors, --knn-neighbours", "ratings": "--mf-factors, --autorec-hidden",
    "benchmarks/rating_grid.py": "factors, layers, batch_size of the settings",
    "benchmarks/baseline_grid.py": "the sizes of the settings"}


def exit_status(command: str, action: Callable[[], object]) -> int:
    """Run one command: refused input is one line on stderr and status 2, a run that could not produce its
    result one line and status 1 — never a traceback. An unexpected error (a bug) also gets one line, which names
    the file that keeps its traceback (``SEQREC_DEBUG=1`` raises it instead)."""
    from mlflow.exceptions import MlflowException

    from seqrec.core.errors import TrainingDiverged
    from seqrec.experiment.errors import ParameterError, StackError, TuningError

    def say(message: str, status: int) -> int:
        print(f"seqrec {command}: {message}", file=sys.stderr)
        return status

    try:
        action()
    except (DataError, RequestError, ParameterError, LookupError) as error:
        return say(f"error: {error}", 2)
    except MlflowException as error:
        return say(f"error: {first_line(error.message or str(error))}", 2)
    except (TuningError, TrainingDiverged, StackError) as error:
        return say(str(error), 1)
    except KeyboardInterrupt:
        return say("interrupted (a training run with a backup continues where it stopped when run again)", 130)
    except Exception as error:  # noqa: BLE001 - the last resort of "never a traceback"
        if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":  # numpy's, TF's
            shape = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(error))
            return say(f"error: out of memory ({shape.group(0) if shape else type(error).__name__}); expected "
                       f"smaller sizes ({SIZE_OPTIONS.get(command, TRAIN_SIZES)}) for this machine", 2)
        if os.environ.get("SEQREC_DEBUG"):
            raise
        return say(f"internal error: {type(error).__name__}: {first_line(str(error))[:300]} (traceback in "
                   f"{save_traceback(command)}; please report it)", 1)
    return 0


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def save_traceback(command: str) -> Path:
    """Write the current exception's traceback to a temporary file, for a bug report."""
    import tempfile
    import traceback

    name = command.replace("/", "-")  # a benchmark's command is its script's path
    with tempfile.NamedTemporaryFile("w", prefix=f"seqrec-{name}-", suffix=".traceback.txt",
                                     delete=False) as handle:
        traceback.print_exc(file=handle)
    return Path(handle.name)


def attach_list_values(argv: list[str]) -> list[str]:
    """``--items -5,1000`` as ``--items=-5,1000`` (and ``--lr -inf`` as ``--lr=-inf``): argparse takes a value that
    starts with '-' for an option unless it looks like a plain negative number, so it would say "expected one
    argument" instead of what is wrong with the value."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if previous.startswith("--") and "=" not in previous and DASH_VALUE.fullmatch(token):
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     line: str | None = None) -> str:
    """A warning as one line on stderr (Python's default adds the file, line and source that raised it)."""
    return f"seqrec: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(attach_list_values(sys.argv[1:] if argv is None else argv))
    from seqrec.experiment import commands

    def run_command() -> None:
        if args.command != "stack":
            commands.check_tracking_server()
        getattr(commands, args.command)(args)

    with one_line_warnings(), sigterm_as_interrupt():
        return exit_status(args.command, run_command)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings as :func:`one_line_warning` writes them while inside."""
    default_format, warnings.formatwarning = warnings.formatwarning, one_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = default_format


def script_status(script: str, main: Callable[[], int]) -> int:
    """A benchmark script's exit status, as the seqrec command's: SIGTERM ends its runs FAILED, bad input is one
    line and status 2, Ctrl-C one line and status 130 — never a traceback."""
    status: list[int] = []
    with one_line_warnings(), sigterm_as_interrupt():
        refused = exit_status(script, lambda: status.append(main()))
    return refused or status[0]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's stop) as Ctrl-C while inside: MLflow then ends the run FAILED and Optuna
    the trial FAIL, instead of leaving them RUNNING until the next start on this host closes them. Only the main
    thread may set signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    default_sigterm = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, default_sigterm)


def interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
