"""`HttpServerAPI`: the `ServerAPI` over Chroma's v2 HTTP API, with one pooled connection."""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import ssl
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from huedb.api.base import ServerAPI
from huedb.api.http_headers import merged_headers
from huedb.api.requests import (
    CreateCollectionRequest,
    DeleteRequest,
    GetRequest,
    ModifyCollectionRequest,
    QueryRequest,
)
from huedb.api.types import CollectionModel, GetResult, QueryResult, UserIdentity
from huedb.api.validation import read_metadatas
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.errors import ChromaError, error_types
from huedb.record_batch import RecordBatch
from huedb.sparse_vector import SparseVector


def tls_verification(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's `verify` for Chroma's `chroma_server_ssl_verify`: False; True as httpx's
    default context, made once per process (`default_tls_context`); or a CA bundle file or
    certificate directory, which becomes an SSL context trusting it (httpx deprecates
    paths; read again for every client, as the files may be replaced)."""
    if verify is True:
        return default_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


@functools.cache
def default_tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default SSL context (certifi's CA bundle, or the SSL_CERT_FILE / SSL_CERT_DIR
    given, which are the cache's key), made once per process and shared by every client, as
    httpx recommends: httpx made one for every client, loading the bundle each time (~20 ms
    of CPU)."""
    return httpx.create_ssl_context()


class HttpServerAPI(ServerAPI):
    """Speaks to `<base_url>/api/v2`; errors come back as huedb.errors classes."""

    # chromadb's HTTP client builds its results in these orders (`FastAPI._get/_query`).
    get_result_keys = ("ids", "embeddings", "metadatas", "documents", "data", "uris", "included")
    query_result_keys = (
        "ids", "distances", "embeddings", "metadatas", "documents", "uris", "data", "included",
    )  # fmt: skip

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        verify: bool | str = True,
        timeout: float | None = None,
        keepalive_s: float = 40.0,
        max_connections: int | None = None,
        max_keepalive_connections: int | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + "/api/v2"
        # As chromadb's `FastAPI`: no timeout (timeout=None), so a long request (a big
        # write, a slow query) waits for its answer.
        self._session_args: dict[str, Any] = {
            # As chromadb's: the user's headers, then its Content-Type whatever they say.
            "headers": merged_headers(headers, {"Content-Type": "application/json"}),
            "verify": tls_verification(verify),
            "timeout": timeout,
            "limits": httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=keepalive_s,
            ),
        }
        self._http = httpx.Client(**self._session_args)
        self._session_lock = threading.Lock()
        self._max_batch_size: int | None = None
        self._base64 = False
        self._owners: dict[str, tuple[str, str]] = {}

    # -- plumbing ----------------------------------------------------------------------

    def _session(self) -> httpx.Client:
        """The pooled connection; a new one after `close()` (chromadb's HTTP client, and
        its collections, keep working after the client is closed)."""
        http = self._http
        if http.is_closed:
            with self._session_lock:
                if self._http.is_closed:
                    self._http = httpx.Client(**self._session_args)
                http = self._http
        return http

    def _request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """The answer's JSON. As chromadb's `FastAPI`: transport errors (httpx's) pass
        through (its client turns a refused connection into a ValueError only while it is
        built), a non-2xx answer raises (`_error_from`), and a 2xx body that is not JSON
        (empty included) raises orjson's JSONDecodeError (a ValueError)."""
        content = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        resp = self._session().request(method, self._base + path, content=content, params=params)
        if not resp.is_success:
            raise _error_from(resp)
        return orjson.loads(resp.content)

    def _ensure_preflight(self) -> None:
        if self._max_batch_size is None:
            checks = self._request("GET", "/pre-flight-checks")
            self._max_batch_size = int(checks.get("max_batch_size", -1))
            self._base64 = bool(checks.get("supports_base64_encoding", False))

    def _collection_path(self, tenant: str, database: str) -> str:
        return f"/tenants/{quote(tenant, safe='')}/databases/{quote(database, safe='')}"

    def _data_path(self, collection_id: str) -> str:
        tenant, database = self._owners.get(collection_id, (DEFAULT_TENANT, DEFAULT_DATABASE))
        return f"{self._collection_path(tenant, database)}/collections/{collection_id}"

    def _model(self, data: dict[str, Any]) -> CollectionModel:
        model = CollectionModel(
            id=uuid.UUID(data["id"]),
            name=data["name"],
            tenant=data["tenant"],
            database=data["database"],
            metadata=data.get("metadata"),
            configuration_json=data.get("configuration_json") or {},
            dimension=data.get("dimension"),
            schema=data.get("schema"),
        )
        self._owners[str(model.id)] = (model.tenant, model.database)
        return model

    def _encode(self, embeddings: np.ndarray | None) -> Any:
        if embeddings is None:
            return None
        self._ensure_preflight()
        if self._base64:
            le = np.ascontiguousarray(embeddings, dtype="<f4")
            return [base64.b64encode(row.tobytes()).decode() for row in le]
        return embeddings.astype(np.float32).tolist()

    def _check_batch(self, ids: Sequence[str]) -> None:
        self._ensure_preflight()
        limit = self._max_batch_size or -1
        if len(ids) > limit:
            raise ValueError(f"Batch size {len(ids)} exceeds maximum batch size {limit}")

    # -- system ------------------------------------------------------------------------

    def heartbeat(self) -> int:
        return int(self._request("GET", "/heartbeat")["nanosecond heartbeat"])

    def get_version(self) -> str:
        return str(self._request("GET", "/version"))

    def get_user_identity(self) -> UserIdentity:
        found = self._request("GET", "/auth/identity")
        return UserIdentity(
            user_id=found.get("user_id", ""),
            tenant=found.get("tenant"),
            databases=found.get("databases"),
            attributes=found.get("attributes"),
        )

    def reset(self) -> bool:
        return bool(self._request("POST", "/reset"))

    def get_max_batch_size(self) -> int:
        self._ensure_preflight()
        return int(self._max_batch_size or -1)

    def close(self) -> None:
        self._http.close()

    # -- tenants and databases ---------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        self._request("POST", "/tenants", {"name": name})

    def get_tenant(self, name: str) -> dict[str, Any]:
        return {"name": self._request("GET", f"/tenants/{quote(name, safe='')}")["name"]}

    def create_database(self, name: str, tenant: str) -> None:
        self._request("POST", f"/tenants/{quote(tenant, safe='')}/databases", {"name": name})

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        return self._request("GET", self._collection_path(tenant, name))

    def delete_database(self, name: str, tenant: str) -> None:
        self._request("DELETE", self._collection_path(tenant, name))

    def list_databases(
        self, limit: int | None, offset: int | None, tenant: str
    ) -> list[dict[str, Any]]:
        params = _page(limit, offset)
        return self._request("GET", f"/tenants/{quote(tenant, safe='')}/databases", params=params)

    # -- collections -------------------------------------------------------------------

    def list_collections(
        self, limit: int | None, offset: int | None, tenant: str, database: str
    ) -> list[CollectionModel]:
        rows = self._request(
            "GET",
            self._collection_path(tenant, database) + "/collections",
            params=_page(limit, offset),
        )
        return [self._model(r) for r in rows]

    def count_collections(self, tenant: str, database: str) -> int:
        return int(
            self._request("GET", self._collection_path(tenant, database) + "/collections_count")
        )

    def create_collection(self, request: CreateCollectionRequest) -> CollectionModel:
        body = {
            "name": request.name,
            "metadata": request.metadata,
            "configuration": request.configuration,
            "schema": request.schema,
            "get_or_create": request.get_or_create,
        }
        path = self._collection_path(request.tenant, request.database) + "/collections"
        return self._model(self._request("POST", path, body))

    def get_collection(self, name: str, tenant: str, database: str) -> CollectionModel:
        path = f"{self._collection_path(tenant, database)}/collections/{quote(name, safe='')}"
        return self._model(self._request("GET", path))

    def get_collection_by_id(
        self, collection_id: str, tenant: str | None = None, database: str | None = None
    ) -> CollectionModel:
        """The collection of that id in `tenant`/`database` (the client's, as chromadb's
        client passes them); without them, where this API last saw it (else the defaults)."""
        if tenant is None or database is None:
            known = self._owners.get(collection_id, (DEFAULT_TENANT, DEFAULT_DATABASE))
            tenant, database = tenant or known[0], database or known[1]
        path = f"{self._collection_path(tenant, database)}/collections/by-id/{collection_id}"
        return self._model(self._request("GET", path))

    def modify_collection(self, collection_id: str, request: ModifyCollectionRequest) -> None:
        self._request("PUT", self._data_path(collection_id), dataclasses.asdict(request))

    def fork_collection(self, collection_id: str, new_name: str) -> CollectionModel:
        path = f"{self._data_path(collection_id)}/fork"
        return self._model(self._request("POST", path, {"new_name": new_name}))

    def fork_count(self, collection_id: str) -> int:
        return int(self._request("GET", f"{self._data_path(collection_id)}/fork_count")["count"])

    def set_alias(
        self, alias: str, collection: str, create: bool, tenant: str, database: str
    ) -> None:
        base = self._collection_path(tenant, database) + "/aliases"
        if create:
            self._request("POST", base, {"name": alias, "collection": collection})
        else:
            self._request("PUT", f"{base}/{quote(alias, safe='')}", {"collection": collection})

    def delete_alias(self, alias: str, tenant: str, database: str) -> None:
        path = f"{self._collection_path(tenant, database)}/aliases/{quote(alias, safe='')}"
        self._request("DELETE", path)

    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]:
        return self._request("GET", self._collection_path(tenant, database) + "/aliases")

    def delete_collection(self, name: str, tenant: str, database: str) -> None:
        path = f"{self._collection_path(tenant, database)}/collections/{quote(name, safe='')}"
        self._request("DELETE", path)

    # -- records -----------------------------------------------------------------------

    def _write(self, op: str, collection_id: str, batch: RecordBatch) -> None:
        self._check_batch(batch.ids)
        body = {
            "ids": batch.ids,
            "embeddings": self._encode(batch.embeddings),
            "metadatas": _wire_metadatas(batch.metadatas),
            "documents": batch.documents,
            "uris": batch.uris,
        }
        self._request("POST", f"{self._data_path(collection_id)}/{op}", body)

    def add(self, collection_id: str, batch: RecordBatch) -> None:
        self._write("add", collection_id, batch)

    def update(self, collection_id: str, batch: RecordBatch) -> None:
        self._write("update", collection_id, batch)

    def upsert(self, collection_id: str, batch: RecordBatch) -> None:
        self._write("upsert", collection_id, batch)

    def delete(self, collection_id: str, request: DeleteRequest) -> int:
        body: dict[str, Any] = {
            "ids": request.ids,
            "where": request.where,
            "where_document": request.where_document,
        }
        if request.limit is not None:
            body["limit"] = request.limit
        path = f"{self._data_path(collection_id)}/delete"
        return int(self._request("POST", path, body)["deleted"])

    def count(self, collection_id: str) -> int:
        return int(self._request("GET", f"{self._data_path(collection_id)}/count"))

    def indexing_status(self, collection_id: str) -> dict[str, Any]:
        return self._request("GET", f"{self._data_path(collection_id)}/indexing_status")

    def get(self, collection_id: str, request: GetRequest) -> GetResult:
        body = dataclasses.asdict(request)
        body["include"] = _wire_include(request.include)
        data = self._request("POST", f"{self._data_path(collection_id)}/get", body)
        embeddings = data.get("embeddings")
        return GetResult(
            ids=data["ids"],
            embeddings=None if embeddings is None else _matrix(embeddings),
            documents=data.get("documents"),
            uris=data.get("uris"),
            data=None,
            metadatas=read_metadatas(data.get("metadatas")),
            included=request.include,
        )

    def query(self, collection_id: str, request: QueryRequest) -> QueryResult:
        body = {
            "ids": request.ids,
            "query_embeddings": request.embeddings.astype(np.float32).tolist(),
            "n_results": request.n_results,
            "where": request.where,
            "where_document": request.where_document,
            "include": _wire_include(request.include),
        }
        data = self._request("POST", f"{self._data_path(collection_id)}/query", body)
        embeddings = data.get("embeddings")
        return QueryResult(
            ids=data["ids"],
            embeddings=None if embeddings is None else [_matrix(e) for e in embeddings],
            documents=data.get("documents"),
            uris=data.get("uris"),
            data=None,
            metadatas=read_metadatas(data.get("metadatas")),
            distances=data.get("distances"),
            included=request.include,
        )

    def search(self, collection_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"{self._data_path(collection_id)}/search", body)


