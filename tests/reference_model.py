"""A small pure-Python reference model of a chromadb 1.5.9 client.

The model keeps collections in dicts and answers queries with an exact float32 numpy
search. It reproduces Chroma's observable semantics (storage order, write merging,
filter rules, validation errors) closely enough to be compared call by call against
huedb (and against real chromadb) in the stateful test. Errors raised here carry the
same class *names* as Chroma's, which is how the test compares them.

It is the one model of Chroma's behaviour in the suite: `test_stateful.py` drives it call
by call, and `test_http_compat.py` asks it which records a get/query must return
(`ModelCollection.get`, `returned_metadata`, `distance`) for its fixed data set.

Only the argument shapes those tests generate are modelled: embeddings are always given
explicitly as lists of float lists, there is no embedding function, no images and no
sparse vectors; uris are not stored (only `returned_metadata` knows how they change what
Chroma returns).
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ChromaError",
    "DuplicateIDError",
    "InternalError",
    "InvalidArgumentError",
    "ModelClient",
    "ModelCollection",
    "NotFoundError",
    "distance",
    "returned_metadata",
]


class ChromaError(Exception):
    """Base class of the model's Chroma-named errors."""


class InvalidArgumentError(ChromaError):
    """Server-side validation failure (HTTP 400)."""


class NotFoundError(ChromaError):
    """Missing collection (HTTP 404)."""


class DuplicateIDError(ChromaError):
    """Duplicate ids inside one request (client-side)."""


class InternalError(ChromaError):
    """Internal error; raised locally when creating/renaming onto an existing name."""


_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_SPACES = ("l2", "ip", "cosine")
_COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
_WHERE_OPS = ("$eq", "$ne", "$in", "$nin", "$contains", "$not_contains", *_COMPARISONS)
_DOC_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")
_INCLUDE_ITEMS = ("documents", "embeddings", "metadatas", "distances", "uris", "data")
_LOOKAROUND_RE = re.compile(r"\(\?<?[=!]|\\[1-9]")

#: Chroma 1.5.9 quirk (off by default, huedb answers numerically): when a *float* where
#: operand meets an *int* metadata value, Chroma truncates the operand toward zero first,
#: so ``{"n": {"$gt": -0.5}}`` misses ``n=0`` and ``{"n": 1.5}`` matches ``n=1``.
#: Set to True only to validate the model against real chromadb.
CHROMA_TRUNCATES_FLOAT_OPERANDS = False

#: Chroma 1.5.9 quirk (off by default): ``modify()`` without a new name (metadata only, or
#: no arguments at all) on a deleted collection's handle silently succeeds instead of
#: raising NotFoundError.
CHROMA_MODIFY_METADATA_OF_DELETED_IS_NOOP = False

#: Chroma 1.5.9 quirk (off by default): a write rejected for an empty-string id still
#: fixes the collection's dimension when it had none.
CHROMA_REJECTED_WRITE_SETS_DIMENSION = False


# --------------------------------------------------------------------------- validation


def _valid_collection_name(name: Any) -> bool:
    """Chroma's collection-name rule (3-512 chars, no '..', not an IP address), or two such
    names joined by one '+' (a topology prefix)."""
    if isinstance(name, str) and "+" in name:
        topology, rest = name.split("+", 1)
        return (
            len(name) <= 512
            and "+" not in rest
            and all(_valid_collection_name(part) for part in (topology, rest))
        )
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate_collection_metadata(metadata: Any) -> None:
    """Create-time collection metadata rules (server side)."""
    if metadata is None:
        return
    if len(metadata) == 0:
        raise InvalidArgumentError("Metadata cannot be empty")
    for value in metadata.values():
        if value is None or not isinstance(value, (str, int, float, bool)):
            raise TypeError("Cannot convert Python object to MetadataValue")
    space = metadata.get("hnsw:space")
    if space is not None and space not in _SPACES:
        raise InvalidArgumentError(f"Invalid space: {space}")


def _validate_ids(ids: Any) -> list[str]:
    """Client-side id validation: non-empty list of unique str."""
    if not isinstance(ids, list):
        raise ValueError("Expected IDs to be a list")
    if len(ids) == 0:
        raise ValueError("Expected IDs to be a non-empty list")
    seen: set[str] = set()
    dups: set[str] = set()
    for i in ids:
        if not isinstance(i, str):
            raise ValueError(f"Expected ID to be a str, got {i}")
        (dups if i in seen else seen).add(i)
    if dups:
        raise DuplicateIDError(f"Expected IDs to be unique, found duplicates of: {dups}")
    return ids


