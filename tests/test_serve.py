"""Serving: the recommender pyfunc on a tiny trained model, its input policy (fuzzed), the CLI and the HTTP server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from conftest import write_synthetic_split
from seqrec.core.config import TrainConfig
from seqrec.core.data import Sequences, load_split
from seqrec.core.metrics import top_k
from seqrec.core.recommend import MAX_HISTORY, OUTPUT_COLUMNS, ServingCatalogue, parse_items, parse_k
from seqrec.core.scoring import score_users
from seqrec.core.training import fit
from seqrec.experiment.cli import main
from seqrec.experiment.serve import Recommender, load_model, load_scorer, log_recommender
from scoring_server import alive, post, scoring_server
from test_recommend import ANY_SCALAR, ANY_VALUE, expected_history, expected_k

pytestmark = pytest.mark.slow  # a model is trained for the module; the request parsing is tested in test_recommend

N_ITEMS = 40  # the synthetic catalogue: item i is MovieID 1000 + i, titled "Movie i (2000)"
TINY = TrainConfig(hidden=16, embedding=8, max_len=10, batch_size=16, epochs=3, lr=0.01, patience=5, tie_order="file")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny model trained on the synthetic walks, logged as the recommender pyfunc in its own store."""
    root = tmp_path_factory.mktemp("serve")
    split = load_split(write_synthetic_split(root / "split", n_items=N_ITEMS))
    result = fit(split, TINY, verbose=0)
    model_file = root / "scorer.keras"
    result.model.save(model_file)
    catalogue = ServingCatalogue.build(split.catalogue, split.item_popularity)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)  # an earlier test's registry must not receive this model
        with mlflow.start_run() as run:
            info = log_recommender(model_file, catalogue)
        version = mlflow.register_model(info.model_uri, "seqrec").version  # as the tuner publishes its winner
        mlflow.MlflowClient().set_registered_model_alias("seqrec", "champion", version)
        pyfunc = mlflow.pyfunc.load_model(info.model_uri)
        yield SimpleNamespace(split=split, model=result.model, catalogue=catalogue, info=info, pyfunc=pyfunc,
                              run_id=run.info.run_id, root=root, model_file=model_file, tracking_uri=uri,
                              recommender=Recommender(result.model, catalogue))
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def movie(*items: int) -> list[int]:
    return [1000 + item for item in items]


# --- the pyfunc through MLflow (signature enforced) ----------------------------------------------------------


def test_signature_and_input_example_are_logged(served):
    info = mlflow.models.get_model_info(served.info.model_uri)
    assert {spec.name: spec.required for spec in info.signature.inputs.inputs} == {"items": True, "ratings": False, "k": False}
    assert [spec.name for spec in info.signature.outputs.inputs] == list(OUTPUT_COLUMNS)
    assert info.saved_input_example_info is not None
    assert "python_function" in info.flavors


def test_valid_rows_get_top_k_movies_never_seen_ones(served):
    histories = [movie(3, 4, 5, 6), movie(10, 11), movie(20)]
    out = served.pyfunc.predict(pd.DataFrame({"items": histories, "k": [5, 3, 10]}))
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 3
    inputs = Sequences.from_lists([[i - 1000 for i in h] for h in histories])
    expected = top_k(score_users(served.model, inputs), 10, exclude=inputs)
    for row, history, k in zip(out.itertuples(), histories, [5, 3, 10]):
        assert len(row.movie_ids) == len(row.scores) == len(row.titles) == k
        assert not set(row.movie_ids) & set(history) and len(set(row.movie_ids)) == k
        assert row.titles == [f"Movie {i - 1000} (2000)" for i in row.movie_ids]
        assert row.scores == sorted(row.scores, reverse=True) and all(0 < s < 1 for s in row.scores)
        assert not row.popularity_fallback and row.unknown_movie_ids == [] and row.warning == ""
    for row, best in zip(out.itertuples(), expected):  # the same ranking as the evaluation code
        assert row.movie_ids == (best[: len(row.movie_ids)] + 1000).tolist()
    # the walks mostly go +1: the trained model ranks the next movie high
    assert 1007 in out.movie_ids[0][:3]


