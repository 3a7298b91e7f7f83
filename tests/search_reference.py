"""An independent brute-force evaluator of Chroma's Search API, for tests.

Float64 distances, a plain-Python filter, the rank algebra with supports and defaults,
group_by, offset/limit and select, written from shared/chroma-search-api.md (sections
3.1-3.8 and 4.4); it shares no code with huedb/search. Also the seeded random records
(dense, sparse and metadata fields) the search tests run on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from hypothesis import strategies as st

from huedb.sparse_vector import SparseVector
from tests.test_search_expressions import CAPTURED_BODIES

SPARSE_KEYS = ("sparse_embedding", "bm25_sparse")
SPARSE_POOL = [1, 3, 5, 7, 9, 17, 42, 100, 771291085, 1177748882, 1621867415]
F32_MAX = float(np.finfo(np.float32).max)
N = 60


def has_sparse(body: dict[str, Any]) -> bool:
    """Whether a request body holds a sparse vector (a sparse `$knn` query)."""
    return '"#type": "sparse_vector"' in json.dumps(body) or '"indices"' in json.dumps(body)


def _loosened_capture_11() -> dict[str, Any]:
    """Capture 11's filter matches none of the records: the same body without its
    narrowest terms."""
    loose = json.loads(json.dumps(CAPTURED_BODIES["11_where_operators"]))
    terms = loose["searches"][0]["filter"]["$and"]
    loose["searches"][0]["filter"]["$and"] = [
        t
        for t in terms
        if not {"category", "score", "tags", "status", "#id"} & set(t) or "$nin" in str(t)
        if "^The" not in str(t)
    ]
    return loose


BODIES = {**CAPTURED_BODIES, "11b_where_operators_loosened": _loosened_capture_11()}
"""The 24 captured request bodies, plus capture 11 loosened."""


def make_records(with_sparse: bool) -> list[dict[str, Any]]:
    """N seeded records (`id`, `meta`, `doc`, `vec`): metadata of every scalar type with
    missing values, documents (some None), 4-d vectors and, `with_sparse`, a sparse vector
    under each of SPARSE_KEYS on four records in five."""
    rng = np.random.default_rng(16)
    words = ["fox", "cat", "dog", "The", "quick", "lazy"]
    out = []
    for i in range(N):
        meta: dict[str, Any] = {
            "category": ["science", "tech", "arts"][i % 3],
            "year": int(rng.integers(2019, 2026)),
            "score": round(float(rng.random()), 3),
            "status": ["draft", "final"][i % 2],
            "tag": ["a", "b", "c"][int(rng.integers(3))],
            "type": ["article", "paper"][i % 2],
            "priority": int(rng.integers(0, 3)),
            "a": int(rng.integers(0, 3)),
            "b": bool(rng.integers(2)),
            "c": [1.5, 2.5][i % 2],
            "title": f"t{i}",
        }
        if i % 7 == 3:
            del meta["year"]  # missing values: filters, group keys, aggregate keys
        if with_sparse:
            for key in SPARSE_KEYS:
                if i % 5 != 4:
                    idx = sorted(
                        rng.choice(SPARSE_POOL, size=int(rng.integers(1, 5)), replace=False)
                    )
                    vals = [round(float(v), 3) for v in rng.random(len(idx)) * 2]
                    meta[key] = SparseVector([int(x) for x in idx], vals)
        doc = " ".join(rng.choice(words, size=4)) if i % 9 != 0 else None
        vector = rng.random(4).astype(np.float32).astype(float).tolist()
        out.append({"id": f"id{i}", "meta": meta, "doc": doc, "vec": vector})
    return out


RECORDS = make_records(with_sparse=False)
SPARSE_RECORDS = make_records(with_sparse=True)


def add_records(collection: Any, records: list[dict[str, Any]]) -> None:
    """Add the records to a collection of any client."""
    collection.add(
        ids=[r["id"] for r in records],
        embeddings=[r["vec"] for r in records],
        metadatas=[r["meta"] for r in records],
        documents=[r["doc"] for r in records],
    )


def _same_scalar(x: Any, v: Any) -> bool:
    if isinstance(x, list) or x is None:
        return False
    if isinstance(x, bool) or isinstance(v, bool):
        return isinstance(x, bool) and isinstance(v, bool) and x == v
    if isinstance(x, str) or isinstance(v, str):
        return isinstance(x, str) and isinstance(v, str) and x == v
    return x == v


def bf_match(rec: dict[str, Any], node: dict[str, Any] | None) -> bool:
    if not node:
        return True
    key, cond = next(iter(node.items()))
    if key == "$and":
        return all(bf_match(rec, c) for c in cond)
    if key == "$or":
        return any(bf_match(rec, c) for c in cond)
    op, val = next(iter(cond.items())) if isinstance(cond, dict) else ("$eq", cond)
    negated = {"$ne": "$eq", "$nin": "$in", "$not_contains": "$contains", "$not_regex": "$regex"}
    if op in negated:
        return not bf_match(rec, {key: {negated[op]: val}})
    if key == "#id":
        return rec["id"] == val if op == "$eq" else rec["id"] in val
    if key == "#document":
        doc = rec["doc"]
        if doc is None:
            return False
        return val in doc if op == "$contains" else re.search(val, doc) is not None
    x = rec["meta"].get(key)
    if op == "$eq":
        return _same_scalar(x, val)
    if op == "$in":
        return any(_same_scalar(x, v) for v in val)
    if op == "$contains":
        return isinstance(x, list) and any(_same_scalar(e, val) for e in x)
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return {"$gt": x > val, "$gte": x >= val, "$lt": x < val, "$lte": x <= val}[op]


def _sparse_parts(value: Any) -> tuple[list[int], list[float]] | None:
    if isinstance(value, SparseVector):
        return value.indices, value.values
    return None


class BruteForce:
    """Reference results of one payload over a list of records."""

    def __init__(self, records: list[dict[str, Any]], bm25_keys: tuple[str, ...] = ()) -> None:
        self.records = records
        self.bm25_keys = bm25_keys

    def knn(self, spec: dict[str, Any], allowed: list[int]) -> tuple[dict[int, float], Any]:
        query, limit = spec["query"], spec.get("limit", 16)
        found = []
        if isinstance(query, list):
            q = np.asarray(query, dtype=np.float64)
            for i in allowed:
                v = np.asarray(self.records[i]["vec"], dtype=np.float64)
                found.append((float(np.sum((q - v) ** 2)), i))
        else:
            weights = dict(zip(query["indices"], query["values"], strict=True))
            if spec["key"] in self.bm25_keys:
                for t in weights:
                    n_t = sum(
                        1
                        for r in self.records
                        if (p := _sparse_parts(r["meta"].get(spec["key"]))) and t in p[0]
                    )
                    n = len(self.records)
                    weights[t] *= math.log(1 + (n - n_t + 0.5) / (n_t + 0.5))
            for i in allowed:
                parts = _sparse_parts(self.records[i]["meta"].get(spec["key"]))
                # Values as stored (float32, as in Chroma), products and sums in float64.
                shared = (
                    [(t, float(np.float32(d))) for t, d in zip(*parts, strict=True) if t in weights]
                    if parts
                    else []
                )
                if shared:
                    found.append((1.0 - sum(weights[t] * d for t, d in shared), i))
        found.sort()
        found = found[:limit]
        if spec.get("return_rank"):
            return {i: float(pos) for pos, (_, i) in enumerate(found)}, spec.get("default")
        return {i: m for m, i in found}, spec.get("default")

    def rank(self, node: dict[str, Any], allowed: list[int]) -> tuple[dict[int, float], Any]:
        op, arg = next(iter(node.items()))
        if op == "$knn":
            return self.knn(arg, allowed)
        if op == "$val":
            return {}, float(arg)
        if op in ("$abs", "$exp", "$log"):
            fn = {"$abs": np.abs, "$exp": np.exp, "$log": np.log}[op]
            sup, d = self.rank(arg, allowed)
            return {k: float(fn(np.float64(v))) for k, v in sup.items()}, (
                None if d is None else float(fn(np.float64(d)))
            )
        fns = {
            "$sum": np.add,
            "$sub": np.subtract,
            "$mul": np.multiply,
            "$div": np.divide,
            "$max": np.fmax,
            "$min": np.fmin,
        }
        if op in ("$sub", "$div"):
            return _combine(
                self.rank(arg["left"], allowed), self.rank(arg["right"], allowed), fns[op]
            )
        start = {"$sum": 0.0, "$mul": 1.0, "$max": -F32_MAX, "$min": F32_MAX}[op]
        acc: tuple[dict[int, float], Any] = ({}, start)
        for child in arg:
            acc = _combine(acc, self.rank(child, allowed), fns[op])
        return acc

    def run(self, payload: dict[str, Any]) -> list[tuple[str, float | None, dict[str, Any]]]:
        """(id, score, record) per result row."""
        return page_of(payload, self.ranked(payload))

    def ranked(self, payload: dict[str, Any]) -> list[tuple[str, float | None, dict[str, Any]]]:
        """(id, score, record) of every row the payload ranks, in order, before its page:
        a row tied with one at a page's edge may be served in its place."""
        allowed = self._allowed(payload)
        if payload.get("rank") is None:
            return [
                (self.records[i]["id"], float(n), self.records[i]) for n, i in enumerate(allowed)
            ]
        ranked = sorted(
            self._support(payload, allowed).items(),
            key=lambda kv: (math.isnan(kv[1]), kv[1], kv[0]),
        )
        group = payload.get("group_by") or {}
        if group:
            ranked = self.group(ranked, group)
        return [(self.records[i]["id"], s, self.records[i]) for i, s in ranked]

    def scores(self, payload: dict[str, Any]) -> dict[str, float]:
        """The score of every row the payload's rank scores, before group_by keeps some:
        a row a near-tie swapped (in a Knn's top `limit` or a group's top `k`) is known
        by its score."""
        if payload.get("rank") is None:
            return {row[0]: row[1] for row in self.ranked(payload)}
        support = self._support(payload, self._allowed(payload))
        return {self.records[i]["id"]: s for i, s in support.items()}

    def _allowed(self, payload: dict[str, Any]) -> list[int]:
        return [i for i, r in enumerate(self.records) if bf_match(r, payload.get("filter"))]

    def _support(self, payload: dict[str, Any], allowed: list[int]) -> dict[int, float]:
        with np.errstate(all="ignore"):
            support, _ = self.rank(payload["rank"], allowed)
        return support

    def group(self, ranked: list[tuple[int, float]], spec: dict[str, Any]) -> list:
        ((agg, conf),) = spec["aggregate"].items()

        def typed(v: Any) -> tuple:
            if v is None:
                return (0,)
            for rank, t in enumerate((bool, int, float, str), start=1):
                if isinstance(v, t):
                    return (rank, v)
            return (9, repr(v))

        groups: dict[tuple, list] = {}
        for i, s in ranked:
            meta = self.records[i]["meta"]
            groups.setdefault(tuple(typed(meta.get(k)) for k in spec["keys"]), []).append((i, s))
        kept = []
        for members in groups.values():

            def agg_key(item: tuple[int, float]) -> tuple:
                meta = self.records[item[0]]["meta"]
                return tuple(
                    (3, item[1]) if k == "#score" else typed(meta.get(k)) for k in conf["keys"]
                )

            kept += sorted(members, key=agg_key, reverse=agg == "$max_k")[: conf["k"]]
        return sorted(kept, key=lambda kv: (kv[1], kv[0]))


