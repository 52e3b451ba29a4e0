"""Training examples of RNN-CCE, re-drawn every epoch from (seed, epoch) only.

Two regimes:

* ``all_steps`` (default): every epoch each training sequence is cut into windows of ``max_len``
  transitions at a fresh random offset, and the loss is taken at every step (teacher forcing),
  so each transition is seen exactly once per epoch.
* ``paper``: as the authors' code, random (user, cut) examples; the net predicts the item right
  after the cut from (at most ``max_len``) items before it, from its last state only. With
  ``cuts_per_user=N`` an epoch is the authors' sampler's: every user, N distinct cuts each.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from seqrec.core.config import IMPUTED_TARGETS, TrainConfig
from seqrec.core.data import Sequences, flat_ranges, rating_tokens
from seqrec.core.losses import PADDED_TARGET
from seqrec.core.model import keras
from seqrec.core.ties import TieOrder


def next_items(sequences: Sequences, source: np.ndarray, lookahead: int,
               target_ok: np.ndarray | None = None, burst_only: bool = False) -> np.ndarray:
    """The ``lookahead`` items following each flat position in ``source``: -1 past the user's end and,
    with the boolean ``target_ok`` (per flat interaction), -1 where an interaction may not be a target.

    ``burst_only`` keeps the second and later items only where rated in the same (known) second as the first,
    the next burst, whose order inside the second means nothing; without ``sequences.times``, the first only.
    """
    remaining = np.repeat(sequences.offsets[1:], sequences.lengths)[source] - source - 1
    ahead = np.arange(1, lookahead + 1)
    index = np.minimum(source[:, None] + ahead, len(sequences.items) - 1)
    valid = ahead <= remaining[:, None]
    if burst_only and sequences.times is None:  # no seconds to tell a burst by
        valid[:, 1:] = False
    elif burst_only:
        times = sequences.times[index]
        valid[:, 1:] &= (times[:, 1:] == times[:, :1]) & (times[:, :1] >= 0)
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


def first_occurrences(sequences: Sequences) -> np.ndarray:
    """Per interaction: whether it is the first of its (user, item) pair. With ``exclude_seen`` a repeat is
    never a target: an item the user has read is never recommended, and its logit is left out of the softmax."""
    ids = int(sequences.items.max(initial=0)) + 1
    pairs = sequences.row_of_interaction().astype(np.int64) * ids + sequences.items
    first = np.zeros(len(pairs), dtype=bool)
    first[np.unique(pairs, return_index=True)[1]] = True
    return first


def items_before(sequences: Sequences, sources: np.ndarray, n_items: int) -> np.ndarray:
    """Per row of ``sources`` (see :class:`Examples`), the items its user read before its first cell, as bits
    packed along the ``item + 1`` axis (rows x ceil((n_items + 1) / 8) uint8, little bit order; bit 0 unused):
    what :class:`seqrec.core.models.common.SeenItems` unpacks. The cells' own items it reads from the window."""
    held = sources >= 0
    any_held = held.any(axis=1)
    first = np.where(any_held, np.where(held, sources, np.iinfo(np.int64).max).min(axis=1), 0)
    start = sequences.offsets[:-1][sequences.row_of_interaction()[np.minimum(first, len(sequences.items) - 1)]]
    counts = np.where(any_held, first - start, 0)
    seen = np.zeros((len(sources), n_items + 1), dtype=bool)
    seen[np.repeat(np.arange(len(sources)), counts), sequences.items[flat_ranges(start, counts)] + 1] = True
    return np.packbits(seen, axis=1, bitorder="little")


