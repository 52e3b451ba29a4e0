"""The figures of a training run (:mod:`seqrec.core.figures`), logged to its MLflow run as ``plots/*.png``."""

from __future__ import annotations

import mlflow
import numpy as np

from seqrec.core.data import Split, split_half
from seqrec.core.figures import (MAX_CUTOFF, cutoff_curves, cutoff_figure, embedding_figure, embedding_map,
                                 goal_ranks, horizon_figure, horizon_profile, learning_curves_figure,
                                 new_user_figure)
from seqrec.core.metrics import top_k
from seqrec.core.model import keras
from seqrec.core.scoring import score_users


def log_run_plots(model: keras.Model, history: dict[str, list[float]], split: Split, users: str, k: int,
                  scores: np.ndarray | None = None, new_users: dict[str, np.ndarray] | None = None) -> None:
    """Compute and log the figures (``plots/*.png``) to the active MLflow run; ``scores`` of the users'
    input halves when the caller already has them, ``new_users`` the new-user curve
    (:func:`seqrec.core.scoring.new_user_curve`) when it was measured."""
    inputs, goals = split_half(split.test if users == "test" else split.val)
    scores = score_users(model, inputs) if scores is None else scores
    recommended = top_k(scores, min(MAX_CUTOFF, split.n_items), exclude=inputs)
    popularity = split.item_popularity
    titles = split.catalogue.titles if split.catalogue is not None else None
    figures = {
        "learning_curves.png": learning_curves_figure(history, k),
        "sps_recall_at_k.png": cutoff_figure(cutoff_curves(recommended, goals, split.n_items, inputs), users),
        "short_long_term_profile.png": horizon_figure(horizon_profile(goal_ranks(scores, inputs, goals), goals, k),
                                                      k, users),
        "item_embeddings.png": embedding_figure(embedding_map(model, popularity), popularity, titles),
        **({"new_users.png": new_user_figure(new_users, k, users)} if new_users is not None else {}),
    }
    log_figures(figures)


def log_figures(figures: dict[str, object]) -> None:
    """Log each figure to the active MLflow run as ``plots/<name>``, then free it."""
    import matplotlib.pyplot as plt  # after seqrec.core.figures has chosen the headless backend

    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")
        plt.close(figure)
