"""Requests as one value each, passed from `Client`/`Collection` through `ServerAPI`, the
HTTP client and the server to `LocalAPI`, as `RecordBatch` carries writes: what a get,
query or delete asks for (`GetRequest`, `QueryRequest`, `DeleteRequest`), and a collection
to create or change (`CreateCollectionRequest`, `ModifyCollectionRequest`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from huedb.api.types import DEFAULT_GET_INCLUDE, DEFAULT_QUERY_INCLUDE


@dataclass(frozen=True)
class GetRequest:
    """Records by id and/or filter, a page of them, with the fields in `include`."""

    ids: list[str] | None = None
    where: Any = None
    where_document: Any = None
    limit: int | None = None
    offset: int | None = None
    include: list[str] = field(default_factory=lambda: list(DEFAULT_GET_INCLUDE))


@dataclass(frozen=True)
class QueryRequest:
    """The `n_results` nearest records to each row of `embeddings` among those matching."""

    embeddings: np.ndarray
    n_results: int = 10
    ids: list[str] | None = None
    where: Any = None
    where_document: Any = None
    include: list[str] = field(default_factory=lambda: list(DEFAULT_QUERY_INCLUDE))


@dataclass(frozen=True)
class DeleteRequest:
    """Records to delete by id and/or filter (at most `limit` of those a filter matches)."""

    ids: list[str] | None = None
    where: Any = None
    where_document: Any = None
    limit: int | None = None


@dataclass(frozen=True)
class CreateCollectionRequest:
    """A collection to create in `tenant`/`database` (or get, with `get_or_create`);
    `configuration` and `schema` are JSON as sent on the wire."""

    name: str
    metadata: dict[str, Any] | None
    configuration: dict[str, Any] | None
    get_or_create: bool
    tenant: str
    database: str
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModifyCollectionRequest:
    """A new name, metadata (None values drop keys) and/or configuration JSON; None
    leaves that part as it is."""

    new_name: str | None = None
    new_metadata: dict[str, Any] | None = None
    new_configuration: dict[str, Any] | None = None
