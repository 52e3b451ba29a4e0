"""Baselines (POP, MC, user-KNN, MF) on hand-made data, their MLflow runs and the Table-3 report."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from seqrec.core.baselines import (BASELINES, evaluate_baseline, ImplicitMF, MarkovChain, NextMovieId, Pop, ranked,
                                   SLIST, UserKNN)

from seqrec.experiment.baseline_runs import run_baselines

from seqrec.experiment.cli import main
from seqrec.core.data import load_split, Sequences, split_half
from seqrec.core.metrics import ranking_metrics, top_k
from seqrec.core.scoring import new_user_curve


def seqs(*lists: list[int]) -> Sequences:
    return Sequences.from_lists([list(s) for s in lists])


def test_ranked_breaks_ties_by_popularity_then_id_and_survives_float32() -> None:
    primary = np.array([[1e9 + 1, 1e9 + 1, 1e9, 0.0]])  # equal in float32, different in float64
    scores = ranked(primary, tie_break=np.array([0, 1, 2, 3]))
    assert scores.dtype == np.float32
    assert top_k(scores, 4).tolist() == [[1, 0, 2, 3]]  # 1 ties with 0 on the score, wins on the tie-break


def test_pop_ranks_by_training_count_and_excludes_inputs() -> None:
    train = seqs([0, 1, 2], [1, 2], [2, 3], [2, 1, 4])  # counts: 2 -> 4, 1 -> 3, then 0, 3, 4 once each
    model = Pop().fit(train, n_items=6)
    np.testing.assert_array_equal(model.popularity, [1, 3, 4, 1, 1, 0])
    inputs = seqs([5], [2, 0])
    recommended = top_k(model.score(inputs), 4, exclude=inputs)
    assert recommended[0].tolist() == [2, 1, 0, 3]  # ties (0, 3, 4 once each) go to the lower id
    assert recommended[1].tolist() == [1, 3, 4, 5]  # inputs 2 and 0 never recommended


def test_markov_chain_scores_transitions_out_of_last_input_item() -> None:
    # 0 -> 1 twice, 0 -> 2 once, 1 -> 3 once; consecutive items of different users are not a transition
    train = seqs([0, 1, 3], [0, 2], [4, 0, 1], [2, 2, 2, 2, 2, 2])
    model = MarkovChain().fit(train, n_items=5)
    transitions = model.transitions.toarray()
    assert transitions[0].tolist() == [0, 2, 1, 0, 0]
    assert transitions[1].tolist() == [0, 0, 0, 1, 0]
    assert transitions[3].sum() == 0 and transitions[2].tolist() == [0, 0, 5, 0, 0]  # none across users
    inputs = seqs([3, 0], [4, 3], [])
    recommended = top_k(model.score(inputs), 3, exclude=inputs)
    assert recommended[0].tolist() == [1, 2, 4]  # counts first, then popularity (4 once)
    assert recommended[1].tolist() == [2, 0, 1]  # item 3 has no successor: popularity (2: 7, 0: 3, 1: 2)
    assert recommended[2].tolist() == [2, 0, 1]  # empty input: popularity


def test_user_knn_uses_cosine_neighbours_among_train_and_other_inputs() -> None:
    train = seqs([0, 1, 2], [0, 1, 2, 3, 4, 5], [6, 7])
    inputs = seqs([0, 1], [6])
    model = UserKNN(neighbours=1).fit(train, n_items=9)
    similarity = model.similarities(inputs)  # columns: 3 training users, then the 2 input halves
    np.testing.assert_allclose(similarity[0], [2 / np.sqrt(6), 2 / np.sqrt(12), 0, 0, 0])
    np.testing.assert_allclose(similarity[1], [0, 0, 1 / np.sqrt(2), 0, 0])  # its own half is not a neighbour
    recommended = top_k(model.score(inputs), 1, exclude=inputs)
    assert recommended[:, 0].tolist() == [2, 7]  # the nearest neighbour's unseen item
    wide = UserKNN(neighbours=2).fit(train, n_items=9)
    assert top_k(wide.score(inputs), 2, exclude=inputs)[0].tolist() == [2, 3]  # 2: 0.82 + 0.58, then 3 (0.58, the lowest id of 3-5)


def test_user_knn_can_use_another_evaluated_users_input_half() -> None:
    train = seqs([0, 1], [2, 3])
    inputs = seqs([5, 6, 7], [5, 6, 8])  # each other's best neighbour only through the input halves
    recommended = top_k(UserKNN(neighbours=1).fit(train, 9).score(inputs), 1, exclude=inputs)
    assert recommended[:, 0].tolist() == [8, 7]
    alone = top_k(UserKNN(neighbours=1, include_inputs=False).fit(train, 9).score(inputs), 1, exclude=inputs)
    assert 8 not in alone[0]


def test_mf_recovers_block_structure() -> None:
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([(rng.permutation(8)[:6] + 8 * (user % 2)).tolist() for user in range(60)])
    model = ImplicitMF(factors=4, iterations=8, seed=1).fit(train, n_items=16)
    inputs = seqs([0, 1, 2], [9, 10, 11])
    recommended = top_k(model.score(inputs), 5, exclude=inputs)
    assert set(recommended[0]) <= set(range(3, 8))
    assert set(recommended[1]) <= {8, *range(12, 16)}


def test_the_denoising_autoencoder_learns_which_items_go_together() -> None:
    """Two tastes: users rate within one half of the catalogue, the first half more popular. For a user of the
    second half, POP recommends the first; the autoencoder learns which items go together."""
    from seqrec.core.baselines import DenoisingAutoencoder
    from seqrec.core.metrics import ranking_metrics, top_k

    rng = np.random.default_rng(0)
    halves = [0] * 150 + [1] * 50
    train = Sequences.from_lists([(half * 20 + rng.choice(20, 10, replace=False)).tolist() for half in halves])
    inputs, goals = split_half(Sequences.from_lists([(20 + rng.choice(20, 10, replace=False)).tolist()
                                                     for _ in range(30)]))

    def recall(model) -> float:
        scores = model.fit(train, 40).score(inputs)
        return ranking_metrics(top_k(scores, 5, exclude=inputs), goals, 40)["recall@5"]
    # the best a set model can do: its 5 picks among the 15 unseen items of the right half hold 5/15 of the goal
    assert recall(Pop()) == 0.0 and recall(DenoisingAutoencoder(hidden=16, epochs=30, lr=0.01, batch_size=16)) > 0.2
    with pytest.raises(ValueError, match="DAE needs"):
        DenoisingAutoencoder(dropout=1.0)


def test_the_dot_product_factorisation_folds_in_unseen_users_of_a_taste() -> None:
    """Two tastes as above; the evaluated users are unseen, so their vectors come from their input halves only."""
    from seqrec.core.baselines import DotProductMF

    rng = np.random.default_rng(0)
    train = Sequences.from_lists([(half * 20 + rng.choice(20, 10, replace=False)).tolist()
                                  for half in [0] * 150 + [1] * 50])
    inputs, goals = split_half(Sequences.from_lists([(20 + rng.choice(20, 10, replace=False)).tolist()
                                                     for _ in range(30)]))
    model = DotProductMF(factors=4, epochs=40, fold_in_epochs=40, lr=0.05, batch_size=16).fit(train, 40)
    recommended = top_k(model.score(inputs), 5, exclude=inputs)
    assert np.mean(recommended >= 20) > 0.9  # POP would recommend only the first half
    assert ranking_metrics(recommended, goals, 40)["recall@5"] > 0.2
    with pytest.raises(ValueError, match="DOTMF needs"):
        DotProductMF(factors=0)


def test_evaluate_baseline_fits_and_follows_the_protocol(synthetic_split_dir) -> None:
    split = load_split(synthetic_split_dir)
    metrics = evaluate_baseline(MarkovChain(), split, "test", k=5)
    assert set(metrics) >= {"sps@5", "recall@5", "ndcg@5", "mrr@5", "user_coverage", "item_coverage",
                            "blockbuster_share"}
    # the synthetic users mostly step +1: the chain predicts the next item far above popularity
    popularity = evaluate_baseline(Pop(), split, "test", k=5)["sps@5"]
    assert metrics["sps@5"] > popularity + 0.3
    assert evaluate_baseline(SLIST(), split, "test", k=5)["sps@5"] > popularity + 0.3  # so do SLIST's transitions
    inputs, _ = split_half(split.test)
    for name, make in BASELINES.items():
        scores = make().fit(split.train, split.n_items).score(inputs)
        assert scores.shape == (len(split.test), split.n_items), name


def test_run_baselines_logs_tagged_runs_and_report_builds_table(synthetic_split_dir, mlflow_tracking,
                                                                tmp_path, capsys) -> None:
    import mlflow

    from seqrec.experiment import report

    split = load_split(synthetic_split_dir)
    results = run_baselines(split, ["pop", "mc", "knn", "mf"], k=5,
                            params={"mf": {"factors": 4, "iterations": 2}, "knn": {"neighbours": 10}})
    assert list(results) == ["pop", "mc", "knn", "mf"]
    client = mlflow.tracking.MlflowClient()
    for name, result in results.items():
        run = client.get_run(result.run_id)
        assert run.info.run_name == name and run.info.status == "FINISHED"
        assert run.data.tags["method"] == name.upper()
        assert run.data.metrics["test_sps_at_5"] == pytest.approx(result.test["sps@5"])
        assert "val_recall_at_5" in run.data.metrics and "test_item_coverage" in run.data.metrics
    assert client.get_run(results["knn"].run_id).data.params["neighbours"] == "10"
    # every baseline answers the new-user question too: the test users given their first 1, 2, 3, 5, 10, 20 items
    chain = MarkovChain().fit(split.train, split.n_items)
    curve = new_user_curve(chain.score, split.test, 5)
    logged = client.get_run(results["mc"].run_id).data.metrics
    for given, sps, recall in zip(curve["given"][:-1], curve["sps"], curve["recall"]):
        assert logged[f"test_new_user_sps_at_5_given_{given}"] == pytest.approx(sps)
        assert logged[f"test_new_user_recall_at_5_given_{given}"] == pytest.approx(recall)
    assert curve["sps"][0] < curve["sps"][-1] == pytest.approx(results["mc"].test["sps@5"])  # the last item helps
    assert "plots/new_users.png" in [entry.path for entry in client.list_artifacts(results["pop"].run_id, "plots")]

    # a stand-in RNN-CCE training run (param regime, test metrics), and an unfinished newer one
    with mlflow.start_run(run_name="rnn") as rnn:
        mlflow.log_params({"regime": "all_steps", "hidden": 8})
        mlflow.log_metrics({"test_sps_at_5": 0.5, "test_item_coverage": 12.0, "test_diversity_at_5": 0.25})
    failed = mlflow.start_run(run_name="rnn-crashed")
    mlflow.log_params({"regime": "all_steps"})
    mlflow.log_metrics({"test_sps_at_5": 0.9})
    mlflow.end_run(status="FAILED")

    # runs of the model zoo get rows by model and loss; the paper's RNN-Hinge row sits beside ours
    zoo = {}
    for model, loss, cell in (("sasrec", "cce", "gru"), ("rnn", "hinge", "gru"), ("rnn", "cce", "lstm")):
        with mlflow.start_run(run_name=f"{model}-{loss}") as zoo[model, loss, cell]:
            mlflow.log_params({"regime": "all_steps", "model": model, "loss": loss, "cell": cell})
            mlflow.log_metrics({"test_sps_at_5": 0.25, "train_seconds": 42.0})
    with mlflow.start_run(run_name="rnn-cce-unseen") as unseen:  # the newest RNN-CCE run, another objective
        mlflow.log_params({"regime": "all_steps", "model": "rnn", "loss": "cce", "exclude_seen": "true"})
        mlflow.log_metrics({"test_sps_at_5": 0.75})
    with mlflow.start_run(run_name="rnn-cce-unseen-slist") as blended:  # served as a blend with SLIST: its own row
        mlflow.log_params({"regime": "all_steps", "model": "rnn", "loss": "cce", "exclude_seen": "true",
                           "slist_weight": "0.6"})
        mlflow.log_metrics({"test_sps_at_5": 0.8})

    with mlflow.start_run(run_name="rnn-cce-default") as default:  # auto as `mlflow run` logs it, and what it used
        mlflow.log_params({"regime": "all_steps", "model": "rnn", "loss": "cce", "exclude_seen": "auto",
                           "slist_weight": "auto", "dropout": "auto", "exclude_seen_used": "true",
                           "slist_weight_used": "0.7", "dropout_used": "0.0"})
        mlflow.log_metrics({"test_sps_at_5": 0.85})

    runs = report.collect_runs(k=5)
    assert [run.info.run_id for run in runs["RNN-CCE"]] == [rnn.info.run_id] != [failed.info.run_id]
    assert [run.info.run_id for run in runs["RNN-CCE exclude_seen + SLIST 0.7"]] == [default.info.run_id]
    assert [run.info.run_id for run in runs["SASRec-CCE"]] == [zoo["sasrec", "cce", "gru"].info.run_id]
    assert [run.info.run_id for run in runs["RNN-Hinge"]] == [zoo["rnn", "hinge", "gru"].info.run_id]
    assert [run.info.run_id for run in runs["LSTM-CCE"]] == [zoo["rnn", "cce", "lstm"].info.run_id]  # not RNN-CCE's
    assert [run.info.run_id for run in runs["RNN-CCE exclude_seen"]] == [unseen.info.run_id]  # nor this one
    assert [run.info.run_id for run in runs["RNN-CCE exclude_seen + SLIST 0.6"]] == [blended.info.run_id]
    assert list(runs)[-6:] == ["RNN-Hinge", "LSTM-CCE", "RNN-CCE exclude_seen", "RNN-CCE exclude_seen + SLIST 0.6",
                               "RNN-CCE exclude_seen + SLIST 0.7", "SASRec-CCE"]  # the paper's first
    assert [run.info.run_id for run in runs["POP"]] == [results["pop"].run_id]

    out = tmp_path / "report"
    assert main(["report", "--k", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    markdown = (out / "table3.md").read_text(encoding="utf-8")
    assert printed == markdown
    pop_row = next(line for line in markdown.splitlines() if line.startswith("| POP | ours"))
    assert f"{100 * results['pop'].test['sps@5']:.2f}" in pop_row
    rnn_row = next(line for line in markdown.splitlines() if line.startswith("| RNN-CCE | ours"))
    assert "| 50.00 |" in rnn_row and "| 12 |" in rnn_row and "0.25" in rnn_row and "–" in rnn_row
    sasrec_row = next(line for line in markdown.splitlines() if line.startswith("| SASRec-CCE | ours"))
    assert "| 25.00 |" in sasrec_row and sasrec_row.endswith("| 42 | `seqrec train --model sasrec` |")  # time, command
    # the params that differ from the defaults; a run from before the auto options had them off, which auto is not
    assert rnn_row.endswith("| `seqrec train --hidden 8 --dropout 0.2 --exclude-seen false --slist-weight 0.0` |")
    assert pop_row.endswith("| `seqrec baselines --methods pop` |")
    default_row = next(line for line in markdown.splitlines() if line.startswith("| RNN-CCE exclude_seen + SLIST 0.7"))
    assert default_row.endswith("| `seqrec train` |")  # auto reproduces it
    assert float(pop_row.split(" | ")[-2]) >= 0  # the baseline's fit time in the train time column
    assert "| RNN-Hinge | paper (RNN-Hinge) | 30.91 |" in report.to_markdown(report.build_rows(runs, k=10))
    assert "<table>" in (out / "table3.html").read_text(encoding="utf-8")
    report_run = client.search_runs([rnn.info.experiment_id], "tags.`seqrec.kind` = 'report'")[0]
    logged = {item.path for item in client.list_artifacts(report_run.info.run_id, "report")}
    assert logged == {"report/table3.md", "report/table3.html"}
    # the paper's figures are only shown at its own cut-off
    paper_row = report.build_rows({"RNN-CCE": []}, k=10)[1]
    assert paper_row.source == "paper (RNN-CCE)" and paper_row.values[0] == pytest.approx(33.45)
    assert report.build_rows({"RNN-CCE": []}, k=5)[1].values[0] is None


def test_a_report_row_is_the_mean_and_std_over_the_seeds_of_its_methods_latest_configuration(mlflow_tracking):
    """The newest run of each seed of the latest configuration: an older run of a seed, another configuration's
    runs and another split's path of the same data do not enter the row."""
    import mlflow

    from seqrec.experiment import report

    def train_run(seed: int, sps: float, hidden: int = 256, path: str = "/a/split", **newer: str) -> str:
        with mlflow.start_run() as run:
            mlflow.log_params({"regime": "all_steps", "model": "rnn", "loss": "hinge", "hidden": hidden,
                               "seed": seed, "data_path": path, "data_sha256": "abc", **newer})
            mlflow.log_metrics({"test_sps_at_10": sps, "train_seconds": 100.0 * (seed + 1)})
        return run.info.run_id

    train_run(0, 0.10)  # replaced by seed 0's newer run
    seeds = [train_run(0, 0.30), train_run(1, 0.32, path="/b/split"), train_run(2, 0.34)]
    train_run(0, 0.90, hidden=64)  # another configuration, older than the latest run
    train_run(1, 0.90, weight_decay="0.01")  # and another
    latest = train_run(3, 0.36, weight_decay="0.0")  # a param the older runs did not log, at its default: one row
    runs = report.collect_runs()
    assert {run.info.run_id for run in runs["RNN-Hinge"]} == {*seeds, latest}
    (row, paper) = [row for row in report.build_rows(runs) if row.method == "RNN-Hinge"]
    assert row.source == "ours (4 seeds: 0, 1, 2, 3)" and row.command == "seqrec train --loss hinge --seed S"
    assert row.values[0] == pytest.approx(33.0) and row.spreads[0] == pytest.approx(2.5820, abs=1e-4)
    line = next(line for line in report.to_markdown(report.build_rows(runs)).splitlines()
                if line.startswith("| RNN-Hinge | ours"))
    assert "| 33.00 ± 2.58 |" in line and "| 250 ± 129.10 |" in line
    assert report.build_rows({"RNN-Hinge": runs["RNN-Hinge"][:1]})[0].source == f"ours (run {latest[:8]})"

    for seed, rmse in ((0, 0.90), (1, 0.92)):  # the rating table's rows too
        with mlflow.start_run():
            mlflow.set_tag("rating_predictor", "item_mean")
            mlflow.log_params({"seed": seed, "test_share": 0.1})
            mlflow.log_metrics({"test_rmse": rmse, "test_mae": 0.7, "fit_seconds": 1.0})
    header, (cells,) = report.rating_table(report.collect_rating_runs())
    assert cells[1:5] == ["ours (2 seeds: 0, 1)", "0.9100 ± 0.0141", "0.7000 ± 0.0000", "1 ± 0"]
    assert cells[-1] == "`seqrec ratings --predictors item_mean --seed S --test-share 0.1`"


