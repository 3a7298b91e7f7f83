"""Public data types: results, includes, metadata and the embedding-function protocol."""

from __future__ import annotations

import uuid
import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypedDict, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from huedb.api import collection_schema

# Schema, its index configurations and SearchResult live here too in chromadb.api.types.
from huedb.api.cmek import Cmek as Cmek
from huedb.api.embedding_arrays import check_array_rows
from huedb.api.index_configs import BoolInvertedIndexConfig as BoolInvertedIndexConfig
from huedb.api.index_configs import FloatInvertedIndexConfig as FloatInvertedIndexConfig
from huedb.api.index_configs import FtsIndexConfig as FtsIndexConfig
from huedb.api.index_configs import HnswIndexConfig as HnswIndexConfig
from huedb.api.index_configs import IntInvertedIndexConfig as IntInvertedIndexConfig
from huedb.api.index_configs import SpannIndexConfig as SpannIndexConfig
from huedb.api.index_configs import SparseVectorIndexConfig as SparseVectorIndexConfig
from huedb.api.index_configs import StringInvertedIndexConfig as StringInvertedIndexConfig
from huedb.api.index_configs import VectorIndexConfig as VectorIndexConfig
from huedb.api.schema_builder import Schema as Schema
from huedb.embedding_functions import DefaultEmbeddingFunction as DefaultEmbeddingFunction
from huedb.execution.read_level import ReadLevel as ReadLevel
from huedb.search.result import SearchResult as SearchResult
from huedb.sparse_vector import SparseVector, validate_sparse_vectors
from huedb.sparse_vector import SparseVectors as SparseVectors  # as chromadb.api.types has

ID = str
IDs = list[ID]
MetadataValue = (
    str | int | float | bool | SparseVector | list[str] | list[int] | list[float] | list[bool]
)
Metadata = dict[str, MetadataValue]
Metadatas = list[Metadata]
# chromadb's update metadata: None deletes a key.
UpdateMetadata = Mapping[str, MetadataValue | None]
CollectionMetadata = dict[str, Any]
UpdateCollectionMetadata = UpdateMetadata
Document = str
Documents = list[Document]
URI = str
URIs = list[URI]
Image = NDArray[Any]
Images = list[Image]
Embedding = NDArray[np.float32]
Embeddings = list[Embedding]
# What an embedding function embeds (chromadb's `Embeddable`), and its type parameter.
Embeddable = Documents | Images
D = TypeVar("D", bound=Embeddable, contravariant=True)
Space = Literal["cosine", "l2", "ip"]
Where = dict[str, Any]
WhereDocument = dict[str, Any]
IncludeItem = Literal["documents", "embeddings", "metadatas", "distances", "uris", "data"]
Include = list[IncludeItem]
T = TypeVar("T")
OneOrMany = T | list[T]  # chromadb's: one item, or a list of them
# What a data loader returns for a batch of URIs (chromadb's `Loadable`), and its type.
Loadable = list[Image | None]
L = TypeVar("L", covariant=True, bound=Loadable)


class DataLoader(Protocol[L]):
    """chromadb's data-loader protocol: the items behind URIs (a collection's
    `data_loader=`, which `add(uris=...)` and `query(query_uris=...)` use)."""

    def __call__(self, uris: Sequence[URI | None]) -> L: ...


INCLUDE_ITEMS: tuple[str, ...] = (
    "documents",
    "embeddings",
    "metadatas",
    "distances",
    "uris",
    "data",
)
DEFAULT_GET_INCLUDE: list[str] = ["metadatas", "documents"]
DEFAULT_QUERY_INCLUDE: list[str] = ["metadatas", "documents", "distances"]
SPACES: tuple[str, ...] = ("l2", "ip", "cosine")


class GetResult(TypedDict):
    ids: list[ID]
    embeddings: Any
    documents: list[Document | None] | None
    uris: list[str | None] | None
    data: Any
    metadatas: list[Metadata | None] | None
    included: list[str]


class QueryResult(TypedDict):
    ids: list[list[ID]]
    embeddings: Any
    documents: list[list[Document | None]] | None
    uris: list[list[str | None]] | None
    data: Any
    metadatas: list[list[Metadata | None]] | None
    distances: list[list[float]] | None
    included: list[str]


class DeleteResult(TypedDict):
    deleted: int


@dataclass(frozen=True)
class IndexingStatus:
    """Chroma's indexing status: how many records the ANN index serves; then huedb's
    recall target, the recall@10 measured on the graph (None until measured), the
    ef_search graph searches use, and its source ("configuration", "recall_target" or
    "default")."""

    num_indexed_ops: int
    num_unindexed_ops: int
    total_ops: int
    op_indexing_progress: float
    recall_target: float | None = None
    recall: float | None = None
    ef_search: int | None = None
    ef_search_source: str | None = None


