"""Migrate a Chroma 1.x persistent directory into huedb.

`huedb.ops.chroma_dir` reads the directory (without chromadb) as one snapshot; this module
checks it, creates its tenants, databases and collections in the huedb store and upserts the
records it yields, reporting progress.

Everything that can be checked is checked before anything is written: the source (SQLite's
`quick_check`, every collection's HNSW files, the names huedb accepts, the schemas), then the
target (no collection with another space or dimension). A run that fails later (Ctrl-C, the
source changing under it, a storage error) removes the collections, databases and tenants it
created; what existed before is left as it is (possibly partly mirrored).

A rerun into collections that already exist mirrors the source: their metadata, embedding
function and the HNSW settings a `modify` may change become the source's (what cannot is
warned about), each record's fields become the source's (keys, documents and uris it lost
are removed), and records the source does not hold are deleted (also those written only to
the target). Collections are matched by tenant, database and name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huedb.api.client import Client, local_engine
from huedb.api.collection import Collection
from huedb.api.collection_config import create_configuration
from huedb.api.collection_schema import parse_schema, vector_index_config
from huedb.engine.catalog import validate_database_name, validate_name, validate_tenant_name
from huedb.engine.hnsw_config import collection_space
from huedb.errors import InvalidArgumentError, NotFoundError
from huedb.ops.chroma_dir import ChromaCollection, ChromaDirectory
from huedb.ops.chroma_dir import describe as describe_collection
from huedb.ops.collection_definition import apply_mutable_settings, create_like, differences
from huedb.ops.progress import progress
from huedb.ops.store import describe, refuse_inside_data, store_client, store_url
from huedb.record_batch import RecordBatch

logger = logging.getLogger(__name__)


@dataclass
class CollectionReport:
    """What `migrate_chroma` did for one collection."""

    name: str
    tenant: str
    database: str
    source_id: str
    records: int
    skipped: int = 0
    deleted: int = 0  # records of an existing target collection the source lacks
    created: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class MigrationReport:
    """Per-collection counts of one `migrate_chroma` run."""

    source: Path
    target: str  # the data directory, or the PostgreSQL store's URL (password masked)
    collections: list[CollectionReport] = field(default_factory=list)

    @property
    def total_records(self) -> int:
        return sum(c.records for c in self.collections)

    def counts(self) -> dict[str, int]:
        """Records written per collection, keyed `tenant/database/name`."""
        return {f"{c.tenant}/{c.database}/{c.name}": c.records for c in self.collections}


@dataclass
class _Created:
    """What this run created in the target, to remove should the run fail."""

    tenants: list[str] = field(default_factory=list)
    databases: list[tuple[str, str]] = field(default_factory=list)
    collections: list[tuple[str, str, str]] = field(default_factory=list)


def migrate_chroma(
    source: Path,
    target: Path | None,
    show_progress: bool | None = None,
    batch_size: int = 1000,
    store: str | None = None,
) -> MigrationReport:
    """Copy every tenant, database and collection of the Chroma directory `source` into the
    huedb store at `target` (or the PostgreSQL store of `store`, else HUEDB_STORE, with this
    node's derived files in `target`, if given).

    Collections keep their name, tenant, database, metadata, configuration, schema (what
    Chroma 1.5 stores in `schema_str`; for older directories the schema Chroma derives from
    the configuration) and fixed dimension; records are upserted. A rerun mirrors the source
    again (see the module docstring), so each collection's reported count is the target's.

    Raises ValueError before writing anything (and before creating a store) if `source` is
    not a readable Chroma directory (damaged SQLite pages or HNSW files included) or holds a
    name or schema huedb refuses, and before writing anything if a target collection exists
    with another dimension or space; SourceChangedError (a ValueError) if the source changes
    while it is read. A run that fails after it began writing removes what it created.
    """
    source = Path(source)
    target = None if target is None else Path(target)
    if target is not None:  # the source directory is only read, never written
        refuse_inside_data(target, source, "the huedb store (--path)")
    with ChromaDirectory(source) as chroma:
        chroma.check()
        _check_source(chroma)
        url = store_url(store)
        report = MigrationReport(source, describe(target, url))
        admin = store_client(target, url, create=True)
        created = _Created()
        try:
            for collection in chroma.collections:
                _check_target(admin, report.target, collection)
            batch_size = max(1, min(batch_size, admin.get_max_batch_size()))
            _create_scopes(admin, chroma, created)
            for collection in chroma.collections:
                report.collections.append(
                    _migrate_collection(
                        admin, chroma, collection, show_progress, batch_size, created
                    )
                )
        except BaseException:
            _remove_created(admin, created)
            raise
        finally:
            admin.close()
    logger.info(
        "migrated %d records in %d collections from %s to %s",
        report.total_records,
        len(report.collections),
        source,
        report.target,
    )
    return report


def _check_source(chroma: ChromaDirectory) -> None:
    """ValueError naming the source tenant, database or collection whose name or schema
    huedb refuses."""
    for tenant in chroma.tenants:
        try:
            validate_tenant_name(tenant)
        except InvalidArgumentError as exc:
            raise ValueError(f"source tenant {tenant!r}: huedb refuses its name: {exc}") from None
    for tenant, database in chroma.databases:
        try:
            validate_database_name(database)
        except InvalidArgumentError as exc:
            raise ValueError(
                f"source database {database!r} of tenant {tenant!r}: huedb refuses its name: {exc}"
            ) from None
    for collection in chroma.collections:
        try:
            validate_tenant_name(collection.tenant)
            validate_database_name(collection.database)
            validate_name(collection.name)
        except InvalidArgumentError as exc:
            raise ValueError(
                f"{describe_collection(collection)}: huedb refuses a name: {exc}"
            ) from None
        try:
            create_configuration(None, None, collection.definition())
        except InvalidArgumentError as exc:
            raise ValueError(f"collection {collection.name!r}: schema refused: {exc}") from None


def _existing_collection(client: Client, collection: ChromaCollection) -> Collection | None:
    """The target collection with this name, tenant and database, or None."""
    try:
        client.set_tenant(collection.tenant, collection.database)
        return client.get_collection(collection.name)
    except NotFoundError:
        return None


def _check_target(client: Client, target: str, collection: ChromaCollection) -> None:
    """ValueError if the target already has this collection with another dimension or
    space."""
    existing = _existing_collection(client, collection)
    if existing is None:
        return
    model = existing.get_model()
    space = collection_space(model.configuration_json)
    where = f"collection {collection.name!r} in {target}"
    if space != collection.space:
        raise ValueError(f"{where} exists with space {space!r}, source has {collection.space!r}")
    dims = (model.dimension, collection.dimension)
    if None not in dims and dims[0] != dims[1]:
        raise ValueError(f"{where} exists with dimension {dims[0]}, source has {dims[1]}")


def _create_scopes(client: Client, chroma: ChromaDirectory, created: _Created) -> None:
    """Every tenant and database of the source, also those without collections."""
    for tenant in chroma.tenants:
        _ensure_tenant(client, tenant, created)
    for tenant, database in chroma.databases:
        _ensure_database(client, tenant, database, created)


def _ensure_tenant(client: Client, tenant: str, created: _Created) -> None:
    try:
        client.get_tenant(tenant)
    except NotFoundError:
        client.create_tenant(tenant)
        created.tenants.append(tenant)


def _ensure_database(client: Client, tenant: str, database: str, created: _Created) -> None:
    _ensure_tenant(client, tenant, created)
    try:
        client.get_database(database, tenant=tenant)
    except NotFoundError:
        client.create_database(database, tenant=tenant)
        created.databases.append((tenant, database))


def _remove_created(client: Client, created: _Created) -> None:
    """Remove what a failed run created (best effort: what cannot be removed is logged)."""
    if not (created.tenants or created.databases or created.collections):
        return
    removed = [0, 0, 0]
    for tenant, database, name in reversed(created.collections):
        if (tenant, database) in created.databases:
            continue  # removed with its database
        try:
            client.set_tenant(tenant, database)
            client.delete_collection(name)
            removed[0] += 1
        except Exception as exc:
            logger.warning("could not remove collection %r created by this run: %s", name, exc)
    for tenant, database in reversed(created.databases):
        try:
            client.delete_database(database, tenant=tenant)
            removed[1] += 1
        except Exception as exc:
            logger.warning("could not remove database %r created by this run: %s", database, exc)
    for tenant in reversed(created.tenants):
        try:
            _drop_tenant(client, tenant)
            removed[2] += 1
        except Exception as exc:
            logger.warning("could not remove tenant %r created by this run: %s", tenant, exc)
    logger.info(
        "removed what the failed run created: %d collections, %d databases, %d tenants",
        *removed,
    )


def _drop_tenant(client: Client, tenant: str) -> None:
    """Delete a tenant that holds no database (neither huedb's API nor Chroma's can)."""
    local_engine(client).delete_empty_tenant(tenant)


def _migrate_collection(
    client: Client,
    chroma: ChromaDirectory,
    collection: ChromaCollection,
    show_progress: bool | None,
    batch_size: int,
    created: _Created,
) -> CollectionReport:
    _ensure_database(client, collection.tenant, collection.database, created)
    existing = _existing_collection(client, collection)
    if existing is not None:
        _mirror_definition(existing, collection)
        target = existing
    else:
        target = create_like(client, collection.name, collection.metadata, collection.definition())
        created.collections.append((collection.tenant, collection.database, collection.name))
    result = CollectionReport(
        collection.name,
        collection.tenant,
        collection.database,
        collection.id,
        records=0,
        created=existing is None,
    )
    written: set[str] = set()
    reader = chroma.reader(collection)
    total = reader.count()
    bar = progress(total, f"{collection.database}/{collection.name}", enabled=show_progress)
    try:
        for batch in reader.batches(batch_size):
            _write_batch(target, batch, mirror=existing is not None)
            if existing is not None:
                written.update(batch.ids)
            result.records += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    result.skipped = max(0, total - result.records)
    if existing is not None:
        result.deleted = _delete_missing(target, written, batch_size)
    _keep_dimension(client, target, collection)
    result.warnings = differences(client, target, collection.definition())
    if existing is not None:
        result.warnings += _metadata_difference(target, collection)
    for warning in result.warnings:
        logger.warning(warning)
    logger.info(
        "%s/%s/%s: %d records (%d skipped, %d deleted as gone from the source)",
        collection.tenant,
        collection.database,
        collection.name,
        result.records,
        result.skipped,
        result.deleted,
    )
    return result


def _keep_dimension(client: Client, target: Collection, collection: ChromaCollection) -> None:
    """Give a target collection left without records (and so without a dimension) the
    dimension the source collection has fixed, as Chroma keeps it after every record is
    deleted (huedb fixes it with the first vector written)."""
    if collection.dimension is None or target.get_model().dimension is not None:
        return
    local_engine(client).fix_dimension(str(target.id), collection.dimension)


def _mirror_definition(target: Collection, collection: ChromaCollection) -> None:
    """Give an existing target collection the source's metadata, embedding function and
    the HNSW settings a `modify` may change (those fixed at creation were checked by
    `_check_target`); `differences` warns about what is left."""
    have, wanted = target.metadata or {}, collection.metadata or {}
    # `modify` replaces the metadata; None values drop keys, so all-None clears it.
    # It refuses `hnsw:space`, which a source keeps only if never modified since creation.
    if not _same_metadata(have, wanted) and "hnsw:space" not in wanted:
        target.modify(metadata={**dict.fromkeys(have), **wanted})
    vector = vector_index_config(parse_schema(collection.definition()))
    schema = target.get_model().schema
    function = vector.get("embedding_function")
    if (
        function is not None
        and schema is not None
        and function != vector_index_config(schema).get("embedding_function")
    ):
        target.modify(configuration={"embedding_function": function})
    apply_mutable_settings(target, vector, chosen_ef_search=False)


def _metadata_difference(target: Collection, collection: ChromaCollection) -> list[str]:
    """A warning when the target's metadata still differs from the source's."""
    if _same_metadata(target.metadata or {}, collection.metadata or {}):
        return []
    return [
        f"collection {collection.name!r}: metadata {target.metadata} differs from the "
        f"source's {collection.metadata} (hnsw:space cannot be set after creation)"
    ]


def _same_metadata(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Equal with exact types (1, 1.0 and True differ)."""
    return _typed(first) == _typed(second)


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value), value)


