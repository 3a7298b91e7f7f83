"""Nodes of a saved HNSW graph that no search can reach, found and linked in.

HNSW keeps a node's neighbour list short by pruning: a neighbour is dropped when it is
nearer to another kept neighbour than to the node. A node whose every in-link was pruned
this way (and any node reached only through such nodes) is never visited by a search, so
its record is never returned, however large the search's ef: usearch's own graph of the
bench's 100k x 384 clustered vectors (M 16, ef_construction 100, two threads) left 183-203
nodes (0.19 %) unreachable from the entry point, and a search with each node's own vector
at ef 2,000 missed 191; at 1M x 384, 9,280-9,381 (0.93 %), of which a search at ef 128
with a vector a hair from the node's own found 90-100 (9,230-9,329 once linked). Removing
such a node and adding it again links ~80 % of them; the rest are pruned out again (a
node whose one kept neighbour is a hub with a full list).

So this module edits the serialized graph instead. It reads usearch's saved form (the
layout `usearch_layout` reads: each node's key and level-0 list) and makes level 0
strongly connected around a pivot, a hub with the most in-links: a search starts level 0
wherever the upper levels' descent lands, not at the entry node, so every node must be
reached from the pivot and reach it. A node a walk of level 0's links from the pivot never
meets is appended to the level-0 list of up to `LINKS_PER_NODE` of its nearest reached
nodes that have room; a node from which no walk meets the pivot (rare: a few of a small
graph with a low M, such as an entry node whose neighbours never link back) gets a link
in its own list to its nearest node that does. Rounds repeat while they add links (a node
linked in can host the next one). A link is only added, never removed, so no node becomes
unreachable. A file in any other layout is left as it is (`read_level0` returns None).

Used on the file a graph process saved and on snapshots written from a graph in memory
(`vector_index.link_saved_graph`), on a graph built in a thread (`vector_index.reconnected`)
and on a snapshot by `huedb verify --repair` (`SnapshotWriter.link`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from huedb.engine import usearch_layout

logger = logging.getLogger(__name__)

LINKS_PER_NODE = 2  # reached nodes that link to each node found unreachable
NEAREST = 32  # candidates searched for those nodes, nearest first
PIVOT_SAMPLE = 16_384  # level-0 lists whose links choose the pivot
# Nodes keyed at or above this are not records (huedb's tombstones, `vector_index.
# TOMBSTONE_BASE` up, and nodes usearch removed, 2**64 - 1): never linked in nor counted.
RECORD_KEYS_BELOW = 2**63
# Slots whose level-0 lists a step of a walk reads at a time: a step over every list at
# once held copies of them (and their masks) beside the lists, ~40 MiB at 100k x 384 (M 16)
# at the end of a build, where the build's peak memory is.
STEP_BLOCK = 32_768
FIRST_BLOCK = 256  # slots in the first block of a round of `_reaching` (then twice as many)

# The nearest nodes of some keys (a graph search with their own vectors): keys found
# (rows x k) and how many of each row are real.
Nearest = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Level0:
    """Level 0 of a serialized graph: what a walk of its links needs, and where each
    node's list is (to append to it)."""

    data: np.ndarray  # the serialized index (uint8), written in place by `link_in`
    keys: np.ndarray  # slot -> key
    list_at: np.ndarray  # slot -> byte offset of its level-0 count
    counts: np.ndarray  # slot -> links in its level-0 list
    links: np.ndarray  # (slots, capacity) uint32: the lists (past `counts`: unused)
    capacity: int
    entry: int


def read_level0(data: np.ndarray) -> Level0 | None:
    """Level 0 of the usearch index serialized in `data` (uint8), or None when it is not
    an index of the layout this module knows."""
    found = usearch_layout.sections(data)
    graph = None if found is None else usearch_layout.nodes(data, found.graph_at)
    if graph is None:
        return None
    size, conn0 = len(graph.starts), graph.base_connectivity
    if size == 0:
        none = np.empty(0, dtype=np.int64)
        return Level0(data, none.astype(np.uint64), none, none, none.reshape(0, 0), 0, 0)
    keys = usearch_layout.slot_keys(data, graph)
    lists = usearch_layout.gather_words(data, graph.starts + usearch_layout.NODE_HEAD, 1 + conn0)
    counts = lists[:, 0].astype(np.int64)
    if np.any(counts > conn0):
        return None
    links = lists[:, 1:]
    if np.any(links[np.arange(conn0)[None, :] < counts[:, None]] >= size):
        return None
    return Level0(
        data, keys, graph.starts + usearch_layout.NODE_HEAD, counts, links, conn0, graph.entry
    )


