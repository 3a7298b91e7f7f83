"""Aliases with atomic switches, and the embedding-model guards of a collection."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb import errors
from tests.servers import huedb_server

DIM = 8


class NamedEmbedder:
    """An embedding function with a Chroma identity (name + config)."""

    def __init__(self, label: str, dim: int = DIM) -> None:
        self.label, self.dim = label, dim

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return [np.full(self.dim, float(len(t) % 7 + 1), dtype=np.float32) for t in input]

    def name(self) -> str:
        return self.label

    def get_config(self) -> dict[str, int]:
        return {"dim": self.dim}


def _versions(client: huedb.Client) -> None:
    rng = np.random.default_rng(2)
    for version in ("docs_v1", "docs_v2"):
        col = client.create_collection(version)
        col.add(
            ids=[f"{version}-{i}" for i in range(50)],
            embeddings=rng.standard_normal((50, DIM)).astype(np.float32),
        )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[huedb.Client]:
    c = huedb.PersistentClient(path=tmp_path / "data")
    _versions(c)
    yield c
    c.close()


def test_alias_reaches_its_target_and_switches(client: huedb.Client) -> None:
    client.create_alias("docs", "docs_v1")
    assert client.list_aliases() == {"docs": "docs_v1"}
    through = client.get_collection("docs")
    assert through.name == "docs_v1"
    assert through.count() == 50
    q = np.zeros(DIM, dtype=np.float32)
    assert all(i.startswith("docs_v1") for i in through.query(query_embeddings=q)["ids"][0])
    client.update_alias("docs", "docs_v2")
    assert all(i.startswith("docs_v2") for i in through.query(query_embeddings=q)["ids"][0])
    through.add(ids=["new"], embeddings=[np.ones(DIM)])
    assert client.get_collection("docs_v2").count() == 51
    assert client.get_collection("docs_v1").count() == 50
    client.delete_alias("docs")
    with pytest.raises(errors.NotFoundError):
        client.get_collection("docs")
    assert client.list_aliases() == {}


def test_alias_rules_and_errors(client: huedb.Client) -> None:
    client.create_alias("docs", "docs_v1")
    with pytest.raises(errors.ChromaError, match="already exists"):
        client.create_alias("docs", "docs_v2")
    with pytest.raises(errors.InvalidArgumentError):
        client.create_alias("docs_v2", "docs_v1")
    with pytest.raises(errors.NotFoundError):
        client.create_alias("other", "missing")
    with pytest.raises(errors.NotFoundError):
        client.update_alias("nope", "docs_v1")
    with pytest.raises(errors.NotFoundError):
        client.delete_alias("nope")
    with pytest.raises(errors.InternalError, match="already exists"):
        client.create_collection("docs")
    assert client.get_or_create_collection("docs").name == "docs_v1"
    with pytest.raises(errors.InternalError):
        client.get_collection("docs_v2").modify(name="docs")
    with pytest.raises(errors.InvalidArgumentError, match="alias"):
        client.delete_collection("docs")
    with pytest.raises(errors.InvalidArgumentError, match="target of alias"):
        client.delete_collection("docs_v1")
    assert client.get_collection("docs_v1").count() == 50
    with pytest.raises(errors.InvalidArgumentError):
        client.create_alias("a", "docs_v1")
    # An alias of an alias is refused as such (was "Collection [docs] does not exist").
    with pytest.raises(errors.InvalidArgumentError, match=r"\[docs\] is an alias"):
        client.create_alias("docs_latest", "docs")
    with pytest.raises(errors.InvalidArgumentError, match=r"\[docs\] is an alias"):
        client.update_alias("docs", "docs")
    assert client.get_collection("docs").name == "docs_v1"


READER = textwrap.dedent(
    """
    import json, sys, numpy as np, huedb
    path, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = huedb.PersistentClient(path=path)
    seen, failures = [], []
    q = np.zeros(8, dtype=np.float32)
    for _ in range(rounds):
        try:
            ids = client.get_collection("docs").query(query_embeddings=q, n_results=5)["ids"][0]
            seen.append(sorted({i.split("-")[0] for i in ids}))
        except Exception as exc:
            failures.append(repr(exc))
    json.dump({"seen": seen, "failures": failures}, open(out, "w"))
    """
)


def test_alias_switch_under_load_is_atomic(tmp_path: Path) -> None:
    data = tmp_path / "data"
    setup = huedb.PersistentClient(path=data)
    _versions(setup)
    setup.create_alias("docs", "docs_v1")
    script = tmp_path / "reader.py"
    script.write_text(READER)
    outs = [tmp_path / f"reader-{n}.json" for n in range(2)]
    readers = [
        subprocess.Popen([sys.executable, str(script), str(data), str(out), "400"]) for out in outs
    ]
    switches = 0
    while any(r.poll() is None for r in readers):
        setup.update_alias("docs", "docs_v2" if switches % 2 == 0 else "docs_v1")
        switches += 1
    setup.close()
    assert all(r.returncode == 0 for r in readers)
    assert switches > 1
    targets = set()
    for out in outs:
        result = json.loads(out.read_text())
        assert result["failures"] == []
        assert len(result["seen"]) == 400
        assert all(len(s) == 1 for s in result["seen"]), "one query mixed two collections"
        targets.update(s[0] for s in result["seen"])
    assert targets <= {"docs_v1", "docs_v2"}


def test_embedding_function_guard(client: huedb.Client) -> None:
    col = client.create_collection("with-model", embedding_function=NamedEmbedder("alpha"))
    col.add(ids=["a"], documents=["hello"])
    assert col.configuration_json["embedding_function"]["name"] == "alpha"
    assert client.get_collection("with-model", embedding_function=NamedEmbedder("alpha"))
    with pytest.raises(ValueError, match="new: beta vs persisted: alpha"):
        client.get_collection("with-model", embedding_function=NamedEmbedder("beta"))
    wide = client.get_collection("with-model", embedding_function=NamedEmbedder("alpha", 4))
    with pytest.raises(errors.InvalidArgumentError, match="dimension"):
        wide.add(ids=["b"], documents=["x"])
    with pytest.raises(errors.InvalidArgumentError, match="dimension"):
        wide.query(query_texts=["x"])


@pytest.mark.parametrize("mode", ["embedded", "http"])
def test_dimension_and_model_guards_in_every_mode(tmp_path: Path, mode: str) -> None:
    data = tmp_path / "data"
    if mode == "embedded":
        _check_guards(huedb.PersistentClient(path=data))
        return
    with huedb_server(data) as server:
        _check_guards(huedb.HttpClient(host="127.0.0.1", port=server.port))


def _check_guards(client: huedb.Client) -> None:
    col = client.create_collection("guarded", embedding_function=NamedEmbedder("alpha"))
    col.add(ids=["a"], embeddings=[np.ones(DIM)])
    for call in (
        lambda: col.add(ids=["b"], embeddings=[np.ones(DIM + 1)]),
        lambda: col.upsert(ids=["a"], embeddings=[np.ones(DIM - 1)]),
        lambda: col.query(query_embeddings=[np.ones(3)]),
    ):
        with pytest.raises(errors.InvalidArgumentError, match=f"dimension of {DIM}"):
            call()
    with pytest.raises(ValueError, match="new: beta vs persisted: alpha"):
        client.get_collection("guarded", embedding_function=NamedEmbedder("beta"))
    client.create_alias("guarded-live", "guarded")
    assert client.get_collection("guarded-live").count() == 1
    client.close()


def test_chromadb_client_reaches_collections_through_aliases(tmp_path: Path) -> None:
    chromadb = pytest.importorskip("chromadb")
    from chromadb.config import Settings

    with huedb_server(tmp_path / "data") as server:
        admin = huedb.HttpClient(host="127.0.0.1", port=server.port)
        _versions(admin)
        admin.create_alias("docs", "docs_v1")
        remote = chromadb.HttpClient(
            host="127.0.0.1", port=server.port, settings=Settings(anonymized_telemetry=False)
        )
        assert remote.get_collection("docs", embedding_function=None).name == "docs_v1"
        admin.update_alias("docs", "docs_v2")
        col = remote.get_collection("docs", embedding_function=None)
        assert col.name == "docs_v2" and col.count() == 50
        admin.close()
