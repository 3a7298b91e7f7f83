"""Operations commands check their inputs before they change anything, and a failure or an
interruption gives one line and the documented exit code (docs/operations.md): 2 refused,
1 a check that failed (`verify`, `eval`), 130 interrupted; never a traceback, a half-made
collection, a directory created by mistake or a temporary file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.errors import UsageError
from huedb.ops.backup import backup
from huedb.ops.model_versions import evaluate, read_queries, reembed
from tests.cli import check_cli, child_env, cli_command, run_cli, start_cli
from tests.embedders import v2 as words_v2
from tests.servers import huedb_server

BIG_ROWS = 4000  # an export of them, one row per batch, takes about a second


def error_lines(output: str) -> list[str]:
    """The ERROR log lines of a command's output."""
    return [line for line in output.splitlines() if " ERROR " in line]


def assert_one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """A command that exited `code` with exactly one ERROR line and no traceback."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output
    assert "Traceback" not in output, output
    assert len(error_lines(output)) == 1, output
    return output


def collection_names(path: Path) -> set[str]:
    client = huedb.PersistentClient(path=path)
    try:
        return {c.name for c in client.list_collections()}
    finally:
        client.close()
        clear_system_cache()


def documents_store(path: Path) -> Path:
    """A store holding `docs_v1`: two records with documents."""
    client = huedb.PersistentClient(path=path)
    client.create_collection("docs_v1", embedding_function=None).add(
        ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["hello world", "bye"]
    )
    client.close()
    clear_system_cache()
    return path


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose collection `big` takes a moment to export with `--batch-size 1`."""
    path = tmp_path_factory.mktemp("big") / "data"
    client = huedb.PersistentClient(path=path)
    vectors = np.random.default_rng(0).random((BIG_ROWS, 8), dtype=np.float32)
    client.create_collection("big").add(ids=[f"r{i}" for i in range(BIG_ROWS)], embeddings=vectors)
    client.close()
    clear_system_cache()
    return path


# ----------------------------------------------------------------------------- reembed


@pytest.mark.parametrize(
    ("embedder", "message"),
    [
        ("os:getcwd", "getcwd() returned a str, not an embedding function"),
        ("os:sep", "sep is a str"),
        ("os:getenv", "TypeError"),  # the factory itself fails
    ],
)
def test_reembed_refuses_an_embedder_that_does_not_load_and_creates_nothing(
    tmp_path: Path, embedder: str, message: str
) -> None:
    """`os:getcwd` gave a traceback after creating the target with a 'legacy' embedding
    function, which a rerun then kept."""
    data = documents_store(tmp_path / "data")
    proc = run_cli(
        "reembed", "--path", str(data), "--source", "docs_v1", "--target", "docs_v2",
        "--embedder", embedder,
    )  # fmt: skip
    assert message in assert_one_line(proc, 2)
    assert collection_names(data) == {"docs_v1"}


def test_reembed_batch_size_zero_is_refused_before_the_target_is_created(tmp_path: Path) -> None:
    data = documents_store(tmp_path / "data")
    proc = run_cli(
        "reembed", "--path", str(data), "--source", "docs_v1", "--target", "docs_v2",
        "--embedder", "tests.embedders:v2", "--batch-size", "0",
    )  # fmt: skip
    assert "--batch-size must be at least 1, got 0" in assert_one_line(proc, 2)
    assert collection_names(data) == {"docs_v1"}


def test_reembed_library_checks_every_input_before_creating_the_target(tmp_path: Path) -> None:
    data = documents_store(tmp_path / "data")
    client = huedb.PersistentClient(path=data)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        reembed(client, "docs_v1", "docs_v2", words_v2(), batch_size=0)
    with pytest.raises(ValueError, match="the embedder must be callable, got a str"):
        reembed(client, "docs_v1", "docs_v2", "/not/an/embedder")
    with pytest.raises(ValueError, match="another collection than the source"):
        reembed(client, "docs_v1", "docs_v1", words_v2())
    with pytest.raises(ValueError, match="expected one vector per document"):
        reembed(client, "docs_v1", "docs_v2", lambda texts: [[1.0, 2.0]])
    with pytest.raises(huedb.errors.NotFoundError):
        reembed(client, "missing", "docs_v2", words_v2())
    assert {c.name for c in client.list_collections()} == {"docs_v1"}
    # The right embedder then creates the target with its identity.
    assert reembed(client, "docs_v1", "docs_v2", words_v2(), batch_size=10**6).embedded == 2
    identity = client.get_collection("docs_v2").configuration_json["embedding_function"]
    assert identity["name"] == "words-v2"
    client.close()