def pivot(level0: Level0) -> int:
    """The slot the walks start from: a hub, the node with the most level-0 in-links from
    a spread sample of up to `PIVOT_SAMPLE` lists (in the part of the graph that reaches
    most nodes), the lowest such slot on a tie."""
    size = len(level0.counts)
    rows = np.arange(0, size, max(1, size // PIVOT_SAMPLE))
    live = np.arange(level0.capacity)[None, :] < level0.counts[rows][:, None]
    return int(np.argmax(np.bincount(level0.links[rows][live], minlength=size)))


def cut_off(level0: Level0) -> np.ndarray:
    """Slots a search may miss (ascending): not reached by a walk of level 0's links from
    `pivot`, or from which no walk reaches it."""
    return np.flatnonzero(_missed(level0))


def _missed(level0: Level0) -> np.ndarray:
    """The mask of `cut_off`'s slots."""
    if len(level0.counts) == 0:
        return np.zeros(0, dtype=bool)
    hub = pivot(level0)
    return ~(_reached(level0, hub) & _reaching(level0, hub))


def _reached(level0: Level0, start: int) -> np.ndarray:
    """The mask of slots a walk of level 0's links from `start` meets."""
    seen = np.zeros(len(level0.counts), dtype=bool)
    _walk(level0, seen, np.array([start], dtype=np.int64))
    return seen


def _reaching(level0: Level0, target: int, known: np.ndarray | None = None) -> np.ndarray:
    """The mask of slots from which a walk of level 0's links meets `target` (a superset
    of `known`, slots known to): a slot reaches it when one of its links leads to a slot
    that does, repeated until nothing changes. Each round looks only at the rest, and a
    block's finds count for the blocks after it in the same round: on a 1M x 384 graph,
    M 16, 0.66 s where finds counted from the next round took 1.23 s. Blocks start at
    `FIRST_BLOCK` slots and double: slots are in the order their nodes were added, and a
    node added links to those added before it, so small first blocks pass the finds on
    from the earliest nodes (the graph's core) to the rest within the first round (at
    100k x 384, M 16, 0.043 s where blocks of `STEP_BLOCK` from the start took 0.098 s
    over 7 rounds)."""
    reaches = np.zeros(len(level0.counts), dtype=bool) if known is None else known.copy()
    reaches[target] = True
    rest = np.flatnonzero(~reaches)
    columns = np.arange(level0.capacity)[None, :]
    while len(rest):
        now = np.zeros(len(rest), dtype=bool)
        start, step = 0, FIRST_BLOCK
        while start < len(rest):
            block = rest[start : start + step]
            live = columns < level0.counts[block][:, None]
            linked = reaches[np.where(live, level0.links[block], target)]
            found = (live & linked).any(axis=1)
            now[start : start + step] = found
            reaches[block[found]] = True  # at once: the blocks after it see them this round
            start, step = start + step, min(2 * step, STEP_BLOCK)
        if not now.any():
            break
        rest = rest[~now]
    return reaches


def _walk(level0: Level0, seen: np.ndarray, start: np.ndarray) -> None:
    """Mark in `seen` the slots `start` and every slot their level-0 links lead to,
    breadth first (a wide frontier is deduplicated through a mask, not sorted: 1M nodes
    walked in 0.2 s rather than 2.9)."""
    seen[start] = True
    frontier = start
    met = np.zeros(len(seen), dtype=bool)
    while len(frontier):
        if len(frontier) <= STEP_BLOCK:
            reached = _unseen_links(level0, seen, frontier)
            if len(reached) * 16 < len(seen):
                frontier = np.unique(reached).astype(np.int64)
                seen[frontier] = True
                continue
            met[reached] = True
        else:  # a wide frontier, a block at a time
            for at in range(0, len(frontier), STEP_BLOCK):
                met[_unseen_links(level0, seen, frontier[at : at + STEP_BLOCK])] = True
        frontier = np.flatnonzero(met)
        met[frontier] = False
        seen[frontier] = True


def _unseen_links(level0: Level0, seen: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The slots the level-0 lists of `slots` link to that are not `seen` (repeats kept)."""
    reached = level0.links[slots][
        np.arange(level0.capacity)[None, :] < level0.counts[slots][:, None]
    ]
    return reached[~seen[reached]]


def link_in(level0: Level0, lost: np.ndarray, reached: np.ndarray, nearest: Nearest) -> np.ndarray:
    """Append each of the `lost` slots to the level-0 lists of up to `LINKS_PER_NODE` of
    its nearest nodes (by `nearest`) that are `reached` (a mask of slots) and have room;
    the lost slots linked. The links are written into `level0.data`."""
    if len(lost) == 0:
        return lost
    found, counts = nearest(level0.keys[lost])
    candidates = _slots_of(found, counts, level0.keys)
    usable = reached.copy()
    usable[level0.counts >= level0.capacity] = False
    linked: list[int] = []
    for slot, row in zip(lost.tolist(), candidates.tolist(), strict=True):
        hosts = [near for near in row if near >= 0 and usable[near]][:LINKS_PER_NODE]
        hosts = hosts or _fallback(level0, slot, usable)
        for near in hosts:
            _append(level0, near, slot)
            usable[near] = level0.counts[near] < level0.capacity
        if hosts:
            linked.append(slot)
    return np.asarray(linked, dtype=np.int64)


def reconnect(data: np.ndarray, nearest: Nearest) -> tuple[int, int] | None:
    """Link every record's node of the serialized graph in `data` that a search may miss
    (see the module) in and out; (records found cut off, records still cut off after), or
    None when the layout is not one this module reads."""
    level0 = read_level0(data)
    if level0 is None:
        return None
    if len(level0.counts) == 0:
        return 0, 0
    hub = pivot(level0)
    seen, reaches = _reached(level0, hub), _reaching(level0, hub)
    found = len(_records(level0, ~(seen & reaches)))
    while True:  # links are only added: what was reached or reaching stays so
        linked_in = link_in(level0, _records(level0, ~seen), seen, nearest)
        linked_to = link_out(level0, _records(level0, seen & ~reaches), reaches, nearest)
        if len(linked_in) == 0 and len(linked_to) == 0:
            break
        _walk(level0, seen, np.concatenate([linked_in, linked_to]))
        reaches = _reaching(level0, hub, reaches)
    return found, len(_records(level0, ~(seen & reaches)))


def unreachable_records(data: np.ndarray) -> int | None:
    """How many records' nodes of the serialized graph in `data` a search may miss (other
    nodes not counted), or None when the layout is not one this module reads."""
    level0 = read_level0(data)
    return None if level0 is None else len(_records(level0, _missed(level0)))


def _records(level0: Level0, mask: np.ndarray) -> np.ndarray:
    """Slots of records' nodes (`RECORD_KEYS_BELOW`) in `mask`."""
    return np.flatnonzero(mask & (level0.keys < np.uint64(RECORD_KEYS_BELOW)))


def reconnect_file(path: str | os.PathLike[str], nearest: Nearest) -> tuple[int, int] | None:
    """`reconnect` on the index usearch saved to the file `path`, edited in place."""
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r+")
    except ValueError:  # an empty file cannot be mapped
        return None
    try:
        result = reconnect(data, nearest)
        data.flush()
    finally:
        del data
    return result


def report(result: tuple[int, int] | None) -> None:
    """Log what `reconnect` did (nothing when every node was reached)."""
    if result is None:
        logger.warning(
            "unreachable nodes of a graph not linked in: its saved form was not read, or "
            "linking it failed"
        )
    elif result[0]:
        found, left = result
        logger.info(
            "%d graph nodes no search reached were linked in (%d still unreachable)",
            found - left,
            left,
        )


def _fallback(level0: Level0, slot: int, usable: np.ndarray) -> list[int]:
    """One host for `slot` when none of its nearest nodes can take a link (all full, seen
    in small graphs of a low M): a node its own list links to, else the first usable."""
    own = [near for near in level0.links[slot, : level0.counts[slot]].tolist() if usable[near]]
    return own[:1] or np.flatnonzero(usable)[:1].tolist()


def link_out(
    level0: Level0, stuck: np.ndarray, reaches: np.ndarray, nearest: Nearest
) -> np.ndarray:
    """Append to the level-0 list of each of the `stuck` slots (from which no walk meets
    the pivot) its nearest node (by `nearest`) that `reaches` it, when the list has room;
    the slots linked to."""
    if len(stuck) == 0:
        return stuck
    found, counts = nearest(level0.keys[stuck])
    candidates = _slots_of(found, counts, level0.keys)
    linked: list[int] = []
    for slot, row in zip(stuck.tolist(), candidates.tolist(), strict=True):
        if level0.counts[slot] >= level0.capacity:
            continue
        near = next((n for n in row if n >= 0 and n != slot and reaches[n]), -1)
        if near >= 0:
            _append(level0, slot, near)
            linked.append(near)
    return np.asarray(linked, dtype=np.int64)


def _slots_of(found: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Slots of the keys `found` (rows of which the first `counts` are real), -1 where a
    row ends or the graph does not hold the key."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, found), len(keys) - 1)
    real = np.arange(found.shape[1])[None, :] < counts[:, None]
    return np.where(real & (sorted_keys[at] == found), order[at], -1)


def _append(level0: Level0, node: int, slot: int) -> None:
    """Add `slot` to the end of `node`'s level-0 list, in the data and in `level0`: the
    slot is written before the count that takes it in, so the data holds a valid graph
    whenever this stops."""
    count = int(level0.counts[node])
    at = int(level0.list_at[node])
    where = at + 4 + 4 * count
    level0.data[where : where + 4] = np.frombuffer(np.uint32(slot).tobytes(), dtype=np.uint8)
    level0.data[at : at + 4] = np.frombuffer(np.uint32(count + 1).tobytes(), dtype=np.uint8)
    level0.links[node, count] = slot
    level0.counts[node] = count + 1
