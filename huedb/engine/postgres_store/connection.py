"""Connections to PostgreSQL: the pool, the two kinds of transaction, and error mapping.

Why this shape:
- psycopg 3 with a `psycopg_pool.ConnectionPool`: a connection is taken for one session
  (read, write, snapshot or copy) and returned at its end. Connections are not checked on
  checkout (that would cost a round trip per request); instead a session whose first
  statement finds its connection broken (after a server restart) starts again on another
  one (`live_connection`), so stale connections never fail a request. The pool reconnects
  on its own, and a request waits at most `pool_timeout` seconds for a connection.
- `read()` runs `REPEATABLE READ READ ONLY`: one snapshot for all the session's
  statements, the guarantee the engine relies on (oplog head and records agree).
- `write()` runs `READ COMMITTED` with row locks: the first time a write session touches a
  collection it locks the collection's row (`SELECT ... FOR UPDATE`), so writers of one
  collection are serialised until commit (SQLite gets this from `BEGIN IMMEDIATE`), and
  each statement after the lock sees everything committed before it. Catalog changes in a
  database also take a transaction-level advisory lock on the database (`database_id`).
- Errors: a server that cannot be reached, is shutting down or restarting, or a pool that
  found no working connection in time becomes `StorageUnavailableError` (503), whose
  message gives only a class of reason: libpq's text (host, address, port, user, why a
  login failed) is logged at WARNING, never sent to clients; disk full
  `StorageFullError` (507); an I/O error `StorageIOError`; text PostgreSQL cannot hold
  (NUL characters) `InvalidArgumentError`. Nothing of a failed write is applied.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from huedb.engine.budget import Deadline
from huedb.errors import (
    InvalidArgumentError,
    StorageFullError,
    StorageIOError,
    StorageUnavailableError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Advisory lock class of huedb (the first key of the two-key form; the second names what).
ADVISORY_CLASS = 0x6875_6564  # "hued"
SCHEMA_LOCK = 1  # creating or migrating the tables
STATISTICS_LOCK = 2  # refreshing the record tables' planner statistics


@dataclass(frozen=True)
class PoolSettings:
    """How the store connects: pool size and how long a request waits for a connection."""

    min_size: int = 1
    max_size: int = 4
    timeout: float = 5.0  # seconds a session waits for a working connection
    connect_timeout: int = 5  # seconds one connection attempt may take
    reconnect_timeout: float = 5.0  # seconds the pool retries a lost connection in the background
    tcp_user_timeout: float = 5.0  # seconds sent data may stay unacknowledged (partition)
    # seconds a write transaction may sit idle between statements before PostgreSQL ends its
    # session (a node stopped while it holds a collection's row lock; see `transaction`)
    write_idle_timeout: float = 30.0


def open_pool(
    url: str,
    settings: PoolSettings,
    configure: Callable[[psycopg.Connection], None] | None = None,
    name: str = "huedb",
) -> ConnectionPool:
    """A pool of connections to `url`, opened (StorageUnavailableError if it cannot connect);
    `configure` runs on each new connection before the pool hands it out.

    Connections keep TCP keepalives on, so a server that vanished without closing its
    sockets is noticed; a request never waits longer than `settings.timeout` for one.
    """
    kwargs = {
        "autocommit": True,  # transactions are begun explicitly, with their isolation
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "application_name": "huedb",
    }
    # Keepalives do not run while sent data waits for its acknowledgement, so without this a
    # statement sent into a network partition waits for TCP's retransmission limit (~15 min)
    # instead of failing: data unacknowledged for this long drops the connection (-> 503).
    # A value in the URL wins.
    if "tcp_user_timeout" not in conninfo_to_dict(url):
        kwargs["tcp_user_timeout"] = int(settings.tcp_user_timeout * 1000)
    pool = ConnectionPool(
        url,
        min_size=settings.min_size,
        max_size=settings.max_size,
        timeout=settings.timeout,
        reconnect_timeout=settings.reconnect_timeout,
        kwargs=kwargs,
        configure=configure,
        name=name,
        open=False,
    )
    try:
        with storage_errors():
            pool.open(wait=True, timeout=settings.timeout)
    except StorageUnavailableError as exc:
        pool.close()
        # The pool tells no reason; one connection of its own does (its class in the
        # message: a mistyped database looked like an outage).
        raise _connection_failure(url, kwargs) or exc from exc.__cause__
    except BaseException:
        pool.close()
        raise
    return pool


def _connection_failure(url: str, kwargs: dict[str, Any]) -> StorageUnavailableError | None:
    """Why a connection to `url` fails now, as `unavailable` words it (None if it works)."""
    try:
        psycopg.connect(url, **kwargs).close()
    except psycopg.OperationalError as exc:
        # debug only: the pool has logged the attempts, the start stops with one line
        logger.debug("PostgreSQL connection failed: %s", scrubbed(str(exc)))
        return StorageUnavailableError(
            f"PostgreSQL is unavailable ({unavailable_reason(exc)}); "
            "the request was not carried out"
        )
    except psycopg.Error:
        return None
    return None


# SQLSTATE class 40, "transaction rollback": deadlock_detected (40P01),
# serialization_failure (40001) and the like.
TRANSACTION_ROLLBACK = "40"


def storage_error(exc: BaseException) -> Exception | None:
    """The huedb error for a psycopg / pool error, or None when it is not a storage one."""
    if isinstance(exc, PoolTimeout):  # psycopg_pool's text names no host nor user
        return StorageUnavailableError(
            "PostgreSQL is unavailable (no working connection in time); "
            "the request was not carried out"
        )
    if isinstance(exc, pg_errors.DiskFull):
        return StorageFullError(f"PostgreSQL's storage is full, the write was not applied: {exc}")
    if isinstance(exc, pg_errors.IoError):
        return StorageIOError(f"PostgreSQL I/O error, the write was not applied: {exc}")
    if isinstance(exc, pg_errors.IdleInTransactionSessionTimeout):
        # this node stopped inside a write for longer than write_idle_timeout: PostgreSQL
        # ended its session and rolled the transaction back (PostgreSQL itself is fine)
        logger.warning(
            "this node stalled inside a write for longer than pg_write_idle_timeout (the "
            "process was paused, swapped out or starved of CPU); PostgreSQL ended its session "
            "and rolled the write back: %s",
            scrubbed(str(exc)),
        )
        return StorageUnavailableError(
            "The write was rolled back: this node stalled inside it for longer than "
            "pg_write_idle_timeout, so PostgreSQL ended its session; nothing of the request "
            "was applied, retry it"
        )
    if (getattr(exc, "sqlstate", None) or "").startswith(TRANSACTION_ROLLBACK):
        # A deadlock with another transaction, or a serialization failure: PostgreSQL rolled
        # this one back and serves on (it is not unavailable).
        logger.warning(
            "PostgreSQL rolled a write back (SQLSTATE %s): %s", exc.sqlstate, scrubbed(str(exc))
        )
        return StorageUnavailableError(
            "The write was rolled back: PostgreSQL found it deadlocked with another "
            "transaction (or not serializable beside one); nothing of the request was "
            "applied, retry it"
        )
    if isinstance(exc, pg_errors.ProgramLimitExceeded):
        # A value past what PostgreSQL can index (a btree entry holds ~2,700 bytes: an id or
        # a metadata key that long), not an outage: the caller's to change.
        return InvalidArgumentError(
            f"The request is past one of PostgreSQL's limits: {_first_line(exc)}"
        )
    if isinstance(exc, pg_errors.NumericValueOutOfRange):
        return InvalidArgumentError(f"a number is out of PostgreSQL's range: {_first_line(exc)}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StorageUnavailableError(
            f"PostgreSQL refused huedb's role: {_first_line(exc)} (huedb's role needs to own "
            "the database, or CREATE and USAGE on its schema and all privileges on huedb's "
            "tables: docs/postgres.md)"
        )
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg_errors.QueryCanceled):
        # Connection lost, admin/crash shutdown, cannot connect now, too many connections.
        return unavailable(exc)
    if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
        return InvalidArgumentError(f"PostgreSQL cannot store this text: {exc}")
    return None


def _first_line(exc: BaseException) -> str:
    return scrubbed(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def unavailable(exc: BaseException) -> StorageUnavailableError:
    """The error a client gets when PostgreSQL cannot serve: its class of reason only.
    libpq's text (host, address, port, user, why a login failed) is logged here instead."""
    reason = unavailable_reason(exc)
    logger.warning("PostgreSQL is unavailable (%s): %s", reason, scrubbed(str(exc)))
    return StorageUnavailableError(
        f"PostgreSQL is unavailable ({reason}); the request was not carried out"
    )


