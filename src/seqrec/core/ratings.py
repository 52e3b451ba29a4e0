"""Read raw MovieLens files: ratings (``UserID::MovieID::Rating::Timestamp`` .dat, or a CSV/TSV with a header)
and movie titles. Every malformed line is a :class:`~seqrec.core.data.DataError` naming the file and the line."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from operator import methodcaller
from pathlib import Path

import numpy as np

from seqrec.core.data import DataError

_COLUMN_NAMES = {  # normalised header name (lower case, no '_') -> column role
    "userid": "user", "user": "user",
    "movieid": "movie", "itemid": "movie", "movie": "movie", "item": "movie",
    "rating": "rating",
    "timestamp": "timestamp",
}
_ROLES = ("user", "movie", "rating", "timestamp")


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
    """Read ``UserID::MovieID::Rating::Timestamp`` (MovieLens .dat) or a CSV/TSV with a header.

    Every malformed line is reported as a :class:`DataError` with file and line number, so a bad
    download or a wrong file fails with a message instead of a numpy traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "a ratings file (UserID::MovieID::Rating::Timestamp or a CSV with a header)",
                        "no such file")
    # latin-1 never fails to decode; ids/ratings/timestamps are ASCII in every accepted format.
    text = path.read_text(encoding="latin-1")
    lines = text.removeprefix("\xef\xbb\xbf").splitlines()  # a UTF-8 byte-order mark seen through latin-1
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(path, 1, "ratings lines 'UserID::MovieID::Rating::Timestamp' or a CSV header",
                        "empty file")
    first_no, first = numbered[0]
    if "::" in first:
        body, delimiter, width = [(number, line.strip()) for number, line in numbered], "::", 4
        columns = dict(zip(_ROLES, range(4)))
        expected = "4 '::'-separated fields UserID::MovieID::Rating::Timestamp"
    else:
        delimiter = "\t" if "\t" in first else "," if "," in first else None
        if delimiter is None:
            raise DataError(path, first_no, "'UserID::MovieID::Rating::Timestamp' or a comma/tab separated header "
                            "such as 'userId,movieId,rating,timestamp'", first)
        header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
        width, body = len(header), numbered[1:]
        if all(_is_int(name) for name in header[:2]):
            if width != 4:  # headerless: only the canonical 4-column order is unambiguous
                raise DataError(path, first_no, "a header line naming the columns (userId, movieId, rating, "
                                "timestamp)", first)
            columns, body = dict(zip(_ROLES, range(4))), numbered
        else:
            columns = _header_columns(path, first_no, header)
        if not body:
            raise DataError(path, first_no + 1, "at least one rating line after the header", "end of file")
        expected = f"{width} {'tab' if delimiter == chr(9) else 'comma'}-separated fields like the header"
    line_numbers = np.array([number for number, _ in body], dtype=np.int64)
    fields = _split_fields(path, [line for _, line in body], line_numbers, delimiter, width, expected)
    user = _int_column(path, fields[columns["user"]], line_numbers, "an integer user id")
    movie = _int_column(path, fields[columns["movie"]], line_numbers, "an integer movie id")
    rating = _float_column(path, fields[columns["rating"]], line_numbers, "a numeric rating")
    timestamp = _int_column(path, fields[columns["timestamp"]], line_numbers, "an integer timestamp (seconds)")
    return RatingsTable(user=user, movie=movie, rating=rating.astype(np.float32), timestamp=timestamp)


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
        rows = list(csv.reader(lines, delimiter=delimiter))
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


def _is_int(text: str) -> bool:
    """Parses as an int that fits int64 (what the numpy fast path accepts)."""
    try:
        return -(2**63) <= int(text) < 2**63
    except ValueError:
        return False


def _is_finite_float(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def _int_column(path: Path, values: list[str], line_numbers: np.ndarray, expected: str) -> np.ndarray:
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        pass  # slow path only on error: find the first offending line to report it
    row = next((i for i, value in enumerate(values) if not _is_int(value)), 0)
    raise DataError(path, int(line_numbers[row]), expected, values[row])


def _float_column(path: Path, values: list[str], line_numbers: np.ndarray, expected: str) -> np.ndarray:
    try:
        column = np.array(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(column))
    except ValueError:
        bad = np.array([next((i for i, value in enumerate(values) if not _is_finite_float(value)), 0)])
    if len(bad):
        row = int(bad[0])
        raise DataError(path, int(line_numbers[row]), expected, values[row])
    return column


def read_movie_titles(path: str | Path) -> dict[int, str]:
    """MovieID -> title from MovieLens ``movies.dat`` (``MovieID::Title::Genres``, ISO-8859-1) or a CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "a movies file (MovieID::Title::Genres)", "no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8") if path.suffix.lower() == ".csv" else raw.decode("latin-1")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    titles: dict[int, str] = {}
    if lines and "::" not in lines[0]:  # CSV such as ml-latest's movies.csv: movieId,title,genres
        rows = list(csv.reader(io.StringIO(text)))
        header = [name.lower().replace("_", "") for name in rows[0]] if rows else []
        if "movieid" not in header or "title" not in header:
            raise DataError(path, 1, "'MovieID::Title::Genres' lines or a CSV header with movieId and title",
                            lines[0])
        id_col, title_col = header.index("movieid"), header.index("title")
        for line_no, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) <= max(id_col, title_col) or not _is_int(row[id_col]):
                raise DataError(path, line_no, "an integer movieId and a title", ",".join(row))
            titles[int(row[id_col])] = row[title_col]
        return titles
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) < 2 or not _is_int(fields[0]):
            raise DataError(path, line_no, "'MovieID::Title::Genres' with an integer MovieID", line)
        titles[int(fields[0])] = "::".join(fields[1:-1]) if len(fields) > 2 else fields[1]
    return titles
