"""Figures logged with every training run, to look at the model rather than at its log.

* learning curves: training loss and validation sps/recall per epoch;
* sps@k and recall@k for k = 1..20 on the evaluated users;
* the paper's short-/long-term profile: for the n-th item of the goal (n = 1 is the very next one), the
  share of users who get it in their top-k and its median rank — how much of the next item versus the
  distant future the model sees;
* a 2-D PCA map of the item embeddings, the most rated movies labelled by title.

The numbers behind each figure come from plain functions (tested on small data);
:func:`seqrec.experiment.plots.log_run_plots` logs them to an MLflow run.
"""

from __future__ import annotations

import numpy as np

from seqrec.core.data import Sequences
from seqrec.core.ensemble import network_of
from seqrec.core.metrics import metric_name, ranking_metrics
from seqrec.core.model import keras

MAX_CUTOFF = 20


def cutoff_curves(recommended: np.ndarray, goals: Sequences, n_items: int,
                  inputs: Sequences | None = None) -> dict[str, np.ndarray]:
    """sps@k and recall@k for k = 1..``recommended.shape[1]`` (a top list, best first), and the tie-aware sps@k
    (``sps_tie``) when the goals' times are known and the ``inputs`` given."""
    cutoffs = np.arange(1, recommended.shape[1] + 1)
    metrics = [ranking_metrics(recommended[:, :k], goals, n_items, inputs=inputs) for k in cutoffs]
    curves = {"k": cutoffs}
    for curve, name in (("sps", "sps@{k}"), ("recall", "recall@{k}"), ("sps_tie", "sps_tie@{k}")):
        if name.format(k=1) in metrics[0]:
            curves[curve] = np.array([m[name.format(k=k)] for k, m in zip(cutoffs, metrics)])
    return curves


