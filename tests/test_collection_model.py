"""`Collection.get_model()` reads as chromadb's model does: attributes and mapping keys
(`model["name"]`, as Chroma's own tests and user code write it), None for other keys."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import chromadb
import pytest

import huedb

KEYS = ["id", "name", "metadata", "dimension", "tenant", "database", "version", "log_position"]


def _model(module: Any, path: Path) -> tuple[Any, Any]:
    """A new collection holding one 3-d record, and its model as read back (a client of its
    own directory: an in-memory one would meet other tests' clients of other settings)."""
    settings = module.Settings(anonymized_telemetry=False)
    client = module.PersistentClient(path=str(path / module.__name__), settings=settings)
    name = f"model-{uuid.uuid4().hex[:8]}"
    col = client.create_collection(name, metadata={"k": "v"}, embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0, 3.0]])
    col = client.get_collection(name, embedding_function=None)
    return col, col.get_model()


@pytest.mark.parametrize("key", KEYS)
def test_model_keys_read_as_in_chromadb(key: str, tmp_path: Path) -> None:
    col, ours = _model(huedb, tmp_path)
    their_col, theirs = _model(chromadb, tmp_path)
    if key in ("id", "name"):
        assert ours[key] == getattr(col, key) and theirs[key] == getattr(their_col, key)
        return
    assert ours[key] == theirs[key]
    assert getattr(ours, key) == getattr(theirs, key)


def test_model_configuration_schema_and_unknown_keys(tmp_path: Path) -> None:
    _, ours = _model(huedb, tmp_path)
    _, theirs = _model(chromadb, tmp_path)
    assert ours["unknown"] is None and theirs["unknown"] is None
    assert ours["configuration"]["hnsw"] == theirs["configuration"]["hnsw"]
    assert ours["serialized_schema"] == ours.get_serialized_schema() == ours.serialized_schema
    assert ours.serialized_schema["keys"].keys() == theirs.serialized_schema["keys"].keys()
