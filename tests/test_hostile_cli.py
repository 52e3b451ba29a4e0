"""Hostile input to every command: each bad parameter, model or request gets exit status 2 and one line on
stderr that names the parameter (or file) and says what was expected — never a traceback, never a run.

The table in docs/operations.md ("What bad input gets") lists the same cases.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import isolated_tracking, write_synthetic_split
from seqrec.core.errors import TrainingDiverged
from seqrec.core.model import build_model, scoring_model
from seqrec.core.training import StopOnDivergence
from seqrec.experiment.cli import attach_list_values, exit_status, main

TINY = ["--hidden", "8", "--embedding", "8", "--max-len", "10", "--batch-size", "16", "--epochs", "1",
        "--backup-dir", "none"]

# (command line, text the one line must contain); {split}, {model}, {tmp} are filled in by the test
REFUSED = [
    # train: every TrainConfig option, through its CLI type and TrainConfig's own checks
    (["train", *TINY, "--hidden", "0"], "hidden must be a positive integer, got 0"),
    (["train", *TINY, "--hidden", "abc"], "argument --hidden: expected an integer, got 'abc'"),
    (["train", *TINY, "--hidden", "1.5"], "argument --hidden: expected an integer, got '1.5'"),
    (["train", *TINY, "--epochs", "1e30"], "argument --epochs: expected an integer, got '1e30'"),
    (["train", *TINY, "--lr", "nan"], "argument --lr: expected a finite number, got 'nan'"),
    (["train", *TINY, "--output", "{tmp}"], "--output: expected a .keras file to save the model to"),
    (["train", *TINY, "--output", "{tmp}/model.h5"], "--output: expected a .keras file to save the model to"),
    (["train", *TINY, "--lr", "inf"], "argument --lr: expected a finite number, got 'inf'"),
    (["train", *TINY, "--lr", "-0.1"], "lr must be positive, got -0.1"),
    (["train", *TINY, "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["train", *TINY, "--rating-weight", "nan"], "argument --rating-weight: expected a finite number"),
    (["train", *TINY, "--tie-noise", "-inf"], "argument --tie-noise: expected a finite number"),
    (["train", *TINY, "--dropout", "1"], "dropout must be in [0, 1), got 1.0"),
    (["train", *TINY, "--lookahead-decay", "0"], "lookahead_decay must be in (0, 1], got 0.0"),
    (["train", *TINY, "--seed", "-1"], "argument --seed: expected a seed between 0 and 4294967295, got '-1'"),
    (["train", *TINY, "--seed", "4294967296"], "expected a seed between 0 and 4294967295"),
    (["train", *TINY, "--patience", "-1"], "patience must be 0 or more epochs, got -1"),
    (["train", *TINY, "--k", "1000"], "--k: expected a cut-off between 1 and 40 (the catalogue size), got '1000'"),
    (["train", *TINY, "--k", "0"], "k must be a positive integer, got 0"),
    (["train", *TINY, "--cell", "rnn"], "argument --cell: invalid choice: 'rnn'"),
    (["train", *TINY, "--model", "bert"], "argument --model: invalid choice: 'bert'"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--predictors", "svd"], "argument --predictors: choose a comma"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--test-share", "1"], "--test-share: expected a share between"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--mf-epochs", "0"], "--mf-epochs: expected a positive integer"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--validation-share", "1"], "--validation-share: expected a share"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--autorec-reg", "-1"], "--autorec-reg: expected a weight >= 0"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--patience", "0"], "--patience: expected a positive integer"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--autorec-dropout", "1"], "--autorec-dropout: expected a rate"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--autorec-lr", "0"], "--autorec-lr: expected a learning rate > 0"),
    (["ratings", "--ratings", "{tmp}/nowhere.dat"], "nowhere.dat: expected a ratings file"),
    (["ratings", "--ratings", ""], "argument --ratings: expected a ratings file or 'auto', got ''"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--test-share", "0.001"],
     "argument --test-share: expected a share that holds out at least one of the 319 ratings and keeps at least one "
     "for training, got 0.001 (0 held out)"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--test-share", "0.999"], "got 0.999 (319 held out)"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--validation-share", "0.999"],
     "argument --validation-share: validation_share must keep at least one of the 287 training ratings"),
    (["ratings", "--ratings", "{tmp}/ratings.dat", "--predictors", "biased_mf", "--mf-factors", "100000000000"],
     "out of memory (OOM when allocating tensor with shape[29,100000000000]); expected smaller sizes (--mf-factors, "
     "--autorec-hidden)"),
    (["train", *TINY, "--loss", "warp"], "argument --loss: invalid choice: 'warp'"),
    (["train", *TINY, "--loss", "bpr", "--negatives", "0"], "negatives must be a positive integer, got 0"),
    (["train", *TINY, "--model", "sasrec", "--blocks", "0"], "blocks must be a positive integer, got 0"),
    (["train", *TINY, "--model", "sasrec", "--heads", "0"], "heads must be a positive integer, got 0"),
    (["train", *TINY, "--rating-input", "yes"], "argument --rating-input: expected true or false, got 'yes'"),
    (["train", *TINY, "--cuts-per-user", "5"], "cuts_per_user is for regime=paper only"),
    (["train", *TINY, "--rating-min-history", "3"], "rating_min_history is for rating_input=true only"),
    (["train", *TINY, "--rating-input", "true", "--rating-min-history", "-1"],
     "rating_min_history must be 0 (always read the stars) or more items, got -1"),
    (["train", *TINY, "--rating-dropout", "0.2"], "rating_dropout is for rating_input=true only"),
    (["train", *TINY, "--rating-input", "true", "--rating-dropout", "1"],
     "rating_dropout must be in [0, 1) (0: every known star is read), got 1.0"),
    (["train", *TINY, "--item-dropout", "1"],
     "item_dropout must be in [0, 1) (0: every item of a training window is read), got 1.0"),
    (["train", *TINY, "--regime", "paper", "--exclude-seen", "true"], "exclude_seen is for regime=all_steps only"),
    (["train", *TINY, "--slist-weight", "1"], "slist_weight must be in [0, 1) (0: the network alone), got 1.0"),
    (["train", *TINY, "--slist-weight", "0.5", "--loss", "bpr"], "slist_weight needs loss=cce, got loss='bpr'"),
    (["train", *TINY, "--exclude-seen", "yes"], "argument --exclude-seen: expected auto or true or false, got 'yes'"),
    (["train", *TINY, "--slist-weight", "most"], "argument --slist-weight: expected auto or a number, got 'most'"),
    (["train", *TINY, "--projection", "-2"], "projection must be 0 (none) or a positive size, got -2"),
    (["train", *TINY, "--weight-decay", "-0.01"], "weight_decay must be 0 (Adam) or more (AdamW), got -0.01"),
    (["train", *TINY, "--ema-momentum", "1"], "ema_momentum must be in [0, 1) (0: no weight average), got 1.0"),
    (["train", *TINY, "--lr-warmup-epochs", "1"], "lr_warmup_epochs must be in [0, epochs=1) (0: no warm-up), got 1.0"),
    (["train", *TINY, "--label-smoothing", "1"], "label_smoothing must be in [0, 1) (0: the plain CCE), got 1.0"),
    (["train", *TINY, "--loss", "bpr", "--label-smoothing", "0.1"], "label_smoothing is for loss=cce only"),
    (["train", *TINY, "--hidden", "16", "--tied-output", "true"],
     "tied_output needs the network's output width to be embedding=8, got 16 (model=rnn): set projection=8"),
    (["train", *TINY, "--hidden", "100000000000"], "out of memory"),
    (["train", *TINY, "--data", "{tmp}/nowhere"], "nowhere"),
    (["train", *TINY, "--data", ""], "argument --data: expected a split directory, a ratings file or 'auto', got ''"),
    (["train", *TINY, "--bogus", "1"], "unrecognized arguments: --bogus 1"),
    # evaluate: model files and URIs, cut-offs
    (["evaluate", "--model", "{tmp}/text.keras"], "text.keras: expected a .keras model file saved by seqrec (a zip "
                                                  "archive), got 'not a zip archive'"),
    (["evaluate", "--model", "{tmp}/empty.keras"], "empty.keras: expected a .keras model file saved by seqrec"),
    (["evaluate", "--model", "{tmp}/truncated.keras"], "truncated.keras: expected a .keras model file saved by"),
    (["evaluate", "--model", "{tmp}/other.zip.keras"], "other.zip.keras: expected a .keras model file saved by"),
    (["evaluate", "--model", "{tmp}/missing.keras"], "missing.keras: expected a .keras model file saved by seqrec"
                                                     " (a zip archive), got 'no such file'"),
    (["evaluate", "--model", "{tmp}/model.h5"], "model.h5: expected a seqrec model"),
    (["evaluate", "--model", "runs:/0123456789abcdef/recommender"], "expected a seqrec model"),
    (["evaluate", "--model", "models:/nobody@champion"], "expected a seqrec model"),
    (["evaluate", "--model", "{model}", "--k", "0"], "--k: expected a cut-off between 1 and 40"),
    (["evaluate", "--model", "{model}", "--k", "41"], "--k: expected a cut-off between 1 and 40"),
    (["evaluate", "--model", "{model}", "--users", "train"], "argument --users: invalid choice: 'train'"),
    (["evaluate"], "the following arguments are required: --model"),
    (["evaluate", "--model", " "], "argument --model: expected a seqrec model (models:/seqrec@champion, runs:/<id>/"
                                   "recommender, a .keras file), got ' '"),
    (["evaluate", "--model", "http://127.0.0.1:1/model"], "http://127.0.0.1:1/model: expected a seqrec model"),
    # recommend: histories, ratings and k
    (["recommend", "--model", "{model}", "--items", "abc"], "--items: expected comma-separated integer MovieIDs"),
    (["recommend", "--model", "{model}", "--items", "1000,1001", "--ratings", "6,1"],
     "--ratings: expected comma-separated stars 1-5 (0: unknown), one per movie of --items"),
    (["recommend", "--model", "{model}", "--items", "1000,1001", "--ratings", "5"],
     "--ratings: expected comma-separated stars 1-5 (0: unknown), one per movie of --items (e.g. 5,3,4), or "
     "'unknown', got '1 stars for 2 movies'"),
    (["recommend", "--model", "{model}", "--items", "1000", "--ratings", ""], "got '0 stars for 1 movies'"),
    (["recommend", "--model", "{model}", "--items", "99999999999999999999999"],
     "--items: expected comma-separated integer MovieIDs"),
    (["recommend", "--model", "{model}", "--items", "1000", "--ratings", "x"], "--ratings: expected"),
    (["recommend", "--model", "{model}", "--items", "1000", "--k", "0"], "--k: expected a number of movies"),
    (["recommend", "--model", "{model}", "--items", "1000", "--k", "41"], "--k: expected a number of movies"),
    # prepare: sizes, seeds and paths (bad ratings files: tests/test_hostile_data.py)
    (["prepare", "{tmp}/ratings.dat", "{tmp}/out", "--n-val", "0"], "expected --n-val and --n-test of at least 1"),
    (["prepare", "{tmp}/ratings.dat", "{tmp}/out", "--n-test", "-1"], "expected --n-val and --n-test of at least 1"),
    (["prepare", "{tmp}/ratings.dat", "{tmp}/out", "--seed", "-1"], "argument --seed: expected a seed between"),
    (["prepare", "{tmp}/absent.dat", "{tmp}/out"], "absent.dat: expected a ratings file"),
    (["prepare", "", "{tmp}/out"], "argument ratings: expected a path, got ''"),
    # tune: budgets, storage, search space, heartbeats
    (["tune", "--n-trials", "0"], "expected --n-trials and --epochs-per-trial of at least 1"),
    (["tune", "--epochs-per-trial", "0"], "expected --n-trials and --epochs-per-trial of at least 1"),
    (["tune", "--timeout", "nan"], "argument --timeout: expected a finite number, got 'nan'"),
    (["tune", "--seed", "-1"], "argument --seed: expected a seed between 0 and 4294967295"),
    (["tune", "--heartbeat-interval", "0"], "--heartbeat-interval: expected at least 1 second"),
    (["tune", "--grace-period", "-5"], "--grace-period: expected at least 1 second"),
    (["tune", "--search-space", "{tmp}/space.py"], "space.py: expected a search-space file"),
    (["tune", "--storage", "not a url"], "not a url: expected an SQLAlchemy database URL"),
    (["tune", "--search-space", "{tmp}/syntax.py"], "syntax.py:2: expected a Python file that runs, got \"SyntaxError"),
    (["tune", "--search-space", "{tmp}/raises.py"], "raises.py:3: expected suggest(trial) to return a dict of "
                                                    "TrainConfig overrides, got 'ZeroDivisionError"),
    (["tune", "--search-space", "{tmp}/unknown.py"], "unknown.py: expected TrainConfig fields as keys"),
    (["tune", "--search-space", "{tmp}/invalid.py"], "hidden must be a positive integer, got 0"),
    (["tune", "--search-space", "{tmp}/exits.py"], "exits.py:2: expected suggest(trial) to return a dict of "
                                                   "TrainConfig overrides, got 'SystemExit: 3'"),
    (["tune", "--warmup-epochs", "-1"], "--warmup-epochs: expected 0 or more epochs, got -1"),
    (["tune", "--heartbeat-interval", "99999999999999999"], "--heartbeat-interval: expected at most 86400 seconds"),
    (["tune", "--study-name", ""], "--study-name: expected the name of an Optuna study, got ''"),
    (["tune", "--register-name", ""], "--register-name: expected a registered model name"),
    (["tune", "--register-name", "a/b"], "--register-name: expected a registered model name"),
    (["tune", "--export", "{tmp}"], "--export: expected a .keras file to save the model to"),
    (["tune", "--export", "{tmp}/best.h5"], "--export: expected a .keras file to save the model to"),
    (["tune", "--export", ""], "argument --export: expected a path, got ''"),
    # baselines and report
    (["baselines", "--methods", "pop,foo"], "argument --methods: choose a comma-separated list of"),
    (["baselines", "--k", "0"], "--k: expected a cut-off between 1 and 40"),
    (["baselines", "--knn-neighbours", "0"], "neighbours"),
    (["baselines", "--mf-factors", "0"], "factors"),
    (["baselines", "--mf-alpha", "nan"], "argument --mf-alpha: expected a finite number, got 'nan'"),
    (["baselines", "--mf-reg", "-1"], "reg"),
    (["baselines", "--mf-iterations", "0"], "iterations"),
    (["report", "--k", "0"], "--k: expected a cut-off of at least 1"),
    (["report", "--rnn-run-id", "0123456789abcdef"], "--rnn-run-id: no run '0123456789abcdef' in the tracking store"),
    (["report", "--rnn-run-id", ""], "--rnn-run-id: no run '' in the tracking store"),
    (["report", "--out", ""], "argument --out: expected a path, got ''"),
    (["report", "--out", "{tmp}/ratings.dat"], "ratings.dat: expected a directory to write table3.md and table3.html in"),
    # stack: an empty folder or address would be the working directory or every interface
    (["stack", "up", "--dir", ""], "argument --dir: expected a path, got ''"),
    (["stack", "up", "--dir", "{tmp}/stack", "--host", ""], "argument --host: expected an address to listen on"),
    (["teach"], "argument COMMAND: invalid choice: 'teach'"),
    ([], "the following arguments are required: COMMAND"),
]
ROOT = Path(__file__).resolve().parents[1]
NOT_ERRORS = re.compile(r"seqrec: warning:|^\d{4}/\d\d/\d\d [\d:]+ INFO mlflow")  # MLflow creating its store
NEEDS_DATA = {"train", "evaluate", "recommend", "tune", "baselines"}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A split, a valid tiny model beside damaged ones, and a small ratings file (made once: nothing changes them)."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    split = write_synthetic_split(tmp_path / "split")
    model_file = tmp_path / "model.keras"
    scoring_model(build_model(40, hidden=8, embedding=8)).save(model_file)
    (tmp_path / "text.keras").write_text("not a model\n")
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "truncated.keras").write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with zipfile.ZipFile(tmp_path / "other.zip.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, but no Keras model")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n")
    spaces = {"syntax": "return {'hidden': }", "raises": "lr = trial.suggest_float('lr', 1e-3, 1e-1)\n    return 1 / 0",
              "unknown": "return {'hiden': 64}", "invalid": "return {'hidden': trial.suggest_int('hidden', 0, 0)}",
              "exits": "raise SystemExit(3)"}
    for name, body in spaces.items():
        (tmp_path / f"{name}.py").write_text(f"def suggest(trial):\n    {body}\n")
    lines = [f"{user}::{movie}::{1 + (user + movie) % 5}::{978300000 + movie}" for user in range(1, 30)
             for movie in range(1, 12)]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    return {"split": str(split), "model": str(model_file), "tmp": str(tmp_path)}


@pytest.fixture(scope="module")
def shared_tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow store for the module (creating one costs a second or two): every case checks it gains no run."""
    with isolated_tracking(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def all_runs() -> dict[str, str]:
    return {run.info.run_id: run.info.status
            for run in mlflow.search_runs(output_format="list", search_all_experiments=True)}


@pytest.mark.parametrize("argv, expected", REFUSED, ids=[" ".join(a[:1] + a[-2:]) for a, _ in REFUSED])
def test_bad_input_gets_one_line_and_status_2(argv, expected, hostile_dir, shared_tracking, capsys, monkeypatch):
    monkeypatch.setenv("SEQREC_DEBUG", "1")  # a bug must fail this test, not hide behind the last-resort line
    argv = [part.format(**hostile_dir) for part in argv]
    if argv and argv[0] in NEEDS_DATA and "--data" not in argv:
        argv += ["--data", hostile_dir["split"]]
    before = all_runs()
    status = _main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not NOT_ERRORS.search(line)]
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert expected.format(**hostile_dir) in lines[0]
    assert "Traceback" not in captured.err + captured.out
    new_runs = {run: status for run, status in all_runs().items() if run not in before}
    # refused before any run, except out of memory, found while building the model: its run ends FAILED
    assert list(new_runs.values()) == (["FAILED"] if "out of memory" in expected else [])


