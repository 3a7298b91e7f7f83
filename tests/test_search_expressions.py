"""Chroma's Search API surface (`huedb.execution.expression`) and the server's search parser
(`huedb.search`), without a collection: building, serialising and parsing searches.

- Builders give exactly the request bodies the real chromadb 1.5.9 client sent (24 captured
  bodies, shared/search-api-captures.json, copied below; select keys compared as a set,
  chromadb sends them in set order).
- Random expressions built with huedb's classes and with chromadb's give the same JSON (or
  the same error).
- The parser accepts every captured body and what the real server accepted, refuses every
  row of the reference's error table (shared/chroma-search-api.md 2.5) with its status,
  error name and message, and `parse(to_dict(x))` describes `x`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import chromadb
import chromadb.execution.expression as chroma_expression
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import huedb
import huedb.execution.expression as huedb_expression
from huedb import K, Knn, ReadLevel, Rrf, Search
from huedb.api.collection_search import request_body
from huedb.errors import ChromaError, http_error
from huedb.execution.expression import GroupBy, Key, MaxK, MinK, Rank, Val
from huedb.execution.string_queries import embed_search
from huedb.search.direct import direct_request
from huedb.search.parse import parse_search_request
from huedb.search.plan import SearchRequest, Selection
from huedb.search.schema_rules import check_schema
from huedb.sparse_vector import SparseVector

Q = [0.1, 0.2, 0.3, 0.4]
Q32 = [0.10000000149011612, 0.20000000298023224, 0.30000001192092896, 0.4000000059604645]
SV_WIRE = {"#type": "sparse_vector", "indices": [3, 17, 42], "values": [0.5, 1.25, 2.0]}
SV = SparseVector([3, 17, 42], [0.5, 1.25, 2.0])
FOX_ANIMAL = SparseVector([1177748882, 1621867415], [1.6832038254632398] * 2)
QUICK_FOX = SparseVector([771291085, 1621867415], [1.6832038254632398] * 2)

SHAPE = "Failed to deserialize the JSON body into the target type: "


def knn(query: Any, key: str = "#embedding", limit: int = 16, **options: Any) -> dict:
    """A `$knn` as chromadb's client sends it (key and limit always)."""
    return {"$knn": {"query": query, "key": key, "limit": limit, **options}}


def payload(
    filter: Any = None,  # noqa: A002 - the wire name
    rank: Any = None,
    group_by: Any = None,
    limit: Any = None,
    select: list[str] | None = None,
) -> dict:
    """A search payload as chromadb's client sends it (all five fields, unset ones empty)."""
    return {
        "filter": filter,
        "rank": rank,
        "group_by": group_by or {},
        "limit": limit or {"offset": 0},
        "select": {"keys": select or []},
    }


def body(*payloads: dict, read_level: str = "index_and_wal") -> dict:
    return {"searches": list(payloads), "read_level": read_level}


