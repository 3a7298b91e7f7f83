"""Parquet export and import of one collection, streamed in batches with bounded memory.

File layout written by `export_collection` (one row group per batch):

- ``id``: string, not null.
- ``document``: string, nullable.
- ``metadata``: string, nullable; each record's metadata as a JSON object. JSON rather than a
  Parquet struct because a struct unions keys across rows and coerces types (an int key that is
  a float in another row becomes a double; a bool and a str cannot share a field), while JSON keeps
  every value exactly: int (any size, e.g. 2**53 + 1) vs float vs bool vs str vs list, and they
  are read back exactly as written.
- ``embedding``: fixed_size_list<float32>[dimension]; the stored float32 values bit for bit.
- ``uri``: string, nullable.

File key-value metadata: ``huedb.format``, ``huedb.version``, ``huedb.collection``,
``huedb.space``, ``huedb.dimension``, ``huedb.rows``, ``huedb.configuration`` (JSON: the
configuration the collection echoes), ``huedb.schema`` (JSON: the schema it echoes; files
written before it was added lack it), ``huedb.ef_search_chosen`` (JSON true or false:
whether the user chose ``ef_search``, which the echoed configuration cannot tell; absent when
unknown, as for a Chroma server, and in files written before it was added),
``huedb.embedding_function`` (JSON), ``huedb.collection_metadata`` (JSON). A collection the
import creates from a file with a schema echoes the same configuration and schema as the
exported one, with the same ``ef_search`` choice (`huedb.ops.collection_definition`); from an
older file, it is created from the file's configuration as before.

`import_collection` also reads the files of the common pandas export loop of a Chroma collection
(``pandas.DataFrame({"id", "document", "metadata", "embedding"}).to_parquet``): ``metadata`` may
be a JSON string, a struct (null fields dropped per row; an all-null row is None) or a map;
``embedding`` may be a list, large_list or fixed_size_list of float32 or float64; ``document`` and
``uri`` are optional. Plural column names (``ids``, ``documents``...) are accepted too. Records are
written with `upsert`, so importing a file twice leaves the collection as after the first import
(like Chroma, upsert merges metadata key by key into a record that already exists).

Export reads the collection with `huedb.ops.pages.collection_pages`: from one read snapshot for
a store opened by this process (``--path``), so the file is exactly the collection at one moment
while writers keep going; over HTTP by checked pages that refuse to finish if a concurrent delete
would make them skip live records.

Integrity: every data page is written with a CRC-32 page checksum, and the ``huedb.*`` file
metadata with a SHA-256 digest (``huedb.metadata_sha256``). Import first reads the whole file
with page checksum verification and checks the digest; a corrupt file is refused before anything
is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from huedb.api.checks import checked_batch
from huedb.api.client import Client, local_engine
from huedb.api.collection import Collection
from huedb.api.collection_schema import sparse_embedding_targets
from huedb.api.types import CollectionModel
from huedb.api.validation import checked_metadata, widen_number_lists
from huedb.engine.engine import Engine
from huedb.engine.hnsw_config import collection_space
from huedb.errors import ChromaError, NotFoundError
from huedb.ops.collection_definition import (
    create_like,
    differences,
    ef_search_chosen,
    ef_search_difference,
)
from huedb.ops.pages import Page, collection_pages
from huedb.ops.progress import progress
from huedb.ops.store import refuse_inside_data
from huedb.process_ids import remove_left_by_dead_processes
from huedb.record_batch import RecordBatch
from huedb.sparse_vector import SparseVector
from huedb.version import __version__

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
KEY_FORMAT = "huedb.format"
KEY_VERSION = "huedb.version"
KEY_COLLECTION = "huedb.collection"
KEY_SPACE = "huedb.space"
KEY_DIMENSION = "huedb.dimension"
KEY_ROWS = "huedb.rows"
KEY_CONFIGURATION = "huedb.configuration"
KEY_SCHEMA = "huedb.schema"
KEY_EF_SEARCH_CHOSEN = "huedb.ef_search_chosen"
KEY_EMBEDDING_FUNCTION = "huedb.embedding_function"
KEY_COLLECTION_METADATA = "huedb.collection_metadata"
KEY_METADATA_SHA256 = "huedb.metadata_sha256"
SPACES = ("l2", "cosine", "ip")
CHECK_BATCH_ROWS = 2048  # rows decoded at a time by `check_file` (bounded memory)

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "ids"),
    "document": ("document", "documents"),
    "metadata": ("metadata", "metadatas"),
    "embedding": ("embedding", "embeddings"),
    "uri": ("uri", "uris"),
}


@dataclass
class ExportReport:
    """What `export_collection` wrote."""

    path: Path
    collection: str
    rows: int
    dimension: int | None
    space: str | None
    row_groups: int
    bytes: int
    seconds: float


@dataclass
class ImportReport:
    """What `import_collection` read and upserted."""

    path: Path
    collection: str
    rows: int
    dimension: int | None
    space: str | None
    created: bool
    batches: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


# -- export ----------------------------------------------------------------------------


def export_collection(
    collection: Collection,
    out: Path,
    batch_size: int = 5000,
    show_progress: bool | None = None,
) -> ExportReport:
    """Stream a collection into a Parquet file (row group per batch), written atomically.

    Refused inside the data directory of the store the collection was opened from.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.monotonic()
    out = Path(out)
    engine = getattr(collection._client, "engine", None)
    if isinstance(engine, Engine):
        refuse_inside_data(out, engine.path, "export file")
    model = _current_model(collection)  # the handle's may predate its first record
    configuration = dict(model.configuration_json or {})
    space = collection_space(configuration, collection.metadata)
    dimension = model.dimension
    total = collection.count()
    _remove_stale_temps(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer: pq.ParquetWriter | None = None
    rows = row_groups = 0
    bar = progress(total, f"export {collection.name}", enabled=show_progress)
    meta: dict[str, str] = {}
    try:
        for page in collection_pages(collection, batch_size):
            n = len(page)
            matrix = _page_matrix(page.embeddings, n)
            if dimension is None:
                dimension = matrix.shape[1]
            elif matrix.shape[1] != dimension:
                raise ValueError(
                    f"collection {collection.name!r} holds embeddings of dimension "
                    f"{matrix.shape[1]} and {dimension}"
                )
            if writer is None:
                meta = _file_metadata(collection, model, space, dimension)
                writer = _writer(tmp, export_schema(dimension, meta))
            writer.write_table(_page_table(page, matrix, writer.schema), row_group_size=n)
            rows += n
            row_groups += 1
            bar.update(n)
            del page, matrix  # free this page before the next one is read
        if writer is None:  # an empty collection
            meta = _file_metadata(collection, model, space, dimension)
            writer = _writer(tmp, export_schema(dimension, meta))
        meta[KEY_ROWS] = str(rows)
        closing = {KEY_ROWS: str(rows)}
        # Read after the records: keys of written metadata join the schema as they are
        # written, and a handle's model is the one it was opened with.
        schema = _current_model(collection).schema
        if schema is not None:
            closing[KEY_SCHEMA] = meta[KEY_SCHEMA] = json.dumps(schema)
        writer.add_key_value_metadata({**closing, KEY_METADATA_SHA256: metadata_digest(meta)})
        writer.close()
        writer = None
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if rows != total:
        log.info("exported %d rows of %r (%d counted before the read)", rows, model.name, total)
    report = ExportReport(
        path=out,
        collection=collection.name,
        rows=rows,
        dimension=dimension,
        space=space,
        row_groups=row_groups,
        bytes=out.stat().st_size,
        seconds=time.monotonic() - started,
    )
    log.info("exported %d rows of %r to %s", rows, collection.name, out)
    return report


def _remove_stale_temps(out: Path) -> None:
    """Temporary files of exports to `out` whose process is gone (`.<name>.<pid>.tmp`,
    left by an export that was killed)."""
    prefix = f".{out.name}."
    remove_left_by_dead_processes(
        out.parent.glob(f"{glob.escape(prefix)}*.tmp"),
        lambda path: path.name[len(prefix) : -len(".tmp")],
    )


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path, schema, compression="zstd", use_dictionary=False, write_page_checksum=True
    )


