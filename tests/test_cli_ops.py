"""The operations commands end to end, as a user runs them (local path and through a server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import huedb
from huedb.api.client import clear_system_cache
from tests.cli import run_cli as huedb_cli
from tests.servers import huedb_server

ADMIN = "admin-token-123456"
READER = "reader-token-123456"


def _populate(path: Path, n: int = 300) -> np.ndarray:
    client = huedb.PersistentClient(path=path)
    col = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    vectors = np.random.default_rng(5).standard_normal((n, 16)).astype(np.float32)
    col.add(
        ids=[f"d{i}" for i in range(n)],
        embeddings=vectors,
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"i": i, "even": i % 2 == 0} for i in range(n)],
    )
    client.close()
    clear_system_cache()
    return vectors


def test_local_commands_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    vectors = _populate(data)
    out = tmp_path / "b.tar"
    r = huedb_cli("backup", "--path", str(data), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "300 records" in r.stdout
    r = huedb_cli("restore", str(out), "--path", str(tmp_path / "restored"))
    assert r.returncode == 0, r.stderr
    r = huedb_cli("restore", str(out), "--path", str(tmp_path / "restored"))
    assert r.returncode == 2 and "not empty" in r.stderr
    r = huedb_cli("verify", "--path", str(tmp_path / "restored"))
    assert r.returncode == 0, r.stdout + r.stderr
    parquet = tmp_path / "docs.parquet"
    r = huedb_cli("export", "--path", str(data), "--collection", "docs", "--out", str(parquet))
    assert r.returncode == 0, r.stderr
    r = huedb_cli("import", str(parquet), "--path", str(tmp_path / "imported"))
    assert r.returncode == 0, r.stderr
    client = huedb.PersistentClient(path=tmp_path / "imported")
    col = client.get_collection("docs")
    assert col.count() == 300
    assert col.configuration_json["hnsw"]["space"] == "cosine"
    got = col.get(ids=["d7"], include=["embeddings", "metadatas", "documents"])
    assert got["metadatas"] == [{"i": 7, "even": False}] and got["documents"] == ["doc 7"]
    assert np.array_equal(got["embeddings"][0], vectors[7])
    client.close()
    r = huedb_cli("stats", "--path", str(data), "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["collections"][0]["count"] == 300
    r = huedb_cli("stats", "--path", str(data))
    assert r.returncode == 0, r.stderr
    assert "index memory budget no limit:" in r.stdout and "docs: 300 x" in r.stdout
    r = huedb_cli("compact", "--path", str(data))
    assert r.returncode == 0 and "reclaimed" in r.stdout
    r = huedb_cli("stats", "--path", str(data), "--url", "http://127.0.0.1:1")
    assert r.returncode == 2 and "either --path or --url" in r.stderr


def test_server_backup_and_stats_need_an_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _populate(data)
    env = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:read-only"}
    with huedb_server(data, env=env) as server:
        out = tmp_path / "remote.tar"
        r = huedb_cli("backup", "--url", server.url, "--token", READER, "--out", str(out))
        assert r.returncode == 2 and "403" in r.stderr
        r = huedb_cli("backup", "--url", server.url, "--out", str(out))
        assert r.returncode == 2 and "401" in r.stderr
        bad = ("--url", server.url, "--token", "bad\ttoken")  # chromadb's token check
        for r in (huedb_cli("backup", *bad, "--out", str(out)), huedb_cli("stats", *bad)):
            assert r.returncode == 2 and "Invalid token" in r.stderr, r.stderr
        assert not out.exists()
        r = huedb_cli("backup", "--url", server.url, "--token", ADMIN, "--out", str(out))
        assert r.returncode == 0, r.stderr
        client = huedb.HttpClient(
            host=server.url, settings=huedb.Settings(chroma_client_auth_credentials=ADMIN)
        )
        client.get_collection("docs").query(query_embeddings=[[0.1] * 16], n_results=3)
        r = huedb_cli("stats", "--url", server.url, "--token", ADMIN, "--json")
        assert r.returncode == 0, r.stderr
        remote = json.loads(r.stdout)
        assert remote["collections"][0]["count"] == 300
        client.close()
    r = huedb_cli("restore", str(out), "--path", str(tmp_path / "from-server"))
    assert r.returncode == 0, r.stderr
    restored = huedb.PersistentClient(path=tmp_path / "from-server")
    assert restored.get_collection("docs").count() == 300
    restored.close()


def _pandas_loop_file(path: Path, n: int = 20) -> None:
    """A file as Chroma's pandas export loop writes it: no huedb metadata, so no space."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(2).standard_normal((n, 4)).tolist()
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "document": [f"doc {i}" for i in range(n)],
            "metadata": [json.dumps({"i": i}) for i in range(n)],
            "embedding": vectors,
        }
    )
    pq.write_table(table, path)


def test_import_of_a_file_without_space_warns_and_takes_space(tmp_path: Path) -> None:
    """Issue 12: `--space`, a warning for a file without one, and a human summary."""
    file = tmp_path / "pandas.parquet"
    _pandas_loop_file(file)
    r = huedb_cli("import", str(file), "--path", str(tmp_path / "a"), "--collection", "loop")
    assert r.returncode == 0, r.stderr
    assert "carries no distance space" in r.stderr and "--space" in r.stderr
    assert "ImportReport(" not in r.stdout
    assert "imported 20 records" in r.stdout and "created collection loop" in r.stdout
    r = huedb_cli(
        "import", str(file), "--path", str(tmp_path / "b"), "--collection", "loop",
        "--space", "cosine",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "carries no distance space" not in r.stderr
    client = huedb.PersistentClient(path=tmp_path / "b")
    assert client.get_collection("loop").configuration_json["hnsw"]["space"] == "cosine"
    client.close()
    clear_system_cache()


def test_remote_export_prints_a_summary_and_no_http_request_logs(tmp_path: Path) -> None:
    """Issue 12: human summaries; httpx's per-request INFO lines are not printed."""
    data = tmp_path / "data"
    _populate(data, n=50)
    with huedb_server(data) as server:
        out = tmp_path / "docs.parquet"
        r = huedb_cli(
            "export", "--url", server.url, "--collection", "docs", "--out", str(out),
            "--batch-size", "10",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "HTTP Request" not in r.stderr, r.stderr
        assert "ExportReport(" not in r.stdout
        assert f"exported 50 records of docs (16-d, cosine) to {out}" in r.stdout
