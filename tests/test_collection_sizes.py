"""`collection_sizes` (behind `huedb stats`, the admin stats route, the console's disk column
and the `huedb_collection_disk_bytes` gauge) counts documents and metadata in UTF-8 bytes,
not characters, on both stores."""

from __future__ import annotations

import numpy as np

from huedb.engine.catalog import DEFAULT_DATABASE_ID
from huedb.engine.store import Store
from huedb.record_batch import RecordBatch
from tests import raw_stores

DOCUMENTS = ["plain ascii", "漢字かな交じり文", "emoji 🙂🙃🙂", None]
METADATA_VALUE = "漢" * 100  # 100 characters, 300 UTF-8 bytes


store = raw_stores.store


def test_sizes_are_utf8_bytes(store: Store) -> None:
    count = len(DOCUMENTS)
    with store.write() as db:
        db.ensure_defaults("default_tenant", "default_database")
        cid = db.insert_collection(DEFAULT_DATABASE_ID, "sizes", None, {}).cid
        db.insert_records(
            cid,
            RecordBatch(
                ids=[f"r{i}" for i in range(count)],
                embeddings=np.zeros((count, 2), dtype=np.float32),
                metadatas=[{"t": METADATA_VALUE}] * count,
                documents=DOCUMENTS,
            ).filled(),
        )
    with store.read() as db:
        records, document_bytes, metadata_bytes, _ = db.collection_sizes(cid)
    assert records == count
    assert document_bytes == sum(len(d.encode()) for d in DOCUMENTS if d is not None)
    assert metadata_bytes >= count * len(METADATA_VALUE.encode())
