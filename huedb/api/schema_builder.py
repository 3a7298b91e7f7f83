"""Chroma's collection `Schema` builder (chromadb 1.5's `chromadb.Schema`), for huedb.

`Schema()` starts from Chroma's defaults; `create_index` / `delete_index` switch one index
type on or off, globally or on one key, with chromadb's client-side refusals; the JSON the
client sends is `serialize_to_json()`, read back by `deserialize_from_json`. The server
side (parsing, merging, echo) is `huedb.api.collection_schema`.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from huedb.api.cmek import Cmek
from huedb.api.collection_config import embedding_function_identity
from huedb.api.index_configs import (
    DOCUMENT_KEY,
    EMBEDDING_KEY,
    BoolInvertedIndexConfig,
    FloatInvertedIndexConfig,
    FtsIndexConfig,
    IndexConfig,
    IntInvertedIndexConfig,
    SparseVectorIndexConfig,
    StringInvertedIndexConfig,
    VectorIndexConfig,
)
from huedb.execution.expression import Key
from huedb.utils.embedding_functions import (
    rebuild_embedding_function,
    sparse_known_embedding_functions,
)

__all__ = ["Schema", "ValueTypes"]

logger = logging.getLogger(__name__)


@dataclass
class IndexType:
    """One index of a value type: whether it is on, and its configuration."""

    enabled: bool
    config: Any


FtsIndexType = StringInvertedIndexType = VectorIndexType = SparseVectorIndexType = IndexType
IntInvertedIndexType = FloatInvertedIndexType = BoolInvertedIndexType = IndexType


@dataclass
class StringValueType:
    fts_index: IndexType | None = None
    string_inverted_index: IndexType | None = None


@dataclass
class FloatListValueType:
    vector_index: IndexType | None = None


@dataclass
class SparseVectorValueType:
    sparse_vector_index: IndexType | None = None


@dataclass
class IntValueType:
    int_inverted_index: IndexType | None = None


@dataclass
class FloatValueType:
    float_inverted_index: IndexType | None = None


@dataclass
class BoolValueType:
    bool_inverted_index: IndexType | None = None


@dataclass
class ValueTypes:
    """The indexes of each value type, for the defaults or for one key."""

    string: StringValueType | None = None
    float_list: FloatListValueType | None = None
    sparse_vector: SparseVectorValueType | None = None
    int_value: IntValueType | None = None
    float_value: FloatValueType | None = None
    boolean: BoolValueType | None = None


@dataclass(frozen=True)
class _Slot:
    """Where one config class lives: value type attribute and wire name, index name."""

    value_attr: str
    value_name: str
    value_class: type
    index: str


_SLOTS: dict[type, _Slot] = {
    FtsIndexConfig: _Slot("string", "string", StringValueType, "fts_index"),
    StringInvertedIndexConfig: _Slot("string", "string", StringValueType, "string_inverted_index"),
    VectorIndexConfig: _Slot("float_list", "float_list", FloatListValueType, "vector_index"),
    SparseVectorIndexConfig: _Slot(
        "sparse_vector", "sparse_vector", SparseVectorValueType, "sparse_vector_index"
    ),
    IntInvertedIndexConfig: _Slot("int_value", "int", IntValueType, "int_inverted_index"),
    FloatInvertedIndexConfig: _Slot("float_value", "float", FloatValueType, "float_inverted_index"),
    BoolInvertedIndexConfig: _Slot("boolean", "bool", BoolValueType, "bool_inverted_index"),
}


def _slot(config: Any) -> _Slot | None:
    """The slot of a config, by class name as chromadb dispatches (None if unknown)."""
    for cls, slot in _SLOTS.items():
        if type(config).__name__ == cls.__name__:
            return slot
    return None


def _set(types: ValueTypes, config: Any, enabled: bool) -> None:
    slot = _slot(config)
    if slot is None:
        return
    value = getattr(types, slot.value_attr)
    if value is None:
        value = slot.value_class()
        setattr(types, slot.value_attr, value)
    setattr(value, slot.index, IndexType(enabled=enabled, config=config))


def _all_indexes(enabled: bool) -> ValueTypes:
    """Every index type of a key, on or off, with default configs."""
    types = ValueTypes()
    for cls in _SLOTS:
        _set(types, cls(), enabled)
    return types


def _key_name(key: Any) -> Any:
    return key.name if isinstance(key, Key) else key


@dataclass(init=False)
class Schema:
    """A collection's index schema: `defaults` per value type, `keys` overriding them."""

    defaults: ValueTypes
    keys: dict[str, ValueTypes]
    cmek: Cmek | None = field(default=None)

    _DEFAULT_ENABLED: ClassVar[dict[type, bool]] = {
        FtsIndexConfig: False,
        StringInvertedIndexConfig: True,
        VectorIndexConfig: False,
        SparseVectorIndexConfig: False,
        IntInvertedIndexConfig: True,
        FloatInvertedIndexConfig: True,
        BoolInvertedIndexConfig: True,
    }

    def __init__(self) -> None:
        """Chroma's default schema: inverted indexes on, FTS and the vector index on
        `#document` / `#embedding` only, no sparse index."""
        self.defaults = ValueTypes()
        for cls, enabled in self._DEFAULT_ENABLED.items():
            _set(self.defaults, cls(), enabled)
        document = ValueTypes()
        _set(document, FtsIndexConfig(), True)
        _set(document, StringInvertedIndexConfig(), False)
        embedding = ValueTypes()
        _set(embedding, VectorIndexConfig(source_key=DOCUMENT_KEY), True)
        self.keys = {DOCUMENT_KEY: document, EMBEDDING_KEY: embedding}
        self.cmek = None

    # -- building ---------------------------------------------------------------------

    def create_index(self, config: IndexConfig | None = None, key: Any = None) -> Schema:
        """Enable an index type, globally (`key=None`) or on one key; returns the schema."""
        key = _key_name(key)
        if config is None and key is None:
            raise ValueError(
                "Cannot enable all index types globally. Must specify either config or key."
            )
        if key == EMBEDDING_KEY:
            raise ValueError(
                f"Cannot create index on special key '{key}'. This key is managed "
                "automatically by the system. Invoke create_index(VectorIndexConfig(...)) "
                "without specifying a key to configure the vector index globally."
            )
        if key == DOCUMENT_KEY and not isinstance(config, FtsIndexConfig):
            raise ValueError(
                f"Cannot create index on special key '{key}' with this config. "
                "Only FtsIndexConfig is allowed for #document."
            )
        _check_reserved(key)
        if isinstance(config, VectorIndexConfig):
            if key is not None:
                raise ValueError(
                    "Vector index cannot be enabled on specific keys. Use "
                    "create_index(config=VectorIndexConfig(...)) without specifying a key "
                    "to configure the vector index globally."
                )
            self._set_vector_config(config)
            return self
        if isinstance(config, FtsIndexConfig) and key != DOCUMENT_KEY:
            raise ValueError(
                "FTS index can only be enabled on #document key. "
                "Use create_index(config=FtsIndexConfig(), key='#document')"
            )
        if isinstance(config, SparseVectorIndexConfig) and key is None:
            raise ValueError(
                "Sparse vector index must be created on a specific key. Please specify a key "
                "using: create_index(config=SparseVectorIndexConfig(...), key='your_key')"
            )
        if config is None:
            raise ValueError(
                f"Cannot enable all index types for key '{key}'. "
                "Please specify a specific index configuration."
            )
        if key is None:
            _set(self.defaults, config, True)
        else:
            self._set_for_key(key, config, True)
        return self

    def delete_index(self, config: IndexConfig | None = None, key: Any = None) -> Schema:
        """Disable an index type, globally or on one key; returns the schema."""
        key = _key_name(key)
        if config is None and key is None:
            raise ValueError("Cannot disable all indexes. Must specify either config or key.")
        if key == EMBEDDING_KEY:
            raise ValueError("Cannot modify #embedding. Currently not supported")
        if key == DOCUMENT_KEY and not isinstance(config, FtsIndexConfig):
            raise ValueError(
                f"Cannot delete index on special key '{key}' with this config. "
                "Only FtsIndexConfig is allowed for #document."
            )
        _check_reserved(key)
        if isinstance(config, VectorIndexConfig):
            raise ValueError("Deleting vector index is not currently supported.")
        if isinstance(config, SparseVectorIndexConfig):
            raise ValueError("Deleting sparse vector index is not currently supported.")
        if isinstance(config, FtsIndexConfig) and key != DOCUMENT_KEY:
            raise ValueError("Deleting FTS index is only supported on #document key.")
        if config is None:
            raise ValueError(
                f"Cannot disable all index types for key '{key}'. "
                "Please specify a specific index configuration."
            )
        if key is None:
            _set(self.defaults, config, False)
        else:
            self._set_for_key(key, config, False)
        return self

    def set_cmek(self, cmek: Cmek | None) -> Schema:
        """Set (or clear with None) a customer-managed encryption key; returns the schema."""
        self.cmek = cmek
        return self

    def _set_vector_config(self, config: VectorIndexConfig) -> None:
        """The vector config goes to the defaults and to `#embedding`, keeping their
        enabled flags and `#embedding`'s source key."""
        default_index = self.defaults.float_list.vector_index  # type: ignore[union-attr]
        self.defaults.float_list.vector_index = IndexType(  # type: ignore[union-attr]
            enabled=default_index.enabled, config=config
        )
        embedding = self.keys[EMBEDDING_KEY].float_list
        current = embedding.vector_index  # type: ignore[union-attr]
        embedding.vector_index = IndexType(  # type: ignore[union-attr]
            enabled=current.enabled,
            config=VectorIndexConfig(
                space=config.space,
                embedding_function=config.embedding_function,
                hnsw=config.hnsw,
                spann=config.spann,
                source_key=current.config.source_key,
            ),
        )

    def _set_for_key(self, key: str, config: Any, enabled: bool) -> None:
        if isinstance(config, SparseVectorIndexConfig) and enabled:
            self._check_one_sparse_index(key)
            if config.source_key is not None and config.embedding_function is None:
                raise ValueError(
                    "If source_key is provided then embedding_function must also be provided "
                    f"since there is no default embedding function. Config: {config}"
                )
        _set(self.keys.setdefault(key, ValueTypes()), config, enabled)

    def _check_one_sparse_index(self, key: str) -> None:
        for other, types in self.keys.items():
            index = types.sparse_vector and types.sparse_vector.sparse_vector_index
            if other != key and index is not None and index.enabled:
                raise ValueError(
                    f"Cannot enable sparse vector index on key '{key}'. A sparse vector "
                    f"index is already enabled on key '{other}'. Only one sparse vector "
                    "index is allowed per collection."
                )

    # -- JSON -------------------------------------------------------------------------

    def serialize_to_json(self) -> dict[str, Any]:
        """The schema as chromadb's client sends it (`create_collection`'s `schema`)."""
        result: dict[str, Any] = {
            "defaults": _types_json(self.defaults),
            "keys": {key: _types_json(types) for key, types in self.keys.items()},
        }
        if self.cmek is not None:
            result["cmek"] = self.cmek.to_dict()
        return result

    @classmethod
    def deserialize_from_json(cls, json_data: dict[str, Any]) -> Schema:
        """A schema from its JSON (as a server echoes it); named embedding functions are
        rebuilt by their registered classes (`register_embedding_function` of huedb or of
        chromadb), else left None with a warning, as in chromadb."""
        schema = cls.__new__(cls)
        schema.defaults = _types_from_json(json_data.get("defaults", {}))
        schema.keys = {
            key: _types_from_json(types) for key, types in json_data.get("keys", {}).items()
        }
        cmek = json_data.get("cmek")
        schema.cmek = None if cmek is None else Cmek.from_dict(cmek)
        return schema


