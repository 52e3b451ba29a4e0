"""Read raw MovieLens files: ratings (``UserID::MovieID::Rating::Timestamp`` .dat, or a CSV/TSV with a header)
and movie titles. Every malformed line is a :class:`~seqrec.core.data.DataError` naming the file and the line."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from operator import methodcaller
from pathlib import Path
from typing import NamedTuple

import numpy as np

from seqrec.core.data import (MAX_INT64, DataError, csv_rows, first_duplicate, is_number, parse_numbers,
                              read_bytes)

_COLUMN_NAMES = {  # normalised header name (lower case, no '_') -> column role
    "userid": "user", "user": "user",
    "movieid": "movie", "itemid": "movie", "movie": "movie", "item": "movie",
    "rating": "rating",
    "timestamp": "timestamp",
}
_ROLES = ("user", "movie", "rating", "timestamp")
MIN_STARS, MAX_STARS = 0.5, 5.0  # MovieLens 10M and later have half stars; ML-1M has 1..5
_COLUMN_RULES = {  # role -> (what is expected, lowest, highest, integer)
    "user": ("a non-negative integer user id", 0, MAX_INT64, True),
    "movie": ("a non-negative integer movie id", 0, MAX_INT64, True),
    "rating": (f"a numeric rating of {MIN_STARS:g} to {MAX_STARS:g} stars", MIN_STARS, MAX_STARS, False),
    "timestamp": ("a non-negative integer timestamp (seconds)", 0, MAX_INT64, True),
}


@dataclass(frozen=True)
class RatingsTable:
    """One row per rating, in file order (columnar so sorting and re-indexing stay vectorised)."""

    user: np.ndarray  # (n,) int64, original ids
    movie: np.ndarray  # (n,) int64, original ids
    rating: np.ndarray  # (n,) float32
    timestamp: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.user)


# --------------------------------------------------------------------------------------------- reading


def read_ratings(path: str | Path) -> RatingsTable:
    """Read ``UserID::MovieID::Rating::Timestamp`` (MovieLens .dat), a CSV/TSV with a header, or the Netflix
    Prize format (see :func:`_read_netflix`): one file, or a directory of ``combined_data_*.txt``.

    Every malformed line is reported as a :class:`DataError` with file and line number, so a bad
    download or a wrong file fails with a message instead of a numpy traceback; so is a value that would
    make a wrong split: a negative id or timestamp, a rating outside 0.5..5 stars, a (user, movie) pair
    rated twice (which rating, at which time, would the sequence hold?).
    """
    path = Path(path)
    if path.is_dir() and sorted(path.glob(NETFLIX_FILES)):
        return _concatenated([read_ratings(part) for part in sorted(path.glob(NETFLIX_FILES))], path)
    if path.is_file() and path.stat().st_size >= LARGE_FILE_BYTES:
        table = _read_large(path)
        if table is not None:
            return table
    # latin-1 never fails to decode; ids/ratings/timestamps are ASCII in every accepted format.
    raw = read_bytes(path, "a ratings file (UserID::MovieID::Rating::Timestamp or a CSV with a header)")
    text = raw.decode("latin-1")
    # A UTF-8 BOM seen through latin-1 is dropped; lines end at \n only, so line numbers are the editor's.
    lines = text.removeprefix("\xef\xbb\xbf").replace("\r\n", "\n").split("\n")
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(path, 1, "ratings lines 'UserID::MovieID::Rating::Timestamp' or a CSV header",
                        "empty file")
    if _is_netflix_movie_line(numbered[0][1]):
        table, line_numbers, body_lines = _read_netflix(path, numbered)
        _refuse_repeated_pairs(path, table, line_numbers, body_lines)
        return table
    layout = _layout(path, numbered)
    line_numbers = np.array([number for number, _ in layout.body], dtype=np.int64)
    body_lines = [line for _, line in layout.body]
    fields = _split_fields(path, body_lines, line_numbers, layout.delimiter, layout.width, layout.expected)
    values = {role: parse_numbers(path, fields[layout.columns[role]], line_numbers, expected, low, high, integer)
              for role, (expected, low, high, integer) in _COLUMN_RULES.items()}
    table = RatingsTable(user=values["user"], movie=values["movie"], rating=values["rating"].astype(np.float32),
                         timestamp=values["timestamp"])
    _refuse_repeated_pairs(path, table, line_numbers, body_lines)
    return table


LARGE_FILE_BYTES = 64 << 20  # from here (ML-10M and larger) a well-formed file is parsed by pandas' C reader


def _read_large(path: Path) -> RatingsTable | None:
    """A large ``.dat`` or CSV/TSV ratings file through pandas' C parser: seconds and one int64 column per field
    for 25M ratings, where the exact parser below holds every field as a Python string. None whenever anything is
    off (a malformed line, a value out of range, a repeated pair, another format): the exact parser then reads
    the file and names the line."""
    import pandas as pd

    with open(path, "rb") as handle:
        first = handle.readline().decode("latin-1").strip()
    if "::" in first:  # UserID::MovieID::Rating::Timestamp, split on ':' (one-character separators stay in C)
        options = {"sep": ":", "header": None, "usecols": [0, 2, 4, 6], "names": [*range(7)]}
        columns = dict(zip(_ROLES, (0, 2, 4, 6)))
    else:
        delimiter = "\t" if "\t" in first else ","
        header = [name.strip() for name in first.split(delimiter)]
        if all(_is_int(name) for name in header[:2]) or len(header) < 4:
            return None  # headerless: the exact parser decides
        try:
            columns = _header_columns(path, 1, header)
        except DataError:
            return None
        options = {"sep": delimiter, "header": 0, "usecols": sorted(columns.values()), "names": [*range(len(header))]}
    try:
        frame = pd.read_csv(path, engine="c", encoding="latin-1", dtype="float64", **options)
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None
    values = {role: frame[columns[role]].to_numpy() for role in _ROLES}
    for role, (_, low, high, integer) in _COLUMN_RULES.items():
        column = values[role]
        if not np.all((column >= low) & (column <= high)) or (integer and np.any(column % 1)):
            return None
    if max(values["user"].max(initial=0), values["movie"].max(initial=0), values["timestamp"].max(initial=0)) >= 2**53:
        return None  # beyond float64's exact integers: the exact parser reads them as int64
    table = RatingsTable(user=values["user"].astype(np.int64), movie=values["movie"].astype(np.int64),
                         rating=values["rating"].astype(np.float32), timestamp=values["timestamp"].astype(np.int64))
    return table if first_duplicate(_pair_keys(table.user, table.movie)) is None else None


# Netflix Prize (combined_data_*.txt): a 'MovieID:' line, then that movie's 'CustomerID,Rating,YYYY-MM-DD' lines
NETFLIX_EXPECTED = "'CustomerID,Rating,YYYY-MM-DD' (Netflix Prize format, after a 'MovieID:' line)"
SECONDS_PER_DAY = 86_400
NETFLIX_FILES = "combined_data_*.txt"


def _concatenated(tables: list[RatingsTable], directory: Path) -> RatingsTable:
    """The Netflix Prize's four files as one table; a pair rated in two of them is refused like one in a file."""
    table = RatingsTable(*(np.concatenate([getattr(part, name) for part in tables])
                           for name in ("user", "movie", "rating", "timestamp")))
    repeated = first_duplicate(_pair_keys(table.user, table.movie))
    if repeated is not None:
        raise DataError(directory, None, "each (customer, movie) pair once across the files",
                        f"customer {table.user[repeated[0]]} rated movie {table.movie[repeated[0]]} twice")
    return table


