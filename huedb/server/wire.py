"""Request bodies of Chroma's v2 API and their conversion to `LocalAPI` arguments."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from huedb.api.json_shape import non_finite_path
from huedb.api.requests import (
    CreateCollectionRequest,
    DeleteRequest,
    GetRequest,
    ModifyCollectionRequest,
    QueryRequest,
)
from huedb.api.validation import widened_list
from huedb.engine.record_values import UINT32_MAX, check_sparse_vector
from huedb.errors import InvalidArgumentError, InvalidBodyError, serde_unexpected
from huedb.record_batch import RecordBatch
from huedb.sparse_vector import (
    SPARSE_VECTOR_TYPE_VALUE,
    TYPE_KEY,
    trusted_sparse_vector,
)

IncludeName = Literal["documents", "embeddings", "metadatas", "distances", "uris"]
DEFAULT_N_RESULTS = 10


def _serde_unexpected(value: Any) -> str:
    """How serde refuses a JSON value for a u32 (`invalid type: string "1"`; a negative
    integer is an invalid value, not type)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"invalid value: integer `{value}`"
    return f"invalid type: {serde_unexpected(value)}"


def _count(value: Any) -> Any:
    """A JSON integer in 0..2**32-1, as Chroma's u32 counts take (no strings, bools or
    floats such as `1.0`, nothing larger), refused with serde's words."""
    if type(value) is int and 0 <= value <= UINT32_MAX:
        return value
    raise PydanticCustomError(
        "u32_type", "{unexpected}, expected u32", {"unexpected": _serde_unexpected(value)}
    )


Count = Annotated[int, BeforeValidator(_count)]


