"""`LocalAPI`: the `ServerAPI` over an in-process engine; also what the HTTP server calls.

It re-checks everything a request can carry (a server gets raw JSON from any client), then
calls the engine and shapes the results as Chroma does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from huedb.api import collection_config as config_rules
from huedb.api.base import ServerAPI
from huedb.api.types import CollectionModel, GetResult, QueryResult
from huedb.api.validation import finite_or_error
from huedb.config import Settings
from huedb.engine.catalog import CollectionRow, validate_name
from huedb.engine.engine import Engine
from huedb.engine.filters import check_filters
from huedb.engine.records import clean_metadata
from huedb.errors import (
    DuplicateIDError,
    InvalidArgumentError,
    ResetDisabledError,
)
from huedb.version import __version__

MAX_BATCH_SIZE = 5461


class LocalAPI(ServerAPI):
    """All operations against one engine, validated as a server would."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    # -- system ------------------------------------------------------------------------

    def heartbeat(self) -> int:
        return time.time_ns()

    def get_version(self) -> str:
        return __version__

    def reset(self) -> bool:
        if not self.settings.allow_reset:
            raise ResetDisabledError(
                "Reset is disabled by config. Set allow_reset=True in Settings to enable it."
            )
        self.engine.reset()
        return True

    def get_max_batch_size(self) -> int:
        return MAX_BATCH_SIZE

    def close(self) -> None:
        self.engine.close()

    # -- tenants and databases ---------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        self.engine.create_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        return self.engine.get_tenant(name)

    def create_database(self, name: str, tenant: str) -> None:
        self.engine.create_database(name, tenant)

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        return self.engine.get_database(name, tenant)

    def delete_database(self, name: str, tenant: str) -> None:
        self.engine.delete_database(name, tenant)

    def list_databases(
        self, limit: int | None, offset: int | None, tenant: str
    ) -> list[dict[str, Any]]:
        return self.engine.list_databases(tenant, limit, offset)

    # -- collections -------------------------------------------------------------------

    def _model(self, row: CollectionRow) -> CollectionModel:
        tenant, database = self.engine.database_of(row)
        return CollectionModel(
            id=uuid.UUID(row.uuid),
            name=row.name,
            tenant=tenant,
            database=database,
            metadata=row.metadata,
            configuration_json=row.configuration,
            dimension=row.dimension,
        )

    def list_collections(
        self, limit: int | None, offset: int | None, tenant: str, database: str
    ) -> list[CollectionModel]:
        rows = self.engine.list_collections(tenant, database, limit, offset)
        return [self._model(r) for r in rows]

    def count_collections(self, tenant: str, database: str) -> int:
        return self.engine.count_collections(tenant, database)

    def create_collection(
        self,
        name: str,
        metadata: dict[str, Any] | None,
        configuration: dict[str, Any] | None,
        get_or_create: bool,
        tenant: str,
        database: str,
    ) -> CollectionModel:
        if isinstance(metadata, dict) and any(
            v is None or not isinstance(v, str | int | float | bool) for v in metadata.values()
        ):
            check_collection_metadata(metadata)  # raises the TypeError, before the name check
        validate_name(name)
        check_collection_metadata(metadata)
        config = config_rules.build_configuration(metadata, configuration)
        row = self.engine.create_collection(name, metadata, config, get_or_create, tenant, database)
        return self._model(row)

    def get_collection(self, name: str, tenant: str, database: str) -> CollectionModel:
        return self._model(self.engine.get_collection(name, tenant, database))

    def get_collection_by_id(self, collection_id: str) -> CollectionModel:
        return self._model(self.engine.get_collection_by_uuid(collection_id))

    def modify_collection(
        self,
        collection_id: str,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        new_configuration: dict[str, Any] | None,
    ) -> None:
        if new_name is not None:
            validate_name(new_name)
        if new_metadata is not None:
            if "hnsw:space" in new_metadata:
                raise InvalidArgumentError(
                    "Changing the distance function of a collection once it is created is not "
                    "supported currently."
                )
            check_collection_metadata(new_metadata, allow_none=True)
            # As in Chroma, None values drop keys; {} (all dropped) clears the metadata.
            new_metadata = {k: v for k, v in new_metadata.items() if v is not None}
        config = None
        if new_configuration is not None:
            current = self.engine.get_collection_by_uuid(collection_id).configuration
            config = config_rules.apply_update(current, new_configuration)
        self.engine.update_collection(collection_id, new_name, new_metadata, config)

    def delete_collection(self, name: str, tenant: str, database: str) -> None:
        self.engine.delete_collection(name, tenant, database)

    def set_alias(
        self, alias: str, collection: str, create: bool, tenant: str, database: str
    ) -> None:
        self.engine.set_alias(alias, collection, create, tenant, database)

    def delete_alias(self, alias: str, tenant: str, database: str) -> None:
        self.engine.delete_alias(alias, tenant, database)

    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]:
        return self.engine.list_aliases(tenant, database)

    # -- records -----------------------------------------------------------------------

    def add(
        self,
        collection_id: str,
        ids: list[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Any] | None,
        documents: Sequence[Any] | None,
        uris: Sequence[Any] | None,
    ) -> None:
        for m in metadatas or ():
            _reject_none_values(m)
        batch = _Batch.checked(ids, embeddings, metadatas, documents, uris, require_vectors=True)
        metas = [clean_metadata(m) for m in batch.metadatas_or_nones()]
        self.engine.add(
            collection_id,
            ids,
            batch.embeddings,
            metas,
            batch.documents_or_nones(),
            batch.uris_or_nones(),
        )

    def update(
        self,
        collection_id: str,
        ids: list[str],
        embeddings: np.ndarray | None,
        metadatas: Sequence[Any] | None,
        documents: Sequence[Any] | None,
        uris: Sequence[Any] | None,
    ) -> None:
        batch = _Batch.checked(ids, embeddings, metadatas, documents, uris, require_vectors=False)
        self.engine.update(
            collection_id, ids, batch.embeddings, batch.metadatas, batch.documents, batch.uris
        )

    def upsert(
        self,
        collection_id: str,
        ids: list[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Any] | None,
        documents: Sequence[Any] | None,
        uris: Sequence[Any] | None,
    ) -> None:
        batch = _Batch.checked(ids, embeddings, metadatas, documents, uris, require_vectors=True)
        self.engine.upsert(
            collection_id,
            ids,
            batch.embeddings,
            batch.metadatas_or_nones(),
            batch.documents_or_nones(),
            batch.uris_or_nones(),
        )

    def delete(
        self,
        collection_id: str,
        ids: list[str] | None,
        where: Any,
        where_document: Any,
        limit: int | None,
    ) -> int:
        if ids is not None:
            check_ids(ids)
        check_filters(where, where_document)
        deleted = self.engine.delete(collection_id, ids, where, where_document, limit)
        if ids is not None and where is None and where_document is None:
            return len(ids)
        return deleted

    def count(self, collection_id: str) -> int:
        return self.engine.count(collection_id)

    def indexing_status(self, collection_id: str) -> dict[str, Any]:
        return self.engine.indexing_status(collection_id)

    def get(
        self,
        collection_id: str,
        ids: list[str] | None,
        where: Any,
        where_document: Any,
        limit: int | None,
        offset: int | None,
        include: list[str],
    ) -> GetResult:
        if ids is not None:
            check_ids(ids, allow_duplicates=True)
        check_filters(where, where_document)
        _, rows = self.engine.get(
            collection_id,
            ids,
            where,
            where_document,
            limit,
            offset,
            with_vectors="embeddings" in include,
        )
        fields = _fields(rows, include)
        return GetResult(
            ids=[r[1] for r in rows],
            embeddings=fields["embeddings"],
            documents=fields["documents"],
            uris=fields["uris"],
            data=None,
            metadatas=fields["metadatas"],
            included=list(include),
        )

    def query(
        self,
        collection_id: str,
        query_embeddings: np.ndarray,
        n_results: int,
        ids: list[str] | None,
        where: Any,
        where_document: Any,
        include: list[str],
    ) -> QueryResult:
        if ids is not None:
            check_ids(ids, allow_duplicates=True)
        check_filters(where, where_document)
        finite_or_error(query_embeddings)
        hits = self.engine.query(
            collection_id,
            query_embeddings,
            n_results,
            ids,
            where,
            where_document,
            with_vectors="embeddings" in include,
        )
        per_query = [[hits.rows[k] for k in keys if k in hits.rows] for keys in hits.keys]
        distances = [
            [d for k, d in zip(keys, dists, strict=True) if k in hits.rows]
            for keys, dists in zip(hits.keys, hits.distances, strict=True)
        ]
        fields = [_fields(rows, include) for rows in per_query]

        def column(name: str) -> list[Any] | None:
            return [f[name] for f in fields] if name in include else None

        return QueryResult(
            ids=[[r[1] for r in rows] for rows in per_query],
            embeddings=column("embeddings"),
            documents=column("documents"),
            uris=column("uris"),
            data=None,
            metadatas=column("metadatas"),
            distances=distances if "distances" in include else None,
            included=list(include),
        )