def goal_ranks(scores: np.ndarray, inputs: Sequences, goals: Sequences, block: int = 2048) -> np.ndarray:
    """0-based rank of every goal item (flat, like ``goals.items``) among the items not in the input:
    the number of such items scored strictly higher. Blocks of goal items bound the memory."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[inputs.row_of_interaction(), inputs.items] = -np.inf
    rows = goals.row_of_interaction()
    goal_scores = scores[rows, goals.items]
    ranks = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), block):
        part = slice(start, start + block)
        ranks[part] = (scores[rows[part]] > goal_scores[part, None]).sum(axis=1)
    return ranks


def horizon_profile(ranks: np.ndarray, goals: Sequences, k: int, min_users: int = 20) -> dict[str, np.ndarray]:
    """Per goal position n = 1, 2, ...: share of users with the n-th goal item in the top-k and its median
    rank (1-based), over the users whose goal has at least n items (positions with fewer users dropped)."""
    position = goals.positions()
    users_at = np.bincount(position)
    n_max = int(np.flatnonzero(users_at >= min_users).max()) + 1 if (users_at >= min_users).any() else 0
    keep = position < n_max
    hits = np.bincount(position[keep], weights=ranks[keep] < k, minlength=n_max)
    order = np.lexsort((ranks[keep], position[keep]))
    starts = np.concatenate([[0], np.cumsum(users_at[:n_max])[:-1]])
    sorted_ranks = ranks[keep][order]
    median = (sorted_ranks[starts + (users_at[:n_max] - 1) // 2] + sorted_ranks[starts + users_at[:n_max] // 2]) / 2
    return {"n": np.arange(1, n_max + 1), "hit_rate": hits / np.maximum(users_at[:n_max], 1),
            "median_rank": median + 1, "users": users_at[:n_max]}


def embedding_map(model: keras.Model, popularity: np.ndarray) -> np.ndarray:
    """2-D PCA coordinates (n_items x 2) of the item embeddings (padding row dropped); of the network inside a
    model that wraps one (a blend with SLIST, :func:`seqrec.core.ensemble.slist_blended`)."""
    vectors = np.asarray(network_of(model).get_layer("item_embedding").embeddings)[1:]
    rated = popularity > 0
    centred = vectors - vectors[rated].mean(axis=0)
    _, _, components = np.linalg.svd(centred[rated], full_matrices=False)
    return centred @ components[:2].T


# --------------------------------------------------------------------------------------------- figures


def _figure(title: str, size: tuple[float, float] = (7, 4.5)):
    import matplotlib

    matplotlib.use("Agg")  # headless: runs, CI
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=size)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    return figure, axis


def learning_curves_figure(history: dict[str, list[float]], k: int):
    figure, axis = _figure("Learning curves")
    epochs = np.arange(1, len(history["loss"]) + 1)
    axis.plot(epochs, history["loss"], "o-", color="tab:gray", label="training loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss")
    right = axis.twinx()
    for name, colour in ((f"val_sps_at_{k}", "tab:blue"), (f"val_sps_tie_at_{k}", "tab:cyan"),
                         (f"val_recall_at_{k}", "tab:orange")):
        if name in history:
            right.plot(epochs, 100 * np.asarray(history[name]), "s-", color=colour,
                       label=metric_name(name, "val_") + " (validation)")
    right.set_ylabel("%")
    lines = axis.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    axis.legend(lines, [line.get_label() for line in lines], loc="center right")
    return figure


def cutoff_figure(curves: dict[str, np.ndarray], users: str):
    figure, axis = _figure(f"sps@k and recall@k, {users} users")
    axis.plot(curves["k"], 100 * curves["sps"], "o-", label="sps@k")
    if "sps_tie" in curves:
        axis.plot(curves["k"], 100 * curves["sps_tie"], "o--", color="tab:blue", alpha=0.6,
                  label="tie-aware sps@k (any item of the next second)")
    axis.plot(curves["k"], 100 * curves["recall"], "s-", label="recall@k")
    axis.set_xlabel("k")
    axis.set_ylabel("%")
    axis.set_xticks(curves["k"])
    axis.legend()
    return figure


def new_user_figure(curve: dict[str, np.ndarray], k: int, users: str):
    """sps@k and recall@k against the number of items given (see :func:`seqrec.core.scoring.new_user_curve`)."""
    figure, axis = _figure(f"New users: sps@{k} and recall@{k} from their first items, {users} users")
    labels = [str(int(given)) if given > 0 else "whole\ninput half" for given in curve["given"]]
    positions = np.arange(len(labels))
    axis.plot(positions, 100 * curve["sps"], "o-", label=f"sps@{k}")
    axis.plot(positions, 100 * curve["recall"], "s-", label=f"recall@{k}")
    axis.set_xticks(positions, labels)
    axis.set_xlabel("items of the input half given to the recommender")
    axis.set_ylabel("%")
    axis.legend()
    return figure


def horizon_figure(profile: dict[str, np.ndarray], k: int, users: str):
    figure, axis = _figure(f"Short- and long-term profile, {users} users")
    axis.plot(profile["n"], 100 * profile["hit_rate"], "-", color="tab:blue", label=f"n-th goal item in top-{k}")
    axis.set_xscale("log")
    axis.set_xlabel("n (position in the goal; 1 = next item)")
    axis.set_ylabel(f"users with it in the top-{k} (%)", color="tab:blue")
    right = axis.twinx()
    right.plot(profile["n"], profile["median_rank"], "-", color="tab:red", label="median rank")
    right.set_ylabel("median rank of the n-th goal item", color="tab:red")
    return figure


def embedding_figure(coordinates: np.ndarray, popularity: np.ndarray, titles: list[str] | None, n_labels: int = 30):
    figure, axis = _figure("Item embeddings (PCA)", size=(12, 9))  # room for 30 titles
    rated = np.flatnonzero(popularity > 0)
    points = axis.scatter(coordinates[rated, 0], coordinates[rated, 1], c=np.log10(popularity[rated]), s=4,
                          cmap="viridis", alpha=0.6)
    figure.colorbar(points, ax=axis, label="log10 training ratings")
    for item in np.argsort(-popularity, kind="stable")[:n_labels]:
        label = titles[item] if titles else str(item)
        axis.annotate(label, coordinates[item], fontsize=7, alpha=0.9)
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    return figure
