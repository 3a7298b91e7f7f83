"""Operations on a PostgreSQL store, through the real `huedb` command line.

Issue 14, acceptance 4: a backup taken from a PostgreSQL store restores into SQLite, and a
backup of that restores into PostgreSQL again, with every record equal (ids, documents,
metadata with their types, embeddings bit for bit), collections, tenants, databases and
aliases too. Also: the other commands take `--store` (or HUEDB_STORE).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

import huedb
from tests.cli import check_cli, run_cli
from tests.pg_cluster import PgCluster

N = 400
DIM = 16


def _metadata(i: int, rng: np.random.Generator) -> dict[str, Any]:
    """Every metadata type and awkward values: ints at int64's ends, floats that are not
    short decimals, -0.0, bools (never equal to 1/0), unicode and empty strings, arrays."""
    meta: dict[str, Any] = {
        "i": i,
        "big": (2**63 - 1) if i % 3 == 0 else -(2**63) + i,
        "f": float(rng.standard_normal()) * 10 ** int(rng.integers(-30, 30)),
        "third": i / 3,
        "neg_zero": -0.0,
        "flag": bool(i % 2),
        "one": 1 if i % 2 else True,
        "s": f"naïve ✓ {i}" if i % 5 else "",
    }
    if i % 4 == 0:
        meta["tags"] = [f"t{i % 7}", "x"]
        meta["nums"] = [i, i + 1]
    return meta


def _fill(client: huedb.Client) -> None:
    rng = np.random.default_rng(14)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors[0, :4] = [0.0, -0.0, np.float32(1e-45), np.finfo(np.float32).max]  # subnormal, max
    col = client.create_collection("things", metadata={"owner": "ops", "v": 2})
    ids = [f"id-{i:04d}" for i in range(N)]
    col.add(
        ids=ids,
        embeddings=vectors,
        metadatas=[_metadata(i, rng) for i in range(N)],
        documents=[None if i % 9 == 0 else f"document {i} ✓" for i in range(N)],
    )
    col.delete(ids=ids[::10])  # keys with gaps, as a live store has
    cosine = client.create_collection("cosine-one", configuration={"hnsw": {"space": "cosine"}})
    cosine.add(ids=["only"], embeddings=[[0.5] * 3], metadatas=[{"k": "v"}])
    client.create_alias("things-alias", "things")
    client.create_tenant("acme")
    client.create_database("sales", tenant="acme")
    client.set_tenant("acme", "sales")
    client.create_collection("leads").add(ids=["l1"], embeddings=[[1.0, 2.0]], documents=["d"])
    client.set_tenant("default_tenant", "default_database")


def _typed(value: Any) -> Any:
    """A value with its type, so 1 == 1.0 == True never passes for equal; -0.0 kept."""
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float):
        return ("float", value.hex() if not math.isnan(value) else "nan")
    return (type(value).__name__, value)


def _snapshot(client: huedb.Client) -> dict[str, Any]:
    """Everything a client can read of the store, with metadata types and vector bytes."""
    out: dict[str, Any] = {"aliases": client.list_aliases()}
    for tenant, database in (("default_tenant", "default_database"), ("acme", "sales")):
        client.set_tenant(tenant, database)
        for col in client.list_collections():
            got = col.get(include=["embeddings", "metadatas", "documents"])
            out[f"{tenant}/{database}/{col.name}"] = {
                "metadata": _typed_dict(col.metadata),
                "configuration": col.configuration_json,
                "ids": got["ids"],
                "documents": got["documents"],
                "metadatas": [_typed_dict(m) for m in got["metadatas"]],
                "vectors": [np.asarray(e, dtype=np.float32).tobytes() for e in got["embeddings"]],
            }
    client.set_tenant("default_tenant", "default_database")
    return out


def _typed_dict(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if meta is None else {k: _typed(v) for k, v in meta.items()}


def _pg_client(url: str, node: Path) -> huedb.Client:
    return huedb.PersistentClient(path=node, settings=huedb.Settings(huedb_store=url))


def test_backup_moves_postgresql_to_sqlite_and_back_every_record_equal(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    source = _pg_client(pg_url, tmp_path / "node-a")
    _fill(source)
    expected = _snapshot(source)
    source.close()
    assert len(expected["default_tenant/default_database/things"]["ids"]) == N - N // 10

    check_cli("backup", "--store", pg_url, "--out", str(tmp_path / "from-pg.tar"))
    check_cli("restore", str(tmp_path / "from-pg.tar"), "--path", str(tmp_path / "sqlite"))
    sqlite_client = huedb.PersistentClient(path=tmp_path / "sqlite")
    assert _snapshot(sqlite_client) == expected
    sqlite_client.close()

    check_cli("backup", "--path", str(tmp_path / "sqlite"), "--out", str(tmp_path / "from-sq.tar"))
    back_url = pg_cluster.create_database("ops_roundtrip_back")
    try:
        check_cli("restore", str(tmp_path / "from-sq.tar"), "--store", back_url)
        back = _pg_client(back_url, tmp_path / "node-b")
        assert _snapshot(back) == expected
        # The restored PostgreSQL store takes new writes after the restored keys.
        things = back.get_collection("things")
        things.add(ids=["new"], embeddings=[[0.25] * DIM])
        assert things.count() == N - N // 10 + 1
        back.close()
        r = run_cli("restore", str(tmp_path / "from-sq.tar"), "--store", back_url)
        assert r.returncode == 2 and "not empty" in r.stderr, r.stderr
    finally:
        huedb.api.client.clear_system_cache()
        pg_cluster.drop_database("ops_roundtrip_back")


def test_commands_take_store_from_flag_or_environment(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    client = _pg_client(pg_url, tmp_path / "node")
    _fill(client)
    client.close()
    huedb.api.client.clear_system_cache()

    stats = json.loads(check_cli("stats", "--store", pg_url, "--json").stdout)
    assert stats["store_kind"] == "postgresql"
    assert {c["name"]: c["count"] for c in stats["collections"]}["things"] == N - N // 10
    assert "postgresql_synchronous_commit" in stats["engine"]

    env = {"HUEDB_STORE": pg_url}
    out = check_cli("verify", "--path", str(tmp_path / "node"), env=env).stdout
    assert "store integrity: ok" in out and "PROBLEMS" not in out
    assert "reclaimed" in check_cli("compact", env=env).stdout

    parquet = tmp_path / "things.parquet"
    check_cli("export", "--collection", "things", "--out", str(parquet), env=env)
    check_cli("import", str(parquet), "--collection", "copy", "--store", pg_url)
    copy = _pg_client(pg_url, tmp_path / "node")
    original = copy.get_collection("things").get(include=["embeddings", "metadatas"])
    imported = copy.get_collection("copy").get(include=["embeddings", "metadatas"])
    assert imported["ids"] == original["ids"]
    assert [_typed_dict(m) for m in imported["metadatas"]] == [
        _typed_dict(m) for m in original["metadatas"]
    ]
    assert np.array_equal(
        np.asarray(imported["embeddings"], np.float32), np.asarray(original["embeddings"])
    )
    copy.close()


@pytest.mark.parametrize("with_path", [True, False])
def test_migrate_chroma_into_postgresql(tmp_path: Path, pg_url: str, with_path: bool) -> None:
    import chromadb

    chroma_dir = tmp_path / "chroma"
    chroma = chromadb.PersistentClient(path=str(chroma_dir))
    col = chroma.create_collection("from-chroma")
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], metadatas=[{"x": 1}, {"x": 2.5}])
    del chroma, col
    node = ("--path", str(tmp_path / "node")) if with_path else ()
    check_cli("migrate-chroma", "--from", str(chroma_dir), "--store", pg_url, *node)
    client = _pg_client(pg_url, tmp_path / "reader")
    got = client.get_collection("from-chroma").get(include=["metadatas"])
    assert got["ids"] == ["a", "b"] and got["metadatas"] == [{"x": 1}, {"x": 2.5}]
    client.close()


def test_commands_on_a_database_without_a_store_create_nothing(pg_url: str, tmp_path: Path) -> None:
    """`stats`, `verify`, `compact`, `export`, `backup` on a PostgreSQL database that holds no
    huedb store (a mistyped name) are refused by name, and give it no huedb tables; only
    import, migrate-chroma and restore create a store."""
    commands = [
        ["stats"],
        ["verify"],
        ["compact"],
        ["export", "--collection", "docs", "--out", str(tmp_path / "x.parquet")],
        ["backup", "--out", str(tmp_path / "b.tar")],
    ]
    for command in commands:
        r = run_cli(*command, "--store", pg_url)
        assert r.returncode == 2, (command, r.stdout + r.stderr)
        assert "holds no huedb store" in r.stderr and "Traceback" not in r.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('huedb_meta')").fetchone() == (None,)
