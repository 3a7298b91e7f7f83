"""`WarmReads.rows_at_head` and `read_filtered` on PostgreSQL: a confirmed search's reads
in one statement (two round trips for a filtered one).

A query whose index is already in memory needs from the store only the collection's row
and oplog head (to confirm the index was current), the rows of the keys it found (with
vectors when the graph has none to rank with) and the records holding the query vector
itself. All of it is one SELECT (`_warm_sql`), sent alone on an autocommit connection: a
single statement reads one snapshot, so no BEGIN ... COMMIT is needed around it. Two
settings that govern a statement cannot be set by the statement itself, so these reads
run on connections of their own (`WarmReads`' pool) that hold them for the session:
generic plans (PostgreSQL's default plan cache mode re-planned the statement on every
read: its custom plans looked cheaper than the generic one, and are the same plan; ~0.3 ms
of planning per query at 100k records) and the query timeout as `statement_timeout`.
The query vector goes out as its digest only (the digest index finds the candidates, whose
vectors come back and are compared here): sending the 1.5 KB vector cost more than the
lookup. Results come in binary; keys go out as one bigint[] literal. Measured at 100k x 384
with 14 candidates: ~0.25-0.3 ms against ~0.4-0.5 ms for BEGIN, two statements and COMMIT
in one pipeline.

When this node keeps the collection's rows as of the head its index reflects
(row_cache.py), `confirm_at_head` sends the same statement without keys (the row, head and
probe matches: all known before the search; prepared on each connection) before the search,
and reads it after (early_read.py): the rows come from memory, and the one round trip
overlaps the search. A missing row or a moved head falls back to the statement above.

A filtered query needs the allowed keys before it searches, so its snapshot stays open
across the search: BEGIN, the row and head and the allowed keys in one round trip, then the
rows and COMMIT in another (`read_filtered`; five round trips on the usual path). The keys
are kept (engine/allowed_keys_cache.py); while the collection's head stays where it was, the same
filter searches with them at once and its rows are read like an unfiltered query's: one
statement, which confirms the head.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from huedb.engine.allowed_keys_cache import AllowedKeysCache
from huedb.engine.budget import Deadline
from huedb.engine.catalog import COLLECTION_COLUMNS, CollectionRow, collection_row
from huedb.engine.filters import RecordFilter
from huedb.engine.postgres_store.connection import (
    PoolSettings,
    on_live_connection,
    open_pool,
    statement_timeouts,
    storage_errors,
)
from huedb.engine.postgres_store.early_read import EarlyRead, numbered
from huedb.engine.postgres_store.records import allowed_keys_query, parse_keys
from huedb.engine.postgres_store.row_cache import RowCache
from huedb.engine.record_values import vector_digest
from huedb.engine.store import RowsAtHead
from huedb.engine.warm_rows import COLLECTION_WIDTH, WarmRows, matched_rows, probe_blobs

# Settings of a filtered read's transaction, made by its statements' select lists
# (set_config(..., true)) so that they need no statement of their own; each holds for the
# statements after the one setting it: the budget comes with the collection's row, generic
# plans with the allowed keys (for the rows statement after the search; see above).
_TIMEOUT = "set_config('statement_timeout', %s, true)"
_GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"


def _collection_sql(*settings: str) -> str:
    """The collection's row and oplog head, then the settings' columns, one row even when
    the collection is gone (NULL columns then); parameters: the settings', then the uuid."""
    return (
        f"SELECT {COLLECTION_COLUMNS}, log_seq, {', '.join(settings)} "
        "FROM (SELECT) one LEFT JOIN collections ON uuid = %s"
    )


_COLLECTION_THEN_FILTER = _collection_sql(_TIMEOUT)  # the filter's plan stays custom


