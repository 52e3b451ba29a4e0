"""Rating prediction: the seeded 90/10 split, the mean baselines, biased MF and the autoencoders, the command."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from seqrec.core.config import AUTOREC_LR
from seqrec.core.explicit import (AutoRec, BiasedMF, MaskedMSE, MeanPredictor, evaluate_predictor, held_out,
                                   random_split, rmse_mae)
from seqrec.core.models.common import keras
from seqrec.core.ratings import MAX_STARS, MIN_STARS, RatingsTable
from seqrec.experiment.cli import main


def low_rank_ratings(n_users: int = 120, n_items: int = 60, share: float = 0.5, seed: int = 0) -> RatingsTable:
    """Ratings from 2 user and item factors plus biases, rounded to 1..5 stars: learnable beyond the means."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    scores = 3.2 + users @ items.T + rng.normal(0, 0.3, size=(n_users, 1)) + rng.normal(0, 0.3, size=(1, n_items))
    user, movie = np.nonzero(rng.random((n_users, n_items)) < share)
    return RatingsTable(user=user + 1, movie=movie + 100, rating=np.clip(np.rint(scores[user, movie]), 1, 5)
                        .astype(np.float32), timestamp=np.arange(len(user), dtype=np.int64))


def write_ratings_dat(table: RatingsTable, path):
    """``table`` as a MovieLens ``ratings.dat`` (UserID::MovieID::Rating::Timestamp)."""
    path.write_text("".join(f"{u}::{m}::{int(r)}::{t}\n" for u, m, r, t in zip(table.user, table.movie, table.rating,
                                                                               table.timestamp)))
    return path


def test_the_split_is_seeded_disjoint_and_holds_out_the_share():
    table = low_rank_ratings()
    first, again, other = random_split(table, 0.1, 0), random_split(table, 0.1, 0), random_split(table, 0.1, 1)
    assert len(first.test_ratings) == round(0.1 * len(table)) and len(first.train_ratings) + len(
        first.test_ratings) == len(table)
    np.testing.assert_array_equal(first.test_users, again.test_users)
    assert not np.array_equal(first.test_users, other.test_users)
    train = set(zip(first.train_users.tolist(), first.train_items.tolist()))
    assert not train & set(zip(first.test_users.tolist(), first.test_items.tolist()))
    with pytest.raises(ValueError, match="test_share"):
        random_split(table, 1.0)


