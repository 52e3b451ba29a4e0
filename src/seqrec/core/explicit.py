"""Rating prediction, the tutorials' own task: RMSE and MAE on a seeded random split of the ratings.

The usual protocol of the literature (AutoRec, the Keras and Spotlight explicit-feedback tutorials): the ratings,
not the users, are split at random, 90 % train and 10 % test. Predictors, one interface (``fit`` then ``predict``
on (user, item) index pairs):

* ``global_mean``, ``user_mean``, ``item_mean``: the means of the training ratings (an unseen user or item falls
  back to the global mean);
* ``biased_mf``: the Keras tutorial's dot-product factorisation with user and item biases (MSE + L2, Adam);
* ``item_autorec`` / ``user_autorec``: a deep autoencoder over an item's vector of user ratings (or a user's of
  item ratings), DeepRecommender's recipe: SELU layers, large dropout on the code, an optionally tied
  (constrained) decoder, the loss masked to the observed ratings, optionally dense re-feeding (Sedhain et al.
  2015; Kuchaiev & Ginsburg 2017).

The learned predictors stop early: a seeded ``validation_share`` of the *training* ratings is held out, training
stops once their error has not improved for ``patience`` epochs, and the best epoch's weights are kept (Keras
``EarlyStopping``). The test ratings are never looked at before the final evaluation.

Predictions are clipped to the rating scale. No MLflow here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.core.config import AUTOREC_LR, PREDICTORS, RATING_PATIENCE, check_setting
from seqrec.core.errors import TrainingDiverged
from seqrec.core.models.common import keras
from seqrec.core.ratings import MAX_STARS, MIN_STARS, RatingsTable
from seqrec.core.training import StopOnDivergence



@dataclass(frozen=True)
class RatingSplit:
    """Ratings as (user index, item index, rating) triples, train and test; indexes are 0-based and dense."""

    train_users: np.ndarray
    train_items: np.ndarray
    train_ratings: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    test_ratings: np.ndarray
    n_users: int
    n_items: int


def random_split(table: RatingsTable, test_share: float = 0.1, seed: int = 0) -> RatingSplit:
    """A seeded random ``1 - test_share`` / ``test_share`` split of the ratings (not of the users)."""
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    users = np.unique(table.user, return_inverse=True)[1].reshape(-1)
    items = np.unique(table.movie, return_inverse=True)[1].reshape(-1)
    order = np.random.default_rng(seed).permutation(len(table))
    n_test = int(round(test_share * len(table)))
    if not 0 < n_test < len(table):  # an empty test set scores nan, an empty training set fits nothing
        raise ValueError(f"expected a share that holds out at least one of the {len(table)} ratings and keeps at "
                         f"least one for training, got {test_share} ({n_test} held out)")
    train, test = order[n_test:], order[:n_test]
    ratings = table.rating.astype(np.float32)
    return RatingSplit(users[train], items[train], ratings[train], users[test], items[test], ratings[test],
                       int(users.max()) + 1, int(items.max()) + 1)


def rmse_mae(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = np.asarray(predicted, dtype=np.float64) - actual
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def held_out(n_ratings: int, share: float, seed: int) -> np.ndarray:
    """A seeded mask of the training ratings kept aside to stop training early (none when ``share`` is 0)."""
    if not 0 <= share < 1:
        raise ValueError(f"validation_share must be in [0, 1), got {share}")
    n_held = int(round(share * n_ratings))
    if n_ratings and n_held >= n_ratings:  # nothing left to train on
        raise ValueError(f"validation_share must keep at least one of the {n_ratings} training ratings to train on, "
                         f"got {share} ({n_held} held out)")
    mask = np.zeros(n_ratings, dtype=bool)
    mask[np.random.default_rng([seed, 1]).permutation(n_ratings)[:n_held]] = True
    return mask


def check_training_settings(epochs: object, lr: object, batch_size: object, reg: object, validation_share: object,
                            patience: object) -> None:
    """The hyper-parameters every learned predictor has, checked where it is built (a ValueError naming the first
    one out of range): a benchmark's JSON settings reach the constructor untyped."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        check_setting(name, value, lambda number: number >= 1, ">= 1", integer=True)
    check_setting("lr", lr, lambda value: value > 0, "> 0")
    if reg is not None:  # AutoRec's None: its default for ``by``
        check_setting("reg", reg, lambda value: value >= 0, ">= 0")
    check_setting("validation_share", validation_share, lambda value: 0 <= value < 1, "in [0, 1)")


