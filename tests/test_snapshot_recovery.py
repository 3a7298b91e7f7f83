"""A missing, torn, corrupt, foreign or stale index snapshot never changes query answers.

A store is populated with the HNSW index forced (small `huedb_exact_max_floats`), including
updates and deletes, queried and closed, which writes `<path>/index/<uuid>.hnsw`. Each test
then damages that file, reopens the store (after `clear_system_cache()`), and checks:

- every live record is in the index with its current vector: a query restricted by `ids`
  is answered from the index's stored vectors, so each record must come back for its own
  vector at distance 0 (exact, no graph approximation involved);
- unrestricted (graph) queries agree with an exact numpy computation: every returned id is
  live, every distance is the true distance, results are sorted, and recall@10 is high;
- a WARNING from a "huedb" logger says the snapshot was not used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine import snapshot
from huedb.engine.graph_build import CHILD_MIN_FLOATS
from tests.graph_wait import wait_for_graph
from tests.proc_workers import run_worker, vectors_for
from tests.snapshot_files import with_payload

DIM = 16
N_MAIN = 3000
N_OTHER = 2000
SETTINGS = {"huedb_exact_max_floats": DIM * 500, "huedb_snapshot_every": 100}
COLLECTION = "procs"  # the name proc_workers.apply_ops writes to
OTHER = "other"

Live = dict[str, np.ndarray]


def _client(path: Path) -> huedb.Client:
    return huedb.PersistentClient(path=path, settings=huedb.Settings(**SETTINGS))


def _snapshot_file(path: Path, name: str = COLLECTION) -> Path:
    client = _client(path)
    uuid = str(client.get_collection(name).id)
    client.close()
    return path / "index" / f"{uuid}.hnsw"


def _populate(path: Path) -> Live:
    """Fill `procs` (with updates and deletes) and `other`; query both; close."""
    client = _client(path)
    col = client.get_or_create_collection(COLLECTION)
    ids = [f"m{i}" for i in range(N_MAIN)]
    vecs = vectors_for(1, N_MAIN, DIM)
    for start in range(0, N_MAIN, 500):
        col.add(ids=ids[start : start + 500], embeddings=vecs[start : start + 500])
    live: Live = dict(zip(ids, vecs, strict=True))
    col.query(query_embeddings=vecs[:2], n_results=3)
    updated = ids[100:300]
    new_vecs = vectors_for(2, len(updated), DIM)
    col.update(ids=updated, embeddings=new_vecs)
    live.update(zip(updated, new_vecs, strict=True))
    deleted = ids[2500:2800]
    col.delete(ids=deleted)
    for rid in deleted:
        live.pop(rid)
    other = client.get_or_create_collection(OTHER)
    other_vecs = vectors_for(3, N_OTHER, DIM)
    other.add(ids=[f"o{i}" for i in range(N_OTHER)], embeddings=other_vecs)
    col.query(query_embeddings=vecs[:2], n_results=3)
    other.query(query_embeddings=other_vecs[:2], n_results=3)
    client.close()
    clear_system_cache()
    return live


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Live]:
    """A populated store with snapshots of both collections (copied by each test)."""
    path = tmp_path_factory.mktemp("pristine") / "data"
    live = _populate(path)
    assert _snapshot_file(path).exists(), "closing a graph-sized collection wrote no snapshot"
    assert _snapshot_file(path, OTHER).exists()
    return path, live


@pytest.fixture
def store(pristine: tuple[Path, Live], tmp_path: Path) -> Iterator[tuple[Path, Live]]:
    """A private copy of the pristine store; engines are closed after the test."""
    src, live = pristine
    path = tmp_path / "data"
    shutil.copytree(src, path)
    clear_system_cache()
    yield path, dict(live)


def _assert_answers(path: Path, live: Live, seed: int = 0) -> None:
    """Queries on a freshly opened store agree with an exact computation over `live`."""
    client = _client(path)
    col = client.get_collection(COLLECTION)
    ids = list(live)
    matrix = np.vstack([live[i] for i in ids])
    assert col.count() == len(ids)

    # 1. Index contents: restricted to a chunk of ids, each record's own vector finds it.
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        res = col.query(
            query_embeddings=matrix[start : start + 200],
            ids=chunk,
            n_results=1,
            include=["distances"],
        )
        got = [r[0] if r else None for r in res["ids"]]
        assert got == chunk, [(w, g) for w, g in zip(chunk, got, strict=True) if w != g][:10]
        assert max(d[0] for d in res["distances"]) < 1e-4

    # 2. Graph search agrees with numpy: live ids, true distances, sorted, high recall.
    queries = np.random.default_rng(seed).standard_normal((100, DIM)).astype(np.float32)
    res = col.query(query_embeddings=queries, n_results=10, include=["distances"])
    true = ((queries[:, None, :] - matrix[None, :, :]) ** 2).sum(-1)
    exact_top = np.argsort(true, axis=1)[:, :10]
    position = {rid: n for n, rid in enumerate(ids)}
    hits = 0
    for q, (got_ids, got_d) in enumerate(zip(res["ids"], res["distances"], strict=True)):
        assert len(got_ids) == 10
        unknown = [i for i in got_ids if i not in position]
        assert not unknown, f"query returned ids that are not live records: {unknown}"
        want_d = [true[q, position[i]] for i in got_ids]
        np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=1e-4)
        assert got_d == sorted(got_d)
        hits += len({ids[j] for j in exact_top[q]} & set(got_ids))
    assert hits / 1000 >= 0.95, f"recall@10 {hits / 1000:.3f} vs exact numpy"

    # 3. Every live record's own vector, unrestricted, returns it (top-1) -- allowing for
    #    rare unreachable graph nodes (a separate defect the multiprocess/crash tests catch).
    found = 0
    for start in range(0, len(ids), 1000):
        res = col.query(query_embeddings=matrix[start : start + 1000], n_results=1, include=[])
        found += sum(r == [w] for r, w in zip(res["ids"], ids[start : start + 1000], strict=True))
    assert found / len(ids) >= 0.99, f"only {found} of {len(ids)} found by their own vector"
    client.close()


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("huedb")
    ]


def test_intact_snapshot_is_used_without_warning(
    store: tuple[Path, Live], caplog: pytest.LogCaptureFixture
) -> None:
    """Baseline: reopening with the snapshot intact answers correctly and warns nothing."""
    path, live = store
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog) == []


def _truncate_half(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _truncate_to_magic(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:10])


def _empty(f: Path) -> None:
    f.write_bytes(b"")


def _flip_middle(f: Path) -> None:
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 64):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))


def _flip_header(f: Path) -> None:
    """Damage the JSON header line (after the magic)."""
    data = bytearray(f.read_bytes())
    start = data.index(b"\n") + 3
    data[start : start + 8] = b"\xff" * 8
    f.write_bytes(bytes(data))


def _garbage(f: Path) -> None:
    f.write_bytes(np.random.default_rng(5).bytes(f.stat().st_size))


def _garbage_with_valid_header(f: Path) -> None:
    """A well-formed header whose checksums match, around a payload that is not an index."""
    header = snapshot.read_header(f)
    assert header is not None
    garbage = np.random.default_rng(6).bytes(header["length"])
    f.write_bytes(with_payload(f.read_bytes(), garbage))


CORRUPTIONS = {
    "truncated-half": _truncate_half,
    "truncated-in-magic": _truncate_to_magic,
    "empty": _empty,
    "bytes-flipped-in-middle": _flip_middle,
    "header-damaged": _flip_header,
    "garbage": _garbage,
    "garbage-payload-valid-crc": _garbage_with_valid_header,
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_corrupt_snapshot_is_rebuilt_with_warning(
    store: tuple[Path, Live], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A torn or corrupt snapshot: correct answers (rebuilt from SQLite) and a warning."""
    path, live = store
    snap = _snapshot_file(path)
    clear_system_cache()
    CORRUPTIONS[damage](snap)
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog), f"no huedb WARNING logged for a {damage} snapshot"
    caplog.clear()  # the rebuilt graph's snapshot replaced the damaged file (same watermark)
    clear_system_cache()
    _assert_answers(path, live, seed=1)
    assert not _warned(caplog), f"the {damage} snapshot was still there at the next open"