def _rows_and_matches_sql(with_vectors: bool, cid: str) -> str:
    """The rows of the keys asked for (tagged 0; their vector when asked, else NULL) and,
    per probe digest (tagged with its number from 1), the collection's records whose vector
    has that digest, with the vector to compare; `cid` is how the statement names the
    collection. Parameters: (keys, [cid,] digests[, cid])."""
    vector = "(SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else "NULL"
    return (
        "SELECT 0::bigint AS n, r.key, r.id, r.document, r.uri, r.metadata, "
        f"{vector}::bytea AS vector FROM records r "
        f"WHERE r.key = ANY(%s::bigint[]) AND r.cid = {cid} "
        "UNION ALL SELECT p.n, r.key, r.id, r.document, r.uri, r.metadata, e.vector "
        "FROM unnest(%s::bigint[]) WITH ORDINALITY AS p(digest, n) "
        "JOIN embeddings e ON e.digest = p.digest JOIN records r ON r.key = e.key "
        f"WHERE r.cid = {cid}"
    )


def _warm_sql(with_vectors: bool) -> str:
    """The collection's row and oplog head (the one row whose tag `n` is NULL; none when the
    collection is gone), then `_rows_and_matches_sql`'s rows; each kind's columns are NULL
    in the other's rows, so the collection's long columns come once. Parameters: (uuid,
    keys, cid, digests, cid)."""
    no_record = "NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text"
    no_collection = ", ".join(["NULL"] * (COLLECTION_WIDTH + 1))
    return (
        f"SELECT {COLLECTION_COLUMNS}, log_seq, {no_record}, NULL::bytea "
        "FROM collections WHERE uuid = %s "
        f"UNION ALL SELECT {no_collection}, s.* "
        f"FROM ({_rows_and_matches_sql(with_vectors, '%s')}) s"
    )


_FILTERED_ROWS_SQL = {
    with_vectors: _rows_and_matches_sql(with_vectors, "%s") for with_vectors in (False, True)
}
_WARM_SQL = {with_vectors: _warm_sql(with_vectors) for with_vectors in (False, True)}
# The warm read sent before the search with no keys (the row, head and probe matches),
# prepared on each of the pool's connections (its plan is made once, not per query).
_EARLY_STATEMENT = "huedb_confirm_head"
_EARLY_SQL = numbered(_WARM_SQL[False])