def fit_callbacks(predictor: BiasedMF | AutoRec, held: np.ndarray) -> list[keras.callbacks.Callback]:
    """A learned predictor's fit: stopped at once when its loss becomes nan or infinite (a diverged fit's figures
    would be nan: no result), and early where ratings are held out (its ``stopping``)."""
    return [StopOnDivergence(predictor.lr), *([predictor.stopping] if held.any() else [])]


def check_converged(predictor: BiasedMF | AutoRec) -> None:
    """Raise :class:`~seqrec.core.errors.TrainingDiverged` when the fitted weights hold a nan or an infinity: the
    last epoch's steps can break them after its loss was still finite, and every prediction would then be nan."""
    if not all(np.isfinite(weights).all() for weights in predictor.model.get_weights()):
        raise TrainingDiverged(f"training diverged: the weights became nan or infinite; try a lower learning rate "
                               f"than lr={predictor.lr}")


def early_stopping(patience: int) -> keras.callbacks.EarlyStopping:
    """Stop once the held-out ratings' loss has not improved for ``patience`` epochs; keep the best weights."""
    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


class MeanPredictor:
    """The global, a user's or an item's mean training rating (``by`` = None, "user" or "item")."""

    def __init__(self, by: str | None = None):
        self.by = by

    def fit(self, split: RatingSplit, seed: int = 0) -> MeanPredictor:
        self.mean = float(split.train_ratings.mean())
        if self.by is not None:
            keys, size = (split.train_users, split.n_users) if self.by == "user" else (split.train_items, split.n_items)
            counts = np.bincount(keys, minlength=size)
            sums = np.bincount(keys, weights=split.train_ratings, minlength=size)
            self.means = np.where(counts > 0, sums / np.maximum(counts, 1), self.mean)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.by is None:
            return np.full(len(users), self.mean, dtype=np.float32)
        return self.means[users if self.by == "user" else items].astype(np.float32)


class BiasedMF:
    """Dot product of user and item factors plus user, item and global biases (the Keras tutorial's model)."""

    def __init__(self, factors: int = 64, reg: float = 1e-6, epochs: int = 20, lr: float = 1e-3,
                 batch_size: int = 1024, validation_share: float = 0.1, patience: int = RATING_PATIENCE):
        check_training_settings(epochs=epochs, lr=lr, batch_size=batch_size, reg=reg,
                                validation_share=validation_share, patience=patience)
        check_setting("factors", factors, lambda value: value >= 1, ">= 1", integer=True)
        self.factors, self.reg, self.epochs, self.lr, self.batch_size = factors, reg, epochs, lr, batch_size
        self.validation_share, self.patience = validation_share, patience

    def fit(self, split: RatingSplit, seed: int = 0) -> BiasedMF:
        keras.utils.set_random_seed(seed)
        self.mean = float(split.train_ratings.mean())
        user = keras.Input(shape=(), dtype="int32", name="user")
        item = keras.Input(shape=(), dtype="int32", name="item")
        l2 = keras.regularizers.L2(self.reg)
        factors, biases = [], []
        for size, name, ids in ((split.n_users, "user", user), (split.n_items, "item", item)):
            factors.append(keras.layers.Embedding(size, self.factors, embeddings_regularizer=l2,
                                                  name=f"{name}_factors")(ids))
            biases.append(keras.layers.Embedding(size, 1, embeddings_initializer="zeros", name=f"{name}_bias")(ids))
        dot = keras.layers.Dot(axes=-1, name="dot")(factors)
        out = keras.layers.Add(name="rating")([dot, *biases])
        self.model = keras.Model({"user": user, "item": item}, keras.layers.Flatten()(out))
        self.model.compile(optimizer=keras.optimizers.Adam(self.lr), loss="mse")
        held = held_out(len(split.train_ratings), self.validation_share, seed)
        pairs = {"user": split.train_users, "item": split.train_items}
        targets = split.train_ratings - self.mean
        kept = ({key: ids[~held] for key, ids in pairs.items()}, targets[~held])
        validation = ({key: ids[held] for key, ids in pairs.items()}, targets[held])
        self.stopping = early_stopping(self.patience)
        self.model.fit(*kept, validation_data=validation if held.any() else None, batch_size=self.batch_size,
                       epochs=self.epochs, verbose=0, shuffle=True, callbacks=fit_callbacks(self, held))
        check_converged(self)
        self.validation_rmse = self._validation_rmse(split, held) if held.any() else None
        return self

    def _validation_rmse(self, split: RatingSplit, held: np.ndarray) -> float:
        """RMSE of the held-out training ratings (the figure training stopped on)."""
        predicted = np.clip(self.predict(split.train_users[held], split.train_items[held]), MIN_STARS, MAX_STARS)
        return rmse_mae(predicted, split.train_ratings[held])["rmse"]

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raw = self.model.predict({"user": users, "item": items}, batch_size=65536, verbose=0).reshape(-1)
        return raw + self.mean