def unavailable_reason(exc: BaseException) -> str:
    """A short class of why PostgreSQL cannot serve, naming no host nor user."""
    text = str(exc).lower()
    if isinstance(exc, pg_errors.TooManyConnections) or "too many clients" in text:
        return "too many connections"
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CrashShutdown):
        return "connection ended by the server"
    if isinstance(exc, pg_errors.CannotConnectNow):
        return "server starting or shutting down"
    if "authentication failed" in text or "no pg_hba.conf entry" in text:
        return "login refused"
    if "connection refused" in text:
        return "connection refused"
    if "does not exist" in text:  # FATAL: database "x" / role "y" does not exist
        return "no such database or role"
    if "timeout" in text or "timed out" in text:
        return "timeout"
    return "connection failed"


# A URL's user-info password and a `password=` / `sslpassword=` key-value.
_SECRETS = re.compile(r"(://[^:/@\s]*:)[^\s]*@|((?:ssl)?password\s*=\s*)\S+", re.IGNORECASE)


def scrubbed(text: str) -> str:
    """`text` with anything that looks like a password replaced by `***`."""
    return _SECRETS.sub(lambda m: f"{m[1]}***@" if m[1] else f"{m[2]}***", text)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Raise huedb's storage errors for psycopg's (others pass through unchanged)."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        mapped = storage_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


