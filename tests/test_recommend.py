"""Request parsing of the served recommender (:mod:`seqrec.core.recommend`), fuzzed against an oracle written from
the documented policy, not from the parser; no model needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqrec.core.recommend import RequestError, parse_items, parse_k, parse_ratings

N_ITEMS = 40


def expected_history(items: object) -> list[int] | None:
    """What the documented policy makes of a request's ``items`` cell, or None where it must be refused; written
    from the policy, not from :func:`parse_requests`: a list of integers (integral floats too, exact below 2**53)."""
    if not isinstance(items, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in items):
        return None
    if any(isinstance(x, float) for x in items):  # one float makes the whole list floats
        exact = all(math.isfinite(x) and float(x).is_integer() and abs(x) < 2**53 for x in items)
        return [int(x) for x in items] if exact else None
    return list(items) if all(-(2**63) <= x < 2**63 for x in items) else None


def expected_k(row: dict) -> int | None:
    """The documented cut-off of a request row: missing (None, NaN) is 10, else an integer in 1..N_ITEMS."""
    k = row.get("k")
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return 10
    if isinstance(k, bool) or not isinstance(k, (int, float)) or (isinstance(k, float) and not k.is_integer()):
        return None
    return int(k) if 1 <= k <= N_ITEMS else None


ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5))
ANY_VALUE = st.one_of(ANY_SCALAR, st.lists(ANY_SCALAR, max_size=6), st.lists(st.lists(st.integers(), max_size=2),
                                                                              max_size=3),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(ANY_VALUE)
def test_parse_items_returns_the_ids_or_refuses(value):
    expected = expected_history(value)
    try:
        parsed = parse_items(value, 0)
    except RequestError as error:
        assert "row 0: 'items'" in str(error) and expected is None, value
        return
    assert parsed.dtype == np.int64 and parsed.tolist() == expected


@settings(max_examples=300, deadline=None)
@given(ANY_SCALAR)
def test_parse_k_returns_a_valid_cut_off_or_refuses(value):
    expected = expected_k({"k": value})
    try:
        k = parse_k(value, 2, N_ITEMS)
    except RequestError as error:
        assert "row 2: 'k' must be an integer between 1 and 40" in str(error) and expected is None, value
        return
    assert k == expected




@pytest.mark.parametrize("value,expected", [
    (None, [0, 0, 0]), (float("nan"), [0, 0, 0]), ([5, 1, 3.5], [5, 1, 3.5]), ((0, 2, 4), [0, 2, 4]),
    ([5, 1], None), ([5, 1, 6], None), ([5, -1, 3], None), ([5, float("nan"), 3], None), ("5,4,3", None),
    ([[5], [4], [3]], None), (["a", "b", "c"], None), ({"a": 1}, None), ([True, False, True], None),
])
def test_parse_ratings_returns_one_star_value_per_movie_or_refuses(value, expected):
    if expected is None:
        with pytest.raises(RequestError, match="row 2: 'ratings' must be a list of 3 numbers from 0"):
            parse_ratings(value, 2, 3)
    else:
        assert parse_ratings(value, 2, 3).tolist() == expected
