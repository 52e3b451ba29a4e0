"""The Optuna study runner on tiny synthetic data: nested MLflow runs, resume, lost workers, the champion."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import mlflow
import optuna
import pytest

from conftest import TINY_SPACE, write_synthetic_split
from seqrec.core.data import DataError, load_split
from seqrec.core.model import n_items_of
from seqrec.core.scoring import evaluate_users
from seqrec.experiment.cli import main
from seqrec.experiment import tune
from seqrec.experiment.serve import load_model
from seqrec.experiment.owners import owner
from seqrec.experiment.tune import (ENDED_ATTR, OWNER_ATTR, RUN_ID_ATTR, PruningCallback, last_finisher,
                                    load_search_space, open_storage, run_study, trial_config)

pytestmark = pytest.mark.slow  # every test here runs a study or a trial

TrialState = optuna.trial.TrialState

class PruneTrialOne(optuna.pruners.BasePruner):
    """Deterministic pruning for the tests: trial 1 is pruned at its first report."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


# --- fast units -------------------------------------------------------------------------------------------


def test_pruning_callback_reports_every_epoch_and_stops_a_pruned_trial():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.3))
    trial = study.ask()
    callback = PruningCallback(trial)
    callback.on_epoch_end(0, {"loss": 2.0, "val_sps_at_10": 0.5})
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end(1, {"loss": 1.9, "val_sps_at_10": 0.1})
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.1}
    with pytest.raises(KeyError, match="val_sps_at_10"):
        callback.on_epoch_end(2, {"loss": 1.8})


def test_project_search_space_gives_valid_train_configs():
    suggest, path = load_search_space()
    assert path.name == "search_space.py"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        config = trial_config(suggest(trial), epochs=6, seed=3)
        assert config.epochs == 6 and config.seed == 3 and config.k == 10
        assert 64 <= config.hidden <= 512 and config.max_len in {20, 30, 50, 100}
        assert config.batch_size in {32, 64, 128} and 0 <= config.dropout <= 0.5 and 5e-4 <= config.lr <= 8e-3
        assert config.cell in {"gru", "lstm"} and config.lookahead in {1, 2, 3}
        study.tell(trial, 0.0)
    assert {"hidden", "embedding", "dropout", "max_len", "batch_size", "lr", "cell", "lookahead"} == set(
        study.trials[0].params)
    with pytest.raises(DataError, match="hiden"):
        trial_config({"hiden": 64}, epochs=1, seed=0)


