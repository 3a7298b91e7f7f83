"""The index configurations of a collection `Schema`, as chromadb 1.5 defines them.

Pydantic models with chromadb's fields, defaults and client-side checks (the same
`ValidationError`s and messages), so `import huedb as chromadb` builds the same schemas.
"""

from __future__ import annotations

from inspect import signature
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, field_validator, model_validator
from pydantic_core import PydanticCustomError

from huedb.embedding_functions import DefaultEmbeddingFunction
from huedb.execution.expression import Key

__all__ = [
    "BoolInvertedIndexConfig",
    "FloatInvertedIndexConfig",
    "FtsIndexConfig",
    "HnswIndexConfig",
    "IndexConfig",
    "IntInvertedIndexConfig",
    "SpannIndexConfig",
    "SparseVectorIndexConfig",
    "StringInvertedIndexConfig",
    "VectorIndexConfig",
]

DOCUMENT_KEY = "#document"
EMBEDDING_KEY = "#embedding"


def _protocol_call(self: Any, input: Any) -> Any:  # noqa: A002
    """The parameters chromadb's embedding function protocols give `__call__`."""


def _refuse_unknown_fields(cls: type[BaseModel], data: Any, allowed: tuple[str, ...]) -> Any:
    """chromadb's check of a config's keyword arguments: names outside `allowed` fail."""
    if not isinstance(data, dict):
        return data
    unknown = [name for name in data if name not in allowed]
    if not unknown:
        return data
    if len(unknown) == 1:
        message = f"'{unknown[0]}' is not a valid field for {cls.__name__}. "
    else:
        names = ", ".join(f"'{name}'" for name in unknown)
        message = f"Invalid fields for {cls.__name__}: {names}. "
    raise PydanticCustomError("invalid_field", message, {"invalid_fields": unknown})


def _check_call_signature(function: Any, protocol: str, hint: str = "") -> None:
    """chromadb's check that an embedding function's `__call__` takes `(self, input)`."""
    got = signature(function.__class__.__call__).parameters.keys()
    expected = signature(_protocol_call).parameters.keys()
    if got == expected:
        return
    raise ValueError(
        f"Expected {protocol}.__call__ to have the following signature: {expected}, got {got}\n"
        "Please see https://docs.trychroma.com/guides/embeddings for details of the "
        f"{protocol} interface.\n{hint}"
    )


_DENSE_HINT = (
    "Please note the recent change to the EmbeddingFunction interface: "
    "https://docs.trychroma.com/deployment/migration#migration-to-0.4.16---november-7,-2023 \n"
)


def _source_key(value: Any) -> str | None:
    """A `source_key` given as a str or a `Key`; `#` keys other than `#document` fail."""
    if value is None:
        return None
    if isinstance(value, Key):
        value = value.name
    elif not isinstance(value, str):
        raise ValueError(f"source_key must be str or Key, got {type(value).__name__}")
    if value.startswith("#") and value != DOCUMENT_KEY:
        raise ValueError(
            "source_key cannot begin with '#'. "
            "The only valid key starting with '#' is Key.DOCUMENT or '#document'."
        )
    return value


class FtsIndexConfig(BaseModel):
    """Full-text (and regex) index on `#document`; no settings."""

    model_config = {"extra": "forbid"}


class StringInvertedIndexConfig(BaseModel):
    """Inverted index of string metadata values; no settings."""

    model_config = {"extra": "forbid"}


class IntInvertedIndexConfig(BaseModel):
    """Inverted index of int metadata values; no settings."""

    model_config = {"extra": "forbid"}


class FloatInvertedIndexConfig(BaseModel):
    """Inverted index of float metadata values; no settings."""

    model_config = {"extra": "forbid"}


class BoolInvertedIndexConfig(BaseModel):
    """Inverted index of bool metadata values; no settings."""

    model_config = {"extra": "forbid"}


class HnswIndexConfig(BaseModel):
    """HNSW settings of the vector index (unset fields keep the server's defaults)."""

    ef_construction: int | None = None
    max_neighbors: int | None = None
    ef_search: int | None = None
    num_threads: int | None = None
    batch_size: int | None = None
    sync_threshold: int | None = None
    resize_factor: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _refuse_unknown_fields(cls, data, tuple(cls.model_fields))


_SPANN_ACCEPTED = (
    "search_nprobe",
    "search_rng_factor",
    "search_rng_epsilon",
    "nreplica_count",
    "write_nprobe",
    "write_rng_factor",
    "write_rng_epsilon",
    "split_threshold",
    "num_samples_kmeans",
    "initial_lambda",
    "reassign_neighbor_count",
    "merge_threshold",
    "num_centers_to_merge_to",
    "ef_construction",
    "ef_search",
    "max_neighbors",
    "center_drift_threshold",
    "quantize",
)
"""Names chromadb accepts for SPANN; only the declared fields are kept (the rest dropped)."""


class SpannIndexConfig(BaseModel):
    """SPANN settings of the vector index (Chroma's hosted index; huedb runs HNSW)."""

    search_nprobe: int | None = None
    write_nprobe: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    max_neighbors: int | None = None
    reassign_neighbor_count: int | None = None
    split_threshold: int | None = None
    merge_threshold: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _refuse_unknown_fields(cls, data, _SPANN_ACCEPTED)


class VectorIndexConfig(BaseModel):
    """The dense vector index: space, embedding function, source key, HNSW or SPANN."""

    model_config = {"arbitrary_types_allowed": True, "extra": "forbid"}

    space: Literal["cosine", "l2", "ip"] | None = None
    embedding_function: Any | None = DefaultEmbeddingFunction()
    source_key: str | None = None
    hnsw: HnswIndexConfig | None = None
    spann: SpannIndexConfig | None = None

    @field_validator("source_key", mode="before")
    @classmethod
    def _check_source_key(cls, value: Any) -> str | None:
        return _source_key(value)

    @field_validator("embedding_function", mode="before")
    @classmethod
    def _check_function(cls, value: Any) -> Any:
        if value is None:
            return None
        if not callable(value):
            raise ValueError("embedding_function must be callable or None")
        _check_call_signature(value, "EmbeddingFunction", _DENSE_HINT)
        return value


class SparseVectorIndexConfig(BaseModel):
    """A sparse vector index on one key: its embedding function, source key, and whether
    queries weigh terms by inverse document frequency (`bm25`)."""

    model_config = {"arbitrary_types_allowed": True}

    embedding_function: Any | None = None
    source_key: str | None = None
    bm25: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _refuse_unknown_fields(
            cls, data, ("embedding_function", "source_key", "bm25", "algorithm")
        )

    @field_validator("source_key", mode="before")
    @classmethod
    def _check_source_key(cls, value: Any) -> str | None:
        return _source_key(value)

    @field_validator("embedding_function", mode="before")
    @classmethod
    def _check_function(cls, value: Any) -> Any:
        if value is None:
            return None
        if not callable(value):
            raise ValueError(
                "embedding_function must be a callable SparseEmbeddingFunction or None"
            )
        _check_call_signature(value, "SparseEmbeddingFunction")
        return value


IndexConfig: TypeAlias = (
    FtsIndexConfig
    | VectorIndexConfig
    | SparseVectorIndexConfig
    | StringInvertedIndexConfig
    | IntInvertedIndexConfig
    | FloatInvertedIndexConfig
    | BoolInvertedIndexConfig
)
