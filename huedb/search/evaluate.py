"""Run checked searches against one collection (shared/chroma-search-api.md, 3.1).

Per search: the filter becomes the engine's `RecordFilter` (`filter_compile`); each `$knn`
leaf yields its list (dense: the engine's `query` with the filter as pre-filter; sparse: the
engine's `sparse_knn` over the collection's posting lists, intersected with the filter); the
rank expression combines them
(`ranks`); then `group_by` (`grouping`), offset/limit and select. Without a rank the
filtered records are paged in insertion order and `#score` is the position in the page.
The answer is the route's JSON body (2.4): one column entry per search.

Reads are separate engine calls (each its own snapshot): a write landing between them may
be seen by one and not another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from huedb.engine.budget import Deadline, check_reads
from huedb.engine.engine import Engine
from huedb.engine.filters import RecordFilter
from huedb.errors import InvalidArgumentError
from huedb.search import sparse_knn
from huedb.search.filter_compile import record_filter
from huedb.search.grouping import group
from huedb.search.plan import (
    EMBEDDING_KEY,
    DenseQuery,
    KnnNode,
    SearchPlan,
    SearchRequest,
    SparseQuery,
    knn_leaves,
)
from huedb.search.ranks import Domain, evaluate_rank, score_order

RESPONSE_COLUMNS = ("ids", "documents", "embeddings", "metadatas", "scores", "select")


@dataclass
class _Search:
    """What one search has read so far and its filter: rows by record key, each (key, id,
    document, uri, metadata JSON[, vector]), or only (key, id) when the search needs no
    more of its records than their ids (`with_rows` False)."""

    flt: RecordFilter
    with_rows: bool = True
    rows: dict[int, tuple] = field(default_factory=dict)
    _metadata: dict[int, dict[str, Any] | None] = field(default_factory=dict)

    def keep(self, rows: dict[int, tuple]) -> None:
        """Remember rows by record key."""
        self.rows.update(rows)

    def metadata(self, key: int) -> dict[str, Any] | None:
        """A read record's metadata (None when it has none), decoded once."""
        if key not in self._metadata:
            blob = self.rows[key][4]
            self._metadata[key] = orjson.loads(blob) if blob else None
        return self._metadata[key]


class SearchRun:
    """The searches of one request on one collection."""

    def __init__(self, engine: Engine, collection_uuid: str, schema: dict[str, Any] | None):
        self.engine = engine
        self.collection_uuid = collection_uuid
        self.schema = schema or {}
        self.read_collection = False  # whether an engine read of the collection ran

    def run(self, request: SearchRequest) -> dict[str, Any]:
        """The response body: per search, its ids and selected columns. The searches'
        filters are held to the read limits together (`check_reads`), and the request to
        one time budget: a search starting after it is spent stops the request."""
        filters = [
            record_filter(self.engine, self.collection_uuid, plan.filter)
            for plan in request.searches
        ]
        check_reads(self.engine.options, filters)
        deadline = Deadline(self.engine.options.query_timeout)
        out: dict[str, list[Any]] = {name: [] for name in RESPONSE_COLUMNS}
        for plan, flt in zip(request.searches, filters, strict=True):
            deadline.check()
            columns = self._one(plan, flt)
            for name in RESPONSE_COLUMNS:
                out[name].append(columns[name])
        return out

    # -- one search --------------------------------------------------------------------

    def _one(self, plan: SearchPlan, flt: RecordFilter) -> dict[str, Any]:
        state = _Search(flt, _needs_rows(plan))
        wants_vectors = EMBEDDING_KEY in plan.select.keys
        page = plan.page
        if plan.rank is None:
            if page.limit == 0:
                return _columns(plan, [], state)
            self.read_collection = True
            rows = self.engine.get(
                self.collection_uuid, state.flt, page.limit, page.offset or None, wants_vectors
            )
            state.keep({row[0]: row for row in rows})
            hits = [(row[0], np.float32(i)) for i, row in enumerate(rows)]
            return _columns(plan, hits, state)
        if isinstance(plan.rank, KnnNode):  # a lone Knn's scores are its list's, in order
            ranked = self._knn_list(plan.rank, state)
            if plan.rank.return_rank:
                ranked = [(key, float(i)) for i, (key, _) in enumerate(ranked)]
            elif any(score != score for _, score in ranked):  # NaN: sorted last by score_order
                ranked.sort(key=lambda item: score_order(*item))
        else:
            scored = evaluate_rank(plan.rank, [self._knn(k, state) for k in knn_leaves(plan.rank)])
            ranked = sorted(scored.items(), key=lambda item: score_order(*item))
        if plan.group_by is not None:
            metadata_of = {k: state.metadata(k) for k, _ in ranked}
            ranked = group(ranked, metadata_of, plan.group_by)
        end = None if page.limit is None else page.offset + page.limit
        hits = ranked[page.offset : end]
        if wants_vectors and hits:
            self._read_vectors(state, [k for k, _ in hits])
        return _columns(plan, hits, state)

    def _read_vectors(self, state: _Search, keys: list[int]) -> None:
        ids = [state.rows[k][1] for k in keys]
        rows = self.engine.get(self.collection_uuid, RecordFilter(ids), None, None, True)
        state.keep({row[0]: row for row in rows})

    # -- Knn lists -----------------------------------------------------------------------

    def _knn(self, knn: KnnNode, state: _Search) -> Domain:
        found = self._knn_list(knn, state)
        if knn.return_rank:
            support = {key: np.float32(i) for i, (key, _) in enumerate(found)}
        else:
            support = {key: np.float32(m) for key, m in found}
        default = None if knn.default is None else np.float32(knn.default)
        return Domain(support, default)

    def _knn_list(self, knn: KnnNode, state: _Search) -> list[tuple[int, float]]:
        """A Knn's list: (record key, measure, float32-exact) best first, at most `limit`."""
        if isinstance(knn.query, DenseQuery):
            found = self._dense(knn, knn.query, state)
            found.sort(key=lambda item: (item[1], item[0]))
            return found[: knn.limit]
        return self._sparse(knn, knn.query, state)  # in this order already (`sparse_knn`)

    def _dense(self, knn: KnnNode, query: DenseQuery, state: _Search) -> list[tuple[int, float]]:
        if knn.key != EMBEDDING_KEY:
            raise InvalidArgumentError(
                f"A dense $knn query searches '{EMBEDDING_KEY}', got key '{knn.key}' (a "
                "sparse-vector key takes a sparse query)"
            )
        if not query.values:
            raise InvalidArgumentError("A dense $knn query must not be empty")
        with np.errstate(over="ignore"):
            vector = np.asarray([query.values], dtype=np.float32)
        if not np.isfinite(vector).all():
            raise InvalidArgumentError("A dense $knn query must hold finite float32 numbers only")
        if knn.limit == 0:
            return []
        self.read_collection = True
        hits = self.engine.query(self.collection_uuid, vector, knn.limit, state.flt, False)
        state.keep(hits.rows)
        return [
            (key, float(np.float32(d)))
            for key, d in zip(hits.keys[0], hits.distances[0], strict=True)
            if key in hits.rows
        ]

    def _sparse(self, knn: KnnNode, query: SparseQuery, state: _Search) -> list[tuple[int, float]]:
        weights = sparse_knn.query_weights(query, None)
        bm25 = self._bm25(knn.key)
        self.read_collection = True
        found, rows = self.engine.sparse_knn(
            self.collection_uuid, knn.key, weights, bm25, knn.limit, state.flt, state.with_rows
        )
        state.keep(rows)
        return found

    def _bm25(self, key: str) -> bool:
        """Whether the sparse index of `key` scales queries by IDF (`bm25: true`)."""
        for types in ((self.schema.get("keys") or {}).get(key), self.schema.get("defaults")):
            config = _sparse_index_config(types)
            if config is not None and config.get("bm25") is not None:
                return bool(config["bm25"])
        return False