# The request bodies chromadb 1.5.9's client sent (shared/search-api-captures.json).
CAPTURED_BODIES = {
    "01_dense_knn_basic": body(
        payload(rank=knn(Q), limit={"offset": 0, "limit": 5}, select=["#score", "#document"])
    ),
    "02_dense_knn_numpy_float32_all_params": body(
        payload(
            rank=knn(Q32, limit=50, default=10.0, return_rank=True), limit={"offset": 2, "limit": 3}
        )
    ),
    "03_sparse_knn_sparsevector": body(
        payload(
            rank=knn(SV_WIRE, "sparse_embedding", limit=100),
            limit={"offset": 0, "limit": 10},
            select=["#score"],
        )
    ),
    "04_sparse_knn_with_labels": body(
        payload(
            rank=knn(
                {
                    "#type": "sparse_vector",
                    "indices": [7, 9],
                    "values": [1.0, 0.5],
                    "tokens": ["fox", "dog"],
                },
                "sparse_embedding",
            )
        )
    ),
    "05_sparse_knn_plain_dict_query": body(
        payload(rank=knn({"indices": [1, 5], "values": [0.5, 0.3]}, "sparse_embedding"))
    ),
    "06_rrf_dense_sparse_weighted": body(
        payload(
            rank={
                "$mul": [
                    {"$val": -1},
                    {
                        "$sum": [
                            {
                                "$div": {
                                    "left": {"$val": 0.7},
                                    "right": {
                                        "$sum": [{"$val": 60}, knn(Q, limit=200, return_rank=True)]
                                    },
                                }
                            },
                            {
                                "$div": {
                                    "left": {"$val": 0.3},
                                    "right": {
                                        "$sum": [
                                            {"$val": 60},
                                            knn(
                                                SV_WIRE,
                                                "sparse_embedding",
                                                limit=200,
                                                return_rank=True,
                                            ),
                                        ]
                                    },
                                }
                            },
                        ]
                    },
                ]
            },
            limit={"offset": 0, "limit": 10},
            select=["#score", "#document"],
        )
    ),
    "07_rrf_defaults": body(
        payload(
            rank={
                "$mul": [
                    {"$val": -1},
                    {
                        "$sum": [
                            {
                                "$div": {
                                    "left": {"$val": 1.0},
                                    "right": {"$sum": [{"$val": 60}, knn(Q, return_rank=True)]},
                                }
                            },
                            {
                                "$div": {
                                    "left": {"$val": 1.0},
                                    "right": {
                                        "$sum": [
                                            {"$val": 60},
                                            knn(SV_WIRE, "sparse_embedding", return_rank=True),
                                        ]
                                    },
                                }
                            },
                        ]
                    },
                ]
            }
        )
    ),
    "08_rrf_normalize": body(
        payload(
            rank={
                "$mul": [
                    {"$val": -1},
                    {
                        "$sum": [
                            {
                                "$div": {
                                    "left": {"$val": 0.75},
                                    "right": {"$sum": [{"$val": 100}, knn(Q, return_rank=True)]},
                                }
                            },
                            {
                                "$div": {
                                    "left": {"$val": 0.25},
                                    "right": {
                                        "$sum": [
                                            {"$val": 100},
                                            knn(SV_WIRE, "sparse_embedding", return_rank=True),
                                        ]
                                    },
                                }
                            },
                        ]
                    },
                ]
            }
        )
    ),
    "09_linear_combination": body(
        payload(
            rank={
                "$sum": [
                    {"$mul": [knn(Q), {"$val": 0.8}]},
                    {"$mul": [{"$val": 0.5}, {"$val": 0.2}]},
                ]
            }
        )
    ),
    "10_arith_all_ops": body(
        payload(
            rank={
                "$sub": {
                    "left": {
                        "$sum": [
                            {
                                "$abs": {
                                    "$div": {
                                        "left": {
                                            "$sub": {
                                                "left": knn(Q),
                                                "right": knn(
                                                    SV_WIRE, "sparse_embedding", default=1.0
                                                ),
                                            }
                                        },
                                        "right": {"$val": 2},
                                    }
                                }
                            },
                            {"$exp": {"$mul": [{"$val": -1}, knn(Q)]}},
                            {"$log": {"$sum": [knn(Q), {"$val": 1}]}},
                            {"$min": [{"$max": [knn(Q), {"$val": 0.0}]}, {"$val": 1.0}]},
                            {"$val": 3},
                        ]
                    },
                    "right": {"$mul": [knn(Q), knn(Q)]},
                }
            }
        )
    ),
    "11_where_operators": body(
        payload(
            filter={
                "$and": [
                    {"category": {"$eq": "science"}},
                    {"year": {"$gte": 2020}},
                    {"year": {"$lt": 2025}},
                    {"score": {"$gt": 0.5}},
                    {"score": {"$lte": 0.9}},
                    {"status": {"$ne": "draft"}},
                    {"tag": {"$in": ["a", "b"]}},
                    {"tag": {"$nin": ["c"]}},
                    {"#document": {"$contains": "fox"}},
                    {"#document": {"$not_contains": "cat"}},
                    {"#document": {"$regex": "^The"}},
                    {"#document": {"$not_regex": "(?i)dog$"}},
                    {"tags": {"$contains": "x"}},
                    {"nums": {"$not_contains": 3}},
                    {"#id": {"$in": ["id1", "id2"]}},
                    {"#id": {"$nin": ["id3"]}},
                ]
            },
            rank=knn(Q),
        )
    ),
    "12_where_or_nested": body(
        payload(
            filter={
                "$or": [{"a": {"$eq": 1}}, {"$and": [{"b": {"$eq": True}}, {"c": {"$eq": 1.5}}]}]
            },
            rank=knn(Q),
        )
    ),
    "13_where_as_dict_single_and": body(
        payload(
            filter={"category": {"$eq": "science"}},
            rank=knn(Q32),
            limit={"offset": 0, "limit": 10},
            select=["#score", "#document"],
        )
    ),
    "14_filter_only_no_rank": body(
        payload(
            filter={"category": {"$eq": "science"}},
            limit={"offset": 10, "limit": 20},
            select=["#metadata"],
        )
    ),
    "15_empty_search": body(payload()),
    "16_select_all_and_fields": body(
        payload(rank=knn(Q), select=["#score", "#document", "#metadata", "#embedding"])
    ),
    "17_select_metadata_fields": body(
        payload(rank=knn(Q), select=["#id", "title", "#score", "author"])
    ),
    "18_group_by_min_k": body(
        payload(
            rank=knn(Q, limit=12),
            group_by={"keys": ["category"], "aggregate": {"$min_k": {"keys": ["#score"], "k": 2}}},
            limit={"offset": 0, "limit": 12},
        )
    ),
    "19_group_by_max_k_multi": body(
        payload(
            rank=knn(Q, limit=12),
            group_by={
                "keys": ["category", "year"],
                "aggregate": {"$max_k": {"keys": ["priority", "#score"], "k": 1}},
            },
        )
    ),
    "20_batch_two_searches_index_only": body(
        payload(filter={"type": {"$eq": "article"}}, rank=knn(Q)),
        payload(filter={"type": {"$eq": "paper"}}, rank=knn([0.4, 0.3, 0.2, 0.1])),
        read_level="index_only",
    ),
    "21_string_query_dense_embedded_client_side": body(payload(rank=knn([11.0, 2.0, 0.0, 0.0]))),
    "22_rank_from_dict_all_ops": body(
        payload(
            rank={
                "$sum": [
                    knn(Q32, limit=8, return_rank=True),
                    {"$mul": [{"$val": 2}, {"$exp": {"$val": 0}}]},
                    {"$sub": {"left": {"$val": 1}, "right": {"$log": {"$val": 1}}}},
                    {"$div": {"left": {"$abs": {"$val": -1}}, "right": {"$val": 4}}},
                    {"$max": [{"$val": 0}, {"$val": 1}]},
                    {"$min": [{"$val": 0}, {"$val": 1}]},
                ]
            },
            group_by={"keys": ["category"], "aggregate": {"$min_k": {"keys": ["#score"], "k": 3}}},
            limit={"offset": 5},
        )
    ),
    "23_string_query_bm25_sparse_key": body(
        payload(
            rank=knn(
                {
                    "#type": "sparse_vector",
                    "indices": [1177748882, 1621867415],
                    "values": [1.6832038254632398, 1.6832038254632398],
                },
                "bm25_sparse",
                limit=10,
            )
        )
    ),
    "24_hybrid_rrf_string_queries": body(
        payload(
            rank={
                "$mul": [
                    {"$val": -1},
                    {
                        "$sum": [
                            {
                                "$div": {
                                    "left": {"$val": 1.0},
                                    "right": {
                                        "$sum": [
                                            {"$val": 60},
                                            knn([13.0, 2.0, 0.0, 0.0], return_rank=True),
                                        ]
                                    },
                                }
                            },
                            {
                                "$div": {
                                    "left": {"$val": 1.0},
                                    "right": {
                                        "$sum": [
                                            {"$val": 60},
                                            knn(
                                                {
                                                    "#type": "sparse_vector",
                                                    "indices": [771291085, 1621867415],
                                                    "values": [
                                                        1.6832038254632398,
                                                        1.6832038254632398,
                                                    ],
                                                },
                                                "bm25_sparse",
                                                return_rank=True,
                                            ),
                                        ]
                                    },
                                }
                            },
                        ]
                    },
                ]
            },
            limit={"offset": 0, "limit": 5},
        )
    ),
}

