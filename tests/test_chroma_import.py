"""Import of real Chroma 1.5.9 persistent directories (HNSW files + WAL tail) into huedb."""

from __future__ import annotations

import gc
import os
import pickle
import re
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.ops.chroma_dir import ChromaCollection, ChromaDirectory
from huedb.ops.chroma_import import migrate_chroma
from huedb.record_batch import RecordBatch

chromadb = pytest.importorskip(
    "chromadb", reason="chromadb (a test dependency) is needed to write Chroma directories"
)

BIG = 2500
TENANT, DATABASE = "acme", "research"


@dataclass
class Snapshot:
    """A collection as chromadb itself reads it back."""

    tenant: str
    database: str
    metadata: dict[str, Any] | None
    records: dict[str, Any]
    queries: np.ndarray
    top1: list[str]


# -- building the Chroma directory ----------------------------------------------------------


def _meta(i: int) -> dict[str, Any]:
    """Metadata of every type Chroma stores, ints and whole floats kept apart."""
    return {
        "s": f"name-{i}-é",
        "i": i * 7 - 3,
        "big": 2**40 + i,
        "f": i / 4,
        "whole": float(i),
        "b": i % 3 == 0,
        "li": [i, i + 1, -i],
        "lf": [i + 0.5, 2.0],
        "ls": ["x", f"y{i}"],
        "lb": [i % 2 == 0, True],
    }


def _build_big(client: Any, rng: np.random.Generator) -> None:
    """Cosine collection: two HNSW flushes (with deleted elements) and then a WAL tail."""
    col = client.create_collection(
        "big",
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "max_neighbors": 24, "ef_construction": 120}},
        metadata={"owner": "team", "version": 3, "ratio": 0.5, "active": True},
    )
    vectors = (rng.standard_normal((BIG, 16)) * rng.uniform(0.5, 9, (BIG, 1))).astype(np.float32)

    def add(lo: int, hi: int) -> None:
        for s in range(lo, hi, 300):
            e = min(s + 300, hi)
            col.add(
                ids=[f"r{i}" for i in range(s, e)],
                embeddings=vectors[s:e],
                metadatas=[_meta(i) for i in range(s, e)],
                documents=["" if i == 1 else f"document {i}" for i in range(s, e)],
                uris=[f"s3://bucket/{i}" if i % 4 else None for i in range(s, e)],
            )

    add(0, 1200)
    col.delete(ids=[f"r{i}" for i in range(10, 50)])
    col.update(
        ids=[f"r{i}" for i in range(100, 130)],
        embeddings=rng.standard_normal((30, 16)).astype(np.float32),
        metadatas=[{"s": None, "new": "updated"}] * 30,
    )
    col.upsert(
        ids=[f"r{i}" for i in range(130, 145)] + [f"u{i}" for i in range(15)],
        embeddings=rng.standard_normal((30, 16)).astype(np.float32),
        metadatas=[{"i": -1}] * 15 + [{"fresh": True}] * 15,
        documents=[None] * 15 + [f"upserted {i}" for i in range(15)],
    )
    add(1200, BIG)
    # Everything below stays in the WAL tail (the vector segment flushed at ~2000 ops).
    col.delete(ids=[f"r{i}" for i in range(200, 210)] + [f"r{i}" for i in range(2450, 2465)])
    col.update(
        ids=[f"r{i}" for i in range(300, 320)],
        metadatas=[{"i": None, "b": None, "tail": 1.0}] * 20,
    )
    col.update(
        ids=[f"r{i}" for i in range(320, 330)],
        embeddings=rng.standard_normal((10, 16)).astype(np.float32),
        documents=[f"tail document {i}" for i in range(10)],
    )
    col.update(
        ids=[f"r{i}" for i in range(2300, 2310)],
        embeddings=rng.standard_normal((10, 16)).astype(np.float32),
    )
    col.upsert(
        ids=[f"r{i}" for i in range(400, 410)] + [f"w{i}" for i in range(10)],
        embeddings=rng.standard_normal((20, 16)).astype(np.float32),
        metadatas=[{"ls": ["z"]}] * 10 + [{"n": i} for i in range(10)],
        uris=[None] * 10 + [f"file://w{i}" for i in range(10)],
    )
    col.delete(ids=["r7"])
    col.add(ids=["r7", "r8"], embeddings=[[1.0] * 16, [2.0] * 16], documents=["again", "noop"])
    col.update(ids=["r9"], metadatas=[{k: None for k in _meta(9)}])


