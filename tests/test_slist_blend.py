"""A network validated, kept and served as its blend with SLIST (``slist_weight``, seqrec.core.ensemble)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_sequences
from seqrec.core.baselines import SLIST, user_item_matrix
from seqrec.core.config import TrainConfig
from seqrec.core.data import Sequences, load_split, split_half
from seqrec.core.ensemble import blended_distribution, network_of, slist_blended
from seqrec.core.model import build_model, keras
from seqrec.core.scoring import evaluate_scores, score_users, softmax
from seqrec.core.training import fit
from seqrec.experiment.records import logged_params, resolved_params, used_params


def test_the_blend_is_the_softmax_and_slist_each_over_the_unread_items(tmp_path: Path) -> None:
    linear = SLIST(window=3, decay=0.5, l2=2.0).fit(synthetic_sequences(30, 12, np.random.default_rng(4)), 12)
    network = build_model(12, hidden=8, embedding=4)
    blended = slist_blended(network, linear, 0.3)
    lists = [[1, 2, 3, 4, 5], [7], [0, 11, 0]]  # longer than the window; one item; a repeat
    histories = Sequences.from_lists(lists, [0, 1, 2])
    scores, logits, outputs = score_users(blended, histories), score_users(network, histories), linear.predicted(histories)
    for row, history in enumerate(lists):
        unread = np.setdiff1d(np.arange(12), history)
        linear_share = np.maximum(outputs[row, unread], 0.0) / np.maximum(outputs[row, unread], 0.0).sum()
        expected = 0.7 * softmax(logits[row : row + 1, unread])[0] + 0.3 * linear_share
        np.testing.assert_allclose(np.exp(scores[row, unread]), expected, rtol=1e-4, atol=1e-7)
        assert scores[row, history].max() < -1e8  # a read item is out
    # the same blend from scores at hand, as benchmarks/ensemble.py computes it
    read = user_item_matrix(histories, 12).toarray() > 0
    at_hand = blended_distribution(softmax(logits), outputs, read, 0.3)
    np.testing.assert_allclose(np.exp(scores)[~read], at_hand[~read], rtol=1e-4, atol=1e-7)
    assert at_hand[read].max() == 0.0
    blended.save(tmp_path / "blend.keras")
    reloaded = keras.models.load_model(tmp_path / "blend.keras", compile=False)
    np.testing.assert_allclose(score_users(reloaded, histories), scores, rtol=1e-5)
    assert blended.name == "rnn_cce_slist" and [tensor.name for tensor in blended.inputs] == ["items"]


def test_a_history_slist_gives_nothing_is_scored_by_the_network_alone() -> None:
    linear = SLIST(window=1, decay=1.0, l2=1.0).fit(Sequences.from_lists([[0, 1], [0, 1]], [0, 1]), 3)
    network = build_model(3, hidden=4, embedding=4)
    history = Sequences.from_lists([[2]], [0])  # item 2 was never read before another in training
    assert linear.predicted(history).max() == 0.0
    scores, logits = score_users(slist_blended(network, linear, 0.5), history), score_users(network, history)
    np.testing.assert_allclose(np.exp(scores[0, :2]), softmax(logits[:, :2])[0], rtol=1e-5)
    read = np.array([[False, False, True]])
    at_hand = blended_distribution(softmax(logits), linear.predicted(history), read, 0.5)
    np.testing.assert_allclose(at_hand[0, :2], softmax(logits[:, :2])[0], rtol=1e-6)
    assert network_of(slist_blended(network, linear, 0.5)) is network and network_of(network) is network


def test_a_blend_needs_a_fitted_order_aware_slist_and_a_network_of_the_items_alone() -> None:
    network = build_model(5, hidden=4, embedding=4)
    with pytest.raises(ValueError, match="needs a fitted SLIST"):
        slist_blended(network, SLIST(), 0.5)
    with pytest.raises(ValueError, match="reads the items only"):
        slist_blended(build_model(5, hidden=4, embedding=4, rating_input=True),
                      SLIST(window=1).fit(Sequences.from_lists([[0, 1]], [0]), 5), 0.5)


@pytest.mark.parametrize(("change", "message"), [
    ({"slist_weight": 1.0}, r"slist_weight must be in \[0, 1\) \(0: the network alone\), got 1.0"),
    ({"slist_weight": -0.1}, r"slist_weight must be in \[0, 1\)"),
    ({"slist_weight": 0.5, "loss": "bpr"}, "slist_weight needs loss=cce, got loss='bpr'"),
    ({"slist_weight": 0.5, "rating_input": True}, "slist_weight needs rating_input=False"),
])
def test_settings_the_blend_cannot_score_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)


@pytest.mark.parametrize(("settings", "exclude_seen", "slist_weight", "dropout"), [
    ({}, True, 0.7, 0.0),  # the default recipe: the GRU, the full softmax at every step, items only
    ({"cell": "lstm", "hidden": 50}, True, 0.7, 0.0),
    ({"regime": "paper"}, False, 0.0, 0.2),  # the paper's own RNN-CCE
    ({"loss": "bpr"}, False, 0.0, 0.2),
    ({"rating_input": True}, False, 0.0, 0.2),
    ({"model": "sasrec"}, False, 0.0, 0.2),
    ({"exclude_seen": False}, False, 0.7, 0.0),  # a value given is a value used
    ({"slist_weight": 0.0}, True, 0.0, 0.0),
    ({"dropout": 0.3}, True, 0.7, 0.3),
    ({"model": "sasrec", "exclude_seen": True, "slist_weight": 0.5, "dropout": 0.0}, True, 0.5, 0.0),
])
def test_auto_gives_the_default_recipe_its_options_and_leaves_the_others_as_before(
        settings: dict, exclude_seen: bool, slist_weight: float, dropout: float) -> None:
    config = TrainConfig(**settings)
    assert (config.resolved_exclude_seen, config.resolved_slist_weight, config.resolved_dropout) == (
        exclude_seen, slist_weight, dropout)
    assert {name: getattr(config, name) for name in ("exclude_seen", "slist_weight", "dropout")} == {
        name: settings.get(name, "auto") for name in ("exclude_seen", "slist_weight", "dropout")}


def test_auto_resolves_again_when_a_setting_changes() -> None:
    paper = replace(TrainConfig(), regime="paper")  # not refused: auto is not "true" carried over
    assert (paper.resolved_exclude_seen, paper.resolved_slist_weight, paper.resolved_dropout) == (False, 0.0, 0.2)
    with pytest.raises(ValueError, match="exclude_seen must be auto or true or false, got 'yes'"):
        TrainConfig(exclude_seen="yes")
    with pytest.raises(ValueError, match="dropout must be auto or a number, got 'high'"):
        TrainConfig(dropout="high")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        TrainConfig(dropout=1.0)
    with pytest.raises(ValueError, match="exclude_seen is for regime=all_steps only"):
        TrainConfig(regime="paper", exclude_seen=True)


def test_a_run_logged_with_auto_or_before_the_options_reads_as_what_it_trained() -> None:
    auto = {"model": "rnn", "regime": "all_steps", "loss": "cce", "exclude_seen": "auto", "slist_weight": "auto",
            "dropout": "auto"}
    assert resolved_params(auto) == {**auto, "exclude_seen": "true", "slist_weight": "0.7", "dropout": "0.0"}
    logged = {**auto, "exclude_seen_used": "true", "slist_weight_used": "0.7", "dropout_used": "0.0"}  # logged beside
    assert resolved_params(logged) == resolved_params(auto)
    assert [resolved_params({**auto, "regime": "paper"})[name] for name in ("slist_weight", "dropout")] == ["0.0", "0.2"]
    before = {"model": "rnn", "regime": "all_steps", "loss": "cce"}  # logged before the options existed: off
    assert resolved_params(before) == {**before, "exclude_seen": "false", "slist_weight": "0.0", "dropout": "0.2"}
    trained = resolved_params({**logged_params(TrainConfig()), **used_params(TrainConfig())})  # as train_run logs
    assert (trained["exclude_seen"], trained["slist_weight"], trained["dropout"]) == ("true", "0.7", "0.0")
    assert "exclude_seen_used" not in trained and "dropout_used" not in trained


def test_a_gru_is_validated_kept_and_returned_as_its_blend(synthetic_split_dir: Path) -> None:
    split = load_split(synthetic_split_dir)
    config = TrainConfig(epochs=3, exclude_seen=True, hidden=32, embedding=16, dropout=0.1, max_len=8,
                         batch_size=16, lr=0.01, k=5, tie_order="file", patience=20, slist_weight=0.5)
    result = fit(split, config, verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.model.name == "rnn_cce_slist" and [tensor.name for tensor in result.model.inputs] == ["items"]
    popularity = np.tile(split.item_popularity.astype(np.float32), (len(split.val), 1))
    assert max(result.history["val_sps_at_5"]) > evaluate_scores(popularity, split.val, 5)["sps@5"] + 0.2
    # the kept epoch's validation figure is the blend's, as scored by the model returned
    kept = result.history["val_sps_at_5"][result.best_epoch - 1]
    scores = score_users(result.model, split_half(split.val)[0])
    assert evaluate_scores(scores, split.val, 5)["sps@5"] == pytest.approx(kept)
