"""The per-collection oplog in PostgreSQL, and why a catching-up reader never skips a change.

PostgreSQL hands out sequence values when a statement runs but makes them visible when the
transaction commits, so with one global sequence a reader could see seq 12 committed,
advance its watermark to 12, and later find seq 11 committed by a slower transaction: a
skipped change (the naive design; `tests/test_pg_oplog.py` keeps it as a negative control).

Here each collection row holds a counter, `collections.log_seq`. A write session bumps it
with `UPDATE ... RETURNING` and numbers its oplog rows from the values it got. That UPDATE
takes the collection row's lock (write sessions already hold it since their first read of
the collection) until the transaction ends, so the writers of one collection assign their
numbers one transaction at a time, in commit order: a transaction that commits later read
the counter after every earlier one had committed, and got higher numbers. A reader's
`oplog_head(cid)` reads the counter in its REPEATABLE READ snapshot: that snapshot holds
every transaction that wrote numbers up to it (they committed before the one that set it),
and every transaction not in it commits later and numbers above it. So after applying
`oplog_changes(cid, w)` up to the head `h`, nothing committed can ever appear at or below
`h`: the guarantee of `engine/store.py`.

Every other change to a record (an UPDATE of its row: document, uri or metadata, with no
new vector) moves the counter by one without an oplog row, by a statement-level trigger on
`records` (`schema.py`; in the database, so writers of any huedb version do it): index
readers catching up find no entry below the new head and just move their watermark, and a
reader that finds the head unchanged knows that no record of the collection changed at
all. `rows_at_head.py` relies on that to reuse the keys a filter allowed while the head
stays put.

Pruning deletes rows up to a watermark and raises `pruned_seq`; the counter never moves
back, so numbers are never reused.

Pruning across nodes: each huedb node keeps index snapshots in its own directory, so a
node that prunes up to its own snapshot would force every other node whose snapshot is
older to reload the collection's vectors from PostgreSQL and rebuild its graph (minutes at
1M vectors). So a node that snapshots records the position in `index_holders` (per node
and collection, with the time), and pruning stops at the oldest position recorded by
another node within `HOLD_SECONDS`. A node silent for longer (gone, or idle on that
collection) no longer holds the log back, and rebuilds if it comes back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from huedb.engine.postgres_store.base import SessionBase
from huedb.engine.store import OplogChange

HOLD_SECONDS = 3600  # how long a node's snapshot position holds back pruning
CHANGES_PER_FETCH = 8_192  # oplog rows a catch-up fetches from the server at a time
_cursor_numbers = itertools.count()  # names of server-side cursors, unique per process


class OplogSQL(SessionBase):
    """The oplog calls of a PostgreSQL session."""

    def _log_changes(self, cid: int, keys: Sequence[int]) -> None:
        """Append one oplog entry per key (in order), numbered from the collection's counter."""
        if not keys:
            return
        top = self.run(
            "UPDATE collections SET log_seq = log_seq + %s WHERE cid = %s RETURNING log_seq",
            (len(keys), cid),
        ).fetchone()
        if top is None:  # the collection is gone: nothing to log for it
            return
        self._written(cid).head_after = top[0]
        first = top[0] - len(keys) + 1
        with self._conn.cursor().copy("COPY oplog (cid, seq, key) FROM STDIN") as copy:
            for n, key in enumerate(keys):
                copy.write_row((cid, first + n, key))

    def oplog_head(self, cid: int) -> int:
        if cid in self._heads:  # read with the collection's row, in this same snapshot
            return self._heads[cid]
        row = self.run("SELECT log_seq FROM collections WHERE cid = %s", (cid,)).fetchone()
        return 0 if row is None else row[0]

    def oplog_changes(self, cid: int, after_seq: int) -> Iterator[OplogChange]:
        # A cursor on the server, read a chunk at a time: a client-side one holds the whole
        # result (every changed vector) in libpq until it is dropped.
        self.check_deadline()
        name = f"huedb_oplog_changes_{next(_cursor_numbers)}"
        with self._conn.cursor(name=name, binary=True) as cursor:
            cursor.execute(
                "SELECT o.seq, o.key, e.vector FROM oplog o "
                "LEFT JOIN embeddings e ON e.key = o.key "
                "WHERE o.cid = %s AND o.seq > %s ORDER BY o.seq",
                (cid, after_seq),
            )
            while chunk := cursor.fetchmany(CHANGES_PER_FETCH):
                yield from chunk

    def changed_keys(self, cid: int, after_seq: int) -> list[int]:
        rows = self.run(
            "SELECT DISTINCT key FROM oplog WHERE cid = %s AND seq > %s ORDER BY key",
            (cid, after_seq),
        )
        return [row[0] for row in rows.fetchall()]

    def count_changes(self, cid: int, after_seq: int) -> int:
        return self.run(
            "SELECT count(*) FROM oplog WHERE cid = %s AND seq > %s", (cid, after_seq)
        ).fetchone()[0]

    def prune_oplog(self, cid: int, upto: int, snapshotted: bool, node: str) -> None:
        if snapshotted and node:
            self.run(
                "INSERT INTO index_holders (node, cid, snapshot_seq, seen_at) "
                "VALUES (%s, %s, %s, now()) ON CONFLICT (cid, node) DO UPDATE SET "
                "snapshot_seq = greatest(index_holders.snapshot_seq, excluded.snapshot_seq), "
                "seen_at = now()",
                (node, cid, upto),
            )
        held = self.run(
            "SELECT min(snapshot_seq) FROM index_holders WHERE cid = %s AND node <> %s "
            "AND seen_at > now() - make_interval(secs => %s)",
            (cid, node, HOLD_SECONDS),
        ).fetchone()[0]
        floor = upto if held is None else min(upto, held)
        self.run("DELETE FROM oplog WHERE cid = %s AND seq <= %s", (cid, floor))
        self.run(
            "UPDATE collections SET pruned_seq = greatest(pruned_seq, %s), "
            "snapshot_seq = CASE WHEN %s THEN greatest(snapshot_seq, %s) ELSE snapshot_seq END "
            "WHERE cid = %s",
            (floor, snapshotted, upto, cid),
        )
