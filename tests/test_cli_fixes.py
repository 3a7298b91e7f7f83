"""CLI mistakes give one clear line and exit 2 (docs/operations.md), never a traceback, a
wrong port, a storage error's exit 3, or an empty store left behind."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import huedb
from huedb.errors import ConfigError
from huedb.server.server_config import parse_token_list
from tests.cli import REPO_ROOT, run_cli
from tests.servers import free_port, huedb_server


def error_lines(output: str) -> list[str]:
    """The log lines of a refused command (each mistake must give exactly one)."""
    return [line for line in output.splitlines() if " ERROR " in line]


def run_refused(*args: str, timeout: float = 30) -> str:
    """`huedb *args`, expected to refuse quickly with exit 2 and one ERROR line; its output."""
    start = time.monotonic()
    proc = run_cli(*args, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert time.monotonic() - start < 20, output
    assert "Traceback" not in output, output
    assert len(error_lines(output)) == 1, output
    return output


# --------------------------------------------------------------------------- huedb run --port


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("flag", "99999", "must be from 1 to 65535, not 99999"),
        ("flag", "-5", "must be from 1 to 65535, not -5"),
        ("flag", "0", "must be from 1 to 65535, not 0"),
        ("config", "70000", "must be from 1 to 65535, not 70000"),
        ("config", '"8000"', "must be a whole number, not '8000'"),
        ("config", "true", "must be a whole number, not True"),
        ("json config", "8000.5", "must be a whole number, not 8000.5"),
    ],
)
def test_a_port_outside_1_to_65535_is_refused(
    tmp_path: Path, source: str, value: str, message: str
) -> None:
    """uvicorn served 99999 silently on 99999 % 65536 and failed -5 with exit 3."""
    data = tmp_path / "data"
    if source == "flag":
        args: tuple[str, ...] = ("--port", value)
    elif source == "config":
        (tmp_path / "server.toml").write_text(f"port = {value}\n")
        args = ("--config", str(tmp_path / "server.toml"))
    else:
        (tmp_path / "server.json").write_text(f'{{"port": {value}}}')
        args = ("--config", str(tmp_path / "server.json"))
    output = run_refused("run", "--path", str(data), *args)
    assert f"cannot start: --port (port) {message}" in output, output
    assert not data.exists()


# --------------------------------------------------------------------------- huedb run --path


@pytest.mark.parametrize("under", [False, True])
def test_run_on_a_path_that_is_a_file_is_refused(tmp_path: Path, under: bool) -> None:
    """hold_directory's FileExistsError used to surface as a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    path = afile / "sub" if under else afile
    output = run_refused("run", "--path", str(path), "--port", str(free_port()))
    (line,) = error_lines(output)
    assert "cannot start: --path" in line and str(path) in line, line
    assert "not a directory" in line, line
    assert afile.read_text() == "not a directory\n"


# --------------------------------------------------------------------------- huedb run: port in use


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        for workers in ("1", "2"):
            output = run_refused(
                "run", "--path", str(tmp_path / "data"), "--port", str(port), "--workers", workers
            )
            (line,) = error_lines(output)
            assert f"cannot start: 127.0.0.1:{port} is already in use" in line, output
            assert "uvicorn" not in output.lower(), output


def test_several_workers_still_serve(tmp_path: Path) -> None:
    """The bind check lets go of the port before uvicorn binds it for its workers."""
    with huedb_server(tmp_path / "data", "--workers", "2") as server:
        reply = httpx.get(f"{server.url}/api/v2/heartbeat", timeout=30)
        assert reply.status_code == 200, reply.text


# --------------------------------------------------------------------------- huedb import


