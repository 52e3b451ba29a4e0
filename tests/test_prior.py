"""A network trained and scored inside a blend with SLIST (``slist_weight``, seqrec.core.prior)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_sequences
from seqrec.core.baselines import SLIST, recency_matrix
from seqrec.core.config import TrainConfig
from seqrec.core.data import Sequences, load_split, split_half
from seqrec.core.model import NextItemsCrossentropy, build_model, keras
from seqrec.core.prior import SlistPrior, slist_blended
from seqrec.core.sampling import TrainingBatches
from seqrec.core.scoring import evaluate_scores, score_users, softmax
from seqrec.core.training import fit

LINEAR = SLIST(window=3, decay=0.5, l2=2.0)


def users_with_repeats(n_items: int = 12) -> Sequences:
    """Synthetic walks, longer than the window, one of them reading an item twice."""
    users = synthetic_sequences(30, n_items, np.random.default_rng(4))
    items = [users.items[start:end].tolist() for start, end in zip(users.offsets[:-1], users.offsets[1:])]
    items[0] = items[0][:6] + [items[0][2]] + items[0][6:]  # a repeat: read, so SLIST's share of it is 0
    return Sequences.from_lists(items, list(range(len(items))))


def unread_distribution(weights: np.ndarray, history: np.ndarray, n_items: int) -> np.ndarray:
    """SLIST's positive outputs after ``history`` over the items it has not read, summing to 1 (or all 0)."""
    recent = recency_matrix(history, np.array([0]), np.array([len(history)]), n_items, LINEAR.window, LINEAR.decay)
    outputs = np.maximum(np.asarray(recent @ weights)[0], 0.0)
    outputs[history] = 0.0
    return outputs / outputs.sum() if outputs.sum() > 0 else outputs


def test_each_fold_is_slist_fitted_without_its_users_and_the_prior_is_slist_fitted_on_all() -> None:
    train = users_with_repeats()
    prior = SlistPrior.fit(train, 12, folds=3, seed=1, linear=LINEAR)
    assert sorted(np.bincount(prior.fold_of_user).tolist()) == [10, 10, 10]
    for fold in range(3):
        others = SLIST(window=3, decay=0.5, l2=2.0).fit(train.of_users(prior.fold_of_user != fold), 12)
        np.testing.assert_allclose(prior.fold_weights[fold], others.weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(prior.weights, SLIST(window=3, decay=0.5, l2=2.0).fit(train, 12).weights,
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="alpha=0"):
        SlistPrior.fit(train, 12, linear=SLIST(alpha=0.5))


def test_target_shares_are_each_steps_fold_slist_share_of_the_target_among_unread_items() -> None:
    train = users_with_repeats()
    prior = SlistPrior.fit(train, 12, folds=3, linear=LINEAR)
    shares = prior.target_shares(train)
    expected = np.zeros_like(shares)
    for user, (start, end) in enumerate(zip(train.offsets[:-1], train.offsets[1:])):
        for step in range(start + 1, end):
            distribution = unread_distribution(prior.fold_weights[prior.fold_of_user[user]],
                                               train.items[start:step], 12)
            expected[step] = distribution[train.items[step]]
    np.testing.assert_allclose(shares, expected, rtol=1e-4, atol=1e-6)
    assert shares[train.offsets[:-1]].max() == 0.0  # a first item has nothing before it
    assert shares[train.offsets[0] + 6] == 0.0 and expected.max() > 0.3  # the repeat gets nothing; others do


def test_the_blended_scorer_is_the_blend_of_the_softmax_and_slist_over_unread_items(tmp_path: Path) -> None:
    train = users_with_repeats()
    prior = SlistPrior.fit(train, 12, folds=2, linear=LINEAR)
    network = build_model(12, hidden=8, embedding=4)
    blended = slist_blended(network, prior, 0.3)
    histories = Sequences.from_lists([[1, 2, 3, 4, 5], [7], [0, 11, 0]], [0, 1, 2])
    scores = score_users(blended, histories)
    logits = score_users(network, histories)
    for row, history in enumerate([[1, 2, 3, 4, 5], [7], [0, 11, 0]]):
        unread = np.setdiff1d(np.arange(12), history)
        network_share = np.zeros(12)
        network_share[unread] = softmax(logits[row : row + 1, unread])[0]
        expected = 0.7 * network_share + 0.3 * unread_distribution(prior.weights, np.array(history), 12)
        np.testing.assert_allclose(np.exp(scores[row, unread]), expected[unread], rtol=1e-4, atol=1e-7)
        assert scores[row, history].max() < -1e8  # a read item is out
    assert np.exp(scores).sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], rel=1e-4)
    blended.save(tmp_path / "blend.keras")
    reloaded = keras.models.load_model(tmp_path / "blend.keras", compile=False)
    np.testing.assert_allclose(score_users(reloaded, histories), scores, rtol=1e-5)
    assert blended.name == "rnn_cce_slist" and [tensor.name for tensor in blended.inputs] == ["items"]


