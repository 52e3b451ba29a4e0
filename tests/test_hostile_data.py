"""Hostile data files: every refused input is a DataError naming the file, the line and what was expected there
(never a codec, numpy or index traceback), and nothing wrong is accepted silently. Each case writes a tiny file
(most corrupt one file of the synthetic split) and calls the reader that the commands call."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_SPLIT, write_synthetic_split
from seqrec.core import prepare, ratings
from seqrec.core.data import (ITEM_MAPPING_FILE, STATS_FILE, DataError, Sequences, load_split, read_item_mapping,
                              read_sequences, read_stats, read_timestamps, write_timestamps)

TRAIN, VAL, TEST = "train_set_sequences", "val_set_sequences", "test_set_sequences"


def refused(call, path: Path, line: int | None, fragment: str) -> DataError:
    """Run ``call``; it must raise a DataError about ``path`` (at ``line``) whose message holds ``fragment``."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    where = f"{path}:{line}" if line is not None else str(path)
    assert message.startswith(f"{where}: expected "), message
    assert fragment in message, message
    assert "\n" not in message
    return info.value


def replace_line(path: Path, line: int, content: bytes) -> Path:
    """Put ``content`` in place of line ``line`` (1-based) of the file, keeping the other bytes as they are."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = content
    path.write_bytes(b"\n".join(lines))
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    return write_synthetic_split(tmp_path / "split")


# ------------------------------------------------------------------------------------- bytes and files


@pytest.mark.parametrize("name, line", [(TRAIN, 3), (VAL, 1), (TEST, 20), (STATS_FILE, 2), (ITEM_MAPPING_FILE, 5)])
@pytest.mark.parametrize("bad", [b"\xff\xfe\x00\x01", "Caf\xe9 (1993)".encode("latin-1")], ids=["binary", "latin1"])
def test_non_utf8_bytes_name_the_file_and_line(split_dir, name, line, bad):
    path = split_dir / name
    lines = path.read_bytes().split(b"\n")
    replace_line(path, line, lines[line - 1][:4] + bad + lines[line - 1][4:])
    refused(lambda: load_split(split_dir), path, line, "UTF-8 text, got 'byte 0x")


def test_non_utf8_timestamps_name_the_line(tmp_path):
    users = Sequences.from_lists([[1, 2], [3]], [4, 9])
    write_timestamps(tmp_path / "t", users, np.array([5, -1, 7]))
    replace_line(tmp_path / "t", 2, b"9 \xe9 ")
    error = refused(lambda: read_timestamps(tmp_path / "t", users), tmp_path / "t", 2, "UTF-8 text")
    assert error.line == 2


@pytest.mark.parametrize("name", [TRAIN, TEST, STATS_FILE, ITEM_MAPPING_FILE])
def test_a_directory_in_place_of_a_file(split_dir, name):
    (split_dir / name).unlink()
    (split_dir / name).mkdir()
    refused(lambda: load_split(split_dir), split_dir / name, None, "is a directory")


def test_an_unreadable_file(split_dir, monkeypatch):
    """Permission denied (simulated: the tests may run as root, who reads everything)."""
    original = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self.name == VAL:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    refused(lambda: load_split(split_dir), split_dir / VAL, None, "permission denied")


def test_a_split_path_that_is_a_file(tmp_path):
    refused(lambda: load_split(write(tmp_path / "f", "x")), tmp_path / "f", None, "not a directory")


# ------------------------------------------------------------------------------------- sequence files


@pytest.mark.parametrize("text, line, fragment", [
    ("0 1 5 \n1 99999999999999999999999 5 \n", 2, "integer item ids"),  # was an OverflowError
    ("0 2147483647 5 \n", 1, "at most 2147483646"),  # would wrap to a negative int32
    ("0 1 5 \n\n\n1 -3 5 \n", 4, "non-negative integer item ids"),  # blank lines still count
    ("99999999999999999999 1 5 \n", 1, "user id"),
    ("0 1 nan \n", 1, "numeric ratings 0..5"),
    ("0 1 4 2 inf \n", 1, "got 'inf'"),
    ("0 1 4 \n1 2 1e30 \n", 2, "got '1e30'"),
    ("0 1 -1 \n", 1, "numeric ratings 0..5"),
    ("0 1 5.5 \n", 1, "numeric ratings 0..5"),
    ("0 1_0 5 \n", 1, "got '1_0'"),  # int() reads it as 10
    ("0 \u0663 5 \n", 1, "integer item ids"),  # an Arabic-Indic 3: int() reads it as 3
    ("0 1\x00 5 \n", 1, "integer item ids"),
    ("0 1 5 \n\ufeff1 2 5 \n", 2, "user id"),  # a byte-order mark inside the file is no whitespace
    ("0 1 5 \n0 2 3 \n", 2, "each user once (user 0 is already on line 1)"),
])
def test_bad_values_in_a_sequences_file(tmp_path, text, line, fragment):
    path = write(tmp_path / TRAIN, text)
    refused(lambda: read_sequences(path), path, line, fragment)


def test_what_the_authors_files_hold_is_accepted(tmp_path):
    """A BOM, CRLF endings, the authors' trailing space, tabs, blank lines, unknown (0) and half-star ratings."""
    path = write(tmp_path / TRAIN, "\ufeff7 3 5 1 0 \r\n\r\n8\t2147483646\t4.5 \r\n")
    sequences = read_sequences(path)
    assert sequences.user_ids.tolist() == [7, 8]
    assert sequences.items.tolist() == [3, 1, 2147483646]
    assert sequences.ratings.tolist() == [5.0, 0.0, 4.5]