def _check_reserved(key: str | None) -> None:
    if key is not None and key.startswith("#") and key != DOCUMENT_KEY:
        raise ValueError(
            "key cannot begin with '#'. Keys starting with '#' are reserved for system use."
        )


# -- serialisation ----------------------------------------------------------------------


def _types_json(types: ValueTypes) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for slot in _SLOTS.values():
        value = getattr(types, slot.value_attr)
        if value is None:
            continue
        entry = result.setdefault(slot.value_name, {})
        index = getattr(value, slot.index)
        if index is not None:
            entry[slot.index] = {"enabled": index.enabled, "config": _config_json(index.config)}
    return result


def _function_json(function: Any) -> dict[str, Any]:
    if hasattr(function, "validate_config"):
        function.validate_config(function.get_config())
    return {"name": function.name(), "type": "known", "config": function.get_config()}


def _vector_config_json(config: VectorIndexConfig, result: dict[str, Any]) -> None:
    """The vector index's function as chromadb's `Schema` serializes it, identified as the
    collection configuration identifies one (`embedding_function_identity`: a named
    function is known even when its class lacks chromadb's other methods); the space left
    out is the function's default space. A function that cannot be described (legacy, or
    `validate_config` / `default_space` / `supported_spaces` raising) is recorded as
    legacy, as chromadb records it."""
    function = config.embedding_function
    identity = embedding_function_identity(function)
    if identity is None or identity.get("type") != "known":
        result["embedding_function"] = {"type": "legacy"}
        return
    try:
        validate = getattr(function, "validate_config", None)
        if callable(validate):
            validate(identity["config"])
        if config.space is None:
            result["space"] = _function_default_space(function)
        else:
            supported = _function_supported_spaces(function)
            if supported is not None and config.space not in supported:
                warnings.warn(
                    f"space {config.space} is not supported by {identity['name']}. "
                    f"Supported spaces: {supported}",
                    UserWarning,
                    stacklevel=4,
                )
    except Exception:  # chromadb records any function it cannot describe as legacy
        result["embedding_function"] = {"type": "legacy"}
        return
    result["embedding_function"] = {
        "name": identity["name"],
        "type": "known",
        "config": identity["config"],
    }