@contextlib.contextmanager
def statement_timeouts(deadline: Deadline) -> Iterator[None]:
    """A statement PostgreSQL cancelled for its statement_timeout becomes the deadline's
    QueryTimeoutError (one cancelled by someone else, e.g. pg_cancel_backend, stays)."""
    try:
        yield
    except pg_errors.QueryCanceled as exc:
        if "statement timeout" not in str(exc):
            raise
        raise deadline.error() from exc


def on_live_connection(
    pool: ConnectionPool, work: Callable[[psycopg.Connection], T], keep: bool = False
) -> T:
    """`work(conn)` on a pooled connection, done again on another one while the connection
    it got turns out broken (closed by a server restart while idle in the pool). Only for
    work that changed nothing if it failed that way: a read, or a transaction's BEGIN.
    When PostgreSQL is really down the pool finds no new connection and times out.

    The connection goes back to the pool afterwards, unless `keep` (then the caller gives
    it back with `pool.putconn`)."""
    attempts = (pool.max_size or 1) + 1
    for attempt in range(attempts):
        conn = pool.getconn()
        try:
            result = work(conn)
        except psycopg.OperationalError:
            pool.putconn(conn)  # a broken one is discarded and replaced by the pool
            if not conn.broken or attempt == attempts - 1:
                raise
            logger.info("a pooled PostgreSQL connection was broken; trying another one")
            continue
        except BaseException:
            pool.putconn(conn)
            raise
        if not keep:
            pool.putconn(conn)
        return result
    raise AssertionError("unreachable")  # the last attempt returns or raises


