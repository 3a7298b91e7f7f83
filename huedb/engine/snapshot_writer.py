"""Graph snapshots written to an index directory, each under the collection's snapshot lock.

The index cache's writer (`index_cache.IndexCache`): a graph held in memory (streamed from
usearch) or a graph file a child process saved is written behind a snapshot header
(`snapshot.write_snapshot_streamed`, `write_snapshot_from_file`) unless a usable snapshot
at least as recent is there; a snapshot on disk is linked again in place (`link`, `huedb
verify --repair`). Each write first checks, under the lock, that the store still has the
collection, so no snapshot lands after the process that deleted it removed its files.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from huedb.engine import events, snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.recall_calibration import Calibration
from huedb.engine.vector_index import VectorIndex, link_saved_graph
from huedb.errors import NotFoundError

logger = logging.getLogger(__name__)


class SnapshotWriter:
    """Writes the graph snapshots of one store's collections in `directory`."""

    def __init__(
        self,
        directory: Path,
        owner: Callable[[CollectionRow], str],
        exists: Callable[[str], bool],
    ) -> None:
        """`owner(col)`: the identity a snapshot of the collection carries; `exists(uuid)`:
        whether the store still has a collection, asked by writers in any thread (a store
        session of its own, never the engine's lock)."""
        self._directory = directory
        self._owner = owner
        self._exists = exists

    def write_or_warn(
        self,
        col: CollectionRow,
        watermark: int,
        index: VectorIndex,
        calibration: Calibration | None,
        replace: bool = False,
        graph_file: Path | None = None,
    ) -> bool:
        """Write the index's graph (or the graph usearch saved to `graph_file`) to its
        snapshot unless a usable one at least as recent is there (`snapshot.covers`; with
        `replace`, a more recent one: a rebuilt graph replaces one at its watermark). True
        means the file is whole: the caller may map it without checking its payload again.
        False when another process holds the snapshot lock or it could not be written: a
        snapshot is a cache, so failing to write one (disk full, I/O error, even its lock
        file) must not fail the query or write that triggered it; the index stays held
        (evicting it would lose its graph). NotFoundError when the store no longer has the
        collection, checked under the lock first (its files are then removed): no snapshot
        lands after the process that deleted it removed its files
        (`snapshot.remove_collection_files` waits for the lock)."""
        path = snapshot.snapshot_path(self._directory, col.uuid)
        try:
            with snapshot.exclusive_lock(self._directory, col.uuid) as locked:
                if not locked:
                    return False
                if not self._exists(col.uuid):
                    snapshot.unlink_collection_files(self._directory, col.uuid)
                    raise NotFoundError(f"Collection {col.uuid} does not exist.")
                owner, dim, space = self._owner(col), index.dim, index.params.space
                newer_than = watermark + 1 if replace else watermark
                if not snapshot.covers(path, owner, newer_than, dim, space):
                    measured = None if calibration is None else calibration.to_json()
                    if graph_file is None:
                        length = snapshot.write_snapshot_streamed(
                            path, owner, watermark, dim, space, index.save_graph, measured
                        )
                    else:
                        length = snapshot.write_snapshot_from_file(
                            path, owner, watermark, dim, space, graph_file, measured
                        )
                    events.snapshot_written(True, length)
                    logger.debug("snapshot of %s at seq %d", col.uuid, watermark)
            return True
        except OSError as exc:
            logger.warning("could not write index snapshot %s: %s", path, exc)
            events.snapshot_written(False, 0)
            return False

    def link(self, col: CollectionRow) -> tuple[int, int] | None:
        """Link in the records the graph of the collection's snapshot does not reach
        (`graph_reach`) and write the snapshot again at its watermark (`huedb verify
        --repair`): the graph is not rebuilt, and the old file serves until the new one
        replaces it. (records found, records left unreachable); None without a usable
        snapshot, or when another process holds its lock."""
        path = snapshot.snapshot_path(self._directory, col.uuid)
        with snapshot.exclusive_lock(self._directory, col.uuid) as locked:
            if not locked:
                return None
            if not self._exists(col.uuid):
                raise NotFoundError(f"Collection {col.uuid} does not exist.")
            owner = self._owner(col)
            snap = snapshot.read_snapshot(path, owner)
            if snap is None:
                return None
            snapshot.remove_stale_temporaries(path.parent, path.stem)
            staging = snapshot.staging_path(path)
            try:
                with open(staging, "wb") as f:
                    f.write(snap.payload)
                result = link_saved_graph(staging)
                if result is not None and result[0]:
                    snapshot.write_snapshot_from_file(
                        path, owner, snap.watermark, snap.dim, snap.space, staging, snap.calibration
                    )
                return result
            finally:
                with contextlib.suppress(FileNotFoundError):
                    staging.unlink()
