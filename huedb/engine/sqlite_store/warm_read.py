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

from huedb.engine.catalog import COLLECTION_COLUMNS, CollectionRow, DecodedCollections
from huedb.engine.record_values import vector_digest
from huedb.engine.sqlite_store.records import json_list
from huedb.engine.store import RowsAtHead

_ROW_COLUMNS = len(COLLECTION_COLUMNS.split(","))  # then the oplog head, then the tag
_HEAD = "(SELECT seq FROM sqlite_sequence WHERE name = 'oplog')"
_NO_RECORD = "NULL, NULL, NULL, NULL, NULL, NULL"
_NO_COLLECTION = ", ".join(["NULL"] * (_ROW_COLUMNS + 1))


def _sql(with_vectors: bool) -> str:
    """The statement; parameters: uuid, keys (JSON), cid, then twice (probe digests (JSON),
    cid). A probe's matches are the records whose vector has its digest, with the vector,
    which the caller compares (a digest is no proof). CROSS JOIN keeps the probes outer:
    SQLite's planner otherwise scanned the whole digests table (130 ms at 100k)."""
    vector = "(SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else "NULL"
    probe = (
        f"SELECT {_NO_COLLECTION}, p.key + 1, r.key, r.id, r.document, r.uri, r.metadata, "
        "e.vector FROM json_each(?) p CROSS JOIN {table} d ON d.digest = p.value "
        "CROSS JOIN embeddings e ON e.key = d.key CROSS JOIN records r ON r.key = e.key "
        "WHERE r.cid = ?"
    )
    return " UNION ALL ".join(
        [
            f"SELECT {COLLECTION_COLUMNS}, {_HEAD}, NULL, {_NO_RECORD} FROM collections "
            "WHERE uuid = ?",
            # `+r.cid`: each key is looked up by the primary key, then its collection checked.
            f"SELECT {_NO_COLLECTION}, 0, r.key, r.id, r.document, r.uri, r.metadata, {vector} "
            "FROM records r WHERE r.key IN (SELECT value FROM json_each(?)) AND +r.cid = ?",
            probe.format(table="digests"),
            probe.format(table="digests_recent"),
        ]
    )


_SQL = {with_vectors: _sql(with_vectors) for with_vectors in (False, True)}


class WarmRead:
    """A store's one-statement reads, remembering each collection's decoded row."""

    def __init__(self) -> None:
        self._collections = DecodedCollections()

    def rows_at_head(
        self,
        conn: sqlite3.Connection,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
    ) -> RowsAtHead:
        """See `engine.store.Store.rows_at_head` (the caller sets the time budget)."""
        vectors = () if probes is None else probes
        blobs = [np.ascontiguousarray(p, np.float32).tobytes() for p in vectors]
        digests = json_list(vector_digest(blob) for blob in blobs)
        keys_json = json_list(int(k) for k in keys)
        params = (col.uuid, keys_json, col.cid, digests, col.cid, digests, col.cid)
        rows = conn.execute(_SQL[with_vectors], params).fetchall()
        tag = _ROW_COLUMNS + 1
        stored = next((row[:tag] for row in rows if row[tag] is None), None)
        if stored is None:
            self._collections.forget(col.uuid)
            return RowsAtHead(None, 0, {}, [])
        by_key: dict[int, tuple] = {}
        matches: list[list[int]] = [[] for _ in blobs]
        for row in rows:
            n = row[tag]
            if n is None or (n and row[-1] != blobs[n - 1]):
                continue
            record = row[tag + 1 :] if with_vectors else row[tag + 1 : -1]
            by_key[record[0]] = record
            if n:
                matches[n - 1].append(record[0])
        collection = self._collections.row(stored[:-1])
        return RowsAtHead(collection, stored[-1] or 0, by_key, matches)
