"""Read, validate and reshape the authors' "sequences" split layout.

A split directory holds ``train_set_sequences``, ``val_set_sequences`` and ``test_set_sequences``
(one user a line: ``user_id item rating item rating ...`` in time order, 0-based ids), a ``stats``
table and optionally ``item_id_mapping.tsv`` (``item_index  movie_id  title``).

Sequences are kept flat (CSR: one item array plus per-user offsets) so that evaluation cuts,
window sampling and padding are numpy vector operations, never Python loops over items.

Every file is read whole and validated before use: a refused input is a :class:`DataError` naming the file,
the line and what was expected there, never a numpy or codec traceback and never a silently wrong value.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

SEQUENCE_FILES = {
    "train": "train_set_sequences",
    "val": "val_set_sequences",
    "test": "test_set_sequences",
}
STATS_FILE = "stats"
STATS_COLUMNS = ("set", "n_users", "n_items", "n_interactions", "longest_sequence")
STATS_ROWS = {"Full": None, "Train": "train", "Val": "val", "Test": "test"}  # row label -> set it counts
TIMESTAMPS_FILE = "train_set_timestamps"  # optional: the training interactions' Unix times, -1 if unknown
TIMESTAMP_FILES = {"train": TIMESTAMPS_FILE, "val": "val_set_timestamps", "test": "test_set_timestamps"}
ITEM_MAPPING_FILE = "item_id_mapping.tsv"
PADDING_ID = 0  # model inputs use item + 1, so 0 is free for padding/masking
MAX_INT64 = 2**63 - 1
MAX_ITEM_ID = 2**31 - 2  # items are int32 and the model's input id item + 1 must fit too
MAX_RATING = 5.0  # sequence files hold 1..5 stars (imputed 3s included) or 0 for "unknown"


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


# --------------------------------------------------------------------------------------------- reading files


def os_error(path: str | Path, expected: str, error: OSError) -> DataError:
    """The :class:`DataError` for a file or directory the OS refused (missing, a directory, no permission...)."""
    reason = (error.strerror or str(error)).lower()
    if error.filename is not None and str(error.filename) != str(path):
        reason += f" ({error.filename})"
    return DataError(path, None, expected, reason)


def read_bytes(path: str | Path, what: str) -> bytes:
    """The file's bytes; ``what`` describes the file for the message when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise os_error(path, what, error) from None


def read_text(path: str | Path, what: str) -> str:
    """The file as UTF-8 text (a leading byte-order mark dropped); other bytes are refused with their line."""
    raw = read_bytes(path, what)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        raise DataError(path, raw.count(b"\n", 0, error.start) + 1, "UTF-8 text",
                        f"byte 0x{raw[error.start]:02x} at column {error.start - line_start + 1}") from None


def numbered_fields(text: str) -> tuple[np.ndarray, list[list[str]]]:
    """Line numbers and whitespace-separated fields of the non-blank lines (``\\r\\n`` endings welcome)."""
    numbered = [(number, fields) for number, fields in enumerate(map(str.split, text.split("\n")), start=1)
                if fields]
    return np.array([number for number, _ in numbered], dtype=np.int64), [fields for _, fields in numbered]


_NUMBER_SYNTAX = {  # plain ASCII numbers (int() and numpy also read '1_0' as 10, and non-ASCII digits)
    True: re.compile(r"[+-]?[0-9]+"),
    False: re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"),
}


def is_number(text: str, integer: bool, low: float, high: float) -> bool:
    """``text`` is a plain ASCII integer (or decimal) between ``low`` and ``high`` inclusive."""
    text = text.strip(" \t\r")
    if not _NUMBER_SYNTAX[integer].fullmatch(text):
        return False
    return low <= (int(text) if integer else float(text)) <= high


def parse_numbers(path: str | Path, tokens: list[str], lines: np.ndarray, expected: str, low: float, high: float,
                  integer: bool = True) -> np.ndarray:
    """``tokens`` as int64 (float64 unless ``integer``), each between ``low`` and ``high``; else a DataError at
    the first offending token's line (``lines[i]`` is token i's). One numpy conversion on the good path; the
    tokens are only looked at one by one to name a bad one."""
    values = _convert(tokens, integer)
    if values is not None:
        bad = np.flatnonzero(~((values >= low) & (values <= high)))  # NaN is outside too
        if not len(bad):
            return values
        row = int(bad[0])
    else:
        row = next(i for i, token in enumerate(tokens) if not is_number(token, integer, low, high))
    raise DataError(path, int(lines[row]), expected, tokens[row])