@dataclass(frozen=True)
class UserIdentity:
    """Chroma's `UserIdentity`: who the client is, and the tenant and databases it may use
    (`["*"]`: all of the tenant's)."""

    user_id: str
    tenant: str | None = None
    databases: list[str] | None = None
    attributes: dict[str, Any] | None = None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_embeddings(result: Any) -> Embeddings:
    """An embedding function's output as chromadb hands it on: a list of 1-d numpy arrays
    (Python numbers as float32), with chromadb's refusals and messages (those of
    `normalize_embeddings` and `validate_embeddings`, as `huedb.api.validation` checks
    embeddings given to a write, which imports this module)."""
    rows: Any = None
    if isinstance(result, np.ndarray) and len(result) and result.ndim in (1, 2):
        rows = [result] if result.ndim == 1 else list(result)
    elif isinstance(result, list) and result:
        first = result[0]
        if _is_number(first):
            rows = [np.array(result, dtype=np.float32)]
        elif isinstance(first, np.ndarray):
            rows = result
        elif isinstance(first, list) and _is_number(first[0]):  # [[]]: IndexError, as chromadb
            rows = [np.array(row, dtype=np.float32) for row in result]
    if rows is None:
        if result is not None and len(result) == 0:
            raise ValueError(
                f"Expected Embeddings to be non-empty list or numpy array, got {result}"
            )
        raise ValueError(
            "Expected embeddings to be a list of floats or ints, a list of lists, a numpy "
            f"array, or a list of numpy arrays, got {result}"
        )
    check_array_rows(rows)
    return cast(Embeddings, rows)


def _check_calls(cls: type, check: Any) -> None:
    """Make `cls.__call__` hand on its output through `check` (refusing None), as chromadb
    wraps an embedding function subclass's `__call__`."""
    own_call = cls.__call__

    def __call__(self: Any, input: Any) -> Any:
        result = own_call(self, input)
        assert result is not None, f"{type(self).__name__}.__call__ returned None"
        return check(result)

    cls.__call__ = __call__  # type: ignore[method-assign]


def _with_retries(call: Any, input: Any, retry_kwargs: dict[str, Any]) -> Any:
    """`call(input)` retried as chromadb's `embed_with_retries` does: by tenacity's `retry`
    with the given options (`stop=`, `wait=`, ...); without tenacity installed, by
    tenacity's default (try again until it succeeds), which takes no options."""
    try:
        from tenacity import retry
    except ImportError:
        if retry_kwargs:
            raise ImportError(
                "embed_with_retries options are tenacity's: pip install tenacity"
            ) from None
        while True:
            try:
                return call(input)
            except Exception:  # noqa: BLE001 - tenacity's default retries on any error
                continue
    return retry(**retry_kwargs)(call)(input)


