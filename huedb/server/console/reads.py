"""The read routes the console needs beyond Chroma's API (a read-only token may call them;
a tenant-scoped token only inside its tenant, as for every route under /tenants):

- `GET /api/v2/console/tenants`: the tenants and databases that hold collections (global
  tokens only: the path names no tenant);
- `GET .../databases/{database}/stats`: each collection's figures from `huedb stats`
  (count, dimension, space, disk bytes, index memory; counts and bytes from the worker's
  figures cache, `metrics_cache`), the scale warnings of those collections, and the role
  of the calling token and whether it is tenant-scoped (the console hides admin actions
  by them); a global token also gets the store-wide warnings and the machine's RAM;
- `GET .../collections/{collection_id}/embed?text=...`: the server's default embedder
  (all-MiniLM-L6-v2) run on a text, for collections that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from huedb.api.collection_config import DEFAULT_EF_IDENTITY
from huedb.embedding_functions import DIMENSION, DefaultEmbeddingFunction, model_dir
from huedb.engine.catalog import CollectionRow
from huedb.engine.engine import Engine
from huedb.errors import InvalidArgumentError, NotFoundError, UnimplementedError
from huedb.ops.stats import gather_stats
from huedb.server.auth import TOKEN_KEY
from huedb.server.json_response import OrjsonResponse
from huedb.server.metrics_cache import FIGURES
from huedb.server.routes import COL, DB, api, owned_collection
from huedb.server.strict_json import StrictJsonRoute

router = APIRouter(
    prefix="/api/v2", default_response_class=OrjsonResponse, route_class=StrictJsonRoute
)
MAX_TEXT_CHARS = 4096


@router.get("/console/tenants")
def console_tenants(request: Request) -> list[dict[str, Any]]:
    """Tenants and their databases that hold at least one collection, plus the defaults."""
    engine = api(request).engine
    places: dict[str, set[str]] = {"default_tenant": {"default_database"}}
    for col in engine.collections():
        tenant, database = engine.database_of(col)
        places.setdefault(tenant, set()).add(database)
    return [{"name": t, "databases": sorted(dbs)} for t, dbs in sorted(places.items())]


@router.get(DB + "/stats")
def database_stats(request: Request, tenant: str, database: str) -> dict[str, Any]:
    """`huedb stats` for the collections of one database, and the token's role; store-wide
    warnings and RAM only for a token of every tenant (or no tokens)."""
    local = api(request)
    engine = local.engine
    own = {str(m.id) for m in local.list_collections(None, None, tenant, database)}
    cols = [col for uuid in sorted(own) if (col := existing_collection(engine, uuid))]
    stats = gather_stats(engine, Path(request.app.state.config.path), FIGURES.figures, cols)
    entry = request.scope.get(TOKEN_KEY)
    warnings = [w for c in stats["collections"] for w in c["warnings"]]
    answer: dict[str, Any] = {
        "role": "admin" if entry is None else entry.role,
        "scoped": entry is not None and entry.tenant is not None,  # limited to a tenant
        "collections": stats["collections"],
        "warnings": warnings,
    }
    if entry is None or entry.tenant is None:
        answer["warnings"] = warnings + stats["store_warnings"]
        answer["ram_bytes"] = stats["ram_bytes"]
    return answer


def existing_collection(engine: Engine, uuid: str) -> CollectionRow | None:
    """A listed collection, or None when it was deleted since it was listed."""
    try:
        return engine.get_collection_by_uuid(uuid)
    except NotFoundError:
        return None


@router.get(COL + "/embed")
def embed_text(
    request: Request, tenant: str, database: str, collection_id: str, text: str
) -> dict[str, Any]:
    """The default embedder's vector of `text`, for a collection that records it."""
    local = api(request)
    target = owned_collection(local, tenant, database, collection_id)
    model = local.get_collection_by_id(target)
    config = model.configuration_json or {}
    function = config.get("embedding_function") or {}
    if function.get("name") != DEFAULT_EF_IDENTITY["name"]:
        named = function.get("name") or "none recorded"
        raise InvalidArgumentError(
            f"the server embeds texts only for collections of the default embedding function "
            f"(all-MiniLM-L6-v2); this collection's is {named}: query by a record's vector"
        )
    if model.dimension not in (None, DIMENSION):
        raise InvalidArgumentError(
            f"this collection's vectors have {model.dimension} dimensions and the default "
            f"embedder's {DIMENSION}: query by a record's vector"
        )
    if not text or len(text) > MAX_TEXT_CHARS:
        raise InvalidArgumentError(f"text must have 1 to {MAX_TEXT_CHARS} characters")
    try:
        model_dir()
    except ValueError as exc:
        raise UnimplementedError(f"this server cannot embed texts: {exc}") from None
    vector = DefaultEmbeddingFunction()([text])[0]
    return {"embedding": vector.tolist(), "model": "all-MiniLM-L6-v2"}