@pytest.mark.parametrize("text, line, fragment", [
    ("4 5 99999999999999999999 \n9 7 \n", 1, "integer Unix timestamps"),
    ("4 5 -2 \n9 7 \n", 1, "(-1 when unknown)"),
    ("4 5 6 \n9 1e9 \n", 2, "got '1e9'"),
    ("4 5 6 \n\n9 7 \n4 1 \n", 4, "2 lines, one per training user"),
    ("4 5 6 \n", 2, "2 lines, one per training user, got 'end of file'"),
])
def test_bad_timestamps(tmp_path, text, line, fragment):
    users = Sequences.from_lists([[1, 2], [3]], [4, 9])
    path = write(tmp_path / "train_set_timestamps", text)
    refused(lambda: read_timestamps(path, users), path, line, fragment)


def test_timestamps_with_blank_lines_and_crlf_are_read(tmp_path):
    users = Sequences.from_lists([[1, 2], [3]], [4, 9])
    path = write(tmp_path / "train_set_timestamps", "4 5 -1 \r\n\r\n9 7 \r\n")
    assert read_timestamps(path, users).tolist() == [5, -1, 7]


# ------------------------------------------------------------------------------------- users across sets


@pytest.mark.parametrize("name", [VAL, TEST])
def test_a_user_in_two_sets_is_refused(split_dir, name):
    path = split_dir / name
    third = path.read_text().splitlines()[2]
    replace_line(path, 3, ("5 " + third.split(" ", 1)[1]).encode())  # user 5 is on line 6 of the training file
    refused(lambda: load_split(split_dir), path, 3,
            f"each user in one set only (user 5 is already on line 6 of {TRAIN})")


# ------------------------------------------------------------------------------------- stats


def stats_line(split_dir: Path, label: str, column: str, value: str) -> int:
    """Set one count of the stats table; returns its line number."""
    path = split_dir / STATS_FILE
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    number = next(i for i, row in enumerate(rows) if row[0] == label)
    rows[number][rows[0].index(column)] = value
    path.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    return number + 1


@pytest.mark.parametrize("label, column, value, fragment", [
    ("Train", "n_users", "121", "n_users 120 in the Train row (as counted in train_set_sequences)"),
    ("Full", "n_users", "161", "n_users 160 in the Full row"),
    ("Val", "n_interactions", "7", "n_interactions"),
    ("Test", "n_items", "3", "n_items"),
    ("Full", "longest_sequence", "31", "longest_sequence"),
    ("Train", "n_users", "-120", "non-negative integer counts"),
    ("Train", "n_users", "12.5", "non-negative integer counts"),
    ("Train", "n_users", "1e2", "non-negative integer counts"),
])
def test_stats_that_contradict_the_sequences(split_dir, label, column, value, fragment):
    line = stats_line(split_dir, label, column, value)
    refused(lambda: load_split(split_dir), split_dir / STATS_FILE, line, fragment)


