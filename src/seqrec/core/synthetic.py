"""MovieLens-shaped synthetic ratings of any size, to measure how the project scales without the real releases.

The shape of MovieLens-25M (162,541 users, 59,047 movies, 25,000,095 ratings): every user has at least 20 ratings
and activity is heavy-tailed (log-normal), movie popularity a Zipf–Mandelbrot law, ratings are half stars with
MovieLens' skew to 3–4, and users rate in sessions whose ratings often share a second (bursts). Written as
``ratings.csv`` (``userId,movieId,rating,timestamp``, sorted by user then movie, as MovieLens ships it), which
:func:`seqrec.core.ratings.read_ratings` and ``seqrec prepare`` read like the real file. Vectorised throughout:
25M ratings take one to two minutes and 2 GB on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqrec.core.ratings import RatingsTable

ML25M_SHAPE = {"n_users": 162_541, "n_items": 59_047, "n_ratings": 25_000_095}
MIN_PER_USER = 20  # MovieLens keeps users with at least 20 ratings
STARS = np.arange(1, 11) / 2  # 0.5 .. 5.0
STAR_SHARES = np.array([1.6, 3.3, 1.9, 6.8, 5.7, 19.6, 13.0, 26.6, 8.5, 14.5])  # ML-25M's, in %
BURST_SHARE = 0.5  # of a session's ratings, the share rated in the same second as the one before
START, END = 789_652_009, 1_574_327_703  # the first and last timestamps of ML-25M


def user_activity(n_users: int, n_ratings: int, rng: np.random.Generator, cap: int) -> np.ndarray:
    """Ratings per user: at least :data:`MIN_PER_USER`, log-normal above it (MovieLens' median is about half its
    mean), at most ``cap``, summing to ``n_ratings`` exactly."""
    if not MIN_PER_USER * n_users <= n_ratings <= cap * n_users:
        raise ValueError(f"n_ratings must be between {MIN_PER_USER} and {cap} per user "
                         f"({MIN_PER_USER * n_users}..{cap * n_users}), got {n_ratings}")
    extra = rng.lognormal(mean=0.0, sigma=1.3, size=n_users)
    counts = MIN_PER_USER + np.floor(extra / extra.sum() * (n_ratings - MIN_PER_USER * n_users)).astype(np.int64)
    counts = np.minimum(counts, cap)
    while (short := n_ratings - int(counts.sum())) > 0:  # what flooring and the cap took: one more to that many
        room = np.flatnonzero(counts < cap)
        counts[rng.choice(room, size=min(short, len(room)), replace=False)] += 1
    return counts


def popularity(n_items: int, exponent: float = 1.0, head_share: float = 0.0033) -> np.ndarray:
    """Zipf–Mandelbrot shares ``1 / (rank + q) ** exponent`` (most popular first), with the offset ``q`` that gives
    the top movie ``head_share`` of all ratings (0.33 % in ML-1M and ML-25M alike): a plain Zipf law would give it
    8 % of 25M ratings, more than there are users to rate it."""
    ranks = np.arange(1, n_items + 1, dtype=np.float64)

    def shares(offset: float) -> np.ndarray:
        weights = 1.0 / (ranks + offset) ** exponent
        return weights / weights.sum()

    low, high = 0.0, float(n_items)
    if shares(low)[0] <= head_share:
        return shares(low)
    for _ in range(60):  # bisection: the head's share falls as the offset grows
        middle = (low + high) / 2
        low, high = (middle, high) if shares(middle)[0] > head_share else (low, middle)
    return shares(high)


def movielens_like(n_users: int, n_items: int, n_ratings: int, seed: int = 0,
                   zipf_exponent: float = 1.0) -> RatingsTable:
    """A ratings table of MovieLens' shape (see the module docstring): ``n_ratings`` rows, no user with more than
    half the catalogue."""
    if min(n_users, n_items) < 1 or n_items < 2 * MIN_PER_USER:
        raise ValueError(f"expected at least 1 user and {2 * MIN_PER_USER} items, got {n_users} and {n_items}")
    rng = np.random.default_rng(seed)
    counts = user_activity(n_users, n_ratings, rng, cap=n_items // 2)
    shares = popularity(n_items, zipf_exponent)
    movie_ids = np.sort(rng.choice(np.arange(1, 3 * n_items + 1), size=n_items, replace=False))
    by_rank = rng.permutation(n_items)  # which movie holds each popularity rank
    user, item = distinct_draws(counts, shares, rng)
    item = by_rank[item]
    timestamp = session_times(counts, rng)
    rating = rng.choice(STARS, size=len(user), p=STAR_SHARES / STAR_SHARES.sum()).astype(np.float32)
    order = np.lexsort((movie_ids[item], user))  # MovieLens' file order: by user, then by movie
    return RatingsTable(user=user[order] + 1, movie=movie_ids[item][order], rating=rating[order],
                        timestamp=timestamp[order])


def distinct_draws(counts: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user, popularity rank) pairs: ``counts[u]`` distinct ranks per user, drawn by ``shares`` without
    replacement, grouped by user. Light users draw with replacement in rounds (repeats are rare, each round tops
    up the users whose repeats were dropped); heavy ones (over 5 % of the catalogue) take the top ``counts[u]``
    Gumbel-perturbed log-shares, the exact weighted draw without replacement."""
    n_items = len(shares)
    heavy = counts > max(n_items // 20, 1)
    user, item = light_draws(np.where(heavy, 0, counts), shares, rng)
    log_shares = np.log(shares)
    heavy_users = np.flatnonzero(heavy)
    heavy_items = [np.argpartition(-(log_shares + rng.gumbel(size=n_items)), counts[u] - 1)[:counts[u]]
                   for u in heavy_users]  # one catalogue-long draw per heavy user: a few hundred users
    user = np.concatenate([user, np.repeat(heavy_users, counts[heavy_users])])
    item = np.concatenate([item, *heavy_items])
    order = np.argsort(user, kind="stable")
    return user[order], item[order]


def light_draws(counts: np.ndarray, shares: np.ndarray, rng: np.random.Generator,
                rounds: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Distinct draws by rounds of draws with replacement (see :func:`distinct_draws`), in draw order per user."""
    n_items = len(shares)
    user, item = np.zeros(0, np.int64), np.zeros(0, np.int64)
    missing = counts.copy()
    for _ in range(rounds):
        if not missing.any():
            return user, item
        extra = np.ceil(missing * 1.1).astype(np.int64) + (missing > 0)
        user = np.concatenate([user, np.repeat(np.arange(len(counts), dtype=np.int64), extra)])
        item = np.concatenate([item, rng.choice(n_items, size=int(extra.sum()), p=shares)])
        _, first = np.unique(user * n_items + item, return_index=True)  # a repeated pair keeps its first draw
        first.sort()  # draws are appended user-grouped per round: sorting keeps earlier rounds first per user...
        first = first[np.argsort(user[first], kind="stable")]  # ...once grouped by user again
        user, item = user[first], item[first]
        rank_in_user = np.arange(len(user)) - np.searchsorted(user, user)
        keep = rank_in_user < counts[user]
        user, item = user[keep], item[keep]
        missing = counts - np.bincount(user, minlength=len(counts))
    raise RuntimeError(f"{int(missing.sum())} ratings could not be drawn without repeats in {rounds} rounds")


def session_times(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Timestamps of each user's ratings in draw order (non-decreasing per user): sessions days apart, ratings a
    minute or so apart inside a session, and :data:`BURST_SHARE` of them in the second of the one before."""
    n = int(counts.sum())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gaps = np.where(rng.random(n) < BURST_SHARE, 0, np.ceil(rng.exponential(60.0, n))).astype(np.int64)
    new_session = rng.random(n) < 0.05
    gaps[new_session] = np.ceil(rng.exponential(30 * 86_400.0, int(new_session.sum()))).astype(np.int64)
    gaps[starts[counts > 0]] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts], counts)  # from each user's first rating
    span = elapsed[np.maximum(starts + counts - 1, 0)] if n else np.zeros(len(counts), np.int64)
    first = START + (rng.random(len(counts)) * np.maximum(END - START - span, 1)).astype(np.int64)
    return np.repeat(first, counts) + elapsed


def write_ratings_csv(table: RatingsTable, path: Path, chunk: int = 2_000_000) -> None:
    """``userId,movieId,rating,timestamp`` with a header, in chunks (a 25M-row file never sits in memory as text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii", newline="\n") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for begin in range(0, len(table), chunk):
            rows = slice(begin, begin + chunk)
            columns = np.column_stack([table.user[rows], table.movie[rows], table.rating[rows].astype(np.float64),
                                       table.timestamp[rows]])
            np.savetxt(out, columns, fmt=["%d", "%d", "%.1f", "%d"], delimiter=",")