@contextlib.contextmanager
def transaction(
    pool: ConnectionPool,
    isolation: str,
    read_only: bool,
    statement_timeout: float = 0,
    idle_timeout: float = 0,
) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection: committed when the block ends without an
    exception, rolled back otherwise; storage failures raised as huedb errors. A
    `statement_timeout` and an `idle_timeout` (`idle_in_transaction_session_timeout`;
    seconds, 0: none) are set for the whole transaction with its BEGIN (one simple-protocol
    round trip). The idle one bounds how long a stopped node holds its locks: PostgreSQL
    ends the session, the transaction is rolled back and its commit fails."""
    begin = f"BEGIN ISOLATION LEVEL {isolation}{' READ ONLY' if read_only else ''}"
    if statement_timeout > 0:
        begin += f"; SET LOCAL statement_timeout = {math.ceil(statement_timeout * 1000)}"
    if idle_timeout > 0:
        begin += (
            f"; SET LOCAL idle_in_transaction_session_timeout = {math.ceil(idle_timeout * 1000)}"
        )

    def begun(conn: psycopg.Connection) -> psycopg.Connection:
        conn.execute(begin)
        return conn

    with storage_errors():
        conn = on_live_connection(pool, begun, keep=True)
        try:
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            if read_only:
                conn.execute("COMMIT")
            else:
                _commit_write(pool, conn)
        finally:
            pool.putconn(conn)


# How long a write whose COMMIT lost its connection waits for PostgreSQL to settle the
# transaction (it commits what it received; a session whose client went away is rolled
# back once the server notices), asking every OUTCOME_POLL_S.
OUTCOME_WAIT_S = 5.0
OUTCOME_POLL_S = 0.1
OUTCOME_UNKNOWN = (
    "PostgreSQL's answer to the write's commit was lost with its connection, and whether it "
    "was applied could not be read: it may have been. Read to check, or repeat the request "
    "(add, upsert, and delete by ids are safe to repeat)"
)


def _commit_write(pool: ConnectionPool, conn: psycopg.Connection) -> None:
    """COMMIT a write transaction. When the connection breaks during the COMMIT (the answer
    lost on the way: a network blip, a pooler or proxy restarting), the outcome is read on
    another connection by the transaction's id: committed is a success (it was answered
    "not carried out" before), rolled back the storage error, and unknown its own error."""
    xid = conn.execute("SELECT pg_current_xact_id_if_assigned()::text").fetchone()[0]
    try:
        conn.execute("COMMIT")
    except psycopg.OperationalError as exc:
        if xid is None or not conn.broken:  # nothing written, or a refusal, not a lost answer
            raise
        outcome = _transaction_outcome(pool, xid)
        if outcome == "committed":
            logger.warning(
                "the connection broke during a write's COMMIT (%s); the transaction is "
                "committed, so the write is answered as done",
                scrubbed(str(exc)),
            )
            return
        if outcome == "aborted":
            raise
        logger.warning(
            "the connection broke during a write's COMMIT (%s); its outcome is %s",
            scrubbed(str(exc)),
            outcome or "unknown",
        )
        raise StorageUnavailableError(OUTCOME_UNKNOWN) from exc


def _transaction_outcome(pool: ConnectionPool, xid: str) -> str | None:
    """`pg_xact_status` of a transaction once it is no longer in progress, read on a
    pooled connection: "committed", "aborted", or None if it could not be read."""
    deadline = Deadline(OUTCOME_WAIT_S)
    while True:
        try:
            with pool.connection(timeout=OUTCOME_WAIT_S) as other:
                row = other.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
        except (psycopg.Error, PoolTimeout):
            return None
        status = row[0] if row else None
        if status != "in progress" or deadline.expired():
            return status if status in ("committed", "aborted") else None
        time.sleep(OUTCOME_POLL_S)