# Requests Chroma's 1.5.9 server refused: status, error name, message (less its position).
LIVE_ERRORS = [
    (
        "read_level_bad",
        {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}}], "read_level": "bogus"},
        422,
        "ChromaError",
        SHAPE + "read_level: unknown variant `bogus`, expected one of `index_and_wal`, "
        "`index_only`, `index_and_bounded_wal`",
    ),
    ("missing_searches", {}, 422, "ChromaError", SHAPE + "missing field `searches`"),
    (
        "group_by_without_rank",
        {
            "searches": [
                {
                    "group_by": {
                        "keys": ["category"],
                        "aggregate": {"$min_k": {"keys": ["#score"], "k": 1}},
                    }
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].__all__: group_by requires rank expression to be specified",
    ),
    (
        "group_by_keys_without_aggregate",
        {
            "searches": [
                {"rank": {"$knn": {"query": [1.0, 0.0]}}, "group_by": {"keys": ["category"]}}
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].group_by: group_by keys and aggregate must both be "
        "specified or both be omitted",
    ),
    (
        "group_by_key_score",
        {
            "searches": [
                {
                    "rank": {"$knn": {"query": [1.0, 0.0]}},
                    "group_by": {
                        "keys": ["#score"],
                        "aggregate": {"$min_k": {"keys": ["#score"], "k": 1}},
                    },
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].group_by: group_by keys must be metadata fields "
        "(cannot use #score, #document, #embedding, or #metadata)",
    ),
    (
        "group_by_aggregate_document",
        {
            "searches": [
                {
                    "rank": {"$knn": {"query": [1.0, 0.0]}},
                    "group_by": {
                        "keys": ["category"],
                        "aggregate": {"$max_k": {"keys": ["#document"], "k": 1}},
                    },
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].group_by: aggregate keys must be metadata fields or "
        "#score (cannot use #document, #embedding, or #metadata)",
    ),
    (
        "group_by_k_zero",
        {
            "searches": [
                {
                    "rank": {"$knn": {"query": [1.0, 0.0]}},
                    "group_by": {
                        "keys": ["category"],
                        "aggregate": {"$min_k": {"keys": ["#score"], "k": 0}},
                    },
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].group_by: aggregate k must be greater than 0",
    ),
    (
        "sparse_unsorted",
        {
            "searches": [
                {
                    "rank": {
                        "$knn": {
                            "query": {
                                "#type": "sparse_vector",
                                "indices": [5, 1],
                                "values": [1, 2],
                            },
                            "key": "sp",
                        }
                    }
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].rank: Invalid sparse vector in KNN query: Sparse "
        "vector indices must be sorted in strictly ascending order (no duplicates)",
    ),
    (
        "sparse_len_mismatch",
        {
            "searches": [
                {"rank": {"$knn": {"query": {"indices": [1, 2], "values": [1]}, "key": "sp"}}}
            ]
        },
        400,
        "InvalidArgumentError",
        "Validation error: searches[0].rank: Invalid sparse vector in KNN query: Sparse "
        "vector indices, values, and tokens (when present) must have the same length",
    ),
    (
        "sparse_key_not_indexed",
        {"searches": [{"rank": {"$knn": {"query": {"indices": [1], "values": [1]}, "key": "sp"}}}]},
        400,
        "InvalidArgumentError",
        "Cannot filter using metadata key 'sp' with type 'SparseVector' because indexing is "
        "disabled",
    ),
    (
        "sparse_bad_type_tag",
        {
            "searches": [
                {
                    "rank": {
                        "$knn": {
                            "query": {"#type": "dense", "indices": [1], "values": [1]},
                            "key": "sp",
                        }
                    }
                }
            ]
        },
        422,
        "ChromaError",
        SHAPE + "searches[0].rank.$knn.query: data did not match any variant of untagged enum "
        "QueryVector",
    ),
    (
        "rank_unknown_op",
        {"searches": [{"rank": {"$foo": 1}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].rank: unknown variant `$foo`, expected one of `$abs`, `$div`, `$exp`, "
        "`$knn`, `$log`, `$max`, `$min`, `$mul`, `$sub`, `$sum`, `$val`",
    ),
    (
        "rank_bare_number",
        {"searches": [{"rank": 1.0}]},
        400,
        "InvalidArgumentError",
        "Failed to parse the request body as JSON: searches[0].rank: expected value",
    ),
    (
        "knn_missing_query",
        {"searches": [{"rank": {"$knn": {"key": "#embedding"}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].rank.$knn: missing field `query`",
    ),
    (
        "knn_negative_limit",
        {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0], "limit": -1}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].rank.$knn.limit: invalid value: integer `-1`, expected u32",
    ),
    (
        "limit_negative",
        {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}, "limit": {"limit": -1}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].limit.limit: invalid value: integer `-1`, expected u32",
    ),
    (
        "filter_bad_op",
        {"searches": [{"filter": {"n": {"$foo": 1}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].filter: Invalid where clause",
    ),
    (
        "filter_regex_on_metadata",
        {"searches": [{"filter": {"category": {"$regex": "x"}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].filter: Invalid where clause",
    ),
    (
        "filter_bad_regex",
        {"searches": [{"filter": {"#document": {"$regex": "("}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].filter: Regex syntax errror: regex parse error:\n    (\n    ^\nerror: "
        "unclosed group",
    ),
    (
        "select_unknown_key_type",
        {"searches": [{"select": {"keys": [1]}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].select.keys[0]: invalid type: integer `1`, expected a string",
    ),
    (
        "select_as_list",
        {"searches": [{"select": ["#score"]}]},
        422,
        "ChromaError",
        SHAPE + 'searches[0].select[0]: invalid type: string "#score", expected a sequence',
    ),
    (
        "sparse_on_embedding_key",
        {
            "searches": [
                {
                    "rank": {
                        "$knn": {"query": {"indices": [1], "values": [1.0]}, "key": "#embedding"}
                    }
                }
            ]
        },
        400,
        "InvalidArgumentError",
        "Cannot filter using metadata key '#embedding' with type 'SparseVector' because "
        "indexing is disabled",
    ),
    (
        "val_non_number",
        {"searches": [{"rank": {"$val": "x"}}]},
        422,
        "ChromaError",
        SHAPE + 'searches[0].rank.$val: invalid type: string "x", expected f32',
    ),
    (
        "div_missing_right",
        {"searches": [{"rank": {"$div": {"left": {"$val": 1}}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].rank.$div: missing field `right`",
    ),
    (
        "doc_contains_non_string",
        {"searches": [{"filter": {"#document": {"$contains": 3}}}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].filter: Invalid where clause",
    ),
    (
        "group_by_null",
        {"searches": [{"group_by": None}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].group_by: invalid type: null, expected struct GroupBy",
    ),
    (
        "select_null",
        {"searches": [{"select": None}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].select: invalid type: null, expected struct Select",
    ),
    (
        "limit_null",
        {"searches": [{"limit": None}]},
        422,
        "ChromaError",
        SHAPE + "searches[0].limit: invalid type: null, expected struct Limit",
    ),
]

# Requests it accepted (answered 501: search runs only in Chroma's distributed engine).
LIVE_ACCEPTED = [
    {
        "searches": [
            {
                "rank": {"$knn": {"query": [1.0, 0.0]}},
                "limit": {"offset": 0, "limit": 1},
                "select": {"keys": ["#score"]},
            }
        ]
    },
    {"searches": [{}]},
    {"searches": []},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}}]},
    {"searches": [{"rank": {"$val": 1.0}}]},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0, 0.0]}}}]},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0], "foo": 1}}}]},
    {"searches": [{"rank": {"$sum": [{"$knn": {"query": [1.0, 0.0]}}]}}]},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}, "limit": {"offset": 0, "limit": 0}}]},
    {"searches": [{"filter": {}}]},
    {"searches": [{"filter": {"#id": {"$in": ["a"]}}}]},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}, "foo": 1}]},
    {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0], "key": "other"}}}]},
    {"searches": [{"rank": {"$knn": {"query": [1, 0]}}}]},
    {"searches": [{"filter": {"n": {"$contains": 3}}}]},
    {"searches": [{"limit": {"offset": 3}}]},
    {"searches": [{"group_by": {}}]},
    {"searches": [{"filter": None, "rank": None}]},
]


def envelope(*searches: Search, read_level: ReadLevel = ReadLevel.INDEX_AND_WAL) -> dict:
    """The request body chromadb's client posts for `searches`."""
    return {"searches": [s.to_dict() for s in searches], "read_level": read_level.value}


def captured_embedder(key: str, text: str) -> Any:
    """The embedding functions of the captures: dense `[len, 2, 0, 0]`, BM25 for bm25_sparse."""
    if key == "#embedding":
        return np.array([len(text), 2, 0, 0], dtype=np.float32)
    return {"fox animal": FOX_ANIMAL, "the quick fox": QUICK_FOX}[text]


def _captured_searches() -> dict[str, Callable[[], dict]]:
    sparse = "sparse_embedding"
    knn_q = Knn(query=Q)
    everything = (
        (K("category") == "science")
        & (K("year") >= 2020)
        & (K("year") < 2025)
        & (K("score") > 0.5)
        & (K("score") <= 0.9)
        & (K("status") != "draft")
        & K("tag").is_in(["a", "b"])
        & K("tag").not_in(["c"])
        & K.DOCUMENT.contains("fox")
        & K.DOCUMENT.not_contains("cat")
        & K.DOCUMENT.regex("^The")
        & K.DOCUMENT.not_regex("(?i)dog$")
        & K("tags").contains("x")
        & K("nums").not_contains(3)
        & K.ID.is_in(["id1", "id2"])
        & K.ID.not_in(["id3"])
    )
    arithmetic = (
        ((knn_q - Knn(query=SV, key=sparse, default=1.0)) / 2).abs()
        + (-knn_q).exp()
        + (knn_q + 1).log()
        + knn_q.max(0.0).min(1.0)
        + 3
        - knn_q * knn_q
    )
    rank_dict = {
        "$sum": [
            {"$knn": {"query": Q, "limit": 8, "return_rank": True}},
            {"$mul": [{"$val": 2}, {"$exp": {"$val": 0}}]},
            {"$sub": {"left": {"$val": 1}, "right": {"$log": {"$val": 1}}}},
            {"$div": {"left": {"$abs": {"$val": -1}}, "right": {"$val": 4}}},
            {"$max": [{"$val": 0}, {"$val": 1}]},
            {"$min": [{"$val": 0}, {"$val": 1}]},
        ]
    }
    group = {"keys": ["category"], "aggregate": {"$min_k": {"keys": ["#score"], "k": 3}}}
    ranked = Search().rank(knn_q)

    def rrf(*ranks: Rank, **options: Any) -> Rrf:
        return Rrf(list(ranks), **options)

    def embedded(search: Search) -> dict:
        return envelope(embed_search(search, captured_embedder))

    return {
        "01_dense_knn_basic": lambda: envelope(ranked.limit(5).select(K.DOCUMENT, K.SCORE)),
        "02_dense_knn_numpy_float32_all_params": lambda: envelope(
            Search()
            .rank(
                Knn(query=np.array(Q, dtype=np.float32), limit=50, default=10.0, return_rank=True)
            )
            .limit(3, offset=2)
        ),
        "03_sparse_knn_sparsevector": lambda: envelope(
            Search().rank(Knn(query=SV, key=sparse, limit=100)).limit(10).select(K.SCORE)
        ),
        "04_sparse_knn_with_labels": lambda: envelope(
            Search().rank(Knn(query=SparseVector([7, 9], [1.0, 0.5], ["fox", "dog"]), key=sparse))
        ),
        "05_sparse_knn_plain_dict_query": lambda: envelope(
            Search().rank(Knn(query={"indices": [1, 5], "values": [0.5, 0.3]}, key=sparse))
        ),
        "06_rrf_dense_sparse_weighted": lambda: envelope(
            Search()
            .rank(
                rrf(
                    Knn(query=Q, return_rank=True, limit=200),
                    Knn(query=SV, key=sparse, return_rank=True, limit=200),
                    weights=[0.7, 0.3],
                    k=60,
                )
            )
            .limit(10)
            .select(K.DOCUMENT, K.SCORE)
        ),
        "07_rrf_defaults": lambda: envelope(
            Search().rank(
                rrf(Knn(query=Q, return_rank=True), Knn(query=SV, key=sparse, return_rank=True))
            )
        ),
        "08_rrf_normalize": lambda: envelope(
            Search().rank(
                rrf(
                    Knn(query=Q, return_rank=True),
                    Knn(query=SV, key=sparse, return_rank=True),
                    weights=[3, 1],
                    normalize=True,
                    k=100,
                )
            )
        ),
        "09_linear_combination": lambda: envelope(Search().rank(knn_q * 0.8 + Val(0.5) * 0.2)),
        "10_arith_all_ops": lambda: envelope(Search().rank(arithmetic)),
        "11_where_operators": lambda: envelope(ranked.where(everything)),
        "12_where_or_nested": lambda: envelope(
            ranked.where((K("a") == 1) | ((K("b") == True) & (K("c") == 1.5)))  # noqa: E712
        ),
        "13_where_as_dict_single_and": lambda: envelope(
            Search(
                where={"$and": [{"category": "science"}]},
                rank={"$knn": {"query": Q}},
                limit=10,
                select=["#document", "#score"],
            )
        ),
        "14_filter_only_no_rank": lambda: envelope(
            Search().where(K("category") == "science").limit(20, offset=10).select(K.METADATA)
        ),
        "15_empty_search": lambda: envelope(Search()),
        "16_select_all_and_fields": lambda: envelope(ranked.select_all()),
        "17_select_metadata_fields": lambda: envelope(
            ranked.select("title", "author", K.SCORE, "#id")
        ),
        "18_group_by_min_k": lambda: envelope(
            Search()
            .rank(Knn(query=Q, limit=12))
            .group_by(GroupBy(keys=Key("category"), aggregate=MinK(keys=Key.SCORE, k=2)))
            .limit(12)
        ),
        "19_group_by_max_k_multi": lambda: envelope(
            Search(
                rank=Knn(query=Q, limit=12),
                group_by=GroupBy(
                    [Key("category"), Key("year")], MaxK([Key("priority"), Key.SCORE], k=1)
                ),
            )
        ),
        "20_batch_two_searches_index_only": lambda: envelope(
            ranked.where(K("type") == "article"),
            Search().where(K("type") == "paper").rank(Knn(query=[0.4, 0.3, 0.2, 0.1])),
            read_level=ReadLevel.INDEX_ONLY,
        ),
        "21_string_query_dense_embedded_client_side": lambda: embedded(
            Search().rank(Knn(query="hello world"))
        ),
        "22_rank_from_dict_all_ops": lambda: envelope(
            Search(rank=rank_dict, group_by=group, limit={"offset": 5})
        ),
        "23_string_query_bm25_sparse_key": lambda: embedded(
            Search().rank(Knn(query="fox animal", key="bm25_sparse", limit=10))
        ),
        "24_hybrid_rrf_string_queries": lambda: embedded(
            Search()
            .rank(
                rrf(
                    Knn(query="the quick fox", return_rank=True),
                    Knn(query="the quick fox", key="bm25_sparse", return_rank=True),
                )
            )
            .limit(5)
        ),
    }


BUILT = _captured_searches()


def as_set_of_keys(body: dict) -> str:
    """The body's JSON with every `select.keys` sorted (the server treats them as a set)."""
    body = json.loads(json.dumps(body))
    for search in body["searches"]:
        search["select"]["keys"].sort()
    return json.dumps(body, sort_keys=True)


@pytest.mark.parametrize("name", sorted(CAPTURED_BODIES))
def test_builders_send_the_captured_bodies(name: str) -> None:
    assert as_set_of_keys(BUILT[name]()) == as_set_of_keys(CAPTURED_BODIES[name])


def test_string_query_under_a_key_object_uses_that_keys_function() -> None:
    """chromadb 1.5.9 embeds `Knn("text", key=K("bm25_sparse"))` with the dense function
    (its `key == "#embedding"` is a filter object, always true); huedb compares names."""
    search = Search().rank(Knn(query="fox animal", key=K("bm25_sparse")))
    query = embed_search(search, captured_embedder).to_dict()["rank"]["$knn"]["query"]
    assert query == FOX_ANIMAL.to_dict()


def test_search_is_immutable() -> None:
    base = Search().rank(Knn(query=Q))
    limited = base.limit(3)
    assert base.to_dict()["limit"] == {"offset": 0}
    assert limited.to_dict()["limit"] == {"offset": 0, "limit": 3}
    with pytest.raises(AttributeError):
        base._rank = None  # type: ignore[misc]
    query = [1.0, 2.0]
    knn = Knn(query=query)
    query.append(3.0)
    assert knn.to_dict()["$knn"]["query"] == [1.0, 2.0]


# Client-side refusals captured from chromadb 1.5.9 (class and message).
CLIENT_ERRORS = [
    (lambda: Rank.from_dict({"$val": "x"}), TypeError, "$val requires a number, got str"),
    (lambda: Rank.from_dict({"$foo": 1}), ValueError, "Unknown rank operator: $foo"),
    (
        lambda: Rank.from_dict({"$sum": [{"$val": 1}]}),
        ValueError,
        "$sum requires at least 2 ranks, got 1",
    ),
    (lambda: Rank.from_dict({"$knn": {}}), ValueError, "$knn requires 'query' field"),
    (
        lambda: Rank.from_dict({"$knn": {"query": Q, "limit": 0}}),
        ValueError,
        "$knn limit must be positive, got 0",
    ),
    (
        lambda: Rank.from_dict({"$knn": {"query": [Q, Q]}}),
        ValueError,
        "$knn requires exactly one query embedding",
    ),
    (lambda: Search(limit=0), ValueError, "Limit limit must be positive, got 0"),
    (
        lambda: Search(limit={"offset": -1}),
        ValueError,
        "Limit offset must be non-negative, got -1",
    ),
    (lambda: Search(where={}), ValueError, "Where dict cannot be empty"),
    (lambda: Search(where={"a": {"$like": 1}}), ValueError, "Unknown operator: $like"),
    (
        lambda: Search(group_by={"keys": ["a"]}),
        ValueError,
        "GroupBy requires 'aggregate' field",
    ),
    (
        lambda: Search(group_by={"keys": ["a"], "aggregate": {"$min_k": {"keys": ["a"], "k": 0}}}),
        ValueError,
        "$min_k k must be positive, got 0",
    ),
    (lambda: Rrf([]).to_dict(), ValueError, "RRF requires at least one rank"),
    (
        lambda: Rrf([Knn(Q)], weights=[1, 2]).to_dict(),
        ValueError,
        "Number of weights (2) must match number of ranks (1)",
    ),
    (
        lambda: Rrf([Knn(Q)], weights=[-1]).to_dict(),
        ValueError,
        "All weights must be non-negative",
    ),
    (lambda: Rrf([Knn(Q)], k=0).to_dict(), ValueError, "k must be positive, got 0"),
    (
        lambda: Rrf([Knn(Q)], weights=[0], normalize=True).to_dict(),
        ValueError,
        "Sum of weights must be positive when normalize=True",
    ),
    (lambda: K.DOCUMENT.contains(3), TypeError, "$contains on #document requires a string pattern"),
]


@pytest.mark.parametrize("build, error, message", CLIENT_ERRORS)
def test_client_side_refusals(build: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error) as refused:
        build()
    assert str(refused.value) == message


def test_import_huedb_as_chromadb_names() -> None:
    """`import huedb as chromadb` finds chromadb's top-level Search API names."""
    for name in ("Search", "Key", "K", "Knn", "Rrf", "ReadLevel", "SparseVector"):
        assert hasattr(huedb, name), name
    for name in chroma_expression.__all__:
        assert hasattr(huedb_expression, name), name
    assert chromadb.ReadLevel.INDEX_ONLY.value == ReadLevel.INDEX_ONLY


# --- random expressions: huedb's classes against chromadb's ---------------------------

NAMES = ("a", "b", "category", "#id", "#document", "#score", "#embedding", "#metadata")
META = ("a", "b", "category")
numbers = st.one_of(st.integers(-50, 200), st.floats(-10, 10, allow_nan=False, width=32))
scalars = st.one_of(st.text(string.ascii_lowercase, max_size=4), numbers, st.booleans())


def where_recipes(valid: bool) -> st.SearchStrategy:
    """Filters as recipes (tuples) that `build_where` turns into either library's objects."""
    if valid:
        leaf = st.one_of(
            st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(META), scalars),
            st.tuples(st.sampled_from([">", ">=", "<", "<="]), st.sampled_from(META), numbers),
            st.tuples(
                st.sampled_from(["is_in", "not_in"]),
                st.sampled_from((*META, "#id")),
                st.lists(st.text(string.ascii_lowercase, max_size=3), min_size=1, max_size=3),
            ),
            st.tuples(
                st.sampled_from(["contains", "not_contains"]), st.sampled_from(META), scalars
            ),
            st.tuples(
                st.sampled_from(["contains", "not_contains", "regex", "not_regex"]),
                st.just("#document"),
                st.sampled_from(["fox", "^The", "(?i)dog$", "a|b"]),
            ),
        )
    else:
        leaf = st.tuples(
            st.sampled_from(
                ["==", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "regex", "not_regex"]
            ),
            st.sampled_from(NAMES),
            scalars,
        ) | st.tuples(
            st.sampled_from(["is_in", "not_in"]),
            st.sampled_from(NAMES),
            st.lists(scalars, max_size=3),
        )
    return st.recursive(
        leaf, lambda inner: st.tuples(st.sampled_from(["&", "|"]), inner, inner), max_leaves=5
    )


