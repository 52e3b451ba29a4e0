"""Read, validate and reshape the authors' "sequences" split layout.

A split directory holds ``train_set_sequences``, ``val_set_sequences`` and ``test_set_sequences``
(one user a line: ``user_id item rating item rating ...`` in time order, 0-based ids), a ``stats``
table and optionally ``item_id_mapping.tsv`` (``item_index  movie_id  title``).

Sequences are kept flat (CSR: one item array plus per-user offsets) so that evaluation cuts,
window sampling and padding are numpy vector operations, never Python loops over items.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEQUENCE_FILES = {
    "train": "train_set_sequences",
    "val": "val_set_sequences",
    "test": "test_set_sequences",
}
STATS_FILE = "stats"
TIMESTAMPS_FILE = "train_set_timestamps"  # optional: the training interactions' Unix times, -1 if unknown
ITEM_MAPPING_FILE = "item_id_mapping.tsv"
PADDING_ID = 0  # model inputs use item + 1, so 0 is free for padding/masking


class DataError(ValueError):
    """Malformed input: names the file, the line and what was expected there."""

    def __init__(self, path: str | Path, line: int | None, expected: str, got: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        message = f"{where}: expected {expected}"
        if got is not None:
            message += f", got {got[:80]!r}"
        super().__init__(message)
        self.path, self.line, self.expected = Path(path), line, expected


class RequestError(ValueError):
    """A refused recommendation request (:mod:`seqrec.core.recommend`); the message names the row, the column and
    what was expected. Here beside :class:`DataError` so that the CLI can catch both without importing Keras."""


@dataclass(frozen=True)
class Sequences:
    """Time-ordered item sequences of several users in CSR form.

    ``items[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence (``user_ids[u]`` is the id in the file).
    """

    user_ids: np.ndarray  # (n_users,) int64
    items: np.ndarray  # (n_interactions,) int32
    ratings: np.ndarray  # (n_interactions,) float32
    offsets: np.ndarray  # (n_users + 1,) int64

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def positions(self) -> np.ndarray:
        """Index of every interaction within its own user's sequence."""
        return np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)

    def row_of_interaction(self) -> np.ndarray:
        """User row (0..n_users-1) of every interaction."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def sequence(self, row: int) -> np.ndarray:
        return self.items[self.offsets[row] : self.offsets[row + 1]]

    def select(self, keep: np.ndarray) -> Sequences:
        """Keep the interactions where the boolean ``keep`` is true (per-user order is preserved)."""
        counts = np.bincount(self.row_of_interaction()[keep], minlength=len(self))
        return Sequences(
            user_ids=self.user_ids,
            items=self.items[keep],
            ratings=self.ratings[keep],
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )

    def reordered(self, order: np.ndarray) -> Sequences:
        """The interactions in flat ``order``, a permutation that keeps every user's items in their row."""
        return Sequences(self.user_ids, self.items[order], self.ratings[order], self.offsets)

    @classmethod
    def from_lists(cls, sequences: list[list[int]], user_ids: list[int] | None = None,
                   ratings: list[list[float]] | None = None) -> Sequences:
        """Build from Python lists (tests, serving); ratings default to 0."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if sequences else np.zeros(0, np.int32)
        flat_ratings = (np.concatenate([np.asarray(r, dtype=np.float32) for r in ratings])
                        if ratings else np.zeros(len(flat), np.float32))
        return cls(
            user_ids=np.asarray(user_ids if user_ids is not None else range(len(sequences)), dtype=np.int64),
            items=flat.astype(np.int32),
            ratings=flat_ratings,
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        )


def _parse_line(path: Path, line_no: int, text: str, n_items: int | None) -> tuple[int, np.ndarray, np.ndarray]:
    fields = text.split()
    if len(fields) < 3 or len(fields) % 2 == 0:
        raise DataError(path, line_no, "'user_id item rating [item rating ...]' (a user id then item/rating pairs, "
                        f"an odd number of at least 3 fields; found {len(fields)})", text.strip())
    try:
        user = int(fields[0])
    except ValueError:
        raise DataError(path, line_no, "an integer user id as first field", fields[0]) from None
    try:
        items = np.array(fields[1::2], dtype=np.int64)
    except ValueError:
        bad = next(f for f in fields[1::2] if not f.lstrip("-").isdigit())
        raise DataError(path, line_no, "integer item ids at the even fields", bad) from None
    try:
        ratings = np.array(fields[2::2], dtype=np.float32)
    except ValueError:
        bad = next(f for f in fields[2::2] if not _is_float(f))
        raise DataError(path, line_no, "numeric ratings at the odd fields after the user id", bad) from None
    if user < 0 or items.min() < 0:
        raise DataError(path, line_no, "non-negative 0-based ids", text.strip())
    if n_items is not None and items.max() >= n_items:
        raise DataError(path, line_no, f"item ids inside the training catalogue 0..{n_items - 1}",
                        str(int(items.max())))
    return user, items, ratings


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_sequences(path: str | Path, n_items: int | None = None) -> Sequences:
    """Parse one sequences file, refusing malformed lines and (if ``n_items``) ids outside the catalogue."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "a sequences file (one 'user_id item rating ...' line per user)", "no such file")
    users, item_parts, rating_parts = [], [], []
    seen: dict[int, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            user, items, ratings = _parse_line(path, line_no, text, n_items)
            if user in seen:
                raise DataError(path, line_no, f"each user once (user {user} is already on line {seen[user]})")
            seen[user] = line_no
            users.append(user)
            item_parts.append(items)
            rating_parts.append(ratings)
    if not users:
        raise DataError(path, 1, "at least one 'user_id item rating ...' line", "empty file")
    lengths = np.array([len(p) for p in item_parts], dtype=np.int64)
    return Sequences(
        user_ids=np.array(users, dtype=np.int64),
        items=np.concatenate(item_parts).astype(np.int32),
        ratings=np.concatenate(rating_parts),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    )


def write_sequences(path: str | Path, sequences: Sequences) -> None:
    """Write the authors' format (every line ends with a space, as theirs do)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for row, user in enumerate(sequences.user_ids):
            lo, hi = sequences.offsets[row], sequences.offsets[row + 1]
            pairs = np.empty(2 * (hi - lo), dtype=object)
            pairs[0::2] = sequences.items[lo:hi]
            pairs[1::2] = [_format_rating(r) for r in sequences.ratings[lo:hi]]
            handle.write(f"{user} " + " ".join(map(str, pairs)) + " \n")


def write_timestamps(path: str | Path, sequences: Sequences, timestamps: np.ndarray) -> None:
    """``user_id t t ...`` lines aligned with a sequences file (-1 where a time is unknown)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for row, user in enumerate(sequences.user_ids):
            stamps = timestamps[sequences.offsets[row] : sequences.offsets[row + 1]]
            handle.write(f"{user} " + " ".join(map(str, stamps.tolist())) + " \n")


def read_timestamps(path: str | Path, sequences: Sequences) -> np.ndarray:
    """Read a timestamps file written for ``sequences``; refuse one that does not line up with it."""
    path = Path(path)
    parts = []
    with path.open(encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            fields = text.split()
            row = line_no - 1
            if row >= len(sequences) or not fields or fields[0] != str(sequences.user_ids[row]):
                expected = (f"user {sequences.user_ids[row]} as in the sequences file" if row < len(sequences)
                            else f"{len(sequences)} lines, one per training user")
                raise DataError(path, line_no, expected, text.strip())
            try:
                stamps = np.array(fields[1:], dtype=np.int64)
            except ValueError:
                raise DataError(path, line_no, "integer Unix timestamps (-1 when unknown)", text.strip()) from None
            if len(stamps) != sequences.lengths[row]:
                raise DataError(path, line_no, f"{sequences.lengths[row]} timestamps, one per item of the user",
                                f"{len(stamps)}")
            parts.append(stamps)
    if len(parts) != len(sequences):
        raise DataError(path, len(parts) + 1, f"{len(sequences)} lines, one per training user", "end of file")
    return np.concatenate(parts)


def _format_rating(rating: float) -> str:
    return str(int(rating)) if float(rating).is_integer() else repr(float(rating))


def read_stats(path: str | Path) -> dict[str, dict[str, int]]:
    """Parse the ``stats`` table (``set n_users n_items n_interactions longest_sequence``)."""
    path = Path(path)
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise DataError(path, 1, "a header 'set n_users n_items n_interactions longest_sequence'", "empty file")
    header = rows[0]
    table: dict[str, dict[str, int]] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(path, line_no, f"{len(header)} columns like the header {header}", " ".join(row))
        try:
            table[row[0]] = {name: int(value) for name, value in zip(header[1:], row[1:])}
        except ValueError:
            raise DataError(path, line_no, "integer counts", " ".join(row)) from None
    return table


@dataclass(frozen=True)
class ItemCatalogue:
    """Item index -> MovieLens MovieID and title (optional: only when the mapping file is present)."""

    movie_ids: np.ndarray  # (n_items,) int64
    titles: list[str]


def write_item_mapping(path: str | Path, movie_ids: np.ndarray, titles: list[str]) -> Path:
    """``item_id_mapping.tsv``: a header, then ``item_index  movie_id  title`` for every item index."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["item_index", "movie_id", "title"])
        writer.writerows(zip(range(len(movie_ids)), np.asarray(movie_ids).tolist(), titles))
    return path


def read_item_mapping(path: str | Path) -> ItemCatalogue:
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows or rows[0][:2] != ["item_index", "movie_id"]:
        raise DataError(path, 1, "a header 'item_index<TAB>movie_id<TAB>title'", "\t".join(rows[0]) if rows else "empty file")
    movie_ids, titles = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or not row[0].isdigit() or not row[1].isdigit() or int(row[0]) != line_no - 2:
            raise DataError(path, line_no, f"'{line_no - 2}<TAB><integer movie id><TAB>title'", "\t".join(row))
        movie_ids.append(int(row[1]))
        titles.append(row[2] if len(row) > 2 else "")
    return ItemCatalogue(np.array(movie_ids, dtype=np.int64), titles)


@dataclass(frozen=True)
class Split:
    """The train/validation/test users of one dataset and its item catalogue."""

    directory: Path
    train: Sequences
    val: Sequences
    test: Sequences
    n_items: int
    catalogue: ItemCatalogue | None

    @property
    def item_popularity(self) -> np.ndarray:
        """Training interactions per item: POP baseline, blockbuster share."""
        return np.bincount(self.train.items, minlength=self.n_items)

    @functools.cached_property
    def item_similarity(self) -> np.ndarray:
        """Items x items cosine of their training raters (diversity); computed once, 4 bytes per pair."""
        return item_similarity(self.train, self.n_items)

    @functools.cached_property
    def checksum(self) -> str:
        """SHA-256 of the split's files (see :func:`split_checksum`): what a run logs beside the path."""
        return split_checksum(self.directory)

    @property
    def stats_path(self) -> Path | None:
        path = self.directory / STATS_FILE
        return path if path.is_file() else None


def item_similarity(train: Sequences, n_items: int) -> np.ndarray:
    """Cosine similarity (items x items, float32) of the items' binary vectors of training raters."""
    import scipy.sparse as sp

    raters = sp.csr_matrix((np.ones(len(train.items), dtype=np.float32), (train.row_of_interaction(), train.items)),
                           shape=(len(train), n_items))
    raters.data[:] = 1.0  # a user who rated an item twice still counts once
    co_rated = (raters.T @ raters).toarray()
    norms = np.sqrt(np.diag(co_rated))
    return (co_rated / np.maximum(np.outer(norms, norms), 1e-12)).astype(np.float32)


SPLIT_FILES = (*SEQUENCE_FILES.values(), STATS_FILE, ITEM_MAPPING_FILE, TIMESTAMPS_FILE)


def split_checksum(directory: str | Path) -> str:
    """SHA-256 over the split's files that exist (name and content, in a fixed order): two runs with the same
    checksum read the same data, whatever path it was found at."""
    digest = hashlib.sha256()
    for name in SPLIT_FILES:
        path = Path(directory) / name
        if path.is_file():
            digest.update(f"{name}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def catalogue_size(directory: Path) -> int | None:
    """Number of items declared by the split (``stats`` Full row, else the mapping file), if any."""
    if (directory / STATS_FILE).is_file():
        stats = read_stats(directory / STATS_FILE)
        if "Full" in stats and "n_items" in stats["Full"]:
            return stats["Full"]["n_items"]
    if (directory / ITEM_MAPPING_FILE).is_file():
        return len(read_item_mapping(directory / ITEM_MAPPING_FILE).movie_ids)
    return None


def load_split(directory: str | Path) -> Split:
    """Load and validate a split directory; val/test items must lie inside the training catalogue."""
    directory = Path(directory)
    missing = [name for name in SEQUENCE_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise DataError(directory, None, f"a split directory containing {', '.join(SEQUENCE_FILES.values())}",
                        f"missing {', '.join(missing)}")
    declared = catalogue_size(directory)
    train = read_sequences(directory / SEQUENCE_FILES["train"], n_items=declared)
    n_items = declared if declared is not None else int(train.items.max()) + 1
    val = read_sequences(directory / SEQUENCE_FILES["val"], n_items=n_items)
    test = read_sequences(directory / SEQUENCE_FILES["test"], n_items=n_items)
    catalogue = None
    if (directory / ITEM_MAPPING_FILE).is_file():
        catalogue = read_item_mapping(directory / ITEM_MAPPING_FILE)
        if len(catalogue.movie_ids) != n_items:
            raise DataError(directory / ITEM_MAPPING_FILE, None, f"{n_items} item rows (the catalogue size)",
                            f"{len(catalogue.movie_ids)} rows")
    return Split(directory, train, val, test, n_items, catalogue)


def split_half(sequences: Sequences) -> tuple[Sequences, Sequences]:
    """The paper's evaluation cut: first half (``len // 2`` items) is the input, the rest the goal."""
    positions = sequences.positions()
    cut = np.repeat(sequences.lengths // 2, sequences.lengths)
    return sequences.select(positions < cut), sequences.select(positions >= cut)


def rating_tokens(ratings: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Rating input ids: 1..5 for the (rounded, clipped) stars, 0 where unknown.

    Unknown: a rating of 0 or less (what a history given without ratings holds) or, with the boolean
    ``known``, where it is false (the authors' rebuilt training file sets unknown ratings to 3).
    """
    ratings = np.asarray(ratings, dtype=np.float32)
    tokens = np.where(ratings > 0, np.clip(np.rint(ratings), 1, 5), 0).astype(np.int32)
    return tokens if known is None else np.where(known, tokens, 0).astype(np.int32)


def pad_left(sequences: Sequences, max_len: int | None = None, values: np.ndarray | None = None) -> np.ndarray:
    """Model input matrix: the last ``max_len`` items of each user as ``item + 1``, left-padded with 0.

    Left padding puts every user's latest item in the last column, so the recurrent state at the end
    of the row is the state after the user's full (or truncated) history. ``values`` (one per interaction,
    e.g. :func:`rating_tokens`) are placed in those cells instead of the item ids.
    """
    lengths = sequences.lengths
    width = int(lengths.max()) if max_len is None else max_len
    width = max(width, 1)
    positions = sequences.positions()
    from_end = np.repeat(lengths, lengths) - positions  # 1 for the latest item
    keep = from_end <= width
    matrix = np.full((len(sequences), width), PADDING_ID, dtype=np.int32)
    placed = sequences.items + 1 if values is None else values
    matrix[sequences.row_of_interaction()[keep], width - from_end[keep]] = placed[keep]
    return matrix
