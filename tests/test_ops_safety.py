"""Operations that must not lose or corrupt data (issue 13 items 6, 7, 9, 10 and error quality).

Exports and reembeds exact under concurrent deletes, restore refusing a live directory and
damaged backups, Parquet checksums, compact surviving a deleted collection, and clean errors.

Exports, paging, reembed and compact run on each store (`tests/stores.py`); restore over a
data directory, SQLite file damage, Parquet file checks, a mistyped `--path` and a small
tmpfs disk filling up are about files on this machine and stay SQLite-only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.engine import Engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.errors import BackupError
from huedb.ops.backup import backup, read_manifest, restore
from huedb.ops.parquet import export_collection, import_collection
from huedb.ops.store import compact
from huedb.options import EngineOptions
from tests import stores
from tests.cli import child_env, run_cli, start_cli
from tests.servers import huedb_server
from tests.small_disk import small_tmpfs
from tests.stores import SQLITE, StoreTarget

ADMIN_TEMP_PREFIX = "huedb-backup-"  # the server's backup route's temporary directories


store = stores.store  # the fixture: each store in turn


def _store(
    path: Path, n: int, name: str = "docs", dim: int = 8, store: StoreTarget = SQLITE
) -> None:
    client = store.client(path)
    col = client.create_collection(name, metadata={"hnsw:space": "cosine"})
    rng = np.random.default_rng(n)
    for start in range(0, n, 1000):
        ids = [f"r{i:05d}" for i in range(start, min(n, start + 1000))]
        col.add(
            ids=ids,
            embeddings=rng.standard_normal((len(ids), dim)).astype(np.float32),
            documents=[f"doc {i}" for i in ids],
            metadatas=[{"k": i} for i in ids],
        )
    client.close()
    clear_system_cache()


def _delete_in_other_process(
    path: Path, ids: list[str], started: Path, store: StoreTarget
) -> subprocess.Popen:
    """Once `started` exists, delete `ids` (in order, 50 at a time) from another process."""
    code = (
        "import json, sys, time, pathlib, huedb\n"
        "path, ids, started = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])\n"
        "col = huedb.PersistentClient(path=path).get_collection('docs')\n"
        "while not started.exists(): time.sleep(0.005)\n"
        "for i in range(0, len(ids), 50):\n"
        "    col.delete(ids=ids[i:i + 50]); time.sleep(0.01)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path), json.dumps(ids), str(started)],
        env=child_env(store.env()),
    )


# -- item 6: exact export and reembed ----------------------------------------------------------


def test_export_under_concurrent_deletes_misses_no_live_record(
    tmp_path: Path, store: StoreTarget
) -> None:
    """9,000 records, 1,499 early ids deleted by another process while `export --path` runs."""
    data = tmp_path / "data"
    _store(data, 9000, store=store)
    doomed = [f"r{i:05d}" for i in range(1, 1500)]
    out = tmp_path / "out.parquet"
    started = tmp_path / "started"
    deleter = _delete_in_other_process(data, doomed, started, store)
    export = start_cli(
        "export", "--path", str(data), *store.cli_args(), "--collection", "docs",
        "--out", str(out), "--batch-size", "60", stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while export.poll() is None and not list(tmp_path.glob(".out.parquet.*.tmp")):
        time.sleep(0.002)
    started.touch()
    _, err = export.communicate(timeout=300)
    deleter.wait(timeout=300)
    assert export.returncode == 0, err
    got = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert len(got) == len(set(got))
    live_throughout = {f"r{i:05d}" for i in range(9000)} - set(doomed)
    assert live_throughout <= set(got), f"{len(live_throughout - set(got))} live records missing"
    # One snapshot: the deleted ids present are a prefix of the deletion order.
    present = [i for i in doomed if i in set(got)]
    assert present == doomed[len(doomed) - len(present) :]


def test_http_pages_refuse_when_a_delete_shifts_them(tmp_path: Path, store: StoreTarget) -> None:
    """Over HTTP (offset paging), a delete before the read position stops the read."""
    from huedb.ops.pages import collection_pages

    data = tmp_path / "data"
    _store(data, 300, store=store)
    with huedb_server(data, *store.cli_args()) as server:
        client = huedb.HttpClient(host="127.0.0.1", port=server.port)
        col = client.get_collection("docs")
        pages = collection_pages(col, 100)
        first = next(pages)
        assert first.ids == [f"r{i:05d}" for i in range(100)]
        col.delete(ids=["r00003"])
        with pytest.raises(BackupError, match="lost records"):
            list(pages)
        # Without concurrent deletes the read is complete and in order.
        ids = [i for page in collection_pages(col, 70) for i in page.ids]
        assert ids == [f"r{i:05d}" for i in range(300) if i != 3]
        out = tmp_path / "http.parquet"
        report = export_collection(col, out, batch_size=64, show_progress=False)
        assert report.rows == 299
        client.close()


class _DeletingEmbedder:
    """A real embedder that, on its first call, deletes early source ids through a 2nd engine."""

    def __init__(self, path: Path, doomed: list[str], store: StoreTarget) -> None:
        self.path, self.doomed, self.store, self.calls = path, doomed, store, 0

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        self.calls += 1
        if self.calls == 1:
            run = "import huedb, sys, json; c = huedb.PersistentClient(path=sys.argv[1])"
            run += "; c.get_collection('docs').delete(ids=json.loads(sys.argv[2]))"
            subprocess.run(
                [sys.executable, "-c", run, str(self.path), json.dumps(self.doomed)],
                check=True,
                env=child_env(self.store.env()),
            )
        return [np.full(4, len(t), dtype=np.float32) for t in input]

    def name(self) -> str:
        return "deleting"

    def get_config(self) -> dict[str, Any]:
        return {}


def test_reembed_under_concurrent_deletes_misses_no_live_record(
    tmp_path: Path, store: StoreTarget
) -> None:
    from huedb.ops.model_versions import reembed

    data = tmp_path / "data"
    _store(data, 2000, store=store)
    doomed = [f"r{i:05d}" for i in range(1, 400)]
    client = store.client(data)
    reembed(client, "docs", "docs_v2", _DeletingEmbedder(data, doomed, store), 100, False)
    got = set(client.get_collection("docs_v2").get(include=[])["ids"])
    live = {f"r{i:05d}" for i in range(2000)} - set(doomed)
    assert live <= got, f"{len(live - got)} live records not reembedded"
    client.close()


# -- item 7: restore ---------------------------------------------------------------------------


def test_restore_refuses_a_directory_a_server_is_using(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data, 200)
    archive = tmp_path / "b.tar"
    backup(data, archive, show_progress=False)
    clear_system_cache()
    with huedb_server(data) as server:
        client = huedb.HttpClient(host="127.0.0.1", port=server.port)
        col = client.get_collection("docs")
        col.add(ids=["after-backup"], embeddings=np.ones((1, 8)))
        r = run_cli("restore", str(archive), "--path", str(data), "--force")
        assert r.returncode == 2 and "in use" in r.stderr, r.stderr
        col.add(ids=["after-restore"], embeddings=np.ones((1, 8)))
        assert col.count() == 202
        client.close()
    engine = Engine(data)
    try:
        assert sum(engine.collection_figures(c)["count"] for c in engine.collections()) == 202
    finally:
        engine.close()
    r = run_cli("restore", str(archive), "--path", str(data), "--force")
    assert r.returncode == 0, r.stderr


def _tampered_backup(archive: Path, out: Path) -> None:
    """A copy of `archive` whose database is damaged but whose manifest checksum matches."""
    work = out.parent / "tamper"
    work.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    db = work / DB_FILENAME
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema = ON")
    # An index that no longer matches its table: the kind of damage a bad disk leaves.
    conn.execute("DELETE FROM records WHERE rowid % 7 = 0")
    conn.commit()
    conn.close()
    raw = bytearray(db.read_bytes())
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records_by_id'")
    page = root.fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    raw[(page - 1) * size + 200] ^= 0xFF
    db.write_bytes(bytes(raw))
    manifest = json.loads((work / "manifest.json").read_text())
    import hashlib

    manifest["sqlite_sha256"] = hashlib.sha256(bytes(raw)).hexdigest()
    manifest["sqlite_bytes"] = len(raw)
    with tarfile.open(out, "w") as tar:
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        tar.add(db, arcname=DB_FILENAME)


def test_restore_refuses_a_damaged_database_whose_checksum_matches(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data, 500)
    archive = tmp_path / "b.tar"
    backup(data, archive, show_progress=False)
    clear_system_cache()
    bad = tmp_path / "bad.tar"
    _tampered_backup(archive, bad)
    assert read_manifest(bad).sqlite_sha256  # the manifest is consistent with the file
    target = tmp_path / "target"
    _store(target, 50)
    before = (target / DB_FILENAME).read_bytes()
    r = run_cli("restore", str(bad), "--path", str(target), "--force")
    assert r.returncode == 2 and "damaged" in r.stderr, r.stdout + r.stderr
    assert (target / DB_FILENAME).read_bytes() == before
    assert not list(target.glob(".restore-*"))
    r = run_cli("verify", "--path", str(target))
    assert r.returncode == 0, r.stdout + r.stderr


def test_restore_killed_at_any_moment_leaves_the_old_or_the_new_store(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _store(source, 20000, dim=64)
    archive = tmp_path / "b.tar"
    backup(source, archive, show_progress=False)
    clear_system_cache()
    data = tmp_path / "data"
    _store(data, 100)
    outcomes = set()
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8):
        proc = start_cli("restore", str(archive), "--path", str(data), "--force")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        engine = Engine(data)
        try:
            counts = [engine.collection_figures(c)["count"] for c in engine.collections()]
            assert counts in ([100], [20000]), counts
            assert engine.integrity_problems() == []
            outcomes.add(counts[0])
        finally:
            engine.close()
    r = run_cli("verify", "--path", str(data))
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcomes  # which of the two depends on timing; never neither


def test_restore_into_an_empty_directory_still_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data, 30)
    archive = tmp_path / "b.tar"
    backup(data, archive, show_progress=False)
    clear_system_cache()
    manifest = restore(archive, tmp_path / "new", show_progress=False)
    assert manifest.collections[0]["count"] == 30


# -- item 9: Parquet checksums -----------------------------------------------------------------


def test_parquet_bit_flips_never_import_changed_records(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path / "src")
    col = client.create_collection("flip", metadata={"hnsw:space": "ip"})
    rng = np.random.default_rng(9)
    col.add(
        ids=[f"f{i}" for i in range(200)],
        embeddings=rng.standard_normal((200, 8)).astype(np.float32),
        documents=[f"document {i}" for i in range(200)],
        metadatas=[{"i": i} for i in range(200)],
    )
    good = tmp_path / "good.parquet"
    export_collection(col, good, batch_size=50, show_progress=False)
    expected = col.get(include=["embeddings", "documents", "metadatas"])
    client.close()
    raw = good.read_bytes()
    offsets = sorted({int(x) for x in np.linspace(4, len(raw) - 5, 120)})
    silent = []
    refused = 0
    for n, offset in enumerate(offsets):
        bad = tmp_path / f"bad{n}.parquet"
        flipped = bytearray(raw)
        flipped[offset] ^= 1 << (n % 8)
        bad.write_bytes(bytes(flipped))
        target = huedb.EphemeralClient()
        try:
            import_collection(target, bad, collection_name="tgt", show_progress=False)
        except ValueError as exc:
            refused += 1
            assert str(bad) in str(exc)
            assert [c.name for c in target.list_collections()] == []
            continue
        finally:
            bad.unlink()
        got = target.get_collection("tgt").get(include=["embeddings", "documents", "metadatas"])
        same = (
            got["ids"] == expected["ids"]
            and got["documents"] == expected["documents"]
            and got["metadatas"] == expected["metadatas"]
            and np.array_equal(got["embeddings"], expected["embeddings"])
            and target.get_collection("tgt").configuration_json["hnsw"]["space"] == "ip"
        )
        if not same:
            silent.append(offset)
        target.delete_collection("tgt")
    assert not silent, f"bit flips at offsets {silent} imported changed data"
    assert refused > len(offsets) // 2


# -- item 10: compact and a collection deleted meanwhile --------------------------------------


def test_compact_skips_a_collection_deleted_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: StoreTarget
) -> None:
    monkeypatch.setenv("HUEDB_EXACT_MAX_FLOATS", "100")
    data = tmp_path / "data"
    client = store.client(data)
    rng = np.random.default_rng(3)
    for name, n in (("big", 30000), ("small1", 300), ("small2", 300)):
        col = client.create_collection(name)
        col.add(ids=[f"{i}" for i in range(n)], embeddings=rng.standard_normal((n, 16)))
        col.query(query_embeddings=np.ones((1, 16)), n_results=1)  # build the graph
        col.delete(ids=[f"{i}" for i in range(0, n, 3)])
    client.close()
    clear_system_cache()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["report"] = compact(data, store=store.url)
        except Exception as exc:  # noqa: BLE001 - the test reports what compact raised
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)  # compact has listed the collections and is rebuilding "big"
    # another engine (as another process would): not behind compact's lock
    other = Engine(data, EngineOptions(store=store.url))
    other.delete_collection("small1", "default_tenant", "default_database")
    other.close()
    thread.join(timeout=300)
    assert "error" not in result, repr(result.get("error"))
    assert "small1" not in result["report"].rebuilt
    assert "small2" in result["report"].rebuilt and "big" in result["report"].rebuilt


# -- error quality -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["verify"],
        ["stats"],
        ["compact"],
        ["backup", "--out", "x.tar"],
        ["export", "--collection", "docs", "--out", "x.parquet"],
    ],
)
def test_a_mistyped_path_is_refused_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    wrong = tmp_path / "dtaa"
    r = run_cli(command[0], "--path", str(wrong), *command[1:])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no huedb" in r.stderr and "Traceback" not in r.stderr
    assert not wrong.exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a real full disk (needs root; skipped with the reason otherwise)."""
    with small_tmpfs(tmp_path, 16) as mount:
        yield mount