def _main(argv: list[str]) -> int:
    """``main``'s status, argparse's exits included."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_a_warm_up_that_outlasts_every_trial_is_said_before_the_study_starts(hostile_dir, shared_tracking, capsys):
    """Legal (no trial can then be pruned) but rarely meant: one warning line. The bad name after it stops the
    command before any trial, so the warning's place is checked without a study."""
    with pytest.warns(UserWarning, match="--warmup-epochs 6 is not under --epochs-per-trial 6: the pruner can stop no"):
        status = _main(["tune", "--warmup-epochs", "6", "--epochs-per-trial", "6", "--register-name", "a/b",
                        "--data", hostile_dir["split"]])
    assert status == 2, capsys.readouterr().err


def test_a_value_starting_with_a_dash_is_read_as_the_list_it_is():
    assert attach_list_values(["recommend", "--items", "-5,1000", "--k", "3"]) == [
        "recommend", "--items=-5,1000", "--k", "3"]
    assert attach_list_values(["recommend", "--items", "--k", "3"]) == ["recommend", "--items", "--k", "3"]


ACCEPTED_WITH_A_WARNING = [
    (["recommend", "--model", "{model}", "--items", "-5,1000"], "ignored 1 MovieID(s) not in the catalogue: [-5]"),
    (["recommend", "--model", "{model}", "--items", "1000,99999"],
     "ignored 1 MovieID(s) not in the catalogue: [99999]"),
]


