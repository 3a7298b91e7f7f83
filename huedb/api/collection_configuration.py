"""``chromadb.api.collection_configuration``'s typed dictionaries, for code that annotates
the ``configuration=`` it passes to ``create_collection`` or ``modify`` (huedb takes these
plain dictionaries; ``api/collection_config.py`` checks them)."""

from __future__ import annotations

from typing import Any, TypedDict

from huedb.api.types import Space


class HNSWConfiguration(TypedDict, total=False):
    """An HNSW index's parameters as a collection echoes them."""

    space: Space
    ef_construction: int
    max_neighbors: int
    ef_search: int
    num_threads: int
    batch_size: int
    sync_threshold: int
    resize_factor: float


CreateHNSWConfiguration = HNSWConfiguration


class UpdateHNSWConfiguration(TypedDict, total=False):
    """The HNSW parameters `modify(configuration=...)` may change."""

    ef_search: int
    num_threads: int
    batch_size: int
    sync_threshold: int
    resize_factor: float


class SpannConfiguration(TypedDict, total=False):
    """A SPANN index's parameters (Chroma's distributed index: accepted, served by HNSW)."""

    search_nprobe: int
    write_nprobe: int
    space: Space
    ef_construction: int
    ef_search: int
    max_neighbors: int
    reassign_neighbor_count: int
    split_threshold: int
    merge_threshold: int


CreateSpannConfiguration = SpannConfiguration


class UpdateSpannConfiguration(TypedDict, total=False):
    """The SPANN parameters `modify(configuration=...)` may change."""

    search_nprobe: int
    ef_search: int


class CreateCollectionConfiguration(TypedDict, total=False):
    """`create_collection(configuration=...)`."""

    hnsw: HNSWConfiguration | None
    spann: SpannConfiguration | None
    embedding_function: Any


class UpdateCollectionConfiguration(TypedDict, total=False):
    """`collection.modify(configuration=...)`."""

    hnsw: UpdateHNSWConfiguration | None
    spann: UpdateSpannConfiguration | None
    embedding_function: Any


class CollectionConfiguration(TypedDict):
    """A collection's configuration as read back."""

    hnsw: HNSWConfiguration | None
    spann: SpannConfiguration | None
    embedding_function: Any
