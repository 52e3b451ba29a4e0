"""Shared fixtures: a small synthetic split that a tiny RNN can learn in seconds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from seqrec.core.data import ITEM_MAPPING_FILE, SEQUENCE_FILES, Sequences, STATS_FILE, write_sequences

SHARED_SPLIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml1m-split"

# the search space of the tuning tests: hidden <= 16, max_len 10, so a trial of 2 epochs takes a couple of seconds
TINY_SPACE = """
def suggest(trial):
    return {"hidden": trial.suggest_categorical("hidden", [8, 16]),
            "lr": trial.suggest_float("lr", 5e-3, 3e-2, log=True),
            "embedding": 8, "max_len": 10, "batch_size": 32}
"""


def synthetic_sequences(n_users: int, n_items: int, rng: np.random.Generator, first_user: int = 0) -> Sequences:
    """Users walk the catalogue in steps of +1 (mostly) or +2 from a random start: learnable order."""
    sequences = []
    for _ in range(n_users):
        length = int(rng.integers(12, 30))
        steps = np.where(rng.random(length) < 0.85, 1, 2)
        sequences.append(((rng.integers(0, n_items) + np.cumsum(steps)) % n_items).tolist())
    ratings = [rng.integers(1, 6, size=len(s)).tolist() for s in sequences]
    return Sequences.from_lists(sequences, list(range(first_user, first_user + n_users)), ratings)


def write_synthetic_split(directory: Path, n_train: int = 120, n_val: int = 20, n_test: int = 20,
                          n_items: int = 40, seed: int = 0) -> Path:
    """Write a complete split directory (sequences, stats, item mapping) like the authors' layout."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sets = {
        "train": synthetic_sequences(n_train, n_items, rng, 0),
        "val": synthetic_sequences(n_val, n_items, rng, n_train),
        "test": synthetic_sequences(n_test, n_items, rng, n_train + n_val),
    }
    for name, sequences in sets.items():
        write_sequences(directory / SEQUENCE_FILES[name], sequences)
    rows = ["set\tn_users\tn_items\tn_interactions\tlongest_sequence",
            f"Full\t{n_train + n_val + n_test}\t{n_items}\t{sum(len(s.items) for s in sets.values())}"
            f"\t{max(s.lengths.max() for s in sets.values())}"]
    rows += [f"{name.title()}\t{len(s)}\t{len(np.unique(s.items))}\t{len(s.items)}\t{s.lengths.max()}"
             for name, s in sets.items()]
    (directory / STATS_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    mapping = ["item_index\tmovie_id\ttitle"] + [f"{i}\t{1000 + i}\tMovie {i} (2000)" for i in range(n_items)]
    (directory / ITEM_MAPPING_FILE).write_text("\n".join(mapping) + "\n", encoding="utf-8")
    return directory


@pytest.fixture
def synthetic_split_dir(tmp_path: Path) -> Path:
    return write_synthetic_split(tmp_path / "split")


@contextlib.contextmanager
def isolated_tracking(directory: Path) -> Iterator[str]:
    """An MLflow store of its own in ``directory`` (also for subprocesses, through the environment).

    An experiment set inside (``mlflow.set_experiment``, as the benchmarks do) is forgotten on the way out: MLflow
    keeps its id in a module global and in ``MLFLOW_EXPERIMENT_ID``, and the next store has no such experiment.
    """
    import mlflow
    import mlflow.tracking.fluent as fluent

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    active = fluent._active_experiment_id
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        patch.setenv("MLFLOW_EXPERIMENT_ID", "0")  # undone on exit, whatever set_experiment wrote meanwhile
        patch.delenv("MLFLOW_EXPERIMENT_ID")
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
            fluent._active_experiment_id = active


@pytest.fixture
def mlflow_tracking(tmp_path: Path) -> Iterator[str]:
    """An isolated MLflow store per test."""
    with isolated_tracking(tmp_path) as uri:
        yield uri
