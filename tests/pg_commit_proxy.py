"""A TCP proxy in front of PostgreSQL that breaks a write transaction's connection at its
COMMIT, for tests of what a client is told when the answer to a commit is lost.

It reads the frontend protocol the client sends (the startup packet, then typed messages:
`Q` simple queries, `P` parses, `B` binds that run a parsed statement) to find, once armed, a
COMMIT that follows the oplog's `UPDATE collections SET log_seq = log_seq + ...` (a write).
`deliver=True` passes that COMMIT on, waits for the server to act on it, then closes both
sides before its answer reaches the client (the write is committed); `deliver=False` closes
them without sending it (the server rolls the transaction back). Use a URL with
`sslmode=disable` so the protocol is readable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

WRITE_MARK = b"log_seq = log_seq +"


class _ClientStream:
    """The messages a client sent so far on one connection, and whether its current
    transaction wrote and then asked to COMMIT."""

    def __init__(self) -> None:
        self.pending = b""
        self.started = False
        self.wrote = False
        self.statements: dict[bytes, bytes] = {}  # parsed statements by name

    def commit_seen(self, data: bytes) -> bool:
        """Take `data`; whether a write's COMMIT is among the messages it completes."""
        self.pending += data
        seen = False
        while True:
            if not self.started:
                if len(self.pending) < 4 or len(self.pending) < _length(self.pending, 0):
                    return seen
                self.pending = self.pending[_length(self.pending, 0) :]
                self.started = True
                continue
            if len(self.pending) < 5 or len(self.pending) < 1 + _length(self.pending, 1):
                return seen
            kind, size = self.pending[:1], _length(self.pending, 1)
            body, self.pending = self.pending[5 : 1 + size], self.pending[1 + size :]
            seen = self._message(kind, body) or seen

    def _message(self, kind: bytes, body: bytes) -> bool:
        """A simple query runs its text; a parse names a text that a bind later runs
        (psycopg prepares a statement it runs often: its binds then carry only the name)."""
        if kind == b"Q":
            return self._statement(body.rstrip(b"\0"))
        if kind == b"P":
            name, _, rest = body.partition(b"\0")
            self.statements[name] = rest.split(b"\0", 1)[0]
        elif kind == b"B":
            name = body.partition(b"\0")[2].split(b"\0", 1)[0]
            return self._statement(self.statements.get(name, b""))
        return False

    def _statement(self, text: bytes) -> bool:
        if WRITE_MARK in text:
            self.wrote = True
        if text.strip().upper() == b"COMMIT":
            committed_write, self.wrote = self.wrote, False
            return committed_write
        return False


def _length(buffer: bytes, at: int) -> int:
    return int.from_bytes(buffer[at : at + 4], "big")


class CommitBreakingProxy:
    """Listens on 127.0.0.1:`port`, forwards to PostgreSQL on `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed: bool | None = None  # None: pass everything; else `deliver`
        self._lock = threading.Lock()
        self.broken = threading.Event()

    def arm(self, deliver: bool) -> None:
        """Break the next write's connection at its COMMIT (delivered to the server first
        when `deliver`)."""
        with self._lock:
            self.broken.clear()
            self._armed = deliver

    def _take_arm(self) -> bool | None:
        with self._lock:
            armed, self._armed = self._armed, None
            return armed

    def serve(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            cut = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, cut), daemon=True).start()
            threading.Thread(
                target=self._downstream, args=(server, client, cut), daemon=True
            ).start()

    def _upstream(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        stream = _ClientStream()
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if stream.commit_seen(data) and self._armed is not None:
                    deliver = self._take_arm()
                    cut.set()  # nothing more reaches the client: its answer closes both
                    self.broken.set()
                    if deliver:
                        server.sendall(data)
                        time.sleep(0.5)  # the server commits (if no answer closed them)
                    break
                server.sendall(data)
        _close(client, server)

    @staticmethod
    def _downstream(server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while (data := server.recv(65536)) and not cut.is_set():
                client.sendall(data)
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def commit_breaking_proxy(target_port: int) -> Iterator[CommitBreakingProxy]:
    """A running `CommitBreakingProxy` for a `with` block."""
    proxy = CommitBreakingProxy(target_port)
    proxy.serve()
    try:
        yield proxy
    finally:
        proxy.close()