class EmbeddingFunction(Protocol[D]):
    """chromadb's embedding-function protocol: `__call__` embeds a batch (documents, or
    images for `EmbeddingFunction[Images]`); a named function (`name`, `get_config`,
    `build_from_config`) is recorded by its collection and, once registered with
    `@register_embedding_function`, rebuilt when the collection is opened without it.

    A subclass inherits chromadb's defaults: no name (a "legacy" function, recorded
    without identity), the l2 space, `embed_query` = `__call__`; and its `__call__`'s
    output is checked and handed on as a list of numpy arrays, as in chromadb::

        class MyEmbeddingFunction(EmbeddingFunction[Documents]):
            def __init__(self) -> None: ...
            def __call__(self, input: Documents) -> Embeddings: ...
    """

    @abstractmethod
    def __call__(self, input: D) -> Embeddings: ...

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        _check_calls(cls, _as_embeddings)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """chromadb asks subclasses to define their own `__init__` (a DeprecationWarning)."""
        warnings.warn(
            f"The class {type(self).__name__} does not implement __init__. "
            "This will be required in a future version.",
            DeprecationWarning,
            stacklevel=2,
        )

    def embed_query(self, input: D) -> Embeddings:
        """Embed query texts (or images); the same as documents unless overridden."""
        return self.__call__(input)

    def embed_with_retries(self, input: D, **retry_kwargs: Any) -> Embeddings:
        """`__call__`, retried with tenacity's `retry(**retry_kwargs)`."""
        return cast(Embeddings, _with_retries(self.__call__, input, retry_kwargs))

    @staticmethod
    def name() -> str:
        """The name a collection records; NotImplemented (with chromadb's
        DeprecationWarning) marks a legacy function."""
        warnings.warn(
            "The EmbeddingFunction class does not implement name(). "
            "This will be required in a future version.",
            DeprecationWarning,
            stacklevel=2,
        )
        return NotImplemented  # type: ignore[no-any-return]

    def default_space(self) -> Space:
        """The space a collection created with this function gets when none is given."""
        return "l2"

    def supported_spaces(self) -> list[Space]:
        """The spaces this function's vectors make sense in."""
        return ["cosine", "l2", "ip"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> EmbeddingFunction[D]:
        """The function rebuilt from a recorded `get_config()`; NotImplemented (with
        chromadb's DeprecationWarning) when the class cannot be rebuilt."""
        warnings.warn(
            "The EmbeddingFunction class does not implement build_from_config(). "
            "This will be required in a future version.",
            DeprecationWarning,
            stacklevel=2,
        )
        return NotImplemented  # type: ignore[no-any-return]

    def get_config(self) -> dict[str, Any]:
        """The JSON-serialisable configuration a collection records; NotImplemented (with
        chromadb's DeprecationWarning) when there is none."""
        warnings.warn(
            f"The class {type(self).__name__} does not implement get_config(). "
            "This will be required in a future version.",
            DeprecationWarning,
            stacklevel=2,
        )
        return NotImplemented  # type: ignore[no-any-return]

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse (by raising) a configuration change made with `modify`; none refused."""
        return

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Refuse (by raising) a configuration; none refused."""
        return

    def is_legacy(self) -> bool:
        """A function without a name, configuration or rebuild (recorded as legacy)."""
        if self.name() is NotImplemented:
            return True
        config = self.get_config()
        return config is NotImplemented or self.build_from_config(config) is NotImplemented


class SparseEmbeddingFunction(Protocol[D]):
    """chromadb's sparse embedding-function protocol: `__call__` turns a batch into
    `SparseVector`s (checked, as in chromadb); a subclass defines `__init__`, `name`,
    `get_config` and `build_from_config`."""

    @abstractmethod
    def __call__(self, input: D) -> SparseVectors: ...

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        _check_calls(cls, validate_sparse_vectors)

    @abstractmethod
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def embed_query(self, input: D) -> SparseVectors:
        """Embed queries; the same as documents unless overridden."""
        return self.__call__(input)

    def embed_with_retries(self, input: D, **retry_kwargs: Any) -> SparseVectors:
        """`__call__`, retried with tenacity's `retry(**retry_kwargs)`."""
        return cast(SparseVectors, _with_retries(self.__call__, input, retry_kwargs))

    @staticmethod
    @abstractmethod
    def name() -> str: ...

    @staticmethod
    @abstractmethod
    def build_from_config(config: dict[str, Any]) -> SparseEmbeddingFunction[D]: ...

    @abstractmethod
    def get_config(self) -> dict[str, Any]: ...

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse (by raising) a configuration change; none refused."""
        return

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Refuse (by raising) a configuration; none refused."""
        return


@dataclass
class CollectionModel:
    """A collection as the engine and the wire describe it.

    `configuration_json` is the configuration Chroma echoes; `schema` the collection's
    schema (None: the one Chroma derives from the configuration).
    """

    id: uuid.UUID
    name: str
    tenant: str
    database: str
    metadata: dict[str, Any] | None = None
    configuration_json: dict[str, Any] = field(default_factory=dict)
    dimension: int | None = None
    schema: dict[str, Any] | None = None

    # chromadb's `Collection` model fields huedb has no use for, at the values its local
    # mode shows.
    version: ClassVar[int] = 0
    log_position: ClassVar[int] = 0

    @property
    def serialized_schema(self) -> dict[str, Any]:
        """The schema, as chromadb's model names it."""
        return self.schema or schema_json(self.configuration_json)

    def get_serialized_schema(self) -> dict[str, Any]:
        """chromadb's accessor of `serialized_schema`."""
        return self.serialized_schema

    def get_configuration(self) -> dict[str, Any]:
        """The configuration (as stored: `Collection.configuration` rebuilds its function)."""
        return self.configuration_json

    def __getitem__(self, key: str) -> Any:
        """chromadb's model reads as a mapping too: `model["name"]`, `model["configuration"]`;
        None for a key it does not have."""
        if key == "configuration":
            return self.get_configuration()
        if key in _MODEL_KEYS:
            return getattr(self, key)
        return None

    def to_json(self) -> dict[str, Any]:
        """The collection object of Chroma's v2 HTTP API."""
        return {
            "id": str(self.id),
            "name": self.name,
            "configuration_json": self.configuration_json,
            "schema": self.serialized_schema,
            "metadata": self.metadata,
            "dimension": self.dimension,
            "tenant": self.tenant,
            "database": self.database,
            "log_position": self.log_position,
            "version": self.version,
        }


# The keys `CollectionModel[key]` answers, as chromadb's model fields.
_MODEL_KEYS = frozenset(
    (
        "id",
        "name",
        "configuration_json",
        "serialized_schema",
        "metadata",
        "dimension",
        "tenant",
        "database",
        "version",
        "log_position",
    )
)


def schema_json(configuration: dict[str, Any]) -> dict[str, Any]:
    """The schema Chroma derives from a configuration (for collections stored without one)."""
    return collection_schema.schema_from_configuration(configuration or {})