def _file_with_a_bad_last_record(path: Path, n: int = 50, bad: bool = True) -> None:
    """A readable Parquet file whose last record the upsert would refuse (NaN)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(3).standard_normal((n, 4))
    if bad:
        vectors[-1, 2] = np.nan
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "document": [f"doc {i}" for i in range(n)],
            "metadata": [json.dumps({"i": i}) for i in range(n)],
            "embedding": vectors.tolist(),
        }
    )
    pq.write_table(table, path)


@pytest.mark.parametrize("kind", ["not parquet", "truncated", "bad record", "missing"])
def test_a_refused_import_leaves_no_store_behind(tmp_path: Path, kind: str) -> None:
    """The file is checked before a store is created for it."""
    file = tmp_path / "in.parquet"
    if kind == "not parquet":
        file.write_text("hello\n")
    elif kind == "truncated":
        _file_with_a_bad_last_record(file)
        file.write_bytes(file.read_bytes()[:-40])
    elif kind == "bad record":
        _file_with_a_bad_last_record(file)
    store = tmp_path / "newstore"
    output = run_refused("import", str(file), "--path", str(store))
    assert "nothing was imported" in output, output
    assert not store.exists(), sorted(p.name for p in store.iterdir())


def test_import_into_a_new_store_still_works(tmp_path: Path) -> None:
    file = tmp_path / "in.parquet"
    _file_with_a_bad_last_record(file, bad=False)
    store = tmp_path / "newstore"
    proc = run_cli("import", str(file), "--path", str(store), "--collection", "docs")
    assert proc.returncode == 0, proc.stderr
    assert "imported 50 records" in proc.stdout, proc.stdout


def test_import_batch_size_below_one_creates_no_store(tmp_path: Path) -> None:
    file = tmp_path / "in.parquet"
    _file_with_a_bad_last_record(file)
    store = tmp_path / "newstore"
    output = run_refused("import", str(file), "--path", str(store), "--batch-size", "0")
    assert "--batch-size must be at least 1" in output, output
    assert not store.exists()


# --------------------------------------------------------------------------- huedb eval


def test_eval_with_a_missing_queries_file_is_a_usage_error(tmp_path: Path) -> None:
    """Was `storage error, the command did not complete`, exit 3."""
    missing = tmp_path / "missing.jsonl"
    output = run_refused(
        "eval", "--path", str(tmp_path / "data"), "--collection", "x", "--queries", str(missing)
    )
    assert f"--queries {missing} is not a file" in output, output
    assert "storage error" not in output, output


def test_eval_with_a_queries_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    """Was Python's bare "'utf-8' codec can't decode byte 0xe9 in position 14", no file."""
    queries = tmp_path / "latin1.jsonl"
    queries.write_bytes('{"query": "café"}\n'.encode("latin-1"))
    output = run_refused(
        "eval", "--path", str(tmp_path / "data"), "--collection", "x", "--queries", str(queries)
    )
    assert f"{queries}: not UTF-8 text (byte 14)" in output, output


# --------------------------------------------------------------------------- Settings typos


def test_an_unknown_huedb_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="'huedb_index_memry'.*'huedb_index_memory'"):
        huedb.Settings(huedb_index_memry="1GiB")
    with pytest.raises(ConfigError, match="'HUEDB_SNAPSHOT_EVRY'"):
        huedb.Settings(HUEDB_SNAPSHOT_EVRY=5)
    with pytest.raises(ConfigError, match="huedb's are huedb_store"):
        huedb.Settings(huedb_nothing_like_it=1)


def test_unknown_chromadb_style_settings_stay_accepted() -> None:
    settings = huedb.Settings(chroma_some_future_field=1, anything_else="x", huedb_sync="full")
    assert settings.extras == {"chroma_some_future_field": 1, "anything_else": "x"}
    assert settings.huedb_sync == "full"


# --------------------------------------------------------------------------- README tokens


def test_readme_token_examples_are_accepted() -> None:
    """The server refused README's `tok:admin,...` example (tokens need 8 characters)."""
    examples = re.findall(r'HUEDB_AUTH_TOKENS="([^"]+)"', (REPO_ROOT / "README.md").read_text())
    assert examples
    for example in examples:
        assert parse_token_list(example, "README.md"), example


# --------------------------------------------------------------------------- --store scheme


def test_an_unknown_store_scheme_is_named_without_its_password(tmp_path: Path) -> None:
    password = "pw-9f3kq-secret"
    output = run_refused(
        "stats", "--store", f"mysql://u:{password}@h/db", "--path", str(tmp_path / "data")
    )
    assert "got a mysql:// URL" in output, output
    assert "unparsable" not in output, output
    assert password not in output, output
