"""A process that only writes a collection with a graph snapshot notes its changes for it.

Once the changes since the snapshot are due the next one (`snapshot_every`, or a tenth of
the rows), the writer maps the snapshot and notes each write's changes, so its own first
search reads none back (at 1M x 384 that search read 300,000 changed vectors: 4-5 s); the
pass that brings the graph and its snapshot up to date starts at that search, or once the
changes reach half the records. Closing such a writer stops a pass no search asked for:
close stays fast and nothing is lost (the oplog keeps the changes).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine import index_cache, snapshot
from huedb.engine.vector_index import BuildStopped
from tests import proc_workers
from tests.graph_wait import wait_for_graph

DIM = 16
ROWS = 400
SNAPSHOT_EVERY = 20
SETTINGS = {"huedb_exact_max_floats": DIM * 100, "huedb_snapshot_every": SNAPSHOT_EVERY}


def _client(path: Path, threshold_rows: int = 100) -> huedb.Client:
    settings = {**SETTINGS, "huedb_exact_max_floats": DIM * threshold_rows}
    return huedb.PersistentClient(path=path, settings=huedb.Settings(**settings))


def _vectors(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _ids(rows: range) -> list[str]:
    return [f"r{i}" for i in rows]


def _engine(client: huedb.Client):  # type: ignore[no-untyped-def]
    return client._server.engine  # type: ignore[attr-defined]


def _search_until_graphed(col: huedb.Collection, vectors: np.ndarray) -> None:
    """A search, then the wait (60 s at most) until the graph it started serves."""
    col.query(query_embeddings=vectors[:1], n_results=3)
    wait_for_graph(col)


def _graph_with_snapshot(path: Path, vectors: np.ndarray) -> tuple[str, int]:
    """A collection of `vectors` whose graph is built and snapshotted (at close); its
    uuid and the snapshot's watermark."""
    client = _client(path)
    try:
        col = client.create_collection("kept", metadata={"hnsw:space": "l2"})
        for lo in range(0, ROWS, 100):
            col.add(ids=_ids(range(lo, lo + 100)), embeddings=vectors[lo : lo + 100])
        _search_until_graphed(col, vectors)
        uuid = str(col.id)
    finally:
        client.close()
        clear_system_cache()
    header = snapshot.read_header(snapshot.snapshot_path(path / "index", uuid))
    assert header is not None
    return uuid, header["watermark"]


def _update(col: huedb.Collection, vectors: np.ndarray, rows: range) -> None:
    for lo in range(rows.start, rows.stop, 10):
        part = range(lo, min(lo + 10, rows.stop))
        col.update(ids=_ids(part), embeddings=vectors[part.start : part.stop] + 5.0)


def _snapshot_watermark(path: Path, uuid: str) -> int:
    header = snapshot.read_header(snapshot.snapshot_path(path / "index", uuid))
    assert header is not None
    return header["watermark"]


class CatchUps:
    """The changes each catch-up of the patched `IndexCache._catch_up` had to read back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read: list[int] = []
        real = index_cache.IndexCache._catch_up

        def counted(cache, db, col, state):  # type: ignore[no-untyped-def]
            self.read.append(db.count_changes(col.cid, state.watermark))
            return real(cache, db, col, state)

        monkeypatch.setattr(index_cache.IndexCache, "_catch_up", counted)


def _query_updated(col: huedb.Collection, vectors: np.ndarray, probe: int) -> None:
    """A query at an updated record's new vector finds that record first, exactly."""
    got = col.query(query_embeddings=vectors[probe : probe + 1] + 5.0, n_results=1)
    assert got["ids"] == [[f"r{probe}"]]
    assert got["distances"] is not None and got["distances"][0][0] == 0.0


def _next_process_reads_back(path: Path, vectors: np.ndarray, probe: int, monkeypatch) -> int:  # type: ignore[no-untyped-def]
    """The changes a new process's first query of an updated record reads back."""
    catch_ups = CatchUps(monkeypatch)
    client = _client(path)
    try:
        _query_updated(client.get_collection("kept"), vectors, probe)
    finally:
        client.close()
        clear_system_cache()
    assert catch_ups.read, "the query caught nothing up"
    return catch_ups.read[0]


def _wait_for_snapshot_past(path: Path, uuid: str, watermark: int) -> int:
    deadline = time.monotonic() + 60
    while (now := _snapshot_watermark(path, uuid)) <= watermark:
        assert time.monotonic() < deadline, "no newer snapshot in 60 s"
        time.sleep(0.02)
    return now