@keras.saving.register_keras_serializable(package="seqrec")
class MaskedMSE(keras.losses.Loss):
    """Mean squared error per observed rating of the batch (a 0 target is "not rated"), DeepRecommender's MMSE.

    Each row's squared error is divided by the batch's mean count of observed entries, so the batch mean Keras
    takes is the sum over the batch's ratings over their number: a rating weighs the same in a row of 3000
    ratings as in a row of 3 (a per-row mean would make a rarely rated item weigh as much as a popular one)."""

    def call(self, targets, predictions):
        observed = keras.ops.cast(targets > 0, predictions.dtype)
        squared = keras.ops.sum(keras.ops.square((predictions - targets) * observed), axis=-1)
        return squared / keras.ops.maximum(keras.ops.mean(keras.ops.sum(observed, axis=-1)), 1e-6)


class RefeedingAutoencoder(keras.Model):
    """DeepRecommender's dense re-feeding: after the masked loss on the observed ratings, the dense output f(x) is
    fed back in as if it were a fully rated vector, and f(f(x)) is pulled towards it (f(x) held fixed), which
    trains the network on every entry, not only the observed ones."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        observed = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        dense = keras.ops.stop_gradient(y_pred)
        return observed + keras.ops.mean(keras.ops.square(self(dense, training=training) - dense))


AUTOREC_REG = {"item": 1e-4, "user": 1e-5}  # the L2 that scored best on validation ratings, by kind of row


class AutoRec:
    """Deep autoencoder over rating vectors: ``by="item"`` reconstructs an item's ratings by all users (I-AutoRec),
    ``by="user"`` a user's ratings of all items (DeepRecommender). A rating (u, i) is read off the reconstruction.

    ``layers``: encoder widths (``activation``: I-AutoRec's sigmoid, or DeepRecommender's SELU); the decoder
    mirrors them, tied to the encoder's weights when ``tied`` (DeepRecommender's constrained decoder: half the
    parameters). ``dropout`` acts on the code. ``refeed`` adds dense re-feeding (:class:`RefeedingAutoencoder`).
    The defaults (sigmoid, no dropout, the L2 of :data:`AUTOREC_REG`, Adam's step ``AUTOREC_LR``, the
    patience ``RATING_PATIENCE``) scored best on validation ratings (docs/models.md).
    """

    def __init__(self, by: str = "item", layers: tuple[int, ...] = (500,), dropout: float = 0.0,
                 reg: float | None = None, epochs: int = 100, lr: float = AUTOREC_LR, batch_size: int = 64,
                 tied: bool = False, refeed: bool = False, validation_share: float = 0.1,
                 patience: int = RATING_PATIENCE, activation: str = "sigmoid"):
        check_training_settings(epochs=epochs, lr=lr, batch_size=batch_size, reg=reg,
                                validation_share=validation_share, patience=patience)
        if by not in ("item", "user"):
            raise ValueError(f"by must be 'item' or 'user', got {by!r}")
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(f"layers must be a list of one or more encoder widths, such as [500], got {layers!r}")
        for width in layers:
            check_setting("each of layers", width, lambda value: value >= 1, ">= 1", integer=True)
        check_setting("dropout", dropout, lambda value: 0 <= value < 1, "in [0, 1)")
        try:
            keras.activations.get(activation)
        except (TypeError, ValueError):
            raise ValueError(f"activation must be the name of a Keras activation, such as 'sigmoid' or 'selu', "
                             f"got {activation!r}") from None
        for name, value in (("tied", tied), ("refeed", refeed)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        self.by, self.layers, self.dropout, self.activation = by, tuple(layers), dropout, activation
        self.reg = AUTOREC_REG[by] if reg is None else reg
        self.epochs, self.lr, self.batch_size, self.tied, self.refeed = epochs, lr, batch_size, tied, refeed
        self.validation_share, self.patience = validation_share, patience

    def _cells(self, split: RatingSplit, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of the chosen training ratings: row = item and column = user for ``by="item"``."""
        users, items = split.train_users[which], split.train_items[which]
        return (items, users) if self.by == "item" else (users, items)

    def _vectors(self, split: RatingSplit, which: np.ndarray) -> np.ndarray:
        """Rows to reconstruct: one per item (columns = users) or one per user (columns = items); 0 = unrated."""
        shape = (split.n_items, split.n_users) if self.by == "item" else (split.n_users, split.n_items)
        matrix = np.zeros(shape, dtype=np.float32)
        matrix[self._cells(split, which)] = split.train_ratings[which]
        return matrix

    def _network(self, width: int) -> keras.Model:
        l2 = keras.regularizers.L2(self.reg)
        vector = keras.Input(shape=(width,), name="ratings")
        x, encoders = vector, []
        for index, units in enumerate(self.layers):
            encoders.append(keras.layers.Dense(units, activation=self.activation, kernel_regularizer=l2,
                                               name=f"encoder_{index}"))
            x = encoders[-1](x)
        x = keras.layers.Dropout(self.dropout, name="code_dropout")(x)
        outputs = [*reversed(self.layers[:-1]), width]
        for index, (units, encoder) in enumerate(zip(outputs, reversed(encoders))):
            activation = self.activation if index < len(outputs) - 1 else None
            x = (TiedDense(encoder, units, activation, name=f"decoder_{index}") if self.tied
                 else keras.layers.Dense(units, activation=activation, kernel_regularizer=l2,
                                         name=f"decoder_{index}"))(x)
        return (RefeedingAutoencoder if self.refeed else keras.Model)(vector, x)

    def fit(self, split: RatingSplit, seed: int = 0) -> AutoRec:
        """Train on the rows without the held-out ratings, stop on those; then reconstruct from every training
        rating (the held-out ones are known inputs by test time)."""
        keras.utils.set_random_seed(seed)
        held = held_out(len(split.train_ratings), self.validation_share, seed)
        kept, aside = self._vectors(split, ~held), self._vectors(split, held)
        self.mean = float(split.train_ratings.mean())
        self.model = self._network(kept.shape[1])
        self.model.compile(optimizer=keras.optimizers.Adam(self.lr), loss=MaskedMSE())
        validation = (kept, aside)  # the loss of the held-out ratings, read from the rest
        self.stopping = early_stopping(self.patience)
        self.model.fit(kept, kept, validation_data=validation if held.any() else None, batch_size=self.batch_size,
                       epochs=self.epochs, verbose=0, shuffle=True, callbacks=fit_callbacks(self, held))
        check_converged(self)
        self.validation_rmse = self._validation_rmse(split, held, kept) if held.any() else None
        self.vectors = self._vectors(split, np.ones_like(held))
        self.reconstruction = self.model.predict(self.vectors, batch_size=256, verbose=0)
        self.seen = self.vectors.any(axis=1)  # a row with no training rating has nothing to reconstruct from
        return self

    def _validation_rmse(self, split: RatingSplit, held: np.ndarray, kept: np.ndarray) -> float:
        """RMSE of the held-out training ratings, reconstructed from the rest (the figure training stopped on)."""
        rows, columns = self._cells(split, held)
        reconstruction = self.model.predict(kept, batch_size=256, verbose=0)
        predicted = np.clip(reconstruction[rows, columns], MIN_STARS, MAX_STARS)
        return rmse_mae(predicted, split.train_ratings[held])["rmse"]

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows, columns = (items, users) if self.by == "item" else (users, items)
        return np.where(self.seen[rows], self.reconstruction[rows, columns], self.mean).astype(np.float32)


