"""benchmarks/reproduce.py: one table per split, the paper's row only beside the authors' kind of split; and
benchmarks/baseline_grid.py, which scores a baseline's settings on the validation users of such a split; and how the
benchmarks refuse bad input (one line, status 2, as seqrec)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_synthetic_split
from seqrec.core.data import load_split

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
TINY = ["--hidden", "8", "--embedding", "4", "--max-len", "6", "--batch-size", "16", "--epochs", "1"]


def load_benchmark(script: str = "reproduce.py"):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(f"{Path(script).stem}_benchmark", BENCHMARK.with_name(script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_split(tmp_path: Path) -> Path:
    """A split prepared with a random order inside each second, from ratings rated in bursts of four."""
    from seqrec.core.prepare import prepare_split

    rng = np.random.default_rng(0)
    lines = [f"{user}::{movie}::{rng.integers(1, 6)}::{1000 + position // 4}"
             for user in range(1, 41) for position, movie in enumerate(rng.choice(30, 12, replace=False) + 1)]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    return prepare_split(tmp_path / "ratings.dat", tmp_path / "clean", n_val=8, n_test=8, within_second="random")


def test_a_clean_split_gets_its_table_with_the_tie_aware_figures_and_no_paper_row(tmp_path, mlflow_tracking, capsys):
    benchmark = load_benchmark()
    clean = clean_split(tmp_path)
    assert benchmark.main(["--seeds", "2", "--data", str(clean), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "clean split" in printed and "paper" not in printed
    lines = printed.splitlines()
    headings = next(line for line in lines if line.startswith("| method")).split(" | ")
    ours = next(line for line in lines if line.startswith("| RNN-CCE, seqrec")).split(" | ")
    tie = headings.index("tie-aware sps@10 (%)")
    assert "±" in ours[tie]  # two seeds: mean ± std
    assert float(ours[1].split(" ± ")[0]) <= float(ours[tie].split(" ± ")[0])
    import mlflow

    runs = mlflow.search_runs(experiment_names=["seqrec-benchmark"])
    assert len(runs) == 2 and set(runs["params.within_second"]) == {"random"}
    assert benchmark.is_clean(load_split(clean)) and not benchmark.is_clean(load_split(write_synthetic_split(
        tmp_path / "plain")))


def test_the_authors_kind_of_table_has_the_paper_row_and_a_dash_where_times_are_unknown():
    benchmark = load_benchmark()
    runs = [{"test sps@10": 0.36, "test recall@10": 0.08, "train_seconds": 300.0}]
    lines = benchmark.table("ours", runs, paper_row=True).splitlines()
    assert lines[2].startswith("| ours | 36.00 | – | 8.00 |")  # no times: no tie-aware figure, not a made-up one
    assert lines[3].startswith("| RNN-CCE, paper Table 3 | 33.45 ± 1.17 | – | 7.52 |")
    assert len(benchmark.table("ours", runs, paper_row=True, k=5).splitlines()) == 3  # the paper is at k = 10


def test_cell_is_mean_and_sample_std_and_a_dash_when_a_run_lacks_the_figure():
    benchmark = load_benchmark()
    assert benchmark.cell([0.30, 0.40], 100, 2) == "35.00 ± 7.07"
    assert benchmark.cell([0.30], 100, 2) == "30.00"
    assert benchmark.cell([0.30, None], 100, 2) == "–"


def test_the_zoo_benchmark_prints_a_row_per_model_and_loss(tmp_path, mlflow_tracking, capsys):
    zoo = load_benchmark("zoo.py")
    split = write_synthetic_split(tmp_path / "plain")
    assert zoo.main(["--variants", "pooling:cce,rnn:bpr", "--seeds", "1", "--first-seed", "3", "--data", str(split),
                     *TINY]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| pooling:cce") or line.startswith("| rnn:bpr")]
    assert len(rows) == 4  # the main table's row and the new-user curve's
    curve = printed[printed.index("new users"):].splitlines()
    assert curve[1].startswith("| model:loss | N = 1 | N = 2 |") and curve[3].startswith("| pooling:cce | ")
    assert "–" not in curve[3] and curve[3].count("|") == 9
    import mlflow

    runs = mlflow.search_runs(experiment_names=["seqrec-zoo"])
    assert sorted(zip(runs["params.model"], runs["params.loss"])) == [("pooling", "cce"), ("rnn", "bpr")]
    assert set(runs["params.seed"]) == {"3"}  # --first-seed: a row's further seed runs on its own
    assert sorted(name.rsplit("-h", 1)[0] for name in runs["tags.mlflow.runName"]) == [
        "pooling-cce-all_steps", "rnn-bpr-all_steps"]  # mlflow ui tells the models apart by name
    with pytest.raises(SystemExit):
        zoo.main(["--variants", "bert:cce"])
    assert zoo.variant("lstm:hinge") == ("lstm", "hinge") and zoo.REPRESENTATIONS["lstm"] == {"model": "rnn",
                                                                                           "cell": "lstm"}
    assert "lstm:cce" in zoo.ALL_VARIANTS  # the whole zoo has Spotlight's LSTM


def test_a_runs_blend_with_slist_scores_as_the_run_validated_it(tmp_path, mlflow_tracking, capsys):
    """benchmarks/ensemble.py blends a run's network with SLIST fitted as the run fitted it (its order inside a
    second: tie order, noise and seed), so at the run's own weight it reproduces the run's validation figures."""
    import mlflow

    from seqrec.experiment.cli import main

    split = clean_split(tmp_path)  # bursts of four same-second ratings: the tie draw matters
    assert main(["train", "--data", str(split), *TINY, "--slist-weight", "0.5", "--tie-order", "movie",
                 "--seed", "3", "--k", "5"]) == 0
    run = mlflow.search_runs(output_format="list")[0]
    assert load_benchmark("ensemble.py").main(["--runs", run.info.run_id, "--validation-only",
                                               "--slist-weights", "0.5"]) == 0
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:3] for line in capsys.readouterr().out.splitlines()[2:]}
    metrics = run.data.metrics
    assert rows["rnn × 1 + SLIST × 0.5"] == [f"{100 * metrics['best_val_sps_at_5']:.2f}",
                                             f"{100 * metrics['best_val_sps_tie_at_5']:.2f}"]


def test_the_zoo_scores_each_variants_seeds_and_all_its_runs_as_ensembles(tmp_path, mlflow_tracking, capsys):
    """An ensemble of one run ranks as the run does alone, so its figures are the run's; more seeds grow it a row
    each; all variants make one more."""
    zoo = load_benchmark("zoo.py")
    split = write_synthetic_split(tmp_path / "plain")
    # the networks alone (not the GRU's default blend with SLIST): the blend rows below add SLIST to them
    assert zoo.main(["--variants", "pooling:cce,rnn:cce", "--seeds", "1", "--data", str(split), "--ensemble",
                     "--slist-weight", "0", *TINY]) == 0
    printed = capsys.readouterr().out
    main_table = printed[:printed.index("new users")].splitlines()
    # the figures an ensemble has too: not the held-out picks, the train time and the tokens/s
    main_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:-4] for line in main_table
                 if line.startswith(("| pooling:", "| rnn:"))}
    ensembles = printed[printed.index("ensembles"):].splitlines()
    assert ensembles[1].startswith("| ensemble | sps@10 (%) |") and "tokens/s" not in ensembles[1]
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in ensembles[3:]}
    assert list(rows) == ["pooling:cce × 1", "rnn:cce × 1", "pooling:cce + rnn:cce"]
    for name in ("pooling:cce", "rnn:cce"):
        assert rows[f"{name} × 1"][:-1] == main_rows[name]  # every figure but the train time, to the digit
    assert float(rows["pooling:cce + rnn:cce"][-1].rstrip(" |")) == pytest.approx(
        sum(float(rows[f"{name} × 1"][-1].rstrip(" |")) for name in main_rows), abs=1)  # the members' summed time

    # benchmarks/ensemble.py mixes finished runs by id, one group each: the same rows as the zoo's
    import mlflow

    ids = {run.data.params["model"]: run.info.run_id
           for run in mlflow.search_runs(experiment_names=["seqrec-zoo"], output_format="list")}
    mix = load_benchmark("ensemble.py")
    assert mix.main(["--runs", ids["pooling"], "--runs", ids["rnn"]]) == 0
    mixed = {line.split(" | ")[0][2:]: line.split(" | ")[1:-1] for line in capsys.readouterr().out.splitlines()
             if line.startswith(("| pooling", "| rnn"))}
    assert mixed == {"pooling × 1": rows["pooling:cce × 1"][:-1], "rnn × 1": rows["rnn:cce × 1"][:-1],
                     "pooling × 1 + rnn × 1": rows["pooling:cce + rnn:cce"][:-1]}
    assert mix.main(["--runs", ids["rnn"], "--validation-only"]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert header == "| ensemble | val sps@10 (%) | val tie-aware sps@10 (%) | train time (s) |"
    assert row.split(" | ")[1:-1] == rows["rnn:cce × 1"][5:-1]  # no test figure: chosen on validation first
    # blended with SLIST: one more row per weight, the group's own row unchanged
    assert mix.main(["--runs", ids["rnn"], "--validation-only", "--slist-weights", "0.5,1"]) == 0
    blended = {line.split(" | ")[0][2:]: line.split(" | ")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(blended) == ["rnn × 1", "rnn × 1 + SLIST × 0.5", "rnn × 1 + SLIST × 1"]
    assert blended["rnn × 1"] == row.split(" | ")[1:-1]
    with pytest.raises(SystemExit) as refused:
        mix.main(["--runs", ids["rnn"], "--slist-weights", "0"])
    assert refused.value.code == 2 and "weights in (0, 1]" in capsys.readouterr().err
    # other SLIST settings: one set of blend rows each; a run's own settings, spelt out, give the rows above
    own, first_order = '{"window": 20, "decay": 0.8, "l2": 300}', '{"window": 1}'
    assert mix.main(["--runs", ids["rnn"], "--validation-only", "--slist-weights", "0.5,1",
                     "--slist-settings", own, "--slist-settings", first_order]) == 0
    tried = {line.split(" | ")[0][2:]: line.split(" | ")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(tried) == ["rnn × 1", *(f"rnn × 1 + SLIST {setting} × {weight}" for setting in (own, first_order)
                                        for weight in ("0.5", "1"))]
    assert [tried[f"rnn × 1 + SLIST {own} × {weight}"] for weight in ("0.5", "1")] == \
        [blended[f"rnn × 1 + SLIST × {weight}"] for weight in ("0.5", "1")]
    for bad, said in (('{"window": 0}', "SLIST needs window >= 1"), ('{"windows": 5}', "windows"),
                      ("[5]", "expected a JSON object")):
        with pytest.raises(SystemExit) as refused:
            mix.main(["--runs", ids["rnn"], "--slist-weights", "0.5", "--slist-settings", bad])
        error = capsys.readouterr().err
        assert refused.value.code == 2 and said in error and len(error.strip().splitlines()) <= 2, error
    with pytest.raises(SystemExit) as refused:
        mix.main(["--runs", ids["rnn"], "--slist-settings", own])
    assert refused.value.code == 2 and "needs --slist-weights" in capsys.readouterr().err
    from seqrec.experiment.errors import ParameterError
    with pytest.raises(ParameterError, match="--data: .* is not the data the runs trained on"):
        mix.main(["--runs", ids["rnn"], "--data", str(write_synthetic_split(tmp_path / "other", seed=5))])

    # one more seed: the ensemble grows a row, and its first seed's row is the one above (read back, not retrained)
    assert zoo.main(["--variants", "pooling:cce", "--seeds", "2", "--data", str(split), "--ensemble", *TINY]) == 0
    printed = capsys.readouterr().out
    grown = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in printed.splitlines()
             if line.startswith("| pooling:cce ×")}
    assert list(grown) == ["pooling:cce × 1", "pooling:cce × 2"]
    assert grown["pooling:cce × 1"] == rows["pooling:cce × 1"]
    import mlflow
    runs = mlflow.search_runs(experiment_names=["seqrec-zoo"], filter_string="params.model = 'pooling'",
                              output_format="list")
    assert len(runs) == 2  # the members' summed time, printed in whole seconds (never compared across runs)
    assert float(grown["pooling:cce × 2"][-1].rstrip(" |")) == pytest.approx(
        sum(run.data.metrics["train_seconds"] for run in runs), abs=0.51)


def test_star_cutoff_scores_each_cut_off_from_a_rating_input_runs_two_curves(tmp_path, mlflow_tracking, capsys):
    """benchmarks/star_cutoff.py: the curve with the stars is the run's own logged new-user curve; a cut-off N takes
    the curve without them below N; a run that reads no stars is refused."""
    import mlflow

    split = write_synthetic_split(tmp_path / "rated")
    assert load_benchmark("zoo.py").main(["--variants", "pooling:cce", "--seeds", "1", "--data", str(split),
                                          "--rating-input", "true", *TINY]) == 0
    run = mlflow.search_runs(experiment_names=["seqrec-zoo"], output_format="list")[0]
    capsys.readouterr()
    cutoff = load_benchmark("star_cutoff.py")
    assert cutoff.main(["--runs", run.info.run_id, "--users", "test", "--longest", "3", "--max-cutoff", "3"]) == 0
    rows = {line.split(" | ")[0][2:]: [float(cell.split(" ")[0]) for cell in line.rstrip(" |").split(" | ")[1:]]
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith(("| mean of", "| rating_min_history"))}
    stars, unknown = rows["with the stars"], rows["every star unknown"]
    for given in (1, 2, 3):
        assert stars[given - 1] == pytest.approx(
            100 * run.data.metrics[f"test_new_user_sps_at_10_given_{given}"], abs=0.006)
    assert stars[3] == pytest.approx(100 * run.data.metrics["test_sps_at_10"], abs=0.006)  # the whole half
    assert rows["0"][0] == pytest.approx(np.mean(stars[:3]), abs=0.01)
    assert rows["3"][0] == pytest.approx(np.mean(unknown[:2] + stars[2:3]), abs=0.01)
    assert rows["2"][1] == pytest.approx(rows["2"][0] - rows["0"][0], abs=0.002)
    with mlflow.start_run() as plain:
        mlflow.log_param("data_sha256", run.data.params["data_sha256"])
    from seqrec.experiment.errors import ParameterError
    with pytest.raises(ParameterError, match="did not train with rating_input=true"):
        cutoff.main(["--runs", plain.info.run_id])
    with pytest.raises(ParameterError, match="--longest: expected a positive integer, got 0"):
        cutoff.main(["--runs", run.info.run_id, "--longest", "0"])


def test_baseline_grid_scores_each_setting_on_validation_users_over_seeds(tmp_path, capsys) -> None:
    """benchmarks/baseline_grid.py: one row per setting, tie-aware sps where times are known; bad settings exit 2."""
    grid = load_benchmark("baseline_grid.py")
    clean = clean_split(tmp_path)
    assert grid.main(["--data", str(clean), "--method", "knn", "--seeds", "2",
                      '{"neighbours": 2}', '{"neighbours": 5}']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| sps@10 | sps_tie@10 | recall@10 | item_coverage | fit (s) |" in lines[0]
    rows = [line for line in lines if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ['{"neighbours": 2}', '{"neighbours": 5}']
    assert all(row.count("±") == 4 for row in rows)  # mean ± std over the 2 seeds
    for bad in ('{"neighbors": 2}', "[2]", '{"neighbours": 0}'):
        with pytest.raises(SystemExit) as stopped:
            grid.main(["--data", str(clean), "--method", "knn", bad])
        assert stopped.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_a_benchmark_run_again_keeps_its_finished_runs_unless_told_to_rerun(tmp_path, mlflow_tracking, capsys,
                                                                             monkeypatch):
    """A benchmark longer than a session runs in pieces: a cell with a finished run of the same params and data
    is read back, not trained again; ``--rerun`` trains it again, and so does any changed param."""
    import sys

    import mlflow

    zoo = load_benchmark("zoo.py")
    split = write_synthetic_split(tmp_path / "plain")
    argv = ["--variants", "pooling:cce", "--seeds", "2", "--data", str(split), *TINY]
    assert zoo.main(argv) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pooling:cce")]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    with monkeypatch.context() as patched:
        patched.setattr(sys.modules["reproduce"], "train_run", no_training)
        assert zoo.main(argv) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pooling:cce")] == first
    runs = mlflow.search_runs(experiment_names=["seqrec-zoo"])
    assert len(runs) == 2 and runs["metrics.best_val_held_out_sps_at_10"].between(0, 1).all()  # read back too
    assert zoo.main([*argv, "--rerun", "--validation-only"]) == 0  # trained again: no test figure printed
    printed = capsys.readouterr().out
    assert "test users" not in printed and "new users" not in printed
    header = next(line for line in printed.splitlines() if line.startswith("| model:loss"))
    assert header == ("| model:loss | val sps@10 (%) | val tie-aware sps@10 (%) | val sps@10, held-out pick (%) | "
                      "val tie-aware, held-out pick (%) | train time (s) | tokens/s |")
    assert zoo.main([*argv, "--lr", "0.02"]) == 0
    assert len(mlflow.search_runs(experiment_names=["seqrec-zoo"])) == 6


def test_a_run_logged_before_a_param_existed_matches_that_params_default(tmp_path, mlflow_tracking):
    """Adding an option must not orphan every stored benchmark run: a run without the param ran as its default."""
    from dataclasses import asdict, replace

    import mlflow

    from seqrec.core.config import TrainConfig
    from seqrec.experiment.records import param_value
    from seqrec.experiment.tracking import finished_run

    split = load_split(write_synthetic_split(tmp_path / "plain"))
    config = TrainConfig(model="pooling", epochs=1)
    with mlflow.start_run() as old:
        mlflow.log_params({**{name: param_value(value) for name, value in asdict(config).items()
                              if name != "tied_output"}, "data_sha256": split.checksum})
        mlflow.log_metrics({"best_epoch": 1, "test_sps_at_10": 0.25, "train_seconds": 3.0,
                            "train_tokens_per_second": 100.0})
    assert finished_run(config, split).run_id == old.info.run_id
    assert finished_run(replace(config, tied_output=True), split) is None  # not the default: not that run
    assert finished_run(replace(config, lr=0.02), split) is None  # a param the run has must still be equal


def test_rating_grid_scores_each_setting_on_validation_ratings_not_the_test_ones(tmp_path, capsys) -> None:
    """benchmarks/rating_grid.py: one row per setting, mean ± std over seeds, on 10 % of the *training* ratings."""
    from test_rating_prediction import low_rank_ratings, write_ratings_dat

    grid = load_benchmark("rating_grid.py")
    table = low_rank_ratings()
    path = write_ratings_dat(table, tmp_path / "ratings.dat")
    from seqrec.core.explicit import random_split

    split = random_split(table, 0.1, 0)
    validation = grid.validation_split(split, 0)
    assert len(validation.test_ratings) == len(split.train_ratings) // 10
    assert len(validation.train_ratings) + len(validation.test_ratings) == len(split.train_ratings)
    test_pairs = set(zip(split.test_users.tolist(), split.test_items.tolist()))
    assert not test_pairs & set(zip(validation.test_users.tolist(), validation.test_items.tolist()))
    assert grid.main(["--ratings", str(path), "--predictor", "biased_mf", "--seeds", "2",
                      '{"factors": 4, "epochs": 3}', '{"factors": 8, "epochs": 3}']) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ['{"factors": 4, "epochs": 3}', '{"factors": 8, "epochs": 3}']
    assert all(row.count("±") == 3 for row in rows)  # RMSE, MAE and the epoch kept over the 2 seeds
    for bad in ('{"factorz": 4}', '{"reg": 1}'):
        predictor = "biased_mf" if "factorz" in bad else "item_mean"
        with pytest.raises(SystemExit) as stopped:
            grid.main(["--ratings", str(path), "--predictor", predictor, bad])
        assert stopped.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_the_zoo_checks_each_variants_configuration_before_any_run(tmp_path, mlflow_tracking, capsys):
    """An option may fit one model and not another (a tied output needs the output width to be the embedding's):
    each variant's configuration is built with its own model, and one that cannot be is refused in one line."""
    from seqrec.experiment.cli import script_status

    zoo = load_benchmark("zoo.py")
    split = write_synthetic_split(tmp_path / "plain")
    tied = ["--seeds", "1", "--data", str(split), *TINY, "--tied-output", "true", "--epochs", "1"]
    assert script_status("benchmarks/zoo.py", lambda: zoo.main(["--variants", "sasrec:cce", *tied])) == 0
    capsys.readouterr()
    assert script_status("benchmarks/zoo.py", lambda: zoo.main(["--variants", "sasrec:cce,rnn:cce", *tied])) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("seqrec benchmarks/zoo.py: error: tied_output needs the network's output width")
    import mlflow

    assert len(mlflow.search_runs(experiment_names=["seqrec-zoo"])) == 1  # the refused command ran nothing


@pytest.mark.parametrize("script", ["reproduce.py", "zoo.py"])
def test_a_benchmark_refuses_a_training_option_out_of_range_in_one_line_with_status_2(tmp_path, script, capsys):
    from seqrec.experiment.cli import script_status

    benchmark = load_benchmark(script)
    arguments = ["--data", str(write_synthetic_split(tmp_path / "plain")), "--lr", "-1"]
    assert script_status(script, lambda: benchmark.main(arguments)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # refused before MLflow's store is opened
    assert line == f"seqrec {script}: error: lr must be positive, got -1.0"


@pytest.mark.parametrize("script", ["reproduce.py", "zoo.py", "baseline_grid.py"])
def test_a_benchmark_refuses_a_missing_split_in_one_line_with_status_2(tmp_path, script, mlflow_tracking, capsys):
    from seqrec.experiment.cli import script_status

    benchmark = load_benchmark(script)
    grid_only = ["--method", "pop", "{}"] if script == "baseline_grid.py" else []
    arguments = ["--data", str(tmp_path / "missing"), *grid_only]
    assert script_status(script, lambda: benchmark.main(arguments)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # refused before MLflow's store is opened
    assert line.startswith(f"seqrec {script}: error: {tmp_path / 'missing'}: expected an existing split directory")


@pytest.mark.parametrize("text, said", [("v:hidden=abc", "expected an integer, got 'abc'"),
                                        ("v:nope=1", "unknown keys ['nope']"),
                                        ("v:input=x", "input must be one of"),
                                        ("v:rating_input=maybe", "expected true or false, got 'maybe'"),
                                        ("v:hidden=-3", "hidden must be a positive integer"),
                                        ("v:intra=two", "intra must be a thread count")])
def test_throughput_refuses_a_bad_variant_before_any_child_starts(text, said):
    import argparse

    throughput = load_benchmark("throughput.py")
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(said)):
        throughput.parse_variant(text)
    assert throughput.parse_variant("v:rating_input=false,input=feed")[1] == {"rating_input": "false", "input": "feed"}
    assert throughput.parse_variant("v:intra=1,inter=0")[1] == {"intra": "1", "inter": "0"}
    assert throughput.config_of({"rating_input": "false", "hidden": "8"}).rating_input is False


def test_throughput_says_its_childs_one_line_for_a_missing_split(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARK.with_name("throughput.py")), "--data", str(tmp_path / "no"),
                           "--batches", "1"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(BENCHMARK.parents[1] / "src")})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"seqrec benchmarks/throughput.py: error: {tmp_path / 'no'}: expected an existing split")


