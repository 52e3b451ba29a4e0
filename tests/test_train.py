"""Example construction of both regimes, and the Keras fit loop on synthetic data."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from seqrec.core.data import load_split, Sequences

from seqrec.core.metrics import held_out_pick, validation_halves
from seqrec.core.ties import TieOrder, tie_order
from seqrec.core.scoring import evaluate_scores, evaluate_users
from seqrec.core.model import build_model, keras, scoring_model
from seqrec.core.config import TrainConfig
from seqrec.core.ensemble import network_of
from seqrec.core.losses import PADDED_TARGET
from seqrec.core.model import NextItemsCrossentropy
from seqrec.core.sampling import (cut_examples, imputed_target_mask, rating_weights, TrainingBatches,
                                  user_cut_examples, window_examples)
from seqrec.core.models.common import EXCLUDED_LOGIT
from seqrec.core.training import EpochFeed, fit, learning_rate_schedule

USERS = Sequences.from_lists([list(range(10, 17)), [3, 4], [8]])  # 6, 1 and 0 transitions

# batches of the sampler alone: exclude_seen (on by default for the GRU) adds seen-sets that need the catalogue size
SAMPLER_ALONE = dict(exclude_seen=False)


@pytest.mark.parametrize("seed", range(5))
def test_windows_use_every_transition_once(seed):
    inputs, targets, *_ = window_examples(USERS, max_len=4, rng=np.random.default_rng(seed))
    used = inputs > 0
    assert targets.shape == (*inputs.shape, 1) and np.all((targets[..., 0] >= 0) == used)
    assert np.all(targets[~used] == PADDED_TARGET)  # what a training model that skips its padding gathers by
    pairs = sorted(zip((inputs[used] - 1).tolist(), targets[used][:, 0].tolist()))
    assert pairs == [(3, 4), (10, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 16)]
    for row_inputs, row_targets in zip(inputs, targets):  # consecutive cells are consecutive items
        real = row_inputs > 0
        assert np.all(np.diff(np.flatnonzero(real)) == 1)
        np.testing.assert_array_equal(row_inputs[real][1:] - 1, row_targets[real][:-1, 0])


def test_lookahead_targets_are_the_following_items():
    inputs, targets, *_ = window_examples(USERS, max_len=4, rng=np.random.default_rng(0), lookahead=3)
    used = inputs > 0
    following = dict(zip((inputs[used] - 1).tolist(), targets[used].tolist()))
    assert following[10] == [11, 12, 13] and following[14] == [15, 16, -1] and following[15] == [16, -1, -1]
    assert following[3] == [4, -1, -1]
    _, cut_targets, *_ = cut_examples(USERS, max_len=3, rng=np.random.default_rng(0), lookahead=2)
    assert cut_targets[1].tolist() == [4, -1] and cut_targets[2].tolist() == [-1, -1]


def test_burst_targets_keep_only_the_next_second():
    # user 0 rates 11, 12, 13 in one second, 14 later, 15 in the second after; user 1's times are unknown
    users = dataclasses.replace(Sequences.from_lists([[10, 11, 12, 13, 14, 15], [3, 4, 5]]),
                                times=np.array([1, 2, 2, 2, 3, 4, -1, -1, -1]))
    inputs, targets, *_ = window_examples(users, max_len=6, rng=np.random.default_rng(0), lookahead=3,
                                          burst_only=True)
    used = inputs > 0
    following = dict(zip((inputs[used] - 1).tolist(), targets[used].tolist()))
    assert following == {10: [11, 12, 13], 11: [12, 13, -1], 12: [13, -1, -1], 13: [14, -1, -1],
                         14: [15, -1, -1], 3: [4, -1, -1], 4: [5, -1, -1]}
    plain = window_examples(users, max_len=6, rng=np.random.default_rng(0), lookahead=3)[1]
    assert (plain[used] >= 0).sum() > (targets[used] >= 0).sum()  # without it, any next items are targets
    no_times = window_examples(dataclasses.replace(users, times=None), 6, np.random.default_rng(0), 3,
                               burst_only=True)[1]
    assert np.all(no_times[used][:, 1:] == -1) and np.all(no_times[used][:, 0] >= 0)  # the next item only


def test_burst_targets_need_a_lookahead_over_windows():
    assert TrainConfig(lookahead=8, lookahead_decay=1.0, burst_targets=True).burst_targets
    for bad in (dict(lookahead=1), dict(lookahead=2, regime="paper", exclude_seen=False)):
        with pytest.raises(ValueError, match="burst_targets is for lookahead of 2 or more with regime=all_steps"):
            TrainConfig(burst_targets=True, **bad)
    # the sampler finds the bursts in the times its sequences carry, through every epoch's new order inside a second
    users = dataclasses.replace(Sequences.from_lists([[10, 11, 12, 13, 14]]), times=np.array([1, 2, 2, 2, 3]))
    config = TrainConfig(lookahead=3, lookahead_decay=1.0, burst_targets=True, max_len=4, batch_size=4,
                         tie_order="shuffle", **SAMPLER_ALONE)
    batches = TrainingBatches(users, config, seed=0, ties=tie_order("shuffle", users, users.times, None))
    for epoch in range(3):
        batches.set_epoch(epoch)
        inputs, targets = batches.inputs, batches.targets
        following = dict(zip((inputs[inputs > 0] - 1).tolist(), targets[inputs > 0].tolist()))
        assert sorted(following[10]) == [11, 12, 13]  # the whole burst, in this epoch's order
        burst_end = next(item for item, after in following.items() if after[0] == 14)
        assert following[burst_end] == [14, -1, -1] and len(set(following) & {11, 12, 13}) == 3


def test_next_items_loss_is_the_paper_cce_at_lookahead_one():
    logits = np.random.default_rng(0).normal(size=(2, 3, 7)).astype("float32")
    targets = np.array([[[1], [4], [6]], [[0], [2], [3]]])
    ours = NextItemsCrossentropy(0.5)(targets, logits)
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets[..., 0], logits)
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)
    two = np.array([[1, -1], [2, 5]])  # second row: 2/3 weight on item 2, 1/3 on item 5
    log_probs = np.log(np.exp(logits[0, :2]) / np.exp(logits[0, :2]).sum(-1, keepdims=True))
    expected = (-log_probs[0, 1] - (2 * log_probs[1, 2] + log_probs[1, 5]) / 3) / 2
    assert float(NextItemsCrossentropy(0.5)(two, logits[0, :2])) == pytest.approx(expected, rel=1e-5)


def test_one_target_a_step_takes_the_fused_form_with_the_general_form_s_loss_and_gradient():
    """A second target column of -1 carries no weight, so it scores the same steps through the log-softmax form."""
    import tensorflow as tf

    logits = tf.Variable(np.random.default_rng(2).normal(size=(5, 9)).astype("float32") * 3)
    one = np.array([[4], [0], [-1], [8], [2]])
    with_empty_column = np.concatenate([one, np.full_like(one, -1)], axis=1)
    results = []
    for targets in (one, with_empty_column):
        with tf.GradientTape() as tape:
            loss = NextItemsCrossentropy(0.5)(targets, logits)
        results.append((float(loss), tape.gradient(loss, logits).numpy()))
    (fused, fused_gradient), (general, general_gradient) = results
    assert fused == pytest.approx(general, rel=1e-6)
    np.testing.assert_allclose(fused_gradient, general_gradient, atol=1e-6)
    assert np.all(fused_gradient[2] == 0)  # the step without a target


def test_label_smoothing_spreads_its_share_over_the_items_the_softmax_ranks():
    logits = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    logits[0, 2] += EXCLUDED_LOGIT  # an item the user read (exclude_seen): outside the softmax, and the smoothing
    targets = np.array([[4], [1], [-1]])  # the last step has no target and carries no loss
    log_probs = logits - np.log(np.exp(logits.astype("float64")).sum(-1, keepdims=True))
    ranked = logits > EXCLUDED_LOGIT / 2
    uniform = -(log_probs * ranked).sum(-1) / ranked.sum(-1)
    plain = -log_probs[[0, 1], [4, 1]]
    expected = (0.9 * plain + 0.1 * uniform[:2]).sum() / 3  # Keras' mean over the steps, the empty one included
    assert float(NextItemsCrossentropy(0.5, label_smoothing=0.1)(targets, logits)) == pytest.approx(expected,
                                                                                                  rel=1e-5)
    assert float(NextItemsCrossentropy(0.5, label_smoothing=0.0)(targets, logits)) == pytest.approx(
        plain.sum() / 3, rel=1e-5)


def test_warmup_rises_linearly_to_the_peak_then_decays_as_without_it():
    config = TrainConfig(lr=0.01, epochs=4, lr_warmup_epochs=1.5)
    warm, plain = learning_rate_schedule(config, 10), learning_rate_schedule(replace(config, lr_warmup_epochs=0), 10)
    rate = lambda schedule, step: float(schedule(step))  # noqa: E731
    assert [rate(warm, step) for step in (0, 5, 15)] == pytest.approx([0.0, 0.01 / 3, 0.01], rel=1e-5)
    assert rate(warm, 40) == pytest.approx(0.0005, rel=1e-5) == rate(plain, 40)  # 5 % of the peak at the end
    assert rate(plain, 0) == pytest.approx(0.01, rel=1e-6)
    assert rate(warm, 15 + 12) == pytest.approx(0.01 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 12 / 25))),
                                                rel=1e-5)


def test_targets_carry_the_rating_of_the_next_item_and_its_weight():
    rated = Sequences.from_lists([[10, 11, 12], [3, 4]], ratings=[[5, 1, 4], [2, 5]])
    inputs, targets, ratings, _ = window_examples(rated, max_len=4, rng=np.random.default_rng(0))
    used = inputs > 0
    assert dict(zip(targets[used][:, 0].tolist(), ratings[used].tolist())) == {11: 1, 12: 4, 4: 5}
    assert not ratings[~used].any()
    cut_inputs, cut_targets, cut_ratings, _ = cut_examples(rated, max_len=3, rng=np.random.default_rng(0))
    assert cut_ratings[1] == 5 and cut_targets[1, 0] == 4  # user 1 has one cut: 3 -> 4 (5 stars)
    assert rating_weights(np.array([1, 2, 3, 4, 5]), 0.0).tolist() == [1, 1, 1, 1, 1]
    assert rating_weights(np.array([1, 2, 3, 4, 5]), 1.0).tolist() == [0, 0.5, 1, 1.5, 2]
    assert rating_weights(np.array([1, 5]), 3.0).tolist() == [0, 4]  # clipped at 0
    plain = TrainingBatches(rated, TrainConfig(max_len=4, batch_size=2, **SAMPLER_ALONE), seed=0)
    weighted = TrainingBatches(rated, TrainConfig(max_len=4, batch_size=2, rating_weight=1.0, **SAMPLER_ALONE),
                               seed=0)
    assert len(plain[0]) == 2 and len(weighted[0]) == 3
    batch_inputs, batch_targets, batch_weights = weighted[0]
    used = batch_inputs > 0
    by_target = {11: 0.0, 12: 1.5, 4: 2.0}  # 1, 4 and 5 stars
    assert [by_target[t] for t in batch_targets[used][:, 0].tolist()] == batch_weights[used].tolist()


def test_window_offsets_change_between_epochs():
    rng = np.random.default_rng(0)
    shapes = {window_examples(USERS, 4, rng)[0].tobytes() for _ in range(10)}
    assert len(shapes) > 1


def test_paper_cut_predicts_the_item_after_the_input():
    rng = np.random.default_rng(1)
    for _ in range(20):
        inputs, targets, *_ = cut_examples(USERS, max_len=3, rng=rng)
        assert inputs.shape == (3, 3)
        last = inputs[0][inputs[0] > 0][-1] - 1
        assert targets[0, 0] == last + 1 and 10 <= last < 16  # user 0 is 10, 11, ... 16
        assert inputs[1].tolist() == [0, 0, 4] and targets[1, 0] == 4


@pytest.mark.parametrize("seed", range(5))
def test_authors_sampler_draws_distinct_cuts_of_every_user(seed):
    users = Sequences.from_lists([list(range(10, 20)), [3, 4, 5], [6, 7], [8]])  # 8, 1, 0 and 0 cuts allowed
    inputs, targets, *_ = user_cut_examples(users, max_len=4, rng=np.random.default_rng(seed),
                                            cuts_per_user=3)
    assert inputs.shape == (4, 4) and targets.shape == (4, 1)
    by_target = {}
    for row_inputs, (target,) in zip(inputs.tolist(), targets.tolist()):
        history = [item - 1 for item in row_inputs if item > 0]
        assert len(history) >= 2 and history == list(range(target - len(history), target))  # the items just before
        by_target[target] = history
    assert len(by_target) == 4 and 5 in by_target  # 3 distinct cuts of user 0, the only one of user 1
    assert sum(12 <= t <= 19 for t in by_target) == 3 and by_target[5] == [3, 4]
    # a masked target is never drawn: user 0 keeps only the cuts at items 15 and 19
    ok = np.ones(len(users.items), dtype=bool)
    ok[[2, 3, 4, 6, 7, 8, 12]] = False  # items 12, 13, 14, 16, 17, 18 of user 0 and item 5 of user 1
    _, masked_targets, *_ = user_cut_examples(users, 4, np.random.default_rng(seed), 3, target_ok=ok)
    assert sorted(masked_targets[:, 0].tolist()) == [15, 19]


def test_authors_sampler_batches_cover_every_user(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(max_len=8, batch_size=16, regime="paper", cuts_per_user=4)
    batches = TrainingBatches(split.train, config, seed=0)
    assert batches.n_examples == int(np.minimum(np.maximum(split.train.lengths - 2, 0), 4).sum())
    assert len(batches) == batches.n_examples // 16
    for _ in range(3):
        assert all(len(batches[i][0]) == 16 for i in range(len(batches)))
        batches.on_epoch_end()
    with pytest.raises(ValueError, match="cuts_per_user"):
        TrainConfig(regime="paper", cuts_per_user=-1)
    with pytest.raises(ValueError, match="cuts_per_user is for regime=paper only"):
        TrainConfig(cuts_per_user=16)


def test_batches_have_a_fixed_epoch_length(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    batches = TrainingBatches(split.train, TrainConfig(max_len=8, batch_size=16, **SAMPLER_ALONE), seed=0)
    lengths = set()
    for _ in range(5):
        assert all(len(batches[i][0]) > 0 for i in range(len(batches)))
        lengths.add(len(batches))
        batches.on_epoch_end()
    assert lengths == {len(batches)} and batches.tokens_per_epoch > 0


@pytest.mark.parametrize("config", [TrainConfig(max_len=8, batch_size=16, **SAMPLER_ALONE),
                                    TrainConfig(max_len=8, batch_size=16, regime="paper", rating_weight=1.0,
                                                rating_input=True)],
                         ids=["windows", "cuts-with-ratings-and-weights"])
def test_epoch_feed_gives_each_epoch_the_batches_it_drew(synthetic_split_dir, config):
    split = load_split(synthetic_split_dir)
    batches = TrainingBatches(split.train, config, seed=0)
    feed = EpochFeed(batches)
    dataset = feed.dataset()
    assert int(dataset.cardinality()) == len(batches)
    for epoch in range(3):
        feed.on_epoch_begin(epoch)
        fed = list(dataset)
        assert len(fed) == len(batches)
        for index in (0, len(batches) // 2, len(batches) - 1):  # the last batch may be partial
            expected, got = keras.tree.flatten(batches[index]), keras.tree.flatten(fed[index])
            assert len(expected) == len(got) == (4 if config.rating_input else 2)
            for array, tensor in zip(expected, got):
                np.testing.assert_array_equal(np.asarray(tensor), array)


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="regime"):
        TrainConfig(regime="other")
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=1.0)


def test_scoring_model_shares_the_weights():
    steps = build_model(n_items=12, hidden=8, embedding=4, return_sequences=True)
    scorer = scoring_model(steps)
    x = np.array([[0, 0, 3, 5, 7]], dtype=np.int32)
    np.testing.assert_allclose(np.asarray(steps(x))[:, -1], np.asarray(scorer(x)), rtol=1e-5, atol=1e-6)


SMALL = dict(hidden=32, embedding=16, max_len=10, batch_size=16, epochs=4, lr=0.01, patience=2)


@pytest.mark.slow
@pytest.mark.parametrize("regime,rating_weight,cuts_per_user",
                         [("all_steps", 0.0, 0), ("paper", 0.0, 0), ("paper", 0.0, 4), ("all_steps", 1.0, 0)])
def test_fit_learns_synthetic_order_and_keeps_best_epoch(synthetic_split_dir, tmp_path, regime, rating_weight,
                                                        cuts_per_user):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(**{**SMALL, "epochs": 6 if regime == "paper" else 4}, regime=regime,
                         rating_weight=rating_weight, cuts_per_user=cuts_per_user)
    result = fit(split, config, verbose=0)
    curve = result.history["val_sps_at_10"]
    assert result.best_epoch == int(np.argmax(curve)) + 1
    assert not network_of(result.model).get_layer("rnn").return_sequences  # all_steps: the default blend
    val = evaluate_users(result.model, split.val, 10)
    assert val["sps@10"] == pytest.approx(max(curve))  # the restored weights are the best epoch's
    assert val["sps@10"] > 0.5  # chance is 10/40 at best; the synthetic walks are learnable
    # each half's curve, pooled, is the whole validation curve; the held-out pick scores the other half's epoch
    in_a = validation_halves(len(split.val))
    half_a, half_b = (np.asarray(result.history[f"half_{half}_sps_at_10"]) for half in "ab")
    np.testing.assert_allclose((in_a.sum() * half_a + (~in_a).sum() * half_b) / len(split.val), curve, atol=1e-9)
    assert result.held_out == {"sps@10": pytest.approx(held_out_pick(half_a, half_b, in_a.sum(), (~in_a).sum()))}


@pytest.mark.slow
def test_sasrec_learns_with_warmup_and_label_smoothing_over_unseen_items(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(**{**SMALL, "epochs": 5}, model="sasrec", tied_output=True, exclude_seen=True,
                         lr_warmup_epochs=1, label_smoothing=0.1)
    result = fit(split, config, verbose=0)
    losses = result.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]  # -1e9 logits stay out of the smoothing
    assert max(result.history["val_sps_at_10"]) > 0.5


@pytest.mark.slow
def test_seeded_fit_is_reproducible(synthetic_split_dir, tmp_path):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(**{**SMALL, "epochs": 2})
    first = fit(split, config, verbose=0)
    second = fit(split, config, verbose=0)
    np.testing.assert_allclose(first.history["loss"], second.history["loss"], rtol=1e-6)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batches_redraw_same_second_order_every_epoch():
    users = Sequences.from_lists([[1, 2, 3, 4, 5, 6]])
    ties = TieOrder(np.array([0, 1, 1, 1, 1, 2]))  # items 2..5 were rated in the same second
    batches = TrainingBatches(users, TrainConfig(max_len=4, batch_size=4, **SAMPLER_ALONE), seed=0, ties=ties)
    orders = set()
    for _ in range(10):
        used = batches.inputs > 0
        following = dict(zip((batches.inputs[used] - 1).tolist(), batches.targets[used][:, 0].tolist()))
        assert following[1] in {2, 3, 4, 5} and 6 in following.values() and len(following) == 5
        orders.add(tuple(sorted(following.items())))
        batches.on_epoch_end()
    assert len(orders) > 2


def test_imputed_interactions_stay_inputs_but_are_never_targets():
    users = Sequences.from_lists([[10, 11, 12, 13], [3, 4]])
    timestamps = np.array([5, -1, 7, 7, 2, 3])  # item 11 has an unknown time: its position was imputed
    target_ok = imputed_target_mask(timestamps, "mask")
    assert target_ok.tolist() == [True, False, True, True, True, True]
    assert imputed_target_mask(timestamps, "keep") is None
    assert imputed_target_mask(np.array([1, 2]), "mask") is None and imputed_target_mask(None, "mask") is None
    with pytest.raises(ValueError, match="imputed_targets"):
        imputed_target_mask(timestamps, "drop")
    inputs, targets, *_ = window_examples(users, max_len=5, rng=np.random.default_rng(0), lookahead=2,
                                         target_ok=target_ok)
    used = inputs > 0
    following = dict(zip((inputs[used] - 1).tolist(), targets[used].tolist()))
    assert following == {10: [-1, 12], 11: [12, 13], 12: [13, -1], 3: [4, -1]}  # 11 is read, never predicted
    rng = np.random.default_rng(0)
    cut_targets = np.concatenate([cut_examples(users, 3, rng, target_ok=target_ok)[1][:, 0] for _ in range(50)])
    assert 11 not in cut_targets and {12, 13, 4} <= set(cut_targets.tolist())


def test_target_mask_moves_with_the_same_second_order():
    users = Sequences.from_lists([[1, 2, 3, 4, 5]])
    ties = TieOrder(np.array([0, 1, 1, 1, 2]))  # items 2, 3 and 4 share a second
    target_ok = np.array([True, True, False, True, True])  # item 3 may not be a target
    batches = TrainingBatches(users, TrainConfig(max_len=5, batch_size=4, lookahead=1, **SAMPLER_ALONE), seed=0, ties=ties,
                              target_ok=target_ok)
    orders = set()
    for _ in range(12):
        inputs, targets = batches[0]
        used = inputs > 0
        read, predicted = (inputs[used] - 1).tolist(), targets[used][:, 0].tolist()
        assert sorted(read) == [1, 2, 3, 4] and 3 not in predicted and predicted.count(-1) == 1
        before_three = read[predicted.index(-1)]  # the item read just before 3 this epoch
        orders.add(before_three)
        batches.on_epoch_end()
    assert len(orders) > 2


def test_rating_inputs_follow_their_items_through_windows_cuts_and_ties():
    items = [list(range(1, 13)), [20, 21, 22]]
    rated = Sequences.from_lists(items, ratings=[[i % 5 + 1 for i in seq] for seq in items])
    known = np.ones(len(rated.items), dtype=bool)
    known[3] = False  # item 4's rating is unknown (imputed in the authors' training file)
    ties = TieOrder(np.array([0, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]))
    for regime in ("all_steps", "paper"):
        config = TrainConfig(max_len=4, batch_size=64, regime=regime, rating_input=True)
        batches = TrainingBatches(rated, config, seed=0, ties=ties, rating_known=known)
        for _ in range(5):
            inputs, _ = batches[0]
            items_in, ratings_in = inputs["items"], inputs["ratings"]
            assert items_in.shape == ratings_in.shape
            expected = np.where(items_in > 0, (items_in - 1) % 5 + 1, 0)
            expected[items_in == 4 + 1] = 0  # unknown rating: token 0
            np.testing.assert_array_equal(ratings_in, expected)
            batches.on_epoch_end()
    plain, _ = TrainingBatches(rated, TrainConfig(max_len=4, **SAMPLER_ALONE), seed=0)[0]
    assert isinstance(plain, np.ndarray)  # a model without the rating input gets the item matrix alone


def test_rating_dropout_feeds_that_share_of_the_known_stars_as_unknown_anew_every_epoch():
    rng = np.random.default_rng(0)
    items = [rng.permutation(200)[:60].tolist() for _ in range(100)]
    rated = Sequences.from_lists(items, ratings=[rng.integers(1, 6, 60).tolist() for _ in items])
    config = TrainConfig(max_len=20, batch_size=10_000, rating_input=True, tie_order="file")
    plain = TrainingBatches(rated, config, seed=3)
    dropping = TrainingBatches(rated, replace(config, rating_dropout=0.3), seed=3)
    dropped = []
    for _ in range(2):
        (inputs, targets), (kept, kept_targets) = dropping[0], plain[0]
        np.testing.assert_array_equal(inputs["items"], kept["items"])  # the same windows and targets: only stars go
        np.testing.assert_array_equal(targets, kept_targets)
        held = inputs["items"] > 0
        stars, kept_stars = inputs["ratings"][held], kept["ratings"][held]
        assert np.all((stars == kept_stars) | (stars == 0))
        dropped.append(stars == 0)
        assert dropped[-1].mean() == pytest.approx(0.3, abs=0.02)
        dropping.on_epoch_end()
        plain.on_epoch_end()
    assert not np.array_equal(dropped[0], dropped[1])  # drawn anew each epoch


@pytest.mark.slow
def test_rating_input_model_learns_what_only_the_ratings_tell(tmp_path):
    """The next item is +1 after a liked (5) item and +5 after a disliked (1) one: without the rating
    the net can only guess between the two, with it it knows."""
    from seqrec.core.data import Split

    rng = np.random.default_rng(0)

    def users(n):
        sequences, ratings = [], []
        for _ in range(n):
            liked = rng.random(15) < 0.5
            steps = np.where(liked, 1, 5)
            sequences.append(((rng.integers(0, 30) + np.concatenate([[0], np.cumsum(steps[:-1])])) % 30).tolist())
            ratings.append(np.where(liked, 5, 1).tolist())
        return Sequences.from_lists(sequences, ratings=ratings)

    split = Split(tmp_path, users(300), users(100), users(100), 30, None)
    config = TrainConfig(hidden=32, embedding=16, max_len=8, batch_size=32, epochs=8, lr=0.01, patience=8,
                         lookahead=1, k=1, tie_order="file")
    with_ratings = fit(split, replace(config, rating_input=True), verbose=0)
    without = fit(split, config, verbose=0)
    assert with_ratings.model.input_shape != without.model.input_shape
    assert max(with_ratings.history["val_sps_at_1"]) > 0.8
    assert max(without.history["val_sps_at_1"]) < 0.65  # a coin flip between +1 and +5, at best
    saved = tmp_path / "rated.keras"
    with_ratings.model.save(saved)
    reloaded = keras.models.load_model(saved, compile=False)
    assert evaluate_users(reloaded, split.test, 1)["sps@1"] == pytest.approx(
        evaluate_users(with_ratings.model, split.test, 1)["sps@1"])


# two logical CPU devices stand in for two GPUs: TensorFlow must be told before it starts, so in a new process
DEVICES_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from seqrec.core.config import TrainConfig
from seqrec.core.ensemble import network_of
from seqrec.core.data import load_split
from seqrec.core.scoring import evaluate_users
from seqrec.core.training import fit
split = load_split(Path(sys.argv[1]))
config = TrainConfig(hidden=32, embedding=16, max_len=10, batch_size=8, epochs=4, lr=0.005, patience=2,
                     distribute=sys.argv[2], precision=sys.argv[3])
result = fit(split, config, verbose=0)
print(json.dumps({"replicas": result.replicas, "loss": result.history["loss"], "dtype": result.model.dtype_policy.name,
                  "val": evaluate_users(result.model, split.val, 10)["sps@10"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("distribute,precision,replicas", [("mirrored", "float32", 2),
                                                           ("none", "mixed_bfloat16", 1)])
def test_data_parallel_and_mixed_precision_fits_learn_and_score_in_float32(synthetic_split_dir, distribute,
                                                                            precision, replicas):
    done = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT, str(synthetic_split_dir), distribute, precision],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == replicas and result["dtype"] == "float32"  # the saved scorer is float32
    assert result["loss"][-1] < result["loss"][0] and result["val"] > 0.5


@pytest.mark.parametrize("skip_padding", [False, True])
def test_excluding_seen_items_masks_exactly_what_the_user_read_up_to_each_cell(skip_padding):
    """Windows of 3 cut the users' histories, so the items read before a window come from the packed input and
    those inside it from the window; a repeated item (user 0 reads 10 twice) is never a target."""
    from seqrec.core.models.common import SeenItems
    from seqrec.core.sampling import first_occurrences, items_before
    users = Sequences.from_lists([[10, 11, 12, 13, 10, 14, 15, 16], [3, 4, 5, 6, 7], [8, 9]])
    n_items = 17
    ok = first_occurrences(users)
    assert ok.tolist() == [True] * 4 + [False] + [True] * 10
    inputs, targets, _, sources = window_examples(users, 3, np.random.default_rng(1), target_ok=ok)
    assert 10 not in targets[targets >= 0]  # its second reading is a repeat
    seen_before = items_before(users, sources, n_items)
    logits = np.zeros((*inputs.shape, n_items), dtype=np.float32)
    held = inputs > 0
    if skip_padding:
        logits = logits[held]
    masked = np.asarray(SeenItems()([logits, inputs, seen_before]))
    expected = np.zeros((*inputs.shape, n_items), dtype=bool)
    for window, column in zip(*np.nonzero(held)):
        source = sources[window, column]
        start = users.offsets[np.searchsorted(users.offsets, source, side="right") - 1]
        expected[window, column, users.items[start:source + 1]] = True
    expected = expected[held]  # a padded cell carries no loss, whatever its logits
    if not skip_padding:
        masked = masked[held]
    assert np.array_equal(masked < -1e8, expected)
    assert np.all(masked[~expected] == 0.0)


def test_a_model_trained_with_exclude_seen_learns_and_scores_from_the_items_alone(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(epochs=3, exclude_seen=True, hidden=32, embedding=16, dropout=0.1, max_len=8,
                         batch_size=16, lr=0.01, k=5, tie_order="file", patience=20)
    result = fit(split, config, verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert [tensor.name for tensor in result.model.inputs] == ["items"]
    popularity = np.tile(split.item_popularity.astype(np.float32), (len(split.val), 1))
    assert max(result.history["val_sps_at_5"]) > evaluate_scores(popularity, split.val, 5)["sps@5"] + 0.2
    with pytest.raises(ValueError, match="exclude_seen is for regime=all_steps only"):
        TrainConfig(regime="paper", exclude_seen=True)


def test_the_seen_items_leave_a_16_bit_model_s_logits_in_float32():
    """-1e9 is past float16's range: the layer computes in float32 whatever the dtype policy."""
    from seqrec.core.model import dtype_policy
    from seqrec.core.sampling import items_before
    users = Sequences.from_lists([[1, 2, 3, 4, 5, 6], [7, 8]])
    inputs, _, _, sources = window_examples(users, 4, np.random.default_rng(0))
    with dtype_policy("mixed_float16"):
        model = build_model(9, hidden=8, embedding=8, return_sequences=True, skip_padding=True, exclude_seen=True)
    logits = model({"items": inputs, "seen": items_before(users, sources, 9)})
    assert logits.dtype == "float32" and np.all(np.isfinite(logits))
    # the cells are the items but each user's last, and each cell leaves out the items read so far
    assert np.sum(np.asarray(logits) < -1e8) == sum(range(1, 6)) + 1