def test_commands_on_a_full_disk_print_one_line_not_a_traceback(tiny_disk: Path) -> None:
    data = tiny_disk / "data"
    client = huedb.PersistentClient(path=data)
    col = client.create_collection("full")
    rng = np.random.default_rng(0)
    col.add(ids=[f"{i}" for i in range(6000)], embeddings=rng.standard_normal((6000, 64)))
    col.delete(ids=[f"{i}" for i in range(0, 6000, 2)])
    client.close()
    clear_system_cache()
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    codes = {}
    for command in (
        ["backup", "--path", str(data), "--out", str(tiny_disk / "b.tar")],
        ["compact", "--path", str(data)],
        ["verify", "--path", str(data), "--repair"],
        ["stats", "--path", str(data)],
    ):
        r = run_cli(*command)
        assert "Traceback" not in r.stderr, r.stderr
        codes[command[0]] = r.returncode
        if r.returncode:
            errors = [line for line in r.stderr.splitlines() if " ERROR " in line]
            assert len(errors) == 1, r.stderr
    assert codes["backup"] == 3 and codes["compact"] in (0, 3), codes
    filler.unlink()
    assert run_cli("verify", "--path", str(data)).returncode == 0


def test_backup_onto_a_full_disk_is_a_storage_error(tiny_disk: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_collection("col").add(ids=["a"], embeddings=[[1.0, 2.0]])
    client.close()
    clear_system_cache()
    (tiny_disk / "out").mkdir()
    with open(tiny_disk / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    r = run_cli("backup", "--path", str(data), "--out", str(tiny_disk / "out" / "b.tar"))
    assert r.returncode == 3 and "storage error" in r.stderr and "Traceback" not in r.stderr
    assert list((tiny_disk / "out").iterdir()) == []


def test_backup_removes_copies_left_by_a_killed_admin_backup(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = Path(tempfile.mkdtemp(prefix=ADMIN_TEMP_PREFIX))
    work = left / f".huedb-backup.tar.tmp-{dead.pid}"
    work.mkdir()
    (work / DB_FILENAME).write_bytes(b"\0" * 4096)
    live = Path(tempfile.mkdtemp(prefix=ADMIN_TEMP_PREFIX))
    (live / f".huedb-backup.tar.tmp-{os.getpid()}").mkdir()
    try:
        data = tmp_path / "data"
        _store(data, 10)
        engine = Engine(data)
        try:
            backup(engine, tmp_path / "b.tar", show_progress=False)
        finally:
            engine.close()
        assert not left.exists(), "a stale admin backup copy was kept"
        assert live.exists(), "the copy of a running backup was removed"
    finally:
        import shutil

        shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


def test_server_start_removes_backups_left_by_a_killed_server(tmp_path: Path) -> None:
    """A server killed while sending a finished admin backup left the whole tar behind."""
    from tests.servers import huedb_server

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = Path(tempfile.mkdtemp(prefix=f"{ADMIN_TEMP_PREFIX}{dead.pid}-"))
    (left / "huedb-backup.tar").write_bytes(b"\0" * 4096)
    live = Path(tempfile.mkdtemp(prefix=f"{ADMIN_TEMP_PREFIX}{os.getpid()}-"))
    try:
        with huedb_server(tmp_path / "data"):
            assert not left.exists(), "a dead server's admin backup was kept"
            assert live.exists(), "a running process's backup directory was removed"
    finally:
        import shutil

        shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


def test_reliability_doc_names_the_current_format() -> None:
    from huedb.engine.sqlite_store.schema import FORMAT_VERSION

    text = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    assert f"`huedb_meta.format_version`, now {FORMAT_VERSION})" in text