def build_where(lib: SimpleNamespace, recipe: tuple) -> Any:
    op, first, second = recipe
    if op in ("&", "|"):
        left, right = build_where(lib, first), build_where(lib, second)
        return left & right if op == "&" else left | right
    key = lib.K(first)
    compare = {
        "==": key.__eq__,
        "!=": key.__ne__,
        ">": key.__gt__,
        ">=": key.__ge__,
        "<": key.__lt__,
        "<=": key.__le__,
    }
    return compare[op](second) if op in compare else getattr(key, op)(second)


def query_recipes(valid: bool) -> st.SearchStrategy:
    vector = st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=4)
    indices = st.lists(st.integers(0, 2**31), min_size=1, max_size=4, unique=True).map(sorted)
    sparse = indices.flatmap(
        lambda ix: st.tuples(
            st.just(ix),
            st.lists(st.floats(0, 3, width=32), min_size=len(ix), max_size=len(ix)),
            st.none() | st.lists(st.text(max_size=3), min_size=len(ix), max_size=len(ix)),
        )
    )
    kinds = [
        st.tuples(st.just("list"), vector),
        st.tuples(st.just("array"), vector, st.sampled_from(["float32", "float64", "int32"])),
        st.tuples(st.just("sparse"), sparse),
        st.tuples(st.just("dict"), sparse),
    ]
    return st.one_of(kinds)