def test_the_seeded_baselines_log_their_seed_so_a_report_row_is_the_mean_over_seeds(synthetic_split_dir,
                                                                                     mlflow_tracking) -> None:
    """The autoencoder and the factorisation draw their initial weights from the seed: without it among their
    params, a row would be the latest seed's run alone."""
    from seqrec.experiment import report

    split = load_split(synthetic_split_dir)
    for seed in (0, 1):
        run_baselines(split, ["dae", "dotmf"], k=5, seed=seed,
                      params={"dae": {"hidden": 8, "epochs": 1, "seed": seed},
                              "dotmf": {"factors": 4, "epochs": 1, "fold_in_epochs": 1, "seed": seed}})
    rows = {row.method: row for row in report.build_rows(report.collect_runs(k=5), k=5)
            if row.source.startswith("ours")}
    for method in ("DAE", "DOTMF"):
        assert rows[method].source == "ours (2 seeds: 0, 1)"
        assert rows[method].command == f"seqrec baselines --methods {method.lower()} --seed S"


def test_run_baselines_nests_under_the_mlflow_run_entry_point_run(synthetic_split_dir, mlflow_tracking,
                                                                 monkeypatch) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient()
    project_run = client.create_run("0", run_name="mlflow-run-entry-point")
    monkeypatch.setenv("MLFLOW_RUN_ID", project_run.info.run_id)  # what `mlflow run` hands the command
    results = run_baselines(load_split(synthetic_split_dir), ["pop", "mc"], k=5)
    for name, result in results.items():
        run = client.get_run(result.run_id)
        assert run.info.run_name == name and run.data.tags["mlflow.parentRunId"] == project_run.info.run_id
    assert mlflow.active_run() is None and "method" not in client.get_run(project_run.info.run_id).data.tags


