"""The stores' cache of the keys filters allowed (engine/allowed_keys_cache.py):
an entry answers only for the collection row and version it was read at, and the cache
keeps within its entry and byte bounds, dropping the least recently used first, as a
simple reference model does after every step."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from huedb.engine.allowed_keys_cache import AllowedKeysCache
from huedb.engine.catalog import CollectionRow

COLLECTION = CollectionRow(1, "u-1", "c", "db", None, {}, 4, 0, 0)


def _keys(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint64)


def test_an_entry_answers_only_at_its_head_and_collection_row() -> None:
    cache = AllowedKeysCache()
    key = cache.key(COLLECTION, "SELECT ...", [1, "bucket"])
    cache.put(key, COLLECTION, 7, _keys(5))
    assert cache.get(key, COLLECTION, 7).tolist() == list(range(5))
    assert cache.get(key, COLLECTION, 8) is None  # the collection changed since
    renamed = replace(COLLECTION, name="other")
    assert cache.get(key, renamed, 7) is None  # the row changed (rename, prune, ...)
    other_params = cache.key(COLLECTION, "SELECT ...", [1, "colour"])
    assert cache.get(other_params, COLLECTION, 7) is None
    kept = cache.get(key, COLLECTION, 7)
    assert kept is not None and not kept.flags.writeable  # shared: callers cannot change it


def test_long_filters_are_not_kept() -> None:
    assert (
        AllowedKeysCache.key(COLLECTION, "SELECT ...", [1, [f"id{i}" for i in range(2000)]]) is None
    )
    assert AllowedKeysCache.key(COLLECTION, "SELECT ...", list(range(100))) is None
    assert AllowedKeysCache.key(COLLECTION, "SELECT ...", [1, ["a", "b"]]) is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, 3), st.integers(0, 40)),
        max_size=80,
    )
)
def test_bounds_and_eviction_order_follow_a_reference_lru(
    steps: list[tuple[bool, int, int, int]],
) -> None:
    max_entries, max_bytes = 4, 8 * 64
    cache = AllowedKeysCache(max_entries, max_bytes)
    model: OrderedDict[int, tuple[int, int]] = OrderedDict()  # filter -> (head, n keys)
    for is_put, name, head, n in steps:
        key = cache.key(COLLECTION, f"f{name}", [])
        if is_put:
            cache.put(key, COLLECTION, head, _keys(n))
            if 8 * n <= max_bytes:
                model.pop(name, None)
                model[name] = (head, n)
                while len(model) > max_entries or 8 * sum(m for _, m in model.values()) > max_bytes:
                    model.popitem(last=False)
        else:
            got = cache.get(key, COLLECTION, head)
            want = model.get(name)
            if want is not None and want[0] == head:
                model.move_to_end(name)
                assert got is not None and got.tolist() == list(range(want[1]))
            else:
                assert got is None
        assert len(cache) == len(model)
