"""What a graph build holds in memory (`engine/graph_build.py`): the recall measurement
reads the build's rows in blocks of `MEASURE_ROWS`, and measures exactly
what it measures over the whole matrix (`recall_calibration.ArrayVectors`)."""

from __future__ import annotations

from functools import partial

import numpy as np

from huedb.engine import recall_calibration as rc
from huedb.engine.graph_build import MEASURE_ROWS
from huedb.engine.vector_index import HnswParams, build_graph, search_graph


def test_the_build_measures_recall_on_blocks_of_its_rows() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((3_000, 16)).astype(np.float32)
    keys = np.arange(10, 3_010, dtype=np.uint64)
    blocked = rc.ArrayVectors(keys, vectors, MEASURE_ROWS)
    starts = [start for start, _ in blocked.chunks()]
    assert starts == list(range(0, 3_000, MEASURE_ROWS)) and len(starts) > 1
    assert np.array_equal(np.concatenate([block for _, block in blocked.chunks()]), vectors)
    sample = rc.holdout_rows(len(keys))
    params = HnswParams(space="cosine", ef_construction=16)
    graph = build_graph(16, params, keys, vectors, skip=sample)
    whole = rc.calibrate(
        partial(search_graph, graph),
        "cosine",
        rc.ArrayVectors(keys, vectors),
        sample,
        1.01,
        [12, 24],
    )
    parts = rc.calibrate(partial(search_graph, graph), "cosine", blocked, sample, 1.01, [12, 24])
    assert (parts.ef_search, parts.recall) == (whole.ef_search, whole.recall)
    assert np.array_equal(blocked.rows(sample), vectors[sample])
