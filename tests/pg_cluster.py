"""A real, throwaway PostgreSQL server for tests, and the fixtures that hand it out.

`PgCluster` runs `initdb` in a fresh temporary directory and starts the server on a free
port of 127.0.0.1 only (its Unix socket lives in the same directory), with trust
authentication for local and loopback connections and nothing else. PostgreSQL refuses to
run as root: when the tests run as root the cluster belongs to, and every server command
runs as, the unprivileged system user `huedb-pg` (created with `useradd` if missing).

Fixtures (registered for every test file by `pytest_plugins` in `tests/conftest.py`):

- `pg_cluster` (session): one cluster for the whole run, stopped and removed at the end.
- `pg_url` (function): the URL of a fresh database of that cluster, `pg_trgm` created,
  dropped after the test.

The server binaries come from PATH or `/usr/lib/postgresql/*/bin` (newest first); `make
test` installs them with apt-get when neither has them. Without them the fixtures fail
(never skip) with a message naming `make test`.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.servers import free_port

log = logging.getLogger(__name__)

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
UNPRIVILEGED_USER = "huedb-pg"
SUPERUSER = "huedb"
MISSING_BINARIES = (
    "PostgreSQL server binaries ({programs}) not found on PATH nor in {glob}. "
    "Run `make test`, which installs them with apt-get when they are missing "
    "(or: apt-get install postgresql postgresql-contrib)."
)

# Tuned for tests, which kill and restart processes, never the machine: fsync and
# full_page_writes only protect against an OS crash or power loss, so turning them off
# loses nothing a test can observe. synchronous_commit stays on: an immediate stop
# (SIGQUIT) drops WAL still in shared memory, so an asynchronous commit could be
# acknowledged and then lost. max_connections leaves room for several huedb processes,
# each with a pool. No parallel query or JIT: small tables, two shared cores, and plans
# that do not depend on how busy the machine is.
TEST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
}

HBA = """\
# Trust, but only over the cluster's own Unix socket and 127.0.0.1 (it listens nowhere else).
local all all trust
host  all all 127.0.0.1/32 trust
"""


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin (numeric, so 9.6 < 15)."""
    return tuple(int(p) for p in re.findall(r"\d+", bin_dir.parent.name))


def find_pg_bin(search_path: str | None = None, debian_glob: str = DEBIAN_BIN_GLOB) -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: PATH (or `search_path`) first,
    then Debian's versioned directories newest first; None when none has all three."""
    on_path = shutil.which("initdb", path=search_path)
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(map(Path, glob.glob(debian_glob)), key=_version_key, reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in SERVER_PROGRAMS):
            return directory
    return None


def require_pg_bin(search_path: str | None = None, debian_glob: str = DEBIAN_BIN_GLOB) -> Path:
    """`find_pg_bin()`, or fail the test with a message naming `make test`."""
    found = find_pg_bin(search_path, debian_glob)
    if found is None:
        pytest.fail(
            MISSING_BINARIES.format(programs=", ".join(SERVER_PROGRAMS), glob=debian_glob),
            pytrace=False,
        )
    return found


def process_alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ensure_unprivileged_user(name: str = UNPRIVILEGED_USER) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no login shell) if missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    try:  # a concurrent test run may have created it first
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"could not create user {name}: {result.stderr.strip()}") from None


class PgCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, on 127.0.0.1 only.

    Use as a context manager (started on entry, destroyed on exit) or call `start()` and
    `destroy()`; an atexit hook destroys it if nobody did.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or require_pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="huedb-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self.run_as = ensure_unprivileged_user().pw_name if os.geteuid() == 0 else None
        self._destroyed = False
        self._has_run = False  # the port is part of URLs handed out: keep it once started
        atexit.register(self.destroy)
        try:
            self._init()
        except BaseException:
            self.destroy()
            raise

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _command(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else argv

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self._command(program, *args), cwd=self.root, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{self.log()}"
            )
        return result

    def _init(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
            "--no-instructions",
        )
        (self.data_dir / "pg_hba.conf").write_text(HBA)
        self._write_settings()

    def _write_settings(self) -> None:
        settings = {
            **TEST_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        (self.data_dir / "huedb-test.conf").write_text(lines)
        conf = self.data_dir / "postgresql.conf"
        if "include 'huedb-test.conf'" not in conf.read_text():
            with conf.open("a") as f:
                f.write("\ninclude 'huedb-test.conf'\n")

    def log(self) -> str:
        """The server's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: int = 60) -> None:
        """Start the server and wait until it accepts connections. The first start picks
        another free port if somebody took this one in the meantime."""
        for attempt in itertools.count():
            result = self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(timeout), check=False,
            )  # fmt: skip
            if result.returncode == 0:
                self._has_run = True
                return
            port_taken = "could not bind" in self.log()
            if attempt < 3 and port_taken and not self._has_run:
                self.port = free_port()
                self._write_settings()
                continue
            raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}\n{self.log()}")

    def stop(self, mode: str = "fast", timeout: int = 60) -> None:
        """Stop the server: `fast` (roll back sessions, checkpoint), `immediate` (SIGQUIT
        everything, crash recovery on the next start) or `smart` (wait for sessions).
        Returns once the postmaster process has exited, not just removed its pid file."""
        pid = self.postmaster_pid
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(timeout))
        deadline = time.monotonic() + timeout
        while process_alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postmaster {pid} still runs {timeout} s after pg_ctl stop")
            time.sleep(0.02)

    def restart(self, mode: str = "fast") -> None:
        """Stop (in `mode`) and start again on the same port."""
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        """True while the server runs (`pg_ctl status`)."""
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    @property
    def postmaster_pid(self) -> int:
        """The process id of the running server's postmaster."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def url(self, dbname: str = "postgres") -> str:
        """The URL of database `dbname` over TCP on 127.0.0.1."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database `name` with `pg_trgm` in it; return its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.url(name), autocommit=True, connect_timeout=10) as conn:
            try:
                conn.execute("CREATE EXTENSION pg_trgm")
            except psycopg.errors.UndefinedFile as e:
                pytest.fail(f"pg_trgm is not installed ({e}): install postgresql-contrib")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting whoever is still connected to it."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def destroy(self) -> None:
        """Stop the server (immediately) if it runs and remove the directory. Idempotent."""
        if self._destroyed:
            return
        self._destroyed = True
        atexit.unregister(self.destroy)
        try:
            if self.data_dir.exists() and self.running:
                self.stop("immediate")
        except RuntimeError:
            log.exception("could not stop the test PostgreSQL server in %s", self.root)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One running PostgreSQL cluster for the test session, removed at its end."""
    with PgCluster() as cluster:
        yield cluster


_database_numbers = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh database (with pg_trgm) of the session's cluster, for one test.
    A test that stopped the server and left it stopped gets it started again."""
    if not pg_cluster.running:
        pg_cluster.start()
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_database_numbers)}_{slug}"[:63]
    url = pg_cluster.create_database(name)
    yield url
    if not pg_cluster.running:
        pg_cluster.start()
    pg_cluster.drop_database(name)
