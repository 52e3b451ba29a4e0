"""Non-neural baselines of the paper's Table 3 (POP, MC, user-KNN, MF) and of the field (SLIST, the tutorials'
autoencoder and factorisation) under the same protocol as RNN-CCE.

Every baseline has ``fit(train, n_items)`` and ``score(inputs) -> (users x items)``: the users' input halves
go in and the scores are ranked by :func:`seqrec.core.metrics.top_k`, which never recommends an input item.
All work is numpy / scipy.sparse over whole matrices; the only Python loops run over a few user batches
or over optimisation iterations.

Scores are *rank positions* (``n_items - 1`` for the best item, 0 for the worst), as float32: ties of the
raw score are broken by training popularity, then by item id, and the order survives ``top_k``'s float32
cast exactly (raw sums of counts would not, for large counts plus a tiny popularity term).

``seqrec baselines --data auto --methods pop,mc,knn,mf --k 10`` logs one MLflow run per baseline
(:mod:`seqrec.experiment.baseline_runs`); ``seqrec report`` puts them next to RNN-CCE and the paper's figures.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from seqrec.core.config import check_setting
from seqrec.core.data import Sequences, Split, split_half
from seqrec.core.metrics import ranking_metrics, top_k


# --------------------------------------------------------------------------------------------- helpers


def user_item_matrix(sequences: Sequences, n_items: int, dtype=np.float32) -> sp.csr_matrix:
    """Binary users x items CSR matrix (an item seen twice by a user still counts once)."""
    matrix = sp.csr_matrix(
        (np.ones(len(sequences.items), dtype=dtype), (sequences.row_of_interaction(), sequences.items)),
        shape=(len(sequences), n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def popularity_order(popularity: np.ndarray) -> np.ndarray:
    """A unique tie-break key per item: higher for more popular items, then for lower ids."""
    order = np.argsort(-np.asarray(popularity, dtype=np.float64), kind="stable")  # best first
    key = np.empty(len(order), dtype=np.int64)
    key[order] = np.arange(len(order) - 1, -1, -1)
    return key


def ranked(primary: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Rank positions (float32, higher is better) of ``primary`` (users x items), ties by ``tie_break``."""
    primary = np.asarray(primary, dtype=np.float64)
    order = np.lexsort((np.broadcast_to(tie_break, primary.shape), primary), axis=-1)  # worst first
    ranks = np.empty(primary.shape, dtype=np.float32)
    np.put_along_axis(ranks, order, np.arange(primary.shape[1], dtype=np.float32)[None, :], axis=1)
    return ranks


