"""Engine lifecycle: no index file of a deleted collection outlives it, and a closed client
refuses calls with a Chroma error.

- A process holding a collection's graph with changes its snapshot lacks, when another
  process deletes the collection, writes no snapshot of it at close (the writer checks,
  under the snapshot lock, that the store still has the collection) and forgets the index
  at the first call that finds the collection gone; `huedb compact` removes the files such
  a process (or a delete killed halfway) left, never those of a live collection or of
  another store sharing the directory.
- Every call after the engine closed (the last client of the process closed) raises
  `ClientClosedError`, also one that was waiting for the engine while it closed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from huedb.api.client import clear_system_cache
from huedb.engine import snapshot
from huedb.errors import ChromaError, ClientClosedError, NotFoundError
from huedb.ops.store import compact
from tests import stores
from tests.cli import REPO_ROOT, child_env
from tests.graph_wait import wait_for_graph
from tests.proc_workers import vectors_for
from tests.servers import huedb_server
from tests.stores import StoreTarget

store = stores.store

DIM = 16
ROWS = 3000
SETTINGS = {"huedb_exact_max_floats": DIM * 100}  # a graph from 100 rows on


def _delete_in_other_process(store: StoreTarget, path: Path, name: str) -> None:
    """Delete collection `name` from another OS process (on PostgreSQL, another node with
    its own directory of derived files)."""
    code = (
        "import sys, huedb\n"
        "s = huedb.Settings(**eval(sys.argv[2]))\n"
        "c = huedb.PersistentClient(path=sys.argv[1], settings=s)\n"
        "c.delete_collection(sys.argv[3])\n"
        "c.close()\n"
    )
    settings = {**store.settings, **SETTINGS}
    subprocess.run(
        [sys.executable, "-c", code, str(path), repr(settings), name],
        cwd=REPO_ROOT,
        env=child_env(store.env()),
        check=True,
        timeout=120,
    )


def _held_graph(client: Any, name: str, seed: int) -> Any:
    """A collection whose graph this process holds, with changes its snapshot lacks."""
    col = client.create_collection(name)
    vectors = vectors_for(seed, ROWS, DIM)
    col.add(ids=[str(i) for i in range(ROWS)], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=1)
    wait_for_graph(col)
    col.upsert(ids=[str(i) for i in range(50)], embeddings=vectors[1000:1050])
    col.query(query_embeddings=vectors[:1], n_results=1)
    return col


def _files_of(index_dir: Path, collection_uuid: str) -> list[str]:
    if not index_dir.is_dir():
        return []
    return sorted(f.name for f in index_dir.iterdir() if f.name.startswith(collection_uuid))


def _engine_of(client: Any) -> Any:
    return client._server.engine


def test_no_snapshot_of_a_collection_deleted_by_another_process_at_close(
    store: StoreTarget, tmp_path: Path
) -> None:
    data = tmp_path / "a"
    client = store.client(data, SETTINGS)
    gone = _held_graph(client, "gone", 1)
    kept = _held_graph(client, "kept", 2)
    gone_uuid, kept_uuid = str(gone.id), str(kept.id)
    other = data if not store.is_postgres else tmp_path / "b"
    _delete_in_other_process(store, other, "gone")
    client.close()  # snapshots the held graphs: only the live one's is written
    index_dir = data / "index"
    assert _files_of(index_dir, gone_uuid) == []
    kept_snapshot = snapshot.snapshot_path(index_dir, kept_uuid)
    header = snapshot.read_header(kept_snapshot)
    assert header is not None and header["watermark"] > 0


def test_a_call_that_finds_the_collection_gone_forgets_its_index(
    store: StoreTarget, tmp_path: Path
) -> None:
    data = tmp_path / "a"
    client = store.client(data, SETTINGS)
    try:
        gone = _held_graph(client, "gone", 1)
        engine = _engine_of(client)
        resident = [col.uuid for col, _ in engine.index_memory()["resident"]]
        assert resident == [str(gone.id)]
        other = data if not store.is_postgres else tmp_path / "b"
        _delete_in_other_process(store, other, "gone")
        with pytest.raises(NotFoundError):
            gone.query(query_embeddings=vectors_for(1, 1, DIM), n_results=1)
        assert engine.index_memory()["resident"] == []
    finally:
        client.close()
    assert _files_of(data / "index", str(gone.id)) == []


def test_a_node_removes_snapshots_it_no_longer_holds_when_it_meets_the_deletion(
    store: StoreTarget, tmp_path: Path
) -> None:
    """A PostgreSQL node restarted (or that evicted the index) holds a snapshot of a
    collection another node deleted, without the index in memory: the first request that
    finds the collection gone removes it. (On SQLite the deleting process removed it.)"""
    data = tmp_path / "a"
    client = store.client(data, SETTINGS)
    gone = _held_graph(client, "gone", 1)
    gone_uuid = str(gone.id)
    client.close()
    assert f"{gone_uuid}.hnsw" in _files_of(data / "index", gone_uuid)
    _delete_in_other_process(store, data if not store.is_postgres else tmp_path / "b", "gone")
    client = store.client(data, SETTINGS)  # the node again: nothing held
    try:
        assert _engine_of(client).index_memory()["resident"] == []
        with pytest.raises(NotFoundError):
            gone.__class__(client._server, gone._model).count()
        assert _files_of(data / "index", gone_uuid) == []
    finally:
        client.close()


def test_deleting_waits_for_a_snapshot_being_written(tmp_path: Path) -> None:
    """A snapshot written while its collection is deleted lands before the files are
    removed, never after: removal waits for the writer's lock."""
    index_dir = tmp_path / "index"
    collection_uuid = str(uuid.uuid4())
    locked = threading.Event()

    def writer() -> None:
        with snapshot.exclusive_lock(index_dir, collection_uuid) as held:
            assert held
            locked.set()
            time.sleep(0.3)
            snapshot.snapshot_path(index_dir, collection_uuid).write_bytes(b"graph")

    thread = threading.Thread(target=writer)
    thread.start()
    assert locked.wait(10)
    snapshot.remove_collection_files(index_dir, collection_uuid)
    thread.join()
    assert _files_of(index_dir, collection_uuid) == []


