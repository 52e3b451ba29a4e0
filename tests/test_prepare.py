"""Tests for seqrec.core.prepare, .ratings and .sources: raw ratings -> authors' split, download verification,
data resolution."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from seqrec.core import prepare, ratings, sources, ties
from seqrec.core.data import DataError, load_split, read_item_mapping, read_stats

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_RATINGS = SHARED / "data" / "ml-1m" / "ratings.partial.dat"

# (user, movie, rating, timestamp) in file order. Time-sorted (stable): u30 first, then the t=3 tie
# u20/m200 before u10/m300 (file order), then t=5: u10/m100, u10/m500 (tie inside a user), u20/m100.
SMALL = [
    (10, 100, 4, 5),
    (20, 200, 3, 3),
    (10, 300, 5, 3),
    (10, 500, 2, 5),
    (20, 100, 1, 5),
    (30, 400, 4.5, 1),
]


def write_dat(path: Path, rows, sep: str = "::") -> Path:
    path.write_text("".join(sep.join(map(str, row)) + "\n" for row in rows), encoding="ascii")
    return path


def many_users(n_users: int, per_user: int = 3, seed: int = 1) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        for movie in rng.choice(60, size=per_user, replace=False):
            rows.append((user, int(movie) + 1, int(rng.integers(1, 6)), int(rng.integers(0, 40))))
    return rows


def all_sequences(split) -> dict[int, list[int]]:
    """user id -> item sequence over train, val and test."""
    out = {}
    for sequences in (split.train, split.val, split.test):
        for row, user in enumerate(sequences.user_ids):
            out[int(user)] = sequences.sequence(row).tolist()
    return out


# ------------------------------------------------------------------------------------------ read_ratings


def test_read_dat_format(tmp_path):
    table = ratings.read_ratings(write_dat(tmp_path / "ratings.dat", SMALL))
    assert table.user.tolist() == [10, 20, 10, 10, 20, 30]
    assert table.movie.tolist() == [100, 200, 300, 500, 100, 400]
    assert table.rating.dtype == np.float32 and table.rating[-1] == pytest.approx(4.5)
    assert table.timestamp.dtype == np.int64 and table.timestamp.tolist() == [5, 3, 3, 5, 5, 1]
    assert len(table) == 6


def test_read_csv_with_header_any_column_order(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("timestamp,rating,item_id,user_id\n5,4.0,100,10\n3,3.5,200,20\n\n", encoding="utf-8")
    table = ratings.read_ratings(path)
    assert table.user.tolist() == [10, 20]
    assert table.movie.tolist() == [100, 200]
    assert table.rating.tolist() == [4.0, 3.5]
    assert table.timestamp.tolist() == [5, 3]


def test_read_tsv_with_header(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text("UserID\tMovieID\tRating\tTimestamp\n10\t100\t4\t5\n20\t200\t3\t3\n", encoding="utf-8")
    table = ratings.read_ratings(path)
    assert table.user.tolist() == [10, 20] and table.movie.tolist() == [100, 200]


def test_read_csv_with_utf8_bom(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n7,8,2.5,9\n", encoding="utf-8-sig")
    assert ratings.read_ratings(path).user.tolist() == [7]


def test_read_quoted_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text('userId,movieId,rating,timestamp\n"1","2","3","4"\n1,3,5,6\n', encoding="utf-8")
    table = ratings.read_ratings(path)
    assert table.user.tolist() == [1, 1] and table.rating.tolist() == [3.0, 5.0]


NETFLIX = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n\n2:\n1488844,4,2005-09-06\n30878,1,2000-01-01\n"


def test_read_netflix_prize_format(tmp_path):
    """combined_data_*.txt: a 'MovieID:' line, then 'CustomerID,Rating,Date'; a day is a tie (midnight UTC)."""
    path = tmp_path / "combined_data_1.txt"
    path.write_text(NETFLIX, encoding="utf-8")
    table = ratings.read_ratings(path)
    assert table.user.tolist() == [1488844, 822109, 1488844, 30878]
    assert table.movie.tolist() == [1, 1, 2, 2] and table.rating.tolist() == [3.0, 5.0, 4.0, 1.0]
    assert table.timestamp.tolist() == [1125964800, 1115942400, 1125964800, 946684800]  # 2005-09-06 00:00 UTC, ...


def test_a_directory_of_netflix_files_is_one_table_and_prepares(tmp_path):
    (tmp_path / "netflix").mkdir()
    (tmp_path / "netflix" / "combined_data_1.txt").write_text(NETFLIX, encoding="utf-8")
    rows = [f"{movie}:\n" + "".join(f"{user},{1 + (user + movie) % 5},2005-01-{1 + movie % 28:02d}\n"
                                     for user in range(100, 130)) for movie in range(3, 30)]
    (tmp_path / "netflix" / "combined_data_2.txt").write_text("".join(rows), encoding="utf-8")
    table = ratings.read_ratings(tmp_path / "netflix")
    assert len(table) == 4 + 27 * 30 and table.movie[:4].tolist() == [1, 1, 2, 2]
    split = load_split(prepare.prepare_split(tmp_path / "netflix", tmp_path / "split", n_val=5, n_test=5))
    assert len(split.train) + len(split.val) + len(split.test) == 3 + 30  # every customer
    (tmp_path / "netflix" / "combined_data_3.txt").write_text("1:\n822109,2,2005-01-01\n", encoding="utf-8")
    with pytest.raises(DataError, match="each .customer, movie. pair once across the files"):
        ratings.read_ratings(tmp_path / "netflix")


def test_a_pair_rated_twice_is_refused_with_both_lines(tmp_path):
    """Which of the two ratings, at which time, would the sequence hold? (see tests/test_hostile_data.py too)"""
    path = tmp_path / "ratings.csv"
    path.write_text('userId,movieId,rating,timestamp\n"1","2","3","4"\n1,3,5,6\n1,2,5,6\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings\.csv:4: expected each \(user, movie\) pair once \(user 1 already "
                       r"rated movie 2 on line 2\)"):
        ratings.read_ratings(path)


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("1::2::3::4\n1::2::3\n", 2, "4 '::'-separated fields"),
        ("1::2::3::4\n\n1::2::3::4::5\n", 3, "4 '::'-separated fields"),
        ("1::2::3::4\nx::2::3::4\n", 2, "integer user id"),
        ("1::2::3::4\n1::2.5::3::4\n", 2, "integer movie id"),
        ("1::2::3::4\n1::2::3::4\n1::2::good::4\n", 3, "numeric rating"),
        ("1::2::nan::4\n", 1, "numeric rating"),
        ("1::2::3::4\n1::2::3::4.5\n", 2, "integer timestamp"),
        ("1::2::3::99999999999999999999999\n", 1, "integer timestamp"),
        ("", 1, "empty file"),
        ("\n  \n", 1, "empty file"),
        ("userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", 3, "4 comma-separated fields"),
        ("userId\tmovieId\trating\ttimestamp\n1\t2\tx\t4\n", 2, "numeric rating"),
        ("userId,movieId,score,timestamp\n1,2,3,4\n", 1, "missing: rating"),
        ("userId,movieId,rating,timestamp\n", 2, "at least one rating line"),
        ("1 2 3 4\n", 1, "comma/tab separated header"),
        ("1:\n6,3,2005-09-06\n6,4\n", 3, "'CustomerID,Rating,YYYY-MM-DD' (Netflix Prize format"),
        ("1:\n6,3,2005-13-06\n", 2, "a rating date YYYY-MM-DD"),
        ("1:\n6,3,1969-12-31\n", 2, "a rating date YYYY-MM-DD from 1970 on"),
        ("1:\n6,six,2005-09-06\n", 2, "numeric rating"),
        ("1:\n6,3,2005-09-06\n-2:\n", 3, "a non-negative integer MovieID before ':'"),
        ("1:\n6,3,2005-09-06\n2:\n6,1,2005-09-07\n1:\n6,2,2005-09-08\n", 6, "each (user, movie) pair once"),
        ("1:\n", 2, "end of file"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad_ratings.dat"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        ratings.read_ratings(path)
    message = str(info.value)
    assert f"bad_ratings.dat:{line}:" in message
    assert fragment in message
    assert info.value.line == line


def test_missing_ratings_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ratings.read_ratings(tmp_path / "nope.dat")


# ------------------------------------------------------------------------------------------ prepare_split


def test_stable_time_sort_and_first_appearance_ids(tmp_path):
    write_dat(tmp_path / "ratings.dat", SMALL)
    out = prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=1, n_test=1)
    split = load_split(out)
    # users: u30 -> 0, u20 -> 1, u10 -> 2; items: m400 -> 0, m200 -> 1, m300 -> 2, m100 -> 3, m500 -> 4
    assert all_sequences(split) == {0: [0], 1: [1, 3], 2: [2, 3, 4]}
    assert split.catalogue.movie_ids.tolist() == [400, 200, 300, 100, 500]
    assert split.n_items == 5
    ratings = {}
    for sequences in (split.train, split.val, split.test):
        for row, user in enumerate(sequences.user_ids):
            lo, hi = sequences.offsets[row], sequences.offsets[row + 1]
            ratings[int(user)] = sequences.ratings[lo:hi].tolist()
    assert ratings == {0: [4.5], 1: [3.0, 1.0], 2: [5.0, 4.0, 2.0]}


def reference_sequences(rows) -> tuple[dict[int, list[int]], list[int]]:
    """Plain-Python statement of the protocol: stable time sort, ids by first appearance."""
    ordered = sorted(rows, key=lambda row: row[3])  # sorted() is stable
    users, items, sequences = {}, {}, {}
    for user, movie, _, _ in ordered:
        uid = users.setdefault(user, len(users))
        iid = items.setdefault(movie, len(items))
        sequences.setdefault(uid, []).append(iid)
    return sequences, list(items)


def test_matches_reference_on_many_ties(tmp_path):
    # 40 users x 3 ratings, timestamps drawn from 40 values: numpy's default quicksort would reorder ties.
    rows = many_users(40)
    write_dat(tmp_path / "ratings.dat", rows)
    split = load_split(prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=5, n_test=5))
    expected, movies = reference_sequences(rows)
    assert all_sequences(split) == expected
    assert split.catalogue.movie_ids.tolist() == movies


def test_val_test_drawn_without_replacement_and_seeded(tmp_path):
    write_dat(tmp_path / "ratings.dat", many_users(60))
    sets = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        split = load_split(prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / name, n_val=6, n_test=4,
                                                 seed=seed))
        train, val, test = (set(s.user_ids.tolist()) for s in (split.train, split.val, split.test))
        assert len(val) == len(split.val) == 6 and len(test) == len(split.test) == 4
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(range(60))
        for sequences in (split.train, split.val, split.test):
            assert np.all(np.diff(sequences.user_ids) > 0)  # users in increasing id
        sets[name] = (val, test)
    assert sets["a"] == sets["b"]
    assert sets["a"] != sets["c"]
    assert (tmp_path / "a" / "val_set_sequences").read_bytes() == (tmp_path / "b" / "val_set_sequences").read_bytes()


def test_stats_file_in_authors_format(tmp_path):
    write_dat(tmp_path / "ratings.dat", SMALL)
    out = prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=1, n_test=1, seed=3)
    text = (out / "stats").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert text.endswith("\n") and "\r" not in text
    assert lines[0] == "set\tn_users\tn_items\tn_interactions\tlongest_sequence"
    assert [line.split("\t")[0] for line in lines[1:]] == ["Full", "Train", "Val", "Test"]
    assert lines[1] == "Full\t3\t5\t6\t3"
    split = load_split(out)
    stats = read_stats(out / "stats")
    for label, sequences in (("Train", split.train), ("Val", split.val), ("Test", split.test)):
        assert stats[label] == {
            "n_users": len(sequences),
            "n_items": len(np.unique(sequences.items)),
            "n_interactions": len(sequences.items),
            "longest_sequence": int(sequences.lengths.max()),
        }


def test_item_mapping_titles_from_latin1_movies(tmp_path):
    write_dat(tmp_path / "ratings.dat", SMALL)
    movies = "100::Café au lait (1993)::Comedy\n200::Two, \"Quoted\" (1999)::Drama\n300::Three (2000)::Drama\n"
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    out = prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=1, n_test=1)
    catalogue = read_item_mapping(out / "item_id_mapping.tsv")
    titles = dict(zip(catalogue.movie_ids.tolist(), catalogue.titles))
    assert titles == {400: "", 200: 'Two, "Quoted" (1999)', 300: "Three (2000)", 100: "Café au lait (1993)", 500: ""}
    assert (out / "item_id_mapping.tsv").read_text(encoding="utf-8").splitlines()[0] == "item_index\tmovie_id\ttitle"


def test_item_mapping_explicit_movies_path_and_no_titles(tmp_path):
    ratings_dir = tmp_path / "raw"
    ratings_dir.mkdir()
    write_dat(ratings_dir / "ratings.dat", SMALL)
    out = prepare.prepare_split(ratings_dir / "ratings.dat", tmp_path / "plain", n_val=1, n_test=1)
    assert read_item_mapping(out / "item_id_mapping.tsv").titles == [""] * 5
    assert json.loads((out / "prepare.json").read_text())["movies"] is None
    (tmp_path / "elsewhere.dat").write_bytes("400::Élan (2001)::Drama\n".encode("latin-1"))
    out = prepare.prepare_split(ratings_dir / "ratings.dat", tmp_path / "titled", n_val=1, n_test=1,
                                movies_path=tmp_path / "elsewhere.dat")
    assert read_item_mapping(out / "item_id_mapping.tsv").titles[0] == "Élan (2001)"


def test_movie_titles_csv_and_malformed(tmp_path):
    movies_csv = tmp_path / "movies.csv"
    movies_csv.write_text('movieId,title,genres\n1,"Crème, La (2001)",Drama\n2,Two (2002),Comedy\n', encoding="utf-8")
    assert ratings.read_movie_titles(movies_csv) == {1: "Crème, La (2001)", 2: "Two (2002)"}
    bad = tmp_path / "movies.dat"
    bad.write_bytes(b"1::One (1990)::Drama\nx::Two::Drama\n")
    with pytest.raises(DataError, match=r"movies\.dat:2: expected 'MovieID::Title::Genres'"):
        ratings.read_movie_titles(bad)


def test_prepare_json_records_inputs(tmp_path):
    ratings = write_dat(tmp_path / "ratings.dat", SMALL)
    movies = tmp_path / "movies.dat"
    movies.write_bytes(b"100::A (1990)::Drama\n")
    out = prepare.prepare_split(ratings, tmp_path / "split", n_val=1, n_test=1, seed=5)
    record = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert record["ratings"]["sha256"] == hashlib.sha256(ratings.read_bytes()).hexdigest()
    assert record["movies"]["sha256"] == hashlib.sha256(movies.read_bytes()).hexdigest()
    assert (record["seed"], record["n_val"], record["n_test"]) == (5, 1, 1)
    assert isinstance(record["seqrec_version"], str) and record["seqrec_version"]
    assert prepare.read_prepare_record(out) == record


def test_too_few_users(tmp_path):
    write_dat(tmp_path / "ratings.dat", SMALL)  # 3 users
    with pytest.raises(DataError, match=r"at least n_val \+ n_test \+ 1 = 4 users.*3 users"):
        prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=2, n_test=1)
    assert not (tmp_path / "split").exists()
    with pytest.raises(ValueError):
        prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=0, n_test=1)


def test_interrupted_prepare_leaves_nothing(tmp_path, monkeypatch):
    write_dat(tmp_path / "ratings.dat", SMALL)
    calls, original = [], prepare.write_sequences

    def failing_write(path, sequences):  # dies after the first file, like a Ctrl-C mid-prepare
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(path, sequences)

    monkeypatch.setattr(prepare, "write_sequences", failing_write)
    out_parent = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_split(tmp_path / "ratings.dat", out_parent / "split", n_val=1, n_test=1)
    assert list(out_parent.iterdir()) == []  # neither the split nor a temp dir


def test_reprepare_replaces_own_split_but_not_foreign_dir(tmp_path):
    write_dat(tmp_path / "ratings.dat", many_users(10))
    out = prepare.prepare_split(tmp_path / "ratings.dat", tmp_path / "split", n_val=2, n_test=2, seed=0)
    first = (out / "val_set_sequences").read_text()
    prepare.prepare_split(tmp_path / "ratings.dat", out, n_val=2, n_test=2, seed=1)
    assert (out / "val_set_sequences").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.dat", "split"]
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare.prepare_split(tmp_path / "ratings.dat", foreign, n_val=2, n_test=2)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


# ------------------------------------------------------------------------------------------ download


def make_zip(path: Path, ratings_rows) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("ml-1m/ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in ratings_rows))
        bundle.writestr("ml-1m/movies.dat", "1::One (1990)::Drama\n".encode("latin-1"))
    return path


def pin_checksums(monkeypatch, path: Path) -> None:
    data = path.read_bytes()
    monkeypatch.setattr(sources, "ML1M_ZIP_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(sources, "ML1M_ZIP_MD5", hashlib.md5(data).hexdigest())


def test_the_archive_check_accepts_exactly_the_pinned_digests(tmp_path, monkeypatch):
    """The real check on a real file: both digests must match, one wrong hex digit of either refuses it."""
    archive = make_zip(tmp_path / "ml-1m.zip", SMALL)
    pin_checksums(monkeypatch, archive)
    assert prepare.sha256_file(archive) == hashlib.sha256(archive.read_bytes()).hexdigest()
    sources.verify_archive(archive)  # accepted: no exception, the file stays
    for name in ("ML1M_ZIP_SHA256", "ML1M_ZIP_MD5"):
        pinned = getattr(sources, name)
        monkeypatch.setattr(sources, name, pinned[:-1] + ("0" if pinned[-1] != "0" else "1"))
        with pytest.raises(DataError, match="the file was deleted"):
            sources.verify_archive(archive)
        assert not archive.exists()
        make_zip(archive, SMALL)
        monkeypatch.setattr(sources, name, pinned)


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    source = make_zip(tmp_path / "source.zip", SMALL)
    pin_checksums(monkeypatch, source)
    seen = {}

    def fake_urlopen(url, timeout):
        seen["url"], seen["timeout"] = url, timeout
        return io.BytesIO(source.read_bytes())

    monkeypatch.setattr(sources.urllib.request, "urlopen", fake_urlopen)
    cache = tmp_path / "cache"
    target = sources.download_movielens(cache)
    assert target == cache / "ml-1m"
    assert seen == {"url": sources.ML1M_URL, "timeout": sources.DOWNLOAD_TIMEOUT_S}
    assert ratings.read_ratings(target / "ratings.dat").user.tolist() == [10, 20, 10, 10, 20, 30]
    assert (target / "movies.dat").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m", "ml-1m.zip"]
    assert sources.download_movielens(cache) == target  # second call: no network needed


def test_download_from_file_url(tmp_path, monkeypatch):
    source = make_zip(tmp_path / "source.zip", SMALL)
    pin_checksums(monkeypatch, source)
    target = sources.download_movielens(tmp_path / "cache", url=source.as_uri())
    assert (target / "ratings.dat").is_file()


def test_download_checksum_mismatch_deletes_file(tmp_path, monkeypatch):
    source = make_zip(tmp_path / "source.zip", SMALL)
    monkeypatch.setattr(sources, "ML1M_ZIP_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="the file was deleted") as info:
        sources.download_movielens(cache, url=source.as_uri())
    assert "ml-1m.zip" in str(info.value)
    assert list(cache.iterdir()) == []


def test_download_network_error_propagates(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(urllib.error.URLError):
        sources.download_movielens(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# ------------------------------------------------------------------------------------------ resolve_data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data reachable: empty cwd, no env overrides, cache inside tmp_path."""
    work = tmp_path / "work" / "repo"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("SEQREC_DATA", raising=False)
    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_default_cache_dir(monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE", "/somewhere/cache")
    assert sources.default_cache_dir() == Path("/somewhere/cache")
    monkeypatch.delenv("SEQREC_CACHE")
    assert sources.default_cache_dir() == Path.home() / ".cache" / "seqrec"


def test_resolve_split_dir_is_returned_as_is(isolated):
    out = prepare.prepare_split(write_dat(isolated / "ratings.dat", SMALL), isolated / "split", n_val=1, n_test=1)
    assert sources.resolve_data(str(out)) == out


def test_resolve_ratings_dir_prepares_once_then_reuses(isolated, monkeypatch):
    raw = isolated / "ml-mini"
    raw.mkdir()
    write_dat(raw / "ratings.dat", many_users(1002, per_user=2))
    cache = isolated / "cache"
    out = sources.resolve_data(str(raw), cache)
    assert out == cache / "ml-mini-split-seed0"
    split = load_split(out)
    assert len(split.val) == 500 and len(split.test) == 500 and len(split.train) == 2

    def must_not_run(*args, **kwargs):
        raise AssertionError("should reuse the cached split")

    with monkeypatch.context() as patch:
        patch.setattr(prepare, "prepare_split", must_not_run)
        assert sources.resolve_data(str(raw / "ratings.dat"), cache) == out  # file path, same name, reused
    write_dat(raw / "ratings.dat", many_users(1003, per_user=2))  # input changed -> prepared again
    assert len(load_split(sources.resolve_data(str(raw), cache)).train) == 3


def test_resolve_other_ratings_file_name(isolated):
    path = write_dat(isolated / "my_ratings.dat", many_users(1001, per_user=1))
    out = sources.resolve_data(str(path), isolated / "cache")
    assert out == isolated / "cache" / f"{isolated.name}-my_ratings-split-seed0"
    assert len(load_split(out).train) == 1


def test_resolve_missing_path_and_unusable_dir(isolated):
    with pytest.raises(DataError, match="no such file or directory") as info:
        sources.resolve_data(str(isolated / "does-not-exist"))
    assert "does-not-exist" in str(info.value)
    (isolated / "empty").mkdir()
    with pytest.raises(DataError, match="ratings.dat"):
        sources.resolve_data(str(isolated / "empty"))
    (isolated / "empty" / "train_set_sequences").write_text("0 1 5 \n")
    with pytest.raises(DataError, match="only train_set_sequences"):
        sources.resolve_data(str(isolated / "empty"))


def test_resolve_auto_prefers_env_then_shared_split(isolated, monkeypatch):
    shared_split = prepare.prepare_split(write_dat(isolated / "r.dat", SMALL),
                                         isolated / "work" / "shared" / "data" / "ml1m-split", n_val=1, n_test=1)
    assert sources.resolve_data(None) == shared_split.resolve()
    assert sources.resolve_data("auto") == shared_split.resolve()
    other = prepare.prepare_split(isolated / "r.dat", isolated / "other", n_val=1, n_test=1)
    monkeypatch.setenv("SEQREC_DATA", str(other))
    assert sources.resolve_data(None) == other


def test_resolve_auto_uses_cached_split(isolated, monkeypatch):
    cache = isolated / "cache"
    cached = prepare.prepare_split(write_dat(isolated / "r.dat", SMALL), cache / "ml-1m-split-seed0",
                                   n_val=1, n_test=1)
    monkeypatch.setattr(sources, "download_movielens", lambda *a, **k: pytest.fail("must not download"))
    assert sources.resolve_data(None) == cached


def test_resolve_auto_downloads_and_prepares(isolated, monkeypatch):
    def fake_download(cache_dir, **kwargs):
        target = Path(cache_dir) / "ml-1m"
        target.mkdir(parents=True)
        write_dat(target / "ratings.dat", many_users(1001, per_user=1))
        return target

    monkeypatch.setattr(sources, "download_movielens", fake_download)
    out = sources.resolve_data(None)
    assert out == isolated / "cache" / "ml-1m-split-seed0"
    assert len(load_split(out).train) == 1


def test_resolve_auto_offline_says_what_to_put_where(isolated, monkeypatch):
    def offline(cache_dir, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(sources, "download_movielens", offline)
    with pytest.raises(DataError) as info:
        sources.resolve_data("auto")
    message = str(info.value)
    assert str(isolated / "cache" / "ml-1m") in message
    assert "ratings.dat" in message and "--data DIR" in message
    for name in ("train_set_sequences", "val_set_sequences", "test_set_sequences"):
        assert name in message


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not REAL_RATINGS.is_file(), reason="shared MovieLens ratings.partial.dat not present")
def test_real_partial_ratings(tmp_path):
    out = prepare.prepare_split(REAL_RATINGS, tmp_path / "split")
    split = load_split(out)
    stats = read_stats(out / "stats")
    n_lines = sum(1 for line in REAL_RATINGS.open("rb") if line.strip())
    table = ratings.read_ratings(REAL_RATINGS)
    n_users = len(np.unique(table.user))
    assert (len(split.val), len(split.test)) == (500, 500)
    assert len(split.train) + len(split.val) + len(split.test) == n_users == stats["Full"]["n_users"]
    total = sum(len(s.items) for s in (split.train, split.val, split.test))
    assert total == n_lines == len(table) == stats["Full"]["n_interactions"]
    assert split.n_items == len(np.unique(table.movie)) == stats["Full"]["n_items"]
    assert split.catalogue is not None and split.catalogue.titles[0]  # movies.dat sits next to the ratings
    assert stats["Train"]["n_interactions"] + stats["Val"]["n_interactions"] + stats["Test"]["n_interactions"] \
        == total
    record = json.loads((out / "prepare.json").read_text())
    assert record["ratings"]["sha256"] == "7f2b4c68fb81123ce5f76e0a32a65cea0baef03f95ce211e581b012a17139b8c"


# ------------------------------------------------------------------------------------------ timestamps


def test_prepare_writes_training_timestamps_aligned_with_the_sequences(tmp_path):
    rows = many_users(30, per_user=4)
    out = prepare.prepare_split(write_dat(tmp_path / "ratings.dat", rows), tmp_path / "split", n_val=5, n_test=5)
    split = load_split(out)
    stamps = ties.train_timestamps(split)
    assert len(stamps) == len(split.train.items)
    raw_pairs = {(m, t) for _, m, _, t in rows}
    movies = split.catalogue.movie_ids[split.train.items]
    assert all((int(m), int(t)) in raw_pairs for m, t in zip(movies, stamps))  # each item carries its own time
    rows_of = split.train.row_of_interaction()
    assert np.all(np.diff(stamps)[rows_of[1:] == rows_of[:-1]] >= 0)  # time order inside each user


def test_train_timestamps_joined_from_raw_ratings_next_to_the_authors_split(tmp_path):
    """The authors' layout: split/ with user_id_mapping.tsv and item_id_mapping.tsv, raw ratings in ../ml-1m/."""
    split_dir = tmp_path / "ml1m-split"
    split_dir.mkdir()
    (split_dir / "train_set_sequences").write_text("0 0 5 1 4 \n1 1 3 \n")
    (split_dir / "val_set_sequences").write_text("2 0 5 \n")
    (split_dir / "test_set_sequences").write_text("3 1 5 \n")
    (split_dir / "item_id_mapping.tsv").write_text("item_index\tmovie_id\ttitle\n0\t858\tA\n1\t2384\tB\n")
    (split_dir / "user_id_mapping.tsv").write_text(
        "user_index\tuser_id\tset\tbasis\n0\t6040\ttrain\tx\n1\t17\ttrain\tx\n2\t5\tval\tx\n3\t6\ttest\tx\n")
    split = load_split(split_dir)
    assert ties.train_timestamps(split) is None  # no raw ratings yet
    (tmp_path / "ml-1m").mkdir()
    write_dat(tmp_path / "ml-1m" / "ratings.partial.dat", [(6040, 858, 5, 100), (6040, 2384, 4, 100), (5, 858, 5, 50)])
    assert ties.train_timestamps(split).tolist() == [100, 100, -1]  # user 17's rating has no known time
    assert ties.raw_timestamps(split, split.val).tolist() == [50]  # any users of the split
    assert ties.raw_timestamps(split, split.test).tolist() == [-1]


@pytest.mark.skipif(not (SHARED / "data" / "ml1m-split").is_dir() or not REAL_RATINGS.is_file(),
                    reason="../shared/data is absent")
def test_authors_split_training_times_from_partial_ratings():
    split = load_split(SHARED / "data" / "ml1m-split")
    stamps = ties.train_timestamps(split)
    assert len(stamps) == 832931
    assert 0.85 < np.mean(stamps >= 0) < 0.88  # 86 % of the ratings have a known time
    known = stamps >= 0
    rows = split.train.row_of_interaction()
    same_user = rows[1:] == rows[:-1]
    both = known[1:] & known[:-1] & same_user
    assert np.all(np.diff(stamps)[both] >= 0)  # known times are in order inside each training user


@pytest.mark.slow
def test_prepare_under_mlflow_run_logs_the_split_it_wrote(tmp_path, mlflow_tracking, monkeypatch):
    """`mlflow run . -e prepare` sets MLFLOW_RUN_ID: the command logs what it wrote to that run and ends it."""
    import mlflow

    from seqrec.core.data import split_checksum
    from seqrec.experiment.cli import main

    run_id = mlflow.MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    ratings_file = write_dat(tmp_path / "ratings.dat", many_users(30))
    assert main(["prepare", str(ratings_file), str(tmp_path / "split"), "--n-val", "5", "--n-test", "5"]) == 0
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data_path"] == str((tmp_path / "split").resolve())
    assert run.data.params["data_sha256"] == split_checksum(tmp_path / "split")
    assert run.data.metrics["n_users"] == 30 and run.data.metrics["n_interactions"] == 90
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "data")} == {"data/stats",
                                                                                       "data/prepare.json"}


