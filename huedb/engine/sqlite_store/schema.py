"""The SQLite schema: the single source of truth of a huedb store."""

from __future__ import annotations

FORMAT_VERSION = 5

# The exact-duplicate lookup's levels, largest first (see the comment in SCHEMA).
DIGEST_TABLES = ("digests", "digests_mid", "digests_recent")

# The trigram index of documents for `$contains`: over `records.document` (external content:
# the text is not stored twice), its postings without positions or column sizes. A query
# ANDs trigrams of the text and `instr` confirms each candidate (filters.py), so positions
# would only narrow what `instr` checks anyway. Against format 4's index (text stored, full
# detail), 1M bench records: the index's inserts flat at 0.14 s per 100k where they grew
# 0.29 -> 0.37 s, the whole ingest (no graph build) 30.8 -> 25.3 s, 139 -> 34 B a document.
# Deleted records' postings stay until `huedb compact` builds it again (`prune_leftovers`):
# an external-content delete re-reads the text, which the record no longer has.
DOCUMENT_INDEX = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5 (document, "
    "tokenize = 'trigram case_sensitive 1', content = 'records', content_rowid = 'key', "
    "detail = none, columnsize = 0)"
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS huedb_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS databases (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS collections (
    cid INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    database_id TEXT NOT NULL,
    metadata TEXT,
    configuration TEXT NOT NULL,
    dimension INTEGER,
    pruned_seq INTEGER NOT NULL DEFAULT 0,
    snapshot_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (database_id, name)
);
CREATE TABLE IF NOT EXISTS aliases (
    database_id TEXT NOT NULL,
    name TEXT NOT NULL,
    cid INTEGER NOT NULL,
    PRIMARY KEY (database_id, name)
);
CREATE TABLE IF NOT EXISTS records (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    id TEXT NOT NULL,
    document TEXT,
    uri TEXT,
    metadata TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_id ON records (cid, id);
CREATE INDEX IF NOT EXISTS records_by_collection ON records (cid);
CREATE TABLE IF NOT EXISTS embeddings (
    key INTEGER PRIMARY KEY,
    vector BLOB NOT NULL,
    digest INTEGER NOT NULL
);
-- Exact-duplicate lookup: digest -> key in three levels, each sorted by digest. New digests
-- go to the small `digests_recent`. At DIGEST_MERGE_AT entries they move to `digests_mid` in
-- one sorted pass, and `digests_mid` moves to `digests` the same way once it holds
-- `records.mid_limit` entries. One index over every digest took ~1 random page write per
-- inserted vector at 1M, and two levels rewrote the whole of `digests` every 33 batches, a
-- cost that grew with the store (format 4).
-- Entries of deleted or re-vectored records are left behind (keys are never reused, and a
-- lookup confirms the stored vector) and are removed by `huedb compact`.
CREATE TABLE IF NOT EXISTS digests (
    digest INTEGER NOT NULL,
    key INTEGER NOT NULL,
    PRIMARY KEY (digest, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digests_mid (
    digest INTEGER NOT NULL,
    key INTEGER NOT NULL,
    PRIMARY KEY (digest, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digests_recent (
    digest INTEGER NOT NULL,
    key INTEGER NOT NULL,
    PRIMARY KEY (digest, key)
) WITHOUT ROWID;
-- `kind`: `record_values.KIND_*` (numbers share one kind, so 2 == 2.0, and bools another).
CREATE TABLE IF NOT EXISTS record_meta (
    key INTEGER NOT NULL,
    cid INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    is_array INTEGER NOT NULL,
    value
);
CREATE INDEX IF NOT EXISTS record_meta_keys ON record_meta (cid, name, kind, is_array, value, key);
CREATE INDEX IF NOT EXISTS record_meta_by_key ON record_meta (key);
{DOCUMENT_INDEX};
CREATE TABLE IF NOT EXISTS oplog (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    key INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oplog_by_collection ON oplog (cid, seq);
"""
