"""Checks of the shape of free-form JSON a collection stores (its configuration, schema and
metadata): how deeply it nests, and whether it holds a number JSON cannot carry.

Both walk the value with a stack of their own, so a hostile value nested thousands of
levels deep costs a loop, never Python's recursion limit; the depth check looks at
containers only (a filter's `$in` of 100,000 values is one list).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from huedb.errors import InvalidArgumentError

# Levels of objects and arrays a stored configuration, schema or metadata may nest (Chroma's
# server refuses a body nested over 128 levels; an embedding function's configuration
# needs a handful). Below it the stored JSON always fits the answers that echo it: orjson
# writes at most 255 levels, and a listing nests a collection's configuration a few more.
MAX_JSON_DEPTH = 100


_CONTAINERS = (dict, list, tuple)


def _children(item: Any) -> Iterator[tuple[str, Any]]:
    """A container's items with their path steps (`.key`, `[i]`)."""
    if isinstance(item, dict):
        return ((f".{k}", v) for k, v in item.items())
    return ((f"[{i}]", v) for i, v in enumerate(item))


def nests_deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` nests objects and arrays (dicts, lists, tuples) more than `levels`
    levels deep."""
    stack = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    while stack:
        item, level = stack.pop()
        if level > levels:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, _CONTAINERS))
    return False


def check_json_depth(value: Any, what: str) -> None:
    """Refuse (InvalidArgumentError) a value nesting objects and arrays more than
    `MAX_JSON_DEPTH` levels deep, before anything stores or parses it further."""
    if nests_deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidArgumentError(
            f"{what} is nested too deeply: more than {MAX_JSON_DEPTH} levels of objects and arrays"
        )


def non_finite_path(value: Any) -> str | None:
    """The path (`.key`, `[i]`) of the first NaN or infinite float inside `value`, or None.
    A JSON body holds one only where its parser took `NaN`, `Infinity` or an overflowing
    number, which JSON has no such number for."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, _CONTAINERS):
            stack.extend((child, path + step) for step, child in reversed(list(_children(item))))
    return None
