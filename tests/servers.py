"""Start huedb servers for tests: a real `huedb run` process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    """Poll the heartbeat until it answers; fail with the server log if it dies or stalls."""
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v2/heartbeat", verify=context, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout}s:\n{log_path.read_text()}")


@contextlib.contextmanager
def huedb_server(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tls: bool = False,
    timeout: float = 30,
) -> Iterator[RunningServer]:
    """Run `huedb run --path data --port <free> *args` on 127.0.0.1 for the block."""
    port = free_port()
    log_path = data.parent / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HUEDB_", "CHROMA_"))}
    full_env.update(env or {})
    cmd = [
        sys.executable,
        "-m",
        "huedb.cli",
        "run",
        "--path",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = RunningServer(process, "127.0.0.1", port, "https" if tls else "http", log_path)
    try:
        wait_until_up(server.url, process, log_path, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