def last_items(inputs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a non-empty input and the last input item of each of them."""
    rows = np.flatnonzero(inputs.lengths > 0)
    return rows, inputs.items[inputs.offsets[rows + 1] - 1]


def transition_counts(train: Sequences, n_items: int, pair_ok: np.ndarray | None = None) -> sp.csr_matrix:
    """Counts of ``item[i] -> item[i + 1]`` inside a user (items x items), only where ``pair_ok[i]`` if given."""
    rows = train.row_of_interaction()
    keep = rows[:-1] == rows[1:]
    if pair_ok is not None:
        keep &= pair_ok
    source, target = train.items[:-1][keep], train.items[1:][keep]
    counts = sp.csr_matrix((np.ones(len(source), dtype=np.float64), (source, target)), shape=(n_items, n_items))
    counts.sum_duplicates()
    return counts


class Baseline:
    """Shared part: the name, the training popularity (tie-break) and the fitted flag."""

    name = "baseline"
    uses_movie_ids = False  # NextMovieId: run_baselines gives it the split's MovieIDs

    def __init__(self) -> None:
        self.n_items: int | None = None
        self.popularity: np.ndarray | None = None
        self._tie_break: np.ndarray | None = None

    @property
    def method(self) -> str:
        """The MLflow ``method`` tag (and report row) of this baseline."""
        return self.name.upper()

    @property
    def fitted(self) -> bool:
        return self.n_items is not None

    def params(self) -> dict[str, object]:
        return {}

    def fit(self, train: Sequences, n_items: int) -> Baseline:
        self.n_items = int(n_items)
        self.popularity = np.bincount(train.items, minlength=self.n_items).astype(np.float64)
        self._tie_break = popularity_order(self.popularity)
        return self

    def score(self, inputs: Sequences) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before score")


# --------------------------------------------------------------------------------------------- models


class Pop(Baseline):
    """POP: every user gets the items with the most training interactions."""

    name = "pop"

    def score(self, inputs: Sequences) -> np.ndarray:
        self._check_fitted()
        row = ranked(self.popularity[None, :], self._tie_break)
        return np.repeat(row, len(inputs), axis=0)


class MarkovChain(Baseline):
    """MC: first-order Markov chain, score = transition counts out of the user's last input item.

    ``transitions[i, j]`` counts the training users in whose sequence item ``j`` directly follows ``i``.
    Items with equal counts (including the whole row of an item never followed by anything) fall back
    to training popularity.
    """

    name = "mc"

    def __init__(self) -> None:
        super().__init__()
        self.transitions: sp.csr_matrix | None = None

    def fit(self, train: Sequences, n_items: int) -> MarkovChain:
        super().fit(train, n_items)
        self.transitions = transition_counts(train, self.n_items)
        return self

    def score(self, inputs: Sequences) -> np.ndarray:
        self._check_fitted()
        counts = np.zeros((len(inputs), self.n_items), dtype=np.float64)
        rows, last = last_items(inputs)
        counts[rows] = self.transitions[last].toarray()
        return ranked(counts, self._tie_break)


class UserKNN(Baseline):
    """User-KNN: cosine similarity of binary item sets, score = similarity-weighted sum of neighbours' items.

    The neighbours of an evaluated user are the training users (full sequences) and, with
    ``include_inputs``, the other evaluated users' input halves (never the user itself).
    """

    name = "knn"

    def __init__(self, neighbours: int = 80, include_inputs: bool = True, batch_size: int = 1024) -> None:
        super().__init__()
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}")
        self.neighbours, self.include_inputs, self.batch_size = neighbours, include_inputs, batch_size
        self.train_matrix: sp.csr_matrix | None = None

    def params(self) -> dict[str, object]:
        return {"neighbours": self.neighbours, "include_inputs": self.include_inputs}

    def fit(self, train: Sequences, n_items: int) -> UserKNN:
        super().fit(train, n_items)
        self.train_matrix = user_item_matrix(train, self.n_items)
        return self

    def _pool(self, queries: sp.csr_matrix) -> sp.csr_matrix:
        return sp.vstack([self.train_matrix, queries], format="csr") if self.include_inputs else self.train_matrix

    def similarities(self, inputs: Sequences) -> np.ndarray:
        """Dense cosine similarities (evaluated users x neighbour pool); a user's own entry is 0."""
        self._check_fitted()
        queries = user_item_matrix(inputs, self.n_items)
        return self._similarities(queries, self._pool(queries), np.arange(len(inputs)))

    def _similarities(self, queries: sp.csr_matrix, pool: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        batch = queries[rows]
        overlap = (batch @ pool.T).toarray().astype(np.float64)
        query_norm = np.sqrt(np.asarray(batch.sum(axis=1)).ravel())
        pool_norm = np.sqrt(np.asarray(pool.sum(axis=1)).ravel())
        denominator = np.outer(query_norm, pool_norm)
        similarity = np.divide(overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0)
        if self.include_inputs:  # the user's own input half is in the pool: never its own neighbour
            similarity[np.arange(len(rows)), self.train_matrix.shape[0] + rows] = 0.0
        return similarity

    def score(self, inputs: Sequences) -> np.ndarray:
        self._check_fitted()
        queries = user_item_matrix(inputs, self.n_items)
        pool = self._pool(queries)
        k = min(self.neighbours, pool.shape[0])
        scores = np.empty((len(inputs), self.n_items), dtype=np.float32)
        for start in range(0, len(inputs), self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, len(inputs)))
            similarity = self._similarities(queries, pool, rows)
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            weights = sp.csr_matrix(
                (np.take_along_axis(similarity, nearest, axis=1).ravel(), nearest.ravel(),
                 np.arange(0, len(rows) * k + 1, k)),
                shape=(len(rows), pool.shape[0]),
            )
            scores[rows] = ranked((weights @ pool).toarray(), self._tie_break)
        return scores


class ImplicitMF(Baseline):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008), trained by ALS with conjugate gradient.

    Every (user, item) cell is fitted: preference 1 with confidence ``1 + alpha`` for the items the user
    saw, preference 0 with confidence 1 for all others. Each half-step solves all users' (items')
    ridge systems at once by a few conjugate-gradient steps (Takács, Pilászy & Tikk 2011): a step is
    one users x items matrix product plus sparse passes over the interactions, never a solve per user.
    The regularisation of a user (item) is ``reg`` times its total confidence weight
    (``n_items + alpha * n_seen``): heavy users are not under-regularised.
    Evaluated users are folded in: their factors are solved against the fixed item factors.
    """

    name = "mf"

    def __init__(self, factors: int = 64, alpha: float = 10.0, reg: float = 0.01, iterations: int = 15,
                 cg_steps: int = 3, seed: int = 0) -> None:
        super().__init__()
        for name, value in {"factors": factors, "iterations": iterations, "cg_steps": cg_steps}.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be 0 or more (a seen item's confidence is 1 + alpha), got {alpha}")
        if not (np.isfinite(reg) and reg > 0):
            raise ValueError(f"reg must be positive, got {reg}")
        self.factors, self.alpha, self.reg = factors, alpha, reg
        self.iterations, self.cg_steps, self.seed = iterations, cg_steps, seed
        self.item_factors: np.ndarray | None = None
        self.user_factors: np.ndarray | None = None

    def params(self) -> dict[str, object]:
        return {"factors": self.factors, "alpha": self.alpha, "reg": self.reg, "iterations": self.iterations,
                "cg_steps": self.cg_steps, "seed": self.seed}

    def fit(self, train: Sequences, n_items: int) -> ImplicitMF:
        super().fit(train, n_items)
        users = user_item_matrix(train, self.n_items).tocsr()
        items = users.T.tocsr()
        rng = np.random.default_rng(self.seed)
        x = np.zeros((users.shape[0], self.factors), dtype=np.float64)
        y = rng.normal(0.0, 0.01, size=(self.n_items, self.factors))
        for _ in range(self.iterations):
            x = self._solve(users, y, x, self.cg_steps)
            y = self._solve(items, x, y, self.cg_steps)
        self.user_factors, self.item_factors = x, y
        return self

    def _solve(self, seen: sp.csr_matrix, fixed: np.ndarray, start: np.ndarray, steps: int) -> np.ndarray:
        """Rows of ``(F'F + alpha F_u'F_u + reg_u I) x_u = (1 + alpha) F_u'1`` by batched conjugate gradient."""
        gram = fixed.T @ fixed
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        counts = np.diff(seen.indptr).astype(np.float64)
        ridge = self.reg * (fixed.shape[0] + self.alpha * counts)

        def apply(v: np.ndarray) -> np.ndarray:
            # alpha * F_u' F_u v_u for all rows at once: predictions at the seen cells, spread back over F
            predicted = (v @ fixed.T)[rows, seen.indices]
            weighted = sp.csr_matrix((predicted, seen.indices, seen.indptr), shape=seen.shape)
            return v @ gram + ridge[:, None] * v + self.alpha * (weighted @ fixed)

        x = start.copy()
        residual = (1.0 + self.alpha) * (seen @ fixed) - apply(x)
        direction = residual.copy()
        norm = np.einsum("nf,nf->n", residual, residual)
        for _ in range(steps):
            applied = apply(direction)
            curvature = np.einsum("nf,nf->n", direction, applied)
            step = np.divide(norm, curvature, out=np.zeros_like(norm), where=curvature > 0)
            x += step[:, None] * direction
            residual -= step[:, None] * applied
            new_norm = np.einsum("nf,nf->n", residual, residual)
            ratio = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 0)
            direction = residual + ratio[:, None] * direction
            norm = new_norm
        return x

    def fold_in(self, inputs: Sequences) -> np.ndarray:
        """User factors of the evaluated users' input halves against the fixed item factors."""
        self._check_fitted()
        seen = user_item_matrix(inputs, self.n_items).astype(np.float64)
        start = np.zeros((len(inputs), self.factors), dtype=np.float64)
        return self._solve(seen, self.item_factors, start, steps=2 * self.factors)

    def score(self, inputs: Sequences) -> np.ndarray:
        return ranked(self.fold_in(inputs) @ self.item_factors.T, self._tie_break)