def _fields(rows: list[tuple], include: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"embeddings": None, "documents": None, "uris": None, "metadatas": None}
    if "documents" in include:
        out["documents"] = [r[2] for r in rows]
    if "uris" in include:
        out["uris"] = [r[3] for r in rows]
    if "metadatas" in include:
        # Chroma returns {} rather than None for a record that has a uri but no metadata.
        out["metadatas"] = [
            json.loads(r[4]) if r[4] else ({} if r[3] is not None else None) for r in rows
        ]
    if "embeddings" in include:
        if rows:
            blob = b"".join(r[5] for r in rows)
            out["embeddings"] = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), -1)
        else:
            out["embeddings"] = np.array([])
    return out


def check_ids(ids: Any, allow_duplicates: bool = False) -> None:
    """Server-side id checks: strings, unique within a write (empty ids: in the engine)."""
    if not isinstance(ids, list):
        raise InvalidArgumentError("Expected ids to be a list of strings")
    for item in ids:
        if not isinstance(item, str):
            raise InvalidArgumentError(f"Expected ID to be a str, got {item!r}")
    if not allow_duplicates and len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({i for i in ids if i in seen or seen.add(i)})
        raise DuplicateIDError(f"Expected IDs to be unique, found duplicates of: {', '.join(dups)}")