def test_a_catalogue_larger_than_the_ids_used_without_a_mapping(split_dir):
    """The hostile tester's case: a Full row of 100 items over ids 0..39 would build a 100-item model."""
    (split_dir / ITEM_MAPPING_FILE).unlink()
    line = stats_line(split_dir, "Full", "n_items", "100")
    refused(lambda: load_split(split_dir), split_dir / STATS_FILE, line,
            "n_items at most 40: the sequence files use item ids 0..39")


def test_a_catalogue_larger_than_the_ids_used_but_named_by_the_mapping_is_a_warning(split_dir):
    stats_line(split_dir, "Full", "n_items", "45")
    with (split_dir / ITEM_MAPPING_FILE).open("a") as handle:
        handle.writelines(f"{i}\t{1000 + i}\tMovie {i} (2000)\n" for i in range(40, 45))
    with pytest.warns(UserWarning, match=r"5 of the 45 catalogue items are in no sequence file"):
        split = load_split(split_dir)
    assert split.n_items == 45


def test_a_catalogue_smaller_than_the_ids_used(split_dir):
    stats_line(split_dir, "Full", "n_items", "30")
    lines = (split_dir / TRAIN).read_text().splitlines()
    first_outside = next(number for number, line in enumerate(lines, start=1)
                         if max(map(int, line.split()[1::2])) >= 30)
    refused(lambda: load_split(split_dir), split_dir / TRAIN, first_outside,
            "item ids inside the training catalogue 0..29")


@pytest.mark.parametrize("text, line, fragment", [
    ("", 1, "empty file"),
    ("set\tusers\titems\tinteractions\tlongest\n", 1, "a header 'set n_users n_items n_interactions"),
    ("set n_users n_items n_interactions longest_sequence\nAll 1 2 3 4\n", 2, "a row label among Full, Train"),
    ("set n_users n_items n_interactions longest_sequence\nFull 1 2 3 4\n\nFull 1 2 3 4\n", 4, "each once"),
    ("set n_users n_items n_interactions longest_sequence\nFull 1 2 3\n", 2, "5 columns like the header"),
    ("set n_users n_items n_interactions longest_sequence\nFull 1 2 99999999999999999999 4\n", 2, "integer counts"),
])
def test_a_malformed_stats_table(tmp_path, text, line, fragment):
    path = write(tmp_path / STATS_FILE, text)
    refused(lambda: read_stats(path), path, line, fragment)


def test_unused_ids_inside_an_undeclared_catalogue_are_a_warning(tmp_path):
    """Raw MovieIDs (1, 858, ...) instead of 0-based indexes: the split loads, but not silently."""
    for name, line in ((TRAIN, "0 1 5 858 4 \n"), (VAL, "1 858 3 \n"), (TEST, "2 1 2 \n")):
        write(tmp_path / name, line)
    with pytest.warns(UserWarning, match=r"857 of the 859 catalogue items are in no sequence file"):
        assert load_split(tmp_path).n_items == 859


# ------------------------------------------------------------------------------------- item mapping

HEADER = "item_index\tmovie_id\ttitle\n"


@pytest.mark.parametrize("body, line, fragment", [
    ("0\t858\tA\n1\t2384\tB\n2\t858\tC\n", 4, "each movie id once (movie 858 is already item 0 on line 2)"),
    ("0\t858\tA\n1\t-5\tB\n", 3, "non-negative integer movie id"),
    ("0\t858\tA\n1\t99999999999999999999\tB\n", 3, "non-negative integer movie id"),
    ("0\t858\tA\n1\t\u00b2\tB\n", 3, "integer movie id"),  # '²'.isdigit() is true, int('²') fails
    ("0\t858\tA\n2\t2384\tB\n", 3, "item index 1"),
    ("0\t858\tA\n1\t2384\t\"B\n2\t3\tC\n", 3, "an unbalanced '\"'"),
    ("0\t858\tA\tDrama\n", 2, "2 or 3 tab-separated fields"),
    ("", 2, "at least one"),
])
def test_a_malformed_item_mapping(tmp_path, body, line, fragment):
    path = write(tmp_path / ITEM_MAPPING_FILE, HEADER + body)
    refused(lambda: read_item_mapping(path), path, line, fragment)