class NextMovieId(Baseline):
    """NEXTID, a probe of the authors' files rather than a recommender: the movies with the next larger MovieIDs
    after the user's last input movie, closest first (the others by popularity). It can only score where the
    order inside a same-second burst is by MovieID, as the authors' sort left it (see docs/protocol-and-data.md).

    ``movie_ids``: the MovieID of every item index (``run_baselines`` passes the split's); default the indexes.
    """

    name = "nextid"
    uses_movie_ids = True

    def __init__(self, movie_ids: np.ndarray | None = None) -> None:
        super().__init__()
        self.movie_ids = None if movie_ids is None else np.asarray(movie_ids, dtype=np.int64)

    def score(self, inputs: Sequences) -> np.ndarray:
        self._check_fitted()
        movie_ids = np.arange(self.n_items) if self.movie_ids is None else self.movie_ids
        after = np.full((len(inputs), self.n_items), -np.inf)
        rows, last = last_items(inputs)
        gap = movie_ids[None, :] - movie_ids[last][:, None]
        after[rows] = np.where(gap > 0, -gap, -np.inf)
        return ranked(after, self._tie_break)


class DenoisingAutoencoder(Baseline):
    """DAE, the autoencoder of the tutorials as a top-N model: a user's set of items (multi-hot, L2-normalised,
    half of it dropped at random in training) -> a SELU code (DeepRecommender's activation) with dropout -> logits
    over the catalogue, trained with the multinomial likelihood of the user's items (Liang et al. 2018,
    Mult-DAE). It reads no order: the users' input halves go in as sets. Keras is imported on fit only.
    """

    name = "dae"

    def __init__(self, hidden: int = 600, dropout: float = 0.5, epochs: int = 100, lr: float = 1e-3,
                 batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        if hidden < 1 or epochs < 1 or batch_size < 1 or not 0 <= dropout < 1 or lr <= 0:
            raise ValueError(f"DAE needs hidden, epochs, batch_size >= 1, 0 <= dropout < 1 and lr > 0, got "
                             f"hidden={hidden}, dropout={dropout}, epochs={epochs}, lr={lr}, batch_size={batch_size}")
        self.hidden, self.dropout, self.epochs, self.lr, self.batch_size, self.seed = (hidden, dropout, epochs, lr,
                                                                                      batch_size, seed)

    def params(self) -> dict[str, object]:
        return {"hidden": self.hidden, "dropout": self.dropout, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "seed": self.seed}

    def fit(self, train: Sequences, n_items: int) -> DenoisingAutoencoder:
        from seqrec.core.models.common import keras

        super().fit(train, n_items)
        keras.utils.set_random_seed(self.seed)
        items = keras.Input(shape=(self.n_items,), name="items")
        x = keras.layers.UnitNormalization(name="normalised")(items)
        x = keras.layers.Dropout(self.dropout, name="input_dropout")(x)
        x = keras.layers.Dense(self.hidden, activation="selu", name="code")(x)
        x = keras.layers.Dropout(self.dropout, name="code_dropout")(x)
        self.network = keras.Model(items, keras.layers.Dense(self.n_items, name="logits")(x))
        self.network.compile(optimizer=keras.optimizers.Adam(self.lr),
                             loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        seen = user_item_matrix(train, self.n_items).toarray()
        self.network.fit(seen, seen / np.maximum(seen.sum(axis=1, keepdims=True), 1), batch_size=self.batch_size,
                         epochs=self.epochs, verbose=0, shuffle=True)
        return self

    def score(self, inputs: Sequences) -> np.ndarray:
        self._check_fitted()
        seen = user_item_matrix(inputs, self.n_items).toarray()
        return ranked(self.network.predict(seen, batch_size=512, verbose=0), self._tie_break)


class DotProductMF(Baseline):
    """DOTMF, the Keras tutorial's dot-product factorisation as a top-N model: a vector per user and per item, the
    logit of an item its dot product with the user's vector plus an item bias (the tutorial's user and global
    biases cancel in a softmax over items). Trained on the training users' items with the softmax over the
    catalogue, the RNN's CCE without the order: the target is the user's items, each weighing 1 / their number
    (the mean next-item CCE over them). ``reg`` is the L2 penalty of the item vectors and of the user vectors in
    each batch; without it the vectors grow without bound. Evaluated users are unseen, so they are folded in:
    their vectors are fitted by the same loss on their input halves, the item side frozen. Keras is imported on
    fit only.
    """

    name = "dotmf"

    def __init__(self, factors: int = 128, epochs: int = 50, fold_in_epochs: int = 50, lr: float = 1e-2,
                 reg: float = 1e-4, batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        if min(factors, epochs, fold_in_epochs, batch_size) < 1 or lr <= 0 or not (np.isfinite(reg) and reg >= 0):
            raise ValueError(f"DOTMF needs factors, epochs, fold_in_epochs, batch_size >= 1, lr > 0 and reg >= 0, "
                             f"got factors={factors}, epochs={epochs}, fold_in_epochs={fold_in_epochs}, "
                             f"batch_size={batch_size}, lr={lr}, reg={reg}")
        self.factors, self.epochs, self.fold_in_epochs = factors, epochs, fold_in_epochs
        self.lr, self.reg, self.batch_size, self.seed = lr, reg, batch_size, seed
        self.items = None  # the trained item side: a Dense layer (item vectors as its kernel, item biases)

    def params(self) -> dict[str, object]:
        return {"factors": self.factors, "epochs": self.epochs, "fold_in_epochs": self.fold_in_epochs,
                "lr": self.lr, "reg": self.reg, "batch_size": self.batch_size, "seed": self.seed}

    def _fit_users(self, seen: np.ndarray, epochs: int) -> np.ndarray:
        """Fit one vector per row of ``seen`` (users x items multi-hot) against the item side; return the vectors."""
        from seqrec.core.models.common import keras

        users = keras.Input(shape=(), dtype="int32", name="user")
        vectors = keras.layers.Embedding(len(seen), self.factors, name="user_vectors",
                                         embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                         activity_regularizer=keras.regularizers.L2(self.reg))
        network = keras.Model(users, self.items(vectors(users)))
        network.compile(optimizer=keras.optimizers.Adam(self.lr),
                        loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        targets = seen / np.maximum(seen.sum(axis=1, keepdims=True), 1)
        network.fit(np.arange(len(seen)), targets, batch_size=self.batch_size, epochs=epochs, verbose=0, shuffle=True)
        return keras.ops.convert_to_numpy(vectors.embeddings)

    def fit(self, train: Sequences, n_items: int) -> DotProductMF:
        from seqrec.core.models.common import keras

        super().fit(train, n_items)
        keras.utils.set_random_seed(self.seed)
        self.items = keras.layers.Dense(self.n_items, name="item_vectors",
                                        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                        kernel_regularizer=keras.regularizers.L2(self.reg))
        self._fit_users(user_item_matrix(train, self.n_items).toarray(), self.epochs)
        self.items.trainable = False  # fold-in fits only the evaluated users' vectors
        return self

    def fold_in(self, inputs: Sequences) -> np.ndarray:
        """Vectors of the evaluated users, fitted to their input halves against the frozen item side."""
        self._check_fitted()
        return self._fit_users(user_item_matrix(inputs, self.n_items).toarray(), self.fold_in_epochs)

    def score(self, inputs: Sequences) -> np.ndarray:
        from seqrec.core.models.common import keras

        kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in self.items.weights)
        return ranked(self.fold_in(inputs) @ kernel + bias, self._tie_break)


def recency_matrix(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_items: int, window: int,
                   decay: float) -> sp.csr_matrix:
    """Row r: the items at flat positions ``ends[r] - window .. ends[r] - 1`` (none before ``starts[r]``), the one
    ``lag`` steps back weighing ``decay ** (lag - 1)``; an item there twice adds up. A loop over the lags only."""
    rows, columns, weights = [], [], []
    for lag in range(1, window + 1):
        row = np.flatnonzero(ends - lag >= starts)
        rows.append(row)
        columns.append(items[ends[row] - lag])
        weights.append(np.full(len(row), decay ** (lag - 1)))
    matrix = sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(columns))),
                           shape=(len(ends), n_items))
    matrix.sum_duplicates()
    return matrix