def _is_netflix_movie_line(line: str) -> bool:
    text = line.strip()
    return text.endswith(":") and _is_int(text[:-1])


def _read_netflix(path: Path, numbered: list[tuple[int, str]]) -> tuple[RatingsTable, np.ndarray, list[str]]:
    """The Netflix Prize format. Its dates have no time of day: a rating's timestamp is midnight UTC of its day,
    so one user's ratings of a day are ties, ordered like same-second MovieLens ratings (``--within-second``)."""
    lines = [line.strip() for _, line in numbered]
    numbers = np.array([number for number, _ in numbered], dtype=np.int64)
    is_movie = np.fromiter(map(_is_netflix_movie_line, lines), dtype=bool, count=len(lines))
    movie_rows = np.flatnonzero(is_movie)
    movie_ids = parse_numbers(path, [lines[row][:-1] for row in movie_rows], numbers[movie_rows],
                              "a non-negative integer MovieID before ':'", 0, MAX_INT64)
    body = np.flatnonzero(~is_movie)
    if not len(body):
        raise DataError(path, int(numbers[-1]) + 1, NETFLIX_EXPECTED, "end of file")
    body_lines = [lines[row] for row in body]
    user, rating, day = _split_fields(path, body_lines, numbers[body], ",", 3, NETFLIX_EXPECTED)
    values = {role: parse_numbers(path, tokens, numbers[body], *_COLUMN_RULES[role])
              for role, tokens in (("user", user), ("rating", rating))}
    movie = movie_ids[np.searchsorted(movie_rows, body) - 1]  # the latest 'MovieID:' line above each rating
    timestamp = _days(path, day, numbers[body]) * SECONDS_PER_DAY
    table = RatingsTable(user=values["user"], movie=movie, rating=values["rating"].astype(np.float32),
                         timestamp=timestamp)
    return table, numbers[body], body_lines