def page_of(payload: dict[str, Any], rows: list) -> list:
    """The rows of the payload's page (`limit`: offset and limit) of a ranking."""
    page = payload.get("limit") or {}
    offset, limit = page.get("offset", 0), page.get("limit")
    return rows[offset : None if limit is None else offset + limit]


def _combine(a: tuple[dict, Any], b: tuple[dict, Any], fn: Any) -> tuple[dict, Any]:
    (sa, da), (sb, db) = a, b
    if da is not None and db is not None:
        keys = sa.keys() | sb.keys()
        return {k: float(fn(sa.get(k, da), sb.get(k, db))) for k in keys}, float(fn(da, db))
    if da is not None:
        return {k: float(fn(sa.get(k, da), v)) for k, v in sb.items()}, None
    if db is not None:
        return {k: float(fn(v, sb.get(k, db))) for k, v in sa.items()}, None
    return {k: float(fn(sa[k], sb[k])) for k in sa.keys() & sb.keys()}, None


def close(a: float | None, b: float | None) -> bool:
    """Scores equal up to float32 evaluation (huedb) against float64 (the reference)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=2e-5, abs_tol=2e-5)


def assert_matches(rows: list[dict[str, Any]], payload: dict[str, Any], bf: BruteForce) -> None:
    """huedb's rows for one payload equal the brute force's (near-ties may swap)."""
    ranked = bf.ranked(payload)
    want = page_of(payload, ranked)
    assert len(rows) == len(want), ([r["id"] for r in rows], [w[0] for w in want])
    selected = set((payload.get("select") or {}).get("keys", []))
    scores = bf.scores(payload)
    for row, (wid, wscore, rec) in zip(rows, want, strict=True):
        if row["id"] != wid:  # only a tie at float32 precision may reorder
            assert close(scores.get(row["id"]), wscore), (row["id"], wid)
            continue
        if "#score" in selected:
            assert close(row.get("score"), wscore), (wid, row.get("score"), wscore)
        if "#document" in selected:
            assert row.get("document") == rec["doc"]
        if "#embedding" in selected:
            assert np.allclose(row["embedding"], rec["vec"])
        fields = selected - {"#score", "#document", "#embedding", "#metadata"}
        if "#metadata" in selected:
            assert row.get("metadata") == rec["meta"]
        elif fields:
            part = {k: v for k, v in rec["meta"].items() if k in fields}
            assert row.get("metadata") == (part or None)
        else:
            assert "metadata" not in row


def search_object(module: Any, payload: dict[str, Any]) -> Any:
    """The payload as a Search object of `module` (huedb or chromadb)."""
    return module.Search(
        where=payload.get("filter"),
        rank=payload.get("rank"),
        group_by=payload.get("group_by") or None,
        limit=payload.get("limit"),
        select=payload.get("select"),
    )


# -- random payloads ---------------------------------------------------------------------------

# Query values on a coarse grid: near-ties that float32 and float64 order differently
# (e.g. sparse measures 1 - 1e-8 and 1 - 2e-8) would change a Knn's top-`limit` set.
_unit = st.integers(1, 8).map(lambda i: i / 8)
_dense_query = st.lists(_unit, min_size=4, max_size=4)
_sparse_query = st.lists(st.sampled_from(SPARSE_POOL), min_size=1, max_size=4, unique=True).flatmap(
    lambda idx: st.lists(_unit, min_size=len(idx), max_size=len(idx)).map(
        lambda vals: {"indices": sorted(idx), "values": vals}
    )
)


@st.composite
def _knn(draw: st.DrawFn, sparse_keys: tuple[str, ...]) -> dict[str, Any]:
    sparse = draw(st.booleans())
    spec: dict[str, Any] = {
        "query": draw(_sparse_query if sparse else _dense_query),
        "key": draw(st.sampled_from(sparse_keys)) if sparse else "#embedding",
        "limit": draw(st.integers(1, 25)),
    }
    if draw(st.booleans()):
        spec["default"] = draw(st.sampled_from([0.0, 1.0, 10.0, 1000.0]))
    if draw(st.booleans()):
        spec["return_rank"] = True
    return {"$knn": spec}


_val = st.sampled_from([-2.0, -0.5, 0.5, 1.0, 3.0]).map(lambda v: {"$val": v})


def _rank(sparse_keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    # No $div / $exp / $log: near zero or far out, float32 and float64 part ways (the captures
    # and worked examples cover them).
    return st.recursive(
        st.one_of(_knn(sparse_keys), _knn(sparse_keys), _val),
        lambda child: st.one_of(
            st.builds(
                lambda op, xs: {op: xs},
                st.sampled_from(["$sum", "$mul", "$max", "$min"]),
                st.lists(child, min_size=1, max_size=3),
            ),
            st.builds(lambda a, b: {"$sub": {"left": a, "right": b}}, child, child),
            child.map(lambda c: {"$abs": c}),
        ),
        max_leaves=4,
    )


_filters = st.sampled_from(
    [
        None,
        {"category": {"$eq": "science"}},
        {"year": {"$gte": 2022}},
        {"#id": {"$in": [f"id{i}" for i in range(0, N, 2)]}},
        {"$or": [{"#document": {"$contains": "fox"}}, {"#id": {"$nin": ["id1", "id5"]}}]},
        {"$and": [{"tag": {"$ne": "a"}}, {"b": {"$eq": True}}]},
    ]
)
_groups = st.sampled_from(
    [
        {},
        {"keys": ["category"], "aggregate": {"$min_k": {"keys": ["#score"], "k": 2}}},
        {"keys": ["year"], "aggregate": {"$max_k": {"keys": ["priority", "#score"], "k": 1}}},
    ]
)


def payloads(sparse_keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Random search payloads: rank trees of dense and sparse Knn (sparse ones on
    `sparse_keys`), filters, group_by and pages, for the records of make_records."""
    return st.fixed_dictionaries(
        {
            "filter": _filters,
            "rank": _rank(sparse_keys),
            "group_by": _groups,
            "limit": st.builds(
                lambda o, n: {"offset": o, **({} if n is None else {"limit": n})},
                st.integers(0, 5),
                st.none() | st.integers(0, 20),
            ),
            "select": st.just({"keys": ["#score", "#metadata", "#document"]}),
        }
    )