def metadata_digest(kv: dict[str, str]) -> str:
    """SHA-256 of a file's ``huedb.*`` metadata (except the digest itself), order-independent."""
    covered = {k: v for k, v in kv.items() if k.startswith("huedb.") and k != KEY_METADATA_SHA256}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()


def export_schema(dimension: int | None, metadata: dict[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of an exported file (a variable list when the dimension is unknown)."""
    embedding = (
        pa.list_(pa.float32()) if dimension is None else pa.list_(pa.float32(), int(dimension))
    )
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("document", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("embedding", embedding),
            pa.field("uri", pa.string()),
        ],
        metadata=metadata,
    )


def _file_metadata(
    collection: Collection,
    model: CollectionModel,
    space: str,
    dimension: int | None,
) -> dict[str, str]:
    configuration = dict(model.configuration_json or {})
    meta = {
        KEY_FORMAT: FORMAT_VERSION,
        KEY_VERSION: __version__,
        KEY_COLLECTION: collection.name,
        KEY_SPACE: space,
        KEY_DIMENSION: "" if dimension is None else str(dimension),
        KEY_CONFIGURATION: json.dumps(configuration, default=str),
        KEY_EMBEDDING_FUNCTION: json.dumps(_ef_identity(collection, configuration), default=str),
        KEY_COLLECTION_METADATA: json.dumps(model.metadata, default=str),
    }
    chosen = ef_search_chosen(collection)
    if chosen is not None:
        meta[KEY_EF_SEARCH_CHOSEN] = json.dumps(chosen)
    return meta


def _current_model(collection: Collection) -> CollectionModel:
    """The collection's model as stored now (not as its handle was opened)."""
    return collection._client.get_collection_by_id(str(collection.id))


def _ef_identity(collection: Collection, configuration: dict[str, Any]) -> Any:
    """The embedding function as configured, else the name and class of the attached object."""
    configured = configuration.get("embedding_function")
    if configured is not None:
        return configured
    ef = collection.embedding_function
    if ef is None:
        return None
    name = None
    name_fn = getattr(ef, "name", None)
    if callable(name_fn):
        with contextlib.suppress(Exception):
            name = name_fn()
    return {"name": name, "class": f"{type(ef).__module__}.{type(ef).__qualname__}"}


def _page_matrix(embeddings: Any, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise ValueError(f"expected {n} embeddings of one dimension, got shape {matrix.shape}")
    return np.ascontiguousarray(matrix)


def _page_table(page: Page, matrix: np.ndarray, schema: pa.Schema) -> pa.Table:
    n, dim = matrix.shape
    flat = pa.Array.from_buffers(pa.float32(), n * dim, [None, pa.py_buffer(matrix)])
    if pa.types.is_fixed_size_list(schema.field("embedding").type):
        embedding: pa.Array = pa.FixedSizeListArray.from_arrays(flat, dim)
    else:
        offsets = np.arange(0, (n + 1) * dim, dim, dtype=np.int32)
        embedding = pa.ListArray.from_buffers(
            pa.list_(pa.float32()), n, [None, pa.py_buffer(offsets)], children=[flat]
        )
    metadatas = page.metadatas
    columns = [
        string_array(page.ids),
        string_array(page.documents),
        string_array(
            [
                None if m is None else json.dumps(m, ensure_ascii=False, default=_json_value)
                for m in metadatas
            ]
        ),
        embedding,
        string_array(page.uris),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _json_value(value: Any) -> Any:
    """A metadata value `json` cannot write: a `SparseVector` (read over HTTP) as its wire
    dict."""
    if isinstance(value, SparseVector):
        return value.to_dict()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def string_array(values: list[str | None]) -> pa.Array:
    """A pyarrow string array built from buffers.

    `pa.array` on Python objects imports pandas lazily (about 50 MB of resident memory), which
    matters for the bounded-memory export; building the buffers directly avoids it.
    """
    n = len(values)
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("more than 2 GiB of text in one batch: use a smaller batch size")
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    null_count = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.StringArray.from_buffers(
        n,
        pa.py_buffer(offsets.astype(np.int32)),
        pa.py_buffer(b"".join(encoded)),
        bitmap,
        null_count,
    )


# -- import ----------------------------------------------------------------------------


@dataclass
class _Layout:
    """Which file columns hold which record field."""

    id: str
    embedding: str
    document: str | None
    metadata: str | None
    uri: str | None

    @classmethod
    def of(cls, schema: pa.Schema, path: Path) -> _Layout:
        names = set(schema.names)
        found: dict[str, str | None] = {}
        for key, aliases in COLUMN_ALIASES.items():
            found[key] = next((a for a in aliases if a in names), None)
        for required in ("id", "embedding"):
            if found[required] is None:
                raise ValueError(
                    f"{path}: no {required!r} column (columns: {', '.join(schema.names)})"
                )
        return cls(
            id=found["id"],  # type: ignore[arg-type]
            embedding=found["embedding"],  # type: ignore[arg-type]
            document=found["document"],
            metadata=found["metadata"],
            uri=found["uri"],
        )

    def columns(self) -> list[str]:
        return [c for c in (self.id, self.document, self.metadata, self.embedding, self.uri) if c]


def _open(path: Path) -> pq.ParquetFile:
    """A Parquet file whose page checksums (when written) are verified on every read."""
    return pq.ParquetFile(path, page_checksum_verification=True)


# The last file `check_file` passed, by its identity on disk and the batch size, and its
# dimension: `huedb import` into a new store checks the file before it creates the store,
# then `import_collection` asks again; the file is not read a second time unless it changed.
_last_checked: tuple[tuple[Any, ...], int | None] | None = None


def check_file(path: Path, batch_size: int = CHECK_BATCH_ROWS) -> int | None:
    """Read and check a whole file before anything is imported from it (`_check_file`);
    a file checked just before with the same batch size and unchanged is not read again."""
    global _last_checked
    try:
        st = Path(path).stat()
        identity = (
            str(Path(path).resolve()),
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            batch_size,
        )
    except OSError:
        identity = None
    if identity is not None and _last_checked is not None and _last_checked[0] == identity:
        return _last_checked[1]
    dimension = _check_file(path, batch_size)
    if identity is not None:
        _last_checked = (identity, dimension)
    return dimension


def _check_file(path: Path, batch_size: int) -> int | None:
    """Read and check a whole file before anything is imported from it.

    Verifies the page checksums and the huedb metadata digest, then decodes every record in
    batches of `batch_size` (the import's, so a batch is refused here when its upsert would
    be) and checks it as `upsert` would: string ids, one dimension, finite values, metadata,
    text fields, ids unique within a batch. Returns the records' dimension (the declared one
    for a file without records). Raises ValueError naming the file and the rows.
    """
    try:
        parquet = _open(path)
        kv = read_file_metadata(path)
    except (OSError, pa.ArrowException, EOFError) as exc:
        raise _corrupt(path, exc) from None
    digest = kv.get(KEY_METADATA_SHA256)
    if digest is not None and digest != metadata_digest(kv):
        raise _corrupt(path, "its huedb metadata does not match its checksum")
    _check_format(kv, path)
    layout = _Layout.of(parquet.schema_arrow, path)
    dimension = _file_dimension(kv, parquet.schema_arrow.field(layout.embedding).type, path)
    batches = parquet.iter_batches(batch_size=batch_size)  # every column: all checksums
    start = 0
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException, EOFError) as exc:
            raise _corrupt(path, exc) from None
        if batch is None:
            _check_unique_ids(path, layout.id)
            return dimension
        records = _decode_batch(batch, layout, path, start)
        if len(records):
            assert records.embeddings is not None  # decoding refuses rows without one
            batch_dim = records.embeddings.shape[1]
            if dimension is not None and batch_dim != dimension:
                raise ValueError(
                    f"{path}: embeddings of dimension {batch_dim} in a file of dimension "
                    f"{dimension} (rows from {start}); nothing was imported"
                )
            dimension = batch_dim
            _check_records(records, path, start)
        start += len(records)


def _check_format(kv: dict[str, str], path: Path) -> None:
    """Refuse a file of a huedb export format this huedb does not read (a newer one)."""
    found = kv.get(KEY_FORMAT)
    if found and found != FORMAT_VERSION:
        raise ValueError(
            f"{path} is in huedb's export format {found!r}; this huedb reads format "
            f"{FORMAT_VERSION}: upgrade huedb to import it; nothing was imported"
        )


def _check_unique_ids(path: Path, id_column: str) -> None:
    """Refuse a file holding one id twice, wherever the two rows are: batches upsert one
    after the other, so the later row would replace the earlier, and whether a file was
    refused would depend on the batch size (ids repeated within one batch are refused)."""
    ids = pq.read_table(path, columns=[id_column]).column(0)
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))[0].as_py()
    raise ValueError(
        f"{path}: id {repeated['values']!r} is in {repeated['counts']} rows; ids must be "
        "unique in a file; nothing was imported"
    )


def _corrupt(path: Path, reason: object) -> ValueError:
    return ValueError(f"{path} is corrupt or not a Parquet file ({reason}); nothing was imported")


def _check_records(records: RecordBatch, path: Path, start: int) -> None:
    """Refuse the records an upsert would refuse: the client's metadata checks, then the
    server's (`checked_batch`), and empty ids (the engine's)."""
    try:
        if "" in records.ids:
            raise ValueError("an id is empty")
        metadatas = records.metadatas
        if metadatas is not None:
            metadatas = [None if m is None else checked_metadata(m) for m in metadatas]
        checked_batch(
            RecordBatch(
                records.ids, records.embeddings, metadatas, records.documents, records.uris
            ),
            "upsert",
        )
    except (ValueError, TypeError, ChromaError) as exc:
        raise ValueError(
            f"{path}: rows {start} to {start + len(records) - 1}: {exc}; nothing was imported"
        ) from None


def read_file_metadata(path: Path) -> dict[str, str]:
    """The key-value metadata of a Parquet file, decoded (empty for foreign files)."""
    raw = pq.read_metadata(path).metadata or {}
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}


