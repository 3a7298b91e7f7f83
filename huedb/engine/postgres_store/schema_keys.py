"""Keys of written metadata recorded in a collection's schema, in PostgreSQL.

Runs inside the write transaction that stores the records, which holds the collection's
row lock, so the read-modify-write of the row's configuration cannot lose another
writer's keys. (No per-connection cache as in SQLite: pooled connections change hands,
and the row is already locked and in cache, so the read costs one round trip.)
"""

from __future__ import annotations

import json

from huedb.engine.postgres_store.base import SessionBase
from huedb.engine.schema_keys import add_pairs


class SchemaKeysSQL(SessionBase):
    """Schema key recording of a PostgreSQL session."""

    def record_key_types(self, cid: int, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            return
        row = self.run("SELECT configuration FROM collections WHERE cid = %s", (cid,)).fetchone()
        if row is None:
            return
        configuration = json.loads(row[0])
        if add_pairs(configuration, pairs):
            self.run(
                "UPDATE collections SET configuration = %s WHERE cid = %s",
                (json.dumps(configuration), cid),
            )