@keras.saving.register_keras_serializable(package="seqrec")
class TiedDense(keras.layers.Layer):
    """A decoder layer whose kernel is the transpose of an encoder layer's (its own bias only)."""

    def __init__(self, encoder: keras.layers.Dense, units: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.units, self.activation = encoder, units, keras.activations.get(activation)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        return self.activation(keras.ops.matmul(inputs, keras.ops.transpose(self.encoder.kernel)) + self.bias)


def make_predictor(name: str, **params) -> MeanPredictor | BiasedMF | AutoRec:
    """Predictor ``name`` (see :data:`PREDICTORS`) with its hyper-parameters."""
    if name not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {name!r}")
    if name.endswith("_mean"):
        if params:
            raise ValueError(f"{name} takes no settings, got {', '.join(sorted(params))}")
        return MeanPredictor(None if name == "global_mean" else name.removesuffix("_mean"))
    if name == "biased_mf":
        return BiasedMF(**params)
    return AutoRec(by=name.removesuffix("_autorec"), **params)


def evaluate_predictor(predictor, split: RatingSplit) -> dict[str, float]:
    """Test RMSE and MAE, the predictions clipped to the rating scale (0.5 to 5 stars)."""
    predicted = np.clip(predictor.predict(split.test_users, split.test_items), MIN_STARS, MAX_STARS)
    return rmse_mae(predicted, split.test_ratings)