def _wire_include(include: list[str]) -> list[str]:
    """The include as sent: without "data", which the client loads from the uris (servers
    reject it, as Chroma's HTTP client knows)."""
    return [field for field in include if field != "data"]


def _wire_metadatas(metadatas: list[Any] | None) -> list[Any] | None:
    """Record metadatas as sent: each `SparseVector` value as its wire dict."""
    if metadatas is None:
        return None
    return [
        {k: v.to_dict() if isinstance(v, SparseVector) else v for k, v in m.items()}
        if m and any(isinstance(v, SparseVector) for v in m.values())
        else m
        for m in metadatas
    ]


def _matrix(rows: list[list[float]]) -> np.ndarray:
    """Embeddings as read from JSON, as chromadb's HTTP client makes them (`np.array` of
    the lists: float64)."""
    return np.array(rows)


def _page(limit: int | None, offset: int | None) -> dict[str, int]:
    params = {}
    if limit is not None:
        params["limit"] = limit
    if offset is not None:
        params["offset"] = offset
    return params


def _error_from(resp: httpx.Response) -> Exception:
    """The error of a non-2xx answer, as chromadb's `BaseHTTPClient._raise_chroma_error`
    makes it: a body `{"error": <a Chroma error name>, "message": ...}` gives that error
    class (with the `chroma-trace-id` header as its trace_id); anything else (another
    body, a known name without "message", a redirect) a plain Exception of the body text,
    naming the trace id if the answer has one."""
    trace_id = resp.headers.get("chroma-trace-id")
    try:
        body = orjson.loads(resp.content)
        exc: ChromaError = error_types[body["error"]](body["message"])
    except Exception:
        if trace_id:
            return Exception(f"{resp.text} (trace ID: {trace_id})")
        return Exception(resp.text)
    if trace_id:
        exc.trace_id = trace_id
    return exc