def test_reembed_of_an_empty_source_creates_an_empty_target(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path / "data")
    client.create_collection("docs_v1", embedding_function=None)
    assert reembed(client, "docs_v1", "docs_v2", words_v2()).embedded == 0
    assert client.get_collection("docs_v2", embedding_function=words_v2()).count() == 0
    client.close()


# ------------------------------------------------------------------- positive counts


@pytest.mark.parametrize("k", ["0", "-3"])
def test_eval_k_below_one_is_a_usage_error_not_a_failed_gate(tmp_path: Path, k: str) -> None:
    """It gave a traceback and exit 1, which means "the candidate failed the gate"."""
    data = documents_store(tmp_path / "data")
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "hello", "relevant": ["a"]}\n')
    proc = run_cli(
        "eval", "--path", str(data), "--collection", "docs_v1", "--queries", str(queries),
        "--embedder", "tests.embedders:v2", "--k", k,
    )  # fmt: skip
    assert f"--k must be at least 1, got {k}" in assert_one_line(proc, 2)


def test_evaluate_refuses_k_below_one(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=documents_store(tmp_path / "data"))
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "hello", "relevant": ["a"]}\n')
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        evaluate(client, "docs_v1", read_queries(queries), words_v2(), k=0)
    client.close()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("export", "--collection", "c", "--out", "x.parquet", "--batch-size", "0"),
         "--batch-size"),
        (("import", "x.parquet", "--batch-size", "-1"), "--batch-size"),
        (("reembed", "--source", "a", "--target", "b", "--embedder", "os:getcwd",
          "--batch-size", "-5"), "--batch-size"),
        (("eval", "--collection", "c", "--queries", "q.jsonl", "--k", "-2"), "--k"),
    ],
)  # fmt: skip
def test_counts_below_one_are_refused_first(tmp_path: Path, args: tuple, option: str) -> None:
    proc = run_cli(*args, "--path", str(tmp_path / "data"))
    message = f"{option} must be at least 1, got {args[-1]}"
    assert message in assert_one_line(proc, 2)
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------ export


def test_an_export_removes_the_temporary_file_of_a_killed_export(
    big_store: Path, tmp_path: Path
) -> None:
    """A killed export's hidden `.<name>.<pid>.tmp` stayed beside the output forever."""
    out = tmp_path / "out.parquet"
    args = ("export", "--path", str(big_store), "--collection", "big", "--out", str(out))
    proc = start_cli(*args, "--batch-size", "1")
    temp = wait_for_temp(tmp_path, proc)
    proc.kill()
    proc.wait()
    assert temp.exists()
    live = tmp_path / f".out.parquet.{os.getpid()}.tmp"  # an export still running
    live.write_bytes(b"in progress")
    other = tmp_path / f".other.parquet.{proc.pid}.tmp"  # another output's
    other.write_bytes(b"not ours")
    check_cli(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.parquet", live.name, other.name]
    )


