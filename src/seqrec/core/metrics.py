"""Ranking metrics of the paper's protocol, computed for all users at once.

Every function takes the top-k recommendation matrix (users x k, best first) and the users' goal
items (a CSR :class:`~seqrec.core.data.Sequences`, first goal item first). Metric names follow the paper:
sps@k (short-term prediction success: the *first* goal item is in the top-k), recall@k, precision@k,
ndcg@k, mrr@k, user coverage (share of users with at least one hit), item coverage (number of
distinct correctly recommended items) and blockbuster share (share of hits that are among the 1 %
most popular training items).

Beyond accuracy, as in the Keras dot-product recommender tutorial: diversity (mean pairwise dissimilarity
of a user's top-k, 1 - cosine of the items' vectors) and novelty (mean self-information -log2 of an
item's share of the training interactions). The item vectors are the items' training raters
(:func:`seqrec.core.data.item_similarity`), one space for every method, neural or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqrec.core.data import Sequences


def top_k(scores: np.ndarray, k: int, exclude: Sequences | None = None) -> np.ndarray:
    """Indices of the k best items per row, best first; items in ``exclude`` (the inputs) never appear."""
    n_users, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be between 1 and the number of items ({n_items}), got {k}")
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        scores[exclude.row_of_interaction(), exclude.items] = -np.inf
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def hit_matrix(recommended: np.ndarray, goals: Sequences, n_items: int) -> np.ndarray:
    """Boolean (users x k): is the recommendation at each rank one of the user's goal items?"""
    return pairs_in(recommended, goals.row_of_interaction(), goals.items, n_items)


def pairs_in(recommended: np.ndarray, rows: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Boolean like ``recommended`` (users x k): is (user, item) one of the pairs (``rows``, ``items``)? Looked up
    as sorted pair keys, so memory grows with the pairs and the top-k, never with users x catalogue (10,000 users
    of a 59,000-movie catalogue would take 590 MB as a mask)."""
    keys = np.unique(rows.astype(np.int64) * n_items + items)
    wanted = np.arange(len(recommended), dtype=np.int64)[:, None] * n_items + recommended
    found = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    return keys[found] == wanted if len(keys) else np.zeros(recommended.shape, dtype=bool)


def top_popular(popularity: np.ndarray, share: float = 0.01) -> np.ndarray:
    """Ids of the ``share`` most popular items (at least one): the paper's "blockbusters"."""
    count = max(1, int(round(share * len(popularity))))
    return np.argsort(-popularity, kind="stable")[:count]


def diversity(recommended: np.ndarray, similarity: np.ndarray) -> float:
    """Mean over users of the mean pairwise dissimilarity (1 - similarity) of their top-k."""
    k = recommended.shape[1]
    if k < 2:
        return 0.0
    pairs = similarity[recommended[:, :, None], recommended[:, None, :]]
    off_diagonal = ~np.eye(k, dtype=bool)
    return float(np.mean(1.0 - pairs[:, off_diagonal]))


def novelty(recommended: np.ndarray, popularity: np.ndarray) -> float:
    """Mean self-information ``-log2(share of training interactions)`` of the recommended items.

    Unseen items (popularity 0) count as seen once, so the figure stays finite.
    """
    share = np.maximum(popularity, 1) / max(float(popularity.sum()), 1.0)
    return float(np.mean(-np.log2(share[recommended])))


def ranking_metrics(recommended: np.ndarray, goals: Sequences, n_items: int,
                    popularity: np.ndarray | None = None, similarity: np.ndarray | None = None,
                    inputs: Sequences | None = None) -> dict[str, float]:
    """All metrics at k = ``recommended.shape[1]`` as fractions in [0, 1] (item coverage is a count).

    ``popularity`` adds blockbuster share and novelty, ``similarity``
    (:func:`seqrec.core.data.item_similarity`) diversity, the users' ``inputs`` with the goals' times the
    tie-aware metrics (:func:`burst_metrics`).

    Users with an empty goal are not allowed: the half split always leaves at least one goal item.
    """
    k = recommended.shape[1]
    lengths = goals.lengths
    if len(goals) == 0 or lengths.min() == 0:
        raise ValueError("every evaluated user needs at least one goal item")
    hits = hit_matrix(recommended, goals, n_items)
    first_goal = goals.items[goals.offsets[:-1]]
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(lengths, k) - 1]
    ranks = np.argmax(hits, axis=1) + 1
    metrics = {
        f"sps@{k}": float(np.mean(np.any(recommended == first_goal[:, None], axis=1))),
        f"recall@{k}": float(np.mean(n_hits / lengths)),
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"ndcg@{k}": float(np.mean((hits * discounts).sum(axis=1) / ideal)),
        f"mrr@{k}": float(np.mean(np.where(n_hits > 0, 1.0 / ranks, 0.0))),
        "user_coverage": float(np.mean(n_hits > 0)),
        "item_coverage": float(len(np.unique(recommended[hits]))),
    }
    if popularity is not None:
        blockbusters = np.isin(recommended[hits], top_popular(popularity))
        metrics["blockbuster_share"] = float(blockbusters.mean()) if blockbusters.size else 0.0
        metrics["novelty"] = novelty(recommended, popularity)
    if similarity is not None:
        metrics["diversity"] = diversity(recommended, similarity)
    if inputs is not None:
        metrics.update(burst_metrics(recommended, inputs, goals))
    return metrics