def _function_default_space(function: Any) -> Any:
    """The function's `default_space()`; l2 (chromadb's default) when it has none."""
    method = getattr(function, "default_space", None)
    return method() if callable(method) else "l2"


def _function_supported_spaces(function: Any) -> Any:
    """The function's `supported_spaces()`; None (nothing to check) when it has none."""
    method = getattr(function, "supported_spaces", None)
    return method() if callable(method) else None


def _config_json(config: Any) -> dict[str, Any]:
    result = config.model_dump(exclude_none=True)
    if isinstance(config, VectorIndexConfig):
        _vector_config_json(config, result)
    elif isinstance(config, SparseVectorIndexConfig):
        function = config.embedding_function
        result["embedding_function"] = (
            {"type": "unknown"} if function is None else _function_json(function)
        )
    return result


# -- deserialisation --------------------------------------------------------------------


def _build_dense(function_json: dict[str, Any]) -> Any:
    """A dense embedding function by its registered class (huedb's registry, then
    chromadb's: `rebuild_embedding_function`); KeyError when no class has its name."""
    function = rebuild_embedding_function(function_json)
    if function is None:
        raise KeyError(function_json.get("name"))
    return function


def _build_sparse(function_json: dict[str, Any]) -> Any:
    """A sparse embedding function by its registered class."""
    cls = sparse_known_embedding_functions[function_json["name"]]
    return cls.build_from_config(function_json["config"])


