"""The fit: train on the training users, keep the epoch with the best validation sps@k. No MLflow here.

The epoch kept is the one with the best validation sps@k (Keras ``EarlyStopping`` with ``restore_best_weights``,
which restores it at the end of every fit, early-stopped or not). With a backup directory the fit is resumable
(:class:`seqrec.core.backup.ResumableTraining`).
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from seqrec.core.backend import tf
from seqrec.core.backup import EpochSampling, ResumableTraining
from seqrec.core.baselines import SLIST
from seqrec.core.config import TrainConfig
from seqrec.core.data import Sequences, Split, split_half
from seqrec.core.ensemble import slist_blended
from seqrec.core.errors import TrainingDiverged
from seqrec.core.losses import SampledRankingLoss
from seqrec.core.metrics import held_out_pick, metric_name, mlflow_name, ranking_metrics, validation_halves
from seqrec.core.model import NextItemsCrossentropy, build_model, dtype_policy, keras, n_items_of, scoring_model
from seqrec.core.sampling import TrainingBatches
from seqrec.core.scoring import recommend_top_k
from seqrec.core.ties import TieOrder, fitted_in_tie_order


class RankingValidation(keras.callbacks.Callback):
    """Adds validation ranking metrics (``val_sps_at_10``, ...) to the epoch logs, and sps@k and the tie-aware
    sps@k of each validation half (``half_a_sps_at_10``, ``half_b_...``; see
    :func:`seqrec.core.metrics.validation_halves`), from which :func:`held_out_figures` scores the epoch kept.

    Must come before the callbacks that read them (MLflow logging, early stopping, pruning).

    ``blend`` turns the network's scoring model into what is evaluated (:func:`seqrec.core.ensemble.slist_blended`).
    """

    def __init__(self, users: Sequences, k: int, popularity: np.ndarray | None = None,
                 blend: Callable[[keras.Model], keras.Model] | None = None):
        super().__init__()
        self.k, self.popularity, self.blend = k, popularity, blend
        self.inputs, self.goals = split_half(users)
        self.in_a = validation_halves(len(users))
        self.network: keras.Model | None = None
        self.scorer: keras.Model | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.scorer is None:
            self.network = scoring_model(self.model)
            self.scorer = self.network if self.blend is None else self.blend(self.network)
        else:
            self.network.set_weights(self.model.get_weights())  # the blend shares the network's layers
        recommended = recommend_top_k(self.scorer, self.inputs, self.k)
        n_items = n_items_of(self.scorer)
        metrics = ranking_metrics(recommended, self.goals, n_items, self.popularity, inputs=self.inputs)
        if logs is not None:
            logs.update({mlflow_name(name, "val_"): value for name, value in metrics.items()})
            logs.update(self.half_figures(recommended, n_items))

    def half_figures(self, recommended: np.ndarray, n_items: int) -> dict[str, float]:
        """sps@k and the tie-aware sps@k of each half, where both halves hold users."""
        if self.in_a.all() or not self.in_a.any():
            return {}
        figures = {}
        for half, users in (("a", self.in_a), ("b", ~self.in_a)):
            metrics = ranking_metrics(recommended[users], self.goals.of_users(users), n_items,
                                      inputs=self.inputs.of_users(users))
            figures.update({mlflow_name(name, f"half_{half}_"): metrics[name]
                            for name in (f"sps@{self.k}", f"sps_tie@{self.k}") if name in metrics})
        return figures


def held_out_figures(history: dict[str, list[float]], n_users: int) -> dict[str, float]:
    """Each halved metric (``sps@10``, ...) of the epoch-keeping rule scored on the users who did not pick the
    epoch (:func:`seqrec.core.metrics.held_out_pick`), from the fit's history of ``n_users`` validation users;
    empty where the halves were not logged every epoch (a fit resumed from an older backup)."""
    in_a = validation_halves(n_users)
    epochs = len(history.get("loss", []))
    names = [metric_name(key, "half_a_") for key in history if key.startswith("half_a_")]
    curves = {name: (history[mlflow_name(name, "half_a_")], history.get(mlflow_name(name, "half_b_"), []))
              for name in names}
    return {name: held_out_pick(a, b, int(in_a.sum()), int((~in_a).sum()))
            for name, (a, b) in curves.items() if len(a) == len(b) == epochs > 0}


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Validates and keeps the optimizer's moving average of the weights instead of the trained weights.

    An epoch's weights are one noisy point of the descent (validation sps@10 moves about a point from one epoch to
    the next); their moving average over the last steps (``ema_momentum``) is steadier. This callback puts the
    average into the model at the end of each epoch, before validation and early stopping read it, and
    :meth:`swap_back` returns the trained weights after them, so that the backup and the next epoch go on from where
    training was (Keras' ``swap_on_epoch`` would back up the average as the weights). Early stopping thus keeps the
    best epoch's average, which it restores after ``fit``'s own ``finalize_variable_values``.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._swap_variables()  # the swap of SwapEMAWeights, in place and without new variables

    def swap_back(self) -> keras.callbacks.Callback:
        """The callback that returns the trained weights: place it after the callbacks that read the average."""
        return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self._swap_variables())


class StopOnDivergence(keras.callbacks.Callback):
    """Fail the fit at the end of the first epoch whose loss is nan or infinite, before validation, backup and
    logging see its weights (checked per epoch, not per batch, so that training never waits on the loss)."""

    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training diverged: the loss became {loss} in epoch {epoch + 1}; "
                                   f"try a lower learning rate than lr={self.lr}")


class EpochSeconds(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and validation) to the epoch logs, so that the backup keeps it with the
    history and a resumed fit's train time counts the epochs trained before the interruption too."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.started


def training_loss(config: TrainConfig) -> keras.losses.Loss:
    """The full-softmax CCE against the next ``lookahead`` items, or a sampled ranking loss (same weighting)."""
    if config.loss == "cce":
        return NextItemsCrossentropy(config.lookahead_decay, config.label_smoothing)
    return SampledRankingLoss(config.loss, config.negatives, config.lookahead_decay, seed=config.seed)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next batch instead of handing it back to the kernel.

    A batch's logits (batch x steps x items floats: 47 MB at the defaults) are above glibc's mmap threshold, so
    every step mapped and unmapped them, and the kernel zeroed the fresh pages each time: a quarter of the
    training CPU time was kernel time on a 2-core machine. With these thresholds the blocks stay in the heap and
    are reused (``benchmarks/throughput.py`` measures it). Process-wide, once; a no-op off glibc (returns False).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(parameter, KEEP_BYTES) == 1 for parameter in (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


@dataclass
class TrainResult:
    model: keras.Model  # last-step scoring model with the best validation epoch's weights
    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    train_seconds: float  # every epoch's training and validation, the epochs restored from a backup too
    tokens_per_second: float
    resumed_epochs: int = 0  # epochs restored from a backup (see seqrec.core.backup) instead of trained here
    replicas: int = 1  # devices the fit ran on (data parallel)
    held_out: dict[str, float] = field(default_factory=dict)  # held_out_figures: the kept epoch, not self-scored


def fit(split: Split, config: TrainConfig, callbacks: list | None = None,
        verbose: int = 2, ties: TieOrder | None = None, backup_dir: Path | None = None,
        target_ok: np.ndarray | None = None, rating_known: np.ndarray | None = None,
        times: np.ndarray | None = None) -> TrainResult:
    """Train on the training users, select the epoch on validation sps@k; no MLflow here.

    With ``backup_dir`` the fit is resumable (:class:`seqrec.core.backup.ResumableTraining`): killed, the
    same call resumes from its last completed epoch and ends as the uninterrupted fit would.

    ``ties`` (see :func:`seqrec.core.ties.train_tie_order`) re-orders same-second training ratings every epoch;
    ``target_ok`` (see :func:`seqrec.core.sampling.imputed_target_mask`) says which training interactions may be
    targets;
    ``rating_known`` which training ratings are known (the others are fed as unknown with ``rating_input``);
    ``times`` the training ratings' Unix times (-1 unknown), which ``burst_targets`` needs to find the bursts.
    """
    if config.k > split.n_items:
        raise ValueError(f"k must be at most the catalogue size {split.n_items}, got {config.k}")
    keras.utils.set_random_seed(config.seed)
    keep_freed_memory()
    strategy = device_strategy(config.distribute)
    replicas = strategy.num_replicas_in_sync
    # batch_size is per device: the global batch grows with the devices, and the peak learning rate with it (the
    # linear scaling rule), so one epoch takes 1/replicas of the steps at the same per-example step size
    train = split.train if times is None else replace(split.train, times=times)
    batches = TrainingBatches(train, replace(config, batch_size=config.batch_size * replicas),
                              seed=config.seed, ties=ties, target_ok=target_ok, rating_known=rating_known,
                              n_items=split.n_items)
    with dtype_policy(config.precision), strategy.scope():
        model = build_model(split.n_items, config.hidden, config.embedding, config.resolved_dropout, config.cell,
                            config.projection, return_sequences=config.regime == "all_steps",
                            rating_input=config.rating_input, rating_min_history=config.rating_min_history,
                            model=config.model, max_len=config.max_len, blocks=config.blocks, heads=config.heads,
                            skip_padding=skips_padding(config), tied_output=config.tied_output,
                            exclude_seen=config.resolved_exclude_seen, item_dropout=config.item_dropout)
        schedule = learning_rate_schedule(config, len(batches), replicas)
        model.compile(optimizer=optimizer(schedule, config.weight_decay, config.ema_momentum),
                      loss=training_loss(config))
    return _fit_compiled(model, batches, split, config, callbacks, verbose, backup_dir, replicas,
                         slist_blend(split, config, ties))


def slist_blend(split: Split, config: TrainConfig,
                ties: TieOrder | None) -> Callable[[keras.Model], keras.Model] | None:
    """With ``slist_weight``, what turns the network into its blend with SLIST (:func:`seqrec.core.ensemble.
    slist_blended`), SLIST fitted on the training users in ``ties``' order, drawn with the run's seed (``seqrec
    baselines`` draws it with 0); None otherwise."""
    if not config.resolved_slist_weight:
        return None
    return partial(slist_blended, linear=run_slist(split, ties, config.seed), share=config.resolved_slist_weight)


def run_slist(split: Split, ties: TieOrder | None, seed: int, settings: Mapping[str, float] | None = None) -> SLIST:
    """SLIST as a run with ``slist_weight`` fits it: on the training users, in ``ties``' order drawn with ``seed``;
    ``settings`` (SLIST's constructor arguments) lets a benchmark try others than its defaults."""
    return SLIST(**(settings or {})).fit(fitted_in_tie_order(split, ties, seed).train, split.n_items)


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int,
                           replicas: int = 1) -> keras.optimizers.schedules.CosineDecay:
    """Cosine decay from the peak ``lr`` to 5 % of it at the last step; with ``lr_warmup_epochs`` the rate first rises
    linearly from 0 to the peak (Keras' warm-up), which a transformer's early, large Adam steps may need."""
    warmup_steps = round(config.lr_warmup_epochs * steps_per_epoch)
    peak = config.lr * replicas
    decay_steps = config.epochs * steps_per_epoch - warmup_steps
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=decay_steps, alpha=0.05)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay_steps, alpha=0.05,
                                                  warmup_target=peak, warmup_steps=warmup_steps)


