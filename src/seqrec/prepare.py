"""Turn raw MovieLens ratings into the authors' split layout, and find a split to train on.

The protocol follows Devooght & Bersini's ``preprocess.py`` (rdevooght/sequence-based-recommendations):
all ratings are stably sorted by time, users and items get 0-based ids in order of first appearance
in that sorted data, ``n_val`` validation and ``n_test`` test users are drawn at random (here without
replacement, so the sets have exactly the requested sizes) and everyone else is a training user.
The output is what :func:`seqrec.data.load_split` reads, plus ``prepare.json`` so a cached split can
be recognised as coming from the same input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from operator import methodcaller
from pathlib import Path

import numpy as np

from seqrec.data import (ITEM_MAPPING_FILE, SEQUENCE_FILES, STATS_FILE, TIMESTAMPS_FILE, DataError, Sequences, Split,
                         TieOrder, read_timestamps, tie_order, tie_order_name, write_sequences, write_timestamps)

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# Published by GroupLens as ml-1m.zip.md5; the same value is pinned by many independent projects.
ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
# SHA-256 of the same archive (5,917,549 bytes) as pinned by e.g. tensorflow/models and TFDS users.
ML1M_ZIP_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
DOWNLOAD_TIMEOUT_S = 60.0

PREPARE_FILE = "prepare.json"
SHARED_SPLIT = Path("..") / "shared" / "data" / "ml1m-split"  # relative to the working directory
DEFAULT_N_VAL = 500
DEFAULT_N_TEST = 500
DEFAULT_SEED = 0

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


# --------------------------------------------------------------------------------------------- preparing


def first_appearance_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to 0..k-1 in order of first appearance; returns (ids, original value of each id)."""
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique values ordered by where they first occur
    rank = np.empty(len(unique), dtype=np.int64)
    rank[order] = np.arange(len(unique))
    return rank[inverse.reshape(-1)], unique[order]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("seqrec")
    except PackageNotFoundError:
        import seqrec

        return str(getattr(seqrec, "__version__", "unknown"))


def _set_sequences(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                   members: np.ndarray) -> Sequences:
    """CSR sequences of the users flagged in ``members``; inputs must be grouped by user in time order."""
    keep = members[users]
    counts = np.bincount(users[keep], minlength=n_users)
    user_ids = np.flatnonzero(members)
    return Sequences(
        user_ids=user_ids.astype(np.int64),
        items=items[keep].astype(np.int32),
        ratings=ratings[keep].astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(counts[user_ids])]).astype(np.int64),
    )


def _stats_row(name: str, sequences: Sequences) -> str:
    lengths = sequences.lengths
    n_items = len(np.unique(sequences.items))
    longest = int(lengths.max()) if len(lengths) else 0
    return f"{name}\t{len(sequences)}\t{n_items}\t{len(sequences.items)}\t{longest}\n"


def _default_movies_path(ratings_path: Path) -> Path | None:
    for name in ("movies.dat", "movies.csv"):
        candidate = ratings_path.parent / name
        if candidate.is_file():
            return candidate
    return None


