"""Start huedb servers for tests: a real `huedb run` process on a free loopback port.

`huedb_server(...)` runs one for a `with` block (terminated at its end); `start_server(...)`
starts one the caller manages, e.g. in its own session so `kill_group()` can SIGKILL the
server and all its uvicorn workers at once (the crash tests). Servers get the environment
policy of `tests/cli.py`: none of the shell's HUEDB_*/CHROMA_* settings, plus `env`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.cli import REPO_ROOT, child_env, cli_command

PORT_LOW, PORT_HIGH = 20000, 32768  # below Linux's ephemeral range (32768-60999)
PORT_SLICES = 8  # pytest-xdist workers gw0..gw7 each draw from their own slice
_PORTS = random.Random()  # its own state: tests that seed `random` do not repeat ports


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now, for a server about to bind it: below
    the kernel's ephemeral range (no outgoing connection takes it meanwhile) and from this
    pytest-xdist worker's own slice, so two workers never pick the same port."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]) % PORT_SLICES
    width = (PORT_HIGH - PORT_LOW) // PORT_SLICES
    low = PORT_LOW + worker * width
    while True:
        port = _PORTS.randrange(low, low + width)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class RunningServer:
    """A server process and how to reach it."""

    process: subprocess.Popen
    host: str
    port: int
    scheme: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self, timeout: float = 30) -> None:
        """Wait for the heartbeat (fails with the log if the server dies or stalls)."""
        wait_until_up(self.url, self.process, self.log_path, timeout)

    def worker_pids(self, expected: int, timeout: float = 30) -> list[int]:
        """The worker processes of a `--workers N` server (children running spawn_main),
        once `expected` of them run and have each logged their startup."""
        pid = self.process.pid
        deadline = time.monotonic() + timeout
        while True:
            workers = []
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    try:
                        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                            workers.append(int(child))
                    except FileNotFoundError:
                        continue
            started = self.log().count("Application startup complete")
            if len(workers) == expected and started >= expected:
                return sorted(workers)
            assert time.monotonic() < deadline, (workers, self.log())
            time.sleep(0.1)

    def group_alive(self) -> list[int]:
        """Live (non-zombie) processes of the server's process group (`new_session=True`)."""
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.process.pid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        return alive

    def kill_group(self) -> None:
        """SIGKILL the whole process group and wait until every member is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 15
        while left := self.group_alive():
            assert time.monotonic() < deadline, f"server processes survived SIGKILL: {left}"
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    """Poll the heartbeat until it answers; fail with the server log if it dies or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        # Any certificate (a test's own CA); verify=False also skips loading a CA bundle,
        # ~26 ms of CPU per client.
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v2/heartbeat", verify=False, timeout=1).status_code == 200:
                return
        time.sleep(0.03)  # a start takes ~0.8 s: a tenth of a second was ~6 % more
    raise RuntimeError(f"server did not answer within {timeout}s:\n{log_path.read_text()}")


def start_server(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tls: bool = False,
    log_path: Path | None = None,
    new_session: bool = False,
) -> RunningServer:
    """Start `huedb run --path data --host 127.0.0.1 --port <free> *args`; do not wait.

    The log goes to `log_path` (default: `server-<port>.log` next to `data`).
    `new_session=True` puts the server in a process group of its own (see `kill_group`).
    """
    port = free_port()
    log_path = log_path or data.parent / f"server-{port}.log"
    cmd = cli_command(
        *("run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port), *args)
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            cwd=REPO_ROOT,
            start_new_session=new_session,
        )
    return RunningServer(process, "127.0.0.1", port, "https" if tls else "http", log_path)


@contextlib.contextmanager
def huedb_server(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tls: bool = False,
    timeout: float = 30,
) -> Iterator[RunningServer]:
    """Run `huedb run --path data --port <free> *args` on 127.0.0.1 for the block."""
    server = start_server(data, *args, env=env, tls=tls)
    try:
        server.wait_up(timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chroma_run(directory: Path) -> Iterator[str]:
    """The real `chroma run` (chromadb's CLI beside this interpreter) on loopback, its data
    and log in `directory`; yields its base URL."""
    chroma_cli = Path(sys.executable).with_name("chroma")
    assert chroma_cli.exists(), f"{chroma_cli} is missing: make test installs chromadb"
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [chroma_cli, "run", "--path", directory / "data", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