def test_every_set_keeps_its_times_for_the_tie_aware_metrics(tmp_path):
    rows = many_users(40, per_user=6)
    out = prepare.prepare_split(write_dat(tmp_path / "ratings.dat", rows), tmp_path / "split", n_val=5, n_test=5)
    split = ties.with_times(load_split(out))
    time_of = {(user, movie): stamp for user, movie, _, stamp in rows}
    mapping = read_item_mapping(out / "item_id_mapping.tsv").movie_ids
    by_time = sorted(rows, key=lambda row: row[3])  # stable, as prepare sorts: user ids by first appearance
    user_of = dict(enumerate(dict.fromkeys(user for user, *_ in by_time)))
    for sequences in (split.val, split.test):
        assert sequences.times is not None and len(sequences.times) == len(sequences.items)
        expected = [time_of[(user_of[int(user)], int(mapping[item]))]
                    for user, item in zip(sequences.user_ids[sequences.row_of_interaction()], sequences.items)]
        assert sequences.times.tolist() == expected


def increasing_share_in_bursts(split_dir: Path) -> float:
    """Share of same-second neighbours (one user, one second) in increasing MovieID order, over all sets."""
    split = ties.with_times(load_split(split_dir))
    movie_ids = split.catalogue.movie_ids
    pairs = []
    for name in ("train", "val", "test"):
        sequences = getattr(split, name)
        times = ties.set_timestamps(split, name)
        same = (times[1:] == times[:-1]) & (np.diff(sequences.row_of_interaction()) == 0)
        movies = movie_ids[sequences.items]
        pairs.append((movies[1:] > movies[:-1])[same])
    return float(np.mean(np.concatenate(pairs)))