def test_weight_decay_shrinks_weights_and_tables_but_not_biases_or_norms():
    """AdamW's decay is decoupled from the gradient: with a zero gradient a weight still shrinks by lr x decay of
    itself, and a bias or a layer norm's scale keeps its value."""
    from seqrec.core.training import optimizer
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(5, 4),
                              keras.layers.LayerNormalization(), keras.layers.Dense(2)])
    for variable in model.trainable_variables:
        variable.assign(np.ones(variable.shape, dtype="float32"))
    step = optimizer(0.1, weight_decay=0.5)
    assert isinstance(step, keras.optimizers.AdamW)
    step.apply_gradients([(np.zeros(variable.shape, "float32"), variable) for variable in model.trainable_variables])
    after = {variable.path.split("/")[-1]: np.asarray(variable) for variable in model.trainable_variables}
    assert after["embeddings"] == pytest.approx(0.95) and after["kernel"] == pytest.approx(0.95)
    assert after["bias"] == pytest.approx(1.0) and after["gamma"] == pytest.approx(1.0)
    assert type(optimizer(0.1, weight_decay=0.0)) is keras.optimizers.Adam  # 0: plain Adam, as before
    with pytest.raises(ValueError, match="weight_decay must be 0"):
        TrainConfig(weight_decay=-0.1)


