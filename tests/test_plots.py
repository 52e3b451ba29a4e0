"""The numbers behind the run figures, on hand-made scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from seqrec.core.data import Sequences
from seqrec.core.metrics import top_k
from seqrec.core.model import build_model
from seqrec.core.figures import (cutoff_curves, cutoff_figure, embedding_figure, embedding_map, goal_ranks,
                                 horizon_figure, horizon_profile)

SCORES = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]])
INPUTS = Sequences.from_lists([[0], [3]])
GOALS = Sequences.from_lists([[2, 1], [0, 1, 2]])


def test_goal_ranks_skip_the_input_items():
    # user 0 without item 0: 1 (.8) > 3 (.5) > 2 (.1); user 1 without item 3: 2 > 1 > 0
    assert goal_ranks(SCORES, INPUTS, GOALS).tolist() == [2, 0, 2, 1, 0]
    assert goal_ranks(SCORES, INPUTS, GOALS, block=2).tolist() == [2, 0, 2, 1, 0]


def test_horizon_profile_by_goal_position():
    profile = horizon_profile(goal_ranks(SCORES, INPUTS, GOALS), GOALS, k=1, min_users=1)
    assert profile["n"].tolist() == [1, 2, 3] and profile["users"].tolist() == [2, 2, 1]
    assert profile["hit_rate"].tolist() == [0.0, 0.5, 1.0]
    assert profile["median_rank"].tolist() == [3.0, 1.5, 1.0]
    assert horizon_profile(np.array([0, 1]), Sequences.from_lists([[2, 1]]), 1, min_users=2)["n"].tolist() == []


def test_cutoff_curves_are_the_metrics_at_each_k():
    recommended = top_k(SCORES, 3, exclude=INPUTS)  # [[1, 3, 2], [2, 1, 0]]
    curves = cutoff_curves(recommended, GOALS, n_items=4)
    assert curves["k"].tolist() == [1, 2, 3]
    assert curves["sps"].tolist() == [0.0, 0.0, 1.0]  # first goals 2 and 0 both come third
    assert curves["recall"] == pytest.approx([(1 / 2 + 1 / 3) / 2, (1 / 2 + 2 / 3) / 2, 1.0])


def test_embedding_map_and_figures_render():
    model = build_model(n_items=5, hidden=4, embedding=3)
    popularity = np.array([5, 0, 3, 2, 1])
    coordinates = embedding_map(model, popularity)
    assert coordinates.shape == (5, 2) and np.isfinite(coordinates).all()
    figure = embedding_figure(coordinates, popularity, ["a", "b", "c", "d", "e"], n_labels=2)
    assert [text.get_text() for text in figure.axes[0].texts] == ["a", "c"]
    profile = horizon_profile(goal_ranks(SCORES, INPUTS, GOALS), GOALS, k=1, min_users=1)
    assert len(horizon_figure(profile, 1, "test").axes) == 2


def test_cutoff_curves_add_the_tie_aware_sps_when_the_times_are_known():
    recommended = top_k(SCORES, 3, exclude=INPUTS)  # [[1, 3, 2], [2, 1, 0]]
    inputs = replace(INPUTS, times=np.array([10, 50]))
    goals = replace(GOALS, times=np.array([20, 20, 60, 61, 62]))  # user 0's goal items 2 and 1 share a second
    curves = cutoff_curves(recommended, goals, 4, inputs)
    assert curves["sps_tie"].tolist() == [0.5, 0.5, 1.0]  # user 0's item 1 counts from k = 1
    assert "sps_tie" not in cutoff_curves(recommended, GOALS, 4, INPUTS)  # no times, no curve
    assert len(cutoff_figure(curves, "test").axes[0].lines) == 3
