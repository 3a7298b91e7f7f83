"""The store interface: what the engine asks of the truth it runs on.

A store holds the catalog (tenants, databases, collections, aliases), the records with
their vectors, typed metadata and document index, and the oplog of the changes the derived
indexes follow (vectors, and sparse-vector metadata values). The engine, its index caches
and everything above see only these protocols; each store (SQLite in
`engine/sqlite_store/`, PostgreSQL in `engine/postgres_store/`) keeps its SQL to itself.

What every store guarantees (docs/ARCHITECTURE.md, "Store interface"):
- a `read()` session sees one consistent snapshot for all its calls;
- a `write()` session is one transaction: all of it commits when the block ends without an
  exception, nothing of it otherwise; writers of one collection are serialised;
- a write acknowledged (its block ended) is committed, at the durability configured;
- record keys are never reused (a deleted record's key is never given to another one);
- the oplog is per collection: every committed change of a record's vector (insert,
  replace, delete) or of one of its sparse-vector metadata values has a sequence number,
  and once `oplog_head(cid)` returned `h` in a snapshot, every change committed later gets
  a number above `h`, so a reader that applied `oplog_changes(cid, w)` up to `h` never
  skips a committed change.

Calls take and return plain values: `CollectionRow`, record rows as tuples
`(key, id, document, uri, metadata_json[, vector])` with the vector as float32 bytes,
numpy arrays for keys and vectors. Errors are `huedb.errors` classes (NotFoundError,
CollectionExistsError, StorageFullError, ...), raised in the same order on every store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from huedb.engine.budget import Deadline
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.record_batch import RecordBatch

# One oplog entry: (sequence number, record key, the key's vector now as float32 bytes, or
# None when the record is gone).
OplogChange = tuple[int, int, bytes | None]


@dataclass(frozen=True)
class RowsAtHead:
    """What `Store.rows_at_head` read, all in one snapshot."""

    collection: CollectionRow | None  # None: no collection has that uuid
    head: int  # the collection's oplog head (0 when it is gone)
    rows: dict[int, tuple]  # key -> record row (with its vector when asked for)
    same_vector: list[list[int]]  # per probe vector: keys of the collection holding exactly it


class Confirmation(Protocol):
    """The half of `Store.confirm_at_head` after the search."""

    def rows(self, keys: Sequence[int]) -> RowsAtHead:
        """`Store.rows_at_head` of the keys the search found."""
        ...


@dataclass(frozen=True)
class ReadAfterSearch:
    """A `Confirmation` that makes its one read after the search (a store with nothing to
    send ahead of it)."""

    store: Store
    col: CollectionRow
    probes: np.ndarray | None
    with_vectors: bool
    timeout: float

    def rows(self, keys: Sequence[int]) -> RowsAtHead:
        return self.store.rows_at_head(self.col, keys, self.probes, self.with_vectors, self.timeout)


class FilteredRead(Protocol):
    """An open read snapshot (`Store.read_filtered`): the collection's row and oplog head
    and the keys a filter allows, read first; then `rows` in the same snapshot, once."""

    collection: CollectionRow | None  # None: no collection has that uuid
    head: int
    allowed: np.ndarray  # uint64 keys the filter allows (empty when the collection is gone)

    def rows(
        self, keys: Sequence[int], probes: np.ndarray | None, with_vectors: bool
    ) -> tuple[dict[int, tuple], list[list[int]]]:
        """The rows of `keys` and of the records holding each probe vector exactly, and
        per probe those records' keys (as `RowsAtHead`); ends the snapshot."""
        ...