def _build_directory(path: Path, rng: np.random.Generator) -> None:
    client = chromadb.PersistentClient(path=str(path))
    small = client.create_collection("small", embedding_function=None)
    small.add(
        ids=["a", "b", "c", "d", "e"],
        embeddings=[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [3.5, -2, 1e-3]],
        documents=["alpha", "beta", None, "delta", "epsilon"],
        metadatas=[{"k": 1}, None, {"k": 2.5, "t": True}, {"k": "x"}, {"flag": False}],
    )
    small.update(ids=["a"], metadatas=[{"k": None, "m": [1.5, 2.5]}])
    small.delete(ids=["b"])
    _build_big(client, rng)
    l2 = client.create_collection(
        "l2-vectors", embedding_function=None, configuration={"hnsw": {"space": "l2"}}
    )
    l2_vectors = rng.standard_normal((1100, 5)).astype(np.float32)
    for s in range(0, 1100, 250):
        l2.add(
            ids=[f"p{i}" for i in range(s, min(s + 250, 1100))], embeddings=l2_vectors[s : s + 250]
        )
    l2.delete(ids=["p3", "p1050"])
    ip = client.create_collection(
        "ip-vectors", embedding_function=None, metadata={"hnsw:space": "ip"}
    )
    ip.add(
        ids=[f"q{i}" for i in range(300)],
        embeddings=rng.standard_normal((300, 4)).astype(np.float32),
        metadatas=[{"n": i} for i in range(300)],
    )
    client.create_collection("empty", embedding_function=None)
    admin = chromadb.AdminClient(client.get_settings())
    admin.create_tenant(TENANT)
    admin.create_database(DATABASE, tenant=TENANT)
    other = chromadb.PersistentClient(path=str(path), tenant=TENANT, database=DATABASE)
    notes = other.create_collection("notes", embedding_function=None)
    notes.add(ids=["n1", "n2"], embeddings=[[0.5, 0.25], [-1, 2]], documents=["one", "two"])


def _snapshot(path: Path, rng: np.random.Generator) -> dict[str, Snapshot]:
    """Every collection read back through chromadb, with the top-1 of a few queries."""
    result = {}
    for tenant, database in (("default_tenant", "default_database"), (TENANT, DATABASE)):
        client = chromadb.PersistentClient(path=str(path), tenant=tenant, database=database)
        for col in client.list_collections():
            got = col.get(include=["embeddings", "documents", "metadatas", "uris"])
            queries = np.zeros((0, 0), dtype=np.float32)
            top1: list[str] = []
            if got["ids"]:
                picks = rng.choice(len(got["ids"]), size=min(5, len(got["ids"])), replace=False)
                queries = np.asarray(got["embeddings"])[picks] + np.float32(0.01)
                res = col.query(query_embeddings=queries, n_results=1, include=[])
                top1 = [ids[0] for ids in res["ids"]]
            result[col.name] = Snapshot(tenant, database, col.metadata, got, queries, top1)
    return result


def _close_chroma() -> None:
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    gc.collect()


@pytest.fixture(scope="module")
def chroma_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Snapshot]]:
    path = tmp_path_factory.mktemp("chroma") / "store"
    rng = np.random.default_rng(7)
    _build_directory(path, rng)
    _close_chroma()
    snapshots = _snapshot(path, rng)
    _close_chroma()
    return path, snapshots


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "huedb"


# -- helpers --------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    """A value with its exact types made part of equality (True != 1, 2.0 != 2)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _assert_same_records(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["ids"] == expected["ids"]
    assert got["documents"] == expected["documents"]
    assert got["uris"] == expected["uris"]
    # Chroma 1.5.9 answers {} instead of None for a record whose only metadata is a uri.
    got_metadatas = [m or None for m in got["metadatas"]]
    expected_metadatas = [m or None for m in expected["metadatas"]]
    assert _typed(got_metadatas) == _typed(expected_metadatas)
    if expected["ids"]:
        np.testing.assert_allclose(
            np.asarray(got["embeddings"]), np.asarray(expected["embeddings"]), rtol=1e-5, atol=1e-7
        )


def _huedb_collection(path: Path, name: str, snap: Snapshot) -> Any:
    client = huedb.PersistentClient(path=path, tenant=snap.tenant, database=snap.database)
    return client.get_collection(name)


def _sqlite(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path / "chroma.sqlite3")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# -- tests ----------------------------------------------------------------------------------