class SLIST(Baseline):
    """SLIST (Choi, Kim, Lee, Shim & Lee, WWW 2021): a closed-form linear item-to-item model of the next item.

    Every step of every training user is one regression row: its input the last ``window`` items before it, the
    item ``lag`` steps back weighing ``decay ** (lag - 1)`` (``S``), its target the item at the step (``T``). With
    ``alpha`` the rows of each user's whole item set (``X``, order-blind, the paper's SLIS) join in, reconstructing
    themselves: ``B = ((1 - alpha) S'S + alpha c X'X + l2 I)^-1 ((1 - alpha) S'T + alpha c X'X)``, where
    ``c = tr(S'S) / tr(X'X)`` puts both on one scale. One solve of an items x items system, no epochs, no seed. An
    evaluated user's scores are their input's last ``window`` items, weighted the same way, times ``B``.
    """

    name = "slist"

    def __init__(self, window: int = 20, decay: float = 0.8, l2: float = 300.0, alpha: float = 0.0) -> None:
        super().__init__()
        try:
            check_setting("window", window, lambda value: value >= 1, ">= 1", integer=True)
            check_setting("decay", decay, lambda value: 0 < value <= 1, "in (0, 1]")
            check_setting("l2", l2, lambda value: value > 0, "> 0")
            check_setting("alpha", alpha, lambda value: 0 <= value <= 1, "in [0, 1]")
        except ValueError:
            raise ValueError(f"SLIST needs window >= 1 (an integer), decay in (0, 1], l2 > 0 and alpha in [0, 1], got "
                             f"window={window!r}, decay={decay!r}, l2={l2!r}, alpha={alpha!r}") from None
        self.window, self.decay, self.l2, self.alpha = window, decay, l2, alpha
        self.weights: np.ndarray | None = None  # B, items x items

    def params(self) -> dict[str, object]:
        return {"window": self.window, "decay": self.decay, "l2": self.l2, "alpha": self.alpha}

    def fit(self, train: Sequences, n_items: int) -> SLIST:
        super().fit(train, n_items)
        steps = np.flatnonzero(train.positions() >= 1)  # every item with one before it is a target
        starts = np.repeat(train.offsets[:-1], train.lengths)[steps]
        history = recency_matrix(train.items, starts, steps, self.n_items, self.window, self.decay)
        targets = sp.csr_matrix((np.ones(len(steps)), (np.arange(len(steps)), train.items[steps])),
                                shape=(len(steps), self.n_items))
        gram, cross = (history.T @ history).toarray(), (history.T @ targets).toarray()
        if self.alpha:
            sets = user_item_matrix(train, self.n_items, dtype=np.float64)
            co_occurrence = (sets.T @ sets).toarray()
            co_occurrence *= self.alpha * np.trace(gram) / max(np.trace(co_occurrence), 1.0)
            gram, cross = (1 - self.alpha) * gram + co_occurrence, (1 - self.alpha) * cross + co_occurrence
        gram[np.diag_indices(self.n_items)] += self.l2
        self.weights = np.linalg.solve(gram, cross)
        return self

    def predicted(self, inputs: Sequences) -> np.ndarray:
        """The regression's outputs (users x items): each item's fitted share of being next, unranked."""
        self._check_fitted()
        recent = recency_matrix(inputs.items, inputs.offsets[:-1], inputs.offsets[1:], self.n_items, self.window,
                                self.decay)
        return np.asarray(recent @ self.weights)

    def score(self, inputs: Sequences) -> np.ndarray:
        return ranked(self.predicted(inputs), self._tie_break)


