"""Ties and NaN in the order of search results (docs/search-api.md, decisions 5 and 7).

- Exact dense search cuts equal distances at `k` in key (insertion) order: equal vectors
  straddling a Knn's `limit` give the earliest inserted, whatever the rows' order in the
  matrix (`top_k_exact`, `rank_exact`, `with_exact_matches`).
- NaN scores come after every other score, and among themselves in insertion order (a NaN
  never compares equal, so it must not reach the sort as a value): in the rank order
  (`score_order`) and in `group_by`'s per-group order on `#score`.

Each is compared with a brute-force numpy reference sorted by (value, key).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import huedb
from huedb import K, Knn, Search
from huedb.engine.vector_index import (
    HnswParams,
    Thresholds,
    VectorIndex,
    exact_distances,
    top_k_exact,
)
from huedb.execution.expression import GroupBy, MaxK, MinK
from huedb.search.grouping import group
from huedb.search.plan import Aggregate, Grouping
from huedb.search.ranks import score_order

SPACES = ["l2", "ip", "cosine"]
EXACT = Thresholds(exact_max_floats=10**12, filtered_exact_max_floats=10**12)


def _tied_rows(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows drawn from a few distinct small-integer vectors (so many are equal), and
    distinct keys in an order unrelated to the rows'."""
    bases = rng.integers(-3, 4, (6, dim)).astype(np.float32)
    matrix = np.ascontiguousarray(bases[rng.integers(0, len(bases), n)])
    keys = rng.permutation(10 * n)[:n].astype(np.uint64)
    return matrix, keys


def _reference(
    space: str, matrix: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int
) -> tuple[list[int], list[float]]:
    """The k best by a distance of every row, ties by key."""
    dists = exact_distances(space, matrix, query)
    order = np.lexsort((keys, dists))[:k]
    return keys[order].tolist(), dists[order].tolist()


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("seed", range(3))
def test_exact_search_cuts_ties_in_key_order(space: str, seed: int) -> None:
    """`top_k_exact` over every row and over a subset of rows (unsorted) equals a sort of
    every distance by (distance, key), for k below and above the shortlist's size."""
    rng = np.random.default_rng(seed)
    matrix, keys = _tied_rows(rng, 300, 5)
    query = rng.integers(-3, 4, 5).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    rows = rng.permutation(len(matrix))[:200]
    for k in (1, 4, 10, 60, 150, 199, 300):
        got = top_k_exact(space, matrix, keys, query, k, norms)
        assert (got[0].tolist(), got[1].tolist()) == _reference(space, matrix, keys, query, k)
        got = top_k_exact(space, matrix, keys[rows], query, k, norms[rows], rows)
        want = _reference(space, matrix[rows], keys[rows], query, k)
        assert (got[0].tolist(), got[1].tolist()) == want, k


def _no_fetch(keys: np.ndarray) -> np.ndarray:
    raise AssertionError("the index holds its vectors")


@pytest.mark.parametrize("space", SPACES)
def test_exact_matches_merge_in_key_order(space: str) -> None:
    """A record holding the query vector, merged back into hits by `with_exact_matches`,
    goes before later-inserted records at the same distance."""
    rng = np.random.default_rng(5)
    matrix, keys = _tied_rows(rng, 120, 4)
    index = VectorIndex(4, HnswParams(space=space), EXACT)
    index.upsert(keys, matrix)
    query = matrix[0].copy()
    same = sorted(int(k) for k, row in zip(keys, matrix, strict=True) if np.all(row == query))
    hits = index.search(query, 5, None, _no_fetch)
    missed = hits[0] != same[0]
    merged = index.with_exact_matches(query, 5, (hits[0][missed], hits[1][missed]), same, _no_fetch)
    assert merged[0].tolist() == hits[0].tolist() == _reference(space, matrix, keys, query, 5)[0]


