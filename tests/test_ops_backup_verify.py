"""Online backup under write load, restore, verify/repair, stats and compact.

The tests of what a store must do run on each store (`tests/stores.py`): backups under
write load (restored into SQLite directories, the backup format of both), verify/repair of
an index that disagrees with the store, orphan index files, backup temporaries. Those about
SQLite files themselves (archive checksums and restoring over a directory, SQLite's free
pages and side tables, a small tmpfs disk filling up) stay SQLite-only.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.cli.serve import METRICS_DIR_PREFIX  # the server's own directory in TMPDIR
from huedb.engine import snapshot
from huedb.engine.engine import Engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.schema import DIGEST_TABLES
from huedb.errors import BackupError
from huedb.ops.backup import backup, read_manifest, restore, work_tag
from huedb.ops.stats import gather_stats
from huedb.ops.verify import verify
from tests import stores
from tests.cli import child_env
from tests.servers import huedb_server
from tests.small_disk import small_tmpfs
from tests.stores import SQLITE, StoreTarget

WRITER = textwrap.dedent(
    """
    import os, sys, numpy as np, huedb
    path, prefix, ack, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    col = huedb.PersistentClient(path=path).get_or_create_collection("load")
    rng = np.random.default_rng(abs(hash(prefix)) % 2**32)
    with open(ack, "a") as f:
        for b in range(batches):
            ids = [f"{prefix}-{b}-{i}" for i in range(50)]
            col.add(ids=ids, embeddings=rng.standard_normal((50, 8)).astype("float32"))
            f.write(f"{b}\\n")
            f.flush()
            os.fsync(f.fileno())
    """
)


def _acked_ids(ack: Path, prefix: str) -> set[str]:
    if not ack.exists():
        return set()
    batches = [int(x) for x in ack.read_text().split()]
    return {f"{prefix}-{b}-{i}" for b in batches for i in range(50)}


def _count(path: Path, store: StoreTarget = SQLITE) -> int:
    client = store.client(path)
    try:
        return sum(c.count() for c in client.list_collections())
    finally:
        client.close()
        clear_system_cache()


store = stores.store  # the fixture: each store in turn


def test_backups_under_write_load_restore_consistently(tmp_path: Path, store: StoreTarget) -> None:
    data = tmp_path / "data"
    client = store.client(data)
    client.get_or_create_collection("load")
    client.close()
    clear_system_cache()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    acks = {p: tmp_path / f"ack-{p}" for p in ("w1", "w2")}
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(data), p, str(acks[p]), "400"],
            env=child_env(store.env()),
        )
        for p in acks
    ]
    try:
        time.sleep(1.0)
        for n in range(10):
            acked = set().union(*(_acked_ids(a, p) for p, a in acks.items()))
            before = _count(data, store)
            out = tmp_path / f"backup-{n}.tar"
            manifest = backup(data, out, show_progress=False, store=store.url)
            after = _count(data, store)
            target = tmp_path / f"restored-{n}"
            restore(out, target, show_progress=False)
            report = verify(target)
            assert report.ok, report.lines()
            restored = huedb.PersistentClient(path=target)
            col = restored.get_collection("load")
            count = col.count()
            assert before <= count <= after
            assert manifest.collections[0]["count"] == count
            present = set(col.get(ids=sorted(acked), include=[])["ids"]) if acked else set()
            assert present == acked, f"backup {n} lost {len(acked - present)} acknowledged ids"
            restored.close()
            clear_system_cache()
            time.sleep(0.2)
    finally:
        for w in writers:
            w.wait(timeout=300)
    assert all(w.returncode == 0 for w in writers)
    assert _count(data, store) == 2 * 400 * 50


# SQLite only: the archive's checksum and restoring over a data directory (restore into an
# empty PostgreSQL database: tests/test_pg_ops.py).
def test_restore_checks_checksum_and_refuses_non_empty_target(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_collection("small").add(ids=["a"], embeddings=[[1.0, 2.0]])
    client.close()
    clear_system_cache()
    out = tmp_path / "b.tar"
    backup(data, out, show_progress=False)
    assert read_manifest(out).collections[0]["count"] == 1
    with pytest.raises(BackupError, match="not empty"):
        restore(out, data, show_progress=False)
    with tarfile.open(out) as tar:
        member = tar.getmember(DB_FILENAME)
    raw = bytearray(out.read_bytes())
    raw[member.offset_data + member.size // 2] ^= 0xFF
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(bytes(raw))
    target = tmp_path / "target"
    with pytest.raises(BackupError):
        restore(corrupt, target, show_progress=False)
    assert not (target / DB_FILENAME).exists()
    restore(out, data, force=True, show_progress=False)
    assert _count(data) == 1


def test_restored_graphs_are_rebuilt_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup holds no index snapshots: the restored store says so, so the first query
    rebuilds the graph quietly (it logged "missing or unusable" per collection)."""
    data = tmp_path / "data"
    settings = huedb.Settings(huedb_exact_max_floats=64)
    client = huedb.PersistentClient(path=data, settings=settings)
    vectors = np.random.default_rng(3).standard_normal((300, 8)).astype(np.float32)
    col = client.create_collection("graph")
    col.add(ids=[str(i) for i in range(300)], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=3)
    client.close()
    clear_system_cache()
    assert list((data / "index").glob("*.hnsw")), "the collection should have a graph snapshot"
    out = tmp_path / "b.tar"
    backup(data, out, show_progress=False)
    target = tmp_path / "restored"
    restore(out, target, show_progress=False)
    caplog.set_level("WARNING", logger="huedb")
    client = huedb.PersistentClient(path=target, settings=settings)
    found = client.get_collection("graph").query(query_embeddings=vectors[:1], n_results=3)
    assert found["ids"][0][0] == "0"
    client.close()
    clear_system_cache()
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text