def test_the_loss_is_the_blends_cross_entropy_of_each_target() -> None:
    logits = np.array([[[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]], dtype=np.float32)
    targets = np.array([[[1, 0.25], [0, 0.0], [-1, 0.0]]], dtype=np.float32)  # the last step has no target
    loss = NextItemsCrossentropy(slist_weight=0.4)
    per_step = np.asarray(loss.call(keras.ops.convert_to_tensor(targets), keras.ops.convert_to_tensor(logits)))
    p = softmax(logits[0])
    expected = [-np.log(0.6 * p[0, 1] + 0.4 * 0.25), -np.log(0.6 * p[1, 0]), 0.0]
    np.testing.assert_allclose(per_step[0], expected, rtol=1e-5)
    assert NextItemsCrossentropy.from_config(loss.get_config()).slist_weight == 0.4


def test_training_batches_carry_slists_share_of_every_target() -> None:
    train = users_with_repeats()
    prior = SlistPrior.fit(train, 12, folds=2, linear=LINEAR)
    config = TrainConfig(max_len=4, batch_size=8, exclude_seen=True, slist_weight=0.5, tie_order="file")
    batches = TrainingBatches(train, config, seed=0, n_items=12, prior=prior)
    _, targets = batches.epoch_examples()
    assert targets.shape[-1] == 2 and targets.dtype == np.float32
    shares = prior.target_shares(train)
    held = targets[..., 0] >= 0
    assert np.isin(targets[..., 1][held], shares).all() and targets[..., 1][~held].max() == 0.0
    plain = TrainingBatches(train, replace(config, slist_weight=0.0), seed=0, n_items=12).epoch_examples()[1]
    np.testing.assert_array_equal(targets[..., 0], plain[..., 0])  # the same windows and targets as without it
    with pytest.raises(ValueError, match="slist_weight needs a SLIST prior"):
        TrainingBatches(train, config, seed=0, n_items=12)


@pytest.mark.parametrize(("change", "message"), [
    ({"slist_weight": 1.0}, r"slist_weight must be in \[0, 1\)"),
    ({"slist_weight": 0.5, "lookahead": 2}, "slist_weight needs lookahead=1, got lookahead=2"),
    ({"slist_weight": 0.5, "loss": "bpr"}, "slist_weight needs loss=cce"),
    ({"slist_weight": 0.5, "regime": "paper"}, "slist_weight needs regime=all_steps"),
    ({"slist_weight": 0.5, "rating_input": True}, "slist_weight needs rating_input=False"),
])
def test_settings_the_blend_cannot_train_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)


def test_a_gru_trained_in_the_blend_learns_and_scores_as_the_blend(synthetic_split_dir: Path) -> None:
    split = load_split(synthetic_split_dir)
    config = TrainConfig(epochs=3, exclude_seen=True, hidden=32, embedding=16, dropout=0.1, max_len=8,
                         batch_size=16, lr=0.01, k=5, tie_order="file", patience=20, slist_weight=0.5)
    result = fit(split, config, verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.model.name == "rnn_cce_slist" and [tensor.name for tensor in result.model.inputs] == ["items"]
    popularity = np.tile(split.item_popularity.astype(np.float32), (len(split.val), 1))
    assert max(result.history["val_sps_at_5"]) > evaluate_scores(popularity, split.val, 5)["sps@5"] + 0.2
    # the kept epoch's validation figure is the blend's, as evaluated from the saved model
    kept = result.history["val_sps_at_5"][result.best_epoch - 1]
    scores = score_users(result.model, split_half(split.val)[0])
    assert evaluate_scores(scores, split.val, 5)["sps@5"] == pytest.approx(kept)
