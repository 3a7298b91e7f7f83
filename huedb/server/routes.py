"""Chroma's v2 routes: each parses its request, calls `LocalAPI` and shapes the JSON answer.

Checks of request contents live in `api/checks.py`; only path parameters (the collection
id, and that it names a collection of the tenant and database in the path) are checked here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from huedb.api.checks import MAX_BATCH_SIZE, check_batch_size, check_page
from huedb.api.local import LocalAPI
from huedb.engine.catalog import validate_name
from huedb.errors import (
    EMPTY_BODY_REASON,
    CollectionExistsError,
    CollectionRenameError,
    InvalidArgumentError,
    NotFoundError,
)
from huedb.execution.read_level import ReadLevel
from huedb.search.parse import parse_search_request
from huedb.server import wire
from huedb.server.auth import TOKEN_KEY
from huedb.server.json_response import OrjsonResponse
from huedb.server.strict_json import StrictJsonRoute

router = APIRouter(
    prefix="/api/v2", default_response_class=OrjsonResponse, route_class=StrictJsonRoute
)
CHROMA_API_VERSION = "1.0.0"
DB = "/tenants/{tenant}/databases/{database}"
COL = DB + "/collections/{collection_id}"


def api(request: Request) -> LocalAPI:
    """The worker's `LocalAPI`."""
    return request.app.state.api


def collection_uuid(collection_id: str) -> str:
    """Check a collection id from the path."""
    try:
        return str(uuid.UUID(collection_id))
    except ValueError:
        raise InvalidArgumentError("Collection ID is not a valid UUIDv4") from None


def owned_collection(local: LocalAPI, tenant: str, database: str, collection_id: str) -> str:
    """The collection id of the path, once checked to name a collection of `tenant` and
    `database`; anywhere else (or a missing tenant/database) it does not exist: 404."""
    target = collection_uuid(collection_id)
    if local.owner_of(target) != (tenant, database):
        raise NotFoundError(f"Collection [{target}] does not exist.")
    return target


@router.get("", include_in_schema=False)
@router.get("/heartbeat")
def heartbeat() -> dict[str, int]:
    return {"nanosecond heartbeat": time.time_ns()}


@router.get("/version")
def version() -> str:
    """Chroma's server reports API version 1.0.0 here (`huedb --version` tells huedb's)."""
    return CHROMA_API_VERSION


@router.get("/healthcheck")
def healthcheck(request: Request) -> dict[str, bool]:
    api(request).heartbeat()
    return {"is_executor_ready": True, "is_log_client_ready": True}


@router.get("/pre-flight-checks")
def pre_flight_checks() -> dict[str, Any]:
    return {"max_batch_size": MAX_BATCH_SIZE, "supports_base64_encoding": True}


@router.get("/auth/identity")
def identity(request: Request) -> dict[str, Any]:
    """Who the token is. A tenant-scoped token: its tenant and databases (`["*"]`: all of
    them, as Chroma writes it); chromadb's client takes a single tenant and database from
    here when `chroma_overwrite_singleton_tenant_database_access_from_auth` is set."""
    entry = request.scope.get(TOKEN_KEY)
    if entry is None or entry.tenant is None:
        return {"user_id": "", "tenant": "default_tenant", "databases": ["default_database"]}
    return {"user_id": "", "tenant": entry.tenant, "databases": entry.databases or ["*"]}


@router.post("/reset")
def reset(request: Request) -> bool:
    return api(request).reset()


@router.post("/tenants")
def create_tenant(request: Request, body: wire.CreateTenant) -> dict[str, Any]:
    api(request).create_tenant(body.name)
    return {}


@router.get("/tenants/{tenant}")
def get_tenant(request: Request, tenant: str) -> dict[str, Any]:
    return {**api(request).get_tenant(tenant), "resource_name": None}


@router.post("/tenants/{tenant}/databases")
def create_database(request: Request, tenant: str, body: wire.CreateDatabase) -> dict[str, Any]:
    """Chroma's server holds a new database's name to the rule of collection names; its
    library (and `LocalAPI`) only to `validate_database_name`."""
    validate_name(body.name, what=None)
    api(request).create_database(body.name, tenant)
    return {}


@router.get("/tenants/{tenant}/databases")
def list_databases(
    request: Request, tenant: str, limit: int | None = None, offset: int | None = None
) -> list[dict[str, Any]]:
    check_page(limit, offset)
    return api(request).list_databases(limit, offset, tenant)


@router.get(DB)
def get_database(request: Request, tenant: str, database: str) -> dict[str, Any]:
    return api(request).get_database(database, tenant)


@router.delete(DB)
def delete_database(request: Request, tenant: str, database: str) -> dict[str, Any]:
    api(request).delete_database(database, tenant)
    return {}