@pytest.mark.parametrize("argv, warning", ACCEPTED_WITH_A_WARNING)
def test_documented_handling_says_what_it_did(argv, warning, hostile_dir, shared_tracking, capsys, monkeypatch):
    monkeypatch.setenv("SEQREC_DEBUG", "1")
    status = _main([part.format(**hostile_dir) for part in argv] + ["--data", hostile_dir["split"]])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert warning in captured.err and "Traceback" not in captured.err


MLPROJECT_REFUSED = [  # (entry point, -P params, the entry point's one line); MLflow passes them on as text
    ("main", ["lr=nan", "epochs=1"], "seqrec train: error: argument --lr: expected a finite number, got 'nan'"),
    ("recommend", ["items=-5,1000", "model=missing.keras"], "missing.keras: expected a .keras model file"),
]


@pytest.mark.slow
def test_mlflow_run_passes_bad_params_to_the_one_line_and_fails_the_run(hostile_dir, shared_tracking):
    """Through `mlflow run` the same line reaches the terminal; MLflow then ends the run FAILED and exits 1."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for entry_point, params, expected in MLPROJECT_REFUSED:
        before = all_runs()
        command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry_point, "--env-manager", "local",
                   "-P", f"data={hostile_dir['split']}", *(f"-P{param}" for param in params)]
        finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        errors = [line for line in finished.stderr.splitlines() if line.startswith("seqrec")]
        assert finished.returncode == 1 and "Traceback" not in finished.stderr, finished.stderr[-2000:]
        assert len(errors) == 1 and expected in errors[0], finished.stderr[-2000:]
        new_runs = {run: status for run, status in all_runs().items() if run not in before}
        assert list(new_runs.values()) == ["FAILED"]


CHOICE_PARAMS = {"cell", "regime", "tie_order", "imputed_targets", "rating_input", "users", "methods",
                 "within_second", "loss", "predictors", "autorec_refeed", "autorec_tied"}


def mlproject_cases() -> list[tuple[str, str, str]]:
    """(entry point, param, bad value) for every typed or choice param of every MLproject entry point."""
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    bad = {"int": ["abc", "1.5"], "float": ["abc", "nan"]}
    return [(name, param, value) for name, entry in spec["entry_points"].items()
            for param, declared in entry["parameters"].items()
            for value in (["bogus"] if takes_words(name, param, declared)
                          else bad.get(declared.get("type") if isinstance(declared, dict) else declared, []))]


def takes_words(entry_point: str, param: str, declared: object) -> bool:
    """A choice param, or a string param whose default is ``auto`` and whose other values are typed
    (``exclude_seen``, ``dropout``, ``distribute``, ...), not paths: a path's error names the file, as the data
    tests check."""
    auto = (isinstance(declared, dict) and declared.get("default") == "auto" and declared.get("type") == "string"
            and param not in ("data", "ratings"))
    return auto or param in CHOICE_PARAMS or (entry_point, param) == ("main", "model")


def mlproject_argv(entry_point: str, overrides: dict[str, str]) -> list[str]:
    """The seqrec arguments `mlflow run -e ENTRY_POINT -P ...` runs: the params substituted into the entry point's
    command, each quoted with shlex as MLflow does."""
    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry_point]
    values = {name: declared.get("default") for name, declared in entry["parameters"].items()
              if isinstance(declared, dict)}
    quoted = {name: shlex.quote(str(value)) for name, value in {**values, **overrides}.items()}
    command = entry["command"].format(**quoted)
    tokens = shlex.split(command)
    return tokens[tokens.index("seqrec") + 1:]


@pytest.mark.parametrize("entry_point, param, value", mlproject_cases())
def test_every_mlproject_param_refuses_a_bad_value_in_one_line(entry_point, param, value, hostile_dir,
                                                               shared_tracking, capsys):
    valid = {"data": hostile_dir["split"], "model": "rnn" if entry_point == "main" else hostile_dir["model"],
             "items": "1000",
             "ratings": f"{hostile_dir['tmp']}/ratings.dat" if entry_point in ("prepare", "ratings") else "unknown",
             "out": f"{hostile_dir['tmp']}/out"}
    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry_point]
    argv = mlproject_argv(entry_point, {**{name: v for name, v in valid.items() if name in entry["parameters"]},
                                        param: value})
    status = _main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not NOT_ERRORS.search(line)]
    assert status == 2 and len(lines) == 1, lines
    assert f"--{param.replace('_', '-')}" in lines[0] and repr(value) in lines[0]


def raise_(error: BaseException):
    def action():
        raise error
    return action


@pytest.mark.parametrize("error, status, expected", [
    (TrainingDiverged("training diverged: the loss became nan in epoch 2; try a lower learning rate than lr=5.0"),
     1, "seqrec train: training diverged: the loss became nan in epoch 2"),
    (KeyboardInterrupt(), 130, "seqrec train: interrupted"),
    (MemoryError(), 2, "seqrec train: error: out of memory (MemoryError); expected smaller sizes"),
    (ZeroDivisionError("division by zero"), 1, "seqrec train: internal error: ZeroDivisionError: division by zero "
                                               "(traceback in "),
])
@pytest.mark.parametrize("command", ["train", "benchmarks/zoo.py"])  # a benchmark script's command is its path
def test_failures_during_a_run_are_one_line_too(error, status, expected, command, capsys, monkeypatch):
    monkeypatch.delenv("SEQREC_DEBUG", raising=False)
    assert exit_status(command, raise_(error)) == status
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(expected.replace("seqrec train", f"seqrec {command}"))
    if "traceback in " in line:  # a bug's traceback is kept for its report
        kept = Path(line.split("traceback in ")[1].split(";")[0])
        assert "ZeroDivisionError" in kept.read_text()
        kept.unlink()


def test_a_loss_that_is_not_a_number_stops_the_fit_at_the_end_of_its_epoch():
    stop = StopOnDivergence(lr=5.0)
    stop.on_epoch_end(0, {"loss": 3.2})  # finite: nothing happens
    for loss in (float("nan"), float("inf")):
        with pytest.raises(TrainingDiverged, match=f"the loss became {loss} in epoch 3; try a lower learning rate"):
            stop.on_epoch_end(2, {"loss": loss})


def error_lines(capsys) -> list[str]:
    """The lines on stderr but MLflow's creating its store and seqrec's warnings."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip() and not NOT_ERRORS.search(line)]