def target_collection_name(
    path: Path, collection_name: str | None = None, kv: dict[str, str] | None = None
) -> str:
    """The collection an import of `path` writes to: `collection_name`, else the one the
    file was exported from, else the file's stem (`kv`: the file's metadata, if read)."""
    if kv is None:
        kv = read_file_metadata(path)
    return collection_name or kv.get(KEY_COLLECTION) or Path(path).stem


def import_space(path: Path, space: str | None, kv: dict[str, str] | None = None) -> str | None:
    """The distance space of the file at `path` (its metadata `kv`), else the user's
    `space` (None: neither names one); ValueError for a space huedb does not know or one
    the file contradicts."""
    if space is not None and space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    file_space = (read_file_metadata(path) if kv is None else kv).get(KEY_SPACE) or None
    if space is not None and file_space is not None and space != file_space:
        raise ValueError(f"{path} was exported with space {file_space!r}, not {space!r}")
    return file_space or space


def import_collection(
    client: Client,
    path: Path,
    collection_name: str | None = None,
    batch_size: int = 5000,
    show_progress: bool | None = None,
    space: str | None = None,
) -> ImportReport:
    """Upsert the records of a Parquet file into a new or existing collection, in batches.

    The whole file is checked first (`check_file`): a corrupt file, or one holding a record
    the upsert would refuse, imports nothing and creates no collection. `space`
    is the distance of a collection the import creates, for files that carry none (the
    pandas export of Chroma); it must agree with the file's space when the file has one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.monotonic()
    path = Path(path)
    with contextlib.suppress(Exception):
        batch_size = min(batch_size, int(client.get_max_batch_size()))
    dimension = check_file(path, batch_size)
    parquet = _open(path)
    kv = read_file_metadata(path)
    name = target_collection_name(path, collection_name, kv)
    file_space = import_space(path, space, kv)
    warnings: list[str] = []
    declared_rows, num_rows = kv.get(KEY_ROWS), parquet.metadata.num_rows
    if declared_rows and declared_rows.isdigit() and int(declared_rows) != num_rows:
        msg = f"{path}: file metadata says {declared_rows} rows but it holds {num_rows}"
        log.warning(msg)
        warnings.append(msg)

    try:
        collection = client.get_collection(name)
        created = False
    except NotFoundError:
        collection = None
        created = True
    if collection is not None:
        _check_compatible(collection, name, file_space, dimension, path)
    else:
        if file_space is None:
            msg = (
                f"{path} carries no distance space: collection {name!r} is created with the "
                "default 'l2'; pass --space (cosine, ip, l2) if its vectors were searched "
                "with another"
            )
            log.warning(msg)
            warnings.append(msg)
        collection = _create(client, name, kv, file_space)
        for message in ef_search_difference(collection, _file_ef_search_chosen(kv)):
            log.warning(message)
            warnings.append(message)
    space = collection_space(collection.configuration_json, collection.metadata)

    # A huedb file holds each record as it was stored, sparse vectors included (a record
    # without one had none): written as they are into the collection made from its
    # definition, or one whose schema fills no key. Other files' records, and those going
    # into a collection of another schema, get what chromadb's client computes on upsert
    # (the schema's sparse vectors, e.g. BM25 of the documents, for records without them).
    as_stored = kv.get(KEY_FORMAT) and (created or not _fills_keys(collection))
    write = _stored_upsert(collection) if as_stored else _client_upsert(collection)
    rows = batches = 0
    bar = progress(parquet.metadata.num_rows, f"import {name}", enabled=show_progress)
    try:
        for records in read_batches(path, batch_size):
            write(records)
            rows += len(records)
            batches += 1
            bar.update(len(records))
    finally:
        bar.close()
    if created and rows == 0 and dimension is not None:
        _keep_dimension(client, collection, dimension)
    schema = _file_schema(kv)
    if created and schema is not None:
        configuration = _json_or_none(kv.get(KEY_CONFIGURATION))
        given = configuration if isinstance(configuration, dict) and configuration else None
        for message in differences(client, collection, schema, given):
            log.warning(message)
            warnings.append(message)
    log.info("imported %d rows from %s into %r", rows, path, name)
    return ImportReport(
        path=path,
        collection=name,
        rows=rows,
        dimension=dimension,
        space=space,
        created=created,
        batches=batches,
        seconds=time.monotonic() - started,
        warnings=warnings,
    )


def _keep_dimension(client: Client, collection: Collection, dimension: int) -> None:
    """Give a collection created from a file without records the dimension the file declares
    (its source had fixed it; huedb fixes it with the first vector written). Over HTTP the
    server has no call for it: the first record written fixes it there."""
    try:
        engine = local_engine(client)
    except TypeError:
        return
    engine.fix_dimension(str(collection.id), dimension)


def _file_dimension(kv: dict[str, str], embedding_type: pa.DataType, path: Path) -> int | None:
    declared = kv.get(KEY_DIMENSION)
    fixed = embedding_type.list_size if pa.types.is_fixed_size_list(embedding_type) else None
    dim = int(declared) if declared and declared.isdigit() else None
    if dim is not None and fixed is not None and dim != fixed:
        raise ValueError(
            f"{path}: file metadata says dimension {dim} but the embedding column has {fixed}"
        )
    return dim if dim is not None else fixed


def _stored_dimension(collection: Collection) -> int | None:
    """The dimension of a collection's records, looked up when the model does not say."""
    page = collection.get(limit=1, include=["embeddings"])
    if not page["ids"]:
        return None
    return int(np.asarray(page["embeddings"][0]).shape[-1])


