"""Ensembles as one model: the core's Keras model (the mean of the members' probabilities) and `seqrec ensemble`,
which logs it as a servable run of its own."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from conftest import write_synthetic_split
from seqrec.core.data import Sequences, load_split, split_half
from seqrec.core.ensemble import ensemble_model
from seqrec.core.model import build_model, model_inputs, reads_ratings
from seqrec.core.scoring import ensemble_scores, evaluate_scores, load_keras_model, score_users, softmax
from seqrec.experiment.cli import main
from seqrec.experiment.serve import load_model, load_recommender
from test_cli import run_seqrec

HISTORIES = np.array([[0, 0, 3, 4, 5, 6, 7, 1], [0, 0, 0, 0, 0, 0, 2, 9], [5, 5, 5, 5, 5, 5, 5, 5]], dtype=np.int32)
TINY = ["--hidden", "16", "--embedding", "8", "--max-len", "10", "--batch-size", "16", "--epochs", "2", "--lr", "0.01"]


def probabilities(model) -> np.ndarray:
    return softmax(np.asarray(model.predict_on_batch(HISTORIES)))


def test_an_ensemble_scores_the_mean_of_its_members_probabilities_and_saves_as_one_model(tmp_path):
    rnn = build_model(30, hidden=8, embedding=8)
    sasrec = build_model(30, hidden=8, embedding=8, model="sasrec", max_len=5, blocks=1, heads=1, tied_output=True)
    pooling = build_model(30, hidden=8, embedding=8, model="pooling")
    mixed = ensemble_model([rnn, sasrec])
    expected = (probabilities(rnn) + probabilities(sasrec)) / 2
    assert np.allclose(probabilities(mixed), expected, atol=1e-6)
    # its outputs are log-probabilities: their softmax is themselves exponentiated
    assert np.allclose(np.exp(np.asarray(mixed.predict_on_batch(HISTORIES))), expected, atol=1e-6)
    assert np.allclose(probabilities(ensemble_model([rnn])), probabilities(rnn), atol=1e-6)  # one member: itself
    # groups as ensembles of ensembles: each group weighs the same, however many members it has
    grouped = ensemble_model([ensemble_model([rnn, rnn, rnn]), ensemble_model([pooling])])
    assert np.allclose(probabilities(grouped), (probabilities(rnn) + probabilities(pooling)) / 2, atol=1e-6)
    mixed.save(tmp_path / "ensemble.keras")
    loaded = load_keras_model(tmp_path / "ensemble.keras")
    assert np.allclose(np.asarray(loaded.predict_on_batch(HISTORIES)), np.asarray(mixed.predict_on_batch(HISTORIES)),
                       atol=1e-6)


def test_an_ensemble_refuses_members_it_cannot_average():
    with pytest.raises(ValueError, match="at least one model"):
        ensemble_model([])
    with pytest.raises(ValueError, match=r"share one catalogue, got \[20, 30\]"):
        ensemble_model([build_model(30, hidden=8, embedding=8), build_model(20, hidden=8, embedding=8)])


def test_an_ensemble_with_a_member_that_reads_the_stars_passes_them_to_that_member_only(tmp_path):
    stars = build_model(30, hidden=8, embedding=8, rating_input=True, rating_min_history=3)
    items_only = build_model(30, hidden=8, embedding=8, model="sasrec", max_len=5, blocks=1, heads=1)
    mixed = ensemble_model([stars, items_only])
    assert reads_ratings(mixed) and not reads_ratings(ensemble_model([items_only]))
    ratings = np.where(HISTORIES > 0, 1 + np.arange(HISTORIES.size).reshape(HISTORIES.shape) % 5, 0).astype(np.int32)
    fed = {"items": HISTORIES, "ratings": ratings}

    def mean(model) -> np.ndarray:
        return softmax(np.asarray(model.predict_on_batch(model_inputs(model, HISTORIES, ratings))))

    expected = (softmax(np.asarray(stars.predict_on_batch(fed))) + probabilities(items_only)) / 2
    assert np.allclose(mean(mixed), expected, atol=1e-6)
    unknown = softmax(np.asarray(stars.predict_on_batch({"items": HISTORIES, "ratings": np.zeros_like(ratings)})))
    assert not np.allclose(expected, (unknown + probabilities(items_only)) / 2, atol=1e-4)  # the stars reached it
    assert np.allclose(mean(ensemble_model([ensemble_model([stars]), items_only])), expected, atol=1e-6)  # nested
    # scored as the protocol scores (histories with their stars) and as the members are, one by one
    present = HISTORIES > 0
    users = Sequences(np.arange(3), (HISTORIES[present] - 1).astype(np.int32), ratings[present].astype(np.float32),
                      np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int64))
    assert np.allclose(softmax(score_users(mixed, users)), ensemble_scores([stars, items_only], users), atol=1e-6)
    mixed.save(tmp_path / "ensemble.keras")
    assert np.allclose(mean(load_keras_model(tmp_path / "ensemble.keras")), expected, atol=1e-6)


@pytest.fixture
def two_runs(tmp_path, mlflow_tracking, capsys):
    """Two tiny training runs (an RNN and pooling) on one synthetic split, in a store of their own."""
    split_dir = write_synthetic_split(tmp_path / "split")
    for model in ("rnn", "pooling"):
        assert main(["train", "--data", str(split_dir), *TINY, "--model", model]) == 0
    capsys.readouterr()
    runs = {run.data.params["model"]: run for run in mlflow.search_runs(output_format="list")}
    return split_dir, runs


@pytest.mark.slow
def test_seqrec_ensemble_logs_a_run_that_scores_and_serves_as_the_members_mean(two_runs, capsys):
    split_dir, runs = two_runs
    ids = [runs["rnn"].info.run_id, runs["pooling"].info.run_id]
    assert main(["ensemble", "--runs", ",".join(ids)]) == 0
    printed = capsys.readouterr().out
    run = mlflow.search_runs(filter_string="tags.method LIKE 'Ensemble%'", output_format="list")[0]
    assert run.info.status == "FINISHED" and run.info.run_id in printed and "test users" in printed
    assert run.data.tags["method"] == "Ensemble pooling/rnn × 2" and run.data.params["members"] == ",".join(ids)
    assert run.data.params["data_sha256"] == runs["rnn"].data.params["data_sha256"]
    assert run.data.metrics["train_seconds"] == pytest.approx(
        sum(member.data.metrics["train_seconds"] for member in runs.values()))
    # its figures are the members' mean probabilities scored offline, member by member
    split = load_split(split_dir)
    members = [load_model(f"runs:/{run_id}/recommender") for run_id in ids]
    for users, prefix in ((split.val, "best_val_"), (split.test, "test_")):
        offline = evaluate_scores(ensemble_scores(members, split_half(users)[0]), users, 10, split.item_popularity)
        assert run.data.metrics[f"{prefix}sps_at_10"] == pytest.approx(offline["sps@10"], abs=1e-9)
        assert run.data.metrics[f"{prefix}recall_at_10"] == pytest.approx(offline["recall@10"], abs=1e-6)
    # the logged pyfunc is one model: the server's answer ranks as the mean does
    recommender = load_recommender(f"runs:/{run.info.run_id}/recommender")
    test_inputs = split_half(split.test)[0]
    assert np.allclose(softmax(score_users(recommender.model, test_inputs)), ensemble_scores(members, test_inputs),
                       atol=1e-5)
    answer = recommender.recommend({"items": [recommender.catalogue.movie_ids[:3].tolist()], "k": [5]})
    assert len(answer["movie_ids"][0]) == 5
    # and it loads in a fresh process, where nothing of the ensemble was imported before
    fresh = run_seqrec("evaluate", "--model", f"runs:/{run.info.run_id}/recommender", "--data", str(split_dir),
                       "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout.strip().splitlines()[-1])["sps@10"] == pytest.approx(
        run.data.metrics["test_sps_at_10"])
    # the report gives it a row of its own, with the command that rebuilds it
    assert main(["report"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "Ensemble pooling/rnn × 2" in line)
    assert f"seqrec ensemble --runs '{','.join(ids)}'" in row

    # groups: ';' or another --runs; --validation-only computes no test figure at all
    assert main(["ensemble", "--runs", ids[0], "--runs", ids[1], "--validation-only"]) == 0
    assert "test users" not in capsys.readouterr().out
    latest = mlflow.search_runs(filter_string="tags.method LIKE 'Ensemble%'", output_format="list")[0]
    assert latest.data.tags["method"] == "Ensemble rnn × 1 + pooling × 1"
    assert latest.data.params["members"] == ";".join(ids)
    assert not any(name.startswith("test_") for name in latest.data.metrics)


@pytest.mark.slow
def test_seqrec_ensemble_refuses_bad_runs_in_one_line(two_runs, tmp_path, capsys):
    _, runs = two_runs
    rnn = runs["rnn"].info.run_id
    with mlflow.start_run() as bare:  # a run of something else: no data, no model
        pass
    before = len(mlflow.search_runs(output_format="list"))
    other = write_synthetic_split(tmp_path / "other", seed=5)
    for argv, expected in ((["--runs", f"{rnn},0123456789abcdef"], "no run '0123456789abcdef' in the tracking store"),
                           (["--runs", rnn, "--data", str(other)], "is not the data the runs trained on"),
                           (["--runs", f"{rnn},{bare.info.run_id}"], "is not a seqrec training run"),
                           (["--runs", f"{rnn},{rnn}"], f"--runs: expected each run once, got {rnn} twice"),
                           (["--runs", rnn, "--runs", rnn], f"--runs: expected each run once, got {rnn} twice"),
                           (["--runs", rnn, "--data", ""], "--data: expected the members' split directory, got ''")):
        assert main(["ensemble", *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert expected in error and len(error.splitlines()) == 1, error
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal, one line too
        main(["ensemble", "--runs", f"{rnn};"])
    error = capsys.readouterr().err.strip()
    assert refused.value.code == 2 and "expected comma-separated run ids" in error and len(error.splitlines()) == 1
    assert len(mlflow.search_runs(output_format="list")) == before  # no run started for a refused command