def build_query(lib: SimpleNamespace, recipe: tuple) -> Any:
    kind = recipe[0]
    if kind == "list":
        return list(recipe[1])
    if kind == "array":
        return np.array(recipe[1], dtype=recipe[2])
    indices, values, labels = recipe[1]
    if kind == "sparse":
        return lib.SparseVector(list(indices), list(values), labels)
    return {"#type": "sparse_vector", "indices": list(indices), "values": list(values)}


def rank_recipes(valid: bool) -> st.SearchStrategy:
    knn = st.tuples(
        st.just("knn"),
        query_recipes(valid),
        st.sampled_from(["#embedding", "sp"]),
        st.integers(1, 300) if valid else st.integers(-2, 300),
        st.none() | numbers,
        st.booleans(),
    )
    leaf = knn | st.tuples(st.just("val"), numbers)

    def rrf(ranks: list) -> st.SearchStrategy:
        weight = st.floats(0.1, 5) if valid else st.floats(-1, 5)
        count = len(ranks) if valid else None
        weights = st.none() | st.lists(weight, min_size=count or 0, max_size=count or 3)
        k = st.integers(1, 100) if valid else st.integers(-1, 100)
        return st.tuples(st.just("rrf"), st.just(ranks), k, weights, st.booleans())

    def extend(inner: st.SearchStrategy) -> st.SearchStrategy:
        operand = inner | st.tuples(st.just("num"), numbers)
        return st.one_of(
            st.tuples(st.sampled_from(["+", "-", "*", "/", "max", "min"]), inner, operand),
            st.tuples(st.sampled_from(["r+", "r-", "r*", "r/"]), numbers, inner),
            st.tuples(st.sampled_from(["neg", "abs()", "abs", "exp", "log", "dict"]), inner),
            st.lists(inner, min_size=1 if valid else 0, max_size=3).flatmap(rrf),
        )

    return st.recursive(leaf, extend, max_leaves=6)