def _dimension_message(name: str, have: int, file_dim: int, path: Path) -> str:
    return (
        f"dimension mismatch: collection {name!r} has dimension {have} but {path} has "
        f"dimension {file_dim}; import into a new collection (--collection NAME) instead"
    )


def _check_compatible(
    collection: Collection,
    name: str,
    file_space: str | None,
    file_dim: int | None,
    path: Path,
) -> None:
    """Refuse a space or dimension mismatch."""
    have_space = collection_space(collection.configuration_json, collection.metadata)
    if file_space is not None and file_space != have_space:
        raise ValueError(
            f"space mismatch: collection {name!r} uses space {have_space!r} but {path} was "
            f"exported with space {file_space!r}; import into a new collection instead"
        )
    have_dim = collection.get_model().dimension
    if have_dim is None:
        have_dim = _stored_dimension(collection)
    if have_dim is not None and file_dim is not None and have_dim != file_dim:
        raise ValueError(_dimension_message(name, have_dim, file_dim, path))


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        log.warning("ignoring file metadata that is not JSON: %.80s", text)
        return None


def _create(client: Client, name: str, kv: dict[str, str], space: str | None) -> Collection:
    """The collection a file describes: from its schema when it has one, else (older and
    foreign files) from its configuration or space."""
    metadata = _json_or_none(kv.get(KEY_COLLECTION_METADATA)) or None
    schema = _file_schema(kv)
    if schema is None:
        return client.create_collection(
            name, configuration=_creation_config(kv, space), metadata=metadata
        )
    return create_like(client, name, metadata, schema, _file_ef_search_chosen(kv))


