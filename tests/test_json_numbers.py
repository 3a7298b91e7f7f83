"""`server/json_numbers.count_numbers` against Python's own parse of the same JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huedb.server import json_numbers

# Strings without digits or '-': the count's one overcount is such text inside a string.
TEXT = st.text(alphabet=st.characters(blacklist_characters="-0123456789"), max_size=8)
SCALARS = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=40,
)
LAYOUTS = st.sampled_from([(",", ":"), (", ", ": "), (" ,\n\t", " :  ")])


def _numbers(value: Any) -> int:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return 0
    if isinstance(value, int | float):
        return 1
    items = value.values() if isinstance(value, dict) else value
    return sum(_numbers(v) for v in items)


@settings(max_examples=300, deadline=None)
@given(
    value=st.lists(VALUES, max_size=8),
    layout=LAYOUTS,
    indent=st.sampled_from([None, 2]),
    cut=st.floats(0, 1),
)
def test_counts_the_numbers_python_parses(
    value: Any, layout: tuple[str, str], indent: Any, cut: float
) -> None:
    text = json.dumps({"body": value}, separators=layout, indent=indent).encode()
    assert json_numbers.count_numbers(text) == _numbers(value)
    at = int(cut * len(text))  # fed in two pieces, as a body arrives
    counter = json_numbers.NumberCounter()
    counter.feed(text[:at])
    assert counter.feed(text[at:]) == _numbers(value)


@pytest.mark.parametrize("slice_bytes", [1, 2, 3, 7])
def test_slices_meet_without_losing_a_number(
    slice_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_numbers, "SLICE_BYTES", slice_bytes)
    text = b'{"a": [1, -2.5e3,  3], "b": {"c": 4}, "d": "x", "e": [ \n 5]}'
    assert json_numbers.count_numbers(text) == 5