def _rebuild(
    function_json: dict[str, Any], build: Callable[[dict[str, Any]], Any], kind: str
) -> Any:
    """An embedding function from its JSON, or None (with chromadb's warning)."""
    try:
        return build(function_json)
    except Exception as exc:
        name = function_json.get("name", "unknown")
        warnings.warn(
            f"Could not reconstruct {kind}embedding function {name}: {exc}. Setting to None.",
            UserWarning,
            stacklevel=5,
        )
        return None


def _config_from_json(cls: type, data: dict[str, Any]) -> Any:
    data = copy.deepcopy(data)
    function_json = data.get("embedding_function")
    if cls is VectorIndexConfig and function_json is not None:
        if function_json.get("type") == "legacy":
            data["embedding_function"] = None
        else:
            function = _rebuild(function_json, _build_dense, "")
            data["embedding_function"] = function
            if function is not None and data.get("space") is None:
                data["space"] = function.default_space()
    elif cls is SparseVectorIndexConfig and function_json is not None:
        if function_json.get("type") in ("unknown", "legacy"):
            data["embedding_function"] = None
        else:
            data["embedding_function"] = _rebuild(function_json, _build_sparse, "sparse ")
    return cls(**data)


def _types_from_json(data: dict[str, Any]) -> ValueTypes:
    types = ValueTypes()
    for cls, slot in _SLOTS.items():
        value = data.get(slot.value_name)
        if value is None:
            continue
        if getattr(types, slot.value_attr) is None:
            setattr(types, slot.value_attr, slot.value_class())
        index = value.get(slot.index)
        if index is not None:
            config = _config_from_json(cls, index.get("config", {}))
            _set(types, config, index.get("enabled", True))
    return types
