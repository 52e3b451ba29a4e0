"""The model zoo and the sampled losses: every model and loss trains in the same loop, learns a synthetic order
better than popularity, and its saved scoring model stands alone (same scores after a reload)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqrec.core.config import LOSSES, MODELS, TrainConfig
from seqrec.core.data import Sequences, load_split, split_half
from seqrec.core.ensemble import network_of
from seqrec.core.losses import PADDED_TARGET, SampledRankingLoss
from seqrec.core.model import BUILDERS, NextItemsCrossentropy, build_model, keras, model_config, scoring_model
from seqrec.core.scoring import ensemble_scores, evaluate_scores, score_users, softmax
from seqrec.core.training import fit

TINY = dict(hidden=32, embedding=16, dropout=0.1, max_len=8, batch_size=16, lr=0.01, k=5, tie_order="file",
            patience=20)


def popularity_sps(split) -> float:
    """sps@5 of ranking every validation user's items by training popularity."""
    scores = np.tile(split.item_popularity.astype(np.float32), (len(split.val), 1))
    return evaluate_scores(scores, split.val, 5)["sps@5"]


def test_the_registry_builds_every_model_the_config_accepts():
    assert tuple(BUILDERS) == MODELS


@pytest.mark.parametrize("model, loss, epochs, cell", [
    ("rnn", "cce", 3, "gru"), ("rnn", "cce", 3, "lstm"), ("sasrec", "cce", 5, "gru"), ("cnn", "cce", 3, "gru"),
    ("pooling", "cce", 4, "gru"), ("mingru", "cce", 3, "gru"), ("rnn", "pointwise", 4, "gru"),
    ("rnn", "bpr", 4, "gru"), ("rnn", "hinge", 4, "gru"), ("rnn", "adaptive_hinge", 4, "gru")])
def test_every_model_and_loss_learns_the_synthetic_order_better_than_popularity(synthetic_split_dir, model, loss,
                                                                                 epochs, cell):
    """Spotlight's LSTM representation is the RNN with ``cell="lstm"``; the cell is ignored by the other models."""
    split = load_split(synthetic_split_dir)
    result = fit(split, TrainConfig(model=model, loss=loss, epochs=epochs, cell=cell, **TINY), verbose=0)
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert max(result.history["val_sps_at_5"]) > popularity_sps(split) + 0.2


