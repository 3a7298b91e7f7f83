"""Arguments of client calls as chromadb's in-process client takes them, side by side with
chromadb 1.5.9 (PersistentClient on tmp_path): numpy scalars and integers beyond int64 in
collection metadata, keys and names that are not strings, collection ids that are not UUIDs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from tests import side_by_side

clients = side_by_side.persistent_pair


def _outcome(action: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ("ok", action())
        except Exception as exc:  # noqa: BLE001 - compared across clients
            return (type(exc).__name__, str(exc))


def _steps(client: Any) -> list[Any]:
    numpy_values = {"i": np.int64(3), "f": np.float32(1.5), "b": np.bool_(True)}
    return [
        _outcome(lambda: client.create_collection("numpy-meta", metadata=numpy_values).metadata),
        _outcome(lambda: client.get_collection("numpy-meta").metadata),
        _outcome(lambda: client.create_collection("huge-int", metadata={"x": 2**63}).metadata),
        _outcome(lambda: client.create_collection("int-key", metadata={1: "a"})),
        _outcome(lambda: client.get_collection(1)),
        _outcome(lambda: client.get_collection_by_id("not-a-uuid")),
        _outcome(lambda: client.list_collections(limit=-1)),
        _outcome(lambda: client.list_collections(offset=2**32)),
        _outcome(lambda: client.list_collections(limit=1.5)),
        _outcome(lambda: len(client.list_collections(limit=2**32 - 1))),
        _outcome(lambda: client.get_collection("numpy-meta").modify(name=1)),
        _outcome(
            lambda: client.get_collection("numpy-meta").add(ids=["u"], embeddings=[[1.0]], uris=[1])
        ),
        _outcome(lambda: client.get_collection("numpy-meta").get(limit=-1)),
        _outcome(lambda: client.get_collection("numpy-meta").get(offset=2**32)),
        _outcome(lambda: client.get_collection("numpy-meta").get(limit=np.int64(2))["ids"]),
        _outcome(lambda: client.count_collections()),
    ]


def test_client_arguments_as_chromadb(clients: dict[str, Any]) -> None:
    expected = _steps(clients["chroma"])
    assert _steps(clients["huedb"]) == expected
    assert expected[0] == ("ok", {"i": 3, "f": 1.5, "b": True})
    assert expected[-1] == ("ok", 2)


def test_nan_in_collection_metadata_is_not_stored(clients: dict[str, Any]) -> None:
    """chromadb keeps no NaN in collection metadata (the key is gone when the collection is
    read back, and metadata of NaN only reads back as None); infinities are kept."""
    nan, inf = float("nan"), float("inf")

    def run(client: Any) -> list[Any]:
        read: list[Any] = []
        for i, metadata in enumerate(({"a": nan, "k": 1}, {"a": nan}, {"a": inf, "b": -inf})):
            name = f"nan-{i}"
            client.create_collection(name, metadata=metadata)
            read.append(client.get_collection(name).metadata)
            client.get_collection(name).modify(metadata={"b": nan, "k": 2})
            read.append(client.get_collection(name).metadata)
        return read

    results = {name: run(client) for name, client in clients.items()}
    assert results["huedb"] == results["chroma"]
    assert results["huedb"][:3] == [{"k": 1}, {"k": 2}, None]