def _delete_missing(target: Collection, kept_ids: set[str], page_size: int) -> int:
    """Delete the records of `target` whose ids are not in `kept_ids` (every one of which
    it holds); how many were deleted.

    Reads the target's ids page by page in storage order, stopping once the surplus over
    `kept_ids` is deleted. Deleting a page's stale ids moves the later records up, so the
    next page starts after the ids the page kept.
    """
    surplus = target.count() - len(kept_ids)
    deleted = offset = 0
    while deleted < surplus:
        ids = target.get(limit=page_size, offset=offset, include=[])["ids"]
        if not ids:
            break
        stale = [record_id for record_id in ids if record_id not in kept_ids]
        if stale:
            target.delete(ids=stale)
            deleted += len(stale)
        offset += len(ids) - len(stale)
    return deleted


def _write_batch(target: Collection, batch: RecordBatch, mirror: bool) -> None:
    """Upsert a batch; into an existing collection, also clear fields the source lacks."""
    batch = batch.filled()
    metadatas = list(batch.metadatas)
    if mirror:
        metadatas = _clear_stale_fields(target, batch, metadatas)
    target.upsert(
        ids=batch.ids,
        embeddings=batch.embeddings,
        metadatas=metadatas if any(m is not None for m in metadatas) else None,
        documents=batch.documents if _any_set(batch.documents) else None,
        uris=batch.uris if _any_set(batch.uris) else None,
    )


def _any_set(values: Iterable[Any]) -> bool:
    return any(v is not None for v in values)


def _clear_stale_fields(
    target: Collection, batch: RecordBatch, metadatas: list[dict[str, Any] | None]
) -> list[dict[str, Any] | None]:
    """Metadata that also deletes keys the target has and the source no longer has.

    Records whose document or uri must become empty are deleted first (upsert cannot clear
    them), so the upsert re-adds them.
    """
    current = target.get(ids=batch.ids, include=["metadatas", "documents", "uris"])
    position = {record_id: i for i, record_id in enumerate(batch.ids)}
    to_delete = []
    for j, record_id in enumerate(current["ids"]):
        i = position[record_id]
        if (batch.documents[i] is None and current["documents"][j] is not None) or (
            batch.uris[i] is None and current["uris"][j] is not None
        ):
            to_delete.append(record_id)
            continue
        stale = set(current["metadatas"][j] or {}) - set(metadatas[i] or {})
        if stale:
            metadatas[i] = {**(metadatas[i] or {}), **dict.fromkeys(stale)}
    if to_delete:
        target.delete(ids=to_delete)
    return metadatas
