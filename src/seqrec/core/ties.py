"""Same-second ratings: their order inside a second, and the times that tell where the seconds are.

MovieLens users rate in bursts: many ratings share one Unix second, and their order inside it is arbitrary.
The authors' files got theirs from a non-stable quicksort by time of data listed by MovieID. A
:class:`TieOrder` re-draws that order (shuffled, or by MovieID with noise); the times come from the split's
``train_set_timestamps`` or, for the authors' split, from the raw MovieLens ratings next to it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import warnings
from dataclasses import dataclass

import numpy as np

from seqrec.core.data import ITEM_MAPPING_FILE, TIMESTAMP_FILES, DataError, Sequences, Split, read_timestamps
from seqrec.core.ratings import RatingsTable, read_ratings


def tie_groups(sequences: Sequences, timestamps: np.ndarray) -> np.ndarray:
    """Group id per interaction: consecutive items of one user with the same known second share one."""
    rows = sequences.row_of_interaction()
    tied = (timestamps[1:] == timestamps[:-1]) & (rows[1:] == rows[:-1]) & (timestamps[1:] >= 0)
    return np.cumsum(np.concatenate([[True], ~tied]))


TIE_ORDERS = ("file", "shuffle", "movie")


def rank_within_groups(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of every interaction's key inside its tie group (ties of keys keep file order)."""
    order = np.lexsort((keys, groups))
    ranks = np.empty(len(groups), dtype=np.float64)
    ranks[order] = np.arange(len(groups)) - np.searchsorted(groups[order], groups[order])
    return ranks


@dataclass(frozen=True)
class TieOrder:
    """A way to re-draw the order inside same-second groups of ratings (``groups`` from :func:`tie_groups`).

    ``ranks=None`` shuffles uniformly. Otherwise each group is sorted by ``ranks + N(0, noise)``: with
    MovieID ranks and ``noise=0.8`` this mimics the authors' files, where a non-stable quicksort by time
    of data listed by MovieID left 72-87 % of same-second neighbours in increasing MovieID order.
    """

    groups: np.ndarray
    ranks: np.ndarray | None = None
    noise: float = 0.0

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """A draw of the flat interaction order (a permutation that stays inside each group)."""
        if self.ranks is None:
            key = rng.random(len(self.groups))
        elif self.noise > 0:
            key = self.ranks + rng.normal(0.0, self.noise, len(self.groups))
        else:
            key = self.ranks
        return np.lexsort((key, self.groups))  # groups increase along the flat array: users stay in place

    def apply(self, sequences: Sequences, rng: np.random.Generator) -> Sequences:
        return sequences.reordered(self.order(rng))


def tie_order(name: str, sequences: Sequences, timestamps: np.ndarray | None, movie_ids: np.ndarray | None,
              noise: float = 0.0) -> TieOrder | None:
    """The :class:`TieOrder` called ``name`` (see :data:`TIE_ORDERS`), or None for file order.

    Falls back to ``shuffle`` when ``movie`` is asked for without a MovieID mapping, and to file order
    without timestamps (the caller logs which order was used).
    """
    if name not in TIE_ORDERS:
        raise ValueError(f"tie order must be one of {TIE_ORDERS}, got {name!r}")
    if name == "file" or timestamps is None:
        return None
    groups = tie_groups(sequences, timestamps)
    if name == "shuffle" or movie_ids is None:
        return TieOrder(groups)
    return TieOrder(groups, rank_within_groups(groups, movie_ids[sequences.items]), noise)


def tie_order_name(order: TieOrder | None) -> str:
    """Which of :data:`TIE_ORDERS` a :class:`TieOrder` (or None) is."""
    return "file" if order is None else "shuffle" if order.ranks is None else "movie"


USER_MAPPING_FILE = "user_id_mapping.tsv"  # user_index, user_id (MovieLens), set: the authors' split has it
RAW_RATINGS_NEXT_TO_SPLIT = ("ratings.dat", "ratings.partial.dat")  # looked up in <split>/../ml-1m/


TRAIN_TIMES_SOURCES = "train_set_timestamps, or raw ratings in ../ml-1m/ with the id mappings"  # where they are read


def train_timestamps(split: Split) -> np.ndarray | None:
    """Unix time of every training interaction (-1 where unknown), or None when there is no source.

    The split's own ``train_set_timestamps`` (written by :func:`prepare_split`) comes first; the
    authors' split has none, so its times are joined from the raw MovieLens ratings next to it
    (``../ml-1m/``) through ``user_id_mapping.tsv`` and ``item_id_mapping.tsv``.
    """
    return set_timestamps(split, "train")