def test_deleted_snapshot_is_rebuilt_with_warning(
    store: tuple[Path, Live], caplog: pytest.LogCaptureFixture
) -> None:
    """A missing snapshot of a graph-sized collection: correct answers and a warning."""
    path, live = store
    snap = _snapshot_file(path)
    clear_system_cache()
    snap.unlink()
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog), "no huedb WARNING logged for a missing snapshot"
    assert snap.exists(), "the rebuilt index was not snapshotted again at close"


def test_whole_index_dir_deleted(
    store: tuple[Path, Live], caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting the whole index directory (snapshots and locks) is also recoverable."""
    path, live = store
    shutil.rmtree(path / "index")
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog)


def test_foreign_snapshot_is_rejected(
    store: tuple[Path, Live], caplog: pytest.LogCaptureFixture
) -> None:
    """A valid snapshot of another collection copied over ours must not be used as ours."""
    path, live = store
    snap = _snapshot_file(path)
    foreign = _snapshot_file(path, OTHER)
    clear_system_cache()
    shutil.copyfile(foreign, snap)
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog), "no huedb WARNING logged for a foreign snapshot"


def test_snapshot_from_another_store_is_rejected(
    store: tuple[Path, Live], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot taken from a different store (other data, same dimension) is not used."""
    path, live = store
    elsewhere = tmp_path / "elsewhere"
    client = _client(elsewhere)
    col = client.get_or_create_collection(COLLECTION)
    vecs = vectors_for(9, N_MAIN + 500, DIM)
    xids = [f"x{i}" for i in range(len(vecs))]
    col.add(ids=xids, embeddings=vecs)
    for round_ in range(2):  # push its oplog head past ours, so the watermark looks fresh
        col.update(ids=xids, embeddings=vectors_for(10 + round_, len(xids), DIM))
    col.query(query_embeddings=vecs[:1], n_results=1)
    client.close()
    clear_system_cache()
    foreign = next((elsewhere / "index").glob("*.hnsw"))
    snap = _snapshot_file(path)
    clear_system_cache()
    shutil.copyfile(foreign, snap)
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog), "no huedb WARNING logged for another store's snapshot"


