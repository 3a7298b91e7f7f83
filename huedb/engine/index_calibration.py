"""The recall measurement a collection's graph searches by, as the index cache keeps it.

A build measures the recall of the graph it made (`recall_calibration`); after that the
graph's snapshot is measured again, by a child process on one core (`recall_process`),
when the measurement is missing, was made for another target or ef_search, or a fifth of
the graph changed since. The graph then searches at the `ef_search` the measurement chose
(`use`), which a snapshot stores with the changes made since (`to_store`), so a process
restarted after a bulk change measures again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from huedb.engine import snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.index_state import IndexJob, IndexState, running_jobs
from huedb.engine.recall_calibration import Calibration, shortfall
from huedb.engine.recall_process import measure_snapshot
from huedb.engine.vector_index import BuildStopped

logger = logging.getLogger(__name__)


def use(state: IndexState, calibration: Calibration | None) -> None:
    """Search the state's graph at the ef this measurement chose."""
    state.calibration = calibration
    state.changed_since_calibration = 0 if calibration is None else calibration.changed_since
    state.index.tuned_ef = None if calibration is None else calibration.ef_search
    state.index.tuned_live_share = 1.0 if calibration is None else calibration.live_share


def to_store(state: IndexState) -> Calibration | None:
    """The state's recall measurement as a snapshot stores it: with the changes applied to
    the graph since (a process restarted after a bulk change measures again)."""
    if state.calibration is None:
        return None
    return dataclasses.replace(state.calibration, changed_since=state.changed_since_calibration)


def start_if_due(
    col: CollectionRow, state: IndexState, directory: Path, owner: Callable[[CollectionRow], str]
) -> None:
    """Measure the recall again, on the graph's snapshot in `directory` (carrying
    `owner(col)`) in a child process on one core (`recall_process`: searches here keep the
    other cores), when the measurement is missing, was made for another target or
    ef_search, or a fifth of the graph changed since."""
    params = state.index.params
    if not (state.may_calibrate and state.index.uses_graph) or params.recall_target <= 0:
        return
    if state.index.backlog:  # measured once the graph has taken it (and is snapshotted)
        return
    if state.build is not None or state.calibrating is not None:
        return
    known = state.calibration
    changes = state.changed_since_calibration
    if known is not None and not known.stale(params.recall_target, params.ef_search, changes):
        return
    state.may_calibrate = False
    path, carried = snapshot.snapshot_path(directory, col.uuid), owner(col)
    job = IndexJob(threading.Thread(daemon=True), state.watermark)

    def work() -> None:
        try:
            job.calibration = measure_snapshot(path, carried, params, job.stop)
        except (BuildStopped, ValueError, RuntimeError) as exc:
            logger.info("recall of %s not measured: %r", col.uuid, exc)
            return
        if job.calibration is not None:
            log(col.uuid, job.calibration, params.ef_search_set)

    job.thread = threading.Thread(target=work, name=f"huedb-recall-{col.uuid}", daemon=True)
    state.calibrating = job
    state.changed_since_calibration = state.unsnapshotted  # changes the file lacks
    running_jobs.add(job)
    job.thread.start()


def adopt_finished(state: IndexState) -> None:
    """Search by a finished measurement, if it is for the index's current settings."""
    job = state.calibrating
    if job is None or job.thread.is_alive():
        return
    state.calibrating = None
    found, params = job.calibration, state.index.params
    if found is None or not state.index.uses_graph:
        return
    if found.target != params.recall_target or found.floor != params.ef_search:
        return
    known = state.calibration
    if known is not None and known.target == found.target and known.floor == found.floor:
        # The view's sample is in its graph, which flatters it: never lower the ef.
        found = dataclasses.replace(found, ef_search=max(found.ef_search, known.ef_search))
    changes = state.changed_since_calibration
    use(state, found)
    state.changed_since_calibration = changes


def log(collection_uuid: str, found: Calibration, ef_search_set: bool) -> None:
    """Log a measurement, with a warning when it falls short of its target."""
    short = shortfall(found.recall, found.target, found.ef_search, ef_search_set)
    if short is not None:
        logger.warning("collection %s: %s", collection_uuid, short)
    logger.info(
        "recall@10 of the graph of %s: %.3f at ef_search %d (target %.3f, %d queries, "
        "%d vectors, %.2f s)",
        collection_uuid,
        found.recall,
        found.ef_search,
        found.target,
        found.queries,
        found.graph_size,
        found.seconds,
    )
