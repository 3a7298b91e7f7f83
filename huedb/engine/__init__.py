"""The engine: the SQLite store (catalog, records, oplog), filters, and the derived
per-process vector indexes with their snapshots."""
