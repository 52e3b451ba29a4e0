"""Every metric against small hand-computed cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from seqrec.core.data import Sequences
from seqrec.core.data import item_similarity
from seqrec.core.metrics import (diversity, held_out_pick, hit_matrix, mlflow_name, ranking_metrics, top_k,
                                 top_popular, validation_halves)

# Three users, six items, top-3 lists. First goal items 2, 4, 3: users 0 and 1 have it in their top-3.
RECOMMENDED = np.array([[0, 1, 2], [3, 4, 5], [1, 0, 5]])
GOALS = Sequences.from_lists([[2, 5], [4, 1], [3]])
POPULARITY = np.array([0, 0, 10, 0, 1, 0])  # item 2 is the single top-1 % item


def test_qna_example_sps_at_3_is_two_thirds():
    metrics = ranking_metrics(RECOMMENDED, GOALS, n_items=6, popularity=POPULARITY)
    assert round(100 * metrics["sps@3"], 2) == 66.67


def test_every_metric_by_hand():
    metrics = ranking_metrics(RECOMMENDED, GOALS, n_items=6, popularity=POPULARITY)
    ndcg_user0 = (1 / np.log2(4)) / (1 + 1 / np.log2(3))  # hit at rank 3, two goal items
    ndcg_user1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))  # hit at rank 2, two goal items
    assert metrics == pytest.approx({
        "sps@3": 2 / 3,
        "recall@3": (1 / 2 + 1 / 2 + 0) / 3,
        "precision@3": 2 / 9,
        "ndcg@3": (ndcg_user0 + ndcg_user1) / 3,
        "mrr@3": (1 / 3 + 1 / 2) / 3,
        "user_coverage": 2 / 3,
        "item_coverage": 2,  # items 2 and 4
        "blockbuster_share": 1 / 2,  # of the hits {2, 4}, item 2 is a blockbuster
        # 8 of the 9 recommendations have share 1/11 (popularity 0 counts as 1), item 2 has 10/11
        "novelty": (8 * np.log2(11) + np.log2(11 / 10)) / 9,
    })


def test_item_similarity_and_diversity_by_hand():
    train = Sequences.from_lists([[0, 1], [0, 1, 2], [2, 2]])  # raters: item 0 {0, 1}, 1 {0, 1}, 2 {1, 2}
    similarity = item_similarity(train, n_items=4)
    assert similarity[:3, :3] == pytest.approx(np.array([[1, 1, 0.5], [1, 1, 0.5], [0.5, 0.5, 1]]))
    assert not similarity[3].any()  # an item nobody rated is similar to nothing
    # user 0: items 0, 1 (dissimilarity 0); user 1: items 0, 2 (0.5)
    assert diversity(np.array([[0, 1], [0, 2]]), similarity) == pytest.approx(0.25)
    assert diversity(np.array([[0, 1, 2]]), similarity) == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert diversity(np.array([[0], [1]]), similarity) == 0.0
    metrics = ranking_metrics(np.array([[0, 2]]), Sequences.from_lists([[1]]), 4, similarity=similarity)
    assert metrics["diversity"] == pytest.approx(0.5) and "novelty" not in metrics


def test_perfect_and_empty_rankings():
    goals = Sequences.from_lists([[0, 1], [2]])
    perfect = ranking_metrics(np.array([[0, 1], [2, 3]]), goals, n_items=4)
    assert perfect["sps@2"] == perfect["ndcg@2"] == perfect["mrr@2"] == perfect["user_coverage"] == 1.0
    assert perfect["recall@2"] == 1.0 and perfect["precision@2"] == 0.75
    late = ranking_metrics(np.array([[3, 1], [0, 1]]), goals, n_items=4)  # only a later goal item is hit
    assert late["sps@2"] == 0.0 and late["recall@2"] == 0.25 and late["item_coverage"] == 1


def test_sps_only_counts_the_first_goal_item():
    goals = Sequences.from_lists([[5, 0]])
    metrics = ranking_metrics(np.array([[0, 1]]), goals, n_items=6)
    assert metrics["sps@2"] == 0.0 and metrics["recall@2"] == 0.5


def test_top_k_orders_and_excludes_inputs():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    inputs = Sequences.from_lists([[1], [0, 3]])
    np.testing.assert_array_equal(top_k(scores, 2), [[1, 3], [0, 1]])
    np.testing.assert_array_equal(top_k(scores, 3, exclude=inputs), [[3, 2, 0], [1, 2, 0]])
    with pytest.raises(ValueError, match="k must be between 1 and the number of items"):
        top_k(scores, 5)


def test_hit_matrix_and_top_popular():
    np.testing.assert_array_equal(hit_matrix(RECOMMENDED, GOALS, 6), [[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert top_popular(np.arange(300)).tolist() == [299, 298, 297]  # 1 % of 300 items


def test_empty_goal_is_refused():
    with pytest.raises(ValueError, match="at least one goal item"):
        ranking_metrics(np.array([[0]]), Sequences.from_lists([[]]), n_items=2)


def test_mlflow_metric_names():
    assert mlflow_name("sps@10", "val_") == "val_sps_at_10"


def test_validation_halves_are_one_fixed_draw_of_equal_size():
    halves = validation_halves(501)
    assert halves.sum() == 251 and np.array_equal(halves, validation_halves(501))
    assert 0.3 < halves[:250].mean() < 0.7  # drawn, not the first users
    assert validation_halves(1).tolist() == [True] and validation_halves(0).size == 0


def test_held_out_pick_scores_each_half_at_the_other_half_s_first_best_epoch():
    a = [0.30, 0.40, 0.40, 0.35]  # half A peaks first at epoch 2
    b = [0.20, 0.25, 0.31, 0.50]  # half B peaks at epoch 4
    # B's figure at epoch 2 (0.25) for B's 3 users, A's at epoch 4 (0.35) for A's 2
    assert held_out_pick(a, b, n_a=2, n_b=3) == pytest.approx((3 * 0.25 + 2 * 0.35) / 5)
    assert held_out_pick(a, a, 1, 1) == pytest.approx(max(a))  # halves that agree: the kept figure itself


def with_times(sequences: Sequences, times: list[list[int]]) -> Sequences:
    return replace(sequences, times=np.concatenate([np.asarray(t, dtype=np.int64) for t in times]))


def test_tie_aware_metrics_count_the_next_burst_and_the_cuts_inside_one():
    # user 0: first goal item 5 shares its second (100) with goal item 6 and with the last input item 2
    # user 1: first goal item 7 alone in its second; the next item 8 comes a second later
    # user 2: first goal time unknown (-1): its burst is the first item only
    inputs = with_times(Sequences.from_lists([[1, 2], [3, 4], [9, 10]]), [[90, 100], [50, 60], [-1, -1]])
    goals = with_times(Sequences.from_lists([[5, 6, 11], [7, 8], [12, 13]]), [[100, 100, 200], [70, 71], [-1, -1]])
    recommended = np.array([[6, 0], [8, 0], [13, 0]])  # hits the burst of user 0 only, never a first item
    metrics = ranking_metrics(recommended, goals, 14, inputs=inputs)
    assert metrics["sps@2"] == 0.0
    assert metrics["sps_tie@2"] == pytest.approx(1 / 3)
    assert metrics["cut_in_burst"] == pytest.approx(1 / 3) and metrics["sps_in_burst@2"] == 0.0
    first_items = np.array([[5, 0], [7, 0], [0, 1]])
    metrics = ranking_metrics(first_items, goals, 14, inputs=inputs)
    assert metrics["sps@2"] == metrics["sps_tie@2"] == pytest.approx(2 / 3)
    assert metrics["sps_in_burst@2"] == pytest.approx(1 / 3)  # user 0's hit rests on the order inside second 100


def test_without_times_there_are_no_tie_aware_metrics():
    inputs, goals = Sequences.from_lists([[1, 2]]), Sequences.from_lists([[3, 4]])
    assert not any("tie" in name or "burst" in name
                   for name in ranking_metrics(np.array([[3]]), goals, 5, inputs=inputs))