def test_baselines_cli_bad_data_is_one_line_exit_2(tmp_path, capsys) -> None:
    assert main(["baselines", "--data", str(tmp_path / "missing"), "--methods", "pop"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqrec baselines: error:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["baselines", "--methods", "pop,nope"])
    assert exit_info.value.code == 2


def test_runs_on_a_split_with_times_log_the_tie_aware_metrics(tmp_path, mlflow_tracking):
    """A prepared split keeps every set's times: each run then logs sps_tie@k and the burst shares beside sps@k."""
    from seqrec.core.prepare import prepare_split
    from seqrec.core.ties import with_times
    from seqrec.experiment import report

    rng = np.random.default_rng(0)
    lines = [f"{user}::{movie}::{rng.integers(1, 6)}::{1000 + position // 4}"  # bursts of four ratings a second
             for user in range(1, 41) for position, movie in enumerate(rng.choice(30, 12, replace=False) + 1)]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    split = with_times(load_split(prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=8, n_test=8,
                                                within_second="random")))
    (result,) = run_baselines(split, ["pop"], k=5).values()
    logged = mlflow.get_run(result.run_id).data.metrics
    for prefix in ("val_", "test_"):
        assert {f"{prefix}sps_tie_at_5", f"{prefix}cut_in_burst", f"{prefix}sps_in_burst_at_5"} <= set(logged)
        assert logged[f"{prefix}sps_at_5"] <= logged[f"{prefix}sps_tie_at_5"]
        assert logged[f"{prefix}sps_in_burst_at_5"] <= logged[f"{prefix}sps_at_5"]
    assert logged["test_cut_in_burst"] == pytest.approx(result.test["cut_in_burst"]) and result.test["cut_in_burst"] > 0
    assert mlflow.get_run(result.run_id).data.params["within_second"] == "random"

    markdown, page, *_ = report.write_report(tmp_path / "report", k=5)  # a clean split's runs: a table of their own
    authors, clean = markdown.split("\n\n| method")[1:]
    assert "| POP | ours (no run) |" in authors and f"| POP | ours (run {result.run_id[:8]}) |" in clean
    assert "paper" not in clean and page.count("<table>") == 2 and "tie-aware sps@5" in markdown