def test_sasrec_search_space_gives_valid_sasrec_configs():
    suggest, _ = load_search_space(load_search_space()[1].with_name("sasrec_space.py"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        config = trial_config(suggest(trial), epochs=4, seed=1)
        assert config.model == "sasrec" and config.epochs == 4 and config.seed == 1
        assert config.max_len in {50, 100, 200} and 1 <= config.blocks <= 3 and 1e-3 <= config.lr <= 1e-2
        assert config.heads == 1 and config.batch_size in {32, 64}
        study.tell(trial, 0.0)


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, synthetic_split_dir, mlflow_tracking, capsys):
    space = tmp_path / "space.py"
    space.write_text(TINY_SPACE)
    cases = [
        (["--data", str(tmp_path / "missing"), "--search-space", str(space)], "no such file or directory"),
        (["--data", str(synthetic_split_dir), "--search-space", str(tmp_path / "nope.py")], "search-space file"),
        (["--data", str(synthetic_split_dir), "--search-space", str(space), "--storage", "not a url"],
         "SQLAlchemy database URL"),
    ]
    for argv, message in cases:
        assert main(["tune", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seqrec tune: error:") and message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="driver"):
        open_storage("postgresql+nosuchdriver://user:secret@localhost/db")


def test_only_the_worker_whose_trial_finished_last_publishes():
    study = optuna.create_study(direction="maximize")
    mine, other = owner(), {**owner(), "seqrec.pid": "1"}
    for worker in (mine, other):
        trial = study.ask()
        trial.set_user_attr(OWNER_ATTR, worker)
        study.tell(trial, 0.5)
    assert not last_finisher(study)  # the other worker's trial finished last: it publishes
    elsewhere = study.ask()
    trial = study.ask()
    trial.set_user_attr(OWNER_ATTR, mine)
    study.tell(trial, 0.1)
    assert not last_finisher(study)  # a trial still runs on another worker, which will finish after us
    study.tell(elsewhere, state=TrialState.FAIL)  # a lost trial (failed, not finished) does not count
    assert last_finisher(study)
    study.enqueue_trial(elsewhere.params)  # its retry, re-queued: the worker that runs it will finish after us
    assert not last_finisher(study)


def test_no_worker_publishes_between_a_lost_trial_failing_and_its_retry_being_queued(tmp_path, monkeypatch):
    """Optuna fails a stale trial, then queues its retry: a worker looking in between must not publish, or it and
    the worker that runs the retry both would (seen once in the team-stack test)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="race", storage=storage, direction="maximize")
    lost, errored = study.ask(), study.ask()
    lost.set_user_attr(OWNER_ATTR, {**owner(), "seqrec.pid": "1"})
    errored.set_user_attr(ENDED_ATTR, True)  # its worker saw the objective raise: failed, and never retried
    study.tell(errored, state=TrialState.FAIL)
    mine = study.ask()
    mine.set_user_attr(OWNER_ATTR, owner())
    study.tell(mine, 0.5)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, lost.number)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)  # step 1 of the heartbeat check
    assert not last_finisher(study)
    with monkeypatch.context() as later:  # a retry not queued within the window never will be: publish
        later.setattr(tune, "RETRY_QUEUE_SECONDS", 0)
        assert last_finisher(study)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial_id))  # step 2: the retry
    assert [t.state for t in study.get_trials()][-1] == TrialState.WAITING and not last_finisher(study)
    retry = study.ask()
    retry.set_user_attr(OWNER_ATTR, owner())
    study.tell(retry, 0.4)
    assert last_finisher(study)  # the retry was ours and finished last


def test_no_worker_publishes_while_another_is_between_two_of_its_trials(monkeypatch):
    """A worker between two trials owns no RUNNING trial: seen once in the team-stack test, a worker ending then
    published, and the other too after its next trial."""
    study = optuna.create_study(direction="maximize")
    mine = study.ask()
    mine.set_user_attr(OWNER_ATTR, owner())
    study.tell(mine, 0.5)
    elsewhere = {"seqrec.host": "another-host", "seqrec.pid": "1"}
    study.set_user_attr("worker:another-host:1", {"owner": elsewhere, "seen": time.time(), "left": False})
    assert not last_finisher(study)  # it will start its next trial and finish after us
    with monkeypatch.context() as later:  # unseen for longer than the silence allowed: lost between trials
        later.setattr(tune, "WORKER_SILENCE_SECONDS", 0)
        assert last_finisher(study)
    gone = {**owner(), "seqrec.pid": "999999999"}  # a dead process of this host
    study.set_user_attr("worker:another-host:1", {"owner": gone, "seen": time.time(), "left": False})
    assert last_finisher(study)
    study.set_user_attr("worker:another-host:1", {"owner": elsewhere, "seen": time.time(), "left": True})
    assert last_finisher(study)


# --- one study, run twice (module fixture: ~4 tiny trials) ------------------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    split_dir = write_synthetic_split(root / "split")
    space = root / "space.py"
    space.write_text(TINY_SPACE)
    uri, storage = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        split = load_split(split_dir)
        kwargs = dict(n_trials=2, timeout=None, study_name="tiny", storage=storage, epochs_per_trial=2, seed=0,
                      search_space_path=space, export_path=root / "out" / "best_model.keras", pruner=PruneTrialOne())
        first = run_study(split, **kwargs)
        before = optuna.load_study(study_name="tiny", storage=storage).get_trials()
        second = run_study(split, **kwargs)  # the same study name and storage: continue it
        after = optuna.load_study(study_name="tiny", storage=storage).get_trials()
        yield SimpleNamespace(split=split, split_dir=split_dir, first=first, second=second, before=before,
                              after=after, export=root / "out" / "best_model.keras", uri=uri)
        mlflow.set_tracking_uri(None)


def test_trials_are_nested_runs_with_params_curves_and_models(tuned):
    client = mlflow.MlflowClient()
    trial_runs = {}
    for summary, numbers in ((tuned.first, {0, 1}), (tuned.second, {2, 3})):
        children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{summary.parent_run_id}'",
                                      output_format="list")
        assert {run.info.run_name for run in children} == {f"trial-{n}" for n in numbers}
        trial_runs.update({int(run.data.tags["optuna.trial_number"]): run for run in children})
    for trial in tuned.after:
        run = trial_runs[trial.number]
        assert trial.user_attrs[RUN_ID_ATTR] == run.info.run_id
        assert run.data.params["hidden"] in {"8", "16"} and run.data.params["max_len"] == "10"
        assert run.data.params["epochs"] == "2" and float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
        curve = client.get_metric_history(run.info.run_id, "val_sps_at_10")
        assert "test_sps_at_10" not in run.data.metrics  # tuning never looks at the test users
        if trial.number == 1:  # pruned after its first epoch
            assert trial.state == TrialState.PRUNED
            assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
            assert [m.step for m in curve] == [0]
        else:
            assert trial.state == TrialState.COMPLETE and run.info.status == "FINISHED"
            assert [m.step for m in curve] == [0, 1]
            assert trial.value == pytest.approx(max(m.value for m in curve))  # best epoch, not last
            assert run.data.metrics["best_val_sps_at_10"] == pytest.approx(trial.value)
            logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'",
                                                 output_format="list")
            assert [model.name for model in logged] == ["recommender"]


def test_parent_run_logs_best_params_value_plots_and_test_metrics(tuned):
    client = mlflow.MlflowClient()
    best = max((t for t in tuned.after if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    parent = client.get_run(tuned.second.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["optuna.study_name"] == "tiny"
    assert "optuna.db" in parent.data.tags["optuna.storage"]
    assert parent.data.params["best_hidden"] == str(best.params["hidden"])
    assert float(parent.data.params["best_lr"]) == pytest.approx(best.params["lr"])
    assert parent.data.metrics["best_val_sps_at_10"] == pytest.approx(best.value) == tuned.second.best_value
    assert parent.data.metrics["best_trial_number"] == best.number == tuned.second.best_trial
    assert parent.data.metrics["n_trials_complete"] == 3 and parent.data.metrics["n_trials_pruned"] == 1
    assert parent.data.metrics["test_sps_at_10"] == pytest.approx(tuned.second.test["sps@10"])
    assert "test_recall_at_10" in parent.data.metrics
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    suffix = next(iter(plots)).rsplit(".", 1)[1]
    assert plots == {f"plots/{name}.{suffix}" for name in ("optimization_history", "parallel_coordinate",
                                                            "param_importances")}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "tuning")} == {"tuning/space.py",
                                                                                      "tuning/trials.csv"}
    first_plots = {a.path for a in client.list_artifacts(tuned.first.parent_run_id, "plots")}
    assert f"plots/param_importances.{suffix}" not in first_plots  # one completed trial: no importances yet
    assert f"plots/optimization_history.{suffix}" in first_plots


def test_resumed_study_adds_trials_and_keeps_the_finished_ones(tuned):
    assert [t.number for t in tuned.before] == [0, 1] and [t.number for t in tuned.after] == [0, 1, 2, 3]
    for old, new in zip(tuned.before, tuned.after):
        assert (new.state, new.value, new.params, new.user_attrs, new.datetime_complete) == \
               (old.state, old.value, old.params, old.user_attrs, old.datetime_complete)
    assert tuned.second.n_trials == 4 and tuned.second.states == {"COMPLETE": 3, "PRUNED": 1}
    assert tuned.after[2].params["lr"] != tuned.after[0].params["lr"]  # the sampler did not replay trial 0


def test_champion_is_registered_described_and_exported(tuned):
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("seqrec", "champion")
    assert champion.run_id == tuned.second.best_run_id == tuned.second.model_run_id  # no refit asked for
    assert str(champion.version) == tuned.second.model_version
    assert "Validation sps@10" in champion.description and "recall@10" in champion.description
    assert f"test sps@10 {100 * tuned.second.test['sps@10']:.2f} %" in champion.description
    assert champion.tags["optuna.study_name"] == "tiny"
    versions = client.search_model_versions("name = 'seqrec'")
    assert len(versions) == (1 if tuned.first.best_run_id == tuned.second.best_run_id else 2)
    model = load_model(str(tuned.export))
    assert n_items_of(model) == tuned.split.n_items
    assert evaluate_users(model, tuned.split.test, 10, tuned.split.item_popularity) == tuned.second.test


def test_champion_evaluates_from_the_registry_like_the_logged_test_metric(tuned, capsys):
    assert main(["evaluate", "--model", "models:/seqrec@champion", "--data", str(tuned.split_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    logged = mlflow.MlflowClient().get_run(tuned.second.parent_run_id).data.metrics
    assert metrics["sps@10"] == pytest.approx(logged["test_sps_at_10"])
    assert metrics["recall@10"] == pytest.approx(logged["test_recall_at_10"])


def test_refit_retrains_the_best_configuration_and_the_better_on_validation_is_published(
        tmp_path, synthetic_split_dir, mlflow_tracking):
    space = tmp_path / "space.py"
    space.write_text(TINY_SPACE)
    split = load_split(synthetic_split_dir)
    summary = run_study(split, n_trials=2, timeout=None, study_name="refit", storage=f"sqlite:///{tmp_path / 'o.db'}",
                        epochs_per_trial=1, seed=0, search_space_path=space, export_path=tmp_path / "best.keras",
                        final_epochs=3)
    client = mlflow.MlflowClient()
    parent = client.get_run(summary.parent_run_id)
    refit = client.get_run(parent.data.tags["refit_run_id"])
    assert refit.data.tags["mlflow.parentRunId"] == summary.parent_run_id
    assert refit.info.run_name == f"refit-trial-{summary.best_trial}"
    assert refit.data.params["epochs"] == "3" and refit.data.params["hidden"] == str(summary.best_params["hidden"])
    assert float(refit.data.params["lr"]) == pytest.approx(summary.best_params["lr"])
    assert len(client.get_metric_history(refit.info.run_id, "val_sps_at_10")) == 3
    assert "test_sps_at_10" not in refit.data.metrics  # the test users only see the published model
    refit_sps = refit.data.metrics["best_val_sps_at_10"]
    assert parent.data.metrics["refit_val_sps_at_10"] == pytest.approx(refit_sps)
    champion = client.get_model_version_by_alias("seqrec", "champion")
    if refit_sps >= summary.best_value:
        assert summary.model_run_id == refit.info.run_id and "retrained for 3 epochs" in champion.description
        assert summary.val["sps@10"] == pytest.approx(refit_sps)
    else:
        assert summary.model_run_id == summary.best_run_id and "scored lower on validation" in champion.description
    assert champion.run_id == summary.model_run_id == parent.data.tags["published_run_id"]
    assert parent.data.metrics["study_seconds"] > 0
    model = load_model(str(tmp_path / "best.keras"))
    assert evaluate_users(model, split.test, 10, split.item_popularity) == summary.test