def test_directory_has_hnsw_files_and_a_wal_tail(chroma_dir: tuple[Path, Any]) -> None:
    """The fixture really exercises both halves of the vector store."""
    path, _ = chroma_dir
    (big_id,) = _sqlite(path, "SELECT id FROM collections WHERE name = 'big'")[0]
    (segment,) = _sqlite(
        path, "SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'", big_id
    )[0]
    (flushed,) = _sqlite(path, "SELECT seq_id FROM max_seq_id WHERE segment_id = ?", segment)[0]
    (last,) = _sqlite(
        path, "SELECT max(seq_id) FROM embeddings_queue WHERE topic LIKE ?", f"%{big_id}"
    )[0]
    assert 1000 <= flushed < last
    folder = path / segment
    with open(folder / "index_metadata.pickle", "rb") as f:
        live = len(pickle.load(f)["id_to_label"])
    element_count = struct.unpack_from("<Q", (folder / "header.bin").read_bytes(), 20)[0]
    assert element_count > live  # elements flagged deleted in data_level0.bin
    (small_id,) = _sqlite(path, "SELECT id FROM collections WHERE name = 'small'")[0]
    assert _sqlite(
        path,
        "SELECT count(*) FROM max_seq_id m JOIN segments s ON s.id = m.segment_id "
        "WHERE s.collection = ? AND s.scope = 'VECTOR'",
        small_id,
    ) == [(0,)]


def read_chroma_directory(path: Path) -> list[ChromaCollection]:
    """The collections of a Chroma directory, as a migration's check reads them."""
    with ChromaDirectory(path) as source:
        source.check()
        return source.collections


def iter_chroma_records(
    path: Path, collection: ChromaCollection, batch_size: int = 1000
) -> Iterator[RecordBatch]:
    """A collection's records in batches, as a migration reads them."""
    with ChromaDirectory(path) as source:
        source.check()
        found = next(c for c in source.collections if c.id == collection.id)
        yield from source.reader(found).batches(batch_size)


def test_read_chroma_directory(chroma_dir: tuple[Path, dict[str, Snapshot]]) -> None:
    path, snapshots = chroma_dir
    found = {c.name: c for c in read_chroma_directory(path)}
    assert set(found) == set(snapshots)
    for name, snap in snapshots.items():
        assert (found[name].tenant, found[name].database) == (snap.tenant, snap.database)
        assert _typed(found[name].metadata) == _typed(snap.metadata)
    big = found["big"]
    assert big.space == "cosine" and big.dimension == 16
    assert big.configuration["hnsw"]["max_neighbors"] == 24
    assert big.configuration["hnsw"]["ef_construction"] == 120
    assert found["ip-vectors"].space == "ip"
    assert found["l2-vectors"].space == "l2"
    assert found["empty"].dimension is None
    assert found["notes"].tenant == TENANT


def test_records_stream_in_bounded_batches(chroma_dir: tuple[Path, dict[str, Snapshot]]) -> None:
    path, snapshots = chroma_dir
    big = next(c for c in read_chroma_directory(path) if c.name == "big")
    batches = list(iter_chroma_records(path, big, batch_size=400))
    assert all(0 < len(b) <= 400 for b in batches)
    assert all(b.embeddings.dtype == np.float32 and b.embeddings.shape[1] == 16 for b in batches)
    got = {
        "ids": [i for b in batches for i in b.ids],
        "documents": [d for b in batches for d in b.documents],
        "uris": [u for b in batches for u in b.uris],
        "metadatas": [m for b in batches for m in b.metadatas],
        "embeddings": np.concatenate([b.embeddings for b in batches]),
    }
    _assert_same_records(got, snapshots["big"].records)


def test_migrate_matches_chroma(chroma_dir: tuple[Path, dict[str, Snapshot]], target: Path) -> None:
    path, snapshots = chroma_dir
    report = migrate_chroma(path, target, show_progress=False, batch_size=700)
    counts = {c.name: c.records for c in report.collections}
    assert counts == {name: len(s.records["ids"]) for name, s in snapshots.items()}
    assert all(c.created and c.skipped == 0 for c in report.collections)
    for name, snap in snapshots.items():
        col = _huedb_collection(target, name, snap)
        got = col.get(include=["embeddings", "documents", "metadatas", "uris"])
        _assert_same_records(got, snap.records)
        assert _typed(col.metadata) == _typed(snap.metadata)
        if snap.top1:
            res = col.query(query_embeddings=snap.queries, n_results=1, include=[])
            assert [ids[0] for ids in res["ids"]] == snap.top1, name
    big = _huedb_collection(target, "big", snapshots["big"]).configuration_json["hnsw"]
    assert (big["space"], big["max_neighbors"], big["ef_construction"]) == ("cosine", 24, 120)
    ip = _huedb_collection(target, "ip-vectors", snapshots["ip-vectors"])
    assert ip.configuration_json["hnsw"]["space"] == "ip"


