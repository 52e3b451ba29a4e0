"""Data at scale: the MovieLens-shaped generator, and the C reader that large ratings files go through (it must
read exactly what the exact reader reads, and leave every malformed file to it)."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.core import ratings, synthetic
from seqrec.core.data import DataError


@pytest.fixture(scope="module")
def table():
    return synthetic.movielens_like(n_users=500, n_items=2000, n_ratings=60_000, seed=3)


def test_generated_ratings_have_movielens_shape(table):
    assert len(table) == 60_000
    per_user = np.bincount(table.user)[1:]
    assert len(per_user) == 500 and per_user.min() >= synthetic.MIN_PER_USER and per_user.max() <= 1000
    assert np.median(per_user) < per_user.mean()  # heavy-tailed activity
    pairs = table.user * 10**7 + table.movie
    assert len(np.unique(pairs)) == len(table)  # no user rates a movie twice
    per_movie = np.sort(np.unique(table.movie, return_counts=True)[1])[::-1]
    assert per_movie[0] > 5 * np.median(per_movie) > 10 * per_movie[-1]  # a long tail of popularity
    assert set(np.unique(table.rating)) <= set(synthetic.STARS.tolist())
    order = np.lexsort((table.timestamp, table.user))
    same_second = (np.diff(table.timestamp[order]) == 0) & (np.diff(table.user[order]) == 0)
    assert 0.3 < same_second.mean() < 0.6  # bursts of same-second ratings
    assert np.all(np.diff(table.user) >= 0)  # MovieLens' file order: by user, then movie
    again = synthetic.movielens_like(n_users=500, n_items=2000, n_ratings=60_000, seed=3)
    assert np.array_equal(again.movie, table.movie) and np.array_equal(again.timestamp, table.timestamp)


def test_popularity_caps_the_most_rated_movie_share():
    shares = synthetic.popularity(59_047)
    assert shares[0] == pytest.approx(0.0033, rel=1e-3) and np.all(np.diff(shares) <= 0)
    assert shares.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="per user"):
        synthetic.movielens_like(n_users=10, n_items=400, n_ratings=100)


def both_readers(path, monkeypatch):
    exact = ratings.read_ratings(path)
    monkeypatch.setattr(ratings, "LARGE_FILE_BYTES", 0)
    return exact, ratings.read_ratings(path)


def assert_same(a: ratings.RatingsTable, b: ratings.RatingsTable) -> None:
    for name in ("user", "movie", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype


def test_the_c_reader_reads_csv_and_dat_exactly_like_the_exact_reader(table, tmp_path, monkeypatch):
    csv_file = tmp_path / "ratings.csv"
    synthetic.write_ratings_csv(table, csv_file)
    exact, fast = both_readers(csv_file, monkeypatch)
    assert_same(exact, table)
    assert_same(fast, table)
    dat = tmp_path / "ratings.dat"
    dat.write_text("".join(f"{u}::{m}::{int(r)}::{t}\n" for u, m, r, t in
                           zip(table.user[:500], table.movie[:500], np.ceil(table.rating[:500]), table.timestamp[:500])))
    assert_same(*both_readers(dat, monkeypatch))
    tsv = tmp_path / "ratings.tsv"
    tsv.write_text("timestamp\tuser_id\titem_id\trating\n5\t1\t7\t4.5\n6\t2\t7\t3\n")
    assert_same(*both_readers(tsv, monkeypatch))


@pytest.mark.parametrize("body,line,message", [
    ("userId,movieId,rating,timestamp\n1,2,4,5\n1,3,x,6\n", 3, "numeric rating"),
    ("userId,movieId,rating,timestamp\n1,2,4,5\n1,3,4\n", 3, "fields"),
    ("userId,movieId,rating,timestamp\n1,2,4,5\n1,2,3,6\n", 3, r"each \(user, movie\) pair once"),
    ("userId,movieId,rating,timestamp\n1,2,4,5\n1,3,9,6\n", 3, "0.5 to 5 stars"),
    ("1::2::4::5\n1::3::4::-6\n", 2, "non-negative integer timestamp"),
    ("userId,movieId,rating,timestamp\n1,2.5,4,5\n", 2, "integer movie id"),
])
def test_a_malformed_large_file_is_named_by_the_exact_reader(tmp_path, monkeypatch, body, line, message):
    path = tmp_path / "ratings.csv"
    path.write_text(body)
    monkeypatch.setattr(ratings, "LARGE_FILE_BYTES", 0)
    with pytest.raises(DataError, match=rf"ratings.csv:{line}: .*{message}"):
        ratings.read_ratings(path)


def test_evaluation_in_chunks_equals_evaluation_at_once(synthetic_split_dir):
    from seqrec.core.data import load_split
    from seqrec.core.model import build_model
    from seqrec.core.scoring import evaluate_users
    from seqrec.core.ties import with_times

    split = with_times(load_split(synthetic_split_dir))
    model = build_model(split.n_items, hidden=8, embedding=4)
    at_once = evaluate_users(model, split.test, 5, split.item_popularity, chunk=10**6)
    assert evaluate_users(model, split.test, 5, split.item_popularity, chunk=7) == at_once


def test_hits_found_by_pair_keys_equal_the_dense_mask():
    from seqrec.core.metrics import pairs_in

    rng = np.random.default_rng(0)
    recommended = rng.integers(0, 50, size=(30, 10))
    rows, items = rng.integers(0, 30, size=200), rng.integers(0, 50, size=200)
    mask = np.zeros((30, 50), dtype=bool)
    mask[rows, items] = True
    assert np.array_equal(pairs_in(recommended, rows, items, 50), np.take_along_axis(mask, recommended, axis=1))
    assert not pairs_in(recommended, rows[:0], items[:0], 50).any()