def test_k_is_optional_and_defaults_to_10(served):
    out = served.pyfunc.predict(pd.DataFrame({"items": [movie(1, 2)]}))
    assert len(out.movie_ids[0]) == 10


def test_unknown_movie_ids_are_ignored_and_reported(served):
    out = served.pyfunc.predict(pd.DataFrame({"items": [[999999, 1003, -5, 1004], movie(3, 4)], "k": [4, 4]}))
    assert out.unknown_movie_ids[0] == [999999, -5] and out.unknown_movie_ids[1] == []
    assert "999999" in out.warning[0] and "-5" in out.warning[0] and out.warning[1] == ""
    assert out.movie_ids[0] == out.movie_ids[1] and out.scores[0] == pytest.approx(out.scores[1])


def test_empty_history_falls_back_to_popularity_flagged(served):
    out = served.pyfunc.predict(pd.DataFrame({"items": [[], [31337], movie(1)], "k": [5, 5, 5]}))
    counts = served.split.item_popularity
    top_shares = np.sort(counts)[::-1][:5] / counts.sum()  # equally popular movies may come in any order
    for row in (0, 1):
        assert out.popularity_fallback[row] and "popular" in out.warning[row]
        np.testing.assert_allclose(counts[np.array(out.movie_ids[row]) - 1000] / counts.sum(), top_shares)
        np.testing.assert_allclose(out.scores[row], top_shares, rtol=1e-6)
    assert out.unknown_movie_ids[1] == [31337] and not out.popularity_fallback[2]


def test_fewer_movies_than_k_when_the_history_covers_the_catalogue(served):
    out = served.pyfunc.predict(pd.DataFrame({"items": [movie(*range(37))], "k": [5]}))
    assert sorted(out.movie_ids[0]) == movie(37, 38, 39) and "only 3 movies" in out.warning[0]


def test_long_histories_are_read_from_their_latest_movies_and_wholly_excluded(served):
    long = movie(*(list(range(30)) * 9))  # 270 movies, 30 distinct
    assert len(long) > MAX_HISTORY
    out = served.pyfunc.predict(pd.DataFrame({"items": [long, long[-MAX_HISTORY:]], "k": [10, 10]}))
    assert out.movie_ids[0] == out.movie_ids[1] and set(out.movie_ids[0]) == set(movie(*range(30, 40)))
    assert out.scores[0] == pytest.approx(out.scores[1], rel=1e-5)


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"items": [movie(1)], "k": [0]}), "'k' must be an integer between 1 and 40"),
    (pd.DataFrame({"items": [movie(1)], "k": [-3]}), "'k' must be an integer between 1 and 40"),
    (pd.DataFrame({"items": [movie(1)], "k": [41]}), "got 41"),
    (pd.DataFrame({"items": [movie(1), movie(2)], "k": [3, 99]}), "row 1: 'k'"),
    (pd.DataFrame({"items": [[1000, "a"]]}), "Array(long)"),  # MLflow's schema check answers first
    (pd.DataFrame({"items": [[1000.5]]}), "Array(long)"),
    (pd.DataFrame({"k": [3]}), "items"),
])
def test_bad_requests_are_invalid_parameter_errors(served, frame, message):
    with pytest.raises(MlflowException) as raised:
        served.pyfunc.predict(frame)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and message in raised.value.message


@pytest.mark.parametrize("frame, message", [  # past MLflow's schema check (the CLI, Python callers)
    ({"items": [[1000, "a"]]}, "row 0: 'items' must be a list of integer MovieIDs"),
    ({"items": [[1000.5]]}, "got 1000.5"),
    ({"items": [[True, 1000]]}, "integer MovieIDs"),
    ({"items": ["1000,1001"]}, "got '1000,1001'"),
    ({"items": [None]}, "got None"),
    ({"items": [[[1000]]]}, "nested"),
    ({"items": [movie(1)], "k": [2.5]}, "got 2.5"),
    ({"items": [movie(1)], "k": ["3"]}, "got '3'"),
    ({"items": [movie(1)], "user": [7]}, "only the columns"),
    ({"movies": [movie(1)]}, "a column 'items'"),
])
def test_the_parser_names_what_it_expected(served, frame, message):
    with pytest.raises(MlflowException) as raised:
        served.recommender.predict(None, pd.DataFrame(frame))
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and message in raised.value.message