def wait_for_temp(directory: Path, proc: subprocess.Popen) -> Path:
    """The temporary file of the export `proc` writes into `directory`, once it exists."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(directory.glob(f".*.{proc.pid}.tmp"))
        if found:
            return found[0]
        assert proc.poll() is None, "the export ended before its file was seen"
        time.sleep(0.01)
    raise AssertionError("the export wrote no temporary file")


@pytest.mark.parametrize(
    ("sent", "status", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_during_an_export_prints_one_line_and_cleans_up(
    big_store: Path, tmp_path: Path, sent: signal.Signals, status: int, word: str
) -> None:
    """SIGINT printed a KeyboardInterrupt traceback (the cleanup itself was right); SIGTERM
    (`kill`, a service stop) killed the command without its cleanup (a partial file)."""
    out = tmp_path / "out.parquet"
    proc = start_cli(
        "export", "--path", str(big_store), "--collection", "big", "--out", str(out),
        "--batch-size", "1",
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT, and that would be inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    wait_for_temp(tmp_path, proc)
    proc.send_signal(sent)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert error_lines(stderr) == [line for line in stderr.splitlines() if line.strip()]
    assert len(error_lines(stderr)) == 1 and error_lines(stderr)[0].endswith(f"export: {word}")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_export_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    data = documents_store(tmp_path / "data")
    out = tmp_path / "missing" / "x" / "docs.parquet"
    proc = run_cli("export", "--path", str(data), "--collection", "docs_v1", "--out", str(out))
    assert "is not a directory; nothing was written" in assert_one_line(proc, 2)
    assert not (tmp_path / "missing").exists()


# ------------------------------------------------------------------------------ backup


def test_backup_into_a_missing_directory_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    """It created the whole path (`/nonexist/x` for `--out /nonexist/x/b.tar`)."""
    data = documents_store(tmp_path / "data")
    out = tmp_path / "missing" / "x" / "b.tar"
    proc = run_cli("backup", "--path", str(data), "--out", str(out))
    assert f"{out.parent} is not a directory" in assert_one_line(proc, 2)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(UsageError, match="is not a directory"):
        backup(data, out)
    assert not (tmp_path / "missing").exists()
    check_cli("backup", "--path", str(data), "--out", str(tmp_path / "b.tar"))


def test_backup_onto_a_directory_is_a_storage_error_like_export(tmp_path: Path) -> None:
    """An --out that cannot be written (here a directory) is exit 3 for backup as for
    export, as documented; backup said exit 2 (review, 2026-12-08). Nothing is written."""
    data = documents_store(tmp_path / "data")
    out = tmp_path / "taken"
    out.mkdir()
    for command in (
        ("backup", "--path", str(data), "--out", str(out)),
        ("export", "--path", str(data), "--collection", "docs_v1", "--out", str(out)),
    ):
        assert "storage error" in assert_one_line(run_cli(*command), 3), command
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "taken",
    ]


def test_restore_into_a_regular_file_is_a_usage_error(tmp_path: Path) -> None:
    """It was a 'storage error' with exit 3."""
    archive = tmp_path / "b.tar"
    backup(documents_store(tmp_path / "data"), archive)
    clear_system_cache()
    target = tmp_path / "file"
    target.write_text("keep me")
    for path in (target, target / "below"):
        proc = run_cli("restore", str(archive), "--path", str(path))
        assert f"{target} is not a directory; nothing was restored" in assert_one_line(proc, 2)
    assert target.read_text() == "keep me"


# ------------------------------------------------------------------------------ verify


def damage_truncated(db: Path) -> None:
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 3)


def damage_overwritten(db: Path) -> None:
    db.write_bytes(np.random.default_rng(1).bytes(64 * 1024))


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (damage_truncated, "database disk image is malformed"),
        (damage_overwritten, "file is not a database"),
    ],
)
def test_verify_reports_a_damaged_database_file_as_a_failed_check(
    tmp_path: Path, damage, cause: str
) -> None:
    """It said 'storage error, the command did not complete' with exit 3."""
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    vectors = np.random.default_rng(0).random((2000, 8), dtype=np.float32)
    client.create_collection("docs").add(
        ids=[f"r{i}" for i in range(2000)],
        embeddings=vectors,
        documents=[f"document {i}" for i in range(2000)],
    )
    client.close()
    clear_system_cache()
    db = data / "huedb.sqlite3"
    assert not Path(f"{db}-wal").exists()
    damage(db)
    for extra in ((), ("--repair",)):
        proc = run_cli("verify", "--path", str(data), *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "storage error" not in proc.stderr
        assert proc.stdout.splitlines() == [
            "store integrity: PROBLEMS",
            f"  {db} is damaged ({cause}); restore it from a backup",
        ]


def test_verify_skips_a_collection_deleted_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process deletes collections verify has listed but not reached: they are
    skipped and the rest is checked (verify stopped with NotFoundError, exit 2, no report)."""
    from huedb.engine.engine import Engine
    from huedb.ops.verify import verify

    data = tmp_path / "data"
    client = huedb.PersistentClient(path=str(data))
    for name in ("first", "second", "third"):
        client.create_collection(name, embedding_function=None).add(
            ids=["x"], embeddings=[[1.0, 2.0]]
        )
    client.close()
    deleter = (
        "import huedb, sys\n"
        "client = huedb.PersistentClient(sys.argv[1])\n"
        "for col in client.list_collections():\n"
        "    if str(col.id) != sys.argv[2]:\n"
        "        client.delete_collection(col.name)\n"
    )
    checked = Engine.check_index
    calls: list[str] = []

    def check_then_delete_the_next(engine: Engine, collection_uuid: str) -> Any:
        calls.append(collection_uuid)
        if len(calls) == 1:  # the two not checked yet, deleted by another process
            subprocess.run(
                [sys.executable, "-c", deleter, str(data), collection_uuid],
                env=child_env(),
                check=True,
                timeout=60,
            )
        return checked(engine, collection_uuid)

    monkeypatch.setattr(Engine, "check_index", check_then_delete_the_next)
    report = verify(data)
    assert report.ok, report
    assert len(calls) == 3 and len(report.indexes) == 1


