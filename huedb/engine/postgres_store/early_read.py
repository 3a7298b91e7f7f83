"""A statement sent before the work that needs its answer, and read after that work.

psycopg's `execute` sends a statement and waits for its result; a round trip on loopback
costs 30 us when both CPUs are busy and 100-200 us when the server's CPU was idle (it is
woken for the request). A warm query knows the statement that confirms its index (the
collection's row and oplog head, and the records holding the query vector) before it
searches, so it sends it first through libpq's asynchronous calls, searches while the
server answers, and only then reads the result: the round trip overlaps the search.
Results come in binary and are decoded by psycopg's own loaders for the connection.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Sequence

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer

logger = logging.getLogger(__name__)


def numbered(sql: str) -> str:
    """`sql` with psycopg's `%s` placeholders numbered as PostgreSQL's `$1, $2, ...`."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


class EarlyRead:
    """The prepared statement `name` sent on `conn` (an idle autocommit connection this
    caller holds), whose rows `rows()` reads later; `close()` leaves the connection idle or
    closed."""

    def __init__(self, conn: psycopg.Connection, name: str, params: Sequence[str]) -> None:
        self._conn = conn
        self._pending = True
        pgconn = conn.pgconn
        encoded = [p.encode() for p in params]
        pgconn.send_query_prepared(name.encode(), encoded, result_format=pq.Format.BINARY)
        while pgconn.flush():  # a non-blocking connection: wait until all of it is sent
            _wait(pgconn.socket, select.POLLOUT, 0)

    def rows(self, timeout: float) -> list[tuple] | None:
        """The statement's rows, or None when it failed or took over `timeout` seconds
        (0: no limit); the caller then reads the usual way, which reports any error."""
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
            while pgconn.is_busy():
                if not _wait(pgconn.socket, select.POLLIN, timeout):
                    return None  # `close` drops the connection, busy with it
                pgconn.consume_input()
            results = []
            while (result := pgconn.get_result()) is not None:
                results.append(result)
        except psycopg.Error as exc:
            logger.debug("early read failed: %s", exc)
            return None
        self._pending = False
        if len(results) != 1 or results[0].status != pq.ExecStatus.TUPLES_OK:
            return None
        loader = Transformer(self._conn)
        loader.set_pgresult(results[0])
        return loader.load_rows(0, results[0].ntuples, tuple)

    def close(self) -> None:
        """A connection whose result was not read is closed (the pool replaces it)."""
        if self._pending:
            self._conn.close()


def _wait(fd: int, event: int, timeout: float) -> bool:
    """Wait until `fd` is ready for `event` (poll: any descriptor number); False when
    `timeout` seconds (0: no limit) passed first."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(timeout * 1000 if timeout > 0 else None))
