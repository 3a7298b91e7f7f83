"""chromadb's module paths that user code imports from, under `huedb.` (code switched by
replacing `chromadb` with `huedb` throughout): collection classes for type hints, the type
aliases, configuration dictionaries, `SharedSystemClient.clear_system_cache`, the batching
helper, and chromadb's other embedding functions and data loaders (taken from chromadb
when it is installed; huedb ships two embedding functions of its own)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from pathlib import Path

import chromadb
import chromadb.utils.batch_utils
import chromadb.utils.embedding_functions
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import huedb
from huedb.api.async_client import AsyncCollection
from huedb.api.collection import Collection
from tests.cli import REPO_ROOT

PATHS = [
    ("api.models.Collection", "Collection"),
    ("api.models.AsyncCollection", "AsyncCollection"),
    ("api.types", "OneOrMany"),
    ("api.types", "DataLoader"),
    ("api.types", "Loadable"),
    ("api.types", "ReadLevel"),
    ("api.types", "DefaultEmbeddingFunction"),
    ("api.shared_system_client", "SharedSystemClient"),
    ("api.client", "SharedSystemClient"),
    ("api.collection_configuration", "CreateCollectionConfiguration"),
    ("api.collection_configuration", "UpdateCollectionConfiguration"),
    ("utils.batch_utils", "create_batches"),
    ("utils.data_loaders", "ImageLoader"),
    ("utils.embedding_functions", "OpenAIEmbeddingFunction"),
    ("utils.embedding_functions", "SentenceTransformerEmbeddingFunction"),
    ("utils.embedding_functions", "ONNXMiniLM_L6_V2"),
    ("utils.embedding_functions", "DefaultEmbeddingFunction"),
]


@pytest.mark.parametrize(("module", "name"), PATHS)
def test_chromadb_path_exists_under_huedb(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(f"chromadb.{module}"), name)  # a real path
    assert hasattr(importlib.import_module(f"huedb.{module}"), name)


def test_collection_classes_are_huedbs(tmp_path: Path) -> None:
    from huedb.api.models.AsyncCollection import AsyncCollection as ModelsAsync
    from huedb.api.models.Collection import Collection as ModelsCollection

    assert ModelsCollection is Collection and ModelsAsync is AsyncCollection
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    assert isinstance(client.create_collection("typed"), ModelsCollection)
    client.close()


def test_type_aliases() -> None:
    from huedb.api.types import DefaultEmbeddingFunction, OneOrMany, ReadLevel
    from huedb.embedding_functions import DefaultEmbeddingFunction as Shipped

    assert set(typing.get_args(OneOrMany[str])) == {str, list[str]}
    assert ReadLevel is huedb.ReadLevel
    assert DefaultEmbeddingFunction is Shipped


def test_configuration_dictionaries_have_chromadbs_keys() -> None:
    from chromadb.api import collection_configuration as theirs

    from huedb.api import collection_configuration as ours

    names = [n for n in dir(theirs) if n.endswith("Configuration") and n[0].isupper()]
    assert len(names) >= 9
    for name in names:
        mine, chroma = getattr(ours, name), getattr(theirs, name)
        assert set(mine.__annotations__) == set(chroma.__annotations__), name
        assert mine.__total__ == chroma.__total__, name


class _Api:
    def __init__(self, size: int) -> None:
        self.size = size

    def get_max_batch_size(self) -> int:
        return self.size


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    size=st.integers(1, 12),
    fields=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_create_batches_cuts_as_chromadbs(n: int, size: int, fields: tuple) -> None:
    from huedb.utils.batch_utils import create_batches

    ids = [f"id{i}" for i in range(n)]
    embeddings = np.arange(n * 2, dtype=np.float32).reshape(n, 2) if fields[0] else None
    metadatas = [{"i": i} for i in range(n)] if fields[1] else None
    documents = [f"doc {i}" for i in range(n)] if fields[2] else None
    mine = create_batches(_Api(size), ids, embeddings, metadatas, documents)
    theirs = chromadb.utils.batch_utils.create_batches(
        _Api(size), ids, embeddings, metadatas, documents
    )
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert list(a[0]) == list(b[0])
        assert (a[1] is None) == (b[1] is None)
        if a[1] is not None:
            assert np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
        assert a[2] == b[2] and a[3] == b[3]


def test_create_batches_feeds_add(tmp_path: Path) -> None:
    from huedb.utils.batch_utils import create_batches

    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("batched")
    ids = [f"r{i}" for i in range(25)]
    embeddings = np.random.default_rng(0).random((25, 3), dtype=np.float32)
    for batch in create_batches(_Api(10), ids, embeddings, None, [f"d{i}" for i in ids]):
        col.add(*batch)
    assert col.count() == 25
    assert col.get(ids=["r24"])["documents"] == ["dr24"]
    client.close()


def test_shared_system_client_clears_the_cache(tmp_path: Path) -> None:
    from huedb.api.shared_system_client import SharedSystemClient

    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    client.create_collection("kept")
    SharedSystemClient.clear_system_cache()
    again = huedb.PersistentClient(path=str(tmp_path / "data"))
    assert [c.name for c in again.list_collections()] == ["kept"]
    again.close()


def test_chromadbs_embedding_functions_through_huedbs_path() -> None:
    from huedb.embedding_functions import DefaultEmbeddingFunction as Shipped
    from huedb.utils import embedding_functions

    for name in ("OpenAIEmbeddingFunction", "SentenceTransformerEmbeddingFunction"):
        assert getattr(embedding_functions, name) is getattr(
            chromadb.utils.embedding_functions, name
        )
    assert embedding_functions.DefaultEmbeddingFunction is Shipped
    with pytest.raises(AttributeError, match="NoSuchFunction"):
        embedding_functions.NoSuchFunction  # noqa: B018


def test_without_chromadb_the_error_says_where_they_are() -> None:
    """A program whose chromadb cannot be imported gets an AttributeError naming what huedb
    ships and where the rest come from (run in a fresh interpreter with chromadb blocked)."""
    script = (
        "import sys; sys.modules['chromadb'] = None\n"
        "from huedb.utils import embedding_functions as e\n"
        "try:\n    e.OpenAIEmbeddingFunction\nexcept AttributeError as exc:\n    print(exc)\n"
        "print(e.DefaultEmbeddingFunction.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "pip install chromadb" in out.stdout
    assert "huedb ships DefaultEmbeddingFunction" in out.stdout
    assert out.stdout.strip().endswith("DefaultEmbeddingFunction")