class StoreSession(Protocol):
    """The calls of one transaction (a read snapshot, or a write); not thread-safe.

    Names are validated by the engine before they get here; a session checks only what
    needs the stored state (existence, clashes) and raises huedb's errors.
    """

    # -- catalog ---------------------------------------------------------------------

    def ensure_defaults(self, tenant: str, database: str) -> None:
        """Create the default tenant and database (idempotent)."""
        ...

    def create_tenant(self, name: str) -> None:
        """AlreadyExistsError if it exists."""
        ...

    def get_tenant(self, name: str) -> dict[str, Any]:
        """`{"name": name}`; NotFoundError if missing."""
        ...

    def delete_empty_tenant(self, name: str) -> None:
        """Delete a tenant that holds no database (NotFoundError if missing,
        InvalidArgumentError if it holds one)."""
        ...

    def create_database(self, name: str, tenant: str) -> None:
        """NotFoundError for a missing tenant, then AlreadyExistsError."""
        ...

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        """`{"id", "name", "tenant"}`; NotFoundError if missing."""
        ...

    def list_databases(
        self, tenant: str, limit: int | None, offset: int | None
    ) -> list[dict[str, Any]]:
        """A tenant's databases by name."""
        ...

    def database_id(self, tenant: str, database: str) -> str:
        """The id of a database; NotFoundError if missing."""
        ...

    def database_names(self, db_id: str) -> tuple[str, str] | None:
        """(tenant, database) of a database id, if it exists."""
        ...

    def delete_database(self, name: str, tenant: str) -> list[CollectionRow]:
        """Delete a database, its aliases and collection rows; returns those collections
        (the caller deletes their records in the same transaction)."""
        ...

    def collection_by_name(self, db_id: str, name: str, follow_alias: bool = True) -> CollectionRow:
        """A collection by name, or by an alias naming it; NotFoundError if neither."""
        ...

    def collection_by_uuid(self, collection_uuid: str) -> CollectionRow:
        """NotFoundError if missing."""
        ...

    def lock_database_of(self, collection_uuid: str) -> None:
        """In a write session, take the lock of the collection's database before the
        collection's own (PostgreSQL: its advisory lock, as `database_id` takes it; SQLite
        has one writer at a time). For changes of a database's catalog made through a
        collection: a fork, a rename."""
        ...

    def list_collections(
        self, db_id: str, limit: int | None, offset: int | None
    ) -> list[CollectionRow]:
        """A database's collections by uuid."""
        ...

    def count_collections(self, db_id: str) -> int: ...

    def insert_collection(
        self,
        db_id: str,
        name: str,
        metadata: dict[str, Any] | None,
        configuration: dict[str, Any],
    ) -> CollectionRow:
        """A new collection (new uuid); CollectionExistsError if the name or an alias is taken."""
        ...

    def update_collection(
        self,
        col: CollectionRow,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        new_configuration: dict[str, Any] | None,
    ) -> None:
        """Rename (CollectionExistsError on a clash) and replace what is given ({} metadata:
        none)."""
        ...

    def delete_collection_row(self, cid: int) -> None: ...

    def fork_collection(self, source: CollectionRow, new_name: str) -> CollectionRow:
        """A new collection `new_name` in `source`'s database with its metadata, configuration
        and dimension, holding a copy of every record of `source` under new keys (in key
        order); CollectionExistsError if the name or an alias is taken. The caller's write
        session holds `source` against its writers, so the copy is of one moment. No oplog
        entries: no index of the new collection can exist yet, its first load reads the
        store."""
        ...

    def record_fork(self, source_uuid: str, fork_uuid: str) -> None:
        """Count a fork in its source's lineage tree (`engine/fork_lineage.py`)."""
        ...

    def fork_count(self, collection_uuid: str) -> int:
        """Forks made in the collection's lineage tree (0 if never forked nor a fork)."""
        ...

    def set_dimension(self, cid: int, dimension: int) -> None:
        """Fix the collection's dimension if it has none yet."""
        ...

    def alias_target(self, db_id: str, name: str) -> int | None:
        """The cid an alias points at, or None if `name` is no alias."""
        ...

    def set_alias(self, db_id: str, alias: str, target: str, create: bool) -> None:
        """Create an alias (AlreadyExistsError if `create` and it exists) or switch it
        (NotFoundError if not `create` and it is missing); InvalidArgumentError if `alias`
        names a collection."""
        ...

    def delete_alias(self, db_id: str, alias: str) -> None:
        """NotFoundError if missing."""
        ...

    def list_aliases(self, db_id: str) -> list[dict[str, str]]:
        """`{"name", "collection", "collection_id"}` by alias name."""
        ...

    def aliases_of(self, cid: int) -> list[str]: ...

    def collection_uuids(self) -> list[str]:
        """Every collection's uuid, in creation order."""
        ...

    # -- records (writes) --------------------------------------------------------------

    def existing_keys(self, cid: int, ids: Sequence[str]) -> dict[str, int]:
        """The given ids that exist in the collection, with their keys."""
        ...

    def insert_records(self, cid: int, batch: RecordBatch) -> None:
        """Insert records (ids known absent, vectors given) with new keys in batch order;
        metadata is stored cleaned (`record_values.clean_metadata`), its (key, type) pairs
        recorded in the collection's schema (`record_key_types`), one oplog entry each."""
        ...

    def update_records(self, cid: int, keys: Sequence[int], batch: RecordBatch) -> None:
        """Update records `keys` (batch order): replace what is given, merge metadata (None
        drops a key), record key types; an oplog entry per key if vectors are given."""
        ...

    def delete_keys(self, cid: int, keys: Sequence[int]) -> None:
        """Delete records by key (one oplog entry each)."""
        ...

    def delete_collection_records(self, cid: int) -> None:
        """Remove every record of a collection and its oplog."""
        ...

    def record_key_types(self, cid: int, pairs: list[tuple[str, str]]) -> None:
        """Add (key, type) pairs missing from the collection's stored schema
        (`schema_keys.add_pairs`), read and written in this write transaction."""
        ...

    # -- records (reads) ---------------------------------------------------------------

    def select_keys(
        self, cid: int, flt: RecordFilter, limit: int | None = None, offset: int | None = None
    ) -> list[int]:
        """Keys of matching records in storage (key) order."""
        ...

    def allowed_keys(self, cid: int, flt: RecordFilter) -> np.ndarray:
        """Keys (uint64, each once, any order) a filtered query may return."""
        ...

    def fetch_rows(
        self,
        cid: int,
        flt: RecordFilter,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> list[tuple]:
        """Matching rows in key order."""
        ...

    def fetch_after_key(self, cid: int, after_key: int, limit: int) -> list[tuple]:
        """Up to `limit` rows with vectors and a key above `after_key`, by key."""
        ...

    def fetch_by_keys(self, cid: int, keys: Sequence[int], with_vectors: bool) -> dict[int, tuple]:
        """Rows of the collection's given keys, by key."""
        ...

    def collection_keys(self, cid: int) -> list[int]: ...

    def count_records(self, cid: int) -> int: ...

    def vectors_by_keys(self, keys: Sequence[int] | np.ndarray, dim: int) -> np.ndarray:
        """Float32 vectors of the keys as rows in the given order (KeyError for a missing
        one: callers ask for keys they know exist)."""
        ...

    def vector_chunks(
        self, cid: int, dim: int, rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (keys uint64, vectors float32 (n, dim)) of a collection by key, in chunks of
        at most `rows`."""
        ...

    def keys_with_vector(self, cid: int, vector: np.ndarray) -> list[int]:
        """Keys of the collection's records whose vector equals `vector` bit for bit."""
        ...

    # -- oplog ------------------------------------------------------------------------

    def oplog_head(self, cid: int) -> int:
        """A sequence number at or above every change of `cid` in this snapshot, below every
        change committed later (module docstring)."""
        ...

    def oplog_changes(self, cid: int, after_seq: int) -> Iterable[OplogChange]:
        """The collection's changes with a sequence number above `after_seq`, in order, as
        rows to read once within this session (a cursor: at 1M x 384 a catch-up reads
        hundreds of thousands of vectors, `oplog_read`)."""
        ...

    def changed_keys(self, cid: int, after_seq: int) -> list[int]:
        """The distinct keys of the collection's changes with a sequence number above
        `after_seq`, ascending (`oplog_changes` without the vectors)."""
        ...

    def count_changes(self, cid: int, after_seq: int) -> int:
        """How many of the collection's changes have a sequence number above `after_seq`
        (one per record changed by each write, as `oplog_changes` returns them)."""
        ...

    def prune_oplog(self, cid: int, upto: int, snapshotted: bool, node: str) -> None:
        """Drop changes up to `upto`; raise the collection's `pruned_seq` (and its
        `snapshot_seq` when a snapshot covers them) to it. `node` names the data directory
        whose snapshot covers `upto` ("" for none): a store shared by nodes with snapshots
        of their own keeps the changes another node's recent snapshot still needs."""
        ...

    # -- store-wide ------------------------------------------------------------------

    def collection_sizes(self, cid: int) -> tuple[int, int, int, int]:
        """(records, document bytes, metadata bytes, oplog rows) of a collection."""
        ...

    def prune_leftovers(self) -> int:
        """Remove what deletes left behind (digest entries, counted, and on SQLite the
        document index's postings, by building it again)."""
        ...

    def delete_everything(self) -> None:
        """Empty every data table (the caller re-creates the defaults)."""
        ...

    def time_budget(self, seconds: float) -> AbstractContextManager[Deadline]:
        """Run a block of reads under a deadline of `seconds` (0: none): a statement running
        past it is stopped and the block raises QueryTimeoutError. Used inside a session."""
        ...


class Store(Protocol):
    """The truth of one huedb store, opened by this process (one per engine).

    Not thread-safe: the engine serialises calls with its lock, except `snapshot_session`,
    which runs on a connection of its own.
    """

    kind: str  # "sqlite" or "postgresql"
    store_id: str  # random, fixed at creation; index snapshots carry it

    def read(self) -> AbstractContextManager[StoreSession]:
        """A read session: one snapshot for all its calls."""
        ...

    def write(self) -> AbstractContextManager[StoreSession]:
        """A write session: one transaction, committed when the block ends, rolled back
        (and the exception re-raised) otherwise; StorageFullError / StorageIOError for a
        storage failure."""
        ...

    def rows_at_head(
        self,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> RowsAtHead:
        """In one snapshot: `col`'s row as stored now and its oplog head, the rows of `keys` and of
        every record holding exactly one of the `probes` vectors (with vectors when asked),
        and for each probe the keys holding it; under a budget of `timeout` seconds (0: none).

        A search run on an index that reflects oplog head `h` is confirmed by this read when
        it returns the same row and head `h`: then the index equalled the table in this
        snapshot, and the rows belong to it. PostgreSQL answers it in one round trip.
        """
        ...

    def confirm_at_head(
        self,
        col: CollectionRow,
        head: int,
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> AbstractContextManager[Confirmation]:
        """`rows_at_head` for a search on an index that reflects oplog head `head`, in two
        halves: entered before the search (the store may send what it already knows it will
        read: `col`'s row and head, the records holding each probe), `rows(keys)` after it.
        The result is that of `rows_at_head`; PostgreSQL overlaps its round trip with the
        search when its node keeps the rows as of `head` (postgres_store/row_cache.py)."""
        ...

    def read_filtered(
        self, col: CollectionRow, flt: RecordFilter, head: int, timeout: float
    ) -> AbstractContextManager[FilteredRead | None]:
        """A filtered query's reads on an index already in memory, in one snapshot: first
        `col`'s row, its oplog head and the keys `flt` allows, then (`FilteredRead.rows`)
        the rows of the keys found. PostgreSQL answers each half in one round trip; None
        when it cannot (filters with $regex, evaluated in Python: the usual path then).

        `head` is the oplog head the caller's index reflects. A store may answer the keys
        it kept from a snapshot at that head without reading them (PostgreSQL, whose head
        moves with every record change); its `collection` and `head` are then those
        expected until `rows` reads the real ones, so the caller checks them after `rows`
        as well."""
        ...

    def snapshot_session(self) -> AbstractContextManager[StoreSession] | None:
        """A long read session on a connection of its own, so the engine keeps serving
        while it is open; None when the store has only one connection (in memory): the
        caller then reads through `read()` under its lock."""
        ...

    def copy_to(self, target: Path) -> None:
        """Write a consistent copy of the whole store to `target` as a SQLite database file
        (the backup format), without blocking readers or writers."""
        ...

    def integrity_problems(self) -> list[str]:
        """The store's own consistency check plus huedb's invariants, as readable lines."""
        ...

    def storage_figures(self) -> dict[str, Any]:
        """`{"bytes", "reclaimable_bytes", ...}` of the whole store."""
        ...

    def free_pages(self) -> int:
        """Return free space to the file system or the server (outside a session); bytes."""
        ...

    def settings_in_force(self) -> dict[str, Any]:
        """Store settings as read back from the store (e.g. `sqlite_synchronous`)."""
        ...

    def close(self) -> None:
        """Close connections and release what the store holds (locks)."""
        ...