NOT_DECAYED = ["bias", "gamma", "beta"]  # biases and layer norms keep their scale: decay is for weights and tables


def optimizer(schedule: float | keras.optimizers.schedules.LearningRateSchedule,
              weight_decay: float, ema_momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam, or with ``weight_decay`` AdamW: each step also shrinks the weight matrices and item tables by
    lr x weight_decay of themselves, decoupled from the gradient's moments, which a large, sparsely trained item
    table cannot get from an L2 term (Adam rescales it away). With ``ema_momentum`` the optimizer also keeps the
    moving average of the weights (Keras' ``use_ema``), which :class:`AveragedWeights` validates and keeps."""
    average = {"use_ema": ema_momentum > 0, "ema_momentum": ema_momentum}  # Keras checks the momentum only in use
    if not weight_decay:
        return keras.optimizers.Adam(schedule, **average)
    adamw = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **average)
    adamw.exclude_from_weight_decay(var_names=NOT_DECAYED)
    return adamw


def skips_padding(config: TrainConfig) -> bool:
    """Whether the training model computes the logits of the window cells holding an item only
    (:class:`seqrec.core.models.common.ItemSteps`): the same loss, without a quarter of the softmax work. Not with
    ``rating_weight``, whose per-cell weights Keras applies to the loss of every cell, padded or not."""
    return config.regime == "all_steps" and config.rating_weight == 0


def _fit_compiled(model: keras.Model, batches: TrainingBatches, split: Split, config: TrainConfig,
                  callbacks: list | None, verbose: int, backup_dir: Path | None, replicas: int,
                  blend: Callable[[keras.Model], keras.Model] | None = None) -> TrainResult:
    """Fit a compiled model with validation, early stopping and the optional backup; the scoring model of the
    best epoch (through ``blend``, when given: see :class:`RankingValidation`)."""
    monitor = mlflow_name(f"sps@{config.k}", "val_")
    early_stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience,
                                                   restore_best_weights=True)
    resumable = ResumableTraining(backup_dir, early_stopping) if backup_dir is not None else None
    feed = EpochFeed(batches)
    averaged = AveragedWeights() if config.ema_momentum else None
    all_callbacks = [
        feed,
        StopOnDivergence(config.lr),
        *([averaged] if averaged is not None else []),
        RankingValidation(split.val, config.k, split.item_popularity, blend),
        early_stopping,
        *([averaged.swap_back()] if averaged is not None else []),  # before the backup: it keeps trained weights
        EpochSeconds(),  # after validation, which it times; before the backup, which keeps it
        *([resumable] if resumable is not None else []),  # after the callbacks whose state it keeps
        *(callbacks or []),
    ]
    started = time.perf_counter()
    # shuffle=False: the batches shuffle their own examples from (seed, epoch); Keras' batch-order shuffle
    # draws from Python's global random state, which a resumed fit would not continue
    history = model.fit(feed.dataset(), epochs=config.epochs, callbacks=all_callbacks, verbose=verbose,
                        shuffle=False)
    seconds = time.perf_counter() - started
    epochs_run = len(history.history.get("loss", []))  # by this process
    all_epochs = resumable.history if resumable is not None else history.history
    scorer = scoring_model(model)
    return TrainResult(
        model=scorer if blend is None else blend(scorer),
        history=all_epochs,
        best_epoch=early_stopping.best_epoch + 1,
        train_seconds=sum(all_epochs.get("epoch_seconds", [])),  # every epoch's, restored ones included
        tokens_per_second=batches.tokens_per_epoch * epochs_run / seconds,
        resumed_epochs=resumable.resumed_epochs if resumable is not None else 0,
        replicas=replicas,
        held_out=held_out_figures(all_epochs, len(split.val)),
    )