def test_means_and_an_unseen_user_fall_back_to_the_global_mean():
    table = RatingsTable(user=np.array([1, 1, 2, 3]), movie=np.array([5, 6, 5, 6]),
                         rating=np.array([4.0, 2.0, 5.0, 1.0], dtype=np.float32), timestamp=np.arange(4))
    split = random_split(table, 0.25, 0)
    user_mean = MeanPredictor("user").fit(split)
    assert user_mean.mean == pytest.approx(split.train_ratings.mean())
    unseen = np.setdiff1d(np.arange(split.n_users), split.train_users)
    assert user_mean.predict(unseen, np.zeros_like(unseen)) == pytest.approx(np.full(len(unseen), user_mean.mean))
    assert rmse_mae(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == {"rmse": pytest.approx(0.5 ** 0.5), "mae": 0.5}


@pytest.mark.parametrize("predictor", [
    BiasedMF(factors=4, epochs=30, lr=0.01, batch_size=64),
    AutoRec("item", layers=(16,), epochs=60, lr=0.01, batch_size=8),  # I-AutoRec's sigmoid, the default
    AutoRec("item", layers=(16,), dropout=0.1, epochs=60, lr=0.01, batch_size=8, activation="selu"),
    AutoRec("user", layers=(16,), dropout=0.1, epochs=60, lr=0.01, batch_size=8, tied=True, activation="selu"),
    AutoRec("item", layers=(16,), dropout=0.1, epochs=60, lr=0.01, batch_size=8, refeed=True, activation="selu"),
], ids=["biased_mf", "item_autorec", "item_autorec_selu", "user_autorec_tied_selu", "item_autorec_refeeding_selu"])
def test_learned_predictors_beat_the_global_mean_on_low_rank_ratings(predictor):
    split = random_split(low_rank_ratings(), 0.1, 0)
    baseline = evaluate_predictor(MeanPredictor().fit(split), split)["rmse"]
    assert evaluate_predictor(predictor.fit(split, seed=0), split)["rmse"] < 0.9 * baseline


def test_the_early_stopping_share_is_seeded_and_only_of_the_training_ratings():
    first, again, other = held_out(1000, 0.1, 0), held_out(1000, 0.1, 0), held_out(1000, 0.1, 1)
    assert first.sum() == 100 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert not held_out(1000, 0.0, 0).any()
    with pytest.raises(ValueError, match="validation_share"):
        held_out(10, 1.0, 0)


@pytest.mark.parametrize("predictor", [
    BiasedMF(factors=16, reg=0.0, epochs=300, lr=0.05, batch_size=64, patience=2),
    AutoRec("item", layers=(64,), dropout=0.0, reg=0.0, epochs=300, lr=0.02, batch_size=8, patience=2),
], ids=["biased_mf", "item_autorec"])
def test_an_overfitting_predictor_stops_early_and_keeps_its_best_epoch(predictor):
    split = random_split(low_rank_ratings(), 0.1, 0)
    predictor.fit(split, seed=0)
    assert 0 < predictor.stopping.stopped_epoch < 299  # unregularised and fast, it overfits long before the cap
    assert predictor.stopping.best_epoch == predictor.stopping.stopped_epoch - 2
    held = held_out(len(split.train_ratings), 0.1, 0)
    if isinstance(predictor, BiasedMF):  # the figure it stopped on is the held-out training ratings' RMSE
        predicted = np.clip(predictor.predict(split.train_users[held], split.train_items[held]), MIN_STARS, MAX_STARS)
        assert predictor.validation_rmse == pytest.approx(rmse_mae(predicted, split.train_ratings[held])["rmse"])
    assert predictor.validation_rmse < 0.9 * float(np.std(split.train_ratings[held]))


@pytest.mark.parametrize("predictor", [BiasedMF(factors=4, epochs=3, validation_share=0.0),
                                       AutoRec("item", layers=(8,), epochs=3, validation_share=0.0)],
                         ids=["biased_mf", "item_autorec"])
def test_no_validation_share_trains_every_epoch_on_every_training_rating(predictor):
    split = random_split(low_rank_ratings(), 0.1, 0)
    predictor.fit(split, seed=0)
    assert predictor.validation_rmse is None and len(predictor.model.history.epoch) == 3
    assert np.isfinite(evaluate_predictor(predictor, split)["rmse"])


def test_the_tied_decoder_reuses_the_encoder_weights():
    untied, tied = (AutoRec("item", layers=(16, 8), tied=flag)._network(30) for flag in (False, True))
    assert tied.count_params() < untied.count_params()
    sigmoid = AutoRec("item", layers=(16,), activation="sigmoid")._network(30)
    assert sigmoid.get_layer("encoder_0").activation is keras.activations.sigmoid  # I-AutoRec's encoder


def test_ratings_command_logs_one_run_per_predictor(tmp_path, mlflow_tracking, capsys):
    table = low_rank_ratings()
    path = write_ratings_dat(table, tmp_path / "ratings.dat")
    assert main(["ratings", "--ratings", str(path), "--predictors", "global_mean,item_mean,biased_mf,user_autorec",
                 "--seed", "3", "--mf-epochs", "3", "--autorec-epochs", "2", "--autorec-hidden", "8",
                 "--patience", "1", "--autorec-tied", "true"]) == 0
    printed = capsys.readouterr().out
    assert "| global_mean |" in printed and "| item_mean |" in printed
    runs = mlflow.search_runs(filter_string="tags.rating_predictor = 'item_mean'")
    assert len(runs) == 1 and runs["params.seed"][0] == "3" and 0 < runs["metrics.test_rmse"][0] < 2
    mf = mlflow.search_runs(filter_string="tags.rating_predictor = 'biased_mf'").iloc[0]
    assert mf["params.patience"] == "1" and mf["params.validation_share"] == "0.1" and mf["params.reg"] == "1e-06"
    assert 1 <= mf["metrics.best_epoch"] <= 3 and 0 < mf["metrics.validation_rmse"] < 2
    user = mlflow.search_runs(filter_string="tags.rating_predictor = 'user_autorec'").iloc[0]
    assert user["params.reg"] == "1e-05" and user["params.activation"] == "sigmoid"  # auto: its own, from validation
    assert user["params.tied"] == "True" and user["params.refeed"] == "False"
    assert float(user["params.lr"]) == AUTOREC_LR  # the default step, logged with the run

    from seqrec.experiment.report import write_report

    markdown = write_report(tmp_path / "report")[0]  # the report's rating table
    row = next(line for line in markdown.splitlines() if line.startswith("| item_mean |"))
    assert f"| {runs['metrics.test_rmse'][0]:.4f} |" in row and "`seqrec ratings --predictors item_mean --seed 3" in row


def test_the_masked_loss_is_the_mean_over_the_batchs_observed_ratings():
    targets = np.array([[5.0, 0.0, 3.0, 4.0], [0.0, 2.0, 0.0, 0.0]], dtype=np.float32)
    predictions = np.array([[4.0, 9.0, 3.0, 2.0], [7.0, 4.0, 7.0, 7.0]], dtype=np.float32)
    # squared errors of the 4 ratings: 1, 0, 4 (row 1) and 4 (row 2); the unrated entries count for nothing
    assert float(MaskedMSE()(targets, predictions)) == pytest.approx((1 + 0 + 4 + 4) / 4)


def test_dense_refeeding_adds_the_loss_of_the_output_fed_back_in():
    vectors = np.array([[5.0, 0.0, 3.0, 0.0], [0.0, 4.0, 0.0, 1.0]], dtype=np.float32)
    plain, refeeding = (AutoRec("item", layers=(3,), refeed=flag)._network(4) for flag in (False, True))
    refeeding.set_weights(plain.get_weights())
    losses = []
    for network in (plain, refeeding):
        network.compile(optimizer="adam", loss=MaskedMSE())
        losses.append(float(network.compute_loss(vectors, vectors, network(vectors), training=False)))
    assert losses[1] > losses[0] > 0


def test_resolve_ratings_takes_a_file_a_directory_or_the_environment(tmp_path, monkeypatch):
    from seqrec.core.data import DataError
    from seqrec.core.sources import resolve_ratings

    (tmp_path / "ml").mkdir()
    ratings = tmp_path / "ml" / "ratings.dat"
    ratings.write_text("1::2::3::4\n")
    assert resolve_ratings(str(tmp_path / "ml")) == ratings and resolve_ratings(str(ratings)) == ratings
    monkeypatch.setenv("SEQREC_RATINGS", str(ratings))
    assert resolve_ratings("auto") == ratings
    with pytest.raises(DataError, match="no such file or directory"):
        resolve_ratings(str(tmp_path / "nowhere.dat"))


def test_a_share_that_leaves_no_test_or_training_rating_is_refused():
    table = low_rank_ratings(n_users=10, n_items=5, share=1.0)  # 50 ratings
    for share in (0.001, 0.999):
        with pytest.raises(ValueError, match="expected a share that holds out at least one of the 50 ratings"):
            random_split(table, share, 0)
    with pytest.raises(ValueError, match="validation_share must keep at least one of the 10 training ratings"):
        held_out(10, 0.99, 0)


@pytest.mark.parametrize("predictor, settings, expected", [
    (BiasedMF, {"factors": 0}, "factors must be an integer >= 1, got 0"),
    (BiasedMF, {"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
    (BiasedMF, {"lr": float("nan")}, "lr must be a number > 0, got nan"),
    (BiasedMF, {"reg": -1}, "reg must be a number >= 0, got -1"),
    (BiasedMF, {"validation_share": 1}, r"validation_share must be a number in \[0, 1\), got 1"),
    (AutoRec, {"layers": ()}, "layers must be a list of one or more encoder widths"),
    (AutoRec, {"layers": (0,)}, "each of layers must be an integer >= 1, got 0"),
    (AutoRec, {"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
    (AutoRec, {"activation": "bogus"}, "activation must be the name of a Keras activation"),
    (AutoRec, {"by": "movie"}, "by must be 'item' or 'user', got 'movie'"),
    (AutoRec, {"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    (AutoRec, {"refeed": "yes"}, "refeed must be true or false, got 'yes'"),
])
def test_a_learned_predictor_refuses_settings_out_of_range_when_built(predictor, settings, expected):
    """benchmarks/rating_grid.py builds them from JSON: a bad value is one line there, not an error deep in Keras."""
    with pytest.raises(ValueError, match=expected):
        predictor(**settings)


@pytest.mark.parametrize("predictor", [BiasedMF(factors=2, epochs=2, lr=1e300, validation_share=0.0),
                                       AutoRec(layers=(4,), epochs=1, lr=1e300, validation_share=0.0),
                                       AutoRec(layers=(4,), epochs=2, lr=1e300)])
def test_a_predictor_whose_fit_diverges_raises_instead_of_predicting_nan(predictor):
    from seqrec.core.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="training diverged: .*try a lower learning rate"):
        predictor.fit(random_split(low_rank_ratings(n_users=30, n_items=20), 0.1, 0), 0)
