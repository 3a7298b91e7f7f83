"""Sparse queries with many indices on posting lists holding uncompacted (delta) entries,
and the bound on a sparse query's length (docs/search-api.md, "Bounds").

The delta is kept by term, so a query finds each term's delta entries by a binary search:
its cost does not grow with (query terms x delta entries), which held the engine lock for
seconds on a 200,000-index query. Results are checked against a brute-force reference of
the records' vectors, in both scoring ways.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import huedb
from huedb import Knn, Schema, Search, SparseVectorIndexConfig
from huedb.engine.sparse_postings import PostingColumn
from huedb.errors import RequestLimitError
from huedb.search.bounds import MAX_SPARSE_QUERY_INDICES, check_bounds
from huedb.search.parse import parse_search_request
from tests.test_sparse_index import SCORING, scoring_by

VOCABULARY = 400
Vector = tuple[np.ndarray, np.ndarray]


def _vector(rng: np.random.Generator) -> Vector:
    indices = np.sort(rng.choice(VOCABULARY, int(rng.integers(1, 12)), replace=False))
    return indices.astype(np.int64), rng.uniform(-1, 2, len(indices)).astype(np.float32)


def _column(rng: np.random.Generator) -> tuple[PostingColumn, dict[int, Vector]]:
    """A column with a main segment, dead entries and a delta written in several pieces
    (below the compaction threshold), and the live vectors by record key."""
    vectors = {key: _vector(rng) for key in range(600)}
    column = PostingColumn()
    keys = sorted(vectors)
    column.load(
        np.asarray(keys),
        np.asarray([len(vectors[k][0]) for k in keys]),
        np.concatenate([vectors[k][0] for k in keys]),
        np.concatenate([vectors[k][1] for k in keys]),
    )
    for _ in range(12):
        changed = sorted(rng.choice(700, 20, replace=False).tolist())
        new = [None if rng.random() < 0.2 else _vector(rng) for _ in changed]
        column.replace(changed, new)
        for key, vector in zip(changed, new, strict=True):
            if vector is None:
                vectors.pop(key, None)
            else:
                vectors[key] = vector
    assert column.delta_entries and column.dead_entries, "the delta was compacted"
    return column, vectors


def _reference_postings(
    column: PostingColumn, vectors: dict[int, Vector], term: int
) -> list[tuple[int, float]]:
    """(slot, value) of the live records holding `term`, by slot (main segment slots come
    before delta slots, and each segment holds a term's entries by slot)."""
    found = []
    for key, (indices, values) in vectors.items():
        at = np.flatnonzero(indices == term)
        if len(at):
            slot = int(column.slot_of.get(np.asarray([key]))[0])
            found.append((slot, float(values[at[0]])))
    return sorted(found)


def _reference_search(
    vectors: dict[int, Vector], weights: dict[int, float], bm25: bool, limit: int
) -> list[tuple[int, float]]:
    """(key, `1 - dot` as float32) of the `limit` best records, summed in float64 in
    ascending term order, ties by key."""
    n = len(vectors)
    coefficient = {}
    for term, weight in weights.items():
        n_t = sum(term in indices for indices, _ in vectors.values())
        scale = math.log(1 + (n - n_t + 0.5) / (n_t + 0.5)) if bm25 else 1.0
        coefficient[term] = weight * scale
    scored = []
    for key, (indices, values) in vectors.items():
        shared = [(int(t), float(v)) for t, v in zip(indices, values, strict=True)]
        shared = [(t, v) for t, v in shared if t in coefficient]
        if shared:
            dot = 0.0
            for term, value in shared:
                dot += coefficient[term] * value
            scored.append((float(np.float32(1.0 - dot)), key))
    scored.sort()
    return [(key, measure) for measure, key in scored[:limit]]


class _CountingTerms(np.ndarray):
    """The delta's terms, counting the elements numpy's element-wise operations read."""

    read = 0

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        plain = []
        for value in inputs:
            if isinstance(value, _CountingTerms):
                _CountingTerms.read += value.size
                value = value.view(np.ndarray)
            plain.append(value)
        return getattr(ufunc, method)(*plain, **kwargs)


def test_the_delta_is_kept_by_term() -> None:
    """The delta's entries are sorted by term, each term's in the order written."""
    column, _ = _column(np.random.default_rng(1))
    terms, slots, _ = column._delta_entries()
    assert len(terms) == column.delta_entries
    assert np.all(np.diff(terms) >= 0)
    same_term = np.diff(terms) == 0
    assert np.all(np.diff(slots)[same_term] > 0)  # slots are handed out in write order


def test_a_long_query_reads_the_delta_terms_once_at_most() -> None:
    """A query of many terms costs no pass over the delta per term (it was one `==` over
    every delta entry for each query term)."""
    column, vectors = _column(np.random.default_rng(2))
    terms, slots, values = column._delta_entries()
    column._delta_arrays = (terms.view(_CountingTerms), slots, values)
    query = list(range(0, 2 * VOCABULARY, 2))
    _CountingTerms.read = 0
    column.search(dict.fromkeys(query, 1.0), None, 10, None)
    assert _CountingTerms.read <= len(terms)
    assert column.postings(query[3]) is not None  # the counting array still serves lookups


@pytest.mark.parametrize("seed", range(4))
def test_postings_of_a_long_query_equal_the_records(seed: int) -> None:
    """Every term's live postings (main segment first, then delta), for a query naming every
    term of the vocabulary and terms nobody holds, equal a scan of the live vectors."""
    rng = np.random.default_rng(seed)
    column, vectors = _column(rng)
    query = sorted({*range(VOCABULARY), *rng.integers(VOCABULARY, 10**9, 50).tolist()})
    slots, values, lo, hi = column._term_ranges(query)
    for i, term in enumerate(query):
        got = list(zip(slots[lo[i] : hi[i]].tolist(), values[lo[i] : hi[i]].tolist(), strict=True))
        assert got == _reference_postings(column, vectors, term), term
        one_slots, one_values = column.postings(term)
        assert list(zip(one_slots.tolist(), one_values.tolist(), strict=True)) == got


@pytest.mark.parametrize("scoring", SCORING)
@pytest.mark.parametrize("bm25", [False, True])
def test_long_queries_score_as_the_reference(scoring: str, bm25: bool) -> None:
    """Searches of up to every term of the vocabulary, on a column with dead and delta
    entries, equal the float64 reference exactly, with limits below and above the compiled
    loop's kept best."""
    rng = np.random.default_rng(7)
    column, vectors = _column(rng)
    with scoring_by(scoring):
        for size in (1, 40, VOCABULARY, VOCABULARY + 100):
            terms = rng.choice(VOCABULARY + 200, size, replace=False).tolist()
            weights = {int(t): float(np.float32(rng.uniform(0.1, 2))) for t in terms}
            for limit in (5, 300):
                got = column.search(weights, len(vectors) if bm25 else None, limit, None)
                assert got == _reference_search(vectors, weights, bm25, limit), (size, limit)


def _sparse_request(indices: int) -> dict[str, Any]:
    query = {"indices": list(range(indices)), "values": [1.0] * indices}
    return {"searches": [{"rank": {"$knn": {"query": query, "key": "sp", "limit": 5}}}]}


def test_a_sparse_query_longer_than_the_bound_is_a_quota_error() -> None:
    """A sparse $knn query of more than MAX_SPARSE_QUERY_INDICES indices is refused (422
    QuotaError), in every mode; one of exactly that many is served."""
    check_bounds(parse_search_request(_sparse_request(MAX_SPARSE_QUERY_INDICES)))
    too_long = parse_search_request(_sparse_request(MAX_SPARSE_QUERY_INDICES + 1))
    with pytest.raises(RequestLimitError, match="100,001 indices; at most 100,000"):
        check_bounds(too_long)
    client = huedb.Client()
    schema = Schema().create_index(config=SparseVectorIndexConfig(), key="sp")
    col = client.create_collection("long", embedding_function=None, schema=schema)
    col.add(ids=["a"], embeddings=[[1.0]], metadatas=[{"sp": huedb.SparseVector([7], [1.0])}])
    n = MAX_SPARSE_QUERY_INDICES + 1
    knn = Knn(query=huedb.SparseVector(list(range(n)), [1.0] * n), key="sp", limit=5)
    with pytest.raises(huedb.errors.QuotaError):
        col.search(Search().rank(knn))
    n = MAX_SPARSE_QUERY_INDICES
    knn = Knn(query=huedb.SparseVector(list(range(n)), [1.0] * n), key="sp", limit=5)
    assert col.search(Search().rank(knn))["ids"] == [["a"]]