def _days(path: Path, dates: list[str], line_numbers: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` dates as days since 1970-01-01; a DataError at the first that is not a date after 1970."""
    try:
        days = np.array(dates, dtype="datetime64[D]").astype(np.int64)
        bad = np.flatnonzero((days < 0) | np.array([len(date.strip()) != 10 for date in dates]))
    except ValueError:
        bad = np.array([next(i for i, date in enumerate(dates) if not _is_date(date))])
    if len(bad):
        row = int(bad[0])
        raise DataError(path, int(line_numbers[row]), "a rating date YYYY-MM-DD from 1970 on", dates[row])
    return days


def _is_date(text: str) -> bool:
    try:
        np.datetime64(text.strip(), "D")
    except ValueError:
        return False
    return len(text.strip()) == 10


class _Layout(NamedTuple):
    body: list[tuple[int, str]]  # (line number, line) of every rating line
    delimiter: str
    width: int  # fields per line
    columns: dict[str, int]  # role -> field index
    expected: str  # what a line should look like, for messages


def _layout(path: Path, numbered: list[tuple[int, str]]) -> _Layout:
    """Which format the file is in (from its first non-blank line) and where each column is."""
    first_no, first = numbered[0]
    if "::" in first:
        return _Layout([(number, line.strip()) for number, line in numbered], "::", 4, dict(zip(_ROLES, range(4))),
                       "4 '::'-separated fields UserID::MovieID::Rating::Timestamp")
    delimiter = "\t" if "\t" in first else "," if "," in first else None
    if delimiter is None:
        raise DataError(path, first_no, "'UserID::MovieID::Rating::Timestamp' or a comma/tab separated header "
                        "such as 'userId,movieId,rating,timestamp'", first)
    header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
    body = numbered[1:]
    if all(_is_int(name) for name in header[:2]):
        if len(header) != 4:  # headerless: only the canonical 4-column order is unambiguous
            raise DataError(path, first_no, "a header line naming the columns (userId, movieId, rating, "
                            "timestamp)", first)
        columns, body = dict(zip(_ROLES, range(4))), numbered
    else:
        columns = _header_columns(path, first_no, header)
    if not body:
        raise DataError(path, first_no + 1, "at least one rating line after the header", "end of file")
    return _Layout(body, delimiter, len(header), columns,
                   f"{len(header)} {'tab' if delimiter == chr(9) else 'comma'}-separated fields like the header")


def _refuse_repeated_pairs(path: Path, table: RatingsTable, line_numbers: np.ndarray, lines: list[str]) -> None:
    repeated = first_duplicate(_pair_keys(table.user, table.movie))
    if repeated is not None:
        later, earlier = repeated
        raise DataError(path, int(line_numbers[later]), f"each (user, movie) pair once (user {table.user[later]} "
                        f"already rated movie {table.movie[later]} on line {line_numbers[earlier]})", lines[later])


def _pair_keys(user: np.ndarray, movie: np.ndarray) -> np.ndarray:
    """One int64 per (user, movie) pair, equal exactly when both ids are (ids are non-negative here)."""
    if not len(user):
        return user
    width = int(movie.max()) + 1
    if int(user.max()) >= MAX_INT64 // width - 1:  # huge ids: renumber them 0..k-1 first
        user, movie = (np.unique(ids, return_inverse=True)[1].reshape(-1) for ids in (user, movie))
        width = int(movie.max()) + 1
    return user * width + movie


def _header_columns(path: Path, line_no: int, header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        role = _COLUMN_NAMES.get(name.lower().replace("_", "").replace(" ", ""))
        if role is not None and role not in columns:
            columns[role] = index
    missing = [role for role in _ROLES if role not in columns]
    if missing:
        raise DataError(path, line_no, "a header naming userId/user_id, movieId/movie_id/item_id, rating and "
                        f"timestamp columns (missing: {', '.join(missing)})", ",".join(header))
    return columns


def _split_fields(path: Path, lines: list[str], line_numbers: np.ndarray, delimiter: str, width: int,
                  expected: str) -> list[list[str]]:
    """Columns of string fields; checks every line has ``width`` fields.

    Splitting the joined text once (instead of one list per line) avoids creating a million small
    lists, which made the garbage collector dominate the parse time of ratings.dat.
    """
    quoted = delimiter != "::" and any('"' in line for line in lines)
    if quoted:  # real CSV quoting: let the csv module handle it
        rows = _quoted_rows(path, lines, line_numbers, delimiter)
        widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    else:
        widths = np.fromiter(map(methodcaller("count", delimiter), lines), dtype=np.int64, count=len(lines)) + 1
    bad = np.flatnonzero(widths != width)
    if len(bad):
        row = int(bad[0])
        raise DataError(path, int(line_numbers[row]), f"{expected} (found {widths[row]} fields)", lines[row])
    if quoted:
        return [list(column) for column in zip(*rows)]
    tokens = delimiter.join(lines).split(delimiter)  # int()/float() parsing ignores surrounding spaces
    return [tokens[column::width] for column in range(width)]


def _quoted_rows(path: Path, lines: list[str], line_numbers: np.ndarray, delimiter: str) -> list[list[str]]:
    """CSV rows of ``lines``, exactly one per line: an unbalanced quote would silently swallow the next lines."""
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines), newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise DataError(path, None, "comma/tab-separated fields", str(error)) from None
    if len(rows) != len(lines):
        row = next(i for i, fields in enumerate(rows) if any("\n" in field for field in fields))
        raise DataError(path, int(line_numbers[row]), "one rating a line (an unbalanced '\"'?)", lines[row])
    return rows


def _is_int(text: str) -> bool:
    """A plain ASCII integer that fits int64 (what :func:`parse_numbers` accepts)."""
    return is_number(text, True, -MAX_INT64 - 1, MAX_INT64)


def read_movie_titles(path: str | Path) -> dict[int, str]:
    """MovieID -> title from MovieLens ``movies.dat`` (``MovieID::Title::Genres``, ISO-8859-1) or a CSV.

    A MovieID listed twice is refused: which of its titles the item should get is not for us to guess.
    """
    path = Path(path)
    raw = read_bytes(path, "a movies file (MovieID::Title::Genres or a CSV with movieId and title)")
    try:
        text = raw.decode("utf-8-sig") if path.suffix.lower() == ".csv" else raw.decode("latin-1")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    first = next((line for line in text.split("\n") if line.strip()), "")
    entries = _dat_titles(path, text) if "::" in first or not first else _csv_titles(path, text)
    titles: dict[int, str] = {}
    line_of: dict[int, int] = {}
    for line_no, movie, title in entries:  # one entry per movie: thousands, not millions
        if movie in line_of:
            raise DataError(path, line_no, f"each MovieID once (movie {movie} is already on line {line_of[movie]})",
                            title)
        titles[movie], line_of[movie] = title, line_no
    return titles


def _dat_titles(path: Path, text: str) -> list[tuple[int, int, str]]:
    """(line, MovieID, title) of ``MovieID::Title::Genres`` lines (lines end at \\n only: latin-1 \\x85 is
    a character, not a line break)."""
    entries = []
    for line_no, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if "\r" in line:  # it would end the title's row in item_id_mapping.tsv
            raise DataError(path, line_no, "lines ending in \\n or \\r\\n (no carriage return inside a line)", line)
        if len(fields) < 2 or not _is_int(fields[0]):
            raise DataError(path, line_no, "'MovieID::Title::Genres' with an integer MovieID", line)
        entries.append((line_no, int(fields[0]), "::".join(fields[1:-1]) if len(fields) > 2 else fields[1]))
    return entries


def _csv_titles(path: Path, text: str) -> list[tuple[int, int, str]]:
    """(line, movieId, title) of a CSV such as ml-latest's movies.csv (``movieId,title,genres``)."""
    lines, rows = csv_rows(path, text, ",")
    header = [name.lower().replace("_", "") for name in rows[0]]
    if "movieid" not in header or "title" not in header:
        raise DataError(path, int(lines[0]), "'MovieID::Title::Genres' lines or a CSV header with movieId and title",
                        ",".join(rows[0]))
    id_col, title_col = header.index("movieid"), header.index("title")
    entries = []
    for line_no, row in zip(lines[1:].tolist(), rows[1:]):
        if len(row) <= max(id_col, title_col) or not _is_int(row[id_col]):
            raise DataError(path, line_no, "an integer movieId and a title", ",".join(row))
        entries.append((line_no, int(row[id_col]), row[title_col]))
    return entries