def prepare_split(ratings_path: str | Path, out_dir: str | Path, *, movies_path: str | Path | None = None,
                  n_val: int = DEFAULT_N_VAL, n_test: int = DEFAULT_N_TEST, seed: int = DEFAULT_SEED) -> Path:
    """Build the authors' split of a ratings file in ``out_dir`` (atomically) and return ``out_dir``.

    ``movies_path`` (default: ``movies.dat`` next to the ratings) only supplies titles for
    ``item_id_mapping.tsv``. An existing ``out_dir`` is replaced only if it is empty or was itself
    written by this function, so a mistyped path can never wipe an unrelated directory.
    """
    ratings_path, out_dir = Path(ratings_path), Path(out_dir)
    if n_val < 1 or n_test < 1:
        raise ValueError(f"n_val and n_test must be at least 1 (got n_val={n_val}, n_test={n_test})")
    movies = Path(movies_path) if movies_path is not None else _default_movies_path(ratings_path)
    table = read_ratings(ratings_path)
    titles = read_movie_titles(movies) if movies is not None else {}

    order = np.argsort(table.timestamp, kind="stable")  # ties keep file order
    users, user_original = first_appearance_ids(table.user[order])
    items, movie_original = first_appearance_ids(table.movie[order])
    ratings = table.rating[order]
    n_users, n_items = len(user_original), len(movie_original)
    if n_users < n_val + n_test + 1:
        raise DataError(ratings_path, None, f"at least n_val + n_test + 1 = {n_val + n_test + 1} users "
                        f"({n_val} validation, {n_test} test and one training user)", f"{n_users} users")

    drawn = np.random.default_rng(seed).choice(n_users, size=n_val + n_test, replace=False)
    group = np.zeros(n_users, dtype=np.int8)  # 0 train, 1 val, 2 test
    group[drawn[:n_val]] = 1
    group[drawn[n_val:]] = 2

    by_user = np.argsort(users, kind="stable")  # group by user, keeping time order inside each user
    users, items, ratings = users[by_user], items[by_user], ratings[by_user]
    train_times = table.timestamp[order][by_user][(group == 0)[users]]
    full = _set_sequences(users, items, ratings, n_users, np.ones(n_users, dtype=bool))
    sets = {name: _set_sequences(users, items, ratings, n_users, group == code)
            for code, name in enumerate(("train", "val", "test"))}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for name, sequences in sets.items():
            write_sequences(tmp / SEQUENCE_FILES[name], sequences)
        write_timestamps(tmp / TIMESTAMPS_FILE, sets["train"], train_times)
        with (tmp / STATS_FILE).open("w", encoding="utf-8", newline="\n") as handle:
            handle.write("set\tn_users\tn_items\tn_interactions\tlongest_sequence\n")
            handle.write(_stats_row("Full", full))
            for label, name in (("Train", "train"), ("Val", "val"), ("Test", "test")):
                handle.write(_stats_row(label, sets[name]))
        with (tmp / ITEM_MAPPING_FILE).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["item_index", "movie_id", "title"])
            writer.writerows([index, int(movie), titles.get(int(movie), "")]
                             for index, movie in enumerate(movie_original))
        record = {
            "protocol": "Devooght & Bersini preprocess: stable time sort, first-appearance ids, "
                        "random val/test users without replacement",
            "ratings": {"path": str(ratings_path.resolve()), "sha256": sha256_file(ratings_path)},
            "movies": ({"path": str(movies.resolve()), "sha256": sha256_file(movies)} if movies is not None else None),
            "seed": seed,
            "n_val": n_val,
            "n_test": n_test,
            "n_users": n_users,
            "n_items": n_items,
            "n_interactions": len(table),
            "seqrec_version": _package_version(),
        }
        (tmp / PREPARE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished ``new`` directory to ``target`` with renames only (never half-written)."""
    if target.exists():
        if not target.is_dir() or (any(target.iterdir()) and not (target / PREPARE_FILE).is_file()):
            raise DataError(target, None, "an empty directory or one written by prepare_split (with prepare.json)",
                            "an existing directory with other content; refusing to overwrite it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def read_prepare_record(split_dir: str | Path) -> dict | None:
    """The ``prepare.json`` of a split written by :func:`prepare_split`, or None if absent/unreadable."""
    path = Path(split_dir) / PREPARE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------------------------- download


def _file_digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _verify_archive(path: Path) -> None:
    """Delete and refuse an archive whose checksums differ from the published ml-1m.zip."""
    sha, md5 = _file_digests(path)
    if sha != ML1M_ZIP_SHA256 or md5 != ML1M_ZIP_MD5:
        path.unlink(missing_ok=True)
        raise DataError(path, None, f"the published ml-1m.zip (sha256 {ML1M_ZIP_SHA256}, md5 {ML1M_ZIP_MD5}); "
                        "the file was deleted, download it again", f"sha256 {sha}, md5 {md5}")


def download_movielens(cache_dir: str | Path, *, url: str = ML1M_URL, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch GroupLens ml-1m.zip into ``cache_dir``, verify it and extract to ``cache_dir/ml-1m/``.

    Network errors propagate (``urllib.error.URLError`` / ``OSError``) so callers can explain how
    to provide the data offline; a checksum mismatch raises :class:`DataError`.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / "ml-1m"
    if (target / "ratings.dat").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / "ml-1m.zip"
    if not archive.is_file():
        partial = archive.with_name(archive.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
            os.replace(partial, archive)
        finally:
            partial.unlink(missing_ok=True)
    _verify_archive(archive)
    staging = Path(tempfile.mkdtemp(prefix=".ml-1m.extract-", dir=cache_dir))
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)  # extractall strips absolute paths and '..'
        extracted = staging / "ml-1m"
        if not (extracted / "ratings.dat").is_file():
            raise DataError(archive, None, "an archive containing ml-1m/ratings.dat", "no ml-1m/ratings.dat inside")
        if target.exists():
            shutil.rmtree(target)  # incomplete earlier extraction (no ratings.dat)
        os.replace(extracted, target)
    except zipfile.BadZipFile as error:
        raise DataError(archive, None, "a valid zip archive", str(error)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------- resolving


def default_cache_dir() -> Path:
    """``$SEQREC_CACHE`` or ``~/.cache/seqrec``: where downloads and prepared splits are kept."""
    env = os.environ.get("SEQREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqrec"


def _is_split_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in SEQUENCE_FILES.values())


def _ratings_in(directory: Path) -> Path | None:
    for name in ("ratings.dat", "ratings.csv"):
        if (directory / name).is_file():
            return directory / name
    return None


def _prepared_from(ratings_path: Path, cache_dir: Path, name: str) -> Path:
    """Prepare ``ratings_path`` into ``cache_dir/<name>-split-seed0`` unless it is already there."""
    out = cache_dir / f"{name}-split-seed{DEFAULT_SEED}"
    record = read_prepare_record(out)
    if (_is_split_dir(out) and record is not None
            and record.get("ratings", {}).get("sha256") == sha256_file(ratings_path)
            and (record.get("seed"), record.get("n_val"), record.get("n_test"))
            == (DEFAULT_SEED, DEFAULT_N_VAL, DEFAULT_N_TEST)):
        return out
    return prepare_split(ratings_path, out, seed=DEFAULT_SEED, n_val=DEFAULT_N_VAL, n_test=DEFAULT_N_TEST)


def _offline_message(cache_dir: Path) -> str:
    names = ", ".join(SEQUENCE_FILES.values())
    return (f"MovieLens-1M, but it could not be downloaded from {ML1M_URL}. Put ml-1m.zip's ratings.dat "
            f"(and movies.dat) in {cache_dir / 'ml-1m'}/, or ml-1m.zip itself in {cache_dir}/, "
            f"or pass --data DIR with {names}, or set SEQREC_DATA")


def resolve_data(data: str | None, cache_dir: Path | None = None) -> Path:
    """Return a directory :func:`seqrec.data.load_split` can read, preparing or downloading if needed.

    ``data`` may be a split directory, a directory with ``ratings.dat``, a ratings file, or
    None/"auto" (``$SEQREC_DATA``, then ``../shared/data/ml1m-split``, then the cache, then download).
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if data is None or str(data) == "auto":
        env = os.environ.get("SEQREC_DATA")
        if env and env != "auto":
            return resolve_data(env, cache_dir)
        shared = Path.cwd() / SHARED_SPLIT
        if _is_split_dir(shared):
            return shared.resolve()
        local = cache_dir / "ml-1m"
        if (local / "ratings.dat").is_file():  # reuses the cached split when its checksum still matches
            return _prepared_from(local / "ratings.dat", cache_dir, "ml-1m")
        cached = cache_dir / f"ml-1m-split-seed{DEFAULT_SEED}"
        if _is_split_dir(cached):
            return cached
        try:
            download_movielens(cache_dir)
        except (urllib.error.URLError, OSError) as error:  # URLError and timeouts are OSErrors
            raise DataError(local, None, _offline_message(cache_dir), str(error)) from None
        return _prepared_from(local / "ratings.dat", cache_dir, "ml-1m")

    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(path, None, "an existing split directory (with " + ", ".join(SEQUENCE_FILES.values())
                        + "), a directory with ratings.dat, or a ratings file", "no such file or directory")
    if path.is_file():
        name = path.parent.resolve().name if path.stem == "ratings" else f"{path.parent.resolve().name}-{path.stem}"
        return _prepared_from(path, cache_dir, name)
    if _is_split_dir(path):
        return path
    ratings = _ratings_in(path)
    if ratings is not None:
        return _prepared_from(ratings, cache_dir, path.resolve().name)
    present = [name for name in SEQUENCE_FILES.values() if (path / name).is_file()]
    got = f"only {', '.join(present)}" if present else "neither sequence files nor ratings.dat"
    raise DataError(path, None, "a split directory with " + ", ".join(SEQUENCE_FILES.values())
                    + " or a directory containing ratings.dat", got)


USER_MAPPING_FILE = "user_id_mapping.tsv"  # user_index, user_id (MovieLens), set: the authors' split has it
RAW_RATINGS_NEXT_TO_SPLIT = ("ratings.dat", "ratings.partial.dat")  # looked up in <split>/../ml-1m/


def train_timestamps(split: Split) -> np.ndarray | None:
    """Unix time of every training interaction (-1 where unknown), or None when there is no source.

    The split's own ``train_set_timestamps`` (written by :func:`prepare_split`) comes first; the
    authors' split has none, so its times are joined from the raw MovieLens ratings next to it
    (``../ml-1m/``) through ``user_id_mapping.tsv`` and ``item_id_mapping.tsv``.
    """
    own = split.directory / TIMESTAMPS_FILE
    if own.is_file():
        return read_timestamps(own, split.train)
    return raw_timestamps(split, split.train)


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
    table = read_ratings(raw)
    width = int(max(table.movie.max(), split.catalogue.movie_ids.max())) + 1
    raw_keys = table.user * width + table.movie
    by_key = np.argsort(raw_keys, kind="stable")
    raw_keys, raw_times = raw_keys[by_key], table.timestamp[by_key]
    keys = (movielens_user[sequences.user_ids[sequences.row_of_interaction()]] * width
            + split.catalogue.movie_ids[sequences.items])
    found = np.minimum(np.searchsorted(raw_keys, keys), len(raw_keys) - 1)
    return np.where(raw_keys[found] == keys, raw_times[found], -1)


def train_tie_order(split: Split, name: str, noise: float = 0.0,
                    timestamps: np.ndarray | None = None) -> TieOrder | None:
    """Tie order ``name`` (see :data:`seqrec.data.TIE_ORDERS`) of the training users; warns on a fallback.

    ``timestamps`` saves reading them again when the caller has :func:`train_timestamps` already.
    """
    if name == "file":
        return None
    timestamps = train_timestamps(split) if timestamps is None else timestamps
    movie_ids = split.catalogue.movie_ids if split.catalogue is not None else None
    ties = tie_order(name, split.train, timestamps, movie_ids, noise)
    if tie_order_name(ties) != name:
        missing = ("timestamps (train_set_timestamps, or raw ratings in ../ml-1m/ with the id mappings)"
                   if timestamps is None else f"{ITEM_MAPPING_FILE} (MovieIDs)")
        warnings.warn(f"tie order {name}: {split.directory} lacks {missing}; same-second training ratings "
                      f"are in {tie_order_name(ties)} order", stacklevel=2)
    return ties
