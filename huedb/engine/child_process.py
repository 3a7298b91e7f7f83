"""The lifecycle of a helper process huedb starts (a graph build's, a recall measurement's).

The child talks to its parent over its stdin and stdout; its stderr goes to a temporary
file, read when it fails: a pipe that nobody reads until the child ends would stop a child
that wrote more than the pipe holds. Ending a child kills it if it still runs, reaps it
and closes the pipes, so no zombie or file descriptor outlives it. An exchange that may
wait on the child runs `within` a time limit: a child that hangs is killed, so the read or
write waiting on it fails instead of holding its caller until the process ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

LAST_WORDS = 2_000  # characters of a failed child's stderr that are reported


class Child:
    """A child process with pipes to its stdin and stdout, its stderr in a file."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start `argv` (OSError when it cannot start) with `env` (None: this one's)."""
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `close`
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, env=env
            )
        except BaseException:
            self._errors.close()
            raise
        self.timed_out: float | None = None  # the limit a `within` block overran (killed)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stdin(self) -> IO[bytes]:
        assert self._proc.stdin is not None
        return self._proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self._proc.stdout is not None
        return self._proc.stdout

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self) -> int:
        """Wait for the child to exit; its exit code."""
        return self._proc.wait()

    def kill(self) -> None:
        """Kill the child if it still runs (safe from another thread: a thread talking to
        it then fails), without waiting for it."""
        if self._proc.poll() is None:
            self._proc.kill()

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Kill the child if the block inside has not ended after `seconds` (its read or
        write on the child's pipes then fails); `timed_out` records that it was."""

        ended = threading.Lock()  # held once the block ended: too late to kill for it

        def time_out() -> None:
            if ended.acquire(blocking=False):
                self.timed_out = seconds
                self.kill()

        timer = threading.Timer(seconds, time_out)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            ended.acquire(blocking=False)
            timer.cancel()

    def end(self) -> None:
        """Kill the child if it still runs, reap it and close its pipes."""
        self.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # unsent bytes to a dead child
                    stream.close()

    def last_words(self) -> str:
        """End the child; the end of what it wrote to stderr ("" once closed)."""
        self.end()
        if self._errors.closed:
            return ""
        size = self._errors.seek(0, 2)
        self._errors.seek(max(0, size - 4 * LAST_WORDS))  # up to 4 bytes per character
        return self._errors.read().decode(errors="replace").strip()[-LAST_WORDS:]

    def close(self) -> None:
        """End the child and drop its stderr."""
        self.end()
        self._errors.close()
