"""`migrate-chroma` on real Chroma 1.5.9 directories that the first version mishandled.

A directory left by a crashed writer (a hot rollback journal, a write-ahead log), tenants and
databases without collections, names huedb refuses, a source that changes while it is read,
a collection whose records were all deleted, and runs that fail half-way (damaged files,
Ctrl-C). Directories are written by chromadb's PersistentClient; a crash is a `kill -9` of a
child process in the middle of its SQLite write.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.cli.commands import EXIT_ERROR, EXIT_INTERRUPTED, run_command
from huedb.cli.parser import build_parser
from huedb.errors import InvalidArgumentError, NotFoundError
from huedb.ops import chroma_import
from huedb.ops.chroma_import import migrate_chroma

chromadb = pytest.importorskip(
    "chromadb", reason="chromadb (a test dependency) is needed to write Chroma directories"
)
from chromadb.config import Settings as ChromaSettings  # noqa: E402

INCLUDE = ["embeddings", "documents", "metadatas", "uris"]
# HNSW files written every 20 records (Chroma's default is 1000: all in the log here).
FLUSHED = {"hnsw": {"space": "cosine", "sync_threshold": 20, "batch_size": 10}}

# A writer killed in the middle of a transaction: its changed pages spilled into the
# database file, the rollback journal that undoes them is left behind ("hot").
TORN_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 1")
conn.execute("BEGIN IMMEDIATE")
for table in ("embedding_metadata", "embeddings", "embeddings_queue"):
    conn.execute(f"DELETE FROM {table}")
conn.execute("UPDATE collections SET name = name || '-torn'")
conn.execute(
    "CREATE TABLE padding AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
    "WHERE x < 500) SELECT randomblob(4096) AS b FROM n"
)
print("in transaction", flush=True)
time.sleep(600)
"""