BASELINES: dict[str, type[Baseline]] = {"pop": Pop, "mc": MarkovChain, "knn": UserKNN, "mf": ImplicitMF,
                                        "nextid": NextMovieId, "dae": DenoisingAutoencoder,
                                        "dotmf": DotProductMF, "slist": SLIST}
TABLE3_BASELINES = ("pop", "mc", "knn", "mf")  # the paper's rows, run by default


def make_baseline(name: str, movie_ids: np.ndarray | None = None, **params) -> Baseline:
    """The baseline called ``name`` with ``params``; ``movie_ids`` (the split's) go to the one that reads them."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    if BASELINES[name].uses_movie_ids and movie_ids is not None:
        params["movie_ids"] = movie_ids
    return BASELINES[name](**params)


# --------------------------------------------------------------------------------------------- evaluation


def evaluate_baseline(model: Baseline, split: Split, users: str = "test", k: int = 10) -> dict[str, float]:
    """The paper's protocol on the test (or validation) users; fits on ``split.train`` first if needed."""
    if users not in ("test", "val"):
        raise ValueError(f"users must be 'test' or 'val', got {users!r}")
    if not model.fitted:
        model.fit(split.train, split.n_items)
    inputs, goals = split_half(split.test if users == "test" else split.val)
    recommended = top_k(model.score(inputs), k, exclude=inputs)
    return ranking_metrics(recommended, goals, split.n_items, split.item_popularity, split.item_similarity, inputs)