def test_clean_split_draws_the_order_inside_a_second_from_the_seed(tmp_path):
    rng = np.random.default_rng(3)
    rows = [(user, movie, int(rng.integers(1, 6)), 1000 + movie // 6)  # listed by MovieID, six per second
            for user in range(1, 31) for movie in sorted(rng.choice(np.arange(1, 61), 24, replace=False))]
    ratings = write_dat(tmp_path / "ratings.dat", rows)
    authors = prepare.prepare_split(ratings, tmp_path / "file", n_val=5, n_test=5)
    clean = prepare.prepare_split(ratings, tmp_path / "random", n_val=5, n_test=5, within_second="random")
    again = prepare.prepare_split(ratings, tmp_path / "again", n_val=5, n_test=5, within_second="random")
    other = prepare.prepare_split(ratings, tmp_path / "other", n_val=5, n_test=5, seed=1, within_second="random")
    assert increasing_share_in_bursts(authors) == 1.0  # the file's MovieID order survives a stable sort
    assert 0.35 < increasing_share_in_bursts(clean) < 0.65  # chance
    assert all((clean / name).read_bytes() == (again / name).read_bytes()  # seeded
               for name in ("train_set_sequences", "val_set_sequences", "test_set_sequences"))
    assert (clean / "train_set_sequences").read_bytes() != (other / "train_set_sequences").read_bytes()
    for name in ("val", "test"):  # the same users and items as the authors' way: only the order inside a second
        same_users = [load_split(directory) for directory in (authors, clean)]
        kept, drawn = (getattr(split, name) for split in same_users)
        assert kept.user_ids.tolist() == drawn.user_ids.tolist() and kept.lengths.tolist() == drawn.lengths.tolist()
        assert sorted(kept.items.tolist()) == sorted(drawn.items.tolist())
        assert kept.items.tolist() != drawn.items.tolist()
    record = json.loads((clean / "prepare.json").read_text())
    assert record["within_second"] == "random" and "seeded random order" in record["protocol"]
    for split_dir in (authors, clean):  # time order is kept either way
        split = load_split(split_dir)
        for name in ("train", "val", "test"):
            times, rows_of = ties.set_timestamps(split, name), getattr(split, name).row_of_interaction()
            assert np.all(np.diff(times)[np.diff(rows_of) == 0] >= 0)