class TrainedAndAveraged(keras.callbacks.Callback):
    """What a user's callback sees at each epoch's end: the model's weights, and the optimizer's average."""

    def __init__(self):
        super().__init__()
        self.trained, self.averaged = [], []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        averages = getattr(self.model.optimizer, "_model_variables_moving_average", [])  # only with use_ema
        self.trained.append([keras.ops.convert_to_numpy(variable) for variable in self.model.trainable_variables])
        self.averaged.append([keras.ops.convert_to_numpy(variable) for variable in averages])


@pytest.mark.slow
def test_the_weight_average_is_validated_and_kept_and_leaves_the_descent_alone(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    config = TrainConfig(**{**SMALL, "epochs": 3, "patience": 3}, slist_weight=0.0)  # the network is what is kept
    plain_seen, averaged_seen = TrainedAndAveraged(), TrainedAndAveraged()
    fit(split, config, callbacks=[plain_seen], verbose=0)
    averaged = fit(split, replace(config, ema_momentum=0.9), callbacks=[averaged_seen], verbose=0)
    # the average is swapped in for validation and back before anything else: training goes on as without it
    for plain_epoch, averaged_epoch in zip(plain_seen.trained, averaged_seen.trained, strict=True):
        for a, b in zip(plain_epoch, averaged_epoch, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(a, b) for a, b in zip(averaged_seen.trained[-1], averaged_seen.averaged[-1]))
    # each epoch's validation figure is its average's, and the model kept is the best epoch's average
    network = averaged_seen.model
    for epoch, average in enumerate(averaged_seen.averaged):
        for variable, value in zip(network.trainable_variables, average, strict=True):
            variable.assign(value)
        scored = evaluate_users(scoring_model(network), split.val, 10)
        assert scored["recall@10"] == pytest.approx(averaged.history["val_recall_at_10"][epoch])
        assert scored["sps@10"] == pytest.approx(averaged.history["val_sps_at_10"][epoch])
        if epoch == averaged.best_epoch - 1:
            for kept, value in zip(averaged.model.get_weights(), scoring_model(network).get_weights(), strict=True):
                np.testing.assert_allclose(kept, value, rtol=1e-6)
    with pytest.raises(ValueError, match=r"ema_momentum must be in \[0, 1\)"):
        TrainConfig(ema_momentum=1.0)