def _other_client_writes(path: Path, tmp_path: Path, live: Live, leave_stale: bool) -> None:
    """Another process adds, updates and deletes records.

    With `leave_stale` it never snapshots (huge snapshot interval) and exits without
    close(), so the snapshot on disk stays at its old watermark and the oplog is unpruned.
    """
    ids = list(live)
    new_ids = [f"n{i}" for i in range(400)]
    updated = ids[1000:1250]
    deleted = ids[1500:1700]
    ops = [
        {"op": "add", "ids": new_ids, "seed": 11},
        {"op": "update", "ids": updated, "seed": 12},
        {"op": "upsert", "ids": ids[:50] + ["u0", "u1"], "seed": 13},
        {"op": "delete", "ids": deleted},
    ]
    out = tmp_path / "apply.json"
    settings = {**SETTINGS, "huedb_snapshot_every": 10**9} if leave_stale else SETTINGS
    args = {
        "path": str(path),
        "settings": settings,
        "dim": DIM,
        "ops": ops,
        "out": str(out),
        "hard_exit": leave_stale,
    }
    run_worker("apply_ops", args, tmp_path, timeout=120)
    assert json.loads(out.read_text())["ok"]
    for op in ops:
        if op["op"] == "delete":
            for rid in op["ids"]:
                live.pop(rid)
        else:
            live.update(zip(op["ids"], vectors_for(op["seed"], len(op["ids"]), DIM), strict=True))


def _watermark(snap: Path) -> int:
    with open(snap, "rb") as f:
        f.readline()
        return int(json.loads(f.readline())["watermark"])


def test_stale_snapshot_catches_up_from_oplog(store: tuple[Path, Live], tmp_path: Path) -> None:
    """A snapshot older than writes made later by another client: caught up, correct."""
    path, live = store
    snap = _snapshot_file(path)
    clear_system_cache()
    before = _watermark(snap)
    _other_client_writes(path, tmp_path, live, leave_stale=True)
    assert _watermark(snap) == before, "the writer was expected to leave the snapshot stale"
    _assert_answers(path, live)