def test_migrate_twice_is_idempotent(
    chroma_dir: tuple[Path, dict[str, Snapshot]], target: Path
) -> None:
    path, snapshots = chroma_dir
    first = migrate_chroma(path, target, show_progress=False)
    second = migrate_chroma(path, target, show_progress=False)
    assert first.counts() == second.counts()
    assert not any(c.created for c in second.collections)
    for name, snap in snapshots.items():
        col = _huedb_collection(target, name, snap)
        assert col.count() == len(snap.records["ids"])
    big = _huedb_collection(target, "big", snapshots["big"])
    _assert_same_records(
        big.get(include=["embeddings", "documents", "metadatas", "uris"]), snapshots["big"].records
    )


def test_rerun_mirrors_source_changes(tmp_path: Path, target: Path) -> None:
    """Keys, documents and uris removed in Chroma disappear from huedb on the next run."""
    source = tmp_path / "chroma"
    client = chromadb.PersistentClient(path=str(source))
    col = client.create_collection("mirror", embedding_function=None)
    col.add(
        ids=["a", "b"],
        embeddings=[[1, 2], [3, 4]],
        metadatas=[{"x": 1, "y": "keep"}, {"z": True}],
        documents=["doc a", "doc b"],
        uris=["u://a", None],
    )
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    client = chromadb.PersistentClient(path=str(source))
    col = client.get_collection("mirror")
    col.update(ids=["a", "b"], metadatas=[{"x": None}, {"z": None}], embeddings=[[5, 6], [7, 8]])
    col.delete(ids=["a"])
    col.add(ids=["a"], embeddings=[[9, 9]], metadatas=[{"y": "new"}])
    expected = col.get(include=["embeddings", "documents", "metadatas", "uris"])
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    got = huedb.PersistentClient(path=target).get_collection("mirror")
    _assert_same_records(
        got.get(include=["embeddings", "documents", "metadatas", "uris"]), expected
    )


def test_refuses_a_directory_without_chroma_sqlite(tmp_path: Path) -> None:
    source = tmp_path / "not-chroma"
    source.mkdir()
    (source / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a Chroma directory") as info:
        migrate_chroma(source, tmp_path / "out", show_progress=False)
    assert str(source) in str(info.value)
    assert not (tmp_path / "out").exists()
    (source / "chroma.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match=str(source)):
        read_chroma_directory(source)


@pytest.mark.parametrize(
    ("name", "conflict"),
    [("small", {"configuration": {"hnsw": {"space": "ip"}}}), ("l2-vectors", {})],
)
def test_refuses_a_conflicting_target_collection(
    chroma_dir: tuple[Path, dict[str, Snapshot]], target: Path, name: str, conflict: dict
) -> None:
    path, _ = chroma_dir
    with huedb.PersistentClient(path=target) as client:
        col = client.create_collection(name, **conflict)
        col.add(ids=["x"], embeddings=[[1.0, 2.0]])
    clear_system_cache()
    with pytest.raises(ValueError, match=rf"{name}.*{re.escape(str(target))}.*(space|dimension)"):
        migrate_chroma(path, target, show_progress=False)
    with huedb.PersistentClient(path=target) as client:
        assert [c.name for c in client.list_collections()] == [name]  # nothing else written


def test_refuses_a_malicious_index_pickle(
    chroma_dir: tuple[Path, dict[str, Snapshot]], tmp_path: Path
) -> None:
    path, _ = chroma_dir
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    big = next(c for c in read_chroma_directory(copy) if c.name == "big")
    assert big.vector_segment is not None

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.getcwd, ())

    (copy / big.vector_segment / "index_metadata.pickle").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="unreadable HNSW metadata"):
        next(iter_chroma_records(copy, big))


def test_small_collection_is_read_from_the_wal_only(
    chroma_dir: tuple[Path, dict[str, Snapshot]],
) -> None:
    path, snapshots = chroma_dir
    small = next(c for c in read_chroma_directory(path) if c.name == "small")
    assert isinstance(small, ChromaCollection)
    (batch,) = list(iter_chroma_records(path, small))
    assert batch.ids == snapshots["small"].records["ids"] == ["a", "c", "d", "e"]
    assert batch.metadatas[0] == {"m": [1.5, 2.5]}
