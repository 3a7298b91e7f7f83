"""`api/json_shape.py` against plain recursive definitions, on random JSON-like values."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from huedb.api.json_shape import nests_deeper_than, non_finite_path

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=2), inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Levels of containers (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def non_finite_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_paths(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in non_finite_paths(v, f"{path}[{i}]")]
    return []


@given(values, st.integers(0, 8))
def test_nests_deeper_than_matches_the_recursive_depth(value: Any, levels: int) -> None:
    assert nests_deeper_than(value, levels) == (depth(value) > levels)


@given(values)
def test_non_finite_path_is_the_first_in_document_order(value: Any) -> None:
    found = non_finite_paths(value)
    assert non_finite_path(value) == (found[0] if found else None)


def test_deep_values_cost_no_recursion() -> None:
    deep: Any = 1.0
    for _ in range(50_000):
        deep = [deep]
    assert nests_deeper_than(deep, 100)
    assert not nests_deeper_than(deep, 50_000)
    assert non_finite_path(deep) is None
    deep[0] = float("nan")
    assert non_finite_path(deep) == "[0]"


metadata_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=3)
    | st.lists(st.floats() | st.integers(), max_size=4)
    | st.fixed_dictionaries(
        {"indices": st.lists(st.integers(0, 9)), "values": st.lists(st.floats())}
    )
)
metadatas = st.lists(
    st.none() | st.dictionaries(st.text(max_size=2), metadata_values, max_size=4), max_size=6
)


@given(metadatas)
def test_the_write_path_scan_finds_what_the_walk_finds(batch: list[Any]) -> None:
    """The server's one-loop scan of a write's metadatas (`wire._record_metadata_path`)
    names the same first non-finite number as the general walk."""
    from huedb.server.wire import _record_metadata_path

    assert _record_metadata_path(batch) == non_finite_path(batch)