def _convert(tokens: list[str], integer: bool) -> np.ndarray | None:
    """numpy's conversion, or None where it fails or could misread (an underscore, a non-ASCII digit). Decimals
    without a '.' or an exponent go through numpy's faster integer parser (MovieLens stars are whole)."""
    joined = "".join(tokens)
    if not joined.isascii() or "_" in joined:
        return None
    whole = integer or not any(mark in joined for mark in ".eE")
    try:
        values = np.array(tokens, dtype=np.int64 if whole else np.float64)
    except (ValueError, OverflowError):
        return None
    return values if integer else values.astype(np.float64)


def first_duplicate(keys: np.ndarray) -> tuple[int, int] | None:
    """(index of the first key that repeats an earlier one, index of that earlier one), or None."""
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    if not same.any():
        return None
    later, earlier = order[1:][same], order[:-1][same]
    pick = int(np.argmin(later))
    return int(later[pick]), int(earlier[pick])


# --------------------------------------------------------------------------------------------- sequences


def flat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The flat indices ``starts[r], ..., starts[r] + counts[r] - 1`` of every row ``r``, concatenated (vectorised)."""
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())


@dataclass(frozen=True)
class Sequences:
    """Time-ordered item sequences of several users in CSR form.

    ``items[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence (``user_ids[u]`` is the id in the file).
    """

    user_ids: np.ndarray  # (n_users,) int64
    items: np.ndarray  # (n_interactions,) int32
    ratings: np.ndarray  # (n_interactions,) float32
    offsets: np.ndarray  # (n_users + 1,) int64
    times: np.ndarray | None = None  # (n_interactions,) int64 Unix seconds, -1 unknown; None: no source (ties.py)

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
            times=None if self.times is None else self.times[keep],
        )

    def of_users(self, keep: np.ndarray) -> Sequences:
        """The sequences of the users (rows) where the boolean ``keep`` is true, in their order."""
        picked = self.select(np.repeat(keep, self.lengths))
        return Sequences(self.user_ids[keep], picked.items, picked.ratings,
                         np.concatenate([[0], np.cumsum(self.lengths[keep])]).astype(np.int64), picked.times)

    def reordered(self, order: np.ndarray) -> Sequences:
        """The interactions in flat ``order``, a permutation that keeps every user's items in their row."""
        return Sequences(self.user_ids, self.items[order], self.ratings[order], self.offsets,
                         None if self.times is None else self.times[order])

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


SEQUENCES_LINE = "'user_id item rating [item rating ...]'"


def read_sequences(path: str | Path, n_items: int | None = None) -> Sequences:
    """Parse one sequences file, refusing malformed lines and (if ``n_items``) ids outside the catalogue.

    The whole file is converted at once (one numpy call per column), so the authors' 830k training
    interactions take a fraction of a second and a bad value is still named with its line.
    """
    path = Path(path)
    lines, fields = numbered_fields(read_text(path, f"a sequences file (one {SEQUENCES_LINE} line per user)"))
    if not fields:
        raise DataError(path, 1, f"at least one {SEQUENCES_LINE} line", "empty file")
    widths = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    bad = np.flatnonzero((widths < 3) | (widths % 2 == 0))
    if len(bad):
        row = int(bad[0])
        raise DataError(path, int(lines[row]), f"{SEQUENCES_LINE} (a user id then item/rating pairs, an odd number "
                        f"of at least 3 fields; found {widths[row]})", " ".join(fields[row]))
    users = parse_numbers(path, [f[0] for f in fields], lines, "a non-negative integer user id as first field",
                          0, MAX_INT64)
    _refuse_repeated_users(path, users, lines)
    pairs = list(chain.from_iterable(f[1:] for f in fields))
    pair_lines = np.repeat(lines, widths // 2)
    items = parse_numbers(path, pairs[0::2], pair_lines, f"non-negative integer item ids (at most {MAX_ITEM_ID}) "
                          "at the even fields", 0, MAX_ITEM_ID)
    ratings = parse_numbers(path, pairs[1::2], pair_lines, f"numeric ratings 0..{MAX_RATING:g} (0 = unknown) at the "
                            "odd fields after the user id", 0, MAX_RATING, integer=False)
    if n_items is not None and len(outside := np.flatnonzero(items >= n_items)):
        raise DataError(path, int(pair_lines[outside[0]]), f"item ids inside the training catalogue 0..{n_items - 1}",
                        str(items[outside[0]]))
    return Sequences(user_ids=users, items=items.astype(np.int32), ratings=ratings.astype(np.float32),
                     offsets=np.concatenate([[0], np.cumsum(widths // 2)]).astype(np.int64))


def _refuse_repeated_users(path: Path, users: np.ndarray, lines: np.ndarray) -> None:
    repeated = first_duplicate(users)
    if repeated is not None:
        later, earlier = repeated
        raise DataError(path, int(lines[later]), f"each user once (user {users[later]} is already on line "
                        f"{lines[earlier]})")


def sequence_lines(path: str | Path) -> np.ndarray:
    """Line number of every user row of a sequences file (blank lines are skipped): only for messages."""
    return numbered_fields(read_text(path, "a sequences file"))[0]


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
    lines, fields = numbered_fields(read_text(path, "a timestamps file ('user_id t t ...' per training user)"))
    n_users = len(sequences)
    if len(fields) > n_users:
        raise DataError(path, int(lines[n_users]), f"{n_users} lines, one per training user", " ".join(fields[n_users]))
    users = parse_numbers(path, [f[0] for f in fields], lines, "an integer user id as first field", 0, MAX_INT64)
    counts = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields)) - 1
    row = _first_difference(users, sequences.user_ids)
    if row is not None:
        raise DataError(path, int(lines[row]), f"user {sequences.user_ids[row]} as in the sequences file",
                        " ".join(fields[row]))
    row = _first_difference(counts, sequences.lengths)
    if row is not None:
        raise DataError(path, int(lines[row]), f"{sequences.lengths[row]} timestamps, one per item of the user",
                        str(counts[row]))
    if len(fields) < n_users:
        raise DataError(path, int(lines[-1]) + 1 if len(lines) else 1, f"{n_users} lines, one per training user",
                        "end of file")
    stamps = list(chain.from_iterable(f[1:] for f in fields))
    return parse_numbers(path, stamps, np.repeat(lines, counts), "integer Unix timestamps (-1 when unknown)",
                         -1, MAX_INT64)


def _first_difference(found: np.ndarray, wanted: np.ndarray) -> int | None:
    """First index where ``found`` differs from the start of ``wanted``, or None."""
    different = np.flatnonzero(found != wanted[: len(found)])
    return int(different[0]) if len(different) else None


def _format_rating(rating: float) -> str:
    return str(int(rating)) if float(rating).is_integer() else repr(float(rating))


# --------------------------------------------------------------------------------------------- stats table


def read_stats(path: str | Path) -> dict[str, dict[str, int]]:
    """Parse the ``stats`` table (``set n_users n_items n_interactions longest_sequence``)."""
    return {label: counts for label, (_, counts) in stats_rows(path).items()}


def stats_rows(path: str | Path) -> dict[str, tuple[int, dict[str, int]]]:
    """The ``stats`` rows by label (Full, Train, Val, Test), each with its line number for messages."""
    path = Path(path)
    lines, fields = numbered_fields(read_text(path, "a stats table"))
    if not fields or tuple(fields[0]) != STATS_COLUMNS:
        raise DataError(path, int(lines[0]) if fields else 1, f"a header '{' '.join(STATS_COLUMNS)}'",
                        " ".join(fields[0]) if fields else "empty file")
    rows: dict[str, tuple[int, dict[str, int]]] = {}
    for line, row in zip(lines[1:].tolist(), fields[1:]):  # a handful of rows
        if len(row) != len(STATS_COLUMNS):
            raise DataError(path, line, f"{len(STATS_COLUMNS)} columns like the header", " ".join(row))
        if row[0] not in STATS_ROWS or row[0] in rows:
            raise DataError(path, line, f"a row label among {', '.join(STATS_ROWS)}, each once", row[0])
        counts = parse_numbers(path, row[1:], np.full(len(row) - 1, line), "non-negative integer counts", 0, MAX_INT64)
        rows[row[0]] = (line, dict(zip(STATS_COLUMNS[1:], counts.tolist())))
    return rows


def _counted(parts: list[Sequences]) -> dict[str, int]:
    """What a ``stats`` row says about these users, counted from the sequences (vectorised)."""
    items = np.concatenate([part.items for part in parts])
    return {"n_users": sum(len(part) for part in parts), "n_items": distinct_count(items),
            "n_interactions": len(items), "longest_sequence": max(int(part.lengths.max()) for part in parts)}


def distinct_count(items: np.ndarray) -> int:
    """Number of distinct ids: a bincount when they are dense (ten times faster than np.unique), never an array
    as long as a huge id."""
    if len(items) and int(items.max()) < 4 * len(items) + (1 << 16):
        return int(np.count_nonzero(np.bincount(items)))
    return len(np.unique(items))


def _check_stats(path: Path, rows: dict[str, tuple[int, dict[str, int]]], sets: dict[str, Sequences]) -> None:
    """Every count of ``stats`` must be what the sequence files hold: a table that disagrees belongs to another
    split or a truncated copy. The Full row's n_items is the catalogue size (checked by load_split instead)."""
    for label, (line, declared) in rows.items():
        names = [STATS_ROWS[label]] if STATS_ROWS[label] else list(sets)
        counted = _counted([sets[name] for name in names])
        for column, value in declared.items():
            if value != counted[column] and not (label == "Full" and column == "n_items"):
                raise DataError(path, line, f"{column} {counted[column]} in the {label} row (as counted in "
                                f"{', '.join(SEQUENCE_FILES[name] for name in names)})", str(value))


# --------------------------------------------------------------------------------------------- item mapping


@dataclass(frozen=True)
class ItemCatalogue:
    """Item index -> MovieLens MovieID and title (optional: only when the mapping file is present)."""

    movie_ids: np.ndarray  # (n_items,) int64
    titles: list[str]


MAPPING_ROW = "'item_index<TAB>movie_id<TAB>title'"


def write_item_mapping(path: str | Path, movie_ids: np.ndarray, titles: list[str]) -> Path:
    """``item_id_mapping.tsv``: a header, then ``item_index  movie_id  title`` for every item index."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["item_index", "movie_id", "title"])
        writer.writerows(zip(range(len(movie_ids)), np.asarray(movie_ids).tolist(), titles))
    return path


def read_item_mapping(path: str | Path) -> ItemCatalogue:
    """Read ``item_id_mapping.tsv``, refusing a gap in the item indexes and a bad or repeated MovieID (a repeated
    one would otherwise only fail when the served model is logged, at the end of a training run)."""
    path = Path(path)
    lines, rows = csv_rows(path, read_text(path, f"an item mapping ({MAPPING_ROW} rows)"), "\t")
    if not rows or rows[0][:2] != ["item_index", "movie_id"]:
        raise DataError(path, int(lines[0]) if rows else 1, "a header 'item_index<TAB>movie_id<TAB>title'",
                        "\t".join(rows[0]) if rows else "empty file")
    header_line, lines, rows = int(lines[0]), lines[1:], rows[1:]
    if not rows:
        raise DataError(path, header_line + 1, f"at least one {MAPPING_ROW} row", "end of file")
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if len(bad := np.flatnonzero((widths < 2) | (widths > 3))):
        raise DataError(path, int(lines[bad[0]]), f"{MAPPING_ROW} (2 or 3 tab-separated fields)",
                        "\t".join(rows[bad[0]]))
    index = parse_numbers(path, [row[0] for row in rows], lines, f"{MAPPING_ROW} with an integer item index",
                          0, MAX_INT64)
    if (row := _first_difference(index, np.arange(len(rows)))) is not None:
        raise DataError(path, int(lines[row]), f"item index {row} (rows in item order 0, 1, 2, ...)", rows[row][0])
    movies = parse_numbers(path, [row[1] for row in rows], lines, "a non-negative integer movie id in the second "
                           "column", 0, MAX_INT64)
    if (repeated := first_duplicate(movies)) is not None:
        later, earlier = repeated
        raise DataError(path, int(lines[later]), f"each movie id once (movie {movies[later]} is already item "
                        f"{earlier} on line {lines[earlier]})", "\t".join(rows[later]))
    return ItemCatalogue(movies, [row[2] if len(row) > 2 else "" for row in rows])


def csv_rows(path: str | Path, text: str, delimiter: str) -> tuple[np.ndarray, list[list[str]]]:
    """Start line and fields of every non-empty row of CSV-quoted ``text`` (as csv.writer quotes a title holding
    the delimiter or a quote). A field spanning lines means an unbalanced quote: refused with its line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines, rows, start = [], [], 1
    try:
        for row in reader:  # one row per item or movie: thousands, not millions
            if any("\n" in field or "\r" in field for field in row):
                raise DataError(path, start, "one row per line (an unbalanced '\"' in a title?)",
                                delimiter.join(row).splitlines()[0])
            if row:
                lines.append(start)
                rows.append(row)
            start = reader.line_num + 1
    except csv.Error as error:
        separator = "tab" if delimiter == "\t" else "comma"
        raise DataError(path, start, f"{separator}-separated fields", str(error)) from None
    return np.array(lines, dtype=np.int64), rows


# --------------------------------------------------------------------------------------------- the split


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


SPLIT_FILES = (*SEQUENCE_FILES.values(), STATS_FILE, ITEM_MAPPING_FILE, *TIMESTAMP_FILES.values())


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


def load_split(directory: str | Path) -> Split:
    """Load and validate a split directory: val/test items inside the training catalogue, every user in one set
    only, and ``stats`` and ``item_id_mapping.tsv`` (when present) agreeing with the sequences read."""
    directory = Path(directory)
    _check_split_directory(directory)
    stats = stats_rows(directory / STATS_FILE) if (directory / STATS_FILE).exists() else {}
    catalogue = read_item_mapping(directory / ITEM_MAPPING_FILE) if (directory / ITEM_MAPPING_FILE).exists() else None
    declared = stats["Full"][1]["n_items"] if "Full" in stats else (
        len(catalogue.movie_ids) if catalogue is not None else None)
    train = read_sequences(directory / SEQUENCE_FILES["train"], n_items=declared)
    n_items = declared if declared is not None else int(train.items.max()) + 1
    sets = {"train": train, **{name: read_sequences(directory / SEQUENCE_FILES[name], n_items=n_items)
                               for name in ("val", "test")}}
    _refuse_shared_users(directory, sets)
    if catalogue is not None and len(catalogue.movie_ids) != n_items:
        raise DataError(directory / ITEM_MAPPING_FILE, None, f"{n_items} item rows (the catalogue size)",
                        f"{len(catalogue.movie_ids)} rows")
    _check_catalogue_is_used(directory, sets, n_items, stats, catalogue is not None)
    _check_stats(directory / STATS_FILE, stats, sets)
    return Split(directory, sets["train"], sets["val"], sets["test"], n_items, catalogue)


def _check_split_directory(directory: Path) -> None:
    expected = f"a split directory containing {', '.join(SEQUENCE_FILES.values())}"
    if not directory.is_dir():
        raise DataError(directory, None, expected, "not a directory" if directory.exists() else "no such directory")
    missing = [name for name in SEQUENCE_FILES.values() if not (directory / name).exists()]
    if missing:
        raise DataError(directory, None, expected, f"missing {', '.join(missing)}")


def _refuse_shared_users(directory: Path, sets: dict[str, Sequences]) -> None:
    """A user in two sets would be evaluated on data the model was trained or tuned on."""
    names = list(sets)
    sizes = [len(sets[name]) for name in names]
    users = np.concatenate([sets[name].user_ids for name in names])
    repeated = first_duplicate(users)
    if repeated is None:
        return
    (later_path, later_line), (earlier_path, earlier_line) = (_where(directory, names, sizes, row) for row in repeated)
    raise DataError(later_path, later_line, f"each user in one set only (user {users[repeated[0]]} is already on "
                    f"line {earlier_line} of {earlier_path.name})")


def _where(directory: Path, names: list[str], sizes: list[int], row: int) -> tuple[Path, int]:
    """File and line of user ``row`` of the sets concatenated in ``names`` order (re-reads it: for messages)."""
    index = int(np.searchsorted(np.cumsum(sizes), row, side="right"))
    path = directory / SEQUENCE_FILES[names[index]]
    return path, int(sequence_lines(path)[row - sum(sizes[:index])])


def _check_catalogue_is_used(directory: Path, sets: dict[str, Sequences], n_items: int,
                             stats: dict[str, tuple[int, dict[str, int]]], mapped: bool) -> None:
    """A catalogue larger than the ids in use builds a model with items no one ever rated: refused when only
    ``stats`` claims them, a warning when ``item_id_mapping.tsv`` names them (they can still be recommended) or
    when ids in between are unused (raw MovieIDs instead of 0-based indexes?)."""
    items = np.concatenate([sequences.items for sequences in sets.values()])
    used = int(items.max()) + 1
    if n_items > used and not mapped:
        raise DataError(directory / STATS_FILE, stats["Full"][0], f"a Full row with n_items at most {used}: the "
                        f"sequence files use item ids 0..{used - 1} and there is no {ITEM_MAPPING_FILE} naming "
                        "more items", str(n_items))
    unused = n_items - distinct_count(items)
    if unused:
        warnings.warn(f"{directory}: {unused} of the {n_items} catalogue items are in no sequence file; the model "
                      "never sees them rated", stacklevel=3)


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
