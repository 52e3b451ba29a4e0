"""End to end: train -> save -> load in a new process -> evaluate; the MLproject entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from conftest import write_synthetic_split
from seqrec.core.data import split_checksum
from seqrec.core.model import reads_ratings
from seqrec.experiment.cli import main
from seqrec.experiment.serve import load_scorer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here trains a model or starts a process

TINY = ["--hidden", "16", "--embedding", "8", "--max-len", "10", "--batch-size", "16", "--epochs", "2", "--lr", "0.01"]


def run_seqrec(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "seqrec", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture
def trained(synthetic_split_dir, tmp_path, mlflow_tracking, capsys):
    model_file = tmp_path / "model.keras"
    assert main(["train", "--data", str(synthetic_split_dir), *TINY, "--output", str(model_file)]) == 0
    assert "sps@10" in capsys.readouterr().out  # the test metrics are printed at the end
    run = mlflow.search_runs(output_format="list")[0]
    return run, model_file


def test_train_logs_params_curves_artifacts_and_test_metrics(trained, synthetic_split_dir):
    run, model_file = trained
    assert run.info.status == "FINISHED"
    assert run.data.params["hidden"] == "16" and run.data.params["regime"] == "all_steps"
    assert run.data.params["tie_order_used"] == "file"  # the synthetic split has no timestamps
    assert {"seed", "lr", "max_len", "dropout", "cell", "epochs", "batch_size", "embedding"} <= set(run.data.params)
    assert run.data.params["data_path"] == str(synthetic_split_dir.resolve())
    assert run.data.params["data_sha256"] == split_checksum(synthetic_split_dir)
    assert run.data.params["rating_input"] == "false"  # as `mlflow run` logs the MLproject's boolean
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_sps_at_10")] == [0, 1]
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    assert 0.0 <= run.data.metrics["test_sps_at_10"] <= 1.0 and "test_recall_at_10" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    # the one model is the logged `recommender` pyfunc, not an artifact copy
    assert {"data", "plots", "model_summary.txt"} == artifacts
    assert [model.name for model in mlflow.search_logged_models(output_format="list")] == ["recommender"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {
        f"plots/{name}.png" for name in ("learning_curves", "sps_recall_at_k", "short_long_term_profile",
                                         "item_embeddings", "new_users")}
    new_users = [run.data.metrics[f"test_new_user_sps_at_10_given_{n}"] for n in (1, 2, 3, 5, 10, 20)]
    assert all(0.0 <= value <= 1.0 for value in new_users) and "test_new_user_recall_at_10_given_1" in run.data.metrics
    assert 0.0 < run.data.metrics["test_diversity"] <= 1.0 and run.data.metrics["test_novelty"] > 0.0
    assert [a.path for a in client.list_artifacts(run.info.run_id, "data")] == ["data/stats"]
    assert model_file.is_file()


def test_evaluate_in_a_new_process_reproduces_the_logged_metric(trained, synthetic_split_dir):
    run, model_file = trained
    for model in (str(model_file), f"runs:/{run.info.run_id}/recommender"):
        result = run_seqrec("evaluate", "--model", model, "--data", str(synthetic_split_dir), "--json")
        assert result.returncode == 0, result.stderr
        metrics = json.loads(result.stdout.strip().splitlines()[-1])
        assert metrics["sps@10"] == pytest.approx(run.data.metrics["test_sps_at_10"])
        assert metrics["recall@10"] == pytest.approx(run.data.metrics["test_recall_at_10"])
        assert metrics["diversity"] == pytest.approx(run.data.metrics["test_diversity"], rel=1e-5)


def test_a_rating_input_model_is_logged_served_and_evaluated_with_the_ratings(synthetic_split_dir, tmp_path,
                                                                              mlflow_tracking, capsys):
    assert main(["train", "--data", str(synthetic_split_dir), *TINY, "--rating-input", "true"]) == 0
    run = mlflow.search_runs(output_format="list")[0]
    assert run.data.params["rating_input"] == "true" and run.data.params["unknown_rating_inputs"] == "0"
    assert reads_ratings(load_scorer(f"runs:/{run.info.run_id}/recommender")[0])
    result = run_seqrec("evaluate", "--model", f"runs:/{run.info.run_id}/recommender", "--data",
                        str(synthetic_split_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["sps@10"] == pytest.approx(
        run.data.metrics["test_sps_at_10"])
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/recommender")
    history = [1000, 1001, 1002]
    unrated = served.predict(pd.DataFrame({"items": [history], "k": [5]}))  # ratings unknown
    rated = served.predict(pd.DataFrame({"items": [history, history], "ratings": [[5, 4, 5], [1, 1, 2]], "k": [5, 5]}))
    assert len(unrated["movie_ids"][0]) == 5 and not unrated["popularity_fallback"][0]
    assert len({tuple(scores) for scores in [*rated["scores"], *unrated["scores"]]}) == 3  # the ratings are read
    with pytest.raises(mlflow.exceptions.MlflowException, match="'ratings' must be a list of 3 numbers"):
        served.predict(pd.DataFrame({"items": [history], "ratings": [[5, 4]]}))
    uri = f"runs:/{run.info.run_id}/recommender"
    assert main(["recommend", "--items", "1000,1001,1002", "--ratings", "5,4,5", "--k", "5", "--model", uri,
                 "--json"]) == 0
    # one user alone or two in a batch: the same scores up to float32 rounding of the batched kernels
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["scores"] == pytest.approx(
        rated["scores"][0], rel=1e-5)
    assert main(["recommend", "--items", "1000,1001,1002", "--ratings", "5,4", "--model", uri]) == 2
    assert "--ratings: expected comma-separated stars 1-5 (0: unknown), one per movie of --items" in capsys.readouterr().err


def test_evaluate_refuses_another_catalogue(trained, tmp_path):
    _, model_file = trained
    other = write_synthetic_split(tmp_path / "other", n_items=41)
    result = run_seqrec("evaluate", "--model", str(model_file), "--data", str(other))
    assert result.returncode == 2
    assert "40-item catalogue" in result.stderr and "41 items" in result.stderr and "Traceback" not in result.stderr


def test_bad_data_is_one_clear_line(tmp_path):
    (tmp_path / "train_set_sequences").write_text("0 1 5\n1 2\n")
    for name in ("val_set_sequences", "test_set_sequences"):
        (tmp_path / name).write_text("2 1 5 \n")
    result = run_seqrec("train", "--data", str(tmp_path), "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'train_set_sequences'}:2: expected" in result.stderr


def test_mlproject_entry_points(synthetic_split_dir, mlflow_tracking, tmp_path):
    """`mlflow run . --env-manager local` for main (tiny params) then evaluate on its model."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)  # set by this process's seqrec import: the commands set it
    params = ["-P", f"data={synthetic_split_dir}", "-P", "hidden=16", "-P", "embedding=8", "-P", "epochs=1",
              "-P", "max_len=10", "-P", "batch_size=16"]
    trained = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", *params],
                             capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = mlflow.search_runs(output_format="list")[0]
    assert run.data.params["hidden"] == "16" and "test_sps_at_10" in run.data.metrics
    assert run.data.params["data_path"] == str(synthetic_split_dir.resolve())
    assert run.data.params["rating_input"] == "false"
    evaluated = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "evaluate", "--env-manager",
                                "local", "-P", f"model=runs:/{run.info.run_id}/recommender",
                                "-P", f"data={synthetic_split_dir}"],
                               capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "sps@10" in evaluated.stdout
    evaluation = mlflow.search_runs(output_format="list")[0]  # the newest: the evaluate entry point's own run
    assert evaluation.info.run_id != run.info.run_id and evaluation.info.status == "FINISHED"
    assert evaluation.data.params["data_sha256"] == split_checksum(synthetic_split_dir)
    assert evaluation.data.metrics["test_sps_at_10"] == pytest.approx(run.data.metrics["test_sps_at_10"])
    for done in (trained, evaluated):  # neither MLflow's artifact progress bars nor TensorFlow's start-up lines
        assert "Downloading artifacts" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr


def test_commands_started_together_on_a_new_sqlite_store_all_run(tmp_path):
    """MLflow creates a new SQLite store's tables on first use: workers started at once on a fresh project (the
    default store, sqlite:///mlflow.db) must not all try (before, most of them failed: "duplicate column name")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    workers = [subprocess.Popen([sys.executable, "-m", "seqrec", "report", "--out", str(tmp_path / f"report{i}")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(3)]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], errors
    assert len(mlflow.MlflowClient(uri).search_runs(["0"])) == 3  # each report logged its run


def test_the_default_gru_run_is_logged_served_and_evaluated_as_its_blend_with_slist(synthetic_split_dir,
                                                                                    mlflow_tracking):
    assert main(["train", "--data", str(synthetic_split_dir), *TINY]) == 0  # exclude_seen, slist_weight, dropout: auto
    run = mlflow.search_runs(output_format="list")[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["exclude_seen"], params["slist_weight"]) == ("auto", "auto")  # as given, as `mlflow run` logs
    used = (params["exclude_seen_used"], params["slist_weight_used"], params["dropout_used"])
    assert used == ("true", "0.7", "0.0")
    uri = f"runs:/{run.info.run_id}/recommender"
    assert load_scorer(uri)[0].name == "rnn_cce_slist"  # the blend is the model: SLIST's weights inside
    result = run_seqrec("evaluate", "--model", uri, "--data", str(synthetic_split_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["sps@10"] == pytest.approx(
        run.data.metrics["test_sps_at_10"])
    served = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"items": [[1000, 1001, 1002]], "k": [5]}))
    assert len(served["movie_ids"][0]) == 5 and not set(served["movie_ids"][0]) & {1000, 1001, 1002}