def test_item_mapping_with_crlf_bom_quoted_title_and_blank_line(tmp_path):
    path = write(tmp_path / ITEM_MAPPING_FILE, "\ufeff" + HEADER.replace("\n", "\r\n")
                 + '0\t858\t"Tab\there, ""quoted"""\r\n\r\n1\t2384\t\r\n')
    catalogue = read_item_mapping(path)
    assert catalogue.movie_ids.tolist() == [858, 2384]
    assert catalogue.titles == ['Tab\there, "quoted"', ""]


def test_a_duplicate_movie_id_fails_at_load_not_after_training(split_dir):
    replace_line(split_dir / ITEM_MAPPING_FILE, 12, b"10\t1003\tMovie 3 again")
    refused(lambda: load_split(split_dir), split_dir / ITEM_MAPPING_FILE, 12, "is already item 3 on line 5")


# ------------------------------------------------------------------------------------- raw ratings and prepare


@pytest.mark.parametrize("text, line, fragment", [
    ("1::2::5::10\n-1::3::5::10\n", 2, "non-negative integer user id"),
    ("1::2::5::10\n1::-7::5::10\n", 2, "non-negative integer movie id"),
    ("1::2::99::10\n", 1, "a numeric rating of 0.5 to 5 stars"),
    ("1::2::-3::10\n", 1, "a numeric rating of 0.5 to 5 stars"),
    ("1::2::0::10\n", 1, "got '0'"),
    ("1::2::5.5::10\n", 1, "got '5.5'"),
    ("1::2::inf::10\n", 1, "got 'inf'"),
    ("1::2::5::-10\n", 1, "non-negative integer timestamp"),
    ("99999999999999999999::2::5::10\n", 1, "user id"),
    ("1::2_0::5::10\n", 1, "got '2_0'"),
    ("1::2::5::10\n2::2::4::11\n\n1::2::3::12\n", 4, "each (user, movie) pair once (user 1 already rated movie 2 on "
                                                     "line 1)"),
    ("userId,movieId,rating,timestamp\n1,\"2,5,10\n2,3,4,11\n", 2, "unbalanced"),
])
def test_bad_raw_ratings(tmp_path, text, line, fragment):
    path = write(tmp_path / "ratings.dat", text)
    refused(lambda: ratings.read_ratings(path), path, line, fragment)
    refused(lambda: prepare.prepare_split(path, tmp_path / "out", n_val=1, n_test=1), path, line, fragment)
    assert not (tmp_path / "out").exists()


def test_half_stars_crlf_and_a_bom_are_prepared(tmp_path):
    rows = [(u, m, 0.5 + (u + m) % 10 / 2, u * 10 + m) for u in range(1, 6) for m in range(1, 4)]
    path = write(tmp_path / "ratings.csv", "\ufeffuserId,movieId,rating,timestamp\r\n"
                 + "".join(f"{u},{m},{r},{t}\r\n" for u, m, r, t in rows))
    split = load_split(prepare.prepare_split(path, tmp_path / "split", n_val=1, n_test=1))
    ratings_read = np.concatenate([s.ratings for s in (split.train, split.val, split.test)])
    assert sorted(ratings_read.tolist()) == sorted(r for _, _, r, _ in rows)


def small_ratings(tmp_path: Path) -> Path:
    return write(tmp_path / "ratings.dat", "".join(f"{u}::{m}::4::{u + m}\n" for u in range(1, 5) for m in (1, 2)))


def test_prepare_refuses_an_output_path_that_is_a_file(tmp_path):
    target = write(tmp_path / "taken", "notes")
    refused(lambda: prepare.prepare_split(small_ratings(tmp_path), target, n_val=1, n_test=1), target, None,
            "refusing to overwrite")
    assert target.read_text() == "notes"


def test_prepare_refuses_an_output_inside_a_file(tmp_path):
    out = write(tmp_path / "file", "x") / "split"
    refused(lambda: prepare.prepare_split(small_ratings(tmp_path), out, n_val=1, n_test=1), out.parent, None,
            "a directory to hold split, got 'a file'")