def _untagged_enum(name: str) -> WrapValidator:
    """Refuse a value fitting none of a field's shapes as serde refuses one of Chroma's
    untagged enums (embeddings: float arrays or base64 strings), with one message."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "untagged_enum",
                "data did not match any variant of untagged enum {name}",
                {"name": name},
            ) from None

    return WrapValidator(validate)


class _Body(BaseModel):
    # strict, as Chroma's serde: JSON ints fit float fields, but no string, bool or float
    # is converted to a number (nor a string or number to a bool)
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class CreateTenant(_Body):
    name: str


class CreateDatabase(_Body):
    name: str


class CreateCollection(_Body):
    name: str
    metadata: dict[str, Any] | None = None
    configuration: dict[str, Any] | None = None
    collection_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    get_or_create: bool = False

    def to_request(self, tenant: str, database: str) -> CreateCollectionRequest:
        """This body as the request to create it in `tenant`/`database`."""
        return CreateCollectionRequest(
            self.name,
            self.metadata,
            self.configuration,
            self.get_or_create,
            tenant,
            database,
            self.collection_schema,
        )


class CreateAlias(_Body):
    name: str
    collection: str


class UpdateAlias(_Body):
    collection: str


class ForkCollection(_Body):
    new_name: str


class UpdateCollection(_Body):
    new_name: str | None = None
    new_metadata: dict[str, Any] | None = None
    new_configuration: dict[str, Any] | None = None

    def to_request(self) -> ModifyCollectionRequest:
        """This body as a `ModifyCollectionRequest`."""
        return ModifyCollectionRequest(self.new_name, self.new_metadata, self.new_configuration)


class _WriteRecords(_Body):
    def to_batch(self, metadata_enum: str = "MetadataValue") -> RecordBatch:
        """The records of this body, vectors decoded; `metadata_enum` names the metadata
        value type of Chroma's server in refusals (update and upsert:
        "UpdateMetadataValue")."""
        return RecordBatch(
            ids=self.ids,
            embeddings=embeddings_matrix(self.embeddings),
            metadatas=record_metadatas(self.metadatas, metadata_enum),
            documents=self.documents,
            uris=self.uris,
        )


class AddRecords(_WriteRecords):
    ids: list[str]
    embeddings: Annotated[list[list[float] | str], _untagged_enum("EmbeddingsPayload")]
    metadatas: list[dict[str, Any] | None] | None = None
    documents: list[str | None] | None = None
    uris: list[str | None] | None = None


class UpdateRecords(_WriteRecords):
    ids: list[str]
    embeddings: Annotated[
        list[list[float] | str | None] | None, _untagged_enum("UpdateEmbeddingsPayload")
    ] = None
    metadatas: list[dict[str, Any] | None] | None = None
    documents: list[str | None] | None = None
    uris: list[str | None] | None = None


class GetRecords(_Body):
    ids: list[str] | None = None
    where: dict[str, Any] | None = None
    where_document: dict[str, Any] | None = None
    limit: Count | None = None
    offset: Count | None = None
    include: list[IncludeName] = Field(default_factory=lambda: ["documents", "metadatas"])

    def to_request(self) -> GetRequest:
        """What this body asks for."""
        return GetRequest(
            self.ids, self.where, self.where_document, self.limit, self.offset, list(self.include)
        )


class QueryRecords(_Body):
    ids: list[str] | None = None
    query_embeddings: list[list[float]]
    n_results: Count | None = DEFAULT_N_RESULTS
    where: dict[str, Any] | None = None
    where_document: dict[str, Any] | None = None
    # Chroma's server default (its Python client lists metadatas first)
    include: list[IncludeName] = Field(
        default_factory=lambda: ["documents", "metadatas", "distances"]
    )

    def to_request(self) -> QueryRequest:
        """What this body asks for, the query vectors decoded."""
        return QueryRequest(
            query_matrix(self.query_embeddings),
            DEFAULT_N_RESULTS if self.n_results is None else self.n_results,
            self.ids,
            self.where,
            self.where_document,
            list(self.include),
        )


class DeleteRecords(_Body):
    ids: list[str] | None = None
    where: dict[str, Any] | None = None
    where_document: dict[str, Any] | None = None
    limit: Count | None = None

    def to_request(self) -> DeleteRequest:
        """What this body asks to delete."""
        return DeleteRequest(self.ids, self.where, self.where_document, self.limit)


def record_metadatas(metadatas: list[Any] | None, enum: str = "MetadataValue") -> list[Any] | None:
    """Record metadatas of a write body as Chroma's server parses them: lists of ints and
    floats read as floats, lists of other mixes refused (422), sparse vector values
    (objects) decoded."""
    if metadatas is None:
        return None
    _refuse_at("metadatas", _record_metadata_path(metadatas))
    return [
        {key: _metadata_value(value, i, key, enum) for key, value in m.items()}
        if isinstance(m, dict) and any(isinstance(v, dict | list) for v in m.values())
        else m
        for i, m in enumerate(metadatas)
    ]


LIST_ITEM_TYPES = (bool, int, float, str)


def _refuse_at(field: str, path: str | None) -> None:
    """Refuse the NaN or infinite number at `path` of `field`, if any, as Chroma's server
    refuses the body (400, its JSON parser takes no `NaN` or `Infinity`, and no number
    beyond a double's range): pydantic's parser, the fast path's, takes them, and metadata
    would then be stored without that key or with null. (The other routes' parser refuses
    them: `strict_json`.)"""
    if path is not None:
        raise InvalidArgumentError(
            f"Failed to parse the request body as JSON: {field}{path}: NaN and infinite "
            "numbers are not JSON numbers"
        )


def _record_metadata_path(metadatas: list[Any]) -> str | None:
    """`non_finite_path` of a write's metadatas, one loop over their values (a batch's
    metadata is scanned on every write: ~0.25 ms per 1,000 one-key records); `x - x` is 0.0
    for every finite float, NaN for NaN and the infinities."""
    for i, metadata in enumerate(metadatas):
        if type(metadata) is not dict:
            inner = non_finite_path(metadata)
            if inner is not None:
                return f"[{i}]{inner}"
            continue
        for key, v in metadata.items():
            kind = type(v)
            if kind is float:
                if v - v != 0.0:
                    return f"[{i}].{key}"
            elif kind is list:
                for j, item in enumerate(v):
                    if type(item) is float and item - item != 0.0:
                        return f"[{i}].{key}[{j}]"
            elif kind is dict:
                inner = non_finite_path(v)
                if inner is not None:
                    return f"[{i}].{key}{inner}"
    return None


def _metadata_value(value: Any, index: int, key: str, enum: str) -> Any:
    """A metadata value; a list holds items of one JSON type (bool, integer, float or
    string), ints and floats together read as floats (`widened_list`); an object must be a
    sparse vector as Chroma's server parses one: `#type` absent or "sparse_vector", integer
    `indices` in 0..2**32-1, number `values`, `tokens` strings or null, other keys ignored
    (422 otherwise); then checked (400)."""
    if isinstance(value, list):
        value = widened_list(value)
        kinds = {type(v) for v in value}
        if len(kinds) > 1 or not kinds <= set(LIST_ITEM_TYPES):
            raise _not_a_metadata_value(index, key, enum)
        return value
    if not isinstance(value, dict):
        return value
    indices, values, tokens = value.get("indices"), value.get("values"), value.get("tokens")
    parsed = (
        value.get(TYPE_KEY, SPARSE_VECTOR_TYPE_VALUE) == SPARSE_VECTOR_TYPE_VALUE
        and isinstance(indices, list)
        and all(type(i) is int and 0 <= i <= UINT32_MAX for i in indices)
        and isinstance(values, list)
        and all(type(x) in (int, float) for x in values)
        and (tokens is None or (isinstance(tokens, list) and all(type(t) is str for t in tokens)))
    )
    if not parsed:
        raise _not_a_metadata_value(index, key, enum)
    vector = trusted_sparse_vector(indices, values, tokens)
    check_sparse_vector(vector, index)
    return vector


def _not_a_metadata_value(index: int, key: str, enum: str) -> InvalidBodyError:
    return InvalidBodyError(
        "Failed to deserialize the JSON body into the target type: "
        f"metadatas[{index}].{key}: data did not match any variant of untagged enum {enum}"
    )


def embeddings_matrix(values: list[Any] | None) -> np.ndarray | None:
    """Decode a list of JSON float arrays or base64 float32 strings into an n x d matrix."""
    if values is None:
        return None
    if any(v is None for v in values):
        if all(v is None for v in values):
            return None
        raise InvalidArgumentError("Embeddings must be all given or all null in one request")
    if not values:
        return np.empty((0, 0), dtype=np.float32)
    strings = [isinstance(v, str) for v in values]
    if all(strings):
        rows = [_decode_base64(v) for v in values]
    elif not any(strings):
        rows = [np.asarray(v, dtype=np.float32) for v in values]
    else:
        raise InvalidArgumentError("Embeddings must be all base64 strings or all float arrays")
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise InvalidArgumentError("Inconsistent dimensions in provided embeddings")
    if 0 in dims:
        raise InvalidArgumentError("Embeddings must have at least one dimension")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)


def _decode_base64(text: str) -> np.ndarray:
    """One base64 float32 (little-endian) embedding, refused with Chroma's messages."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError(f"Invalid base64 string: {exc}") from None
    if len(raw) % 4:
        raise InvalidArgumentError(
            f"Invalid byte length: {len(raw)} bytes cannot be converted to f32 values "
            "(must be divisible by 4)"
        )
    vector = np.frombuffer(raw, dtype="<f4")
    finite = np.isfinite(vector)
    if not finite.all():
        index = int(np.argmin(finite))
        raise InvalidArgumentError(
            f"Non-finite float value at embedding index {index}: {_rust_f32(vector[index])}"
        )
    return vector


def _rust_f32(value: np.float32) -> str:
    """A non-finite f32 as Rust displays it."""
    if np.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"


def query_matrix(values: list[list[float]]) -> np.ndarray:
    """Query vectors as an n x d float32 matrix."""
    if not values:
        raise InvalidArgumentError("query_embeddings must not be empty")
    matrix = embeddings_matrix(values)
    assert matrix is not None
    return matrix