def test_paths_with_uri_characters(tmp_path: Path, store: StoreTarget) -> None:
    """Directories whose names hold characters special in a SQLite URI ('#', '?', '%',
    a space): backup (it opens its copy read-only by URI: "no such table: collections"
    before, a '#' cut the path short), verify of the copy, and restore into this store."""
    odd = tmp_path / "team #1?  100% sure"
    data = odd / "data"
    client = store.client(data)
    client.create_collection("odd").add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
    client.close()
    clear_system_cache()
    out = odd / "backups" / "b #1.tar"
    out.parent.mkdir()
    manifest = backup(data, out, show_progress=False, store=store.url)
    assert [c["count"] for c in manifest.collections] == [2]
    target = odd / "restored"
    restore(out, target, show_progress=False)
    assert _count(target) == 2


def test_verify_detects_index_disagreement_and_repair_fixes_it(
    tmp_path: Path, store: StoreTarget
) -> None:
    data = tmp_path / "data"
    settings = {"huedb_exact_max_floats": 8 * 100, "huedb_snapshot_every": 10}
    client = store.client(data, settings)
    col = client.create_collection("graph")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, 8)).astype(np.float32)
    col.add(ids=[f"r{i}" for i in range(600)], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=1)
    client.close()
    clear_system_cache()
    assert verify(data, store=store.url).ok
    # Remove records behind the engine's back (no oplog entries): the snapshot now disagrees.
    doomed = "SELECT key FROM records ORDER BY key LIMIT 5"
    statements = [
        f"DELETE FROM embeddings WHERE key IN ({doomed})",
        f"DELETE FROM record_meta WHERE key IN ({doomed})",
        f"DELETE FROM records WHERE key IN ({doomed})",
    ]
    if store.is_postgres:
        with psycopg.connect(store.url) as pg:
            for statement in statements:
                pg.execute(statement)
    else:
        conn = sqlite3.connect(data / DB_FILENAME)
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
    broken = verify(data, store=store.url)
    assert not broken.ok
    assert len(broken.indexes[0].extra) == 5
    repaired = verify(data, repair=True, store=store.url)
    assert repaired.repaired == ["graph"] and repaired.ok
    assert verify(data, store=store.url).ok


# Document-index postings of a trigram (deleted records' too, until compact).
_INDEXED = "SELECT count(*) FROM documents_fts WHERE documents_fts MATCH ?"


# SQLite only: SQLite's side tables (the document index and the digest levels) left by
# deletes and removed by compact, which returns the pages they held.
def test_stats_reports_sizes_and_compact_reclaims_space(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    col = client.create_collection("sized")
    rng = np.random.default_rng(1)
    col.add(
        ids=[f"r{i}" for i in range(3000)],
        embeddings=rng.standard_normal((3000, 64)).astype(np.float32),
        documents=["x" * 200] * 3000,
    )
    col.query(query_embeddings=rng.standard_normal((3, 64)), n_results=5)
    col.delete(where={"$and": [{"a": {"$ne": 1}}, {"b": {"$ne": 2}}]}, limit=2500)
    client.close()
    clear_system_cache()
    engine = Engine(data)
    try:
        stats = gather_stats(engine, data)
        entry = stats["collections"][0]
        assert entry["count"] == 500 and entry["dimension"] == 64
        assert entry["vector_bytes"] == 500 * 64 * 4
        # The oplog prune at close returned the pages the deletes freed (up to 8 MiB).
        assert stats["reclaimable_bytes"] == 0
        json.dumps(stats)
        conn = sqlite3.connect(data / DB_FILENAME)
        left = conn.execute(_INDEXED, ('"xxx"',)).fetchone()[0]
        assert left == 3000  # deletes leave document-index postings for compact
        conn.close()
        freed = engine.reclaim_space()
        assert freed > 0
        assert freed >= stats["reclaimable_bytes"]  # every free page, not one
        assert gather_stats(engine, data)["reclaimable_bytes"] == 0
        conn = sqlite3.connect(data / DB_FILENAME)
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DIGEST_TABLES}
        indexed = conn.execute(_INDEXED, ('"xxx"',)).fetchone()[0]
        conn.close()
        # compact removed what the 2,500 deletes left: one digest and posting per record
        assert indexed == 500
        assert sum(counts.values()) == 500
    finally:
        engine.close()


