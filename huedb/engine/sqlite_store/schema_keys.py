"""Keys of written metadata recorded in a collection's schema, in SQLite.

Runs inside the write transaction that stores the records (SQLite serialises writers), so
the read-modify-write of the collection row cannot lose another process's keys. The pairs
known to be stored are remembered per connection in a TEMP table: a batch whose pairs are
all known costs one small query instead of reading and rewriting the row. The TEMP table
changes in the same transaction as the row, so a rolled-back write forgets its pairs in
both; as the stored set only grows, every pair it holds is stored.
"""

from __future__ import annotations

import json
import sqlite3

from huedb.engine.schema_keys import add_pairs

_KNOWN_TABLE = "temp.huedb_schema_keys"


class SchemaKeysSQL:
    """Schema key recording of a SQLite session."""

    _conn: sqlite3.Connection

    def record_key_types(self, cid: int, pairs: list[tuple[str, str]]) -> None:
        """Add the (key, type) pairs missing from collection `cid`'s stored schema.

        Each new pair gets a copy of the schema's defaults for its type; pairs already
        there (with their own settings) are left alone.
        """
        if not pairs:
            return
        unknown = self._unknown_pairs(cid, pairs)
        if not unknown:
            return
        conn = self._conn
        row = conn.execute("SELECT configuration FROM collections WHERE cid = ?", (cid,)).fetchone()
        if row is None:
            return
        configuration = json.loads(row[0])
        if add_pairs(configuration, unknown):
            conn.execute(
                "UPDATE collections SET configuration = ? WHERE cid = ?",
                (json.dumps(configuration), cid),
            )
        conn.executemany(
            f"INSERT OR IGNORE INTO {_KNOWN_TABLE} (cid, name, type) VALUES (?, ?, ?)",
            [(cid, name, type_name) for name, type_name in unknown],
        )

    def _unknown_pairs(self, cid: int, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs this connection does not know to be stored (all of them on first use).

        Pairs go to SQLite as one JSON array, and come back as their positions: `json_each`
        ends a string at an escaped NUL, so a name holding one is looked up bound."""
        sql = (
            "SELECT p.key FROM json_each(?) p WHERE NOT EXISTS (SELECT 1 FROM "
            f"{_KNOWN_TABLE} k WHERE k.cid = ? AND k.name = json_extract(p.value, '$[0]') "
            "AND k.type = json_extract(p.value, '$[1]')) ORDER BY p.key"
        )
        plain = [pair for pair in pairs if "\0" not in pair[0]]
        with_nul = [pair for pair in pairs if "\0" in pair[0]]
        param = json.dumps(plain, ensure_ascii=False)
        try:
            unknown = {plain[r[0]] for r in self._conn.execute(sql, (param, cid))}
            known_sql = f"SELECT 1 FROM {_KNOWN_TABLE} WHERE cid = ? AND name = ? AND type = ?"
            unknown.update(
                pair
                for pair in with_nul
                if self._conn.execute(known_sql, (cid, *pair)).fetchone() is None
            )
            return [pair for pair in pairs if pair in unknown]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
        # Created inside the write transaction: if that rolls back, the table goes with it
        # and the next write creates it again.
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_KNOWN_TABLE} "
            "(cid INTEGER, name TEXT, type TEXT, PRIMARY KEY (cid, name, type)) WITHOUT ROWID"
        )
        return list(pairs)