@pytest.mark.parametrize("model", ["sasrec", "rnn"])
def test_tied_output_models_learn_the_synthetic_order_better_than_popularity(synthetic_split_dir, model):
    """The shared item table (``tied_output``) trains in the same loop; the RNN needs projection = embedding."""
    split = load_split(synthetic_split_dir)
    config = TrainConfig(model=model, epochs=5, tied_output=True, projection=16 if model == "rnn" else 0, **TINY)
    result = fit(split, config, verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert max(result.history["val_sps_at_5"]) > popularity_sps(split) + 0.2
    assert model_config(network_of(result.model))["tied_output"]  # the GRU is served in its default blend


def test_tied_logits_are_the_dot_products_with_the_item_embedding_plus_a_bias():
    """One item table: the logit of item j is features . embedding[j + 1] + bias[j] (row 0 is padding), and the
    model has no output kernel of its own."""
    tied = build_model(12, 8, 4, 0.0, model="pooling", tied_output=True)
    table = np.asarray(tied.get_layer("item_embedding").embeddings)
    bias = np.random.default_rng(0).normal(size=12).astype(np.float32)
    tied.get_layer("logits").set_weights([bias])
    logits = np.asarray(tied(np.array([[0, 0, 3]], dtype=np.int32)))
    np.testing.assert_allclose(logits[0], table[1:] @ table[3] + bias, rtol=1e-5, atol=1e-5)
    untied = build_model(12, 8, 4, 0.0, model="pooling")
    assert untied.count_params() - tied.count_params() == 12 * 4


def test_a_tied_model_trained_in_16_bits_scores_in_float32_with_the_same_weights():
    from seqrec.core.model import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        steps = build_model(20, 16, 8, 0.0, model="sasrec", max_len=6, return_sequences=True, tied_output=True)
    batch = np.array([[0, 0, 3, 4, 5, 6]], dtype=np.int32)
    assert steps(batch).dtype == "float32"
    scorer = scoring_model(steps)
    assert scorer.dtype_policy.name == "float32" and model_config(scorer)["tied_output"]
    np.testing.assert_allclose(np.asarray(scorer(batch)), np.asarray(steps(batch))[:, -1], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("model, tied", [(model, False) for model in MODELS] + [("sasrec", True), ("pooling", True)])
def test_saved_scoring_model_gives_the_same_scores_and_config(synthetic_split_dir, tmp_path, model, tied):
    split = load_split(synthetic_split_dir)
    steps = build_model(split.n_items, 16, 8, 0.1, model=model, max_len=6, blocks=2, heads=2,
                        return_sequences=True, tied_output=tied)
    scorer = scoring_model(steps)
    path = tmp_path / "model.keras"
    scorer.save(path)
    loaded = keras.models.load_model(path)
    inputs = split_half(split.test)[0]
    np.testing.assert_allclose(score_users(loaded, inputs), score_users(scorer, inputs), rtol=1e-5, atol=1e-5)
    assert model_config(loaded) == model_config(steps)
    assert model_config(loaded)["model"] == model and model_config(loaded)["tied_output"] == tied


def test_item_dropout_reads_whole_items_of_a_training_window_as_empty_vectors_and_scoring_reads_them_all():
    """``item_dropout``: in training each (window, step) item is either kept, scaled as Keras' dropout scales, or
    zero in every coordinate; the scoring model has no such layer and gives the training model's inference scores."""
    steps = build_model(40, 8, 8, 0.0, model="sasrec", max_len=8, return_sequences=True, item_dropout=0.5)
    items = (np.arange(64, dtype=np.int32).reshape(8, 8) % 39) + 1
    embedded = keras.Model(steps.inputs, steps.get_layer("item_dropout").output)
    table = np.asarray(steps.get_layer("item_embedding")(items))
    dropped = np.asarray(embedded(items, training=True))
    empty = np.all(dropped == 0, axis=-1)
    assert 0.2 < empty.mean() < 0.8  # 64 draws at 0.5
    np.testing.assert_allclose(dropped[~empty], table[~empty] / 0.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(embedded(items, training=False)), table)
    scorer = scoring_model(steps)
    assert "item_dropout" not in {layer.name for layer in scorer.layers}
    np.testing.assert_allclose(np.asarray(scorer(items)), np.asarray(steps(items))[:, -1], rtol=1e-5, atol=1e-5)


def test_the_star_cut_off_scores_short_histories_without_stars_and_trains_on_every_star(tmp_path):
    """``rating_min_history=3``: a 2-item history scores as if its stars were unknown, a 3-item one with its stars,
    after a save and reload too; the training model reads every star (the same outputs as without the cut-off)."""
    def network(min_history: int) -> keras.Model:
        return build_model(20, 8, 4, 0.0, model="sasrec", max_len=6, return_sequences=True, rating_input=True,
                           rating_min_history=min_history)

    cut, plain = network(3), network(0)
    plain.set_weights(cut.get_weights())
    items = np.array([[0, 0, 0, 0, 3, 4], [0, 0, 0, 5, 6, 7]], dtype=np.int32)
    stars = np.array([[0, 0, 0, 0, 5, 1], [0, 0, 0, 2, 4, 5]], dtype=np.int32)
    unknown = np.zeros_like(stars)
    np.testing.assert_allclose(np.asarray(cut({"items": items, "ratings": stars}, training=True)),
                               np.asarray(plain({"items": items, "ratings": stars}, training=True)), atol=1e-6)
    path = tmp_path / "cut.keras"
    scoring_model(cut).save(path)
    loaded = keras.models.load_model(path)
    assert model_config(loaded)["rating_min_history"] == 3 and model_config(plain)["rating_min_history"] == 0
    scores = np.asarray(loaded({"items": items, "ratings": stars}))
    with_stars = np.asarray(scoring_model(plain)({"items": items, "ratings": stars}))
    without = np.asarray(scoring_model(plain)({"items": items, "ratings": unknown}))
    assert not np.allclose(with_stars[0], without[0], atol=1e-4)  # the stars do change this history's scores
    np.testing.assert_allclose(scores[0], without[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores[1], with_stars[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model, tied", [(model, False) for model in MODELS] + [("sasrec", True)])
def test_skipping_the_padded_steps_gives_the_mean_loss_over_the_cells_holding_an_item(model, tied):
    """Training computes the logits of the window cells holding an item only: the loss is the mean over those
    cells of what the model with every step computes (for every model, masked or not), and the scores are the
    same rows."""
    every_step = build_model(20, 8, 4, 0.0, model=model, max_len=5, return_sequences=True, tied_output=tied)
    skipping = build_model(20, 8, 4, 0.0, model=model, max_len=5, return_sequences=True, skip_padding=True,
                           tied_output=tied)
    skipping.set_weights(every_step.get_weights())
    items = np.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]], dtype=np.int32)
    targets = np.full((2, 5, 2), PADDED_TARGET, dtype=np.int32)
    targets[0, 2:], targets[1], targets[1, 4] = [3, 4], [1, 2], [-1, -1]  # the last cell: an item, no target
    loss = NextItemsCrossentropy(0.5)
    per_cell = np.asarray(loss.call(targets, every_step(items)))
    np.testing.assert_allclose(np.asarray(skipping(items)), np.asarray(every_step(items))[items > 0],
                               rtol=1e-5, atol=1e-5)
    assert float(loss(targets, skipping(items))) == pytest.approx(per_cell[items > 0].mean(), rel=1e-5)
    assert model_config(skipping) == model_config(every_step)


def test_the_min_gru_scan_is_the_step_by_step_recurrence_and_padding_leaves_the_state_alone():
    """minGRU computes its gates for every step at once; it must equal h_t = (1 - z) h_{t-1} + z c stepped in
    order from h_0 = 0, with the left padding skipped, for a long history too."""
    from seqrec.core.models.mingru import MinGRU

    rng = np.random.default_rng(0)
    layer = MinGRU(6)
    inputs = rng.normal(size=(2, 300, 4)).astype(np.float32)
    present = np.ones((2, 300), dtype=bool)
    present[0, :290] = False  # the first user's history: 10 items, left-padded
    states = np.asarray(layer(inputs, mask=present))
    kernel_z, bias_z, kernel_h, bias_h = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
    expected = np.zeros((2, 300, 6))
    for user in range(2):
        state = np.zeros(6)
        for step in range(300):
            if present[user, step]:
                gate = 1 / (1 + np.exp(-(inputs[user, step] @ kernel_z + bias_z)))
                candidate = inputs[user, step] @ kernel_h + bias_h
                state = (1 - gate) * state + gate * candidate
            expected[user, step] = state
    np.testing.assert_allclose(states, expected, rtol=1e-4, atol=1e-5)
    assert np.all(states[0, :290] == 0.0)


def test_a_min_gru_reads_back_its_width_and_blocks_and_scores_any_history_length():
    """The scoring model is rebuilt from ``model_config``: it must find the minGRU's units and block count; like
    the RNN, minGRU has no window, so the items before the latest ``max_len`` still move the scores."""
    steps = build_model(30, 12, 8, 0.0, model="mingru", max_len=5, blocks=3, return_sequences=True)
    config = model_config(steps)
    assert (config["model"], config["hidden"], config["blocks"]) == ("mingru", 12, 3)
    scorer = scoring_model(steps)
    long = np.random.default_rng(0).integers(0, 30, size=12)
    scores = score_users(scorer, Sequences.from_lists([long.tolist(), long[-5:].tolist()], [0, 1]))
    assert not np.allclose(scores[0], scores[1], atol=1e-4)


@pytest.mark.parametrize("model", ["sasrec", "cnn"])
def test_windowed_models_read_only_the_latest_max_len_items(model):
    """A history longer than max_len scores as its latest max_len items: the position table has max_len rows."""
    scorer = scoring_model(build_model(30, 16, 8, 0.0, model=model, max_len=5, return_sequences=True))
    rng = np.random.default_rng(0)
    long = rng.integers(0, 30, size=12)
    histories = Sequences.from_lists([long.tolist(), long[-5:].tolist()], [0, 1])
    scores = score_users(scorer, histories)
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-5)


SIZE_ONE_SOFTMAX = """
import warnings
import numpy as np
from seqrec.core.model import keras
with warnings.catch_warnings(record=True) as caught:
    assert np.allclose(np.asarray(keras.ops.softmax(keras.ops.ones((1, 1, 1, 1)), axis=3)), 1.0)
    warnings.warn("another warning", UserWarning)
print([str(w.message) for w in caught])
"""


def test_keras_size_one_softmax_warning_is_silenced_and_other_warnings_are_not():
    """A one-movie history is attention over one key, a softmax of size 1: right, and not worth a UserWarning on
    every served request (the pyfunc's warm-up traces exactly that). Other warnings still show. In a fresh
    interpreter, as a user's process imports seqrec (pytest drops filters set while it collects)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run([sys.executable, "-c", SIZE_ONE_SOFTMAX], env=env, capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[-1]
    assert shown == "['another warning']"


def test_the_last_step_scores_the_same_as_the_step_model_at_the_last_position():
    """Scoring and training models share weights: the last row of the all-steps logits is the scoring logit."""
    steps = build_model(20, 16, 8, 0.0, model="sasrec", max_len=6, return_sequences=True)
    batch = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]], dtype=np.int32)
    np.testing.assert_allclose(np.asarray(scoring_model(steps)(batch))[:, :], np.asarray(steps(batch))[:, -1],
                               rtol=1e-5, atol=1e-5)


def test_an_ensemble_scores_the_mean_of_its_members_probabilities():
    """One member ranks as it does alone; two average their softmax probabilities; other catalogues are refused."""
    keras.utils.set_random_seed(0)
    first, second = (scoring_model(build_model(30, 16, 8, 0.0, model=name, max_len=5, return_sequences=True))
                     for name in ("rnn", "sasrec"))
    histories = Sequences.from_lists([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11]], [0, 1, 2])
    alone = score_users(first, histories)
    one = ensemble_scores([first], histories)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argsort(-one, axis=1)[:, :5], np.argsort(-alone, axis=1)[:, :5])
    both = ensemble_scores([first, second], histories)
    np.testing.assert_allclose(both, (softmax(alone) + softmax(score_users(second, histories))) / 2, rtol=1e-5,
                               atol=1e-7)
    assert not np.allclose(both, one, atol=1e-4)  # the second member moves the scores
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0, -1000.0]])), [[0.5, 0.5, 0.0]])  # no overflow
    other = scoring_model(build_model(40, 16, 8, 0.0, model="rnn", return_sequences=True))
    with pytest.raises(ValueError, match=r"one catalogue, got \[30, 40\] items"):
        ensemble_scores([first, other], histories)


@pytest.mark.parametrize("kind", [name for name in LOSSES if name != "cce"])
def test_sampled_losses_are_zero_weight_past_the_end_and_lower_when_the_target_scores_higher(kind):
    loss = SampledRankingLoss(kind, negatives=4, seed=0)
    logits = np.zeros((2, 10), dtype=np.float32)
    targets = np.array([[3, -1], [-1, -1]])
    better = logits.copy()
    better[0, 3] = 5.0
    assert float(loss(targets, better)) < float(loss(targets, logits))
    assert float(SampledRankingLoss(kind)(np.array([[-1]]), logits[:1])) == 0.0
    assert SampledRankingLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_config_refuses_an_unknown_model_or_loss():
    with pytest.raises(ValueError, match="model must be one of"):
        TrainConfig(model="bert")
    with pytest.raises(ValueError, match="output width to be embedding=128, got 256 .model=rnn.: set projection=128"):
        TrainConfig(tied_output=True)
    assert TrainConfig(tied_output=True, projection=128).tied_output and TrainConfig(model="sasrec", tied_output=True)
    with pytest.raises(ValueError, match="output width to be embedding=8, got 16"):
        build_model(20, 16, 8, tied_output=True)
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="warp")


def test_the_training_backup_keeps_the_state_of_the_negatives_draw():
    """A resumed fit draws the negatives an uninterrupted one would: the loss's seed state is backed up."""
    from seqrec.core.backup import _seed_states

    model = build_model(10, 8, 4, 0.1, return_sequences=True)
    loss = SampledRankingLoss("bpr", seed=3)
    model.compile(optimizer="adam", loss=loss)
    assert any(state is loss.seed_generator.state for state in _seed_states(model))


def test_new_user_curve_gives_the_first_n_items_and_ends_with_the_whole_input_half(synthetic_split_dir):
    """The recommender sees only the first n input items; the last point is the plain evaluation."""
    from seqrec.core.scoring import new_user_curve, new_user_metrics

    split = load_split(synthetic_split_dir)
    seen = []

    def next_after_last(given: Sequences) -> np.ndarray:
        """Scores the item after the latest given one highest: the synthetic users' order."""
        seen.append(given.lengths.copy())
        scores = np.zeros((len(given), split.n_items), dtype=np.float32)
        last = given.items[given.offsets[1:] - 1]
        scores[np.arange(len(given)), (last + 1) % split.n_items] = 1.0
        return scores

    curve = new_user_curve(next_after_last, split.test, k=5, counts=(1, 3))
    inputs = split_half(split.test)[0]
    np.testing.assert_array_equal(seen[0], np.minimum(inputs.lengths, 1))
    np.testing.assert_array_equal(seen[1], np.minimum(inputs.lengths, 3))
    np.testing.assert_array_equal(seen[2], inputs.lengths)
    assert list(curve["given"]) == [1, 3, 0]
    whole = evaluate_scores(next_after_last(inputs), split.test, 5)
    assert curve["sps"][-1] == pytest.approx(whole["sps@5"]) and curve["recall"][-1] == pytest.approx(whole["recall@5"])
    assert curve["sps"][-1] > curve["sps"][0]  # the first item alone does not tell where the user is now
    assert set(new_user_metrics(curve, 5)) == {"new_user_sps@5_given_1", "new_user_sps@5_given_3",
                                               "new_user_recall@5_given_1", "new_user_recall@5_given_3"}