def _validate_record_metadata(metadata: Any) -> None:
    """Client-side record metadata rules (None values allowed here)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValueError("Expected metadata to be a dict or None")
    if len(metadata) == 0:
        raise ValueError("Expected metadata to be a non-empty dict")
    for key, value in metadata.items():
        if key == "chroma:document":
            raise ValueError("reserved key chroma:document")
        if not isinstance(key, str):
            raise TypeError("Expected metadata key to be a str")
        if isinstance(value, list):
            if not value:
                raise ValueError("empty list metadata value")
            kind = _kind(value[0])
            if kind is None or any(
                _kind(x) != kind or type(x) is not type(value[0]) for x in value
            ):
                raise ValueError("mixed-type list metadata value")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError("bad metadata value")


def _client_where(where: Any) -> None:
    if not isinstance(where, dict):
        raise ValueError("Expected where to be a dict")
    if len(where) != 1:
        raise ValueError("Expected where to have exactly one operator")
    ((key, value),) = where.items()
    if not isinstance(key, str):
        raise ValueError("Expected where key to be a str")
    if key in ("$contains", "$not_contains"):
        raise ValueError("bad top-level where key")
    if key in ("$and", "$or"):
        if not isinstance(value, list) or len(value) <= 1:
            raise ValueError("$and/$or need a list of at least two clauses")
        for clause in value:
            _client_where(clause)
        return
    if key not in ("$in", "$nin") and not isinstance(value, (str, int, float, dict)):
        raise ValueError("Expected where value to be a str, int, float, or operator")
    if not isinstance(value, dict):
        return
    if len(value) != 1:
        raise ValueError("Expected operator expression to have exactly one operator")
    ((op, operand),) = value.items()
    if op in _COMPARISONS and not isinstance(operand, (int, float)):
        raise ValueError("comparison operand must be a number")
    if op in ("$in", "$nin") and not isinstance(operand, list):
        raise ValueError("$in/$nin operand must be a list")
    if op in ("$contains", "$not_contains"):
        if key == "#document" and not isinstance(operand, str):
            raise ValueError("#document operand must be a str")
        if not isinstance(operand, (str, int, float, bool)):
            raise ValueError("$contains operand must be a scalar")
    if op not in _WHERE_OPS:
        raise ValueError(f"unknown where operator {op}")
    if not isinstance(operand, (str, int, float, bool, list)):
        raise ValueError("bad where operand")
    if isinstance(operand, list) and (
        not operand or not all(isinstance(x, type(operand[0])) for x in operand)
    ):
        raise ValueError("list operand must be non-empty and homogeneous")


def _server_where(where: dict[str, Any]) -> None:
    ((key, value),) = where.items()
    if key in ("$and", "$or"):
        for clause in value:
            _server_where(clause)
        return
    if not isinstance(value, dict):
        return
    ((op, operand),) = value.items()
    if op in _COMPARISONS and isinstance(operand, bool):
        raise InvalidArgumentError("Invalid where clause")
    if op not in ("$in", "$nin") and isinstance(operand, list):
        raise InvalidArgumentError("Invalid where clause")


def _client_where_document(wd: Any) -> None:
    if not isinstance(wd, dict):
        raise ValueError("Expected where document to be a dict")
    if len(wd) != 1:
        raise ValueError("Expected where document to have exactly one operator")
    ((op, operand),) = wd.items()
    if op not in (*_DOC_OPS, "$and", "$or"):
        raise ValueError(f"unknown where_document operator {op}")
    if op in ("$and", "$or"):
        if not isinstance(operand, list) or len(operand) <= 1:
            raise ValueError("$and/$or need a list of at least two clauses")
        for clause in operand:
            _client_where_document(clause)
    elif not isinstance(operand, str) or not operand:
        raise ValueError("where_document operand must be a non-empty str")


def _server_where_document(wd: dict[str, Any]) -> None:
    ((op, operand),) = wd.items()
    if op in ("$and", "$or"):
        for clause in operand:
            _server_where_document(clause)
    elif op in ("$regex", "$not_regex"):
        _compile_regex(operand)


def _compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a pattern, rejecting what Rust's `regex` crate rejects."""
    if _LOOKAROUND_RE.search(pattern):
        raise InvalidArgumentError(f"unsupported regex {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidArgumentError(f"invalid regex {pattern!r}") from exc


def _validate_include(include: Any, disallowed: tuple[str, ...] = ()) -> None:
    if not isinstance(include, list):
        raise ValueError("Expected include to be a list")
    for item in include:
        if not isinstance(item, str) or item not in _INCLUDE_ITEMS:
            raise ValueError(f"bad include item {item!r}")
        if item in disallowed:
            raise ValueError(f"Include item cannot be one of {disallowed}")


def _validate_limit(value: Any) -> None:
    if value is not None and value < 0:
        raise OverflowError("can't convert negative int to unsigned")


def _to_vectors(embeddings: Any) -> list[np.ndarray]:
    """Normalise the embeddings argument like the client does (list of float32 rows)."""
    if embeddings is None:
        raise ValueError("embeddings are required")
    if len(embeddings) == 0:
        raise ValueError("Expected Embeddings to be non-empty")
    if _is_number(embeddings[0]):
        return [np.asarray(embeddings, dtype=np.float32)]
    return [np.asarray(row, dtype=np.float32) for row in embeddings]


def _check_lengths(**fields: Any) -> None:
    lengths = {k: len(v) for k, v in fields.items() if v is not None}
    if any(n == 0 for n in lengths.values()):
        raise ValueError("Non-empty lists are required")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Unequal lengths for fields: {lengths}")


def _check_documents(documents: Any) -> None:
    if documents is None:
        return
    for doc in documents:
        if doc is not None and not isinstance(doc, str):
            raise ValueError("Expected document to be a str")


# --------------------------------------------------------------------------- filtering


def _kind(v: Any) -> str | None:
    """Value kind for comparisons: bool is distinct from numbers; int == float."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    return None


def _operand_for(stored: Any, operand: Any) -> Any:
    """The operand as Chroma compares it against `stored` (see the quirk flag)."""
    if (
        CHROMA_TRUNCATES_FLOAT_OPERANDS
        and isinstance(operand, float)
        and isinstance(stored, int)
        and not isinstance(stored, bool)
    ):
        return math.trunc(operand)
    return operand


def _scalar_eq(stored: Any, operand: Any) -> bool:
    operand = _operand_for(stored, operand)
    return _kind(stored) is not None and _kind(stored) == _kind(operand) and stored == operand


def _match_field(metadata: dict[str, Any] | None, key: str, op: str, operand: Any) -> bool:
    present = metadata is not None and key in metadata
    stored = metadata[key] if present else None
    if op == "$eq":
        return present and not isinstance(stored, list) and _scalar_eq(stored, operand)
    if op == "$ne":
        return not _match_field(metadata, key, "$eq", operand)
    if op == "$in":
        return (
            present and not isinstance(stored, list) and any(_scalar_eq(stored, x) for x in operand)
        )
    if op == "$nin":
        return not _match_field(metadata, key, "$in", operand)
    if op == "$contains":
        return present and isinstance(stored, list) and any(_scalar_eq(x, operand) for x in stored)
    if op == "$not_contains":
        return not _match_field(metadata, key, "$contains", operand)
    # $gt/$gte/$lt/$lte: numeric fields only.
    if not present or _kind(stored) != "num":
        return False
    operand = _operand_for(stored, operand)
    if op == "$gt":
        return stored > operand
    if op == "$gte":
        return stored >= operand
    if op == "$lt":
        return stored < operand
    return stored <= operand


def _match_where(where: dict[str, Any], metadata: dict[str, Any] | None, doc: str | None) -> bool:
    ((key, value),) = where.items()
    if key == "$and":
        return all(_match_where(w, metadata, doc) for w in value)
    if key == "$or":
        return any(_match_where(w, metadata, doc) for w in value)
    op, operand = next(iter(value.items())) if isinstance(value, dict) else ("$eq", value)
    if key == "#document":
        return _match_where_document({op: operand}, doc)
    return _match_field(metadata, key, op, operand)


def _match_where_document(wd: dict[str, Any], doc: str | None) -> bool:
    ((op, operand),) = wd.items()
    if op == "$and":
        return all(_match_where_document(w, doc) for w in operand)
    if op == "$or":
        return any(_match_where_document(w, doc) for w in operand)
    if op == "$contains":
        return doc is not None and operand in doc
    if op == "$not_contains":
        return doc is None or operand not in doc
    if op == "$regex":
        return doc is not None and _compile_regex(operand).search(doc) is not None
    return doc is None or _compile_regex(operand).search(doc) is None


# --------------------------------------------------------------------------- state


@dataclass
class _Record:
    embedding: np.ndarray
    metadata: dict[str, Any] | None
    document: str | None


@dataclass
class _CollectionState:
    id: int
    name: str
    metadata: dict[str, Any] | None
    space: str
    dimension: int | None = None
    records: dict[str, _Record] = field(default_factory=dict)


class ModelClient:
    """In-memory stand-in for a chromadb client (one tenant, one database)."""

    def __init__(self) -> None:
        self._by_name: dict[str, _CollectionState] = {}
        self._ids = itertools.count(1)

    # -- collections ----------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        configuration: dict[str, Any] | None = None,
        get_or_create: bool = False,
    ) -> ModelCollection:
        """Create a collection; InternalError if the name exists (unless get_or_create)."""
        if metadata is not None and any(
            v is None or not isinstance(v, (str, int, float, bool)) for v in metadata.values()
        ):
            raise TypeError("Cannot convert Python object to MetadataValue")
        if not _valid_collection_name(name):
            raise InvalidArgumentError(f"Validation error: name: invalid name {name!r}")
        _validate_collection_metadata(metadata)
        space = "l2"
        if metadata is not None and "hnsw:space" in metadata:
            space = metadata["hnsw:space"]
        hnsw = (configuration or {}).get("hnsw") or {}
        if "space" in hnsw:
            if hnsw["space"] not in _SPACES:
                raise InvalidArgumentError(f"Invalid space: {hnsw['space']}")
            space = hnsw["space"]
        if get_or_create and name in self._by_name:
            return ModelCollection(self, self._by_name[name])
        if name in self._by_name:
            raise InternalError(f"Collection [{name}] already exists")
        state = _CollectionState(next(self._ids), name, _copy_meta(metadata), space)
        self._by_name[name] = state
        return ModelCollection(self, state)

    def get_or_create_collection(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> ModelCollection:
        """Return the existing collection unchanged, or create it."""
        return self.create_collection(name, metadata, configuration, get_or_create=True)

    def get_collection(self, name: str) -> ModelCollection:
        """Look a collection up by name; NotFoundError if missing."""
        if name not in self._by_name:
            raise NotFoundError(f"Collection [{name}] does not exist")
        return ModelCollection(self, self._by_name[name])

    def delete_collection(self, name: str) -> None:
        """Delete a collection by name; NotFoundError if missing."""
        if name not in self._by_name:
            raise NotFoundError(f"Collection [{name}] does not exist")
        del self._by_name[name]

    def list_collection_names(self) -> list[str]:
        """Names of all collections (sorted; Chroma's own order is by random UUID)."""
        return sorted(self._by_name)

    def count_collections(self) -> int:
        """Number of collections."""
        return len(self._by_name)

    def reset(self) -> bool:
        """Drop everything."""
        self._by_name.clear()
        return True

    def _alive(self, state: _CollectionState) -> bool:
        return self._by_name.get(state.name) is state


def _copy_meta(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is None:
        return None
    return {k: list(v) if isinstance(v, list) else v for k, v in metadata.items()}


class ModelCollection:
    """Handle on a model collection; stale handles raise NotFoundError like Chroma's."""

    def __init__(self, client: ModelClient, state: _CollectionState) -> None:
        self._client = client
        self._state = state

    @property
    def name(self) -> str:
        """Current collection name."""
        return self._state.name

    @property
    def metadata(self) -> dict[str, Any] | None:
        """Collection metadata as stored at the time the handle was refreshed."""
        return _copy_meta(self._state.metadata)

    @property
    def space(self) -> str:
        """Distance space of the collection."""
        return self._state.space

    @property
    def dimension(self) -> int | None:
        """Dimension fixed by the first write, or None."""
        return self._state.dimension

    def _live(self) -> _CollectionState:
        if not self._client._alive(self._state):
            raise NotFoundError(f"Collection [{self._state.name}] does not exist")
        return self._state

    # -- writes ---------------------------------------------------------------------

    def _prepare_write(
        self,
        ids: Any,
        embeddings: Any,
        metadatas: Any,
        documents: Any,
        *,
        embeddings_required: bool,
        none_values_ok: bool,
    ) -> tuple[_CollectionState, list[np.ndarray] | None]:
        """Run the client-side then server-side checks shared by add/upsert/update."""
        ids = [ids] if isinstance(ids, str) else ids
        vectors = None
        if embeddings is not None or embeddings_required:
            vectors = _to_vectors(embeddings)
        _check_lengths(ids=ids, embeddings=vectors, metadatas=metadatas, documents=documents)
        _check_documents(documents)
        _validate_ids(ids)
        for metadata in metadatas or []:
            _validate_record_metadata(metadata)
        # Server side (the Rust bindings): conversion errors first.
        if not none_values_ok:
            for metadata in metadatas or []:
                if metadata is not None and any(v is None for v in metadata.values()):
                    raise TypeError("Cannot convert Python object to MetadataValue")
        for metadata in metadatas or []:
            for key in metadata or {}:
                if key == "" or key[0] in "#$":
                    raise InvalidArgumentError("Invalid metadata at index 0")
        if vectors is not None:
            if any(not np.all(np.isfinite(v)) for v in vectors):
                raise InvalidArgumentError("Embeddings must not contain NaN or Infinity values")
            if len({v.shape[0] for v in vectors}) > 1:
                raise InvalidArgumentError("Inconsistent dimensions in provided embeddings")
        state = self._live()
        if vectors is not None:
            dim = vectors[0].shape[0]
            if state.dimension is not None and state.dimension != dim:
                raise InvalidArgumentError(
                    f"Collection expecting embedding with dimension of {state.dimension}, got {dim}"
                )
            if CHROMA_REJECTED_WRITE_SETS_DIMENSION and state.dimension is None:
                state.dimension = dim
        if any(i == "" for i in ids):
            raise InvalidArgumentError("Empty ID, ID must have at least one character")
        return state, vectors

    @staticmethod
    def _fix_dimension(state: _CollectionState, vectors: list[np.ndarray] | None) -> None:
        """The first write that stores a vector fixes the dimension.

        Deliberate huedb difference: Chroma also fixes it on an update whose ids are all
        missing, i.e. a write that stored nothing.
        """
        if vectors and state.dimension is None:
            state.dimension = vectors[0].shape[0]

    def add(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
    ) -> None:
        """Insert new ids; existing ids are silently left untouched."""
        state, vectors = self._prepare_write(
            ids, embeddings, metadatas, documents, embeddings_required=True, none_values_ok=False
        )
        assert vectors is not None
        ids = [ids] if isinstance(ids, str) else ids
        for n, rid in enumerate(ids):
            if rid in state.records:
                continue
            metadata = metadatas[n] if metadatas is not None else None
            document = documents[n] if documents is not None else None
            state.records[rid] = _Record(vectors[n].copy(), _copy_meta(metadata), document)
            self._fix_dimension(state, vectors)

    def upsert(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
    ) -> None:
        """Update existing ids (merge) and insert new ones (None metadata values dropped)."""
        state, vectors = self._prepare_write(
            ids, embeddings, metadatas, documents, embeddings_required=True, none_values_ok=True
        )
        assert vectors is not None
        ids = [ids] if isinstance(ids, str) else ids
        for n, rid in enumerate(ids):
            metadata = metadatas[n] if metadatas is not None else None
            document = documents[n] if documents is not None else None
            if rid in state.records:
                self._apply_update(state.records[rid], vectors[n], metadata, document)
            else:
                merged = {k: v for k, v in (metadata or {}).items() if v is not None}
                state.records[rid] = _Record(
                    vectors[n].copy(), _copy_meta(merged) or None, document
                )
        self._fix_dimension(state, vectors)

    def update(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
    ) -> None:
        """Update existing ids in place; missing ids are silently ignored."""
        state, vectors = self._prepare_write(
            ids, embeddings, metadatas, documents, embeddings_required=False, none_values_ok=True
        )
        ids = [ids] if isinstance(ids, str) else ids
        for n, rid in enumerate(ids):
            if rid not in state.records:
                continue
            self._fix_dimension(state, vectors)
            self._apply_update(
                state.records[rid],
                vectors[n] if vectors is not None else None,
                metadatas[n] if metadatas is not None else None,
                documents[n] if documents is not None else None,
            )

    @staticmethod
    def _apply_update(
        record: _Record,
        vector: np.ndarray | None,
        metadata: dict[str, Any] | None,
        document: str | None,
    ) -> None:
        if vector is not None:
            record.embedding = vector.copy()
        if metadata is not None:
            merged = dict(record.metadata or {})
            for key, value in metadata.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = list(value) if isinstance(value, list) else value
            record.metadata = merged or None
        if document is not None:
            record.document = document

    def delete(
        self,
        ids: Any = None,
        where: Any = None,
        where_document: Any = None,
    ) -> dict[str, int]:
        """Delete by ids and/or filters; returns {"deleted": n} with Chroma's counting."""
        if ids is None and where is None and where_document is None:
            raise ValueError("At least one of ids, where, or where_document must be provided")
        ids = [ids] if isinstance(ids, str) else ids
        if ids is not None:
            _validate_ids(ids)
        if where is not None:
            _client_where(where)
        if where_document is not None:
            _client_where_document(where_document)
        if where is not None:
            _server_where(where)
        if where_document is not None:
            _server_where_document(where_document)
        state = self._live()
        matched = self._select(state, ids, where, where_document)
        for rid in matched:
            del state.records[rid]
        if where is None and where_document is None:
            return {"deleted": len(ids)}
        return {"deleted": len(matched)}

    def modify(self, name: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Rename and/or replace the collection metadata wholesale."""
        if metadata is not None:
            _validate_record_metadata(metadata)
            if "hnsw:space" in metadata:
                raise ValueError("Changing the distance function is not supported")
        if metadata is not None and any(isinstance(v, list) for v in metadata.values()):
            raise TypeError("Cannot convert Python object to MetadataValue")
        if name is not None and not _valid_collection_name(name):
            raise InvalidArgumentError(f"Validation error: name: invalid name {name!r}")
        deleted = not self._client._alive(self._state)
        if name is None and deleted and CHROMA_MODIFY_METADATA_OF_DELETED_IS_NOOP:
            return
        state = self._live()
        if name is not None and name != state.name and name in self._client._by_name:
            raise InternalError("UNIQUE constraint failed: collections.name")
        if name is not None:
            del self._client._by_name[state.name]
            state.name = name
            self._client._by_name[name] = state
        if metadata is not None:
            # Replaces wholesale; None values are dropped (all dropped -> None).
            state.metadata = {k: v for k, v in metadata.items() if v is not None} or None

    # -- reads ----------------------------------------------------------------------

    def count(self) -> int:
        """Number of records."""
        return len(self._live().records)

    @staticmethod
    def _select(
        state: _CollectionState,
        ids: list[str] | None,
        where: dict[str, Any] | None,
        where_document: dict[str, Any] | None,
    ) -> list[str]:
        """Ids matching all filters, in storage order."""
        wanted = set(ids) if ids is not None else None
        out = []
        for rid, rec in state.records.items():
            if wanted is not None and rid not in wanted:
                continue
            if where is not None and not _match_where(where, rec.metadata, rec.document):
                continue
            if where_document is not None and not _match_where_document(
                where_document, rec.document
            ):
                continue
            out.append(rid)
        return out

    def get(
        self,
        ids: Any = None,
        where: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Any = None,
        include: Any = None,
    ) -> dict[str, Any]:
        """Records matching the filters in storage order, sliced by offset/limit."""
        include = ["metadatas", "documents"] if include is None else include
        ids = [ids] if isinstance(ids, str) else ids
        if ids is not None:
            _validate_ids(ids)
        if where is not None:
            _client_where(where)
        if where_document is not None:
            _client_where_document(where_document)
        _validate_include(include, disallowed=("distances",))
        _validate_limit(limit)
        _validate_limit(offset)
        if where is not None:
            _server_where(where)
        if where_document is not None:
            _server_where_document(where_document)
        state = self._live()
        selected = self._select(state, ids, where, where_document)
        start = offset or 0
        selected = selected[start:] if limit is None else selected[start : start + limit]
        recs = [state.records[r] for r in selected]
        emb = None
        if "embeddings" in include:
            emb = np.array([r.embedding for r in recs]) if recs else np.array([])
        return {
            "ids": selected,
            "embeddings": emb,
            "documents": [r.document for r in recs] if "documents" in include else None,
            "metadatas": [_copy_meta(r.metadata) for r in recs] if "metadatas" in include else None,
            "uris": [None for _ in recs] if "uris" in include else None,
            "data": None,
            "included": list(include),
        }

    def peek(self, limit: int = 10) -> dict[str, Any]:
        """First `limit` records with embeddings, metadatas and documents."""
        return self.get(limit=limit, include=["metadatas", "documents", "embeddings"])

    def query(
        self,
        query_embeddings: Any = None,
        ids: Any = None,
        n_results: int = 10,
        where: Any = None,
        where_document: Any = None,
        include: Any = None,
    ) -> dict[str, Any]:
        """Exact KNN after filtering. Adds "_ranking": every candidate as (id, distance)."""
        include = ["metadatas", "documents", "distances"] if include is None else include
        queries = _to_vectors(query_embeddings)
        if where is not None:
            _client_where(where)
        if where_document is not None:
            _client_where_document(where_document)
        _validate_include(include)
        if not isinstance(n_results, int):
            raise ValueError("Expected requested number of results to be a int")
        if n_results <= 0:
            raise TypeError(f"Number of requested results {n_results}, cannot be negative")
        ids = [ids] if isinstance(ids, str) else ids
        if where is not None:
            _server_where(where)
        if where_document is not None:
            _server_where_document(where_document)
        if any(not np.all(np.isfinite(q)) for q in queries):
            # Chroma itself answers with NaN distances; rejecting is the correct answer.
            raise InvalidArgumentError("Query embeddings must not contain NaN or Infinity")
        state = self._live()
        if state.dimension is not None:
            for q in queries:
                if q.shape[0] != state.dimension:
                    raise InvalidArgumentError(
                        f"Collection expecting embedding with dimension of {state.dimension}, "
                        f"got {q.shape[0]}"
                    )
        candidates = self._select(state, ids, where, where_document)
        result: dict[str, Any] = {
            key: [] if key in include else None
            for key in ("ids", "embeddings", "documents", "metadatas", "distances", "uris")
        }
        result["ids"] = []
        result["_ranking"] = []
        for q in queries:
            dists = [self._distance(state.space, q, state.records[r].embedding) for r in candidates]
            order = sorted(range(len(candidates)), key=lambda i: dists[i])
            ranking = [(candidates[i], dists[i]) for i in order]
            result["_ranking"].append(ranking)
            top = ranking[:n_results]
            recs = [state.records[r] for r, _ in top]
            result["ids"].append([r for r, _ in top])
            if "distances" in include:
                result["distances"].append([d for _, d in top])
            if "documents" in include:
                result["documents"].append([r.document for r in recs])
            if "metadatas" in include:
                result["metadatas"].append([_copy_meta(r.metadata) for r in recs])
            if "embeddings" in include:
                result["embeddings"].append(np.array([r.embedding for r in recs]))
            if "uris" in include:
                result["uris"].append([None for _ in recs])
        result["data"] = None
        result["included"] = list(include)
        return result

    @staticmethod
    def _distance(space: str, q: np.ndarray, v: np.ndarray) -> float:
        return distance(space, q, v)


def distance(space: str, q: Any, v: Any) -> float:
    """Chroma's distances in float32: squared l2, 1 - dot, 1 - cosine."""
    q = np.asarray(q, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if space == "l2":
        diff = q - v
        return float(np.dot(diff, diff))
    if space == "ip":
        return float(np.float32(1.0) - np.dot(q, v))
    qn = q / np.float32(math.sqrt(float(np.dot(q, q))) + 1e-30)
    vn = v / np.float32(math.sqrt(float(np.dot(v, v))) + 1e-30)
    return float(np.float32(1.0) - np.dot(qn, vn))


def returned_metadata(metadata: dict[str, Any] | None, uri: str | None) -> dict[str, Any] | None:
    """The metadata Chroma returns for a record: a record with a uri but no metadata comes
    back with `{}` (the uri is stored in the metadata row)."""
    if metadata is None and uri is not None:
        return {}
    return metadata