# A writer that switched the database to WAL mode and committed, killed before any
# checkpoint: the commit is only in the -wal file.
WAL_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("UPDATE collections SET name = name || '-renamed'")
print("committed", flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def _closed_clients() -> Iterator[None]:
    yield
    _close_chroma()
    clear_system_cache()


def _close_chroma() -> None:
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    gc.collect()


def _fill(col: Any, n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    col.add(
        ids=[f"{col.name}-{i}" for i in range(n)],
        embeddings=(rng.standard_normal((n, dim)) * 3).astype(np.float32),
        metadatas=[{"i": i, "tag": f"t{i % 3}"} for i in range(n)],
        documents=[f"document {i} of {col.name} " * 4 for i in range(n)],
    )


def _build_two(path: Path) -> dict[str, dict[str, Any]]:
    """A directory with `first` (records only in Chroma's log) and then `flushed` (cosine,
    with HNSW files); what chromadb reads back, per collection."""
    client = chromadb.PersistentClient(path=str(path))
    _fill(client.create_collection("first", embedding_function=None), 120, 4, 1)
    _fill(
        client.create_collection("flushed", embedding_function=None, configuration=FLUSHED),
        90,
        6,
        2,
    )
    _close_chroma()
    return _chroma_records(path)


def _chroma_records(path: Path, tenant: str = "default_tenant") -> dict[str, dict[str, Any]]:
    client = chromadb.PersistentClient(path=str(path), tenant=tenant)
    found = {c.name: c.get(include=INCLUDE) for c in client.list_collections()}
    _close_chroma()
    return found


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["ids"] == expected["ids"]
    assert got["documents"] == expected["documents"]
    assert got["metadatas"] == expected["metadatas"]
    np.testing.assert_allclose(
        np.asarray(got["embeddings"]), np.asarray(expected["embeddings"]), rtol=1e-5, atol=1e-6
    )


def _assert_migrated(target: Path, expected: dict[str, dict[str, Any]], **settings: Any) -> None:
    with huedb.PersistentClient(path=target, **settings) as client:
        assert sorted(c.name for c in client.list_collections()) == sorted(expected)
        for name, records in expected.items():
            _assert_same(client.get_collection(name).get(include=INCLUDE), records)


def _digests(path: Path) -> dict[str, str]:
    """Every file under `path` and the SHA-256 of its bytes."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def _kill_mid_write(db_file: Path, script: str) -> None:
    """Run `script` on `db_file` in a child process and kill -9 it once it says so."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(db_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait()


def _cli(*args: str) -> int:
    """`huedb *args` in this process (its one-line errors go to the log)."""
    return run_command(build_parser().parse_args(list(args)))


def _error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture()
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory recovered copies go to."""
    path = tmp_path / "scratch"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


# -- a directory left by a crash: recovered in a temporary copy, never written -------------


def test_a_hot_journal_is_rolled_back_in_a_temporary_copy(
    tmp_path: Path, scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    expected = _build_two(source)
    before_crash = _digests(source)
    _kill_mid_write(source / "chroma.sqlite3", TORN_WRITER)
    assert (source / "chroma.sqlite3-journal").stat().st_size > 0
    assert _digests(source)["chroma.sqlite3"] != before_crash["chroma.sqlite3"]  # torn pages
    with pytest.raises(sqlite3.OperationalError):  # read-only, SQLite cannot roll it back
        sqlite3.connect(f"file:{source / 'chroma.sqlite3'}?mode=ro", uri=True).execute(
            "SELECT count(*) FROM collections"
        ).fetchall()
    crashed = _digests(source)

    # A failing run removes its copy too.
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    pickle_file = next(broken.glob("*/index_metadata.pickle"))
    pickle_file.write_bytes(pickle_file.read_bytes()[:40])
    with pytest.raises(ValueError, match="unreadable HNSW metadata"):
        migrate_chroma(broken, tmp_path / "not-written", show_progress=False)
    assert list(scratch.iterdir()) == []

    with caplog.at_level(logging.INFO, logger="huedb.ops.chroma_dir"):
        report = migrate_chroma(source, target, show_progress=False, batch_size=50)
    assert "needs recovery (a hot journal" in caplog.text and str(scratch) in caplog.text
    assert list(scratch.iterdir()) == []  # the copy is gone
    assert _digests(source) == crashed  # never written: the journal is still there
    assert report.counts() == {
        f"default_tenant/default_database/{n}": len(r["ids"]) for n, r in expected.items()
    }
    _assert_migrated(target, expected)
    # Chroma reads the crashed directory the same (opening a copy rolls the journal back).
    copy = tmp_path / "chroma-copy"
    shutil.copytree(source, copy)
    assert {n: r["ids"] for n, r in _chroma_records(copy).items()} == {
        n: r["ids"] for n, r in expected.items()
    }


def test_a_write_ahead_log_is_recovered_in_a_temporary_copy(tmp_path: Path, scratch: Path) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    records = _build_two(source)
    _kill_mid_write(source / "chroma.sqlite3", WAL_WRITER)
    assert (source / "chroma.sqlite3-wal").stat().st_size > 0
    crashed = _digests(source)
    migrate_chroma(source, target, show_progress=False)
    assert _digests(source) == crashed  # not even the -shm index was written
    assert list(scratch.iterdir()) == []
    copy = tmp_path / "chroma-copy"
    shutil.copytree(source, copy)
    chroma_sees = _chroma_records(copy)
    assert sorted(chroma_sees) == ["first-renamed", "flushed-renamed"]  # the commit in the WAL
    _assert_migrated(target, {f"{n}-renamed": r for n, r in records.items()})


# -- every tenant and database; names checked before anything is written ------------------


def test_tenants_and_databases_without_collections_are_created(tmp_path: Path) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    admin = chromadb.AdminClient(ChromaSettings(is_persistent=True, persist_directory=str(source)))
    admin.create_database("emptydb")
    admin.create_tenant("lonely")
    admin.create_tenant("acme")
    admin.create_database("research", tenant="acme")
    admin.create_database("archive", tenant="acme")
    chromadb.PersistentClient(path=str(source)).create_collection("has-one").add(
        ids=["1"], embeddings=[[1.0, 2.0]]
    )
    tenants = ("default_tenant", "lonely", "acme")
    expected = {t: sorted(d["name"] for d in admin.list_databases(tenant=t)) for t in tenants}
    assert expected["lonely"] == [] and expected["default_tenant"] == [
        "default_database",
        "emptydb",
    ]
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    with huedb.PersistentClient(path=target) as client:
        for tenant in tenants:
            assert client.get_tenant(tenant)["name"] == tenant
        got = {t: sorted(d["name"] for d in client.list_databases(tenant=t)) for t in tenants}
    assert got == expected


@pytest.mark.parametrize(
    ("tenant", "database", "collection", "refused"),
    [
        ("lonely", "d/b", "col", "source database 'd/b' of tenant 'lonely'"),
        ("x/y", "fine-db", "col", "source tenant 'x/y'"),
        (
            "acme",
            "research",
            "a b",  # Chroma refuses it today; older versions wrote other names
            "source collection 'a b' of tenant 'acme', database 'research'",
        ),
    ],
)
def test_names_huedb_refuses_stop_the_run_before_anything_is_written(
    tmp_path: Path, tenant: str, database: str, collection: str, refused: str
) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    chromadb.PersistentClient(path=str(source)).create_collection("first").add(
        ids=["1"], embeddings=[[1.0, 2.0]]
    )
    admin = chromadb.AdminClient(ChromaSettings(is_persistent=True, persist_directory=str(source)))
    admin.create_tenant(tenant)
    admin.create_database(database, tenant=tenant)
    odd = chromadb.PersistentClient(path=str(source), tenant=tenant, database=database)
    odd.create_collection("col").add(ids=["1"], embeddings=[[1.0, 2.0]])
    _close_chroma()
    if collection != "col":
        with sqlite3.connect(source / "chroma.sqlite3") as conn:
            conn.execute("UPDATE collections SET name = ? WHERE name = 'col'", (collection,))
        conn.close()
    with pytest.raises(ValueError, match=re.escape(refused)) as info:
        migrate_chroma(source, target, show_progress=False)
    assert "huedb refuses" in str(info.value)
    assert not target.exists()  # refused before the store was even created


@pytest.mark.parametrize("database", ["d b", "ünï-db", "alice@example.com"])
def test_database_names_chromas_library_takes_are_migrated(tmp_path: Path, database: str) -> None:
    """Names outside the server's [a-zA-Z0-9._-] were refused, though Chroma's library (and
    now huedb's) takes any name of 3 bytes or more without '/'."""
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    admin = chromadb.AdminClient(ChromaSettings(is_persistent=True, persist_directory=str(source)))
    admin.create_database(database)
    odd = chromadb.PersistentClient(path=str(source), database=database)
    odd.create_collection("col").add(ids=["1"], embeddings=[[1.0, 2.0]])
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    with huedb.PersistentClient(path=target, database=database) as client:
        assert client.get_collection("col").get(include=["embeddings"])["ids"] == ["1"]


# -- a source that changes while it is read -----------------------------------------------


def test_the_source_is_read_in_one_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma deletes log entries its segments applied; one read transaction keeps them
    until the run has read them (the purge waits, as a writer waits for any reader)."""
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    expected = _build_two(source)
    purges: list[str] = []
    write = chroma_import._write_batch

    def purge_then_write(*args: Any, **kwargs: Any) -> None:
        if not purges:
            conn = sqlite3.connect(source / "chroma.sqlite3", timeout=0)
            try:
                conn.execute("DELETE FROM embeddings_queue")
                conn.commit()
                purges.append("purged")
            except sqlite3.OperationalError as exc:
                purges.append(str(exc))
            finally:
                conn.close()
        write(*args, **kwargs)

    monkeypatch.setattr(chroma_import, "_write_batch", purge_then_write)
    migrate_chroma(source, target, show_progress=False, batch_size=10)
    assert purges == ["database is locked"]
    _assert_migrated(target, expected)


def test_hnsw_files_rewritten_during_the_run_stop_it_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Chroma persisting a segment while it is read (here: its id map caught half-written)
    is the documented error, exit 2, and what the run created is removed."""
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    _build_two(source)
    pickle_file = next(source.glob("*/index_metadata.pickle"))
    half = pickle_file.read_bytes()[:100]
    write = chroma_import._write_batch

    def persist_then_write(*args: Any, **kwargs: Any) -> None:
        pickle_file.write_bytes(half)  # `flushed`'s files, while `first` is written
        write(*args, **kwargs)

    monkeypatch.setattr(chroma_import, "_write_batch", persist_then_write)
    with caplog.at_level(logging.INFO):
        code = _cli("migrate-chroma", "--from", str(source), "--path", str(target))
    assert code == EXIT_ERROR
    (line,) = _error_lines(caplog)
    assert f"{source} changed during the migration" in line and "stop Chroma" in line
    assert "Traceback" not in caplog.text
    with huedb.PersistentClient(path=target) as client:
        assert client.list_collections() == []


# -- an emptied collection keeps its dimension ---------------------------------------------


def test_a_collection_whose_records_were_all_deleted_keeps_its_dimension(tmp_path: Path) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    col = chromadb.PersistentClient(path=str(source)).create_collection("emptied")
    col.add(ids=["1", "2"], embeddings=[[1.0, 2.0, 3.0]] * 2)
    col.delete(ids=["1", "2"])
    with pytest.raises(Exception, match="expecting embedding with dimension of 3, got 2") as chroma:
        col.add(ids=["x"], embeddings=[[1.0, 2.0]])
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    with huedb.PersistentClient(path=target) as client:
        emptied = client.get_collection("emptied")
        assert emptied.count() == 0 and emptied.get()["ids"] == []
        with pytest.raises(InvalidArgumentError) as huedb_error:
            emptied.add(ids=["x"], embeddings=[[1.0, 2.0]])
        assert str(huedb_error.value) == str(chroma.value)
        emptied.add(ids=["y"], embeddings=[[1.0, 2.0, 3.0]])
        assert emptied.get()["ids"] == ["y"]


# -- a run that fails leaves the target as it was --------------------------------------------


def _flushed(source: Path) -> Path:
    """The HNSW segment folder of `flushed` (`first`'s has no id map: nothing persisted)."""
    return next(source.glob("*/index_metadata.pickle")).parent


def _truncate(file: Path, size: int) -> None:
    file.write_bytes(file.read_bytes()[:size])


def _damage_sqlite_page(source: Path) -> None:
    """Overwrite the root page of Chroma's log table (read after `first` was created)."""
    db_file = source / "chroma.sqlite3"
    with sqlite3.connect(db_file) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'embeddings_queue'"
        ).fetchone()
    conn.close()
    with open(db_file, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xab" * page_size)


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated header.bin": (
        lambda s: _truncate(_flushed(s) / "header.bin", 50),
        "source collection 'flushed' .*truncated HNSW header",
    ),
    "half-written id map": (
        lambda s: _truncate(_flushed(s) / "index_metadata.pickle", 100),
        "source collection 'flushed' .*unreadable HNSW metadata",
    ),
    "short data_level0.bin": (
        lambda s: _truncate(_flushed(s) / "data_level0.bin", 1000),
        "source collection 'flushed' .*data_level0.bin: shorter than",
    ),
    "no length.bin": (
        lambda s: (_flushed(s) / "length.bin").unlink(),
        "source collection 'flushed' .*length.bin: missing",
    ),
    "damaged SQLite page": (_damage_sqlite_page, "is damaged: chroma.sqlite3 fails"),
}


@pytest.fixture(scope="module")
def two_collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chroma-two") / "store"
    _build_two(path)
    return path


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_source_is_refused_before_anything_is_written(
    two_collections: Path, tmp_path: Path, damage: str
) -> None:
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    shutil.copytree(two_collections, source)
    do_damage, message = DAMAGES[damage]
    do_damage(source)
    with pytest.raises(ValueError, match=message):
        migrate_chroma(source, target, show_progress=False)
    assert not target.exists()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """ "" for the SQLite store in the target directory, else a PostgreSQL store's URL."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_an_interrupted_run_removes_what_it_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_url: str,
) -> None:
    """Ctrl-C while `second` is written: the tenant, databases and collections the run
    created are removed, a collection the target had before is left as it was; exit 130."""
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    admin = chromadb.AdminClient(ChromaSettings(is_persistent=True, persist_directory=str(source)))
    admin.create_tenant("acme")
    admin.create_database("research", tenant="acme")
    admin.create_database("emptydb")
    notes = chromadb.PersistentClient(path=str(source), tenant="acme", database="research")
    _fill(notes.create_collection("notes"), 30, 3, 4)
    client = chromadb.PersistentClient(path=str(source))
    _fill(client.create_collection("first"), 30, 3, 5)
    _fill(client.create_collection("second"), 30, 3, 6)
    _close_chroma()
    settings = huedb.Settings(huedb_store=store_url)
    with huedb.PersistentClient(path=target, settings=settings) as huedb_client:
        huedb_client.create_collection("keep").add(ids=["k"], embeddings=[[1.0, 2.0]])
    clear_system_cache()
    write = chroma_import._write_batch

    def interrupt(collection: Any, *args: Any, **kwargs: Any) -> None:
        if collection.name == "second":
            raise KeyboardInterrupt
        write(collection, *args, **kwargs)

    monkeypatch.setattr(chroma_import, "_write_batch", interrupt)
    store = ["--store", store_url] if store_url else []
    with caplog.at_level(logging.INFO):
        code = _cli("migrate-chroma", "--from", str(source), "--path", str(target), *store)
    assert code == EXIT_INTERRUPTED
    assert _error_lines(caplog) == ["migrate-chroma: interrupted"]
    with huedb.PersistentClient(path=target, settings=settings) as huedb_client:
        assert [c.name for c in huedb_client.list_collections()] == ["keep"]
        assert huedb_client.get_collection("keep").get()["ids"] == ["k"]
        with pytest.raises(NotFoundError):
            huedb_client.get_database("emptydb")
        with pytest.raises(NotFoundError):
            huedb_client.get_tenant("acme")


# -- what a rerun does with collections renamed or deleted in Chroma ------------------------


def test_a_rerun_matches_collections_by_name(tmp_path: Path) -> None:
    """As docs/operations.md says: a collection renamed in Chroma is migrated again under its
    new name and one deleted there stays in huedb (neither is mirrored)."""
    source, target = tmp_path / "chroma", tmp_path / "huedb"
    client = chromadb.PersistentClient(path=str(source))
    _fill(client.create_collection("alpha"), 10, 2, 7)
    _fill(client.create_collection("beta"), 10, 2, 8)
    _close_chroma()
    migrate_chroma(source, target, show_progress=False)
    client = chromadb.PersistentClient(path=str(source))
    client.get_collection("alpha").modify(name="gamma")
    client.delete_collection("beta")
    _close_chroma()
    report = migrate_chroma(source, target, show_progress=False)
    assert [(c.name, c.created) for c in report.collections] == [("gamma", True)]
    with huedb.PersistentClient(path=target) as huedb_client:
        names = sorted(c.name for c in huedb_client.list_collections())
        assert names == ["alpha", "beta", "gamma"]
        assert huedb_client.get_collection("gamma").get()["ids"] == [
            f"alpha-{i}" for i in range(10)
        ]


def test_a_target_inside_the_chroma_directory_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The source is only read (docs/operations.md): a --path inside it, which would put a
    huedb store in Chroma's directory, is refused before anything is written (review,
    2026-12-08; the directory itself was refused already)."""
    source = tmp_path / "chroma"
    chromadb.PersistentClient(path=str(source)).create_collection("first").add(
        ids=["1"], embeddings=[[1.0, 2.0]]
    )
    _close_chroma()
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    with caplog.at_level(logging.INFO):
        code = _cli("migrate-chroma", "--from", str(source), "--path", str(source / "sub"))
    assert code == EXIT_ERROR
    (line,) = _error_lines(caplog)
    assert "is inside the data directory" in line
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
