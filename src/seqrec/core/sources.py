"""Find a split to train on: a split directory, raw ratings to prepare, or MovieLens-1M downloaded and verified.

``--data auto`` looks at ``$SEQREC_DATA``, then ``../shared/data/ml1m-split``, then the cache
(``$SEQREC_CACHE`` or ``~/.cache/seqrec``), and only then downloads ml-1m.zip from GroupLens.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from seqrec.core.data import SEQUENCE_FILES, DataError, Split, load_split
from seqrec.core.prepare import (DEFAULT_N_TEST, DEFAULT_N_VAL, DEFAULT_SEED, prepare_split, read_prepare_record,
                                  sha256_file)

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# Published by GroupLens as ml-1m.zip.md5; the same value is pinned by many independent projects.
ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
# SHA-256 of the same archive (5,917,549 bytes) as pinned by e.g. tensorflow/models and TFDS users.
ML1M_ZIP_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
DOWNLOAD_TIMEOUT_S = 60.0
SHARED_SPLIT = Path("..") / "shared" / "data" / "ml1m-split"  # relative to the working directory


def _file_digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def verify_archive(path: Path) -> None:
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
    verify_archive(archive)
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


def resolve_ratings(ratings: str | None, cache_dir: Path | None = None) -> Path:
    """Raw ratings for rating prediction: ``ratings`` (a file, a directory with ratings.dat/ratings.csv, or the
    Netflix Prize's files), or for None/"auto" ``$SEQREC_RATINGS``, ``../shared/data/ml-1m/ratings.dat``, the
    cache's ``ml-1m/ratings.dat``, else MovieLens-1M downloaded."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if ratings is None or str(ratings) == "auto":
        env = os.environ.get("SEQREC_RATINGS")
        if env and env != "auto":
            return resolve_ratings(env, cache_dir)
        shared = Path.cwd() / SHARED_SPLIT.parent / "ml-1m" / "ratings.dat"
        for candidate in (shared, cache_dir / "ml-1m" / "ratings.dat"):
            if candidate.is_file():
                return candidate.resolve()
        try:
            download_movielens(cache_dir)
        except (urllib.error.URLError, OSError) as error:
            raise DataError(cache_dir / "ml-1m", None, _offline_message(cache_dir), str(error)) from None
        return cache_dir / "ml-1m" / "ratings.dat"
    path = Path(ratings).expanduser()
    if path.is_dir() and _ratings_in(path) is not None:
        return _ratings_in(path)
    if not path.exists():
        raise DataError(path, None, "a ratings file, a directory with ratings.dat, or the Netflix Prize's "
                        "combined_data_*.txt", "no such file or directory")
    return path


def resolve_data(data: str | None, cache_dir: Path | None = None) -> Path:
    """Return a directory :func:`seqrec.core.data.load_split` can read, preparing or downloading if needed.

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


def load_data(data: str | None) -> Split:
    """The split that ``--data`` names (see :func:`resolve_data`), loaded and validated."""
    return load_split(resolve_data(None if data in (None, "auto") else data))