def _foreign_snapshot(index_dir: Path) -> str:
    """The snapshot and lock of another store's collection in the same directory."""
    foreign = str(uuid.uuid4())
    path = snapshot.snapshot_path(index_dir, foreign)
    snapshot.write_snapshot(path, snapshot.owner_name("another-store", foreign), 7, 4, "l2", b"x")
    (index_dir / f"{foreign}{snapshot.LOCK_SUFFIX}").touch()
    return foreign


def test_compact_removes_index_files_of_deleted_collections(
    store: StoreTarget, tmp_path: Path
) -> None:
    data = tmp_path / "a"
    client = store.client(data, SETTINGS)
    dead = _held_graph(client, "dead", 1)
    live = _held_graph(client, "live", 2)
    dead_uuid, live_uuid = str(dead.id), str(live.id)
    client.close()
    index_dir = data / "index"
    left = {name: (index_dir / name).read_bytes() for name in _files_of(index_dir, dead_uuid)}
    assert f"{dead_uuid}.hnsw" in left
    client = store.client(data, SETTINGS)
    client.delete_collection("dead")
    client.close()
    assert _files_of(index_dir, dead_uuid) == []
    foreign = _foreign_snapshot(index_dir)
    live_files = _files_of(index_dir, live_uuid)
    assert f"{live_uuid}.hnsw" in live_files

    def leave_orphans() -> None:
        """What an older huedb holding the index, or a delete killed halfway, left."""
        for name, content in left.items():
            (index_dir / name).write_bytes(content)
        (index_dir / f"{dead_uuid}.tmp999999").write_bytes(b"torn")

    leave_orphans()
    client = store.client(data, SETTINGS)
    try:
        removed = _engine_of(client).remove_orphan_snapshots()
        if store.is_postgres:  # other nodes delete collections: a client's open sweeps
            assert removed == [] and _files_of(index_dir, dead_uuid) == []
        else:
            assert sorted(removed) == sorted([*left, f"{dead_uuid}.tmp999999"])
        assert _files_of(index_dir, live_uuid) == live_files
        got = client.get_collection("live").query(
            query_embeddings=vectors_for(2, ROWS, DIM)[100:101], n_results=1
        )
        assert got["ids"] == [["100"]]
    finally:
        client.close()
    leave_orphans()
    compact(data, store.url or None)  # (it rebuilds the live graph: not compared here)
    assert _files_of(index_dir, dead_uuid) == []
    assert _files_of(index_dir, foreign) == [f"{foreign}.hnsw", f"{foreign}.lock"]


