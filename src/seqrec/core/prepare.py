"""Turn raw MovieLens ratings into the authors' split layout.

The protocol follows Devooght & Bersini's ``preprocess.py`` (rdevooght/sequence-based-recommendations):
all ratings are stably sorted by time, users and items get 0-based ids in order of first appearance
in that sorted data, ``n_val`` validation and ``n_test`` test users are drawn at random (here without
replacement, so the sets have exactly the requested sizes) and everyone else is a training user.
The output is what :func:`seqrec.core.data.load_split` reads, plus ``prepare.json`` so a cached split can
be recognised as coming from the same input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from seqrec.core.data import (ITEM_MAPPING_FILE, SEQUENCE_FILES, STATS_FILE, TIMESTAMP_FILES, DataError, Sequences,
                              os_error, write_item_mapping, write_sequences, write_timestamps)
from seqrec.core.ratings import NETFLIX_FILES, RatingsTable, read_movie_titles, read_ratings

PREPARE_FILE = "prepare.json"
DEFAULT_N_VAL = 500
DEFAULT_N_TEST = 500
DEFAULT_SEED = 0
SORTS = {"file": "stable time sort", "random": "time sort, same-second ratings in a seeded random order"}
WITHIN_SECOND = tuple(SORTS)  # order of same-second ratings: the file's (the authors') or a seeded draw


def first_appearance_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to 0..k-1 in order of first appearance; returns (ids, original value of each id)."""
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique values ordered by where they first occur
    rank = np.empty(len(unique), dtype=np.int64)
    rank[order] = np.arange(len(unique))
    return rank[inverse.reshape(-1)], unique[order]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks, or of a directory's files (the Netflix Prize's
    ``combined_data_*.txt``): their names and contents in name order. An unreadable file is a :class:`DataError`."""
    path = Path(path)
    files = sorted(path.glob(NETFLIX_FILES)) if path.is_dir() else []
    digest = hashlib.sha256()
    for file in files or [path]:  # a directory without them: refused as a file
        if files:
            digest.update(file.name.encode() + b"\0")
        try:
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as error:
            raise os_error(file, "a readable file", error) from None
    return digest.hexdigest()


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("seqrec")
    except PackageNotFoundError:
        import seqrec

        return str(getattr(seqrec, "__version__", "unknown"))


def _set_sequences(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                   members: np.ndarray, times: np.ndarray) -> Sequences:
    """CSR sequences of the users flagged in ``members``; inputs must be grouped by user in time order."""
    keep = members[users]
    counts = np.bincount(users[keep], minlength=n_users)
    user_ids = np.flatnonzero(members)
    return Sequences(
        user_ids=user_ids.astype(np.int64),
        items=items[keep].astype(np.int32),
        ratings=ratings[keep].astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(counts[user_ids])]).astype(np.int64),
        times=times[keep],
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


def by_user_in_time(users: np.ndarray, times: np.ndarray, within_second: str, seed: int) -> np.ndarray:
    """Indices grouping time-sorted ratings by user, in time order inside each user; a user's same-second
    ratings keep their order (``file``) or get one drawn from ``seed`` (``random``; a stream apart from the user
    draw's). Ids and the user draw never depend on it: both ways give the same users the same items."""
    if within_second == "file":
        return np.argsort(users, kind="stable")
    return np.lexsort((np.random.default_rng([seed, 1]).random(len(users)), times, users))


def _draw_groups(n_users: int, n_val: int, n_test: int, seed: int) -> np.ndarray:
    """Per user 0 (train), 1 (validation) or 2 (test): ``n_val`` + ``n_test`` users drawn without replacement."""
    drawn = np.random.default_rng(seed).choice(n_users, size=n_val + n_test, replace=False)
    group = np.zeros(n_users, dtype=np.int8)
    group[drawn[:n_val]] = 1
    group[drawn[n_val:]] = 2
    return group


def _write_stats(path: Path, full: Sequences, sets: dict[str, Sequences]) -> None:
    """The authors' ``stats`` table: one row for all users, then one per set."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write("set\tn_users\tn_items\tn_interactions\tlongest_sequence\n")
        handle.write(_stats_row("Full", full))
        for label, name in (("Train", "train"), ("Val", "val"), ("Test", "test")):
            handle.write(_stats_row(label, sets[name]))


def prepare_split(ratings_path: str | Path, out_dir: str | Path, *, movies_path: str | Path | None = None,
                  n_val: int = DEFAULT_N_VAL, n_test: int = DEFAULT_N_TEST, seed: int = DEFAULT_SEED,
                  within_second: str = "file") -> Path:
    """Build the authors' split of a ratings file in ``out_dir`` (atomically) and return ``out_dir``.

    ``movies_path`` (default: ``movies.dat`` next to the ratings) only supplies titles for
    ``item_id_mapping.tsv``. An existing ``out_dir`` is replaced only if it is empty or was itself
    written by this function, so a mistyped path can never wipe an unrelated directory.

    ``within_second``: the order of one user's same-second ratings. ``file`` keeps the file's (the authors'
    protocol); ``random`` draws it from ``seed`` (the *clean split*: no order inside a second that a model
    could learn and a user's own data would not have, such as the MovieID order of the authors' files).
    """
    ratings_path, out_dir = Path(ratings_path), Path(out_dir)
    if n_val < 1 or n_test < 1:
        raise ValueError(f"n_val and n_test must be at least 1 (got n_val={n_val}, n_test={n_test})")
    if within_second not in WITHIN_SECOND:
        raise ValueError(f"within_second must be one of {WITHIN_SECOND}, got {within_second!r}")
    _check_target(out_dir)  # before the work, not after it
    movies = Path(movies_path) if movies_path is not None else _default_movies_path(ratings_path)
    table = read_ratings(ratings_path)
    titles = read_movie_titles(movies) if movies is not None else {}
    users, items, ratings, times, movie_original = _time_ordered(table, within_second, seed)
    n_users = int(users.max()) + 1 if len(users) else 0
    if n_users < n_val + n_test + 1:
        raise DataError(ratings_path, None, f"at least n_val + n_test + 1 = {n_val + n_test + 1} users "
                        f"({n_val} validation, {n_test} test and one training user)", f"{n_users} users")
    group = _draw_groups(n_users, n_val, n_test, seed)
    full = _set_sequences(users, items, ratings, n_users, np.ones(n_users, dtype=bool), times)
    sets = {name: _set_sequences(users, items, ratings, n_users, group == code, times)
            for code, name in enumerate(("train", "val", "test"))}
    record = {
        "protocol": f"Devooght & Bersini preprocess: {SORTS[within_second]}, first-appearance ids, "
                    "random val/test users without replacement",
        "ratings": {"path": str(ratings_path.resolve()), "sha256": sha256_file(ratings_path)},
        "movies": ({"path": str(movies.resolve()), "sha256": sha256_file(movies)} if movies is not None else None),
        "seed": seed, "within_second": within_second, "n_val": n_val, "n_test": n_test, "n_users": n_users,
        "n_items": len(movie_original), "n_interactions": len(table), "seqrec_version": _package_version(),
    }
    _write_atomically(out_dir, partial(_write_split, sets=sets, full=full, record=record,
                                       movie_original=movie_original,
                                       titles=[titles.get(int(movie), "") for movie in movie_original]))
    return out_dir


def _time_ordered(table: RatingsTable, within_second: str,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ratings as (user, item, rating, time) arrays grouped by user in time order, with first-appearance ids
    (users and items numbered in the order they first rate or are rated), and each item id's original MovieID.
    Same-second ratings keep the file's order, or a ``seed``-drawn one (``within_second``)."""
    order = np.argsort(table.timestamp, kind="stable")  # ties keep file order
    users, _ = first_appearance_ids(table.user[order])
    items, movie_original = first_appearance_ids(table.movie[order])
    times = table.timestamp[order]
    by_user = by_user_in_time(users, times, within_second, seed)
    return users[by_user], items[by_user], table.rating[order][by_user], times[by_user], movie_original


def _write_split(directory: Path, *, sets: dict[str, Sequences], full: Sequences, record: dict,
                 movie_original: np.ndarray, titles: list[str]) -> None:
    """Every file of a prepared split, into ``directory`` (a temporary one that :func:`_write_atomically` renames)."""
    for name, sequences in sets.items():
        write_sequences(directory / SEQUENCE_FILES[name], sequences)
    for name, sequences in sets.items():  # the times of every set: tie-aware metrics (ties.with_times)
        write_timestamps(directory / TIMESTAMP_FILES[name], sequences, sequences.times)
    _write_stats(directory / STATS_FILE, full, sets)
    write_item_mapping(directory / ITEM_MAPPING_FILE, movie_original, titles)
    (directory / PREPARE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


OUT_DIR_EXPECTED = "an output directory that can be written (empty, new, or written by prepare_split)"


def _write_atomically(out_dir: Path, write: Callable[[Path], None]) -> None:
    """``write`` the files into a temporary sibling of ``out_dir``, then move it there: never half-written.
    A directory the OS will not let us create or write is a :class:`DataError` naming it."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as error:
        raise os_error(out_dir.parent, OUT_DIR_EXPECTED, error) from None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _replace_dir(tmp, out_dir)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise os_error(out_dir, OUT_DIR_EXPECTED, error) from None
        raise


def _check_target(target: Path) -> None:
    """Refuse to replace a file, or a directory holding anything but a split written here (prepare.json)."""
    try:
        existing = next(path for path in (target, *target.parents) if path.exists())
        if existing != target and not existing.is_dir():
            raise DataError(existing, None, f"a directory to hold {target.name}", "a file")
        if not target.exists():
            return
        if not target.is_dir():
            raise DataError(target, None, "a directory for the split", "an existing file; refusing to overwrite it")
        if any(target.iterdir()) and not (target / PREPARE_FILE).is_file():
            raise DataError(target, None, "an empty directory or one written by prepare_split (with prepare.json)",
                            "an existing directory with other content; refusing to overwrite it")
    except OSError as error:
        raise os_error(target, OUT_DIR_EXPECTED, error) from None


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished ``new`` directory to ``target`` with renames only (never half-written)."""
    _check_target(target)  # again: it may have changed while the split was computed
    if target.exists():
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