def test_a_reader_gone_from_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    """`huedb stats | head -1`: once the reader has gone, the command ends with 141 (as a
    SIGPIPE would) and no error line; it reported a storage error, exit 3."""
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=str(data))
    client.create_collection("piped", embedding_function=None).add(
        ids=["x"], embeddings=[[1.0, 2.0]]
    )
    client.close()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run(
            cli_command("stats", "--path", str(data)),
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=child_env(),
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_backup_over_url_into_a_missing_directory_is_refused_too(tmp_path: Path) -> None:
    """`backup --url` created the directory while `--path` refused it: one rule for both."""
    data = documents_store(tmp_path / "data")
    clear_system_cache()
    out = tmp_path / "missing" / "b.tar"
    with huedb_server(data) as server:
        proc = run_cli("backup", "--url", server.url, "--out", str(out))
    assert f"{out.parent} is not a directory" in assert_one_line(proc, 2)
    assert not out.parent.exists()


@pytest.mark.parametrize("command", ["stats", "backup", "export"])
def test_a_server_that_does_not_answer_is_named_in_one_line(tmp_path: Path, command: str) -> None:
    """`--url` to a port nothing listens on: one ERROR line naming the server, exit 2 (the
    client's own error says only 'Connection refused' or chromadb's 'Could not connect')."""
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    extra = {
        "stats": [],
        "backup": ["--out", str(tmp_path / "x.backup")],
        "export": ["--collection", "docs", "--out", str(tmp_path / "x.parquet")],
    }[command]
    res = run_cli(command, "--url", url, "--token", "abcdefgh", *extra)
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"cannot reach the huedb server at {url}" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_a_server_that_never_answers_does_not_hang_a_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """huedb's HTTP client waits for ever, as chromadb's; a command given --url waits
    CLI_HTTP_TIMEOUT_S (60 s; 1 s here) for each answer, then stops in one line."""
    import socket

    from huedb.cli import commands
    from huedb.cli.parser import build_parser

    monkeypatch.setattr(commands, "CLI_HTTP_TIMEOUT_S", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        out = str(tmp_path / "x.parquet")
        args = build_parser().parse_args(
            ["export", "--url", url, "--token", "abcdefgh", "--collection", "docs", "--out", out]
        )
        started = time.monotonic()
        assert commands.run_command(args) == 2
    assert time.monotonic() - started < 30
    assert f"cannot reach the huedb server at {url}: timed out" in caplog.text
