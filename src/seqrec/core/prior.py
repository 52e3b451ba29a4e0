"""SLIST as a fixed part of a network's output: the network is trained on what the linear model misses.

A next-item network and SLIST (:class:`seqrec.core.baselines.SLIST`) err on different users: blended after training,
``(1 - b) x`` the softmax ``+ b x`` SLIST's outputs as a distribution lifted a 3-epoch GRU by 2.7 points of
validation sps@10 (docs/models.md). Here the blend is the model: with ``slist_weight=b`` the training loss is the
blend's own cross-entropy, ``-log((1 - b) p(y) + b q(y))``, so the network's gradient at a step shrinks where SLIST
already gives the target a large share ``q(y)``, and the saved model scores as the blend.

Both distributions leave out the items the user has read (the protocol never recommends them), so both sum to 1
over the unread items. ``q`` for a training step comes from a SLIST fitted *without* that user (cross-fitting over
``folds`` groups of users): a SLIST fitted on the user's own steps would give their targets shares it cannot give a
new user, and the network would learn to lean on it more than evaluation allows. The scoring model carries the
SLIST fitted on every training user.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from seqrec.core.baselines import SLIST
from seqrec.core.data import Sequences
from seqrec.core.model import keras, reads_ratings
from seqrec.core.models.common import SlistBlend

THREADS = max(1, min(4, os.cpu_count() or 1))  # the shares' user groups, one thread each
FOLDS = 5  # user groups of the cross-fitting: each training step's share comes from a SLIST fitted on the others


@dataclass
class SlistPrior:
    """SLIST fitted on all training users (``weights``: what the scoring model carries) and once without each fold
    of them (``fold_weights[f]``: the shares of fold ``f``'s training steps); ``fold_of_user`` per training user."""

    weights: np.ndarray  # items x items, float32
    fold_weights: np.ndarray  # folds x items x items, float32
    fold_of_user: np.ndarray  # per training user (row), 0..folds-1
    window: int
    decay: float

    @classmethod
    def fit(cls, train: Sequences, n_items: int, folds: int = FOLDS, seed: int = 0,
            linear: SLIST | None = None) -> SlistPrior:
        """Fit SLIST (``linear``'s settings; the default SLIST's otherwise) on every training user and without each
        of ``folds`` seeded random groups of them. One pass over the steps: a fold's normal equations are the whole
        data's less its own users' rows, then one solve per fold."""
        linear = SLIST() if linear is None else linear
        if linear.alpha:
            raise ValueError(f"the SLIST prior is SLIST without its order-blind part (alpha=0), got alpha={linear.alpha}")
        if folds < 2:
            raise ValueError(f"the SLIST prior needs at least 2 folds of users, got {folds}")
        fold_of_user = np.random.default_rng([seed, folds]).permutation(len(train)) % folds
        parts = [linear.normal_equations(train.of_users(fold_of_user == fold), n_items) for fold in range(folds)]
        gram, cross = sum(part[0] for part in parts), sum(part[1] for part in parts)
        fold_weights = np.stack([linear.solved(gram - part_gram, cross - part_cross)
                                 for part_gram, part_cross in parts]).astype(np.float32)
        return cls(linear.solved(gram, cross).astype(np.float32), fold_weights, fold_of_user, linear.window,
                   linear.decay)

    def target_shares(self, train: Sequences) -> np.ndarray:
        """Per interaction of ``train`` (the training users, in any order inside their rows): the share of its item
        in the fold SLIST's distribution over the items its user has not read before it (0 for a first item, a
        repeat, or an item SLIST gives nothing). The users are split over the CPUs (numpy leaves the GIL)."""
        shares = np.zeros(len(train.items), dtype=np.float32)
        by_length = np.argsort(-train.lengths, kind="stable")
        parts = [by_length[part::THREADS] for part in range(THREADS)]  # as long as each other
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda users: self._fill_shares(train, users, shares), parts))
        return shares

    def _fill_shares(self, train: Sequences, users: np.ndarray, shares: np.ndarray) -> None:
        """:meth:`target_shares` of ``users`` (longest first), written into ``shares``.

        The decayed sum of the last ``window`` items' weight rows follows the recursion ``s_t = decay s_(t-1) +
        W[x_t] - decay^window W[x_(t-window)]``, advanced for all users at once, one position at a time; the users
        still reading at a position are a prefix of ``users``, so each step works on views."""
        starts, lengths, folds = train.offsets[users], train.lengths[users], self.fold_of_user[users]
        n_items = self.weights.shape[0]
        state = np.zeros((len(users), n_items), dtype=np.float32)
        unread = np.ones((len(users), n_items), dtype=np.float32)
        dropped = np.float32(self.decay ** self.window)
        for position in range(int(lengths.max(initial=0)) - 1):
            count = int(np.count_nonzero(lengths > position + 1))  # users with a next item to score: a prefix
            rows, flat = np.arange(count), starts[:count] + position
            item = train.items[flat]
            state[:count] *= np.float32(self.decay)
            state[:count] += self.fold_weights[folds[:count], item]
            if position >= self.window:
                state[:count] -= dropped * self.fold_weights[folds[:count], train.items[flat - self.window]]
            unread[rows, item] = 0.0
            outputs = np.maximum(state[:count], 0.0)
            outputs *= unread[:count]
            total = outputs.sum(axis=1)
            picked = outputs[rows, train.items[flat + 1]]
            shares[flat + 1] = np.where(total > 0, picked / np.maximum(total, 1e-30), 0.0)


def slist_blended(network: keras.Model, prior: SlistPrior, share: float) -> keras.Model:
    """A scoring model whose output is ``log((1 - share) p + share q)``: ``p`` the network's softmax and ``q``
    SLIST's distribution (``prior.weights``), both over the items the history has not read (:class:`SlistBlend`).
    Its softmax is the blend; it saves, loads, evaluates and serves as one ``.keras`` file, as a network does."""
    if reads_ratings(network):
        raise ValueError("slist_weight is for networks that read the items only (rating_input=false)")
    items = keras.Input(shape=(None,), dtype="int32", name="items")
    blend = SlistBlend(prior.weights.shape[0], prior.window, prior.decay, share, name="slist_blend")
    output = blend([items, network(items)])
    blend.set_weights([prior.weights])
    return keras.Model(items, output, name=f"{network.name}_slist")