@router.get(DB + "/collections")
def list_collections(
    request: Request,
    tenant: str,
    database: str,
    limit: int | None = None,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    check_page(limit, offset)
    models = api(request).list_collections(limit, offset, tenant, database)
    return [m.to_json() for m in models]


@router.get(DB + "/aliases")
def list_aliases(request: Request, tenant: str, database: str) -> list[dict[str, str]]:
    """huedb: the aliases of a database and the collections they name."""
    return api(request).list_aliases(tenant, database)


@router.post(DB + "/aliases")
def create_alias(
    request: Request, tenant: str, database: str, body: wire.CreateAlias
) -> dict[str, Any]:
    """huedb: a second name for a collection."""
    api(request).set_alias(body.name, body.collection, True, tenant, database)
    return {}


@router.put(DB + "/aliases/{alias}")
def update_alias(
    request: Request, tenant: str, database: str, alias: str, body: wire.UpdateAlias
) -> dict[str, Any]:
    """huedb: switch an alias to another collection in one transaction."""
    api(request).set_alias(alias, body.collection, False, tenant, database)
    return {}


@router.delete(DB + "/aliases/{alias}")
def delete_alias(request: Request, tenant: str, database: str, alias: str) -> dict[str, Any]:
    """huedb: remove an alias."""
    api(request).delete_alias(alias, tenant, database)
    return {}


@router.get(DB + "/collections_count")
def count_collections(request: Request, tenant: str, database: str) -> int:
    return api(request).count_collections(tenant, database)


@router.post(DB + "/collections")
def create_collection(
    request: Request, tenant: str, database: str, body: wire.CreateCollection
) -> dict[str, Any]:
    return api(request).create_collection(body.to_request(tenant, database)).to_json()


@router.get(DB + "/collections/by-id/{collection_id}")
def get_collection_by_id(
    request: Request, tenant: str, database: str, collection_id: str
) -> dict[str, Any]:
    local = api(request)
    target = owned_collection(local, tenant, database, collection_id)
    return local.get_collection_by_id(target).to_json()


@router.get(DB + "/collections/{name}")
def get_collection(request: Request, tenant: str, database: str, name: str) -> dict[str, Any]:
    return api(request).get_collection(name, tenant, database).to_json()


@router.put(COL)
def update_collection(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.UpdateCollection
) -> dict[str, Any]:
    local = api(request)
    target = owned_collection(local, tenant, database, collection_id)
    try:
        local.modify_collection(target, body.to_request())
    except CollectionExistsError as exc:
        raise CollectionRenameError(str(exc)) from exc
    return {}


@router.delete(DB + "/collections/{name}")
def delete_collection(request: Request, tenant: str, database: str, name: str) -> dict[str, Any]:
    api(request).delete_collection(name, tenant, database)
    return {}


@router.post(COL + "/add", status_code=201)
def add(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.AddRecords
) -> dict[str, Any]:
    return run_add(api(request), tenant, database, collection_id, body)


@router.post(COL + "/update")
def update(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.UpdateRecords
) -> dict[str, Any]:
    return run_update(api(request), tenant, database, collection_id, body)


@router.post(COL + "/upsert")
def upsert(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.AddRecords
) -> dict[str, Any]:
    return run_upsert(api(request), tenant, database, collection_id, body)


@router.post(COL + "/get")
def get(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.GetRecords
) -> OrjsonResponse:
    return OrjsonResponse(run_get(api(request), tenant, database, collection_id, body))


@router.post(COL + "/query")
def query(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.QueryRecords
) -> OrjsonResponse:
    return OrjsonResponse(run_query(api(request), tenant, database, collection_id, body))


# -- the data-plane handlers, shared with `fastpath` ----------------------------------------


def run_add(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: wire.AddRecords
) -> dict[str, Any]:
    """POST .../add: the response body."""
    _write(local.add, owned_collection(local, tenant, database, collection_id), body)
    return {}


def run_update(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: wire.UpdateRecords
) -> dict[str, Any]:
    """POST .../update: the response body."""
    _write(local.update, owned_collection(local, tenant, database, collection_id), body, True)
    return {}


def run_upsert(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: wire.AddRecords
) -> dict[str, Any]:
    """POST .../upsert: the response body."""
    _write(local.upsert, owned_collection(local, tenant, database, collection_id), body, True)
    return {}


def run_get(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: wire.GetRecords
) -> dict[str, Any]:
    """POST .../get: the response body."""
    if "distances" in body.include:
        raise InvalidArgumentError("Include item cannot be one of distances in get")
    result = local.get(owned_collection(local, tenant, database, collection_id), body.to_request())
    return _result_body(result, body.include)


def run_query(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: wire.QueryRecords
) -> dict[str, Any]:
    """POST .../query: the response body."""
    target = owned_collection(local, tenant, database, collection_id)
    result = local.query(target, body.to_request())
    out = _result_body(result, body.include)
    distances = result["distances"]
    if distances is not None:  # float32, written in their shortest form as Chroma writes them
        distances = [np.asarray(row, dtype=np.float32) for row in distances]
    out["distances"] = distances
    return out


@router.post(COL + "/delete")
def delete(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.DeleteRecords
) -> dict[str, Any]:
    filtered = body.where is not None or body.where_document is not None
    if body.ids == [] and not filtered:  # Chroma's server checks, in its order
        raise InvalidArgumentError(
            "Validation error: ids, where: Either ids or where must be specified"
        )
    if body.limit is not None and not filtered:
        raise InvalidArgumentError(
            "Validation error: limit, where: limit can only be specified when a where clause "
            "is provided"
        )
    local = api(request)
    target = owned_collection(local, tenant, database, collection_id)
    if body.ids is None and not filtered:
        return {"deleted": 0}  # as Chroma's server: nothing asked, nothing deleted
    deleted = local.delete(target, body.to_request())
    return {"deleted": deleted}


@router.get(COL + "/count")
def count(
    request: Request,
    tenant: str,
    database: str,
    collection_id: str,
    read_level: ReadLevel | None = None,  # chromadb's client sends it; every level is current
) -> int:
    local = api(request)
    return local.count(owned_collection(local, tenant, database, collection_id))


@router.get(COL + "/indexing_status")
def indexing_status(
    request: Request, tenant: str, database: str, collection_id: str
) -> dict[str, Any]:
    """This worker's index state; `op_indexing_progress` 1.0 means graph search is ready."""
    local = api(request)
    return local.indexing_status(owned_collection(local, tenant, database, collection_id))


@router.post(COL + "/search")
async def search(
    request: Request, tenant: str, database: str, collection_id: str
) -> OrjsonResponse:
    """POST .../search: Chroma's Search API (shared/chroma-search-api.md, 2)."""
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = exc if raw else EMPTY_BODY_REASON
        raise InvalidArgumentError(f"Failed to parse the request body as JSON: {reason}") from None
    local = api(request)
    answer = await run_in_threadpool(run_search, local, tenant, database, collection_id, body)
    return OrjsonResponse(answer)


def run_search(
    local: LocalAPI, tenant: str, database: str, collection_id: str, body: Any
) -> dict[str, Any]:
    """The response body of a search, errors in Chroma's order: the body's shape and rules,
    the collection id, the collection, its schema."""
    parsed = parse_search_request(body)
    return local.run_search(owned_collection(local, tenant, database, collection_id), parsed)


@router.post(COL + "/fork")
def fork_collection(
    request: Request, tenant: str, database: str, collection_id: str, body: wire.ForkCollection
) -> dict[str, Any]:
    """A copy of the collection under `new_name` in the same database (Chroma Cloud's fork)."""
    local = api(request)
    target = owned_collection(local, tenant, database, collection_id)
    return local.fork_collection(target, body.new_name).to_json()


@router.get(COL + "/fork_count")
def fork_count(request: Request, tenant: str, database: str, collection_id: str) -> dict[str, int]:
    """Forks made in the collection's lineage tree (Chroma Cloud's answer shape)."""
    local = api(request)
    return {"count": local.fork_count(owned_collection(local, tenant, database, collection_id))}


def _write(
    operation: Any, target: str, body: wire.AddRecords | wire.UpdateRecords, update: bool = False
) -> None:
    """Call add, update or upsert (`update`: either of the two) of `LocalAPI` with the
    body's records."""
    check_batch_size(len(body.ids))
    operation(target, body.to_batch("UpdateMetadataValue" if update else "MetadataValue"))


def _result_body(result: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """The JSON body of a get or query result (routes return it as a response directly,
    so the records skip FastAPI's response validation). Vectors stay float32 arrays, which
    orjson writes as Chroma's server does: each value's shortest float32 decimal (0.9, not
    0.8999999761581421)."""
    embeddings = result["embeddings"]
    if embeddings is not None:
        if isinstance(embeddings, list):
            embeddings = [np.asarray(e, dtype=np.float32) for e in embeddings]
        else:
            embeddings = np.asarray(embeddings, dtype=np.float32) if embeddings.size else []
    return {
        "ids": result["ids"],
        "embeddings": embeddings,
        "documents": result["documents"],
        "uris": result["uris"],
        "metadatas": result["metadatas"],
        "include": list(include),
    }