def build_rank(lib: SimpleNamespace, recipe: tuple) -> Any:
    op = recipe[0]
    if op == "knn":
        _, query, key, limit, default, return_rank = recipe
        return lib.Knn(build_query(lib, query), key, limit, default, return_rank)
    if op in ("val", "num"):
        return lib.Val(recipe[1]) if op == "val" else recipe[1]
    if op == "rrf":
        _, ranks, k, weights, normalize = recipe
        return lib.Rrf([build_rank(lib, r) for r in ranks], k, weights, normalize)
    if op.startswith("r") and op[1:] in "+-*/" and len(op) == 2:
        number, rank = recipe[1], build_rank(lib, recipe[2])
        return {"+": number + rank, "-": number - rank, "*": number * rank, "/": number / rank}[
            op[1]
        ]
    rank = build_rank(lib, recipe[1])
    if op == "neg":
        return -rank
    if op == "abs()":
        return abs(rank)
    if op in ("abs", "exp", "log"):
        return getattr(rank, op)()
    if op == "dict":
        return lib.Rank.from_dict(rank.to_dict())
    other = build_rank(lib, recipe[2])
    binary = {
        "+": lambda: rank + other,
        "-": lambda: rank - other,
        "*": lambda: rank * other,
        "/": lambda: rank / other,
        "max": lambda: rank.max(other),
        "min": lambda: rank.min(other),
    }
    return binary[op]()


