"""huedb's cross-table invariants, as SQL both stores run unchanged.

Each query counts the rows that break one invariant; a store's integrity check reports every
non-zero count (a store may add invariants of its own).
"""

from __future__ import annotations

RECORD_INVARIANTS = {
    "records without a vector": "SELECT count(*) FROM records r WHERE NOT EXISTS "
    "(SELECT 1 FROM embeddings e WHERE e.key = r.key)",
    "vectors without a record": "SELECT count(*) FROM embeddings e WHERE NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.key = e.key)",
    "metadata rows without a record": "SELECT count(*) FROM record_meta m WHERE NOT "
    "EXISTS (SELECT 1 FROM records r WHERE r.key = m.key)",
    "records of missing collections": "SELECT count(*) FROM records r WHERE NOT "
    "EXISTS (SELECT 1 FROM collections c WHERE c.cid = r.cid)",
    "vectors of the wrong size": "SELECT count(*) FROM records r JOIN collections c "
    "ON c.cid = r.cid JOIN embeddings e ON e.key = r.key "
    "WHERE length(e.vector) != 4 * c.dimension",
}