def _file_schema(kv: dict[str, str]) -> dict[str, Any] | None:
    schema = _json_or_none(kv.get(KEY_SCHEMA))
    return schema if isinstance(schema, dict) else None


def _file_ef_search_chosen(kv: dict[str, str]) -> bool | None:
    """Whether the source's user chose `ef_search`; None when the file does not say."""
    chosen = _json_or_none(kv.get(KEY_EF_SEARCH_CHOSEN))
    return chosen if isinstance(chosen, bool) else None


def _creation_config(kv: dict[str, str], space: str | None) -> dict[str, Any] | None:
    """The configuration for a new collection: the file's, else just its space."""
    stored = _json_or_none(kv.get(KEY_CONFIGURATION))
    config: dict[str, Any] = {}
    if isinstance(stored, dict):
        for key in ("hnsw", "spann", "embedding_function"):
            if stored.get(key) is not None:
                config[key] = stored[key]
    if space is not None and not config.get("hnsw") and not config.get("spann"):
        config["hnsw"] = {"space": space}
    return config or None


def _decode_batch(batch: pa.RecordBatch, layout: _Layout, path: Path, start: int) -> RecordBatch:
    ids = batch.column(layout.id).to_pylist()
    for i, value in enumerate(ids):
        if not isinstance(value, str):
            raise ValueError(f"{path}: row {start + i} has id {value!r}; ids must be strings")
    embeddings = _embedding_matrix(batch.column(layout.embedding), ids, path)
    documents = batch.column(layout.document).to_pylist() if layout.document else None
    uris = batch.column(layout.uri).to_pylist() if layout.uri else None
    metadatas = None
    if layout.metadata:
        metadatas = [
            _metadata_value(v, ids[i], path)
            for i, v in enumerate(batch.column(layout.metadata).to_pylist())
        ]
    return RecordBatch(ids, embeddings, metadatas, documents, uris)