def search_recipes(valid: bool) -> st.SearchStrategy:
    keys = st.sampled_from(META if valid else NAMES)
    one_or_many = keys | st.lists(keys, min_size=1, max_size=2)
    group = st.tuples(
        one_or_many,
        st.sampled_from(["MinK", "MaxK"]),
        st.sampled_from((*META, "#score"))
        | st.lists(st.sampled_from((*META, "#score")), min_size=1),
        st.integers(1, 5),
        st.booleans(),
    )
    page = st.one_of(
        st.none(),
        st.tuples(st.just("builder"), st.integers(0, 50), st.integers(0, 50)),
        st.tuples(st.just("int"), st.integers(1, 50)),
        st.tuples(st.just("dict"), st.integers(0, 50), st.integers(1, 50)),
    )
    select = st.one_of(
        st.none(),
        st.tuples(st.just("all")),
        st.tuples(st.just("builder"), st.lists(st.sampled_from(NAMES), max_size=4)),
        st.tuples(st.just("list"), st.lists(st.sampled_from(NAMES), max_size=4)),
    )
    return st.tuples(
        st.none() | where_recipes(valid),
        st.none() | rank_recipes(valid),
        st.none() | group,
        page,
        select,
        st.booleans(),
    ).filter(lambda r: not (valid and r[2] is not None and r[1] is None))


def build_search(lib: SimpleNamespace, recipe: tuple) -> Any:
    where, rank, group, page, select, as_dicts = recipe
    search = lib.Search()
    if where is not None:
        filter_ = build_where(lib, where)
        search = search.where(filter_.to_dict() if as_dicts else filter_)
    if rank is not None:
        built = build_rank(lib, rank)
        search = search.rank(built.to_dict() if as_dicts else built)
    if group is not None:
        keys, kind, agg_keys, k, as_dict = group
        grouping = lib.GroupBy(keys, getattr(lib, kind)(agg_keys, k))
        search = search.group_by(grouping.to_dict() if as_dict else grouping)
    if page is not None and page[0] == "builder":
        search = search.limit(page[1], offset=page[2])
    elif page is not None:
        fields = (search._where, search._rank, search._group_by, None, search._select)
        limit = page[1] if page[0] == "int" else {"offset": page[1], "limit": page[2]}
        search = lib.Search(*fields[:3], limit, fields[4])
    if select is not None:
        if select[0] == "all":
            search = search.select_all()
        elif select[0] == "builder":
            search = search.select(*[lib.K(n) if n.startswith("#") else n for n in select[1]])
        else:
            search = lib.Search(
                search._where, search._rank, search._group_by, search._limit, select[1]
            )
    return search


def library(module: Any, sparse_vector: type) -> SimpleNamespace:
    names = {n: getattr(module, n) for n in module.__all__}
    return SimpleNamespace(**names, SparseVector=sparse_vector)


HUEDB = library(huedb_expression, SparseVector)
CHROMA = library(chroma_expression, chromadb.SparseVector)


def outcome(build: Callable[[], Any]) -> tuple:
    """The JSON a built search sends (select keys as a set), or the error it raises."""
    try:
        body = build().to_dict()
    except (TypeError, ValueError) as exc:
        return ("error", type(exc).__name__, str(exc))
    body["select"]["keys"].sort()
    return ("json", json.dumps(body, sort_keys=True))


@settings(max_examples=200, deadline=None)
@given(search_recipes(valid=False))
def test_random_searches_serialise_like_chromadb(recipe: tuple) -> None:
    assert outcome(lambda: build_search(HUEDB, recipe)) == outcome(
        lambda: build_search(CHROMA, recipe)
    )


# --- the parser -----------------------------------------------------------------------


def canonical(payload: dict) -> dict:
    """The payload as the parser describes it: select keys in response order, every sparse
    query tagged with `#type`."""
    payload = json.loads(json.dumps(payload))
    payload["select"]["keys"] = list(Selection.of(payload["select"]["keys"]).keys)

    def tag(node: Any) -> None:
        if isinstance(node, dict):
            query = node.get("$knn", {}).get("query")
            if isinstance(query, dict):
                query.setdefault("#type", "sparse_vector")
            for value in node.values():
                tag(value)
        elif isinstance(node, list):
            for value in node:
                tag(value)

    tag(payload["rank"])
    return payload


@pytest.mark.parametrize("name", sorted(CAPTURED_BODIES))
def test_parser_accepts_and_describes_every_captured_body(name: str) -> None:
    body = CAPTURED_BODIES[name]
    request = parse_search_request(body)
    assert request.read_level == body["read_level"]
    assert [s.to_wire() for s in request.searches] == [canonical(s) for s in body["searches"]]


@pytest.mark.parametrize("body", LIVE_ACCEPTED)
def test_parser_accepts_what_chromas_server_accepted(body: dict) -> None:
    check_schema(parse_search_request(body), None)


# The two messages whose detail comes from another parser (serde's sequence-as-struct
# reading, Rust's regex crate): the same status, error name and message up to the detail.
DETAIL_DIFFERS = {
    "filter_bad_regex": "Failed to deserialize the JSON body into the target type: "
    "searches[0].filter: Regex syntax errror: ",
    "select_as_list": "Failed to deserialize the JSON body into the target type: "
    "searches[0].select",
}


@pytest.mark.parametrize(
    "name, body, status, error, message", LIVE_ERRORS, ids=[r[0] for r in LIVE_ERRORS]
)
def test_parser_refuses_like_chromas_server(
    name: str, body: dict, status: int, error: str, message: str
) -> None:
    """Every refused request of the reference (2.5: shape, payload rules, schema without a
    sparse index) gets Chroma's status, error name and message. (Steps 2 and 4, a collection
    id that is not a UUID and a missing collection, belong to the route.)"""
    with pytest.raises(ChromaError) as refused:
        check_schema(parse_search_request(body), None)
    got_status, got_error, got_message = http_error(refused.value)
    assert (got_status, got_error) == (status, error)
    if name in DETAIL_DIFFERS:
        assert got_message.startswith(DETAIL_DIFFERS[name])
    else:
        assert got_message == message


SCHEMA = {
    "defaults": {
        "string": {
            "fts_index": {"enabled": False, "config": {}},
            "string_inverted_index": {"enabled": True, "config": {}},
        },
        "int": {"int_inverted_index": {"enabled": True, "config": {}}},
    },
    "keys": {
        "#document": {"string": {"fts_index": {"enabled": True, "config": {}}}},
        "sp": {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {}}}},
        "restricted_tag": {"string": {"string_inverted_index": {"enabled": False, "config": {}}}},
    },
}
SPARSE = {"indices": [1], "values": [1.0]}