def test_nextid_recommends_the_next_larger_movie_ids_then_the_popular_ones():
    train = Sequences.from_lists([[0, 1, 2], [2, 3], [3, 4, 3]])
    movie_ids = np.array([50, 10, 40, 20, 30])  # item -> MovieID
    model = NextMovieId(movie_ids).fit(train, 5)
    inputs = Sequences.from_lists([[1, 3], [0]])  # last MovieIDs 20 and 50 (the largest)
    recommended = top_k(model.score(inputs), 4)
    assert recommended[0].tolist()[:2] == [4, 2]  # MovieIDs 30, 40 after 20, closest first
    assert recommended[1].tolist()[:2] == [3, 2]  # nothing after 50: the most popular (3, then 2 by lower id)
    assert model.params() == {} and model.method == "NEXTID"


def test_slist_solves_the_ridge_regression_of_each_step_on_its_decayed_recent_items() -> None:
    train = seqs([0, 1, 2, 3], [1, 2, 4], [4, 0, 1, 2, 1], [3])
    window, decay, l2 = 2, 0.5, 0.7
    model = SLIST(window=window, decay=decay, l2=l2).fit(train, n_items=5)
    rows, targets = [], []  # the regression written out step by step, as the paper states it
    for sequence in ([0, 1, 2, 3], [1, 2, 4], [4, 0, 1, 2, 1]):
        for step in range(1, len(sequence)):
            row = np.zeros(5)
            for lag in range(1, min(window, step) + 1):
                row[sequence[step - lag]] += decay ** (lag - 1)
            rows.append(row)
            targets.append(np.eye(5)[sequence[step]])
    history, target = np.array(rows), np.array(targets)
    expected = np.linalg.solve(history.T @ history + l2 * np.eye(5), history.T @ target)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-10, atol=1e-12)
    inputs, history = seqs([3, 0, 1], []), seqs([3, 0, 1])
    recent = np.array([[decay, 1, 0, 0, 0]])  # item 1 last, item 0 two steps back, item 3 out of the window
    best = top_k(model.score(inputs), 2, exclude=inputs)
    np.testing.assert_array_equal(best[0], top_k(recent @ expected, 2, exclude=history)[0])
    assert best[1].tolist() == [1, 2]  # an empty input scores nothing: the popular items
    assert model.params() == {"window": 2, "decay": 0.5, "l2": 0.7, "alpha": 0.0} and model.method == "SLIST"
    np.testing.assert_allclose(model.predicted(history), recent @ expected, rtol=1e-10)  # what a blend mixes


def test_slist_with_alpha_also_reconstructs_each_users_item_set() -> None:
    train = seqs([0, 1, 2], [2, 0])
    model = SLIST(window=1, decay=1.0, l2=1.0, alpha=0.5).fit(train, n_items=3)
    history = np.eye(3)  # the steps 0 -> 1, 1 -> 2 and 2 -> 0: one source each
    targets = np.eye(3)[[1, 2, 0]]
    sets = np.array([[1, 1, 1], [1, 0, 1]], float)
    gram, co = history.T @ history, sets.T @ sets
    co *= 0.5 * np.trace(gram) / np.trace(co)
    expected = np.linalg.solve(0.5 * gram + co + np.eye(3), 0.5 * history.T @ targets + co)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="SLIST needs"):
        SLIST(decay=0.0)


@pytest.mark.parametrize("setting", [{"window": 2.5}, {"window": True}, {"window": float("nan")},
                                     {"decay": "x"}, {"l2": float("inf")}, {"alpha": None}])
def test_slist_refuses_settings_of_the_wrong_type_when_built_not_when_fitted(setting) -> None:
    with pytest.raises(ValueError, match=r"SLIST needs window >= 1 \(an integer\)"):
        SLIST(**setting)
