"""A node that stops in the middle of a write transaction (SIGSTOP, a VM paused, a network cut
after it took a collection's lock) must not hold that collection's writers on every other
node for ever: PostgreSQL ends a write session left idle in its transaction for longer than
`pg_write_idle_timeout` (EngineOptions), which gives its row locks back and rolls its changes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from huedb.engine.catalog import DEFAULT_DATABASE_ID
from huedb.engine.filters import compile_filter
from huedb.engine.postgres_store import PostgresStore
from huedb.engine.store_factory import open_store
from huedb.errors import StorageUnavailableError
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch

IDLE_LIMIT_S = 5.0


@pytest.fixture
def two_nodes(pg_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    options = EngineOptions(store=pg_url, pg_pool_timeout=3.0, pg_write_idle_timeout=IDLE_LIMIT_S)
    stores = [open_store(None, options) for _ in range(2)]
    assert all(isinstance(store, PostgresStore) for store in stores)
    yield stores[0], stores[1]  # type: ignore[misc]
    for store in stores:
        store.close()


def _batch(ids: list[str], value: float) -> RecordBatch:
    vectors = np.full((len(ids), 2), value, dtype=np.float32)
    return RecordBatch(ids=ids, embeddings=vectors, metadatas=[{"v": value}] * len(ids))


def test_a_writer_stopped_inside_its_transaction_lets_others_write(
    two_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    frozen, live = two_nodes
    with frozen.write() as db:
        db.ensure_defaults("default_tenant", "default_database")
        col = db.insert_collection(DEFAULT_DATABASE_ID, "frozen", None, {})
        db.insert_records(col.cid, _batch(["a"], 1.0).filled())

    locked, resume = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def stopped_writer() -> None:
        try:
            with frozen.write() as db:
                db.collection_by_uuid(col.uuid)  # takes the collection's row lock
                db.insert_records(col.cid, _batch(["lost"], 2.0).filled())
                locked.set()
                resume.wait(60)  # the node is stopped here, idle inside its transaction
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=stopped_writer, daemon=True)
    thread.start()
    assert locked.wait(10)
    start = time.monotonic()
    with live.write() as db:
        db.collection_by_uuid(col.uuid)  # waits for the row lock
        db.insert_records(col.cid, _batch(["b"], 3.0).filled())
    waited = time.monotonic() - start
    resume.set()
    thread.join(10)

    assert waited < IDLE_LIMIT_S + 5, f"the live node waited {waited:.1f} s for the lock"
    # The stopped node's transaction was ended by PostgreSQL: its commit fails, nothing of it
    # is kept, and its error is the outage error the server answers 503 for.
    assert outcome and isinstance(outcome[0], StorageUnavailableError), outcome
    assert "stalled inside it for longer than pg_write_idle_timeout" in str(outcome[0])
    with live.read() as db:
        assert sorted(db.existing_keys(col.cid, ["a", "b", "lost"])) == ["a", "b"]
    # The stopped node's pool replaces the ended connection: it writes again.
    with frozen.write() as db:
        db.collection_by_uuid(col.uuid)
        db.insert_records(col.cid, _batch(["c"], 4.0).filled())
    with frozen.read() as db:
        assert sorted(db.existing_keys(col.cid, ["a", "b", "c"])) == ["a", "b", "c"]


def _slow_documents(count: int) -> list[str]:
    """Documents a `a[ab]{1000}c` regex takes ~0.5 s each to scan (RE2's slow path)."""
    rng = np.random.default_rng(4)
    return ["".join(rng.choice(list("ab"), 100_000)) for _ in range(count)]


def test_a_long_regex_delete_is_not_taken_for_a_stopped_node(
    two_nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """A delete by `$regex` whose Python scan takes longer than the idle limit sends a
    statement every few seconds: PostgreSQL keeps its transaction (it ended it: a 503 for a
    healthy write) and the delete happens."""
    store, _ = two_nodes
    documents = _slow_documents(14)
    batch = _batch([f"d{i}" for i in range(14)], 1.0)
    batch.documents = documents
    with store.write() as db:
        db.ensure_defaults("default_tenant", "default_database")
        col = db.insert_collection(DEFAULT_DATABASE_ID, "slowdel", None, {})
        db.insert_records(col.cid, batch.filled())
    flt = compile_filter(None, None, {"$not_regex": "a[ab]{1000}c"})
    started = time.monotonic()
    with store.write() as db:
        db.collection_by_uuid(col.uuid)
        keys = db.select_keys(col.cid, flt)
        db.delete_keys(col.cid, keys)
    assert time.monotonic() - started > IDLE_LIMIT_S  # the scan did outlast the limit
    with store.read() as db:
        assert db.existing_keys(col.cid, batch.ids) == {}