class EpochFeed(EpochSampling):
    """The training batches as a ``tf.data`` pipeline that reads each epoch from variables, not from Python.

    Keras reads a ``PyDataset`` through ``from_generator``: with a Python function anywhere in the pipeline, an
    epoch took up to 1.7x as long on 2 cores, mostly in kernel time (``benchmarks/throughput.py`` compares the
    two). Here ``on_epoch_begin`` draws the epoch (as :class:`EpochSampling` does) and loads its examples into
    variables, and tf.data slices them into the same batches. The dataset's known length makes Keras open a fresh
    iterator every epoch, after ``on_epoch_begin``, so each epoch reads its own draw.
    """

    def __init__(self, batches: TrainingBatches):
        super().__init__(batches)
        self.examples = tf.nest.map_structure(
            lambda array: tf.Variable(array, trainable=False, shape=(None, *array.shape[1:])),
            batches.epoch_examples())

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        tf.nest.map_structure(lambda variable, array: variable.assign(array), self.examples,
                              self.batches.epoch_examples())

    def dataset(self) -> tf.data.Dataset:
        size = self.batches.config.batch_size
        return tf.data.Dataset.range(len(self.batches)).map(
            lambda index: tf.nest.map_structure(lambda variable: variable[index * size:(index + 1) * size],
                                                self.examples))


def device_strategy(distribute: str) -> tf.distribute.Strategy:
    """Where the fit runs (see ``TrainConfig.distribute``): ``MirroredStrategy`` over all visible GPUs (``auto``
    from 2 on; ``mirrored`` also over the CPU devices when there is no GPU), else TensorFlow's default, one device
    (a visible GPU, else the CPU)."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if distribute == "mirrored" or (distribute == "auto" and len(gpus) >= 2):
        if gpus:
            return tf.distribute.MirroredStrategy(gpus)
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        # NCCL all-reduce is for GPUs; CPU replicas reduce through one device
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.get_strategy()