def test_prepare_refuses_an_unwritable_output(tmp_path, monkeypatch):
    """A read-only parent directory (simulated: root writes anywhere); nothing is left behind."""
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out"))

    monkeypatch.setattr(prepare.tempfile, "mkdtemp", read_only)
    refused(lambda: prepare.prepare_split(small_ratings(tmp_path), tmp_path / "out" / "split", n_val=1, n_test=1),
            tmp_path / "out", None, "permission denied")


def test_checksum_of_a_directory_is_refused(tmp_path):
    """What resolve_data computes first for a ratings file it may have prepared before."""
    refused(lambda: prepare.sha256_file(tmp_path), tmp_path, None, "is a directory")


def test_prepare_refuses_a_ratings_or_movies_path_that_is_a_directory(tmp_path):
    (tmp_path / "dir").mkdir()
    refused(lambda: prepare.prepare_split(tmp_path / "dir", tmp_path / "out", n_val=1, n_test=1),
            tmp_path / "dir", None, "is a directory")
    refused(lambda: prepare.prepare_split(small_ratings(tmp_path), tmp_path / "out", n_val=1, n_test=1,
                                          movies_path=tmp_path / "dir"), tmp_path / "dir", None, "is a directory")


@pytest.mark.parametrize("name, text, line, fragment", [
    ("movies.dat", "1::One (1990)::Drama\n2::Two::Drama\n1::Again::Drama\n", 3, "each MovieID once (movie 1 is "
                                                                                  "already on line 1)"),
    ("movies.csv", "movieId,title,genres\n1,\"One (1990),Drama\n2,Two,Drama\n", 2, "unbalanced"),
    ("movies.csv", "movieId,title,genres\n1,One,Drama\n1,Two,Drama\n", 3, "each MovieID once"),
    ("movies.dat", "1::One (1990)::Drama\n2::T\rwo (1991)::Drama\n", 2, "no carriage return inside a line"),
])
def test_bad_movie_files(tmp_path, name, text, line, fragment):
    path = write(tmp_path / name, text.encode("latin-1"))
    refused(lambda: ratings.read_movie_titles(path), path, line, fragment)


def test_a_latin1_title_with_byte_0x85_stays_one_line(tmp_path):
    """In a Latin-1 (cp1252) movies.dat, 0x85 is an ellipsis: str.splitlines() would cut the title there."""
    path = write(tmp_path / "movies.dat", "1::One\x85 (1990)::Drama\n2::Two (1991)::Comedy\n".encode("latin-1"))
    assert ratings.read_movie_titles(path) == {1: "One\x85 (1990)", 2: "Two (1991)"}


# ------------------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("bad_line", [
    b"1::2::4::11",  # a pair rated twice (line 2 holds it)
    b"9::2::99::10",  # a rating out of range
    b"9::-7::5::10",  # a negative MovieID
    b"\xff\xfe::1::1::1",  # binary
], ids=["twice", "rating", "movie", "binary"])
def test_prepare_command_says_one_line_and_exits_2(tmp_path, capsys, monkeypatch, bad_line):
    from seqrec.experiment.cli import main

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    bad = write(tmp_path / "bad_ratings.dat", small_ratings(tmp_path).read_bytes() + bad_line + b"\n")
    assert main(["prepare", str(bad), str(tmp_path / "out"), "--n-val", "1", "--n-test", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seqrec prepare: error: {bad}:9: expected "), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_prepare_command_with_an_output_that_is_a_file(tmp_path, capsys, monkeypatch):
    from seqrec.experiment.cli import main

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    taken = write(tmp_path / "taken", "notes")
    assert main(["prepare", str(small_ratings(tmp_path)), str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seqrec prepare: error: {taken}: expected")


# ------------------------------------------------------------------------------------- the authors' split


@pytest.mark.skipif(not SHARED_SPLIT.is_dir(), reason="../shared/data/ml1m-split is absent")
def test_the_authors_split_passes_every_check_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = load_split(SHARED_SPLIT)
    stats = read_stats(SHARED_SPLIT / STATS_FILE)
    assert stats["Full"] == {"n_users": 6040, "n_items": 3706, "n_interactions": 1000209, "longest_sequence": 2314}
    assert split.n_items == 3706 and len(split.train.items) == stats["Train"]["n_interactions"] == 832931
