"""``seqrec ensemble``: finished training runs as one model, in an MLflow run of its own.

The members' logged models (``runs:/<id>/recommender``) become one Keras model (:func:`seqrec.core.ensemble.
ensemble_model`: the mean of their probabilities; with several ``--runs`` groups, each group's mean weighs the
same), scored under the protocol on the validation users (and the test users unless ``validation_only``), and
logged as the serving pyfunc. So an ensemble registers, serves (``mlflow models serve``) and is reported as any
training run is; its train time is its members' summed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from seqrec.core.data import Split
from seqrec.core.ensemble import ensemble_model
from seqrec.core.metrics import mlflow_name
from seqrec.core.model import keras
from seqrec.core.recommend import ServingCatalogue
from seqrec.core.scoring import evaluate_users, format_table, new_user_curve, new_user_metrics, score_users
from seqrec.core.sources import load_data
from seqrec.core.ties import with_times
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.owners import close_orphaned_runs, owner
from seqrec.experiment.records import log_data, log_params_once
from seqrec.experiment.serve import MODEL_NAME, load_model, log_recommender


def member_runs(groups: list[list[str]]) -> dict[str, Run]:
    """Every member's run by id; an id given twice, an id the tracking store lacks, or a run that is no seqrec
    training (or ensemble) run, is refused."""
    client, runs = MlflowClient(), {}
    for run_id in (run_id for group in groups for run_id in group):
        if run_id in runs:  # counted twice, it would weigh double under a name that says one more member
            raise ParameterError(f"--runs: expected each run once, got {run_id} twice")
        try:
            runs[run_id] = client.get_run(run_id)
        except MlflowException:
            raise ParameterError(f"--runs: no run {run_id!r} in the tracking store "
                                 f"{mlflow.get_tracking_uri()}") from None
        if runs[run_id].data.params.get("data_sha256") is None:
            raise ParameterError(f"--runs: run {run_id} is not a seqrec training run (it logged no data_sha256)")
    return runs


def shared_param(runs: dict[str, Run], name: str) -> str:
    """A param every member logged with one value (the data, the cut-off): a mix of splits is refused."""
    values = {run.data.params.get(name) for run in runs.values()}
    if len(values) != 1 or None in values:
        raise ParameterError(f"--runs: the members must share one {name}, got {sorted(map(str, values))}")
    return values.pop()


def members_split(runs: dict[str, Run], data: str | None) -> Split:
    """The split the members trained on: ``data`` (where it is now) or their logged ``data_path``, checked
    against their ``data_sha256``."""
    if data is not None and not data.strip():  # not a fall back to the logged data_path
        raise ParameterError(f"--data: expected the members' split directory, got {data!r}")
    split = with_times(load_data(data if data is not None else shared_param(runs, "data_path")))
    trained_on = shared_param(runs, "data_sha256")
    if split.checksum != trained_on:
        raise ParameterError(f"--data: {split.directory} is not the data the runs trained on (data_sha256 "
                             f"{trained_on[:12]}..., this split's {split.checksum[:12]}...)")
    return split


def group_name(runs: dict[str, Run], group: list[str]) -> str:
    """A group's name: its members' model (and loss, when not cce) and how many runs: ``sasrec × 5``."""
    names = sorted({member_name(runs[run_id].data.params) for run_id in group})
    return f"{'/'.join(names)} × {len(group)}"


def member_name(params: dict[str, str]) -> str:
    """A run's model, and its loss when not the CCE: ``sasrec``, ``rnn:bpr``."""
    model, loss = params.get("model", "?"), params.get("loss", "cce")
    return model if loss == "cce" else f"{model}:{loss}"


def build_ensemble(groups: list[list[str]]) -> keras.Model:
    """One model of the members' logged networks: each group's mean, then the mean of the groups."""
    means = [ensemble_model([load_model(f"runs:/{run_id}/{MODEL_NAME}") for run_id in group], name=f"group_{index}")
             for index, group in enumerate(groups)]
    return means[0] if len(means) == 1 else ensemble_model(means)


def ensemble_run(groups: list[list[str]], data: str | None = None, validation_only: bool = False) -> str:
    """Build, evaluate and log the ensemble of ``groups`` (run ids); returns its run id."""
    runs = member_runs(groups)
    split = members_split(runs, data)
    k = int(shared_param(runs, "k"))
    try:
        model = build_ensemble(groups)
    except ValueError as error:  # members of another catalogue
        raise ParameterError(f"--runs: {error}") from None
    name = " + ".join(group_name(runs, group) for group in groups)
    close_orphaned_runs()
    with mlflow.start_run(run_name=f"ensemble {name}") as run:
        mlflow.set_tags({**owner(), "method": f"Ensemble {name}"})
        log_params_once({"members": ";".join(",".join(group) for group in groups), "k": k})
        log_data(split)
        val = evaluate_users(model, split.val, k, split.item_popularity, similarity=split.item_similarity)
        metrics = {mlflow_name(metric, "best_val_"): value for metric, value in val.items()}
        metrics["train_seconds"] = sum(member.data.metrics.get("train_seconds", 0.0) for member in runs.values())
        test = None
        if not validation_only:
            test = evaluate_users(model, split.test, k, split.item_popularity, similarity=split.item_similarity)
            curve = new_user_curve(lambda given: score_users(model, given), split.test, k)
            metrics.update({mlflow_name(metric, "test_"): value
                            for metric, value in {**test, **new_user_metrics(curve, k)}.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            model_file = Path(tmp) / "scoring_model.keras"
            model.save(model_file)
            log_recommender(model_file, ServingCatalogue.build(split.catalogue, split.item_popularity))
    print(format_table(val, title=f"ensemble {name}, run {run.info.run_id}: {len(split.val)} validation users"))
    if test is not None:
        print(format_table(test, title=f"test users ({len(split.test)}):"))
    return run.info.run_id
