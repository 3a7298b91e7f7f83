"""The hand-written hostile requests of `test_fuzz_http.py` (`HOSTILE`).

Deeply nested `where`, 10^5 ids, huge strings, odd unicode, path-encoded names, NaN,
negative limits, wrong content types, broken JSON, truncated base64, requests over the
per-request limits (docs/deploy.md, "Limits"), collections addressed through another
tenant's or database's prefix: each with the status class it must get and whether a
success may change the pristine data.

Placeholders in a path, filled in by the test: `{A}`, `{B}` (pristine collections of the
default tenant), `{G}` (pristine collection of another tenant) and `{S}` (scratch) are
collection routes; `{prefix:NAME}` is the `/api/v2/tenants/.../databases/...` prefix NAME
of `PREFIXES`, and `{id:KEY}` the id of collection KEY (alpha, beta, gamma, scratch), so
any collection can be addressed through any prefix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DIM = 8
PRISTINE_TENANT = "pristine_tenant"
PRISTINE_DB = "pristine_db"
SCRATCH_TENANT = "scratch_tenant"
SCRATCH_DB = "scratch_db"
SCRATCH_VICTIM_DB = "scratch_victim_db"
SCRATCH_COLLECTION = "scratch_main"
SCRATCH_VICTIM = "scratch_victim"
SCRATCH_ALIAS = "scratch_alias"
DEFAULT_PREFIX = "/api/v2/tenants/default_tenant/databases/default_database"
PRISTINE_PREFIX = f"/api/v2/tenants/{PRISTINE_TENANT}/databases/{PRISTINE_DB}"
SCRATCH_PREFIX = f"/api/v2/tenants/{SCRATCH_TENANT}/databases/{SCRATCH_DB}"
PREFIXES = {
    "default": DEFAULT_PREFIX,
    "pristine": PRISTINE_PREFIX,
    "scratch": SCRATCH_PREFIX,
    "no_tenant": "/api/v2/tenants/no_such_tenant/databases/default_database",
    "no_database": f"/api/v2/tenants/{PRISTINE_TENANT}/databases/no_such_database",
}
# Shorthands: a collection route through the prefix that holds the collection.
SHORTHANDS = {
    "{A}": "{prefix:default}/collections/{id:alpha}",
    "{B}": "{prefix:default}/collections/{id:beta}",
    "{G}": "{prefix:pristine}/collections/{id:gamma}",
    "{S}": "{prefix:scratch}/collections/{id:scratch}",
}


def vector(i: int, salt: int = 0) -> list[float]:
    """A deterministic embedding."""
    return [float(((i + 1) * (k + 3) + salt) % 17) / 17.0 + 0.01 for k in range(DIM)]


Body = bytes | Callable[[], bytes] | None


@dataclass(frozen=True)
class Hostile:
    """One hand-written request; placeholders in the path as in the module docstring."""

    name: str
    method: str
    path: str
    body: Body = None
    # "4xx", "2xx", "403/404" or "any" (2xx or 4xx are both legitimate). A trailing "/" (or
    # %2F) is a 404: huedb turns off Starlette's slash redirect, which would let a client
    # that follows redirects delete `name` when it asked for `name/`.
    expect: str = "4xx"
    content_type: str | None = "application/json"
    # When it legitimately succeeds it may change the pristine data (e.g. update of one
    # existing and one missing id); a 4xx must still leave the data unchanged.
    may_change: bool = False


def j(value: Any) -> bytes:
    """JSON bytes; NaN/Infinity literals allowed, non-ASCII kept as \\u escapes."""
    return json.dumps(value, allow_nan=True).encode()


def nested(depth: int, inner: str, op: str = "$and", sibling: str = '{"nokey": "y"}') -> str:
    """`{op: [{op: [... inner ..., sibling]}, sibling]}` nested `depth` deep, as JSON text."""
    return f'{{"{op}": [' * depth + inner + f", {sibling}]}}" * depth


def where_body(where_json: str, extra: str = '"include": []') -> bytes:
    """A get/delete/query body around a `where` given as JSON text."""
    return f'{{"where": {where_json}, {extra}}}'.encode()


def where_doc_body(where_json: str) -> bytes:
    """A get body around a `where_document` given as JSON text."""
    return f'{{"where_document": {where_json}, "include": []}}'.encode()


def add_body(ids: list[str], **fields: Any) -> dict[str, Any]:
    """An add/upsert body with one valid embedding per id, plus `fields`."""
    body: dict[str, Any] = {"ids": ids, "embeddings": [vector(i) for i in range(len(ids))]}
    body.update(fields)
    return body


def big(n: int) -> str:
    """A string of `n` characters."""
    return "x" * n


def vectors(n: int) -> list[list[float]]:
    """`n` deterministic query embeddings."""
    return [vector(i) for i in range(n)]


def or_of(n: int) -> dict[str, Any]:
    """A `where` `$or` of `n` conditions that match nothing."""
    return {"$or": [{"s": f"none-{k}"} for k in range(n)]}


def wrong_prefix_cases(prefix: str, key: str, record: str) -> list[Hostile]:
    """Every collection route of collection `key` through a prefix that does not hold it:
    each must be 403/404 and change nothing (`record` is an id of the collection)."""
    col = f"{{prefix:{prefix}}}/collections/{{id:{key}}}"
    name = f"wrong_prefix_{prefix}_{key}"
    return [
        Hostile(f"{name}_get", "POST", f"{col}/get", j({"include": ["documents"]}), "403/404"),
        Hostile(
            f"{name}_query", "POST", f"{col}/query", j({"query_embeddings": [vector(1)]}), "403/404"
        ),
        Hostile(f"{name}_count", "GET", f"{col}/count", None, "403/404"),
        Hostile(f"{name}_indexing_status", "GET", f"{col}/indexing_status", None, "403/404"),
        Hostile(
            f"{name}_by_id",
            "GET",
            f"{{prefix:{prefix}}}/collections/by-id/{{id:{key}}}",
            None,
            "403/404",
        ),
        Hostile(f"{name}_add", "POST", f"{col}/add", j(add_body(["wrong-prefix-new"])), "403/404"),
        Hostile(f"{name}_upsert", "POST", f"{col}/upsert", j(add_body([record])), "403/404"),
        Hostile(
            f"{name}_update",
            "POST",
            f"{col}/update",
            j({"ids": [record], "documents": ["changed"]}),
            "403/404",
        ),
        Hostile(f"{name}_delete_ids", "POST", f"{col}/delete", j({"ids": [record]}), "403/404"),
        Hostile(
            f"{name}_delete_where",
            "POST",
            f"{col}/delete",
            j({"where": {"i": {"$gte": 0}}}),
            "403/404",
        ),
        Hostile(
            f"{name}_modify",
            "PUT",
            col,
            j({"new_name": "renamed_through_wrong_prefix", "new_metadata": {"k": 1}}),
            "403/404",
        ),
    ]


MB = 1024 * 1024
NO_MATCH = '{"nokey": "x"}'
NO_MATCH_DOC = '{"$contains": "zzz-no-such-text"}'
ODD = {
    "rtl": "\u202eevil\u202c",
    "zero_width": "a\u200b\u200c\u200d\ufeffb",
    "emoji": "\U0001f600\U0001f9d1\u200d\U0001f680",
    "nul": "a\x00b",
    "lone_surrogate": "\ud800x",
    "combining": "e\u0301\u0301\u0301",
    "nonchar": "\uffff\U0010ffff",
}

HOSTILE: list[Hostile] = [
    # deeply nested filters (pristine; they match nothing, so delete may legitimately succeed)
    *[
        Hostile(
            f"where_depth_{d}_{route}",
            "POST",
            f"{{A}}/{route}",
            where_body(nested(d, NO_MATCH)),
            "any",
        )
        for d in (1000, 10_000)
        for route in ("get", "delete")
    ],
    *[
        Hostile(
            f"where_depth_{d}_query",
            "POST",
            "{A}/query",
            where_body(nested(d, NO_MATCH), f'"query_embeddings": [{vector(1)}]'),
            "any",
        )
        for d in (1000, 10_000)
    ],
    *[
        Hostile(
            f"where_document_depth_{d}",
            "POST",
            "{A}/get",
            where_doc_body(nested(d, NO_MATCH_DOC, sibling=NO_MATCH_DOC)),
            "any",
        )
        for d in (1000, 10_000)
    ],
    Hostile(
        "where_raw_list_depth_100000",
        "POST",
        "{A}/get",
        b'{"where": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    Hostile(
        "where_raw_dict_depth_100000",
        "POST",
        "{A}/get",
        b'{"where": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        "any",
    ),
    # over max_filter_terms (200): refused before the engine
    Hostile(
        "where_and_10000_clauses",
        "POST",
        "{A}/get",
        lambda: j({"where": {"$and": [{"i": {"$ne": -k}} for k in range(10_000)]}, "include": []}),
    ),
    Hostile(
        "where_or_10000_clauses_delete",
        "POST",
        "{A}/delete",
        lambda: j({"where": {"$or": [{"s": f"none-{k}"} for k in range(10_000)]}}),
    ),
    Hostile(
        "where_and_10000_clauses_query",
        "POST",
        "{A}/query",
        lambda: j(
            {
                "query_embeddings": [vector(4)],
                "where": {"$and": [{"i": {"$ne": -k}} for k in range(10_000)]},
            }
        ),
    ),
    Hostile(
        "where_document_or_10000_clauses",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$or": [{"$contains": f"w{k}"} for k in range(10_000)]}}),
    ),
    Hostile(
        "where_in_100000_values",
        "POST",
        "{A}/get",
        lambda: j({"where": {"s": {"$in": [f"v{k}" for k in range(100_000)]}}, "include": []}),
    ),
    # the adversarial probe of issue 13 item 2, and each limit just over (pristine data)
    Hostile(
        "query_2000_vectors_x_20000_results",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": vectors(2000), "n_results": 20_000}),
    ),
    Hostile(
        "query_2000_vectors_x_20000_results_other_tenant",
        "POST",
        "{G}/query",
        lambda: j({"query_embeddings": vectors(2000), "n_results": 20_000}),
    ),
    Hostile(
        "query_1001_vectors", "POST", "{A}/query", lambda: j({"query_embeddings": vectors(1001)})
    ),
    Hostile(
        "query_1000_vectors_x_11_of_30_results",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": vectors(1000), "n_results": 11}),
    ),
    Hostile(
        "query_1000_vectors_x_huge_n_results_of_9_other_tenant",
        "POST",
        "{G}/query",
        lambda: j({"query_embeddings": vectors(1000), "n_results": 10**9, "include": []}),
        "2xx",
    ),
    Hostile("where_or_19999_get", "POST", "{A}/get", lambda: j({"where": or_of(19_999)})),
    Hostile("where_or_19999_delete", "POST", "{A}/delete", lambda: j({"where": or_of(19_999)})),
    Hostile(
        "where_or_19999_query_other_tenant",
        "POST",
        "{G}/query",
        lambda: j({"query_embeddings": [vector(1)], "where": or_of(19_999)}),
    ),
    Hostile("where_or_200_get", "POST", "{A}/get", lambda: j({"where": or_of(200)})),
    Hostile("where_or_199_get", "POST", "{A}/get", lambda: j({"where": or_of(199)}), "2xx"),
    Hostile(
        "where_in_1m_values",
        "POST",
        "{A}/get",
        lambda: j({"where": {"s": {"$in": [f"v{k}" for k in range(1_000_000)]}}}),
    ),
    Hostile(
        "where_nin_10001_values_delete_other_tenant",
        "POST",
        "{G}/delete",
        lambda: j({"where": {"i": {"$nin": list(range(10_001))}}}),
    ),
    Hostile(
        "where_two_in_lists_over_total",
        "POST",
        "{A}/delete",
        lambda: j(
            {
                "where": {
                    "$and": [
                        {"i": {"$in": list(range(5001))}},
                        {"s": {"$nin": [f"v{k}" for k in range(5000)]}},
                    ]
                }
            }
        ),
    ),
    Hostile(
        "where_document_regex_2mb_literal",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$regex": big(2 * MB)}}),
    ),
    Hostile(
        "where_document_regex_4097_bytes",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$regex": big(4097)}}),
    ),
    Hostile(
        "where_document_not_contains_4097_bytes_delete",
        "POST",
        "{A}/delete",
        lambda: j({"where_document": {"$not_contains": big(4097)}}),
    ),
    Hostile(
        "where_document_contains_4096_bytes",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$contains": big(4096)}}),
        "2xx",
    ),
    Hostile(
        "where_document_5_regexes",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$and": [{"$regex": f"r{k}"} for k in range(5)]}}),
    ),
    Hostile(
        "where_document_5_regexes_in_where",
        "POST",
        "{G}/delete",
        lambda: j({"where": {"$or": [{"#document": {"$not_regex": f"r{k}"}} for k in range(5)]}}),
    ),
    Hostile(
        "get_250001_ids",
        "POST",
        "{A}/get",
        lambda: j({"ids": [f"missing-{k}" for k in range(250_001)], "include": []}),
    ),
    Hostile(
        "delete_250001_ids",
        "POST",
        "{A}/delete",
        lambda: j({"ids": ["pristine_alpha-000", *(f"missing-{k}" for k in range(250_000))]}),
    ),
    Hostile("where_unknown_operator", "POST", "{A}/delete", j({"where": {"i": {"$regex": ".*"}}})),
    Hostile("where_empty_and", "POST", "{A}/delete", j({"where": {"$and": []}})),
    Hostile("where_is_list", "POST", "{A}/delete", j({"where": [{"i": 1}]})),
    Hostile("where_document_bad_op", "POST", "{A}/delete", j({"where_document": {"$nope": "x"}})),
    # 10^5 ids
    Hostile(
        "get_100000_ids",
        "POST",
        "{A}/get",
        lambda: j({"ids": [f"missing-{k}" for k in range(100_000)], "include": []}),
        "2xx",
    ),
    Hostile(
        "delete_100000_missing_ids",
        "POST",
        "{A}/delete",
        lambda: j({"ids": [f"missing-{k}" for k in range(100_000)]}),
        "any",
    ),
    Hostile(
        "add_100000_ids_over_batch_limit",
        "POST",
        "{A}/add",
        lambda: j(add_body([f"new-{k}" for k in range(100_000)])),
    ),
    Hostile(
        "upsert_100000_ids_over_batch_limit",
        "POST",
        "{A}/upsert",
        lambda: j(
            {"ids": [f"new-{k}" for k in range(100_000)], "embeddings": [[0.5] * DIM] * 100_000}
        ),
    ),
    Hostile(
        "query_100000_ids_filter",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": [vector(2)], "ids": [f"m{k}" for k in range(100_000)]}),
        "any",
    ),
    # huge strings: valid ones go to scratch, invalid ones to pristine
    Hostile(
        "document_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-doc"], documents=[big(MB)])),
        "2xx",
    ),
    Hostile(
        "document_30mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["huge-doc"], documents=[big(30 * MB)])),
        "any",
    ),
    Hostile("id_1mb_scratch", "POST", "{S}/upsert", lambda: j(add_body([big(MB)])), "any"),
    Hostile("id_30mb_scratch", "POST", "{S}/upsert", lambda: j(add_body([big(30 * MB)])), "any"),
    Hostile(
        "metadata_value_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-md"], metadatas=[{"k": big(MB)}])),
        "any",
    ),
    Hostile(
        "metadata_key_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-key"], metadatas=[{big(MB): 1}])),
        "any",
    ),
    Hostile(
        "metadata_value_30mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["huge-md"], metadatas=[{"k": big(30 * MB)}])),
        "any",
    ),
    Hostile(
        "where_value_30mb",
        "POST",
        "{A}/get",
        lambda: j({"where": {"s": big(30 * MB)}, "include": []}),
        "2xx",
    ),
    Hostile(
        "where_document_1mb",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$contains": big(MB)}}),
    ),
    Hostile(
        "body_over_limit_50mb",
        "POST",
        "{A}/add",
        lambda: j(add_body(["x"], documents=[big(50 * MB)])),
        "4xx",
    ),
    Hostile(
        "collection_name_1mb", "POST", f"{SCRATCH_PREFIX}/collections", lambda: j({"name": big(MB)})
    ),
    Hostile("tenant_name_1mb", "POST", "/api/v2/tenants", lambda: j({"name": big(MB)}), "any"),
    Hostile(
        "collection_metadata_30mb_on_pristine_rename",
        "PUT",
        "{A}",
        lambda: j({"new_name": "bad/name", "new_metadata": {"k": big(30 * MB)}}),
    ),
    # odd unicode: names, ids, metadata keys (scratch) and filter keys (pristine)
    *[
        Hostile(
            f"collection_name_{k}",
            "POST",
            f"{SCRATCH_PREFIX}/collections",
            j({"name": f"c{v}c"}),
            "any",
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(f"id_{k}_scratch", "POST", "{S}/upsert", j(add_body([f"id{v}"])), "any")
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"metadata_key_{k}_scratch",
            "POST",
            "{S}/upsert",
            j(add_body([f"mk-{k}"], metadatas=[{f"k{v}": f"v{v}"}])),
            "any",
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"where_key_{k}", "POST", "{A}/get", j({"where": {f"k{v}": v}, "include": []}), "any"
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"document_{k}_scratch",
            "POST",
            "{S}/upsert",
            j(add_body([f"doc-{k}"], documents=[v])),
            "any",
        )
        for k, v in ODD.items()
    ],
    Hostile(
        "raw_invalid_utf8_in_id",
        "POST",
        "{A}/add",
        b'{"ids": ["a\xed\xa0\x80b"], "embeddings": [[1,2,3,4,5,6,7,8]]}',
    ),
    Hostile(
        "raw_latin1_bytes",
        "POST",
        "{A}/add",
        b'{"ids": ["\xff\xfe"], "embeddings": [[1,2,3,4,5,6,7,8]]}',
    ),
    Hostile("utf16_body", "POST", "{A}/get", '{"include": []}'.encode("utf-16"), "any"),
    Hostile("utf8_bom_body", "POST", "{A}/get", b"\xef\xbb\xbf" + j({"include": []}), "any"),
    Hostile(
        "lone_surrogate_id_pristine_mixed",
        "POST",
        "{A}/add",
        j(add_body(["ok-new-1", "bad\udfff"])),
        "any",
    ),
    # path-encoded names in collection, database and tenant routes
    *[
        Hostile(f"get_collection_name_{label}", "GET", f"{DEFAULT_PREFIX}/collections/{enc}")
        for label, enc in (
            ("slash", "pristine_alpha%2Fx"),
            ("nul", "pristine_alpha%00"),
            ("dotdot", ".."),
            ("dotdot_enc", "%2E%2E"),
            ("traversal", "..%2F..%2F..%2Fetc%2Fpasswd"),
            ("rtl", "%E2%80%AEpristine_alpha"),
            ("emoji", "%F0%9F%98%80"),
            ("surrogate_enc", "%ED%A0%80"),
            ("invalid_utf8", "%FF%FE"),
            ("percent", "%25"),
            ("long", "a" * 8000),
        )
    ],
    *[
        Hostile(f"delete_collection_name_{label}", "DELETE", f"{DEFAULT_PREFIX}/collections/{enc}")
        for label, enc in (
            ("nul", "pristine_alpha%00"),
            ("dotdot", "%2E%2E"),
            ("star", "%2A"),
            ("pct", "pristine%5Falpha%20"),
            ("invalid_utf8", "pristine_alpha%FF"),
        )
    ],
    Hostile(
        "delete_database_nul",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default_database%00",
    ),
    Hostile(
        "delete_collection_name_trailing_slash",
        "DELETE",
        f"{DEFAULT_PREFIX}/collections/pristine_alpha%2F",
    ),
    Hostile(
        "delete_database_trailing_slash",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default_database%2F",
    ),
    Hostile(
        "delete_database_inner_slash",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default%2Fdatabase",
    ),
    Hostile(
        "delete_database_dotdot_tenant", "DELETE", f"/api/v2/tenants/%2E%2E/databases/{PRISTINE_DB}"
    ),
    Hostile("get_tenant_invalid_utf8", "GET", "/api/v2/tenants/%C0%AF", expect="4xx"),
    Hostile(
        "list_collections_tenant_nul",
        "GET",
        "/api/v2/tenants/default_tenant%00/databases/default_database/collections",
    ),
    Hostile(
        "collection_id_not_uuid", "POST", f"{DEFAULT_PREFIX}/collections/not-a-uuid/get", j({})
    ),
    Hostile(
        "collection_id_unknown_uuid",
        "POST",
        f"{DEFAULT_PREFIX}/collections/00000000-0000-0000-0000-000000000000/delete",
        j({"ids": ["a"]}),
    ),
    Hostile(
        "collection_id_uuid_braces",
        "POST",
        f"{DEFAULT_PREFIX}/collections/%7B00000000-0000-0000-0000-000000000000%7D/get",
        j({}),
        "any",
    ),
    Hostile("alias_delete_encoded", "DELETE", f"{DEFAULT_PREFIX}/aliases/pristine_alias%00"),
    Hostile(
        "alias_retarget_to_missing",
        "PUT",
        f"{DEFAULT_PREFIX}/aliases/pristine_alias",
        j({"collection": "no_such_collection"}),
    ),
    # NaN / Infinity
    Hostile(
        "nan_embedding_query",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "inf_embedding_query",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[Infinity, -Infinity, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "nan_embedding_scratch",
        "POST",
        "{S}/upsert",
        b'{"ids": ["nan"], "embeddings": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "nan_metadata_scratch",
        "POST",
        "{S}/upsert",
        j(add_body(["nan-md"], metadatas=[{"x": float("nan"), "y": float("inf")}])),
        "any",
    ),
    Hostile(
        "nan_where", "POST", "{A}/get", b'{"where": {"f": {"$gt": NaN}}, "include": []}', "any"
    ),
    Hostile("nan_limit", "POST", "{A}/get", b'{"limit": NaN}'),
    Hostile("inf_offset", "POST", "{A}/get", b'{"offset": Infinity}'),
    Hostile(
        "nan_n_results",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[1,1,1,1,1,1,1,1]], "n_results": NaN}',
    ),
    Hostile(
        "huge_exponent_float",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[1e999,1,1,1,1,1,1,1]]}',
        "any",
    ),
    Hostile(
        "float32_overflow_scratch",
        "POST",
        "{S}/upsert",
        j({"ids": ["of"], "embeddings": [[1e39] * DIM]}),
        "any",
    ),
    Hostile(
        "nan_embedding_add_pristine_mixed",
        "POST",
        "{A}/add",
        b'{"ids": ["n1", "n2"], "embeddings": [[1,1,1,1,1,1,1,1], [NaN,1,1]]}',
    ),
    # negative / huge limits, offsets, n_results
    *[
        Hostile(f"get_limit_{v}", "POST", "{A}/get", j({"limit": v, "include": []}), e)
        for v, e in (
            (-1, "4xx"),
            (0, "2xx"),
            (10**9, "2xx"),
            (2**63, "any"),
            (10**30, "any"),
            ("10", "any"),
            (1.5, "4xx"),
        )
    ],
    *[
        Hostile(f"get_offset_{v}", "POST", "{A}/get", j({"offset": v, "include": []}), e)
        for v, e in ((-1, "4xx"), (10**9, "2xx"), (2**63, "any"), (10**30, "any"))
    ],
    *[
        Hostile(f"delete_limit_{v}", "POST", "{A}/delete", j({"ids": ["missing"], "limit": v}), e)
        for v, e in ((-1, "4xx"), (2**64, "any"))
    ],
    *[
        Hostile(
            f"n_results_{v}",
            "POST",
            "{A}/query",
            j({"query_embeddings": [vector(3)], "n_results": v}),
            e,
        )
        for v, e in (
            (0, "2xx"),  # empty lists, as Chroma's server answers
            (-1, "4xx"),
            (10**9, "any"),
            (2**63, "any"),
            (10**30, "any"),
            (True, "any"),
        )
    ],
    *[
        Hostile(f"list_collections_{q}", "GET", f"{DEFAULT_PREFIX}/collections?{q}", None, e)
        for q, e in (
            ("limit=-1", "4xx"),
            ("offset=-5", "4xx"),
            ("limit=99999999999999999999999", "any"),
            ("offset=99999999999999999999999", "any"),
            ("limit=abc", "4xx"),
            ("limit=1e3", "4xx"),
            ("limit=%00", "4xx"),
            ("limit=NaN", "4xx"),
        )
    ],
    Hostile(
        "list_databases_negative",
        "GET",
        f"/api/v2/tenants/{PRISTINE_TENANT}/databases?limit=-1&offset=-1",
    ),
    Hostile("query_empty_embeddings", "POST", "{A}/query", j({"query_embeddings": []})),
    Hostile("query_wrong_dimension", "POST", "{A}/query", j({"query_embeddings": [[1.0] * 3]})),
    Hostile(
        "query_million_dimension",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": [[0.5] * 1_000_000]}),
    ),
    Hostile(
        "query_10000_vectors",
        "POST",
        "{A}/query",
        lambda: j(
            {"query_embeddings": [vector(k) for k in range(10_000)], "n_results": 1, "include": []}
        ),
    ),
    # wrong content types, empty and invalid bodies
    Hostile("content_type_text_plain", "POST", "{A}/get", j({"include": []}), "any", "text/plain"),
    Hostile(
        "content_type_form",
        "POST",
        "{A}/delete",
        b"ids=pristine_alpha-000",
        "4xx",
        "application/x-www-form-urlencoded",
    ),
    Hostile(
        "content_type_multipart",
        "POST",
        "{A}/delete",
        b'--b\r\nContent-Disposition: form-data; name="ids"\r\n\r\nx\r\n--b--\r\n',
        "4xx",
        "multipart/form-data; boundary=b",
    ),
    Hostile("content_type_missing_valid_json", "POST", "{A}/get", j({"include": []}), "any", None),
    Hostile(
        "content_type_xml", "POST", "{A}/add", b"<ids><id>x</id></ids>", "4xx", "application/xml"
    ),
    Hostile(
        "content_type_json_garbage_charset",
        "POST",
        "{A}/get",
        j({"include": []}),
        "any",
        "application/json; charset=klingon",
    ),
    Hostile("empty_body_add", "POST", "{A}/add", b""),
    Hostile("empty_body_delete", "POST", "{A}/delete", b""),
    Hostile("empty_body_update_collection", "PUT", "{A}", b"", "any"),
    Hostile("empty_body_create_tenant", "POST", "/api/v2/tenants", b""),
    Hostile("invalid_json_truncated", "POST", "{A}/delete", b'{"ids": ["pristine_alpha-000"'),
    Hostile("invalid_json_trailing", "POST", "{A}/delete", b'{"ids": ["pristine_alpha-000"]} x'),
    Hostile("invalid_json_single_quotes", "POST", "{A}/delete", b"{'ids': ['pristine_alpha-000']}"),
    Hostile("json_null_body", "POST", "{A}/delete", b"null"),
    Hostile("json_array_body", "POST", "{A}/delete", b'["pristine_alpha-000"]'),
    Hostile("json_string_body", "POST", "{A}/update", b'"ids"'),
    Hostile("duplicate_keys", "POST", "{A}/delete", b'{"ids": ["missing"], "ids": 5}', "any"),
    Hostile("nul_bytes_body", "POST", "{A}/delete", b"\x00" * 1000),
    Hostile("delete_nothing_given", "POST", "{A}/delete", j({}), "2xx"),  # as Chroma: none
    Hostile("unknown_method", "PATCH", "{A}", j({"new_name": "x"})),
    Hostile("update_collection_bad_name", "PUT", "{A}", j({"new_name": ""})),
    Hostile(
        "update_collection_bad_metadata", "PUT", "{A}", j({"new_metadata": {"nested": {"a": 1}}})
    ),
    Hostile("update_collection_rename_to_existing", "PUT", "{A}", j({"new_name": "pristine_beta"})),
    Hostile(
        "create_collection_existing",
        "POST",
        f"{DEFAULT_PREFIX}/collections",
        j({"name": "pristine_alpha", "metadata": {"kind": "changed"}}),
    ),
    Hostile(
        "create_database_existing",
        "POST",
        f"/api/v2/tenants/{PRISTINE_TENANT}/databases",
        j({"name": PRISTINE_DB}),
    ),
    # truncated / malformed base64 embeddings and partial batches on pristine data
    Hostile(
        "base64_truncated", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["AAAAAAAAgD8AAA"]})
    ),
    Hostile(
        "base64_not_multiple_of_4", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["AAAA"]})
    ),
    Hostile(
        "base64_garbage", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["!!!not base64!!!"]})
    ),
    Hostile(
        "base64_wrong_dimension",
        "POST",
        "{A}/upsert",
        j({"ids": ["pristine_alpha-001"], "embeddings": ["AACAPwAAgD8="]}),
    ),
    Hostile(
        "base64_mixed_with_floats",
        "POST",
        "{A}/add",
        j({"ids": ["b1", "b2"], "embeddings": ["AACAPwAAgD8=", [1.0, 1.0]]}),
    ),
    Hostile(
        "add_partial_batch_bad_metadata",
        "POST",
        "{A}/add",
        j(add_body(["fresh-1", "fresh-2"], metadatas=[{"ok": 1}, {"bad": {"nested": 1}}])),
    ),
    Hostile("add_duplicate_ids", "POST", "{A}/add", j(add_body(["dup", "dup"]))),
    Hostile(
        "add_existing_and_new",
        "POST",
        "{A}/add",
        j(add_body(["pristine_alpha-000", "brand-new"])),
        "any",
        may_change=True,
    ),
    Hostile("add_empty_id", "POST", "{A}/add", j(add_body(["fresh-3", ""])), "any"),
    Hostile(
        "add_length_mismatch",
        "POST",
        "{A}/add",
        j({"ids": ["a", "b"], "embeddings": [vector(1)], "documents": ["x", "y", "z"]}),
    ),
    Hostile(
        "upsert_partial_batch_wrong_dimension",
        "POST",
        "{A}/upsert",
        j({"ids": ["pristine_alpha-002", "fresh-4"], "embeddings": [vector(9), [1.0, 2.0]]}),
    ),
    Hostile(
        "update_partial_batch_bad_metadata",
        "POST",
        "{A}/update",
        j(
            {
                "ids": ["pristine_alpha-003", "pristine_alpha-004"],
                "metadatas": [{"s": "changed"}, {"bad": [1, {"x": 2}]}],
            }
        ),
    ),
    Hostile(
        "update_missing_id_with_existing",
        "POST",
        "{A}/update",
        j({"ids": ["pristine_alpha-005", "missing-id"], "documents": ["changed", "changed"]}),
        "any",
        may_change=True,
    ),
    Hostile(
        "update_embeddings_half_null",
        "POST",
        "{A}/update",
        j({"ids": ["pristine_alpha-006", "pristine_alpha-007"], "embeddings": [vector(1), None]}),
    ),
    Hostile(
        "delete_ids_with_bad_where",
        "POST",
        "{A}/delete",
        j({"ids": ["pristine_alpha-008"], "where": {"$bogus": 1}}),
    ),
    Hostile("get_include_distances", "POST", "{A}/get", j({"include": ["distances"]})),
    Hostile("get_include_unknown", "POST", "{A}/get", j({"include": ["passwords"]})),
    # a collection addressed through a tenant / database prefix that does not hold it
    *wrong_prefix_cases("pristine", "alpha", "pristine_alpha-000"),
    *wrong_prefix_cases("no_tenant", "alpha", "pristine_alpha-001"),
    *wrong_prefix_cases("no_database", "beta", "pristine_beta-001"),
    *wrong_prefix_cases("default", "gamma", "pristine_gamma-000"),
    *wrong_prefix_cases("scratch", "gamma", "pristine_gamma-001"),
    # the same routes through the right non-default prefix are served
    Hostile("right_prefix_other_tenant_get", "POST", "{G}/get", j({"include": []}), "2xx"),
    Hostile("right_prefix_other_tenant_count", "GET", "{G}/count", None, "2xx"),
    Hostile(
        "right_prefix_other_tenant_by_id",
        "GET",
        "{prefix:pristine}/collections/by-id/{id:gamma}",
        None,
        "2xx",
    ),
]
