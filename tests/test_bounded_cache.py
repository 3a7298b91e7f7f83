"""huedb.bounded_cache.BoundedCache against a reference LRU model: the same entries after
every step, never more than its bound, the least recently used dropped first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huedb.bounded_cache import BoundedCache


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.tuples(st.sampled_from(["get", "put", "pop"]), st.integers(0, 6)), max_size=60),
)
def test_matches_a_reference_lru(bound: int, steps: list[tuple[str, int]]) -> None:
    cache: BoundedCache[int, str] = BoundedCache(bound)
    model: list[tuple[int, str]] = []  # least recently used first
    for n, (op, key) in enumerate(steps):
        kept = dict(model)
        if op == "put":
            model = [(k, v) for k, v in model if k != key] + [(key, f"v{n}")]
            model = model[-bound:]
            cache.put(key, f"v{n}")
        elif op == "get":
            assert cache.get(key) == kept.get(key)
            if key in kept:
                model = [(k, v) for k, v in model if k != key] + [(key, kept[key])]
        else:
            cache.pop(key)
            model = [(k, v) for k, v in model if k != key]
        assert len(cache) == len(model) <= bound
        # Reading every entry oldest first refreshes them in the order they already have.
        assert all(cache.get(k) == v for k, v in model)


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        BoundedCache(0)