def _embedding_matrix(column: pa.Array, ids: list[str], path: Path) -> np.ndarray:
    """An (n, dim) float32 matrix from a list, large_list or fixed_size_list column."""
    kind = column.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise ValueError(f"{path}: embedding column has type {kind}; expected a list of floats")
    if not pa.types.is_floating(kind.value_type):
        raise ValueError(f"{path}: embedding values have type {kind.value_type}; expected floats")
    if column.null_count:
        row = column.is_null().to_pylist().index(True)
        raise ValueError(f"{path}: record {ids[row]!r} has no embedding")
    n = len(column)
    if pa.types.is_fixed_size_list(kind):
        dim = kind.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if n else 0
        if n and (lengths != dim).any():
            row = int(np.flatnonzero(lengths != dim)[0])
            raise ValueError(
                f"{path}: record {ids[row]!r} has an embedding of dimension {int(lengths[row])}, "
                f"others {dim}"
            )
    values = column.flatten()
    if values.null_count:
        raise ValueError(f"{path}: an embedding holds a null value")
    flat = values.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.astype(np.float32, copy=False).reshape(n, dim))


def _metadata_value(value: Any, record_id: str, path: Path) -> dict[str, Any] | None:
    """A record's metadata from a JSON string, a struct (a dict) or a map (key-value pairs)."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: metadata of {record_id!r} is not JSON: {e}") from None
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"{path}: metadata of {record_id!r} is not a JSON object")
        return widen_number_lists(value) or None
    if isinstance(value, list):
        value = dict(value)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: metadata of {record_id!r} has unsupported value {value!r}")
    cleaned = {k: v for k, v in value.items() if v is not None}
    return cleaned or None


def _stored_upsert(collection: Collection) -> Callable[[RecordBatch], None]:
    """Upserts of records as they are (sparse vectors rebuilt from their wire form), checked
    by the server, with no client-side embedding or sparse-vector filling."""
    target = str(collection.id)

    def write(records: RecordBatch) -> None:
        if records.metadatas is not None:
            metadatas = [None if m is None else checked_metadata(m) for m in records.metadatas]
            records = dataclasses.replace(records, metadatas=metadatas)
        collection._client.upsert(target, records)

    return write


def _fills_keys(collection: Collection) -> bool:
    """Whether the collection's schema fills metadata keys on writes (sparse indexes with
    an embedding function, e.g. BM25)."""
    return bool(sparse_embedding_targets(collection.get_model().schema))


def _client_upsert(collection: Collection) -> Callable[[RecordBatch], None]:
    """Upserts through the collection, as a chromadb client would write the records."""
    return lambda records: collection.upsert(**records.given(), ids=records.ids)


def read_batches(path: Path, batch_size: int = 5000) -> Iterator[RecordBatch]:
    """The records of a huedb or Chroma-pandas Parquet file, decoded and checked, in order."""
    path = Path(path)
    parquet = _open(path)
    layout = _Layout.of(parquet.schema_arrow, path)
    start = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=layout.columns()):
        records = _decode_batch(batch, layout, path, start)
        start += len(records)
        if len(records):
            yield records
