"""On-disk format versions: newer formats are refused, older ones migrate after a backup."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.record_values import vector_digest
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.schema import DIGEST_TABLES, FORMAT_VERSION
from huedb.errors import FormatVersionError
from tests.cli import run_cli


def _store(path: Path) -> np.ndarray:
    client = huedb.PersistentClient(path=path)
    col = client.create_collection("kept", metadata={"hnsw:space": "cosine"})
    vectors = np.random.default_rng(4).standard_normal((200, 8)).astype(np.float32)
    col.add(ids=[f"k{i}" for i in range(200)], embeddings=vectors, documents=["d"] * 200)
    client.close()
    clear_system_cache()
    return vectors


def _set_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path / DB_FILENAME)
    conn.execute("UPDATE huedb_meta SET value = ? WHERE key = 'format_version'", (str(version),))
    conn.commit()
    conn.close()


def _reopened_as(
    data: Path, conn: sqlite3.Connection, version: int
) -> tuple[huedb.ClientAPI, huedb.Collection]:
    """Commit the changes made to the store through `conn`, mark it as `version`, and open
    its "kept" collection (the open migrates it)."""
    conn.commit()
    conn.close()
    _set_version(data, version)
    client = huedb.PersistentClient(path=data)
    return client, client.get_collection("kept")


def test_newer_format_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data)
    _set_version(data, FORMAT_VERSION + 1)
    with pytest.raises(FormatVersionError, match="newer huedb"):
        huedb.PersistentClient(path=data)
    clear_system_cache()
    r = run_cli("verify", "--path", str(data), timeout=120)
    assert r.returncode == 2 and "Upgrade huedb" in r.stderr


def test_format_1_store_is_backed_up_then_migrated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    vectors = _store(data)
    conn = sqlite3.connect(data / DB_FILENAME)
    for table in DIGEST_TABLES:
        conn.execute(f"DROP TABLE {table}")
    conn.execute("ALTER TABLE embeddings DROP COLUMN digest")
    conn.execute("ALTER TABLE collections DROP COLUMN snapshot_seq")
    conn.execute("DROP TABLE aliases")
    client, col = _reopened_as(data, conn, 1)
    assert col.count() == 200
    got = col.query(query_embeddings=vectors[:20], n_results=1)
    assert got["ids"] == [[f"k{i}"] for i in range(20)]
    client.create_alias("kept-live", "kept")
    client.close()
    clear_system_cache()

    backups = list((data / "backups").glob("huedb-format-1-*.sqlite3"))
    assert len(backups) == 1
    old = sqlite3.connect(backups[0])
    assert (
        old.execute("SELECT value FROM huedb_meta WHERE key='format_version'").fetchone()[0] == "1"
    )
    assert old.execute("SELECT count(*) FROM records").fetchone()[0] == 200
    old.close()
    conn = sqlite3.connect(data / DB_FILENAME)
    version = conn.execute("SELECT value FROM huedb_meta WHERE key='format_version'").fetchone()
    assert int(version[0]) == FORMAT_VERSION
    for blob, digest in conn.execute("SELECT vector, digest FROM embeddings"):
        assert digest == vector_digest(blob)
    pairs = set(conn.execute("SELECT digest, key FROM digests"))
    assert pairs == set(conn.execute("SELECT digest, key FROM embeddings"))
    conn.close()


def test_format_3_store_gets_the_covering_metadata_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    col = client.create_collection("meta", embedding_function=None)
    vectors = np.random.default_rng(9).standard_normal((300, 4)).astype(np.float32)
    col.add(
        ids=[f"m{i}" for i in range(300)],
        embeddings=vectors,
        metadatas=[{"b": i % 10, "tags": [i % 3, 7]} for i in range(300)],
    )
    client.close()
    clear_system_cache()
    conn = sqlite3.connect(data / DB_FILENAME)
    conn.execute("DROP INDEX record_meta_keys")
    conn.execute("CREATE INDEX record_meta_lookup ON record_meta (cid, name, kind, value)")
    conn.commit()
    conn.close()
    _set_version(data, 3)

    client = huedb.PersistentClient(path=data)
    col = client.get_collection("meta", embedding_function=None)
    got = col.get(where={"$or": [{"b": 3}, {"b": {"$gte": 8}}]})
    assert sorted(got["ids"]) == sorted(f"m{i}" for i in range(300) if i % 10 in (3, 8, 9))
    hits = col.query(query_embeddings=vectors[:1], n_results=300, where={"tags": {"$contains": 2}})
    assert sorted(hits["ids"][0]) == sorted(f"m{i}" for i in range(300) if i % 3 == 2)
    client.close()
    clear_system_cache()
    conn = sqlite3.connect(data / DB_FILENAME)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert "record_meta_keys" in names and "record_meta_lookup" not in names
    assert list((data / "backups").glob("huedb-format-3-*.sqlite3"))


def test_format_4_store_gets_digest_levels_and_document_index(tmp_path: Path) -> None:
    """Format 4 had two digest levels: the middle one is added, empty, and the digests
    stored before still find their records; new ones go to the levels as usual. Its
    document index stored the text: the new one is built from `records`."""
    data = tmp_path / "data"
    vectors = _store(data)
    conn = sqlite3.connect(data / DB_FILENAME)
    conn.execute("INSERT INTO digests SELECT digest, key FROM digests_recent")
    conn.execute("DELETE FROM digests_recent")
    conn.execute("DROP TABLE digests_mid")
    # Format 4's document index: the text stored in it, with positions.
    conn.execute("DROP TABLE documents_fts")
    conn.execute(
        "CREATE VIRTUAL TABLE documents_fts USING fts5 "
        "(document, tokenize = 'trigram case_sensitive 1')"
    )
    conn.execute(
        "INSERT INTO documents_fts (rowid, document) SELECT key, document FROM records "
        "WHERE document IS NOT NULL"
    )
    conn.execute("UPDATE records SET document = 'doc ' || id WHERE id IN ('k5', 'k150')")
    client, col = _reopened_as(data, conn, 4)
    extra = np.random.default_rng(5).standard_normal((10, 8)).astype(np.float32)
    col.add(ids=[f"x{i}" for i in range(10)], embeddings=extra)
    for ids, rows in ((["k3"], vectors[3:4]), (["x7"], extra[7:8])):
        assert col.query(query_embeddings=rows, n_results=1)["ids"] == [ids]
    # The index was built again from the records' text (the old one had "d" for both).
    found = col.get(where_document={"$contains": "doc k"})["ids"]
    assert sorted(found) == ["k150", "k5"]
    client.close()
    clear_system_cache()
    conn = sqlite3.connect(data / DB_FILENAME)
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DIGEST_TABLES]
    version = conn.execute("SELECT value FROM huedb_meta WHERE key='format_version'").fetchone()
    conn.close()
    assert counts == [200, 0, 10] and int(version[0]) == FORMAT_VERSION
    assert list((data / "backups").glob("huedb-format-4-*.sqlite3"))