def test_a_writer_notes_its_changes_and_its_first_search_reads_none_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that only updates a third of the records starts holding the index once
    the changes are due another snapshot, applies each later write to it (no pass while
    it only writes), and its first search reads nothing back; the pass it starts after
    writes a snapshot holding the changes, which the next process loads."""
    vectors = _vectors(1, ROWS)
    uuid, before = _graph_with_snapshot(tmp_path, vectors)
    catch_ups = CatchUps(monkeypatch)
    client = _client(tmp_path)
    try:
        col = client.get_collection("kept")
        cache = _engine(client)._indexes
        cid = _engine(client).get_collection_by_uuid(uuid).cid
        _update(col, vectors, range(0, 10))  # 10 changes: below snapshot_every
        assert cache.loaded(cid) is None
        # (checked once per threshold's worth of oplog growth: 101 rows here)
        _update(col, vectors, range(10, 120))
        state = cache._states.get(cid)
        assert state is not None, "the writer holds no index"
        assert state.writes_only and state.index.backlog == 120
        _update(col, vectors, range(120, 130))
        assert catch_ups.read[-1] == 10  # a write's catch-up reads that write back only
        assert state.index.backlog == 130 and state.backlog_pass is None
        assert _snapshot_watermark(tmp_path, uuid) == before
        catch_ups.read.clear()
        _query_updated(col, vectors, 7)
        assert catch_ups.read == []  # answered by the index as held, confirmed current
        assert not state.writes_only and state.backlog_pass is not None
        _wait_for_snapshot_past(tmp_path, uuid, before)
    finally:
        client.close()
        clear_system_cache()
    monkeypatch.undo()
    assert _next_process_reads_back(tmp_path, vectors, 33, monkeypatch) == 0


def test_a_writer_holds_once_the_changes_reach_a_tenth_of_the_records(tmp_path: Path) -> None:
    """Counted once per threshold's worth of oplog growth (21 rows for this writer): 35
    changes are past `snapshot_every` but under a tenth of the 400 records, 60 are not."""
    vectors = _vectors(2, ROWS)
    uuid, _ = _graph_with_snapshot(tmp_path, vectors)
    client = _client(tmp_path, threshold_rows=20)
    try:
        col = client.get_collection("kept")
        cache = _engine(client)._indexes
        cid = _engine(client).get_collection_by_uuid(uuid).cid
        for rows, held in ((range(0, 10), False), (range(10, 35), False), (range(35, 60), True)):
            col.update(ids=_ids(rows), embeddings=vectors[rows.start : rows.stop] + 5.0)
            assert (cache.loaded(cid) is not None) == held, rows
    finally:
        client.close()
        clear_system_cache()


def test_a_writer_passes_its_changes_to_the_graph_at_half_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no search, a pass starts once the changes noted reach half the records; its
    snapshot holds them, so the next process reads back only the writes made after."""
    vectors = _vectors(3, ROWS)
    uuid, before = _graph_with_snapshot(tmp_path, vectors)
    client = _client(tmp_path)
    try:
        col = client.get_collection("kept")
        cid = _engine(client).get_collection_by_uuid(uuid).cid
        _update(col, vectors, range(0, 190))
        state = _engine(client)._indexes._states[cid]
        assert state.backlog_pass is None and state.index.backlog == 190
        _update(col, vectors, range(190, 210))  # 200 = half the records: a pass
        assert state.backlog_pass is not None and state.writes_only
        after = _wait_for_snapshot_past(tmp_path, uuid, before)
    finally:
        client.close()
        clear_system_cache()
    assert after > before
    assert _next_process_reads_back(tmp_path, vectors, 150, monkeypatch) <= 10


def test_closing_a_writer_stops_its_pass_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over a writer's changes still running at close (here one that runs until
    stopped) is stopped: close returns at once, no snapshot claims the changes, and the
    next process finds every one (caught up from the oplog)."""
    vectors = _vectors(4, ROWS)
    uuid, before = _graph_with_snapshot(tmp_path, vectors)
    started = threading.Event()

    def endless_pass(index, work, stop, workdir, read=None):  # type: ignore[no-untyped-def]
        started.set()
        stop.wait(120)
        raise BuildStopped

    monkeypatch.setattr(index_cache, "apply_backlog", endless_pass)
    client = _client(tmp_path)
    try:
        col = client.get_collection("kept")
        _update(col, vectors, range(0, 220))
        assert started.wait(30), "no backlog pass started"
    finally:
        closing = time.monotonic()
        client.close()
        clear_system_cache()
    assert time.monotonic() - closing < 5
    assert _snapshot_watermark(tmp_path, uuid) == before
    monkeypatch.undo()
    assert _next_process_reads_back(tmp_path, vectors, 200, monkeypatch) >= 220


@pytest.mark.parametrize(("updated", "hard_exit"), [(120, False), (220, False), (220, True)])
def test_another_process_finds_every_change_a_writer_process_made(
    tmp_path: Path, updated: int, hard_exit: bool
) -> None:
    """A writer in its own OS process updates 30 % or 55 % of the records (it then holds
    the index for its writes; at 55 % a pass runs while it writes) and deletes 20 more,
    then closes, or exits without closing; a new process finds each updated record at its
    new vector (distance 0), no deleted one, and every other record at its own vector."""
    vectors = proc_workers.vectors_for(1, ROWS, DIM)
    ids = proc_workers.ids_for("r", ROWS)
    client = _client(tmp_path)
    try:
        col = client.create_collection(proc_workers.COLLECTION)
        col.add(ids=ids, embeddings=vectors)
        _search_until_graphed(col, vectors)
    finally:
        client.close()
        clear_system_cache()
    expected = vectors.copy()
    ops: list[dict] = []
    for lo in range(0, updated, 10):
        ops.append({"op": "update", "ids": ids[lo : lo + 10], "seed": 1_000 + lo})
        expected[lo : lo + 10] = proc_workers.vectors_for(1_000 + lo, 10, DIM)
    ops.append({"op": "delete", "ids": ids[ROWS - 20 :]})
    args = {
        "path": str(tmp_path),
        "settings": SETTINGS,
        "dim": DIM,
        "ops": ops,
        "hard_exit": hard_exit,
        "out": str(tmp_path / "writer.json"),
    }
    proc_workers.run_worker("apply_ops", args, tmp_path, timeout=120)
    client = _client(tmp_path)
    try:
        col = client.get_collection(proc_workers.COLLECTION)
        assert col.count() == ROWS - 20
        got = col.query(query_embeddings=expected[: ROWS - 20], n_results=1)
        assert got["ids"] == [[i] for i in ids[: ROWS - 20]]
        assert got["distances"] is not None and {d for (d,) in got["distances"]} == {0.0}
        assert col.get(ids=ids[ROWS - 20 :])["ids"] == []
    finally:
        client.close()
        clear_system_cache()