class WarmReads:
    """The connections a PostgreSQL store's unfiltered confirmed reads run on, with generic
    plans and `statement_timeout = timeout` (the engine's query timeout) for the session."""

    def __init__(self, url: str, settings: PoolSettings, timeout: float, cache: RowCache) -> None:
        self._setting = _timeout_setting(timeout)
        self._pool = open_pool(url, settings, configure=self._configure, name="huedb-warm")
        self._rows = WarmRows()
        self._cache = cache

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (self._setting,))
        conn.execute(f"PREPARE {_EARLY_STATEMENT} AS {_EARLY_SQL}")

    def rows_at_head(
        self,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> RowsAtHead:
        """See `engine.store.Store.rows_at_head`; retried on a fresh connection if a pooled
        one turns out to be broken (a read is safe to repeat)."""
        blobs = probe_blobs(probes)
        params = (col.uuid, _key_array(keys), col.cid, _digest_array(blobs), col.cid)
        sql = _WARM_SQL[with_vectors]
        setting = _timeout_setting(timeout)

        def read(conn: psycopg.Connection) -> list[tuple]:
            if setting == self._setting:
                return conn.execute(sql, params, binary=True, prepare=True).fetchall()
            # Another budget than the session's: for this transaction only, so a failure
            # part-way leaves nothing behind on the connection.
            with conn.pipeline():
                conn.execute("BEGIN READ ONLY")
                conn.execute(f"SET LOCAL statement_timeout = '{setting}'")
                found = conn.execute(sql, params, binary=True, prepare=True)
                conn.execute("COMMIT")
            return found.fetchall()

        with statement_timeouts(Deadline(timeout)), storage_errors():
            rows = on_live_connection(self._pool, read)
        seen = self._rows.result(col.uuid, rows, blobs)
        if seen.collection is not None:
            self._cache.read(col.cid, seen.head, seen.rows.values())
        return seen

    @contextlib.contextmanager
    def confirm_at_head(
        self,
        col: CollectionRow,
        head: int,
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> Iterator[Confirmation]:
        """See `engine.store.Store.confirm_at_head`: when this node keeps rows of `col` as of
        `head` (row_cache.py), the statement reading the row, head and probe matches is sent
        now, and the search runs while the server answers (early_read.py)."""
        early = None
        blobs: list[bytes] = []
        if (
            not with_vectors
            and _timeout_setting(timeout) == self._setting
            and self._cache.likely(col.cid, head)
        ):
            blobs = probe_blobs(probes)
            early = self._send_early(col, blobs)
        try:
            yield Confirmation(self, col, head, probes, blobs, with_vectors, timeout, early)
        finally:
            if early is not None:
                early[1].close()
                self._pool.putconn(early[0])

    def _send_early(
        self, col: CollectionRow, blobs: list[bytes]
    ) -> tuple[psycopg.Connection, EarlyRead] | None:
        """The row, head and probe matches' statement, sent on a pooled connection; None
        when none is free at once or sending fails (the usual read follows then)."""
        try:
            conn = self._pool.getconn(timeout=0.001)
        except PoolTimeout:
            return None
        params = (col.uuid, "{}", str(col.cid), _digest_array(blobs), str(col.cid))
        try:
            return conn, EarlyRead(conn, _EARLY_STATEMENT, params)
        except psycopg.Error:
            self._pool.putconn(conn)
            return None

    def kept_rows(
        self, col: CollectionRow, head: int, keys: Sequence[int]
    ) -> dict[int, tuple] | None:
        """The rows this node keeps of `keys` as of `head`, if it keeps them all."""
        return self._cache.rows(col.cid, head, keys)

    def early_result(self, uuid: str, rows: list[tuple], blobs: list[bytes]) -> RowsAtHead:
        """The `RowsAtHead` of an early statement's rows (no record asked for by key)."""
        return self._rows.result(uuid, rows, blobs)

    def close(self) -> None:
        self._pool.close()


@contextlib.contextmanager
def read_filtered(
    pool: ConnectionPool,
    warm: WarmReads,
    cache: AllowedKeysCache,
    col: CollectionRow,
    flt: RecordFilter,
    head: int,
    timeout: float,
) -> Iterator[PgFilteredRead | KeptKeysRead | None]:
    """See `engine.store.Store.read_filtered`: None for a filter with $regex leaves. Keys
    the filter allowed at `head` and kept in `cache` need no first half: the rows are then
    read as an unfiltered warm read's, which confirms the head (allowed_keys_cache.py)."""
    query = allowed_keys_query(col.cid, flt)
    if query is None:
        yield None
        return
    sql, params = query
    cache_key = cache.key(col, sql, params)
    kept = None if cache_key is None else cache.get(cache_key, col, head)
    if kept is not None:
        yield KeptKeysRead(warm, col, head, kept, timeout)
        return

    def first_half(conn: psycopg.Connection) -> PgFilteredRead:
        with conn.pipeline():
            conn.execute(_BEGIN)
            settings = (_timeout_setting(timeout), col.uuid)
            found = conn.execute(_COLLECTION_THEN_FILTER, settings, binary=True)
            allowed = conn.execute(f"SELECT a.keys, {_GENERIC_PLANS} FROM ({sql}) a(keys)", params)
        return PgFilteredRead(conn, col, found.fetchone(), allowed.fetchone()[0])

    with statement_timeouts(Deadline(timeout)), storage_errors():
        view = on_live_connection(pool, first_half, keep=True)
        if view.collection is not None and cache_key is not None:
            cache.put(cache_key, view.collection, view.head, view.allowed)
        try:
            yield view
        finally:
            view.close(pool)


@dataclass(frozen=True)
class Confirmation:
    """`WarmReads.confirm_at_head`'s read after the search (`engine.store.Confirmation`)."""

    _warm: WarmReads
    _col: CollectionRow
    _head: int
    _probes: np.ndarray | None
    _blobs: list[bytes]  # the probes' bytes, as the early statement was sent with
    _with_vectors: bool
    _timeout: float
    _early: tuple[psycopg.Connection, EarlyRead] | None

    def rows(self, keys: Sequence[int]) -> RowsAtHead:
        """The rows of `keys` and the probes' matches with the collection's row and head:
        from the early statement and this node's kept rows when the head is the one they
        are as of, else read in one statement."""
        kept = None if self._with_vectors else self._warm.kept_rows(self._col, self._head, keys)
        if self._early is not None:  # read even when unused: the connection goes back idle
            found = self._early[1].rows(self._timeout)
            if kept is not None and found is not None:
                seen = self._warm.early_result(self._col.uuid, found, self._blobs)
                if seen.collection is not None and seen.head == self._head:
                    return RowsAtHead(
                        seen.collection, seen.head, {**kept, **seen.rows}, seen.same_vector
                    )
        return self._warm.rows_at_head(
            self._col, keys, self._probes, self._with_vectors, self._timeout
        )


class KeptKeysRead:
    """A filtered read whose allowed keys were kept from an earlier snapshot at the head the
    index reflects: `collection` and `head` are what the caller expects until `rows` reads
    the real ones, in the one statement that also reads the rows."""

    def __init__(
        self, warm: WarmReads, col: CollectionRow, head: int, allowed: np.ndarray, timeout: float
    ) -> None:
        self._warm = warm
        self._timeout = timeout
        self.collection: CollectionRow | None = col
        self.head = head
        self.allowed = allowed

    def rows(
        self, keys: Sequence[int], probes: np.ndarray | None, with_vectors: bool
    ) -> tuple[dict[int, tuple], list[list[int]]]:
        assert self.collection is not None
        seen = self._warm.rows_at_head(self.collection, keys, probes, with_vectors, self._timeout)
        self.collection, self.head = seen.collection, seen.head
        return seen.rows, seen.same_vector


class PgFilteredRead:
    """The open snapshot of `read_filtered` (`engine.store.FilteredRead`)."""

    def __init__(
        self, conn: psycopg.Connection, col: CollectionRow, found: tuple, joined: str | None
    ) -> None:
        self._conn = conn
        self._cid = col.cid
        self._open = True
        self.collection, self.head = _collection_and_head(found)
        self.allowed = parse_keys(joined)

    def rows(
        self, keys: Sequence[int], probes: np.ndarray | None, with_vectors: bool
    ) -> tuple[dict[int, tuple], list[list[int]]]:
        blobs = probe_blobs(probes)
        params = (_key_array(keys), self._cid, _digest_array(blobs), self._cid)
        conn = self._conn
        with conn.pipeline():
            rows = conn.execute(_FILTERED_ROWS_SQL[with_vectors], params, binary=True)
            conn.execute("COMMIT")
        self._open = False
        return matched_rows(rows.fetchall(), blobs)

    def close(self, pool: ConnectionPool) -> None:
        """End the snapshot if `rows` did not, and give the connection back."""
        if self._open:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")
        pool.putconn(self._conn)


def _key_array(keys: Sequence[int]) -> str:
    """Keys as a bigint[] literal: a text parameter is dumped in C, a list of ints element by
    element in Python (~12 us more per statement)."""
    return "{" + ",".join(str(int(k)) for k in keys) + "}"


def _timeout_setting(timeout: float) -> str:
    """`statement_timeout`'s value for a budget in seconds (0: none)."""
    return f"{math.ceil(timeout * 1000)}ms" if timeout > 0 else "0"


def _collection_and_head(found: tuple) -> tuple[CollectionRow | None, int]:
    """The collection (None when gone) and its oplog head from a `_collection_sql` row."""
    if found[0] is None:
        return None, 0
    return collection_row(found[:COLLECTION_WIDTH]), found[COLLECTION_WIDTH]


_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


def _digest_array(blobs: list[bytes]) -> str:
    """The probes' vector digests as a bigint[] literal."""
    return _key_array([vector_digest(b) for b in blobs])
