"""Checks of the shape of free-form JSON a collection stores (its configuration, schema and
metadata): how deeply it nests, and whether it holds a number JSON cannot carry.

Both walk the value with a stack of their own, so a hostile value nested thousands of
levels deep costs a loop, never Python's recursion limit.
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


def _walk(value: Any) -> Iterator[tuple[Any, int, str]]:
    """Every value inside `value` (itself first) with its depth and path (`.key`, `[i]`)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, path = stack.pop()
        yield item, depth, path
        if isinstance(item, dict):
            stack.extend((v, depth + 1, f"{path}.{k}") for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))


def nests_deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` nests objects and arrays (dicts, lists, tuples) more than `levels`
    levels deep."""
    return any(
        depth >= levels and isinstance(item, dict | list | tuple) for item, depth, _ in _walk(value)
    )


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
    for item, _, path in _walk(value):
        if isinstance(item, float) and not math.isfinite(item):
            return path
    return None