def test_step_parts_times_each_part_of_a_step_at_the_sizes_given():
    done = subprocess.run([sys.executable, str(BENCHMARK.with_name("step_parts.py")), "--items", "40", "--hidden", "8",
                           "--embedding", "4", "--max-len", "5", "--batch-size", "3", "--repeats", "1", "--passes",
                           "2"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(BENCHMARK.parents[1] / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert "batch 3 x 5 steps, 12 held cells, embedding 4, hidden 8, 40 items" in lines[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in lines[3:]}
    assert list(rows) == ["GRU", "output layer + softmax CE", "its matrix products", "its softmax CE"]
    assert all(float(value) > 0 for values in rows.values() for value in values)


def test_step_parts_refuses_a_size_that_is_not_a_positive_integer():
    done = subprocess.run([sys.executable, str(BENCHMARK.with_name("step_parts.py")), "--hidden", "0"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(BENCHMARK.parents[1] / "src")})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "step_parts.py: error: argument --hidden: expected a positive integer, got '0' (see 'step_parts.py --help')"]


def benchmark_status(script: str, argv: list[str]) -> int:
    """A benchmark's exit status as its command line gets it (argparse's exits included)."""
    from seqrec.experiment.cli import script_status

    module = load_benchmark(script)
    try:
        return script_status(f"benchmarks/{script}", lambda: module.main(argv))
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("script", ["reproduce.py", "zoo.py"])
@pytest.mark.parametrize("argv, expected", [
    (["--seeds", "0"], "--seeds: expected at least 1 seed, got 0"),
    (["--seeds", "-2"], "--seeds: expected at least 1 seed, got -2"),
    (["--first-seed", "-1"], "argument --first-seed: expected a seed between 0 and 4294967295, got '-1'"),
    (["--first-seed", "4294967295", "--seeds", "2"], "--seeds: expected seeds up to 4294967295, got 2 seeds"),
    (["--k", "41"], "--k: expected a cut-off between 1 and 40 (the catalogue size), got '41'"),
    (["--seed", "3"], "unrecognized arguments: --seed 3"),  # not --seeds 3: three runs of seeds 0 to 2
])
def test_the_training_benchmarks_refuse_bad_seeds_and_cutoffs_before_any_run(script, argv, expected, tmp_path,
                                                                            mlflow_tracking, capsys):
    split = write_synthetic_split(tmp_path / "split")
    assert benchmark_status(script, ["--data", str(split), *TINY, *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1, error
    import mlflow

    assert mlflow.search_runs(output_format="list", search_all_experiments=True) == []


TUNE_FILES = ["--search-space", str(BENCHMARK.parents[1] / "tuning" / "search_space.py"), "--storage",
              "sqlite:///{tmp}/optuna.db", "--export", "{tmp}/best.keras", "--data", "{split}"]


@pytest.mark.parametrize("script, argv, expected", [
    ("serve.py", ["--requests", "0"], "argument --requests: expected a positive integer, got '0'"),
    ("serve.py", ["--rounds", "-1"], "argument --rounds: expected a positive integer, got '-1'"),
    ("serve.py", ["--model", ""], "argument --model: expected a seqrec model"),
    ("scale.py", ["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    ("scale.py", ["--work", "{tmp}/work", "--sizes", "ml1m", "--ml1m", "{tmp}/nowhere.dat"],
     "--ml1m: expected the path of ML-1M's ratings.dat for size ml1m, got '{tmp}/nowhere.dat'"),
    ("tune.py", [*TUNE_FILES, "--timeout", "nan"], "argument --timeout: expected a finite number, got 'nan'"),
    ("tune.py", [*TUNE_FILES, "--n-trials", "0"], "expected --n-trials and --epochs-per-trial of at least 1"),
    ("tune.py", [*TUNE_FILES, "--final-epochs", "-1"], "and --final-epochs >= 0, got 20, 6 and -1"),
    ("tune.py", [*TUNE_FILES, "--default-run-id", "abc"], "--default-run-id: no run 'abc' in the tracking store"),
    ("mc_ablation.py", ["--data", "{split}", "--draws", "0"], "argument --draws: expected at least 1 draw, got 0"),
    ("mc_ablation.py", ["--data", "{split}"], "{split}: expected a split with training times"),
    ("rating_grid.py", ["--predictor", "biased_mf", "--ratings", "{tiny}", '{{"factors": 4}}'],
     "{tiny}: expected enough ratings for a 90/10 split"),
])
def test_the_other_benchmarks_refuse_bad_input_in_one_line_before_any_run(script, argv, expected, tmp_path,
                                                                         mlflow_tracking, capsys):
    """Each of these was a traceback, a wrong message after an hour of trials, or accepted (2026-12-06)."""
    tiny = tmp_path / "ratings.dat"
    tiny.write_text("1::1::5::978300760\n1::2::3::978300761\n2::1::4::978300762\n")
    names = {"tmp": tmp_path, "split": write_synthetic_split(tmp_path / "split"), "tiny": tiny}
    assert benchmark_status(script, [part.format(**names) for part in argv]) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip() and " INFO mlflow" not in line]
    assert len(said) == 1 and expected.format(**names) in said[0], said  # MLflow's creating its store aside
    import mlflow

    assert mlflow.search_runs(output_format="list", search_all_experiments=True) == []


def test_the_rating_grid_refuses_bad_seeds_and_settings_in_one_line(tmp_path, capsys):
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("\n".join(f"{user}::{movie}::{1 + (user + movie) % 5}::{978300000 + movie}"
                                 for user in range(1, 30) for movie in range(1, 12)) + "\n")
    for predictor, argv, expected in (
            ("global_mean", ["{}", "--seeds", "0"], "argument --seeds: expected at least 1 seed, got 0"),
            ("biased_mf", ['{"factors": 0}'], "factors must be an integer >= 1, got 0"),
            ("biased_mf", ['{"factors": "x"}'], "factors must be an integer >= 1, got 'x'"),
            ("biased_mf", ['{"lr": -1}'], "lr must be a number > 0, got -1"),
            ("biased_mf", ['{"reg": NaN}'], "expected a JSON object of finite numbers"),
            ("biased_mf", ['{"lr": 1e999}'], "expected a JSON object of finite numbers"),
            ("item_autorec", ['{"layers": []}'], "layers must be a list of one or more encoder widths"),
            ("item_autorec", ['{"layers": [4.5]}'], "each of layers must be an integer >= 1, got 4.5"),
            ("item_autorec", ['{"dropout": 1.5}'], "dropout must be a number in [0, 1), got 1.5"),
            ("item_autorec", ['{"activation": "bogus"}'], "activation must be the name of a Keras activation"),
            ("user_autorec", ['{"tied": 1}'], "tied must be true or false, got 1")):
        assert benchmark_status("rating_grid.py", ["--ratings", str(ratings), "--predictor", predictor, *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert expected in error and len(error.splitlines()) == 1, error


@pytest.mark.parametrize("setting, expected", [
    ('{"window": NaN}', "expected a JSON object of finite numbers"),
    ('{"window": 1e999}', "expected a JSON object of finite numbers"),
    ('{"window": 2.5}', "SLIST needs window >= 1 (an integer)"),
    ('{"decay": "x"}', "decay='x'"),
])
def test_the_ensemble_benchmark_refuses_slist_settings_it_could_not_fit(setting, expected, mlflow_tracking, capsys):
    """Refused before any run is read, in one line: not a TypeError from inside SLIST's fit."""
    assert benchmark_status("ensemble.py", ["--runs", "0123456789abcdef", "--slist-weights", "0.5",
                                            "--slist-settings", setting]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1, error