def test_equal_vectors_at_a_knn_limit_are_the_first_inserted() -> None:
    """Search and query: equal embeddings straddling the limit give the first inserted (ids
    named against insertion order), the same records whatever the Knn's limit."""
    client = huedb.Client()
    col = client.create_collection("ties", embedding_function=None)
    ids = [f"id{999 - i:03d}" for i in range(300)]
    col.add(ids=ids, embeddings=[[1.0, 1.0, 1.0]] * 250 + [[1.0, 1.0, 2.0]] * 50)
    for limit in (1, 5, 40, 120):
        found = col.search(Search().rank(Knn(query=[1.0, 1.0, 1.0], limit=limit)))["ids"][0]
        assert found == ids[:limit]
        assert col.query(query_embeddings=[[1.0, 1.0, 1.0]], n_results=limit)["ids"] == [
            ids[:limit]
        ]
    near_second = col.search(Search().rank(Knn(query=[1.0, 1.0, 2.0], limit=60)))["ids"][0]
    assert near_second == ids[250:] + ids[:10]


def test_nan_scores_sort_last_in_key_order() -> None:
    """`score_order`: -inf, finite, +inf, then every NaN (either sign) by key."""
    rng = np.random.default_rng(3)
    nan = np.float32("nan")
    values = [nan, -nan, np.float32("inf"), np.float32("-inf"), np.float32(0.5), np.float32(-2)]
    scored = [(int(k), values[int(rng.integers(len(values)))]) for k in rng.permutation(200)]
    got = [key for key, _ in sorted(scored, key=lambda item: score_order(*item))]
    numbers = np.asarray([s for _, s in scored], dtype=np.float32)
    keys = np.asarray([k for k, _ in scored])
    isnan = np.isnan(numbers)
    want = keys[np.lexsort((keys, np.where(isnan, 0, numbers), isnan))].tolist()
    assert got == want


@pytest.mark.parametrize("op", ["$min_k", "$max_k"])
def test_group_by_score_orders_nan_as_the_largest(op: str) -> None:
    """`group` on `#score`: a NaN score is above every other one, NaN ties kept in rank
    order (which is insertion order), as a sort by (isnan, value) with stable ties."""
    rng = np.random.default_rng(4)
    nan = np.float32("nan")
    choices = [nan, np.float32(1.0), np.float32(-1.0), np.float32("inf")]
    scored = [(int(k), choices[int(rng.integers(len(choices)))]) for k in rng.permutation(60)]
    ranked = sorted(scored, key=lambda item: score_order(*item))
    metadata = {key: {"g": key % 3} for key, _ in scored}
    for k in (1, 4, 9):
        got = group(ranked, metadata, Grouping(("g",), Aggregate(op, ("#score",), k)))
        kept: list[tuple[int, Any]] = []
        for g in range(3):
            members = [r for r in ranked if r[0] % 3 == g]
            order = sorted(
                range(len(members)),
                key=lambda i: (bool(np.isnan(members[i][1])), np.nan_to_num(members[i][1])),
                reverse=op == "$max_k",
            )
            kept += [members[i] for i in order[:k]]
        want = sorted(kept, key=lambda item: score_order(*item))
        assert [key for key, _ in got] == [key for key, _ in want], k


def test_nan_ranks_come_in_insertion_order() -> None:
    """Through `Collection.search`: a rank that is NaN for every record returns them in
    insertion order; NaN for some comes after the finite ones, in insertion order; and
    `group_by` on `#score` keeps NaN records in insertion order."""
    client = huedb.Client()
    col = client.create_collection("nan", embedding_function=None)
    ids = [f"id{i:02d}" for i in range(10)]
    col.add(
        ids=ids,
        embeddings=[[float(10 - i), 1.0] for i in range(10)],  # the last nearest the query
        metadatas=[{"g": i % 2} for i in range(10)],
    )
    knn = Knn(query=[0.0, 1.0], limit=10)
    assert col.search(Search().rank(knn * 0 / 0))["ids"] == [ids]
    # Distances (10 - i)^2: log(d - 50) is a number for i <= 2, NaN (log of < 0) after.
    assert col.search(Search().rank((knn - 50).log()))["ids"] == [
        ["id02", "id01", "id00", *ids[3:]]
    ]
    grouped = (
        Search().rank(knn * 0 / 0).group_by(GroupBy(keys=K("g"), aggregate=MinK(keys=K.SCORE, k=2)))
    )
    assert col.search(grouped)["ids"] == [ids[:4]]
    grouped = (
        Search()
        .rank((knn - 50).log())
        .group_by(GroupBy(keys=K("g"), aggregate=MaxK(keys=K.SCORE, k=1)))
    )
    assert col.search(grouped)["ids"] == [["id03", "id04"]]