def burst_metrics(recommended: np.ndarray, inputs: Sequences, goals: Sequences) -> dict[str, float]:
    """Tie-aware metrics, where the goal's times are known (``goals.times``; -1 = unknown).

    MovieLens users rate in same-second bursts whose inner order is arbitrary, so the *first* goal item is often
    one of several rated in that second. ``sps_tie@k``: a hit when any goal item of the first goal item's second
    (the "next burst") is in the top-k. ``cut_in_burst``: share of users whose first goal item shares its second
    with their last input item (the cut falls inside a burst, where only the order inside the second tells which
    item is next); ``sps_in_burst@k``: share of users that are an sps hit *and* cut inside a burst — what part
    of sps@k rests on that order. Empty when the times are unknown.
    """
    if goals.times is None:
        return {}
    k = recommended.shape[1]
    rows = goals.row_of_interaction()
    first_time = goals.times[goals.offsets[:-1]]
    first_position = np.zeros(len(goals.items), dtype=bool)
    first_position[goals.offsets[:-1]] = True
    in_next_burst = first_position | ((goals.times == first_time[rows]) & (goals.times >= 0))
    n_items = int(max(recommended.max(), goals.items.max())) + 1
    burst_hits = pairs_in(recommended, rows[in_next_burst], goals.items[in_next_burst], n_items)
    metrics = {f"sps_tie@{k}": float(np.mean(burst_hits.any(axis=1)))}
    if inputs.times is not None:
        last_input_time = inputs.times[inputs.offsets[1:] - 1]
        in_burst = (last_input_time == first_time) & (first_time >= 0)
        sps_hit = np.any(recommended == goals.items[goals.offsets[:-1]][:, None], axis=1)
        metrics["cut_in_burst"] = float(np.mean(in_burst))
        metrics[f"sps_in_burst@{k}"] = float(np.mean(sps_hit & in_burst))
    return metrics


HALVES_SEED = 0  # one draw of the validation halves for every run, so that runs compare on the same users


def validation_halves(n_users: int) -> np.ndarray:
    """Whether each of ``n_users`` validation users is in half A (the others form half B): a fixed random draw.

    The epoch kept is the best of many on the validation users, and the same users score it, so its figure is
    lifted by the pick, the more the more epochs there are to pick from. One half picking and the other scoring
    (:func:`held_out_pick`) measures the rule without that lift."""
    in_a = np.zeros(n_users, dtype=bool)
    in_a[np.random.default_rng(HALVES_SEED).permutation(n_users)[:(n_users + 1) // 2]] = True
    return in_a


def held_out_pick(curve_a: Sequence[float], curve_b: Sequence[float], n_a: int, n_b: int) -> float:
    """A metric of the epoch-keeping rule on users who did not pick the epoch: half B's figure at the epoch whose
    half-A figure is the first best (as early stopping keeps), and half A's at half B's pick, pooled over their
    ``n_b`` and ``n_a`` users. ``curve_a`` and ``curve_b``: the halves' figures per epoch."""
    a, b = np.asarray(curve_a, dtype=float), np.asarray(curve_b, dtype=float)
    return float((n_b * b[np.argmax(a)] + n_a * a[np.argmax(b)]) / (n_a + n_b))


def format_metric(name: str, value: float) -> str:
    """A metric for people: rates in percent, item coverage as a count, novelty in bits."""
    if name == "item_coverage":
        return f"{value:.0f}"
    if name == "novelty":
        return f"{value:.2f} bits"
    return f"{100 * value:.2f} %"


def mlflow_name(metric: str, prefix: str = "") -> str:
    """MLflow refuses '@' in metric keys: ``sps@10`` is logged as ``sps_at_10``."""
    return prefix + metric.replace("@", "_at_")


def metric_name(logged: str, prefix: str = "") -> str:
    """The inverse of :func:`mlflow_name`: ``val_sps_at_10`` with prefix ``val_`` is ``sps@10``."""
    return logged.removeprefix(prefix).replace("_at_", "@")
