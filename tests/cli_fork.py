"""A fork server for the `huedb` command line in tests: one process per pytest worker that
has imported the CLI once, and forks a new child for every command.

A command run this way is still a process of its own (its own pid, environment, working
directory, stdin from /dev/null, stdout and stderr to files, exit code and atexit
handlers as `python -m huedb.cli` has them); what it skips is ~0.6 s of CPU importing
huedb, numpy and pydantic again, paid by every one of the suite's ~300 command
runs on a 2-core machine. Starting the interpreter itself is tested by every test that
starts `huedb run` and by the commands this falls back for: `huedb run`, a PYTHON*
variable that differs from the server's, a second thread asking while one command runs,
or a server that could not start (`CliForkServer.run` then returns None and the caller
starts an ordinary process).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import locale
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

CLI_MAIN = str(Path(__file__).resolve().parent.parent / "huedb" / "cli" / "__main__.py")
PRELOADED = ("huedb.cli", "huedb.cli.commands")
# Threads the server may hold when it forks: its own and numpy's OpenBLAS pool (which
# shuts down before a fork and starts again in the child). pyarrow is not preloaded: its
# jemalloc starts a background thread.
THREADS_MAX = 2


# --------------------------------------------------------------------------- server side


def _exit_code(status: int) -> int:
    """A wait status as subprocess's returncode (-N for a signal)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _run_child(request: dict[str, Any]) -> int:
    """In the forked child: become the command's process, run it, return its exit code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # chosen again from this environment's TMPDIR on first use
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = [CLI_MAIN, *request["argv"]]
    from huedb.cli import main

    try:
        code: Any = main(request["argv"])
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # as the interpreter does for an uncaught exception
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code & 0xFF


def serve() -> None:
    """The server's loop: a JSON request per line on stdin; `pid N` then `exit N` lines on
    stdout for each; ends at end of input."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    threads = len(os.listdir("/proc/self/task"))
    os.write(1, f"ready {threads}\n".encode())
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run_child(request)
            finally:
                os._exit(code)
        os.write(1, f"pid {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(1, f"exit {_exit_code(status)}\n".encode())


# --------------------------------------------------------------------------- test side


class CliForkServer:
    """The test side: starts the server on first use and sends it commands."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._python_env: dict[str, str] = {}

    def _start(self, env: dict[str, str], cwd: Path) -> subprocess.Popen | None:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.cli_fork import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,  # no hidden read-ahead: `select` on the pipe sees every line
            env=env,
            cwd=cwd,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        # Forking copies only the calling thread: a server with threads other than the
        # known ones (a library that started one at import) is not used.
        if ready[:1] != [b"ready"] or int(ready[1]) > THREADS_MAX:
            proc.kill()
            proc.wait()
            return None
        self._python_env = _python_variables(env)
        return proc

    def run(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        timeout: float,
        server_env: dict[str, str],
    ) -> subprocess.CompletedProcess | None:
        """Run `huedb *argv` in a forked child with environment `env`; None where it
        cannot (the caller then starts an ordinary process). The server, started on first
        use, imports with `server_env` (no test's own settings)."""
        if argv[:1] == ["run"] or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start(server_env, cwd)
            if self._proc is None or _python_variables(env) != self._python_env:
                return None
            return self._send(argv, env, cwd, timeout)
        finally:
            self._lock.release()

    def _send(
        self, argv: list[str], env: dict[str, str], cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        with tempfile.TemporaryDirectory(prefix="huedb-cli-") as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            request = {"argv": argv, "env": env, "cwd": str(cwd), "out": str(out), "err": str(err)}
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            pid = int(proc.stdout.readline().split()[1])
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            code = int(proc.stdout.readline().split()[1])
            stdout, stderr = _read_text(out), _read_text(err)
        command = [sys.executable, "-m", "huedb.cli", *argv]
        if not ready:
            raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(command, code, stdout, stderr)


def _python_variables(env: dict[str, str]) -> dict[str, str]:
    """The variables the interpreter reads when it starts (a fork cannot honour them)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _read_text(path: Path) -> str:
    """A child's output decoded as `subprocess.run(text=True)` does."""
    if not path.exists():
        return ""
    with open(path, encoding=locale.getpreferredencoding(False)) as f:
        return f.read()


FORK_SERVER = CliForkServer()
