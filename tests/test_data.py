"""Parsing of the sequences layout (good and malformed), the half split and padding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import SHARED_SPLIT
from seqrec.core.data import (DataError, load_split, pad_left, read_sequences, read_timestamps, Sequences,
                              split_half, write_sequences, write_timestamps)
from seqrec.core.ties import tie_groups, tie_order, tie_order_name, TieOrder


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_authors_format_with_trailing_space(tmp_path):
    path = write(tmp_path / "s", "7 3 5 1 4 2 3 \n8 0 1 \n")
    sequences = read_sequences(path)
    assert sequences.user_ids.tolist() == [7, 8]
    assert sequences.sequence(0).tolist() == [3, 1, 2]
    assert sequences.ratings.tolist() == [5, 4, 3, 1]
    assert sequences.lengths.tolist() == [3, 1]


def test_write_then_read_round_trip(tmp_path):
    original = Sequences.from_lists([[4, 2, 9], [1]], [3, 5], [[5, 4.5, 1], [2]])
    write_sequences(tmp_path / "s", original)
    assert (tmp_path / "s").read_text().splitlines()[0] == "3 4 5 2 4.5 9 1 "
    again = read_sequences(tmp_path / "s")
    np.testing.assert_array_equal(again.items, original.items)
    np.testing.assert_array_equal(again.ratings, original.ratings)
    np.testing.assert_array_equal(again.offsets, original.offsets)


@pytest.mark.parametrize("text, line, fragment", [
    ("1 2 3\n4 5\n", 2, "odd number"),
    ("1 2 3 4\n", 1, "odd number"),
    ("x 2 3\n", 1, "integer user id"),
    ("1 2 3\n2 2.5 3\n", 2, "integer item ids"),
    ("1 2 3 4 five\n", 1, "numeric ratings"),
    ("1 -2 3\n", 1, "non-negative"),
    ("1 2 3\n1 4 5\n", 2, "each user once"),
    ("", 1, "empty file"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path / "bad_sequences", text)
    with pytest.raises(DataError) as error:
        read_sequences(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: expected") and fragment in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_sequences(tmp_path / "absent")


def test_load_split(synthetic_split_dir):
    split = load_split(synthetic_split_dir)
    assert (len(split.train), len(split.val), len(split.test)) == (120, 20, 20)
    assert split.n_items == 40 and split.catalogue.titles[3] == "Movie 3 (2000)"
    assert split.item_popularity.sum() == len(split.train.items)


def test_val_item_outside_training_catalogue_is_refused(synthetic_split_dir):
    val = synthetic_split_dir / "val_set_sequences"
    lines = val.read_text().splitlines()
    lines[4] = lines[4] + " 40 5 "
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"val_set_sequences:5: expected item ids inside the training catalogue 0\.\.39"):
        load_split(synthetic_split_dir)


def test_missing_split_files(tmp_path):
    with pytest.raises(DataError, match="missing train_set_sequences"):
        load_split(tmp_path)


def test_split_half_is_the_papers_cut():
    users = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11]])
    inputs, goals = split_half(users)
    assert [inputs.sequence(i).tolist() for i in range(3)] == [[1, 2], [6], [8, 9]]
    assert [goals.sequence(i).tolist() for i in range(3)] == [[3, 4, 5], [7], [10, 11]]


def test_of_users_keeps_the_chosen_users_whole_with_their_times():
    users = replace(Sequences.from_lists([[1, 2], [3], [4, 5, 6]], user_ids=[10, 11, 12]),
                    times=np.array([1, 2, 3, 4, 5, 6]))
    kept = users.of_users(np.array([True, False, True]))
    assert kept.user_ids.tolist() == [10, 12] and kept.offsets.tolist() == [0, 2, 5]
    assert kept.items.tolist() == [1, 2, 4, 5, 6] and kept.times.tolist() == [1, 2, 4, 5, 6]
    assert len(users.of_users(np.zeros(3, dtype=bool))) == 0


def test_pad_left_keeps_latest_items_at_the_end():
    users = Sequences.from_lists([[1, 2, 3, 4], [5]])
    np.testing.assert_array_equal(pad_left(users), [[2, 3, 4, 5], [0, 0, 0, 6]])
    np.testing.assert_array_equal(pad_left(users, max_len=2), [[4, 5], [0, 6]])


@pytest.mark.skipif(not SHARED_SPLIT.is_dir(), reason="../shared/data/ml1m-split is absent")
def test_authors_split_matches_its_stats():
    split = load_split(SHARED_SPLIT)
    assert (len(split.train), len(split.val), len(split.test)) == (5040, 500, 500)
    assert split.n_items == 3706
    assert (len(split.train.items), len(split.val.items), len(split.test.items)) == (832931, 85924, 81354)
    assert split.catalogue.movie_ids[0] == 858


def test_tie_groups_and_shuffle_stay_inside_same_second_groups():
    users = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7, 8]])
    stamps = np.array([10, 20, 20, 20, 30, 30, 30, -1])  # user 0: {1} {2,3,4} {5}; user 1: {6,7} {8}
    groups = tie_groups(users, stamps)
    assert len(np.unique(groups)) == 5 and groups[4] != groups[5]  # a group never spans two users
    seen = set()
    for seed in range(20):
        shuffled = TieOrder(groups).apply(users, np.random.default_rng(seed))
        items = shuffled.items.tolist()
        assert items[0] == 1 and sorted(items[1:4]) == [2, 3, 4] and items[4] == 5
        assert sorted(items[5:7]) == [6, 7] and items[7] == 8
        seen.add(tuple(items))
    assert len(seen) > 3  # the order inside groups really changes


def test_movie_tie_order_sorts_each_second_by_movie_id_with_tunable_noise():
    users = Sequences.from_lists([[0, 3, 1, 2, 4], [5, 6]])
    stamps = np.array([10, 20, 20, 20, 30, 7, 7])
    movie_ids = np.array([50, 40, 30, 20, 10, 2, 1])  # MovieID of each item index
    exact = tie_order("movie", users, stamps, movie_ids, noise=0.0)
    assert tie_order_name(exact) == "movie"
    assert exact.ranks.tolist() == [0, 0, 2, 1, 0, 1, 0]
    ordered = exact.apply(users, np.random.default_rng(0))
    assert ordered.items.tolist() == [0, 3, 2, 1, 4, 6, 5]  # MovieIDs 50 | 20 30 40 | 10 ; 1 2
    noisy = tie_order("movie", users, stamps, movie_ids, noise=5.0)
    draws = {tuple(noisy.apply(users, np.random.default_rng(seed)).items.tolist()) for seed in range(30)}
    assert len(draws) > 3 and all(d[0] == 0 and d[4] == 4 for d in draws)


def test_tie_order_falls_back_when_the_data_cannot_give_it():
    users = Sequences.from_lists([[0, 1]])
    stamps = np.array([5, 5])
    assert tie_order("movie", users, None, np.array([1, 2])) is None
    assert tie_order_name(tie_order("movie", users, stamps, None)) == "shuffle"
    assert tie_order("file", users, stamps, np.array([1, 2])) is None
    with pytest.raises(ValueError, match="tie order must be one of"):
        tie_order("alphabetical", users, stamps, None)


def test_timestamps_file_round_trip_and_misaligned_file(tmp_path):
    users = Sequences.from_lists([[1, 2], [3]], [4, 9])
    write_timestamps(tmp_path / "t", users, np.array([5, -1, 7]))
    assert read_timestamps(tmp_path / "t", users).tolist() == [5, -1, 7]
    (tmp_path / "bad").write_text("4 5 6 \n9 7 8 \n")
    with pytest.raises(DataError, match=r"bad:2: expected 1 timestamps"):
        read_timestamps(tmp_path / "bad", users)
    (tmp_path / "other").write_text("5 1 2 \n")
    with pytest.raises(DataError, match=r"other:1: expected user 4"):
        read_timestamps(tmp_path / "other", users)