def test_report_refuses_a_run_the_rnn_row_cannot_show(shared_tracking, capsys, monkeypatch):
    """--rnn-run-id names a finished training run with test metrics: another run's figures (a baseline's, a rating
    predictor's, a killed run's) would be shown as RNN-CCE's."""
    monkeypatch.setenv("SEQREC_DEBUG", "1")
    with mlflow.start_run() as other:  # a run of something else: no regime, no test metrics
        mlflow.log_param("predictor", "biased_mf")
    assert _main(["report", "--rnn-run-id", other.info.run_id]) == 2
    (line,) = error_lines(capsys)
    assert f"--rnn-run-id: expected a seqrec training run, got run {other.info.run_id}" in line
    with mlflow.start_run() as killed:
        mlflow.log_param("regime", "all_steps")
    mlflow.MlflowClient().set_terminated(killed.info.run_id, "FAILED")
    assert _main(["report", "--rnn-run-id", killed.info.run_id]) == 2
    (line,) = error_lines(capsys)
    assert f"expected a finished training run with test metrics at k=10, got run {killed.info.run_id} (FAILED, no " \
           "test_sps_at_10)" in line


def test_report_refuses_a_cutoff_no_run_logged(shared_tracking, capsys, monkeypatch):
    """A table of dashes says nothing: --k must be a cut-off some finished run logged (an empty store still reports)."""
    monkeypatch.setenv("SEQREC_DEBUG", "1")
    assert _main(["report", "--k", "1000"]) == 0  # nothing logged at any cut-off: the paper's rows
    with mlflow.start_run():  # a run at k=10 that is no row of the table (neither trained nor a baseline)
        mlflow.log_metric("test_sps_at_10", 0.3)
    assert _main(["report", "--k", "10"]) == 0
    capsys.readouterr()
    with mlflow.start_run():
        mlflow.log_param("regime", "all_steps")
        mlflow.log_metrics({"test_sps_at_10": 0.3, "test_sps_at_20": 0.4})
    assert _main(["report", "--k", "1000"]) == 2
    (line,) = error_lines(capsys)
    assert line.endswith("--k: no finished run logged test metrics at k=1000; the runs logged k = 10, 20 (train, "
                         "evaluate or run the baselines with --k 1000)")
    assert _main(["report", "--k", "20"]) == 0


