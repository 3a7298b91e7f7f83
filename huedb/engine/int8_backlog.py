"""A backlog pass on int8 rows: the graph's changes linked as a build links its rows.

A backlog pass (`graph_build.apply_backlog`) adds the changed records' vectors to a copy
of the served graph in a graph process; nearly all of its time is those adds, whose
distances usearch computes on the graph's rows. On int8 rows they cost less than on
16-bit ones (150k x 384 unit vectors on two threads: 30k more added at 7,450 a second
against 4,600 on bfloat16), as for a build (`int8_links`). So a pass whose graph a build
could have grown on int8 rows starts its process from the graph rewritten with int8 rows
(`int8_links.to_int8`: the 16-bit rows quantized with one scale chosen from a spread of
them and of the vectors added), sends it the added vectors as int8, and rewrites the file
the process saves with 16-bit rows again (`int8_links.serve_with_slot_rows`): a slot the
starting graph had keeps its row (a renamed node keeps its slot, and huedb never frees
one), and a slot holding a key the pass added gets that vector's row. Only the links of
the nodes added were chosen on int8 rows; every row served is the 16-bit one a pass on
16-bit rows would have held.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huedb.engine import int8_links, usearch_layout
from huedb.engine.graph_process import temporary_graph_file
from huedb.engine.int8_links import Int8Rows, SavedRows
from huedb.engine.mapped_rows import rows_as_float32
from huedb.engine.vector_index import VectorIndex, graph_config, graph_rows_16, has_int8_kernel

logger = logging.getLogger(__name__)

SCALE_ROWS = 4_096  # rows of the graph, and of the vectors added, the scale is chosen from
# A pass adding fewer vectors than this share of the graph's nodes (tombstones included)
# adds them on its own rows. The two rewrites of the rows (to int8 and back) cost ~0.25 s
# at 100k x 384 and ~5.5 s at 1M (the build's rewrite, measured, twice); an add on int8
# rows saved ~80 us (150k nodes, two threads: 7,450 adds a second against 4,600): they
# pay from ~3 % of the nodes at 100k and ~7 % at 1M.
MIN_ADD_SHARE = 0.08


@dataclass
class PassStart:
    """How a pass's graph process starts (`start` writes the file it reads), which rows it
    is sent (`int8`: None for the graph's own 16-bit rows) and how the file it saves is
    rewritten (`served`: None, kept as it is)."""

    start: Callable[[Path], None]
    int8: Int8Rows | None = None
    served: Callable[[Path], None] | None = None


@contextlib.contextmanager
def pass_start(
    index: VectorIndex, add_keys: np.ndarray, add_vectors: np.ndarray, workdir: Path | None
) -> Iterator[PassStart]:
    """How a pass over the index's graph adding `add_vectors` (float32, as stored) under
    `add_keys` starts: on int8 rows, or on the graph's 16-bit rows (few adds for the
    graph's nodes, an empty, inner-product or older graph, no int8 kernel, rows int8
    would blur). The graph saved to decide is the start of a pass on 16-bit rows (moved
    there), else kept in `workdir` until the context ends."""
    config = graph_config(index.dim, index.params)
    if (
        len(add_keys) == 0
        or index.params.space not in int8_links.CENTRED
        or index.metric != config["metric"]
        or not has_int8_kernel(config["metric"])
    ):
        yield PassStart(index.save_graph)
        return
    with _saved_graph(index, Path(workdir or tempfile.gettempdir())) as (path, stored):
        as_saved = PassStart(functools.partial(os.replace, path))  # started from as saved
        # (A graph on other rows, float32: an older huedb's; an empty one; or too few adds
        # for its nodes, tombstones included, whose rows would be rewritten twice.)
        if stored is None or stored.rows == 0 or len(add_keys) < MIN_ADD_SHARE * stored.rows:
            yield as_saved
            return
        held = rows_as_float32(stored.spread(SCALE_ROWS))
        spread = int8_links.spread_rows(len(add_vectors), SCALE_ROWS // 2)
        added = index.graph_rows(add_vectors[spread])
        int8 = int8_links.choose(index.params.space, np.concatenate([held, added]))
        if int8 is None:
            yield as_saved
            return
        logger.debug("a backlog pass adds %d vectors on int8 rows", len(add_keys))
        yield PassStart(
            start=lambda target: int8_links.to_int8(stored, int8, target),
            int8=int8,
            served=_served(index.params.space, stored, add_keys, add_vectors),
        )


@contextlib.contextmanager
def _saved_graph(index: VectorIndex, directory: Path) -> Iterator[tuple[Path, SavedRows | None]]:
    """The index's graph saved to a file in `directory` (removed when the context ends)
    and a reader of its 16-bit rows (None for a graph on other rows)."""
    path = temporary_graph_file(directory)
    try:
        index.save_graph(path)
        try:
            stored = SavedRows(path)
        except ValueError:
            yield path, None
            return
        try:
            yield path, stored
        finally:
            stored.close()
    finally:
        path.unlink(missing_ok=True)


def _served(
    space: str, stored: SavedRows, add_keys: np.ndarray, add_vectors: np.ndarray
) -> Callable[[Path], None]:
    """Rewrites the file of a pass's graph on int8 rows with 16-bit rows: a slot of the
    starting graph its row in `stored`, one holding a key added its vector's row."""
    order = np.argsort(add_keys, kind="stable")
    sorted_keys = add_keys[order]
    name = usearch_layout.ROWS_16_BY_KIND[stored.kind].name

    def rows_for(start: int, keys: np.ndarray) -> np.ndarray:
        at = np.searchsorted(sorted_keys, keys).clip(0, max(len(sorted_keys) - 1, 0))
        added = sorted_keys[at] == keys if len(sorted_keys) else np.zeros(len(keys), bool)
        kept = np.flatnonzero(~added)
        if len(kept) and start + kept[-1] >= stored.rows:
            raise ValueError("the graph holds slots the pass neither started from nor added")
        rows = np.empty((len(keys), stored.dim), dtype=stored.dtype)
        rows[kept] = stored.block(start, len(keys))[kept]
        if np.any(added):
            vectors = add_vectors[order[at[added]]]
            rows[added] = graph_rows_16(name, space, vectors)
        return rows

    return lambda path: int8_links.serve_with_slot_rows(path, rows_for, stored.kind)
