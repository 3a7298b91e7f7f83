"""Server-side checks: everything a raw request can carry, checked in one place.

`LocalAPI` (in-process clients and the HTTP server alike) calls these before the engine:
a write becomes a checked `RecordBatch`, a read's ids and filters one compiled
`RecordFilter` (compiled once per call). Errors are Chroma's server-side ones
(`InvalidArgumentError` and friends); the engine only checks what needs the stored state
(a missing collection, the fixed dimension, empty ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from huedb.api.validation import finite_or_error, not_a_string
from huedb.engine.filters import MAX_FILTER_DEPTH, RecordFilter, compile_filter
from huedb.engine.record_values import UINT32_MAX, check_sparse_vector
from huedb.errors import (
    BatchSizeExceededError,
    DuplicateIDError,
    InternalError,
    InvalidArgumentError,
)
from huedb.record_batch import (
    DOCUMENT_META_KEY,
    FIELDS,
    INT64_MAX,
    INT64_MIN,
    URI_META_KEY,
    RecordBatch,
    plain_metadatas,
)
from huedb.sparse_vector import SparseVector

MAX_BATCH_SIZE = 5461
WriteOp = Literal["add", "update", "upsert"]


def checked_batch(batch: RecordBatch, op: WriteOp) -> RecordBatch:
    """The batch of an add, update or upsert, checked (vectors required but for update)."""
    plain = batch.metadatas is None or plain_metadatas(batch.metadatas)
    if op == "add" and not plain:
        for m in batch.metadatas or ():
            _reject_none_values(m)
    ids = batch.ids
    check_ids(ids)
    if len(ids) == 0:
        raise InvalidArgumentError("Expected IDs to be a non-empty list")
    embeddings = batch.embeddings
    if embeddings is None and op != "update":
        raise InvalidArgumentError("Embeddings are required for add and upsert")
    for name in FIELDS:
        value = getattr(batch, name)
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
    if not plain:
        for i, m in enumerate(batch.metadatas or ()):
            check_record_metadata(m, i)
    for v in batch.documents or ():
        if v is not None and not isinstance(v, str):
            raise InvalidArgumentError(f"Expected documents to be strings, got {v!r}")
    for v in batch.uris or ():
        if v is not None and not isinstance(v, str):  # in-process only: the wire types them
            raise not_a_string("uris", v)
    checked = RecordBatch(
        ids=list(ids),
        embeddings=embeddings,
        metadatas=None if batch.metadatas is None else list(batch.metadatas),
        documents=None if batch.documents is None else list(batch.documents),
        uris=None if batch.uris is None else list(batch.uris),
    )
    return checked if plain else _move_reserved_keys(checked, op)


def _move_reserved_keys(batch: RecordBatch, op: WriteOp) -> RecordBatch:
    """The batch with the string values of `chroma:document` and `chroma:uri` moved to the
    record's document and uri, as Chroma reads them (shared/chroma-compat.md, thirteenth
    session): the `documents` / `uris` value given for the record wins; in an update or
    upsert the key is also deleted (a patch), so no earlier value of it stays in metadata.

    A None or non-string `chroma:uri` stays in the metadata patch: in an update it clears
    the record's uri (`RecordBatch.uri_changes`), as in Chroma; a non-string one is then
    stored as metadata (Chroma stores it, filters on it, returns no uri for it).
    Refused (InvalidArgumentError): a non-string or None `chroma:document`
    (Chroma's server accepts it, then its compactor panics and every later write to the
    database fails).
    """
    metadatas = batch.metadatas
    if not metadatas or not any(
        isinstance(m, dict) and (DOCUMENT_META_KEY in m or URI_META_KEY in m) for m in metadatas
    ):
        return batch
    count = len(batch.ids)
    metadatas = list(metadatas)
    documents = None if batch.documents is None else list(batch.documents)
    uris = None if batch.uris is None else list(batch.uris)
    patch = op != "add"
    for i, metadata in enumerate(metadatas):
        if not isinstance(metadata, dict) or (
            DOCUMENT_META_KEY not in metadata and URI_META_KEY not in metadata
        ):
            continue
        m = dict(metadata)
        if DOCUMENT_META_KEY in m:
            document = m.pop(DOCUMENT_META_KEY)
            if not isinstance(document, str):
                raise InvalidArgumentError(
                    f"Invalid metadata at index {i}: {DOCUMENT_META_KEY} holds the record's "
                    f"document and must be a string, got {document!r}"
                )
            if documents is None:
                documents = [None] * count
            if documents[i] is None:
                documents[i] = document
            if patch:
                m[DOCUMENT_META_KEY] = None
        if URI_META_KEY in m:
            uri = m[URI_META_KEY]
            given = uris is not None and uris[i] is not None
            if given or isinstance(uri, str):
                if uris is None:
                    uris = [None] * count
                if not given:
                    uris[i] = uri
                if patch:
                    m[URI_META_KEY] = None
                else:
                    del m[URI_META_KEY]
        metadatas[i] = m or None
    return RecordBatch(batch.ids, batch.embeddings, metadatas, documents, uris)


def checked_filter(ids: Any, where: Any, where_document: Any) -> RecordFilter:
    """The ids and filters of a get, query or delete, checked and compiled once."""
    if ids is not None:
        check_ids(ids, allow_duplicates=True)
    return compile_filter(ids, where, where_document)


def check_batch_size(count: int) -> None:
    """Refuse a write larger than the batch size the server advertises."""
    if count > MAX_BATCH_SIZE:
        raise BatchSizeExceededError(
            f"Batch size {count} exceeds maximum batch size {MAX_BATCH_SIZE}"
        )


def check_page(limit: int | None, offset: int | None) -> None:
    """A list's limit and offset in a query string: unsigned 32-bit integers, refused in the
    words of Chroma's server (its query-string parser's) otherwise."""
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and not 0 <= value <= UINT32_MAX:
            too_large = "number too large to fit in target type"
            reason = "invalid digit found in string" if value < 0 else too_large
            raise InvalidArgumentError(f"Failed to deserialize query string: {name}: {reason}")


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
        if isinstance(value, SparseVector):
            check_sparse_vector(value, index)
            continue
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


def plain_collection_metadata(metadata: Any) -> Any:
    """Collection metadata as chromadb's in-process client converts it: numpy scalars become
    Python values, integers beyond int64 floats; a key that is not a string is its
    TypeError. Anything else is left for `check_collection_metadata`."""
    if not isinstance(metadata, dict):
        return metadata
    plain = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise not_a_string("metadata", key)
        if isinstance(value, np.generic):
            value = value.item()
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            value = float(value)
        plain[key] = value
    return plain


def check_collection_metadata(
    metadata: Any, allow_none: bool = False, what: str = "metadata"
) -> None:
    """Collection metadata: None or a non-empty object of scalars (or None values, if
    allowed); `what` names the field in messages (Chroma's `new_metadata` for a modify)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidArgumentError("Collection metadata must be an object")
    if not metadata:
        raise InvalidArgumentError(f"Validation error: {what}: Metadata cannot be empty")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"Validation error: {what}: Metadata key cannot be empty")
        if key[0] in "#$":
            raise InvalidArgumentError(
                f"Validation error: {what}: Metadata key cannot start with '#' or '$': {key}"
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


# -- filters on disabled indexes (a collection's schema) --------------------------------

# Chroma's names of a filter value's type (Rust `MetadataValueType`, as its errors print it),
# and the schema's value type and inverted index for each.
_FILTER_TYPES = {
    bool: ("Bool", "bool", "bool_inverted_index"),
    int: ("Int", "int", "int_inverted_index"),
    float: ("Float", "float", "float_inverted_index"),
    str: ("Str", "string", "string_inverted_index"),
}
_LOGICAL = ("$and", "$or")
_SET_OPS = ("$in", "$nin")
_DOCUMENT_KEY = "#document"
# A `where` condition on `#document` with one of these is a document filter in Chroma (its
# `where` parser); any other compares `#document` as a metadata key.
_DOCUMENT_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")


def _document_filter(key: Any, value: Any) -> bool:
    """Whether a `where` condition is a document filter written in `where`."""
    return (
        key == _DOCUMENT_KEY
        and isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in _DOCUMENT_OPS
    )


def compares_document_key(where: Any, depth: int = 1) -> bool:
    """Whether a `where` compares `#document` with a string as a metadata key (a bare
    string, `$eq`, `$ne`, `$in`, `$nin`): Chroma refuses that, the key having no string
    index, where huedb's engine reads a `#document` condition with a string operand as a
    document filter (and fails to compile it with these operators). Conditions nested
    deeper than the engine compiles are not looked at (that `where` is refused as nested
    too deeply)."""
    if not isinstance(where, dict) or depth > MAX_FILTER_DEPTH:
        return False
    for key, value in where.items():
        if key in _LOGICAL:
            children = value if isinstance(value, list) else ()
            if any(compares_document_key(child, depth + 1) for child in children):
                return True
            continue
        if key != _DOCUMENT_KEY or _document_filter(key, value):
            continue
        operand = value
        if isinstance(value, dict) and len(value) == 1:
            op, operand = next(iter(value.items()))
            if op in _SET_OPS:
                operand = operand[0] if isinstance(operand, list) and operand else None
        if isinstance(operand, str):
            return True
    return False


@dataclass(frozen=True)
class FilterPolicy:
    """Which `where` keys and types, and whether `where_document`, a schema refuses.

    Chroma refuses (InvalidArgumentError) a metadata filter whose key and value type have
    their inverted index disabled (the key's own setting, else the schema's defaults; so a
    string compared with `#document`, whose string index is always off), and any document
    filter, in `where_document` or in `where` (`{"#document": {"$contains": ...}}`), when
    full-text search on `#document` is disabled.
    """

    defaults: dict[str, Any]
    keys: dict[str, Any]
    fts_enabled: bool
    everything_enabled: bool

    @classmethod
    def of(cls, schema: dict[str, Any]) -> FilterPolicy:
        defaults = schema.get("defaults") or {}
        keys = dict(schema.get("keys") or {})
        document = keys.get(_DOCUMENT_KEY) or {}
        fts = ((document.get("string") or {}).get("fts_index")) or (
            (defaults.get("string") or {}).get("fts_index")
        )
        fts_enabled = fts is None or bool(fts.get("enabled"))

        def all_on(types: dict[str, Any]) -> bool:
            return all(
                index is None or index.get("enabled")
                for value_type, name in (
                    ("string", "string_inverted_index"),
                    ("int", "int_inverted_index"),
                    ("float", "float_inverted_index"),
                    ("bool", "bool_inverted_index"),
                )
                if value_type in types
                for index in [(types[value_type] or {}).get(name)]
            )

        # The `#` keys are left out: `#document`'s string index is always off, but only a
        # `where` the engine cannot compile compares it (`compares_document_key`).
        metadata_keys = [t for k, t in keys.items() if not k.startswith("#")]
        everything = fts_enabled and all_on(defaults) and all(all_on(t) for t in metadata_keys)
        return cls(defaults, keys, fts_enabled, everything)

    def check(self, where: Any, where_document: Any) -> None:
        """Raise Chroma's error for the first refused part of the filters (metadata first)."""
        if self.everything_enabled:
            return
        if where:
            self.check_where(where)
        if where_document and not self.fts_enabled:
            raise _fts_disabled()

    def check_where(self, where: Any, depth: int = 1) -> None:
        """Raise Chroma's error for the first refused condition of a `where`, in order
        (down to the depth the engine compiles)."""
        if not isinstance(where, dict) or depth > MAX_FILTER_DEPTH:
            return
        for key, value in where.items():
            if key in _LOGICAL:
                for child in value if isinstance(value, list) else ():
                    self.check_where(child, depth + 1)
                continue
            if _document_filter(key, value):
                if not self.fts_enabled:
                    raise _fts_disabled()
                continue
            operand = value
            if isinstance(value, dict) and value:
                op, operand = next(iter(value.items()))
                if op in _SET_OPS:
                    operand = operand[0] if isinstance(operand, list) and operand else None
            kind = _FILTER_TYPES.get(type(operand))
            if kind is not None:
                self._check_key(key, *kind)

    def _check_key(self, key: str, type_name: str, value_type: str, index_name: str) -> None:
        types = self.keys.get(key)
        if types is None or types.get(value_type) is None:
            types = self.defaults
        index = (types.get(value_type) or {}).get(index_name)
        if index is None:
            raise InternalError(
                f"Schema is malformed: missing index configuration for metadata key '{key}' "
                f"with type '{value_type}'"
            )
        if not index.get("enabled"):
            raise InvalidArgumentError(
                f"Cannot filter using metadata key '{key}' with type '{type_name}' because "
                "indexing is disabled"
            )


def _fts_disabled() -> InvalidArgumentError:
    return InvalidArgumentError(
        "Cannot filter using full-text search because FTS indexing is disabled"
    )