def test_open_index_catches_up_with_other_process(store: tuple[Path, Live], tmp_path: Path) -> None:
    """An index held in memory catches up with another process's writes before a query."""
    path, live = store
    client = _client(path)
    col = client.get_collection(COLLECTION)
    col.query(query_embeddings=vectors_for(0, 1, DIM), n_results=1)  # index now in memory
    _other_client_writes(path, tmp_path, live, leave_stale=False)
    _assert_answers(path, live)  # same process: shares the open engine and its index
    client.close()


def test_snapshot_older_than_pruned_oplog_is_rebuilt(
    store: tuple[Path, Live], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An old snapshot put back after the oplog it needs was pruned: rebuilt, with a warning."""
    path, live = store
    snap = _snapshot_file(path)
    clear_system_cache()
    old = snap.read_bytes()
    _other_client_writes(path, tmp_path, live, leave_stale=False)
    _assert_answers(path, live)  # catches up, snapshots at close and prunes the oplog
    clear_system_cache()
    assert _watermark(snap) > int(json.loads(old.split(b"\n")[1])["watermark"])
    snap.write_bytes(old)
    caplog.set_level(logging.WARNING, logger="huedb")
    _assert_answers(path, live)
    assert _warned(caplog), "no huedb WARNING logged for a snapshot older than the oplog floor"


def test_leftover_temp_snapshot_is_ignored(store: tuple[Path, Live]) -> None:
    """A temporary file left by a writer killed mid-snapshot does not disturb opening."""
    path, live = store
    snap = _snapshot_file(path)
    clear_system_cache()
    tmp = snap.with_suffix(f".tmp{os.getpid() + 1}")
    tmp.write_bytes(snap.read_bytes()[:1000])
    _assert_answers(path, live)


def test_a_damaged_snapshot_is_replaced_by_a_graph_process_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A graph built in a child process (CHILD_MIN_FLOATS) is copied behind a header as the
    snapshot and served as a view of that file without checking its payload again. A
    damaged snapshot at the same watermark (bytes flipped, header intact) was kept there,
    and the view then served the damaged graph: the build's file must replace it, so the
    file is whole (checked in full) and the next open uses it without a warning."""
    dim, count = 64, CHILD_MIN_FLOATS // 64 + 256
    vectors = np.random.default_rng(11).standard_normal((count, dim)).astype(np.float32)
    ids = [f"c{i}" for i in range(count)]

    def open_and_wait() -> tuple[huedb.Client, huedb.Collection]:
        clear_system_cache()
        client = huedb.PersistentClient(
            path=tmp_path, settings=huedb.Settings(huedb_exact_max_floats=dim * 500)
        )
        col = client.get_collection("child")
        col.query(query_embeddings=vectors[:1], n_results=1)
        wait_for_graph(col, seconds=120)
        return client, col

    clear_system_cache()
    first = huedb.PersistentClient(
        path=tmp_path, settings=huedb.Settings(huedb_exact_max_floats=dim * 500)
    )
    first.create_collection("child").add(ids=ids, embeddings=vectors)
    first.close()
    client, col = open_and_wait()
    client.close()
    snap = tmp_path / "index" / f"{col.id}.hnsw"
    _flip_middle(snap)
    caplog.set_level(logging.WARNING, logger="huedb")

    client, col = open_and_wait()
    try:
        assert _warned(caplog), "the damaged snapshot was not refused"
        engine = client._server.engine  # type: ignore[attr-defined]
        owner = engine._indexes.owner(engine.get_collection_by_uuid(str(col.id)))
        whole = snapshot.read_snapshot(snap, owner)  # the payload's checksum checked
        assert whole is not None, "the damaged snapshot is still the file served"
        whole.payload.release()
        whole.mapping.close()
        got = col.query(query_embeddings=vectors[:50], n_results=1)["ids"]
        assert [r[0] for r in got] == ids[:50]
    finally:
        client.close()
    caplog.clear()
    client, col = open_and_wait()
    client.close()
    assert not _warned(caplog), "the next open refused the snapshot again"