def _needs_rows(plan: SearchPlan) -> bool:
    """Whether a search reads more of its records than ids and scores: a document, metadata
    (selected or grouped by); selected vectors are read apart, by id (`_read_vectors`)."""
    wanted = set(plan.select.keys) - {"#score", EMBEDDING_KEY}
    return bool(wanted) or plan.group_by is not None


def _sparse_index_config(types: Any) -> dict[str, Any] | None:
    if not isinstance(types, dict):
        return None
    index = (types.get("sparse_vector") or {}).get("sparse_vector_index")
    config = index.get("config") if isinstance(index, dict) else None
    return config if isinstance(config, dict) else None


def _columns(plan: SearchPlan, hits: list[tuple[int, np.float32]], state: _Search) -> dict:
    """The response columns of one search's page."""
    keys = plan.select.keys
    rows = [state.rows[k] for k, _ in hits]
    fields = plan.select.fields
    metadatas = None
    if "#metadata" in keys:
        metadatas = [public_metadata(state.metadata(k)) or None for k, _ in hits]
    elif fields:
        metadatas = []
        for k, _ in hits:
            metadata = state.metadata(k)
            chosen = {f: metadata[f] for f in fields if f in metadata} if metadata else None
            metadatas.append(public_metadata(chosen) or None)
    return {
        "ids": [row[1] for row in rows],
        "documents": [row[2] for row in rows] if "#document" in keys else None,
        "embeddings": [_vector(row) for row in rows] if EMBEDDING_KEY in keys else None,
        "metadatas": metadatas,
        "scores": float32_json([s for _, s in hits]) if "#score" in keys else None,
        "select": list(keys),
    }


def _vector(row: tuple) -> list[float | None] | None:
    blob = row[5] if len(row) > 5 else None
    return None if blob is None else float32_json(np.frombuffer(blob, dtype=np.float32))


def float32_json(values: list[np.float32] | np.ndarray) -> list[float | None]:
    """float32 values (scores, vectors) as JSON: each its shortest round-trip decimal
    (orjson writes float32 so, as str(np.float32) and Chroma's server do); None when not
    finite."""
    dumped = orjson.dumps(np.asarray(values, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.loads(dumped)


def public_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metadata as a response carries it: sparse vectors in their wire form (with tokens)."""
    if not metadata:
        return metadata
    out = {}
    for name, value in metadata.items():
        parts = (
            sparse_knn.stored_sparse(value) if not isinstance(value, str | int | float) else None
        )
        if parts is None:
            out[name] = value
            continue
        tokens = value.get("tokens") if isinstance(value, dict) else getattr(value, "labels", None)
        out[name] = {
            "#type": sparse_knn.SPARSE_TYPE,
            "indices": list(parts[0]),
            "values": list(parts[1]),
            "tokens": tokens,
        }
    return out
