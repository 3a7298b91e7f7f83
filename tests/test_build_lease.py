"""The graph-build lease: one process (or engine) on a data directory builds a collection's
graph at a time; another waits for its snapshot and serves it (`snapshot.BuildLease`,
`IndexCache._start_build_if_needed`, `IndexCache._adopt_other_build`)."""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from huedb.api.client import clear_system_cache
from huedb.engine import index_cache, snapshot
from tests import stores
from tests.graph_wait import wait_for_graph

DIM = 16
ROWS = 600
BUILDING = "in the background; queries use exact search until it is ready"  # a build here


def _vectors(seed: int, n: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _client(path: Path):  # type: ignore[no-untyped-def]
    """A client whose collections past 100 vectors want a graph."""
    return stores.SQLITE.client(path, {"huedb_exact_max_floats": DIM * 100})


def _progress(col) -> float:  # type: ignore[no-untyped-def]
    return col.get_indexing_status().op_indexing_progress


def _graph_of(client, vectors: np.ndarray):  # type: ignore[no-untyped-def]
    """A new l2 collection "vecs" of `vectors` (ids r0, r1, ...), its graph built."""
    col = client.create_collection("vecs", configuration={"hnsw": {"space": "l2"}})
    col.add(ids=[f"r{i}" for i in range(len(vectors))], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=1)
    wait_for_graph(col)
    return col


def test_a_lease_is_held_by_one_holder_and_leaves_no_file(tmp_path: Path) -> None:
    index = tmp_path / "index"
    first = snapshot.take_build_lease(index, "c")
    assert first is not None
    assert snapshot.take_build_lease(index, "c") is None  # another engine of this process
    assert snapshot.take_build_lease(index, "d") is not None  # one lease per collection
    first.release()
    first.release()  # again: nothing
    assert not (index / f"c{snapshot.BUILD_LEASE_SUFFIX}").exists()
    again = snapshot.take_build_lease(index, "c")
    assert again is not None
    again.release()


def test_a_lease_held_by_a_process_that_dies_is_free_again(tmp_path: Path) -> None:
    """Another process holds it until it is killed (the kernel lets the lock go); the file
    it left behind is taken over and removed by the next holder."""
    index = tmp_path / "index"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from huedb.engine import snapshot; "
            "lease = snapshot.take_build_lease(Path(sys.argv[1]), 'c'); "
            "print('held' if lease else 'refused', flush=True); time.sleep(60)",
            str(index),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert snapshot.take_build_lease(index, "c") is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (index / f"c{snapshot.BUILD_LEASE_SUFFIX}").exists()  # left by the dead holder
    lease = snapshot.take_build_lease(index, "c")
    assert lease is not None
    lease.release()
    assert not (index / f"c{snapshot.BUILD_LEASE_SUFFIX}").exists()


def test_a_process_builds_no_graph_while_another_holds_the_lease_then_builds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Exact answers (right ones) while the lease is held elsewhere; once it is free (the
    holder ended without a snapshot), the next use builds the graph here."""
    vectors = _vectors(1)
    client = _client(tmp_path)
    try:
        col = client.create_collection("vecs", configuration={"hnsw": {"space": "l2"}})
        lease = snapshot.take_build_lease(tmp_path / "index", str(col.id))
        assert lease is not None
        try:
            with caplog.at_level(logging.INFO, logger="huedb.engine.index_cache"):
                col.add(ids=[f"r{i}" for i in range(ROWS)], embeddings=vectors)
                for _ in range(5):
                    got = col.query(query_embeddings=vectors[7:8], n_results=1)
                    assert got["ids"][0] == ["r7"]
                    assert _progress(col) == 0.0
                    time.sleep(0.05)
            assert BUILDING not in caplog.text
            assert "another process is building or changing the HNSW graph" in caplog.text
            assert caplog.text.count("another process is building") == 1  # said once
        finally:
            lease.release()
        wait_for_graph(col)
        assert col.query(query_embeddings=vectors[9:10], n_results=1)["ids"][0] == ["r9"]
    finally:
        client.close()


def test_a_process_awaiting_another_build_serves_the_snapshot_it_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot landing while another holds the lease is adopted at the next use: the
    graph serves here without a build, with the snapshot's recall measurement, and writes
    made after the snapshot are in the answers."""
    vectors = _vectors(2, ROWS + 50)
    client = _client(tmp_path)
    try:
        uuid = str(_graph_of(client, vectors[:ROWS]).id)
    finally:
        client.close()  # writes the graph's snapshot
    index = tmp_path / "index"
    landed = tmp_path / "landed.hnsw"
    shutil.move(index / f"{uuid}{snapshot.GRAPH_SUFFIX}", landed)
    # As in a process that found no snapshot while another one builds the graph:
    lease = snapshot.take_build_lease(index, uuid)
    assert lease is not None
    client = _client(tmp_path)
    try:
        col = client.get_collection("vecs")
        col.add(ids=[f"r{i}" for i in range(ROWS, ROWS + 50)], embeddings=vectors[ROWS:])
        with caplog.at_level(logging.INFO, logger="huedb.engine.index_cache"):
            assert _progress(col) == 0.0
            shutil.copy(landed, index / f"{uuid}.landing")  # the other's atomic rename
            (index / f"{uuid}.landing").rename(index / f"{uuid}{snapshot.GRAPH_SUFFIX}")
            col.query(query_embeddings=vectors[:1], n_results=1)  # a search alone adopts it
            assert "serving the graph another process built" in caplog.text
        status = col.get_indexing_status()
        assert status.op_indexing_progress == 1.0
        assert status.recall is not None and status.ef_search_source == "recall_target"
        assert BUILDING not in caplog.text
        for row in (3, ROWS + 20):  # one in the snapshot, one written after it
            got = col.query(query_embeddings=vectors[row : row + 1], n_results=1)
            assert got["ids"][0] == [f"r{row}"]
            assert got["distances"][0][0] == pytest.approx(0.0, abs=1e-6)
    finally:
        lease.release()
        client.close()


def test_a_backlog_pass_waits_while_another_holds_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A graph with more changes than a call applies (a backlog) starts no pass while
    another process holds the lease: the changes are searched exactly meanwhile; once the
    lease is free the next use passes them to the graph."""
    monkeypatch.setattr(index_cache, "INLINE_MAX_CHANGES", 10)
    vectors = _vectors(3)
    client = _client(tmp_path)
    try:
        col = _graph_of(client, vectors)
        lease = snapshot.take_build_lease(tmp_path / "index", str(col.id))
        assert lease is not None
        try:
            with caplog.at_level(logging.INFO, logger="huedb.engine.index_cache"):
                col.update(ids=[f"r{i}" for i in range(100)], embeddings=vectors[:100] + 5.0)
                for _ in range(5):
                    got = col.query(query_embeddings=vectors[42:43] + 5.0, n_results=1)
                    assert got["ids"][0] == ["r42"]
                    assert _progress(col) < 1.0  # the changes wait for a pass
                    time.sleep(0.05)
            assert "applied in the background" not in caplog.text
            assert "another process is building or changing the HNSW graph" in caplog.text
        finally:
            lease.release()
        wait_for_graph(col)
        got = col.query(query_embeddings=vectors[77:78] + 5.0, n_results=1)
        assert got["ids"][0] == ["r77"]
    finally:
        client.close()


def test_a_process_awaiting_another_build_keeps_the_oplog_it_catches_up_from(
    tmp_path: Path,
) -> None:
    """Closing a process that held the collection exactly while another built its graph
    prunes no oplog entry: the builder catches its graph up from its own watermark (with
    the oplog pruned past it, it built the whole graph again: 100k x 384, 7 s more)."""
    vectors = _vectors(4)
    client = _client(tmp_path)
    lease = None
    try:
        col = client.create_collection("vecs", configuration={"hnsw": {"space": "l2"}})
        lease = snapshot.take_build_lease(tmp_path / "index", str(col.id))
        assert lease is not None
        half = ROWS // 2
        col.add(ids=[f"r{i}" for i in range(half)], embeddings=vectors[:half])
        assert col.query(query_embeddings=vectors[5:6], n_results=1)["ids"][0] == ["r5"]
        # Its later writes are applied to the exact index held here (changes to checkpoint).
        col.add(ids=[f"r{i}" for i in range(half, ROWS)], embeddings=vectors[half:])
        assert col.query(query_embeddings=vectors[-1:], n_results=1)["ids"][0] == [f"r{ROWS - 1}"]
    finally:
        client.close()
        if lease is not None:
            lease.release()
    with sqlite3.connect(tmp_path / "huedb.sqlite3") as conn:
        pruned = conn.execute("SELECT pruned_seq FROM collections WHERE name = 'vecs'").fetchone()
        entries = conn.execute("SELECT count(*) FROM oplog").fetchone()[0]
    assert pruned == (0,) and entries == ROWS


def _writer_builds(path: Path, vectors: np.ndarray) -> tuple[object, str]:
    """A client that only writes: past the exact threshold its writes start a build (no
    search wants it), fed by the later writes. The client and the collection's uuid."""
    client = _client(path)
    col = client.create_collection("vecs", configuration={"hnsw": {"space": "l2"}})
    col.add(ids=[f"r{i}" for i in range(150)], embeddings=vectors[:150])
    col.add(ids=[f"r{i}" for i in range(150, ROWS)], embeddings=vectors[150:])
    return client, str(col.id)


@pytest.mark.parametrize("wanted", [True, False])
def test_a_writer_closing_finishes_its_build_when_a_process_awaiting_it_searched(
    tmp_path: Path, wanted: bool
) -> None:
    """A pure writer's build holds the lease; closing it stops the build (close stays fast)
    unless a process awaiting it searched the collection (`mark_wanted`): then close
    finishes it and writes the snapshot that process serves. Either way no lease or mark
    file is left."""
    client, uuid = _writer_builds(tmp_path, _vectors(5))
    index = tmp_path / "index"
    try:
        assert snapshot.take_build_lease(index, uuid) is None  # the writer's build holds it
        if wanted:
            snapshot.mark_wanted(index, uuid)
    finally:
        client.close()  # type: ignore[attr-defined]
    header = snapshot.read_header(snapshot.snapshot_path(index, uuid))
    if wanted:
        assert header is not None and header["watermark"] >= ROWS
    else:
        assert header is None
    left = {p.suffix for p in index.iterdir()}
    assert not left & {snapshot.BUILD_LEASE_SUFFIX, snapshot.WANTED_SUFFIX}


def test_a_search_awaiting_another_build_marks_it_wanted_and_writes_do_not(
    tmp_path: Path,
) -> None:
    vectors = _vectors(6)
    index = tmp_path / "index"
    client = _client(tmp_path)
    lease = None
    try:
        col = client.create_collection("vecs", configuration={"hnsw": {"space": "l2"}})
        lease = snapshot.take_build_lease(index, str(col.id))
        assert lease is not None
        wanted = index / f"{col.id}{snapshot.WANTED_SUFFIX}"
        col.add(ids=[f"r{i}" for i in range(150)], embeddings=vectors[:150])  # holds, awaits
        col.add(ids=[f"r{i}" for i in range(150, ROWS)], embeddings=vectors[150:])
        assert not wanted.exists()
        col.query(query_embeddings=vectors[:1], n_results=1)
        assert wanted.exists()
        assert lease.wanted_elsewhere
    finally:
        client.close()
        if lease is not None:
            lease.release()
    assert not list(index.glob(f"*{snapshot.WANTED_SUFFIX}"))  # gone with the lease


def test_a_writers_build_a_process_awaiting_it_searched_ends_without_a_search_here(
    tmp_path: Path,
) -> None:
    """As a search in the writer would, the mark of an awaiting process's search makes the
    writer's build end with the rows handed over at the writer's next write, while writes
    still stream in (unmarked, it runs until they pause), and the graph serves: its
    snapshot is then written at close."""
    extra = 400
    vectors = _vectors(7, ROWS + extra)
    client, uuid = _writer_builds(tmp_path, vectors[:ROWS])
    index = tmp_path / "index"
    try:
        snapshot.mark_wanted(index, uuid)
        col = client.get_collection("vecs")  # type: ignore[attr-defined]
        written = ROWS
        while (lease := snapshot.take_build_lease(index, uuid)) is None:  # the build runs
            assert written < ROWS + extra, "the build ran on beside the writes"
            col.add(ids=[f"r{written}"], embeddings=vectors[written : written + 1])
            written += 1
            time.sleep(0.01)
        lease.release()
    finally:
        client.close()  # type: ignore[attr-defined]
    header = snapshot.read_header(snapshot.snapshot_path(index, uuid))
    assert header is not None and header["watermark"] >= written


def test_a_snapshot_removed_while_awaiting_is_no_snapshot_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot a waiting process last saw removed (as `verify --repair` does) while
    another held the lease: once the lease is free the pass runs here (a missing file was
    taken for another's new snapshot, and the lease let go at every use, forever)."""
    monkeypatch.setattr(index_cache, "INLINE_MAX_CHANGES", 10)
    vectors = _vectors(8)
    client = _client(tmp_path)
    try:
        uuid = str(_graph_of(client, vectors).id)
    finally:
        client.close()  # writes the graph's snapshot
    clear_system_cache()
    index = tmp_path / "index"
    client = _client(tmp_path)
    lease = snapshot.take_build_lease(index, uuid)
    assert lease is not None
    try:
        col = client.get_collection("vecs")
        try:
            col.update(ids=[f"r{i}" for i in range(100)], embeddings=vectors[:100] + 5.0)
            assert _progress(col) < 1.0  # awaiting the lease's holder
            snapshot.snapshot_path(index, uuid).unlink()
        finally:
            lease.release()
        wait_for_graph(col)
        got = col.query(query_embeddings=vectors[77:78] + 5.0, n_results=1)
        assert got["ids"][0] == ["r77"]
    finally:
        client.close()
