"""The adapter every benchmarked database implements (`System`), so that each figure is
measured by the same code for every system; the library is imported lazily by `load`.

The Chroma-API systems (huedb, chromadb) use the defaults here; the peers (`bench/peer_*.py`)
override every call with their own library's API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "bench"


class System(ABC):
    """One database under test; the same calls for every system."""

    name: str = ""
    module: str = ""

    def __init__(self) -> None:
        self._lib: Any = None
        self._client: Any = None
        self._collection: Any = None

    @classmethod
    def available(cls) -> bool:
        try:
            __import__(cls.module)
        except ImportError:
            return False
        return True

    def load(self) -> None:
        """Import the library (timed separately in the reopen figure)."""
        self._lib = __import__(self.module)

    def version(self) -> str:
        if self._lib is None:
            self.load()
        return str(getattr(self._lib, "__version__", "?"))

    @abstractmethod
    def open(self, path: Path) -> None:
        """Open a persistent client on `path`."""

    def settings(self) -> dict[str, Any]:
        """Settings worth recording next to the figures."""
        return {}

    def create(self, space: str) -> None:
        self._collection = self._client.create_collection(
            COLLECTION, metadata={"hnsw:space": space}, embedding_function=None
        )

    def get(self) -> None:
        self._collection = self._client.get_collection(COLLECTION, embedding_function=None)

    @property
    def collection_id(self) -> str:
        """The collection's UUID as text."""
        return str(self._collection.id)

    def add(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        self._collection.add(ids=ids, embeddings=vectors, metadatas=metadatas, documents=documents)

    def update(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        self._collection.update(ids=ids, embeddings=vectors, metadatas=metadatas)

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        self._collection.upsert(
            ids=ids, embeddings=vectors, metadatas=metadatas, documents=documents
        )

    def delete(self, ids: list[str]) -> None:
        self._collection.delete(ids=ids)

    def get_page(self, offset: int, limit: int) -> dict[str, Any]:
        """One page of every record with embeddings, metadatas and documents."""
        return dict(
            self._collection.get(
                include=["embeddings", "metadatas", "documents"], limit=limit, offset=offset
            )
        )

    def get_ids(self, ids: list[str]) -> dict[str, Any]:
        """Records by id with embeddings, metadatas and documents."""
        return dict(self._collection.get(ids=ids, include=["embeddings", "metadatas", "documents"]))

    def count(self) -> int:
        return int(self._collection.count())

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[str]:
        """Ids of the k nearest records to one query (default include, like a user)."""
        result = self._collection.query(
            query_embeddings=vector[None, :],
            n_results=k,
            where=where,
            where_document=where_document,
        )
        return list(result["ids"][0])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._collection = None

    def wait_until_indexed(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Return once queries are served by the ANN index (chromadb indexes during add)."""

    def index_status(self) -> dict[str, Any]:
        """What the system reports of its index once it is ready (recorded in the details)."""
        return {}

    def cli_args(self) -> list[str]:
        """Arguments selecting this system's store for `huedb` commands (none: --path)."""
        return []

    def store_bytes(self) -> int:
        """Bytes the system keeps outside its data directory (a database server's)."""
        return 0


class PeerSystem(System):
    """A system with its own API (not Chroma's): every call is overridden by the adapter,
    filters are translated from the bench's Chroma `where` by `where_terms`."""

    modules: tuple[str, ...] = ()  # every module the adapter needs
    distributions: tuple[str, ...] = ()  # versions recorded next to the figures

    @classmethod
    def available(cls) -> bool:
        try:
            for name in cls.modules:
                __import__(name)
        except ImportError:
            return False
        return True

    def load(self) -> None:
        for name in self.modules:
            __import__(name)
        self._lib = __import__(self.module)

    def version(self) -> str:
        from importlib import metadata

        found = []
        for dist in self.distributions:
            try:
                found.append(f"{dist} {metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                found.append(f"{dist} ?")
        return ", ".join(found)

    @property
    def collection_id(self) -> str:
        return COLLECTION


def where_terms(where: dict[str, Any] | None) -> list[tuple[str, str, Any]]:
    """The bench's metadata filters as (field, operator, value) terms: `{"bucket": 7}` ->
    `[("bucket", "$eq", 7)]`, `{"bucket": {"$lt": 10}}` -> `[("bucket", "$lt", 10)]`."""
    terms: list[tuple[str, str, Any]] = []
    for key, cond in (where or {}).items():
        if key.startswith("$"):
            raise ValueError(f"filter operator {key} is not translated for peers")
        if isinstance(cond, dict):
            terms += [(key, op, value) for op, value in cond.items()]
        else:
            terms.append((key, "$eq", cond))
    return terms


def contains_token(where_document: dict[str, Any] | None) -> str | None:
    """The token of a `{"$contains": token}` document filter (None without one)."""
    if not where_document:
        return None
    if set(where_document) != {"$contains"}:
        raise ValueError(f"document filter {where_document} is not translated for peers")
    return str(where_document["$contains"])


SQL_OPS = {"$eq": "=", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