def raw_timestamps(split: Split, sequences: Sequences) -> np.ndarray | None:
    """Unix time of every interaction of ``sequences`` (users of ``split``; -1 where unknown), joined from
    the raw MovieLens ratings next to the authors' split; None when they or the id mappings are missing."""
    users_file = split.directory / USER_MAPPING_FILE
    raw = next((path for path in (split.directory.parent / "ml-1m" / name for name in RAW_RATINGS_NEXT_TO_SPLIT)
                if path.is_file()), None)
    if split.catalogue is None or raw is None or not users_file.is_file():
        return None
    with users_file.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    try:
        movielens_user = np.zeros(max(int(r["user_index"]) for r in rows) + 1, dtype=np.int64)
        movielens_user[[int(r["user_index"]) for r in rows]] = [int(r["user_id"]) for r in rows]
    except (KeyError, ValueError, TypeError):
        raise DataError(users_file, None, "columns user_index and user_id holding integers") from None
    table = _raw_ratings(str(raw))
    width = int(max(table.movie.max(), split.catalogue.movie_ids.max())) + 1
    raw_keys = table.user * width + table.movie
    by_key = np.argsort(raw_keys, kind="stable")
    raw_keys, raw_times = raw_keys[by_key], table.timestamp[by_key]
    keys = (movielens_user[sequences.user_ids[sequences.row_of_interaction()]] * width
            + split.catalogue.movie_ids[sequences.items])
    found = np.minimum(np.searchsorted(raw_keys, keys), len(raw_keys) - 1)
    return np.where(raw_keys[found] == keys, raw_times[found], -1)


@functools.lru_cache(maxsize=1)
def _raw_ratings(path: str) -> RatingsTable:
    """The raw ratings next to the authors' split, read once per process (each set's times are joined from them)."""
    return read_ratings(path)


def set_timestamps(split: Split, name: str) -> np.ndarray | None:
    """Unix times of set ``name`` (train, val or test; -1 where unknown) from the split's own
    ``<name>_set_timestamps`` or, for the authors' split, the raw ratings; None when neither exists."""
    sequences = {"train": split.train, "val": split.val, "test": split.test}[name]
    own = split.directory / TIMESTAMP_FILES[name]
    return read_timestamps(own, sequences) if own.is_file() else raw_timestamps(split, sequences)


def with_times(split: Split) -> Split:
    """``split`` with the Unix times of its validation and test users attached (``Sequences.times``) where they
    are known: the metrics then add their tie-aware variants (:func:`seqrec.core.metrics.burst_metrics`)."""
    times = {name: set_timestamps(split, name) for name in ("val", "test")}
    return dataclasses.replace(split, **{name: dataclasses.replace(getattr(split, name), times=stamps)
                                         for name, stamps in times.items() if stamps is not None})


def train_tie_order(split: Split, name: str, noise: float = 0.0,
                    timestamps: np.ndarray | None = None) -> TieOrder | None:
    """Tie order ``name`` (see :data:`TIE_ORDERS`) of the training users; warns on a fallback.

    ``timestamps`` saves reading them again when the caller has :func:`train_timestamps` already.
    """
    if name == "file":
        return None
    timestamps = train_timestamps(split) if timestamps is None else timestamps
    movie_ids = split.catalogue.movie_ids if split.catalogue is not None else None
    ties = tie_order(name, split.train, timestamps, movie_ids, noise)
    if tie_order_name(ties) != name:
        missing = (f"timestamps ({TRAIN_TIMES_SOURCES})"
                   if timestamps is None else f"{ITEM_MAPPING_FILE} (MovieIDs)")
        warnings.warn(f"tie order {name}: {split.directory} lacks {missing}; same-second training ratings "
                      f"are in {tie_order_name(ties)} order", stacklevel=2)
    return ties


def fitted_in_tie_order(split: Split, ties: TieOrder | None, seed: int = 0) -> Split:
    """``split`` with its training users' same-second ratings put in ``ties``' order once (drawn with ``seed``), as
    the baselines are fitted; ``None`` (file order) leaves the split as it is."""
    if ties is None:
        return split
    return dataclasses.replace(split, train=ties.apply(split.train, np.random.default_rng(seed)))