def test_integral_floats_and_missing_k_are_accepted(served):
    assert parse_items([1000.0, 1001], 0).tolist() == [1000, 1001] and parse_items(np.array([], float), 0).size == 0
    assert parse_k(None, 0, N_ITEMS) == parse_k(float("nan"), 0, N_ITEMS) == 10 and parse_k(4.0, 0, N_ITEMS) == 4
    out = served.recommender.predict(None, pd.DataFrame({"items": [movie(1), movie(2)], "k": [3, None]}))
    assert [len(ids) for ids in out.movie_ids] == [3, 10]
    assert len(served.recommender.predict(None, pd.DataFrame({"items": []}))) == 0


# --- fuzzing -------------------------------------------------------------------------------------------------

KNOWN = st.integers(1000, 1000 + N_ITEMS - 1)
HISTORY = st.lists(st.one_of(KNOWN, KNOWN, st.integers(-10**12, 10**12)), max_size=12)
ROW = st.fixed_dictionaries({"items": st.one_of(HISTORY, HISTORY, HISTORY, ANY_VALUE)},
                            optional={"k": st.one_of(st.integers(1, N_ITEMS), st.integers(-5, 60), ANY_SCALAR)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=6))
def test_predict_answers_every_request_or_refuses_it_cleanly(served, rows):
    expected = [(expected_history(row["items"]), expected_k(row)) for row in rows]
    valid = all(history is not None and k is not None for history, k in expected)
    try:
        out = served.recommender.predict(None, pd.DataFrame(rows))
    except MlflowException as error:
        assert error.error_code == "INVALID_PARAMETER_VALUE" and not valid, rows
        return
    assert valid and len(out) == len(rows), rows
    catalogue = set(range(1000, 1000 + N_ITEMS))
    for row, (history, k) in zip(out.itertuples(), expected):
        seen = set(history) & catalogue
        assert row.unknown_movie_ids == [m for m in history if m not in catalogue]
        assert row.popularity_fallback == (not seen)
        assert len(row.movie_ids) == min(k, N_ITEMS - len(seen)) == len(set(row.movie_ids))
        assert set(row.movie_ids) <= catalogue - seen
        assert row.scores == sorted(row.scores, reverse=True)


def test_ratings_column_is_accepted_and_checked_against_the_history(served):
    frame = pd.DataFrame({"items": [movie(1, 2, 3), movie(4)], "ratings": [[5, 4, 5], None], "k": [3, 3]})
    out = served.pyfunc.predict(frame)  # a model without rating input recommends as before
    assert out["movie_ids"].tolist() == served.pyfunc.predict(frame[["items", "k"]])["movie_ids"].tolist()
    with pytest.raises(MlflowException, match="row 0: 'ratings' must be a list of 3 numbers"):
        served.pyfunc.predict(pd.DataFrame({"items": [movie(1, 2, 3)], "ratings": [[5, 9, 5]]}))


# --- CLI -------------------------------------------------------------------------------------------------------