def test_verify_finds_and_removes_index_files_of_deleted_collections(
    tmp_path: Path, store: StoreTarget
) -> None:
    data = tmp_path / "data"
    client = store.client(data)
    client.create_collection("live").add(ids=["a"], embeddings=[[1.0, 2.0]])
    client.close()
    clear_system_cache()
    orphan = data / "index" / "0a6b7c8d-0000-4000-8000-000000000000.hnsw"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a delete_collection killed before cleanup")
    found = verify(data, store=store.url)
    assert found.ok and found.orphan_files == [orphan.name] and orphan.exists()
    assert any("orphan index file" in line for line in found.lines())
    # another store's snapshot in the same directory is not this store's to remove
    foreign = snapshot.snapshot_path(data / "index", "1b2c3d4e-0000-4000-8000-000000000000")
    snapshot.write_snapshot(foreign, "another-store/x", 7, 2, "l2", b"graph")
    fixed = verify(data, repair=True, store=store.url)
    assert fixed.ok and fixed.repaired_orphans and not orphan.exists()
    assert foreign.exists() and orphan.name in fixed.orphan_files
    assert fixed.foreign_files == [foreign.name]
    # Listed as kept, not as an orphan --repair removes (it was, and --repair left it).
    left = verify(data, store=store.url)
    assert left.orphan_files == [] and left.foreign_files == [foreign.name]
    assert any(f"kept index file {foreign.name}" in line for line in left.lines())
    assert not any("orphan index file" in line for line in left.lines())


def test_backup_removes_temporaries_of_killed_backups(tmp_path: Path, store: StoreTarget) -> None:
    data = tmp_path / "data"
    client = store.client(data)
    client.create_collection("small").add(ids=["a"], embeddings=[[1.0, 2.0]])
    client.close()
    clear_system_cache()
    stale = tmp_path / ".b.tar.tmp-999999999"
    stale.mkdir()
    (stale / DB_FILENAME).write_bytes(b"partial copy")
    # a killed backup to another (dated) name, and something else named alike, not huedb's
    host = work_tag().rsplit("-", 1)[0]
    dated = tmp_path / f".huedb-2026-12-01.tar.tmp-{host}-999999998"
    dated.mkdir()
    (dated / DB_FILENAME).write_bytes(b"partial copy")
    (dated / "huedb-2026-12-01.tar.tmp").write_bytes(b"partial archive")
    foreign = tmp_path / ".notes.txt.tmp-999999997"
    foreign.mkdir()
    (foreign / "notes.txt").write_bytes(b"someone else's")
    # another host's backup in a shared directory: its process is not visible here
    elsewhere = tmp_path / ".huedb-2026-12-02.tar.tmp-otherhost-999999996"
    elsewhere.mkdir()
    (elsewhere / DB_FILENAME).write_bytes(b"copy in progress")
    backup(data, tmp_path / "b.tar", show_progress=False, store=store.url)
    assert not stale.exists() and not dated.exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([foreign.name, elsewhere.name, "b.tar", "data"])


# SQLite only: a small tmpfs filling up (a PostgreSQL server's full disk is its own case:
# StorageFullError from the store, tests/test_pg_store.py).
def test_admin_backup_on_a_full_disk_answers_507_and_keeps_serving(tmp_path: Path) -> None:
    """The backup route's copy goes to the server's temporary directory, here a full disk."""
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    rng = np.random.default_rng(5)
    client.create_collection("big").add(
        ids=[f"b{i}" for i in range(4000)], embeddings=rng.standard_normal((4000, 128))
    )
    client.close()
    clear_system_cache()
    with (
        small_tmpfs(tmp_path, 16) as tiny,
        huedb_server(data, env={"TMPDIR": str(tiny)}) as server,
    ):
        with open(tiny / "filler", "wb") as f:  # leave 256 KiB: far less than the store
            f.write(b"\0" * ((16 << 20) - (256 << 10)))
        r = httpx.post(f"{server.url}/api/v2/admin/backup", timeout=60)
        assert r.status_code == 507, (r.status_code, r.text[:300])
        assert r.json()["error"] == "ChromaError" and "full" in r.json()["message"]
        left = [p.name for p in tiny.iterdir() if not p.name.startswith(METRICS_DIR_PREFIX)]
        assert left == ["filler"], "a partial backup was left"
        remote = huedb.HttpClient(host=server.host, port=server.port)
        col = remote.get_collection("big")
        col.add(ids=["after"], embeddings=rng.standard_normal((1, 128)))
        assert col.count() == 4001
        (tiny / "filler").unlink()
        r = httpx.post(f"{server.url}/api/v2/admin/backup", timeout=60)
        assert r.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            assert (
                json.loads(tar.extractfile("manifest.json").read())["collections"][0]["count"]
                == 4001
            )
        remote.close()
