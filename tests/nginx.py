"""A real nginx on loopback in front of huedb nodes, with the documented configuration.

`running_nginx(root, backends)` renders `deploy/nginx/huedb.conf` (the file the docs tell
operators to install) with the test's node addresses and a free port in place of the
lines between its `# nodes:` and `# listen:` markers, wraps it in a minimal main
configuration whose paths (pid, logs, temporary files) all live under `root`, and runs
`/usr/sbin/nginx` in the foreground for a `with` block. As root, the workers run as root
too, so they can write the temporary directories of a private prefix.

nginx comes from the Debian package (`apt-get install nginx-light`); without it the tests
fail with that instruction (never skip).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli import REPO_ROOT
from tests.servers import free_port

NGINX = Path("/usr/sbin/nginx")
CONFIG = REPO_ROOT / "deploy" / "nginx" / "huedb.conf"
UPSTREAM_HEADER = "X-Huedb-Upstream"

MAIN_CONF = """\
{user}
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/huedb.conf;
}}
"""


def require_nginx() -> Path:
    """The nginx binary, or fail the test saying how to install it."""
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"{NGINX} not found: apt-get install nginx-light", pytrace=False)
    return NGINX


def config_value(directive: str, level: str = "server") -> str:
    """The value `deploy/nginx/huedb.conf` gives a directive at the server level, or in
    a location (`level="location"`: the first that sets it)."""
    indent = " " * (4 if level == "server" else 8)
    found = re.search(rf"^{indent}{directive} (\S+);", CONFIG.read_text(), flags=re.M)
    assert found, f"deploy/nginx/huedb.conf sets no {directive} at the {level} level"
    return found.group(1)


def render(backends: list[str], port: int, overrides: dict[str, str] | None = None) -> str:
    """`deploy/nginx/huedb.conf` with `backends` ("host:port") as the nodes (each with the
    documented node parameters), listening on 127.0.0.1:`port`, and the directives of
    `overrides` given those values; every other line as is."""
    text = CONFIG.read_text()
    for directive, value in (overrides or {}).items():  # at every level that sets it
        text, n = re.subn(rf"^( +{directive}) \S+;", rf"\g<1> {value};", text, flags=re.M)
        assert n, f"deploy/nginx/huedb.conf sets no {directive}"
    nodes = re.search(r"# nodes: begin\n(.*?)\s*# nodes: end", text, flags=re.S)
    assert nodes, "deploy/nginx/huedb.conf lost its '# nodes:' markers"
    params = re.search(r"server \S+ ([^;]*);", nodes.group(1))
    assert params, "no server line between the '# nodes:' markers"
    servers = "\n".join(f"    server {b} {params.group(1)};" for b in backends)
    text = text[: nodes.start(1)] + servers + text[nodes.end(1) :]
    listen = f"    listen 127.0.0.1:{port};"
    text, n = re.subn(
        r"(# listen: begin\n).*?(\s*# listen: end)", rf"\g<1>{listen}\2", text, flags=re.S
    )
    assert n == 1, "deploy/nginx/huedb.conf lost its '# listen:' markers"
    return text


@dataclass
class RunningNginx:
    """An nginx process and its files."""

    process: subprocess.Popen
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_nginx(
    root: Path, backends: list[str], overrides: dict[str, str] | None = None
) -> Iterator[RunningNginx]:
    """nginx with the documented configuration (`render`) in front of `backends` for a
    `with` block."""
    binary = require_nginx()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "huedb.conf").write_text(render(backends, port, overrides))
    user = "user root root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(MAIN_CONF.format(root=root, user=user))
    base = [str(binary), "-p", str(root), "-c", str(root / "nginx.conf")]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    with open(root / "stderr.log", "wb") as stderr:
        process = subprocess.Popen([*base, "-g", "daemon off;"], stderr=stderr)
    running = RunningNginx(process, port, root)
    try:
        wait_for_port(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(nginx: RunningNginx, timeout: float = 15) -> None:
    """Wait until nginx answers a heartbeat through to a node."""
    deadline = time.monotonic() + timeout
    while True:
        assert nginx.process.poll() is None, nginx.error_log()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{nginx.url}/api/v2/heartbeat", timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, nginx.error_log()
        time.sleep(0.05)
