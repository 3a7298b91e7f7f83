"""Rank algebra over domains, in float32 (shared/chroma-search-api.md, 3.3).

A domain is a `support` (record key -> score) and a `default` for records outside it (None:
such records do not exist for the expression). `$knn` leaves are given as domains already
(`evaluate_rank`'s `knn_domains`, in `plan.knn_leaves` order); constants have an empty
support. Only the final support is scored: a record counts iff it is in at least one Knn
list and in every Knn list without a default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from huedb.search.plan import BinaryNode, KnnNode, NaryNode, RankNode, UnaryNode, ValNode

F32 = np.float32
Op = Callable[[np.float32, np.float32], np.float32]

_BINARY_OPS: dict[str, Op] = {
    "$sum": np.add,
    "$sub": np.subtract,
    "$mul": np.multiply,
    "$div": np.divide,
    # Rust's f32::max / f32::min: a NaN operand yields the other one.
    "$max": np.fmax,
    "$min": np.fmin,
}


def _exp(value: np.float32) -> np.float32:
    """Rust's f32::exp (libm's expf, correctly rounded but in rare halfway cases): exp in
    float64, rounded to float32 once (numpy's float32 exp is off by an ulp at 1.0)."""
    return F32(np.exp(np.float64(value)))


def _log(value: np.float32) -> np.float32:
    """Rust's f32::ln (libm's logf), as `_exp`."""
    return F32(np.log(np.float64(value)))


_UNARY_OPS = {"$abs": np.abs, "$exp": _exp, "$log": _log}


@dataclass(frozen=True)
class Domain:
    """Scores of the records an expression covers, and the score of all others (or None)."""

    support: dict[int, np.float32]
    default: np.float32 | None = None


def evaluate_rank(rank: RankNode, knn_domains: list[Domain]) -> dict[int, np.float32]:
    """The scored records of `rank` (record key -> float32 score)."""
    leaves = iter(knn_domains)
    with np.errstate(all="ignore"):
        return _domain(rank, leaves).support


def _domain(node: RankNode, leaves: Iterator[Domain]) -> Domain:
    if isinstance(node, KnnNode):
        return next(leaves)
    if isinstance(node, ValNode):
        return Domain({}, F32(node.value))
    if isinstance(node, UnaryNode):
        inner = _domain(node.operand, leaves)
        fn = _UNARY_OPS[node.op]
        default = None if inner.default is None else F32(fn(inner.default))
        return Domain({k: F32(fn(v)) for k, v in inner.support.items()}, default)
    if isinstance(node, BinaryNode):
        left = _domain(node.left, leaves)
        return merge(left, _domain(node.right, leaves), _BINARY_OPS[node.op])
    return _fold(node, leaves)


def _fold(node: NaryNode, leaves: Iterator[Domain]) -> Domain:
    acc = Domain({}, F32(node.identity))
    op = _BINARY_OPS[node.op]
    for operand in node.operands:
        acc = merge(acc, _domain(operand, leaves), op)
    return acc


def merge(a: Domain, b: Domain, op: Op) -> Domain:
    """Combine two domains value by value (union, one side's support, or intersection)."""
    if a.default is not None and b.default is not None:
        keys = a.support.keys() | b.support.keys()
        support = {
            k: F32(op(a.support.get(k, a.default), b.support.get(k, b.default))) for k in keys
        }
        return Domain(support, F32(op(a.default, b.default)))
    if a.default is not None:
        return Domain({k: F32(op(a.support.get(k, a.default), v)) for k, v in b.support.items()})
    if b.default is not None:
        return Domain({k: F32(op(v, b.support.get(k, b.default))) for k, v in a.support.items()})
    keys = a.support.keys() & b.support.keys()
    return Domain({k: F32(op(a.support[k], b.support[k])) for k in keys})


def score_order(key: int, score: np.float32) -> tuple[bool, float, int]:
    """Sort key of a scored record: ascending score, NaN last, then insertion order."""
    return (*score_value(score), key)


def score_value(score: np.float32 | float) -> tuple[bool, float]:
    """A score as a sort key: ascending, NaN after everything. Every NaN (whatever its sign)
    gives the same key, so the next key breaks their ties (NaN itself never compares
    equal)."""
    value = float(score)
    return (True, 0.0) if value != value else (False, value)