@pytest.mark.parametrize(
    "payload, schema, refusal",
    [
        ({"rank": {"$knn": {"query": SPARSE, "key": "sp"}}}, SCHEMA, None),
        (
            {"rank": {"$knn": {"query": SPARSE, "key": "other"}}},
            SCHEMA,
            "Cannot filter using metadata key 'other' with type 'SparseVector' because indexing "
            "is disabled",
        ),
        ({"rank": {"$knn": {"query": [1.0], "key": "other"}}}, SCHEMA, None),
        (
            {"filter": {"$or": [{"#id": "x"}, {"restricted_tag": {"$in": ["a"]}}]}},
            SCHEMA,
            "Cannot filter using metadata key 'restricted_tag' with type 'Str' because indexing "
            "is disabled",
        ),
        ({"filter": {"restricted_tag": {"$gt": 1}}}, SCHEMA, None),
        ({"filter": {"#document": {"$contains": "a"}}}, SCHEMA, None),
        (
            {"filter": {"#document": {"$contains": "a"}}},
            {"defaults": SCHEMA["defaults"]},
            "Cannot filter using full-text search because FTS indexing is disabled",
        ),
    ],
)
def test_schema_rules(payload: dict, schema: dict, refusal: str | None) -> None:
    request = parse_search_request({"searches": [payload]})
    if refusal is None:
        check_schema(request, schema)
        return
    with pytest.raises(ChromaError) as refused:
        check_schema(request, schema)
    assert http_error(refused.value) == (400, "InvalidArgumentError", refusal)


@settings(max_examples=100, deadline=None)
@given(search_recipes(valid=True))
def test_parse_describes_what_was_built(recipe: tuple) -> None:
    """`parse(to_dict(x))` describes `x`: its wire form is x's, up to select order and the
    sparse `#type` tag."""
    payload = build_search(HUEDB, recipe).to_dict()
    plan = parse_search_request({"searches": [payload]}).searches[0]
    assert plan.to_wire() == canonical(payload)


@settings(max_examples=100, deadline=None)
@given(search_recipes(valid=False))
def test_parse_refuses_cleanly(recipe: tuple) -> None:
    """Whatever a client builds is parsed or refused with a 400/422, never another error."""
    try:
        payload = build_search(HUEDB, recipe).to_dict()
    except (TypeError, ValueError):
        return
    try:
        parse_search_request({"searches": [payload]})
    except ChromaError as exc:
        assert exc.status in (400, 422)


def routed(build: Callable[[], Any], read_level: Any = None) -> tuple:
    """What `Collection.search` gets for a search: through `direct_request` (None when it
    leaves the search to the body route) and through the body route, each a checked
    request or the error it raises."""

    def attempt(route: Callable[[], Any]) -> Any:
        try:
            return route()
        except (ChromaError, TypeError, ValueError) as exc:
            return (type(exc).__name__, str(exc))

    direct = attempt(lambda: direct_request(build(), read_level))
    body = attempt(
        lambda: parse_search_request(request_body(build(), read_level, None, lambda _: [0.0]))
    )
    return direct, body


@settings(max_examples=300, deadline=None)
@given(search_recipes(valid=False))
def test_direct_request_is_the_parsed_body(recipe: tuple) -> None:
    """Built straight from the objects, a request equals the parse of its body, or the
    direct route declines (None) and the body route decides."""
    direct, body = routed(lambda: build_search(HUEDB, recipe))
    assert direct is None or direct == body


@pytest.mark.parametrize(
    "rank",
    [
        Knn(query=SparseVector([1, 5, 9], [0.5, 1, 2.25]), key="sp", limit=7),
        Knn(query=SparseVector([3], [1.0], ["x"]), key=K("sp"), return_rank=True, default=9),
        Knn(query=[0.25, -1, 3.5], limit=0),
        Knn(query=np.array([1, 2], dtype=np.int32), default=1e3),
        Knn(query=np.array([0.1, 0.2], dtype=np.float32), return_rank=True),
        None,
    ],
)
@pytest.mark.parametrize("read_level", [None, ReadLevel.INDEX_ONLY, "index_and_bounded_wal"])
def test_direct_request_takes_the_usual_shapes(rank: Any, read_level: Any) -> None:
    def build() -> Any:
        return [Search().rank(rank).limit(5, offset=2).select(K.SCORE, "b", "a"), Search()]

    direct, body = routed(build, read_level)
    assert isinstance(direct, SearchRequest) and direct == body


def test_direct_request_refuses_like_the_body_route() -> None:
    """A sparse query changed after its checks (not ascending), or a read level that is
    not one: the same error either way."""
    vector = SparseVector([1, 2], [1.0, 1.0])
    vector.indices[1] = 0
    direct, body = routed(lambda: Search().rank(Knn(query=vector, key="sp")))
    assert direct == body and "strictly ascending" in direct[1]
    direct, body = routed(lambda: Search(), "bogus")
    assert direct == body and direct[0] == "ValueError"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Search().where(K("a") == 1).rank(Knn(query=[1.0])),
        lambda: Search().rank(Knn(query="text")),
        lambda: Search().rank(Knn(query=[1.0]) + 1),
        lambda: Search().rank(Knn(query=[1.0])).group_by(GroupBy("a", MinK(["#score"], 2))),
        lambda: Search().rank(Knn(query={"indices": [1], "values": [1.0]}, key="sp")),
        lambda: [Search(), "not a search"],
    ],
)
def test_direct_request_leaves_the_rest_to_the_body_route(build: Callable[[], Any]) -> None:
    assert direct_request(build(), None) is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        found += _paths(child, (*path, key))
    return found


@settings(max_examples=100, deadline=None)
@given(search_recipes(valid=True), st.data())
def test_damaged_bodies_get_a_4xx(recipe: tuple, data: st.DataObject) -> None:
    """A valid body with any one part replaced by arbitrary JSON is parsed and checked, or
    refused with a 400/422: never another exception."""
    request = {"searches": [build_search(HUEDB, recipe).to_dict()], "read_level": "index_only"}
    path = data.draw(st.sampled_from(_paths(request)))
    replacement = data.draw(json_values)
    if not path:
        request = replacement
    else:
        parent = request
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = replacement
    try:
        check_schema(parse_search_request(request), SCHEMA)
    except ChromaError as exc:
        assert exc.status in (400, 422)
