"""`rows_at_head` on SQLite: a confirmed search's reads in one statement.

The collection's row and oplog head, the rows of the keys a search found and the records
whose vector has a query vector's digest (then compared with it here), as one SELECT (a
UNION ALL whose first branch is the collection's row). The connection is in autocommit
mode, so a lone statement is its own read transaction: one WAL snapshot, with no BEGIN and
COMMIT around it, and no session calls one by one (6 statements became 1; at 100k records
45 -> 37 us).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np
import orjson

from huedb.engine.catalog import COLLECTION_COLUMNS, CollectionRow
from huedb.engine.record_values import vector_digest
from huedb.engine.sqlite_store.schema import DIGEST_TABLES
from huedb.engine.store import RowsAtHead
from huedb.engine.warm_rows import COLLECTION_WIDTH, WarmRows, probe_blobs

_HEAD = "(SELECT seq FROM sqlite_sequence WHERE name = 'oplog')"
_NO_RECORD = "NULL, NULL, NULL, NULL, NULL, NULL"
_NO_COLLECTION = ", ".join(["NULL"] * (COLLECTION_WIDTH + 1))
# The collection's row and oplog head (the statement's first branch; alone when no rows are
# asked for, as by a sparse search of ids and scores, engine/confirmed_sparse.py: the other
# branches cost ~75 us a search with cold caches at 100k).
_COLLECTION_ROW = (
    f"SELECT {COLLECTION_COLUMNS}, {_HEAD}, NULL, {_NO_RECORD} FROM collections WHERE uuid = ?"
)


def _sql(with_vectors: bool) -> str:
    """The statement; parameters: uuid, keys (JSON), cid, then for each of `DIGEST_TABLES`
    (probe digests (JSON), cid). A probe's matches are the records whose vector has its
    digest, with the vector, which the caller compares (a digest is no proof). CROSS JOIN
    keeps the probes outer: SQLite's planner otherwise scanned the whole digests table
    (130 ms at 100k)."""
    vector = "(SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else "NULL"
    probe = (
        f"SELECT {_NO_COLLECTION}, p.key + 1, r.key, r.id, r.document, r.uri, r.metadata, "
        "e.vector FROM json_each(?) p CROSS JOIN {table} d ON d.digest = p.value "
        "CROSS JOIN embeddings e ON e.key = d.key CROSS JOIN records r ON r.key = e.key "
        "WHERE r.cid = ?"
    )
    return " UNION ALL ".join(
        [
            _COLLECTION_ROW,
            # `+r.cid`: each key is looked up by the primary key, then its collection checked.
            f"SELECT {_NO_COLLECTION}, 0, r.key, r.id, r.document, r.uri, r.metadata, {vector} "
            "FROM records r WHERE r.key IN (SELECT value FROM json_each(?)) AND +r.cid = ?",
            *(probe.format(table=table) for table in DIGEST_TABLES),
        ]
    )


_SQL = {with_vectors: _sql(with_vectors) for with_vectors in (False, True)}


class WarmRead:
    """A store's one-statement reads (rows read back by `warm_rows.WarmRows`)."""

    def __init__(self) -> None:
        self._rows = WarmRows()

    def rows_at_head(
        self,
        conn: sqlite3.Connection,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
    ) -> RowsAtHead:
        """See `engine.store.Store.rows_at_head` (the caller sets the time budget)."""
        if not len(keys) and probes is None:
            rows = conn.execute(_COLLECTION_ROW, (col.uuid,)).fetchall()
            return self._rows.result(col.uuid, rows, [])
        blobs = probe_blobs(probes)
        # orjson: these are integers only (json.dumps took ~5 us of a ~40 us read)
        digests = orjson.dumps([vector_digest(blob) for blob in blobs]).decode()
        keys_json = orjson.dumps([int(k) for k in keys]).decode()
        params = (col.uuid, keys_json, col.cid, *(digests, col.cid) * len(DIGEST_TABLES))
        rows = conn.execute(_SQL[with_vectors], params).fetchall()
        return self._rows.result(col.uuid, rows, blobs)
