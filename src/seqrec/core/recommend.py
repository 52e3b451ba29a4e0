"""Recommendations for new users from a trained network and its catalogue: the logic behind serving.

RNN-CCE has no user embedding: the recurrent state after a user's history *is* the user, so a brand-new
user's few ratings are enough to recommend. :func:`recommend_movies` maps histories of MovieLens MovieIDs to
the top-k movies; :func:`parse_requests` reads a request table and refuses a bad one with :class:`RequestError`.
The MLflow pyfunc that serves them is :mod:`seqrec.experiment.serve`.

Input: a table with a column ``items`` (a list of MovieIDs, oldest first), an optional column ``ratings``
(the stars given to those movies, integers 1-5, in the same order; read by a model trained with
``rating_input``, missing or 0 means unknown) and an optional column ``k`` (default 10). Output: one row
per input row with ``movie_ids``, ``scores`` and ``titles`` (best first, the history's movies never
recommended), ``popularity_fallback``, ``unknown_movie_ids`` and ``warning``.

Bad-input policy (one request is never a crash of the server):

* MovieIDs outside the catalogue are ignored, listed in ``unknown_movie_ids`` and named in ``warning``;
* an empty history (also after dropping unknown ids) gets the most popular training movies, flagged by
  ``popularity_fallback`` and ``warning``;
* a history that is not a list of integers, a ``k`` that is not an integer in 1..catalogue size, a
  ``ratings`` list that is not as long as ``items`` or holds a value outside 0..5, a
  missing ``items`` column or an unexpected column is refused as a whole request (:class:`RequestError`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.core.data import DataError, ItemCatalogue, RequestError, Sequences, read_item_mapping
from seqrec.core.metrics import top_k
from seqrec.core.model import keras
from seqrec.core.scoring import score_users

DEFAULT_K = 10
INPUT_COLUMNS = ("items", "ratings", "k")
OUTPUT_COLUMNS = ("movie_ids", "scores", "titles", "popularity_fallback", "unknown_movie_ids", "warning")
SCORING_BATCH = 64  # users per forward pass (length-sorted, so short histories are not padded to long ones)
MAX_HISTORY = 200  # latest movies the network reads (all of them are still excluded from the recommendations)
_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ServingCatalogue:
    """What serving needs besides the network: MovieIDs and titles per item index, training popularity."""

    movie_ids: np.ndarray  # (n_items,) int64
    titles: np.ndarray  # (n_items,) object (str)
    popularity: np.ndarray  # (n_items,) float64: share of the training ratings

    @classmethod
    def build(cls, catalogue: ItemCatalogue | None, popularity: np.ndarray) -> ServingCatalogue:
        """From a split's catalogue (None: MovieIDs are the item indices, no titles) and training counts."""
        n_items = len(popularity)
        movie_ids = np.arange(n_items, dtype=np.int64) if catalogue is None else np.asarray(catalogue.movie_ids)
        titles = [""] * n_items if catalogue is None else catalogue.titles
        if len(movie_ids) != n_items or len(np.unique(movie_ids)) != n_items:
            raise ValueError(f"expected {n_items} distinct MovieIDs (one per item), got {len(movie_ids)} "
                             f"({len(np.unique(movie_ids))} distinct)")
        counts = np.asarray(popularity, dtype=np.float64)
        return cls(movie_ids.astype(np.int64), np.asarray(titles, dtype=object), counts / max(counts.sum(), 1.0))

    @property
    def n_items(self) -> int:
        return len(self.movie_ids)

    def lookup(self, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Item index of each MovieID and whether it is in the catalogue (vectorised binary search)."""
        order = np.argsort(self.movie_ids, kind="stable")
        position = np.minimum(np.searchsorted(self.movie_ids[order], movie_ids), self.n_items - 1)
        index = order[position]
        return index, self.movie_ids[index] == movie_ids


# --- input parsing (no model, no MLflow: fuzzed on its own) ------------------------------------------------


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_items(value: object, row: int) -> np.ndarray:
    """One row's history as int64 MovieIDs; integral floats (1193.0) are accepted, anything else refused."""
    expected = f"row {row}: 'items' must be a list of integer MovieIDs (oldest first)"
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        raise RequestError(f"{expected}, got {_shown(value)}")
    if isinstance(value, (list, tuple)) and any(issubclass(kind, (bool, np.bool_)) for kind in set(map(type, value))):
        raise RequestError(f"{expected}, got a boolean in {_shown(value)}")  # numpy would read True as 1
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, huge ints
        raise RequestError(f"{expected}, got {_shown(value)}") from None
    if array.ndim != 1:
        raise RequestError(f"{expected}, got a nested list {_shown(value)}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind == "u" and array.max() > _INT64_MAX:
        raise RequestError(f"{expected} (64-bit), got {_shown(value)}")
    if array.dtype.kind == "f":  # beyond 2**53 a float (or an int numpy turned into one) is not exact
        integral = np.isfinite(array) & (np.abs(array) < 2.0**53)
        integral[integral] = array[integral] == np.round(array[integral])
        if not integral.all():
            raise RequestError(f"{expected}, got {_shown(array[~integral][0].item())} in {_shown(value)}")
    elif array.dtype.kind not in "iu":  # bool, str, object (None, mixed types), ...
        raise RequestError(f"{expected}, got {_shown(value)}")
    return array.astype(np.int64)


def _missing(value: object) -> bool:
    """None or NaN: a cell the request left empty."""
    return value is None or (np.ndim(value) == 0 and not isinstance(value, (str, bytes)) and pd.isna(value))


def parse_ratings(value: object, row: int, n_movies: int) -> np.ndarray:
    """One row's stars (float32, one per history movie); missing means all unknown (0)."""
    if _missing(value):
        return np.zeros(n_movies, dtype=np.float32)
    expected = f"row {row}: 'ratings' must be a list of {n_movies} numbers from 0 (unknown) to 5, one per movie of 'items'"
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        raise RequestError(f"{expected}, got {_shown(value)}")
    if any(isinstance(star, (bool, np.bool_)) for star in value):
        raise RequestError(f"{expected}, got a boolean in {_shown(value)}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise RequestError(f"{expected}, got {_shown(value)}") from None
    if array.ndim != 1 or len(array) != n_movies or not np.all((array >= 0) & (array <= 5)):
        raise RequestError(f"{expected}, got {_shown(value)}")
    return array.astype(np.float32)


def parse_k(value: object, row: int, n_items: int) -> int:
    """One row's cut-off: missing (None/NaN) means :data:`DEFAULT_K`; else an integer in 1..``n_items``."""
    if _missing(value):
        return min(DEFAULT_K, n_items)
    expected = f"row {row}: 'k' must be an integer between 1 and {n_items} (the catalogue size)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise RequestError(f"{expected}, got {_shown(value)}")
    integral = isinstance(value, numbers.Integral) or (math.isfinite(float(value)) and float(value).is_integer())
    if not integral or not 1 <= value <= n_items:
        raise RequestError(f"{expected}, got {_shown(value)}")
    return int(value)


def parse_requests(model_input: object, n_items: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Histories (MovieIDs), their ratings and the cut-offs of every row of a request table (DataFrame, dict or
    list of dicts)."""
    if isinstance(model_input, (dict, list)):
        try:
            model_input = pd.DataFrame(model_input)
        except (ValueError, TypeError) as error:
            raise RequestError(f"expected a table with columns {INPUT_COLUMNS}, got {_shown(model_input)}: "
                               f"{error}") from None
    if not isinstance(model_input, pd.DataFrame):
        raise RequestError(f"expected a table (pandas DataFrame) with columns {INPUT_COLUMNS}, "
                           f"got {type(model_input).__name__}")
    columns = [str(column) for column in model_input.columns]
    if "items" not in columns:
        raise RequestError(f"expected a column 'items' (list of MovieIDs, oldest first), got columns {columns}")
    unexpected = sorted(set(columns) - set(INPUT_COLUMNS))
    if unexpected or len(columns) != len(set(columns)):
        raise RequestError(f"expected only the columns {INPUT_COLUMNS}, got {columns}")
    histories = [parse_items(value, row) for row, value in enumerate(model_input["items"].tolist())]
    stars = model_input["ratings"].tolist() if "ratings" in columns else [None] * len(histories)
    ratings = [parse_ratings(value, row, len(history)) for row, (value, history) in enumerate(zip(stars, histories))]
    k_values = model_input["k"].tolist() if "k" in columns else [None] * len(histories)
    ks = np.array([parse_k(value, row, n_items) for row, value in enumerate(k_values)], dtype=np.int64)
    return histories, ratings, ks


# --- recommendation ------------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def recommend_movies(model: keras.Model, catalogue: ServingCatalogue, histories: list[np.ndarray],
                     ks: np.ndarray, batch_size: int = SCORING_BATCH, max_len: int = MAX_HISTORY,
                     ratings: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Top-k MovieIDs per history, all rows scored together; the history's own movies are never returned.

    Scores are the network's next-item probabilities (softmax over the catalogue); rows whose history is
    empty once unknown MovieIDs are dropped get the training popularity shares instead (flagged). The
    network reads the latest ``max_len`` movies of a history: on the test users the last 50, 100 or 200
    items score the same sps@10 as the whole input half, and it bounds the cost of a long history.
    ``ratings`` (per history, 0 = unknown; None: all unknown) reach only a model trained with ``rating_input``.
    """
    n_rows = len(histories)
    if n_rows == 0:
        return pd.DataFrame({column: [] for column in OUTPUT_COLUMNS})
    lengths = np.array([len(history) for history in histories], dtype=np.int64)
    flat = np.concatenate(histories).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(n_rows), lengths)
    index, known = catalogue.lookup(flat)
    known_counts = np.bincount(rows[known], minlength=n_rows)
    stars = np.concatenate(ratings) if ratings is not None and len(flat) else np.zeros(len(flat))
    seen = Sequences(np.arange(n_rows), index[known].astype(np.int32), stars[known].astype(np.float32),
                     np.concatenate([[0], np.cumsum(known_counts)]).astype(np.int64))
    unknown = np.split(flat[~known], np.cumsum(np.bincount(rows[~known], minlength=n_rows))[:-1])

    fallback = known_counts == 0
    scores = np.broadcast_to(catalogue.popularity, (n_rows, catalogue.n_items)).astype(np.float32)
    scored = np.flatnonzero(~fallback)
    if len(scored):  # the fallback rows hold no known item: the seen items are exactly the scored rows'
        users = Sequences(scored, seen.items, seen.ratings,
                          np.concatenate([[0], np.cumsum(known_counts[scored])]).astype(np.int64))
        scores[scored] = _softmax(score_users(model, users, batch_size, max_len=max_len, compiled=True))
    best = top_k(scores, int(ks.max()), exclude=seen)
    seen_mask = np.zeros(scores.shape, dtype=bool)
    seen_mask[seen.row_of_interaction(), seen.items] = True
    shown = ~np.take_along_axis(seen_mask, best, axis=1) & (np.arange(best.shape[1]) < ks[:, None])
    counts = shown.sum(axis=1)  # excluded items sort last, so the shown ones are a prefix
    ids, titles = catalogue.movie_ids[best], catalogue.titles[best]
    values = np.take_along_axis(scores, best, axis=1).astype(np.float64)
    return pd.DataFrame({
        "movie_ids": [ids[row, :count].tolist() for row, count in enumerate(counts)],
        "scores": [values[row, :count].tolist() for row, count in enumerate(counts)],
        "titles": [titles[row, :count].tolist() for row, count in enumerate(counts)],
        "popularity_fallback": fallback.tolist(),
        "unknown_movie_ids": [ids_.tolist() for ids_ in unknown],
        "warning": [_warning(bad, empty, count, k) for bad, empty, count, k in zip(unknown, fallback, counts, ks)],
    })


def _warning(unknown: np.ndarray, fallback: bool, count: int, k: int) -> str:
    parts = []
    if len(unknown):
        parts.append(f"ignored {len(unknown)} MovieID(s) not in the catalogue: {_shown(unknown.tolist())}")
    if fallback:
        parts.append("no known movie in the history: most popular training movies instead")
    if count < k:
        parts.append(f"only {count} movies left once the history is excluded (k={k})")
    return "; ".join(parts)


def load_catalogue(items_path: str | Path, popularity_path: str | Path) -> ServingCatalogue:
    mapping = read_item_mapping(items_path)
    popularity = np.load(popularity_path, allow_pickle=False)
    if popularity.shape != mapping.movie_ids.shape:
        raise DataError(popularity_path, None, f"{len(mapping.movie_ids)} popularity shares (one per item)",
                        str(popularity.shape))
    return ServingCatalogue(mapping.movie_ids, np.asarray(mapping.titles, dtype=object), popularity)