def test_a_closed_client_raises_a_chroma_error(store: StoreTarget, tmp_path: Path) -> None:
    data = tmp_path / "a"
    first = store.client(data, SETTINGS)
    second = store.client(data, SETTINGS)  # shares the process's engine
    col = first.create_collection("things")
    vectors = vectors_for(3, 200, DIM)
    col.add(ids=[str(i) for i in range(200)], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=1)  # an index held: the warm path
    first.close()
    assert second.get_collection("things").count() == 200  # the engine is still open
    second.close()  # the last client: the engine closes

    calls = {
        "count": col.count,
        "get": lambda: col.get(ids=["1"]),
        "query": lambda: col.query(query_embeddings=vectors[:1], n_results=1),
        "add": lambda: col.add(ids=["new"], embeddings=vectors[:1]),
        "upsert": lambda: col.upsert(ids=["1"], embeddings=vectors[:1]),
        "delete": lambda: col.delete(ids=["1"]),
        "list_collections": second.list_collections,
        "get_collection": lambda: second.get_collection("things"),
        "create_collection": lambda: second.create_collection("more"),
    }
    for name, call in calls.items():
        with pytest.raises(ClientClosedError, match="closed") as raised:
            call()
        assert isinstance(raised.value, ChromaError), name

    again = store.client(data, SETTINGS)
    try:
        assert again.get_collection("things").count() == 200
    finally:
        again.close()


def test_a_call_waiting_while_the_engine_closes_is_refused(
    store: StoreTarget, tmp_path: Path
) -> None:
    engine = stores.engine(store, tmp_path / "a")
    col = engine.create_collection("things", None, {}, False, "default_tenant", "default_database")
    outcome: list[BaseException | int] = []

    def count() -> None:
        try:
            outcome.append(engine.count(col.uuid))
        except BaseException as exc:
            outcome.append(exc)

    with engine._lock:  # the other thread's call waits for the engine
        thread = threading.Thread(target=count)
        thread.start()
        time.sleep(0.2)
        engine.close()
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError), outcome
    engine.close()  # a second close does nothing
    np.testing.assert_equal(len(outcome), 1)


def test_a_server_start_removes_snapshots_of_collections_deleted_meanwhile(
    store: StoreTarget, tmp_path: Path
) -> None:
    """`huedb run` sweeps its directory at start: a collection deleted (through another
    node) while this one was down leaves no snapshot here once it is up."""
    data = tmp_path / "a"
    client = store.client(data, SETTINGS)
    gone_uuid = str(_held_graph(client, "gone", 1).id)
    client.close()
    assert f"{gone_uuid}.hnsw" in _files_of(data / "index", gone_uuid)
    if store.is_postgres:
        _delete_in_other_process(store, tmp_path / "b", "gone")
    else:  # as a delete killed before it removed the files would leave them
        left = {n: (data / "index" / n).read_bytes() for n in _files_of(data / "index", gone_uuid)}
        _delete_in_other_process(store, data, "gone")
        for name, content in left.items():
            (data / "index" / name).write_bytes(content)
    clear_system_cache()
    with huedb_server(data, *store.cli_args(), env=store.env()) as server:
        assert httpx.get(f"{server.url}/api/v2/heartbeat", timeout=10).status_code == 200
        assert _files_of(data / "index", gone_uuid) == []
