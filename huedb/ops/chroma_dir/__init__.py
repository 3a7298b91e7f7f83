"""Reader of Chroma 1.x persistent directories, without importing chromadb.

A Chroma directory holds `chroma.sqlite3` (collections, record metadata and the write-ahead
log `embeddings_queue`) and one folder per HNSW vector segment. Vectors live in the HNSW files
up to the segment's `max_seq_id` and in the log after it; record metadata lives in SQLite up
to the metadata segment's `max_seq_id` and in the log after it. The reader replays both tails.

- `sqlite_reader`: `chroma.sqlite3` read in one read-only transaction (a file that needs
  recovery through a recovered temporary copy): tenants, databases, collections (with the
  schema Chroma 1.5 stores in `schema_str`), segments, record metadata, the log.
- `configuration`: a collection's HNSW configuration from whichever form the directory stores.
- `hnswlib_file`: vectors and labels of a persisted HNSW segment (hnswlib's binary files).
- `log_replay`: the log tail replayed on top of the metadata and vector segments.
- `records`: one collection's records as `huedb.record_batch.RecordBatch` batches.
- `source`: the whole directory as one snapshot, checked before a migration writes anything.
"""

from huedb.ops.chroma_dir.source import ChromaDirectory, describe
from huedb.ops.chroma_dir.sqlite_reader import ChromaCollection, SourceChangedError

__all__ = [
    "ChromaCollection",
    "ChromaDirectory",
    "SourceChangedError",
    "describe",
]