def check_record_metadata(metadata: Any, index: int) -> None:
    """Server-side metadata checks: keys non-empty, not starting with '#' or '$'."""
    if metadata is None:
        return
    bad = f"Validation error: metadatas: Invalid metadata at index {index}"
    if not isinstance(metadata, dict):
        raise InvalidArgumentError(f"{bad}: expected an object")
    for key, value in metadata.items():
        if not isinstance(key, str) or key == "" or key[0] in "#$":
            raise InvalidArgumentError(bad)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and value:
            kinds = {
                type(v) if not isinstance(v, int | float) or isinstance(v, bool) else float
                for v in value
            }
            if len(kinds) > 1:
                raise InvalidArgumentError(
                    f"Invalid metadata at index {index}: list for key {key!r} mixes types"
                )
        for v in values:
            if v is not None and not isinstance(v, str | int | float | bool):
                raise InvalidArgumentError(
                    f"Invalid metadata at index {index}: unsupported value {v!r} for key {key!r}"
                )


def check_collection_metadata(metadata: Any, allow_none: bool = False) -> None:
    """Collection metadata: None or a non-empty object of scalars (or None values, if allowed)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidArgumentError("Collection metadata must be an object")
    if not metadata:
        raise InvalidArgumentError("Validation error: metadata: Metadata cannot be empty")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError("Validation error: metadata: Metadata key cannot be empty")
        if key[0] in "#$":
            raise InvalidArgumentError(
                f"Validation error: metadata: Metadata key cannot start with '#' or '$': {key}"
            )
        if value is None and allow_none:
            continue
        if value is None or not isinstance(value, str | int | float | bool):
            raise TypeError(
                f"argument 'metadata': Cannot convert Python object to MetadataValue "
                f"(key {key!r}: only str, int, float and bool values are allowed)"
            )


def _reject_none_values(metadata: Any) -> None:
    """In add, a None metadata value is a type error (None deletes keys only in updates)."""
    if not isinstance(metadata, dict):
        return
    for key, value in metadata.items():
        if value is None:
            raise TypeError(
                f"Cannot convert Python object to MetadataValue: key {key!r} is None "
                "(None deletes a key only in update and upsert)"
            )


class _Batch:
    """A checked write batch."""

    def __init__(
        self,
        n: int,
        embeddings: np.ndarray | None,
        metadatas: list[Any] | None,
        documents: list[Any] | None,
        uris: list[Any] | None,
    ) -> None:
        self.n = n
        self.embeddings = embeddings
        self.metadatas = metadatas
        self.documents = documents
        self.uris = uris

    @classmethod
    def checked(
        cls,
        ids: Any,
        embeddings: Any,
        metadatas: Any,
        documents: Any,
        uris: Any,
        require_vectors: bool,
    ) -> _Batch:
        check_ids(ids)
        if len(ids) == 0:
            raise InvalidArgumentError("Expected IDs to be a non-empty list")
        if embeddings is None and require_vectors:
            raise InvalidArgumentError("Embeddings are required for add and upsert")
        fields = {
            "embeddings": embeddings,
            "metadatas": metadatas,
            "documents": documents,
            "uris": uris,
        }
        for name, value in fields.items():
            if value is not None and len(value) != len(ids):
                raise InvalidArgumentError(
                    "Inconsistent number of IDs, embeddings, documents, URIs and metadatas "
                    f"({len(ids)} ids, {len(value)} {name})"
                )
        if embeddings is not None:
            if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
                raise InvalidArgumentError("Embeddings must be a 2-D float32 array")
            if embeddings.shape[1] == 0:
                raise InvalidArgumentError("Embeddings must have at least one dimension")
            finite_or_error(embeddings)
        if metadatas is not None:
            for i, m in enumerate(metadatas):
                check_record_metadata(m, i)
        for name, values in (("documents", documents), ("uris", uris)):
            if values is not None:
                for v in values:
                    if v is not None and not isinstance(v, str):
                        raise InvalidArgumentError(f"Expected {name} to be strings, got {v!r}")
        return cls(
            len(ids),
            embeddings,
            None if metadatas is None else list(metadatas),
            None if documents is None else list(documents),
            None if uris is None else list(uris),
        )

    def metadatas_or_nones(self) -> list[Any]:
        return self.metadatas if self.metadatas is not None else [None] * self.n

    def documents_or_nones(self) -> list[Any]:
        return self.documents if self.documents is not None else [None] * self.n

    def uris_or_nones(self) -> list[Any]:
        return self.uris if self.uris is not None else [None] * self.n