def test_recommend_cli_with_a_keras_file_and_with_the_logged_pyfunc(served, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    data = str(served.split.directory)
    assert main(["recommend", "--items", "1003,1004, 1005", "--model", str(served.model_file), "--data", data,
                 "--k", "4", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["recommend", "--items", "1003,1004,1005", "--model", served.info.model_uri, "--k", "4",
                 "--json"]) == 0
    from_uri = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_file == from_uri and len(from_uri["movie_ids"]) == 4 and from_uri["warning"] == ""
    assert main(["recommend", "--items", "1003,424242", "--model", str(served.model_file), "--data", data]) == 0
    captured = capsys.readouterr()
    assert "Movie" in captured.out and "424242" in captured.err and len(captured.out.strip().splitlines()) == 11


def test_recommend_under_mlflow_run_logs_its_answer(served, capsys, monkeypatch):
    """`mlflow run . -e recommend` sets MLFLOW_RUN_ID: the answer is logged there as recommendations.json."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    run_id = mlflow.MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert main(["recommend", "--items", "1003,1004", "--model", str(served.model_file), "--data",
                 str(served.split.directory), "--k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/recommendations.json")
    assert logged["items"] == [1003, 1004] and logged["movie_ids"] == printed["movie_ids"]
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["data_path"] == str(served.split.directory.resolve())


@pytest.mark.parametrize("argv, message", [
    (["--items", "1003,abc"], "--items: expected comma-separated integer MovieIDs"),
    (["--items", "1003", "--k", "0"], "--k: expected a number of movies between 1 and 40"),
    (["--items", "1003", "--model", "missing.keras"], "missing.keras: expected a .keras model file saved by seqrec"),
    (["--items", "1003", "--model", "runs:/0123456789abcdef/recommender"], "expected a seqrec model"),
])
def test_recommend_cli_refuses_bad_input_in_one_line(served, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    argv = ["--model", str(served.model_file), "--data", str(served.split.directory), *argv]
    assert main(["recommend", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqrec recommend: error:") and message in err and len(err.strip().splitlines()) == 1


def test_evaluate_loads_the_network_behind_the_pyfunc_and_checks_its_movie_ids(served, tmp_path):
    model, catalogue = load_scorer(served.info.model_uri)
    assert catalogue.movie_ids.tolist() == movie(*range(N_ITEMS))
    np.testing.assert_allclose(model.get_weights()[0], load_model(str(served.model_file)).get_weights()[0])
    other = write_synthetic_split(tmp_path / "other", n_items=N_ITEMS)
    mapping = other / "item_id_mapping.tsv"
    mapping.write_text(mapping.read_text().replace("\t1005\t", "\t2005\t"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
        assert main(["evaluate", "--model", served.info.model_uri, "--data", str(served.split.directory)]) == 0
        assert main(["evaluate", "--model", served.info.model_uri, "--data", str(other)]) == 2


# --- the HTTP scoring server -------------------------------------------------------------------------------------


@pytest.fixture
def server(served, tmp_path):
    """``mlflow models serve -m models:/seqrec@champion`` (the tiny recommender) on a free loopback port."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": served.tracking_uri, "MLFLOW_REGISTRY_URI": served.tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # uvicorn of this venv
    with scoring_server(sys.executable, "models:/seqrec@champion", env, tmp_path / "server.log") as (base, _):
        yield base


@pytest.mark.slow
def test_scoring_server_answers_and_survives_bad_requests(served, server):
    url = f"{server}/invocations"
    status, body = post(url, json.dumps({"dataframe_records": [{"items": movie(3, 4, 5), "k": 5},
                                                                 {"items": [], "k": 2}]}))
    assert status == 200
    first, second = body["predictions"]
    expected = served.recommender.predict(None, pd.DataFrame({"items": [movie(3, 4, 5)], "k": [5]}))
    assert first["movie_ids"] == expected.movie_ids[0] and first["titles"] == expected.titles[0]
    assert second["popularity_fallback"] is True and len(second["movie_ids"]) == 2
    status, body = post(url, json.dumps({"dataframe_records": [{"items": [1003, 777777]}]}))
    assert status == 200 and body["predictions"][0]["unknown_movie_ids"] == [777777]
    assert len(body["predictions"][0]["movie_ids"]) == 10

    bad = [
        ({"dataframe_records": [{"items": movie(3), "k": 0}]}, "'k' must be an integer between 1 and 40"),
        ({"dataframe_records": [{"items": movie(3), "k": 500}]}, "got 500"),
        ({"dataframe_records": [{"items": [1003, "x"], "k": 3}]}, "Array(long)"),
        ({"dataframe_records": [{"items": [1003.5], "k": 3}]}, "items"),
        ({"dataframe_records": [{"items": None}]}, "items"),
        ({"dataframe_records": [{"k": 3}]}, "items"),
    ]
    for request, message in bad:
        status, body = post(url, json.dumps(request))
        assert status == 400 and message in body["message"], (request, body)
    status, body = post(url, "{not json")
    assert status == 400 and "JSON" in body["message"]
    assert alive(server)
    status, body = post(url, json.dumps({"dataframe_records": [{"items": movie(3, 4, 5), "k": 5}]}))
    assert status == 200 and body["predictions"][0]["movie_ids"] == first["movie_ids"]
