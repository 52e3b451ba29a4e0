"""Training of RNN-CCE: batches, validation-ranking callback, the fit loop and its MLflow run.

Two regimes:

* ``all_steps`` (default): every epoch each training sequence is cut into windows of ``max_len``
  transitions at a fresh random offset, and the loss is taken at every step (teacher forcing),
  so each transition is seen exactly once per epoch.
* ``paper``: as the authors' code, random (user, cut) examples; the net predicts the item right
  after the cut from (at most ``max_len``) items before it, from its last state only. With
  ``cuts_per_user=N`` an epoch is the authors' sampler's: every user, N distinct cuts each.

The epoch kept is the one with the best validation sps@k (Keras ``EarlyStopping`` with
``restore_best_weights`` plus a ``ModelCheckpoint`` of it on disk).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from seqrec.data import TIE_ORDERS, Sequences, Split, TieOrder, rating_tokens, split_half, tie_order_name
from seqrec.evaluate import evaluate_scores, evaluate_users, format_table, score_users
from seqrec.metrics import mlflow_name
from seqrec.model import build_model, keras, model_inputs, scoring_model
from seqrec.plots import log_run_plots
from seqrec.prepare import train_tie_order, train_timestamps
from seqrec.resume import EpochSampling, ResumableTraining, log_missing_epochs, record_run, run_to_continue

REGIMES = ("all_steps", "paper")
IMPUTED_TARGETS = ("mask", "keep")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; logged as MLflow params as is."""

    hidden: int = 256
    embedding: int = 128
    dropout: float = 0.2
    max_len: int = 50
    batch_size: int = 64
    lr: float = 3e-3
    epochs: int = 10
    cell: str = "gru"
    projection: int = 0
    regime: str = "all_steps"
    lookahead: int = 3
    lookahead_decay: float = 0.5
    tie_order: str = "movie"
    tie_noise: float = 0.8
    rating_weight: float = 0.0
    rating_input: bool = False
    cuts_per_user: int = 0
    imputed_targets: str = "keep"
    seed: int = 0
    patience: int = 3
    k: int = 10

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        for name in ("hidden", "embedding", "max_len", "batch_size", "epochs", "k", "lookahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.cuts_per_user < 0:
            raise ValueError(f"cuts_per_user must be 0 (users drawn with replacement) or positive, "
                             f"got {self.cuts_per_user}")
        if self.cuts_per_user and self.regime != "paper":
            # all_steps trains on every transition: a cut count would be silently ignored
            raise ValueError(f"cuts_per_user is for regime=paper only, got regime={self.regime!r}")
        if self.projection < 0:
            raise ValueError(f"projection must be 0 (none) or a positive size, got {self.projection}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.lookahead_decay <= 1.0:
            raise ValueError(f"lookahead_decay must be in (0, 1], got {self.lookahead_decay}")
        if self.tie_order not in TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {self.tie_order!r}")
        if self.imputed_targets not in IMPUTED_TARGETS:
            raise ValueError(f"imputed_targets must be one of {IMPUTED_TARGETS}, got {self.imputed_targets!r}")
        if self.rating_weight < 0:
            raise ValueError(f"rating_weight must be >= 0, got {self.rating_weight}")
        if self.tie_noise < 0:
            raise ValueError(f"tie_noise must be >= 0, got {self.tie_noise}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def next_items(sequences: Sequences, source: np.ndarray, lookahead: int,
               target_ok: np.ndarray | None = None) -> np.ndarray:
    """The ``lookahead`` items following each flat position in ``source``: -1 past the user's end and,
    with the boolean ``target_ok`` (per flat interaction), -1 where an interaction may not be a target."""
    remaining = np.repeat(sequences.offsets[1:], sequences.lengths)[source] - source - 1
    ahead = np.arange(1, lookahead + 1)
    index = np.minimum(source[:, None] + ahead, len(sequences.items) - 1)
    valid = ahead <= remaining[:, None]
    if target_ok is not None:
        valid &= target_ok[index]
    return np.where(valid, sequences.items[index], -1).astype(np.int32)


def imputed_target_mask(timestamps: np.ndarray | None, policy: str) -> np.ndarray | None:
    """Which training interactions may be targets under ``policy`` (see :data:`IMPUTED_TARGETS`).

    An interaction of unknown time (timestamp -1) sits at an imputed position: in the authors' split
    13.6 % of the training rows do (see its README). ``mask`` keeps them in the input the net reads
    but never asks it to predict them from a guessed position; ``keep`` trains on them as on any other.
    None (nothing masked) without timestamps or when every time is known.
    """
    if policy not in IMPUTED_TARGETS:
        raise ValueError(f"imputed_targets must be one of {IMPUTED_TARGETS}, got {policy!r}")
    if policy == "keep" or timestamps is None or np.all(timestamps >= 0):
        return None
    return np.asarray(timestamps) >= 0


def rating_weights(ratings: np.ndarray, rating_weight: float) -> np.ndarray:
    """Loss weight of a target by its rating: ``1 + rating_weight * (rating - 3) / 2``, at least 0.

    0 treats all ratings alike (the paper); 1 drops 1-star targets and doubles 5-star ones. The item is
    still read as input either way: a disliked movie is part of the history, not a recommendation.
    """
    return np.maximum(1.0 + rating_weight * (np.asarray(ratings, dtype=np.float32) - 3.0) / 2.0, 0.0)


class Examples(NamedTuple):
    """Training examples of one epoch, one row each (the batches slice these rows)."""

    inputs: np.ndarray  # item + 1 of every input cell, 0 = padding
    targets: np.ndarray  # the next ``lookahead`` items of every trained position, -1 = none
    target_ratings: np.ndarray  # rating of the next item, for rating_weights (0 in unused cells)
    sources: np.ndarray  # flat interaction index of every input cell, -1 = padding (to gather per-item features)


def window_examples(sequences: Sequences, max_len: int, rng: np.random.Generator, lookahead: int = 1,
                    target_ok: np.ndarray | None = None) -> Examples:
    """Teacher-forcing windows: inputs ``item + 1`` (windows x max_len), the next ``lookahead``
    items as targets (windows x max_len x lookahead, -1 where the sequence has ended) and the rating
    of the next item (windows x max_len, 0 in unused cells), for :func:`rating_weights`.

    Each user's transitions are tiled into consecutive windows starting at a random offset, so
    every transition is used once per epoch and window borders move from epoch to epoch.
    Unused cells are 0 in the inputs (masked by the embedding, hence ignored by the loss).
    ``target_ok`` (see :func:`next_items`) turns some targets into -1 (no loss), never inputs.
    """
    lengths = sequences.lengths
    transitions = np.maximum(lengths - 1, 0)
    shift = rng.integers(0, max_len, size=len(sequences))  # empty leading cells of the first window
    n_windows = np.where(transitions > 0, (transitions + shift - 1) // max_len + 1, 0)
    first_window = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    positions = sequences.positions()
    source = np.flatnonzero(positions < np.repeat(transitions, lengths))  # every item but each user's last
    row = sequences.row_of_interaction()[source]
    shifted = positions[source] + shift[row]
    window = first_window[row] + shifted // max_len
    column = shifted % max_len
    sources = np.full((int(n_windows.sum()), max_len), -1, dtype=np.int64)
    sources[window, column] = source
    targets = np.full((*sources.shape, lookahead), -1, dtype=np.int32)
    targets[window, column] = next_items(sequences, source, lookahead, target_ok)
    ratings = np.zeros(sources.shape, dtype=np.float32)
    ratings[window, column] = sequences.ratings[source + 1]
    return Examples(cell_values(sequences.items + 1, sources), targets, ratings, sources)


def cell_values(values: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per-interaction ``values`` placed at every input cell of ``sources`` (see :class:`Examples`), 0 in
    padding: ``item + 1`` for the item input, rating tokens for the rating input."""
    return np.where(sources >= 0, values[np.maximum(sources, 0)], 0).astype(np.int32)


def cut_examples(sequences: Sequences, max_len: int, rng: np.random.Generator, lookahead: int = 1,
                 n_examples: int | None = None,
                 target_ok: np.ndarray | None = None) -> Examples:
    """The paper's regime: random (user, cut) examples; the net reads at most ``max_len`` items before
    the cut and predicts the item at the cut. Inputs (examples x max_len), targets (examples x lookahead),
    the rating of the item at the cut (examples).

    ``n_examples=None`` draws one cut for every user, in user order; otherwise users are drawn
    uniformly with replacement.
    """
    users = np.arange(len(sequences)) if n_examples is None else rng.integers(0, len(sequences), n_examples)
    starts, lengths = sequences.offsets[users], sequences.lengths[users]
    cut = rng.integers(1, np.maximum(lengths, 2))  # position of the target; 1-item users get no target
    return examples_at(sequences, starts, starts + cut, max_len, lookahead, target_ok)


def user_cut_examples(sequences: Sequences, max_len: int, rng: np.random.Generator, cuts_per_user: int,
                      lookahead: int = 1, target_ok: np.ndarray | None = None) -> Examples:
    """The authors' sampler: every user, ``cuts_per_user`` distinct cuts each (fewer if the user has fewer),
    each with at least 2 items before it, in user order. Only cuts whose target may be trained on
    (``target_ok``) are drawn, so no example is wasted on a masked target."""
    rows = sequences.row_of_interaction()
    candidates = allowed_cuts(sequences, target_ok)
    order = np.lexsort((rng.random(len(candidates)), rows[candidates]))  # users in turn, shuffled inside each
    grouped = rows[candidates][order]
    rank = np.arange(len(order)) - np.searchsorted(grouped, grouped)  # 0, 1, 2, ... inside each user
    cuts = np.sort(candidates[order[rank < cuts_per_user]])
    return examples_at(sequences, sequences.offsets[rows[cuts]], cuts, max_len, lookahead, target_ok)


def allowed_cuts(sequences: Sequences, target_ok: np.ndarray | None) -> np.ndarray:
    """Flat interactions the authors' sampler may cut at: at least 2 items before, a target that may be trained on."""
    allowed = sequences.positions() >= 2
    if target_ok is not None:
        allowed &= target_ok
    return np.flatnonzero(allowed)


def examples_at(sequences: Sequences, starts: np.ndarray, cuts: np.ndarray, max_len: int, lookahead: int,
                target_ok: np.ndarray | None) -> Examples:
    """Examples predicting the flat interactions ``cuts`` from at most ``max_len`` items before them, never
    reaching before their user's first item ``starts``."""
    index = (cuts - max_len)[:, None] + np.arange(max_len)
    sources = np.where(index >= starts[:, None], index, -1)
    rated = np.minimum(cuts, len(sequences.items) - 1)  # in bounds for a last 1-item user (no target: -1)
    return Examples(cell_values(sequences.items + 1, sources), next_items(sequences, cuts - 1, lookahead, target_ok),
                    sequences.ratings[rated].astype(np.float32), sources)


class TrainingBatches(keras.utils.PyDataset):
    """Examples of one regime, re-sampled and shuffled at the end of every epoch.

    ``ties`` re-draws the order of same-second ratings every epoch: MovieLens users rate in bursts,
    the order inside a second is arbitrary, and the authors' files got theirs from a non-stable sort.
    ``target_ok`` (per interaction of ``sequences``, see :func:`imputed_target_mask`) moves with them, and
    so do the rating input tokens with ``config.rating_input`` (unknown where ``rating_known`` is false).
    """

    def __init__(self, sequences: Sequences, config: TrainConfig, seed: int, ties: TieOrder | None = None,
                 target_ok: np.ndarray | None = None, rating_known: np.ndarray | None = None):
        super().__init__()
        self.sequences, self.config, self.ties, self.target_ok = sequences, config, ties, target_ok
        self.tokens = rating_tokens(sequences.ratings, rating_known) if config.rating_input else None
        self.seed, self.epoch = seed, None
        if config.cuts_per_user:
            # the authors' sampler: every user, cuts_per_user cuts each. The count can move by a few between
            # epochs (tie orders move masked targets), so the last partial batch is dropped: a fixed epoch length
            per_user = np.bincount(sequences.row_of_interaction()[allowed_cuts(sequences, target_ok)],
                                   minlength=len(sequences))
            self.n_examples = int(np.minimum(per_user, config.cuts_per_user).sum())
            self.n_batches = max(1, self.n_examples // config.batch_size)
        else:
            # as many examples per epoch as there are max_len windows of transitions (the fewest any window
            # offset gives), so an epoch has a fixed length and comparable cost in both regimes
            self.n_examples = int(np.ceil(np.maximum(sequences.lengths - 1, 0) / config.max_len).sum())
            self.n_batches = max(1, math.ceil(self.n_examples / config.batch_size))
        self.set_epoch(0)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Draw the examples of ``epoch`` (0-based) unless they are already drawn. They depend only on
        (seed, epoch), so a fit resumed at epoch ``e`` trains on the batches an uninterrupted one would."""
        if epoch == self.epoch:
            return
        self.epoch, self.rng = epoch, np.random.default_rng([self.seed, epoch])
        sequences, target_ok, tokens = self.sequences, self.target_ok, self.tokens
        if self.ties is not None:
            tie_order = self.ties.order(self.rng)
            sequences = sequences.reordered(tie_order)
            target_ok = None if target_ok is None else target_ok[tie_order]
            tokens = None if tokens is None else tokens[tie_order]
        if self.config.regime == "all_steps":
            examples = window_examples(sequences, self.config.max_len, self.rng, self.config.lookahead, target_ok)
        elif self.config.cuts_per_user:
            examples = user_cut_examples(sequences, self.config.max_len, self.rng, self.config.cuts_per_user,
                                         self.config.lookahead, target_ok)
        else:
            examples = cut_examples(sequences, self.config.max_len, self.rng, self.config.lookahead,
                                    n_examples=self.n_examples, target_ok=target_ok)
        order = self.rng.permutation(len(examples.inputs))
        self.inputs, self.targets = examples.inputs[order], examples.targets[order]
        self.weights = rating_weights(examples.target_ratings[order], self.config.rating_weight)
        self.ratings = None if tokens is None else cell_values(tokens, examples.sources[order])

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        batch = slice(index * self.config.batch_size, (index + 1) * self.config.batch_size)
        inputs = (self.inputs[batch] if self.ratings is None
                  else {"items": self.inputs[batch], "ratings": self.ratings[batch]})
        if self.config.rating_weight == 0:  # all weights 1: leave Keras' unweighted loss as it is
            return inputs, self.targets[batch]
        return inputs, self.targets[batch], self.weights[batch]

    @property
    def tokens_per_epoch(self) -> int:
        """Next-item targets trained on per epoch (padding excluded)."""
        used = self.inputs[: self.n_batches * self.config.batch_size]
        return int(len(used) if self.config.regime == "paper" else np.count_nonzero(used))


@keras.saving.register_keras_serializable(package="seqrec")
class NextItemsCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy against the next ``lookahead`` items, weighted ``decay ** (j - 1)``.

    With ``lookahead=1`` this is exactly the paper's next-item CCE. Longer lookaheads soften the
    target where the order is arbitrary (MovieLens users rate bursts of movies in the same second).
    Targets of -1 (past the end of a sequence) carry no weight.
    """

    def __init__(self, decay: float = 0.5, name: str = "next_items_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.decay = decay

    def call(self, targets, logits):
        targets = keras.ops.cast(targets, "int32")
        log_probs = keras.ops.log_softmax(logits, axis=-1)
        picked = keras.ops.take_along_axis(log_probs, keras.ops.maximum(targets, 0), axis=-1)
        steps = keras.ops.arange(keras.ops.shape(targets)[-1], dtype="float32")
        weights = keras.ops.power(self.decay, steps) * keras.ops.cast(targets >= 0, "float32")
        return -keras.ops.sum(weights * picked, axis=-1) / keras.ops.maximum(keras.ops.sum(weights, axis=-1), 1e-9)

    def get_config(self) -> dict:
        return {**super().get_config(), "decay": self.decay}


class RankingValidation(keras.callbacks.Callback):
    """Adds validation ranking metrics (``val_sps_at_10``, ...) to the epoch logs.

    Must come before the callbacks that read them (MLflow logging, early stopping, checkpoint).
    """

    def __init__(self, users: Sequences, k: int, popularity: np.ndarray | None = None):
        super().__init__()
        self.users, self.k, self.popularity = users, k, popularity
        self.scorer: keras.Model | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.scorer is None:
            self.scorer = scoring_model(self.model)
        else:
            self.scorer.set_weights(self.model.get_weights())
        metrics = evaluate_users(self.scorer, self.users, self.k, self.popularity)
        if logs is not None:
            logs.update({mlflow_name(name, "val_"): value for name, value in metrics.items()})


@dataclass
class TrainResult:
    model: keras.Model  # last-step scoring model with the best validation epoch's weights
    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    train_seconds: float
    tokens_per_second: float
    resumed_epochs: int = 0  # epochs restored from a backup (see seqrec.resume) instead of trained here


def fit(split: Split, config: TrainConfig, workdir: Path, callbacks: list | None = None,
        verbose: int = 2, ties: TieOrder | None = None, backup_dir: Path | None = None,
        target_ok: np.ndarray | None = None, rating_known: np.ndarray | None = None) -> TrainResult:
    """Train on the training users, select the epoch on validation sps@k; no MLflow here.

    With ``backup_dir`` the fit is resumable (:class:`seqrec.resume.ResumableTraining`): killed, the
    same call resumes from its last completed epoch and ends as the uninterrupted fit would.

    ``ties`` (see :func:`seqrec.prepare.train_tie_order`) re-orders same-second training ratings every epoch;
    ``target_ok`` (see :func:`imputed_target_mask`) says which training interactions may be targets;
    ``rating_known`` which training ratings are known (the others are fed as unknown with ``rating_input``).
    """
    keras.utils.set_random_seed(config.seed)
    batches = TrainingBatches(split.train, config, seed=config.seed, ties=ties, target_ok=target_ok,
                              rating_known=rating_known)
    model = build_model(split.n_items, config.hidden, config.embedding, config.dropout, config.cell,
                        config.projection, return_sequences=config.regime == "all_steps",
                        rating_input=config.rating_input)
    schedule = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=config.epochs * len(batches),
                                                      alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=NextItemsCrossentropy(config.lookahead_decay))
    monitor = mlflow_name(f"sps@{config.k}", "val_")
    early_stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience,
                                                   restore_best_weights=True)
    checkpoint = keras.callbacks.ModelCheckpoint(workdir / "best_epoch.keras", monitor=monitor, mode="max",
                                                 save_best_only=True)
    resumable = ResumableTraining(backup_dir, early_stopping, checkpoint) if backup_dir is not None else None
    all_callbacks = [
        EpochSampling(batches),
        RankingValidation(split.val, config.k, split.item_popularity),
        checkpoint,
        early_stopping,
        *([resumable] if resumable is not None else []),  # after the callbacks whose state it keeps
        *(callbacks or []),
    ]
    started = time.perf_counter()
    # shuffle=False: the batches shuffle their own examples from (seed, epoch); Keras' batch-order shuffle
    # draws from Python's global random state, which a resumed fit would not continue
    history = model.fit(batches, epochs=config.epochs, callbacks=all_callbacks, verbose=verbose, shuffle=False)
    seconds = time.perf_counter() - started
    epochs_run = len(history.history.get("loss", []))  # by this process
    return TrainResult(
        model=scoring_model(model),
        history=resumable.history if resumable is not None else history.history,
        best_epoch=early_stopping.best_epoch + 1,
        train_seconds=seconds,
        tokens_per_second=batches.tokens_per_epoch * epochs_run / seconds,
        resumed_epochs=resumable.resumed_epochs if resumable is not None else 0,
    )


@dataclass
class RunSummary:
    """What a training run produced: its MLflow id, the selected epoch and its metrics."""

    run_id: str
    best_epoch: int
    val: dict[str, float]  # validation metrics of the best epoch (sps@10, recall@10, ...)
    test: dict[str, float] | None  # None when the test users were not evaluated (tuning trials)
    train_seconds: float
    tokens_per_second: float


def train_run(config: TrainConfig, split: Split, output: Path | None = None, *, nested: bool = False,
              run_name: str | None = None, callbacks: list | None = None, evaluate_test: bool = True,
              verbose: int = 2, backup_dir: Path | None = None) -> RunSummary:
    """One MLflow run: params, per-epoch curves, best-epoch model, (test metrics) and data stats.

    ``nested``/``callbacks``/``evaluate_test=False`` serve tuning: a trial is a nested run whose
    pruning callback sees the validation curve and which never touches the test users.
    ``backup_dir`` makes the run resumable (:mod:`seqrec.resume`): run again after a kill or a crash,
    it continues the interrupted MLflow run from its last completed epoch.
    """
    import mlflow
    from mlflow.models import infer_signature

    from seqrec.serve import ServingCatalogue, log_recommender  # an MLflow edge, as this function

    name = run_name or f"rnn-cce-{config.regime}-h{config.hidden}-s{config.seed}"
    reopen, interrupted = run_to_continue(backup_dir) if not nested else (None, None)
    with mlflow.start_run(run_id=reopen, run_name=None if reopen else name, nested=nested) as run, \
            tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if backup_dir is not None:
            record_run(backup_dir, run.info.run_id)
            if interrupted is not None and interrupted != run.info.run_id:
                mlflow.set_tag("seqrec.resumed_from_run", interrupted)
        params = {**asdict(config), "data": str(split.directory), "data_dir": str(split.directory),
                  "n_items": split.n_items,
                  "n_train_users": len(split.train)}
        # `mlflow run` has already logged the MLproject params as typed ("true", "50.0"): MLflow refuses
        # to change a param, so only the ones not there yet are added.
        logged = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params({name: value for name, value in params.items() if name not in logged})
        if split.stats_path is not None:
            mlflow.log_artifact(str(split.stats_path), artifact_path="data")
        # read once, and only when needed: for the authors' split they are joined from the raw MovieLens files
        needs_times = config.tie_order != "file" or config.imputed_targets != "keep" or config.rating_input
        timestamps = train_timestamps(split) if needs_times else None
        ties = train_tie_order(split, config.tie_order, config.tie_noise, timestamps)
        target_ok = imputed_target_mask(timestamps, config.imputed_targets)
        # in the authors' rebuilt file, 109,591 of the 113,043 rows of unknown time have an imputed rating (3)
        rating_known = timestamps >= 0 if config.rating_input and timestamps is not None else None
        mlflow.log_params({"tie_order_used": tie_order_name(ties),
                           "imputed_targets_masked": 0 if target_ok is None else int(np.sum(~target_ok)),
                           "unknown_rating_inputs": 0 if rating_known is None else int(np.sum(~rating_known))})
        result = fit(split, config, workdir, callbacks=[mlflow.keras.MlflowCallback(), *(callbacks or [])],
                     verbose=verbose, ties=ties, backup_dir=backup_dir, target_ok=target_ok,
                     rating_known=rating_known)
        if result.resumed_epochs:
            mlflow.log_metric("resumed_from_epoch", result.resumed_epochs)
            log_missing_epochs(run.info.run_id, result.history, result.resumed_epochs)
        val = {name.removeprefix("val_").replace("_at_", "@"): values[result.best_epoch - 1]
               for name, values in result.history.items() if name.startswith("val_")}
        # trials never see the test users: their figures are drawn on the validation users
        plotted = "test" if evaluate_test else "val"
        scores = score_users(result.model, split_half(split.test if evaluate_test else split.val)[0])
        test = (evaluate_scores(scores, split.test, config.k, split.item_popularity, split.item_similarity)
                if evaluate_test else None)
        if test is not None:
            mlflow.log_metrics({mlflow_name(name, "test_"): value for name, value in test.items()})
        mlflow.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
                            "train_tokens_per_second": result.tokens_per_second,
                            **{mlflow_name(name, "best_val_"): value for name, value in val.items()}})
        log_run_plots(result.model, result.history, split, plotted, config.k, scores)
        model_file = workdir / "best_model.keras"
        result.model.save(model_file)
        mlflow.log_artifact(str(model_file))
        example = model_inputs(result.model, np.array([[0, 0, 1, 2, 3]], dtype=np.int32),
                               np.array([[0, 0, 4, 5, 2]], dtype=np.int32))
        signature = infer_signature(example, np.asarray(result.model(example)))
        # no input_example: mlflow 3.17's Keras flavour fails writing it (the serving pyfunc logs one)
        mlflow.keras.log_model(result.model, name="model", signature=signature)
        log_recommender(model_file, ServingCatalogue.build(split.catalogue, split.item_popularity))
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            result.model.save(output)
    if test is not None:
        print(format_table(test, title=f"test users ({len(split.test)}), best epoch {result.best_epoch}:"))
    return RunSummary(run.info.run_id, result.best_epoch, val, test, result.train_seconds, result.tokens_per_second)