def window_examples(sequences: Sequences, max_len: int, rng: np.random.Generator, lookahead: int = 1,
                    target_ok: np.ndarray | None = None, burst_only: bool = False) -> Examples:
    """Teacher-forcing windows: inputs ``item + 1`` (windows x max_len), the next ``lookahead``
    items as targets (windows x max_len x lookahead, -1 where the sequence has ended,
    :data:`~seqrec.core.losses.PADDED_TARGET` in padding) and the rating
    of the next item (windows x max_len, 0 in unused cells), for :func:`rating_weights`.

    Each user's transitions are tiled into consecutive windows starting at a random offset, so
    every transition is used once per epoch and window borders move from epoch to epoch.
    Unused cells are 0 in the inputs (masked by the embedding, hence ignored by the loss).
    ``target_ok`` and ``burst_only`` (see :func:`next_items`) turn some targets into -1 (no loss), never inputs.
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
    targets = np.full((*sources.shape, lookahead), PADDED_TARGET, dtype=np.int32)
    targets[window, column] = next_items(sequences, source, lookahead, target_ok, burst_only)
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
    so do the rating input tokens with ``config.rating_input`` (unknown where ``rating_known`` is false, and each
    known one with probability ``config.rating_dropout``, drawn anew every epoch).
    """

    def __init__(self, sequences: Sequences, config: TrainConfig, seed: int, ties: TieOrder | None = None,
                 target_ok: np.ndarray | None = None, rating_known: np.ndarray | None = None,
                 n_items: int | None = None):
        super().__init__()
        if config.resolved_exclude_seen and n_items is None:
            raise ValueError("exclude_seen needs the catalogue size n_items")
        self.sequences, self.config, self.ties, self.target_ok = sequences, config, ties, target_ok
        self.n_items = n_items
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
        # the last epoch's arrays go before the next ones are drawn: memory holds one epoch, not two
        self.inputs = self.targets = self.weights = self.ratings = self.seen = None
        sequences, target_ok, tokens = self.sequences, self.target_ok, self.tokens
        if self.ties is not None:
            tie_order = self.ties.order(self.rng)
            sequences = sequences.reordered(tie_order)
            target_ok = None if target_ok is None else target_ok[tie_order]
            tokens = None if tokens is None else tokens[tie_order]
        if self.config.resolved_exclude_seen:
            first = first_occurrences(sequences)
            target_ok = first if target_ok is None else target_ok & first
        if self.config.regime == "all_steps":
            examples = window_examples(sequences, self.config.max_len, self.rng, self.config.lookahead, target_ok,
                                       self.config.burst_targets)
        elif self.config.cuts_per_user:
            examples = user_cut_examples(sequences, self.config.max_len, self.rng, self.config.cuts_per_user,
                                         self.config.lookahead, target_ok)
        else:
            examples = cut_examples(sequences, self.config.max_len, self.rng, self.config.lookahead,
                                    n_examples=self.n_examples, target_ok=target_ok)
        order = self.rng.permutation(len(examples.inputs))
        self.inputs, self.targets = examples.inputs[order], examples.targets[order]
        self.weights = (rating_weights(examples.target_ratings[order], self.config.rating_weight)
                        if self.config.rating_weight else None)  # all 1 otherwise: never fed (see __getitem__)
        self.ratings = None if tokens is None else cell_values(tokens, examples.sources[order])
        if self.config.rating_dropout:  # no draw at 0, so the other arrays stay those of a run without it
            self.ratings[self.rng.random(self.ratings.shape) < self.config.rating_dropout] = 0
        if self.config.resolved_exclude_seen:
            self.seen = items_before(sequences, examples.sources[order], self.n_items)

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return self._rows(slice(index * self.config.batch_size, (index + 1) * self.config.batch_size))

    def epoch_examples(self) -> tuple[np.ndarray, ...]:
        """Every example of the current epoch, in batch order: batch ``i`` is rows ``i * batch_size`` on. The
        rows no batch takes (the paper regime drops a last partial batch) are left out."""
        return self._rows(slice(0, self.n_batches * self.config.batch_size))

    def _rows(self, rows: slice) -> tuple[np.ndarray, ...]:
        inputs = {"items": self.inputs[rows]}
        if self.ratings is not None:
            inputs["ratings"] = self.ratings[rows]
        if self.seen is not None:
            inputs["seen"] = self.seen[rows]
        inputs = inputs["items"] if len(inputs) == 1 else inputs
        if self.config.rating_weight == 0:  # all weights 1: leave Keras' unweighted loss as it is
            return inputs, self.targets[rows]
        return inputs, self.targets[rows], self.weights[rows]

    @property
    def tokens_per_epoch(self) -> int:
        """Next-item targets trained on per epoch (padding excluded)."""
        used = self.inputs[: self.n_batches * self.config.batch_size]
        return int(len(used) if self.config.regime == "paper" else np.count_nonzero(used))