def test_a_rating_predictor_that_diverges_is_a_failed_run_not_a_row_of_nan(hostile_dir, shared_tracking, capsys):
    before = all_runs()
    assert _main(["ratings", "--ratings", f"{hostile_dir['tmp']}/ratings.dat", "--predictors", "item_autorec",
                  "--autorec-lr", "1e300", "--autorec-epochs", "1", "--autorec-hidden", "4"]) == 1
    (line,) = error_lines(capsys)
    assert line.startswith("seqrec ratings: training diverged: ") and "lr=1e+300" in line
    assert list({run: status for run, status in all_runs().items() if run not in before}.values()) == ["FAILED"]


def test_a_model_uri_whose_store_has_no_client_installed_is_refused(hostile_dir, capsys, monkeypatch):
    """s3://, gs://, ...: MLflow imports the store's client (boto3, google-cloud-storage) when it reads the URI."""
    import mlflow.models

    def no_client(uri):
        raise ModuleNotFoundError("No module named 'botocore'")

    monkeypatch.setattr(mlflow.models, "get_model_info", no_client)
    assert _main(["evaluate", "--model", "s3://bucket/model", "--data", hostile_dir["split"]]) == 2
    (line,) = error_lines(capsys)
    assert "s3://bucket/model: expected a seqrec model" in line and "no client for its store" in line
