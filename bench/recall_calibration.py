"""What the recall target's measurement adds to a graph build (issue 18).

`python -m bench.recall_calibration [--size N]` builds huedb's graph over the core
benchmark's data (`bench.core.make_dataset`: Gaussian clusters, 384 dims, cosine) the way
the background build does with a recall target: the held-out sample left out, the
measurement, then the sample added. It prints and writes to
`bench/results/recall-calibration-<n>.json` the build and measurement seconds, the ef chosen
with the recall the measurement saw, and the recall@10 of the benchmark's own held-out
queries at the default and at the chosen ef (exact top 10 by numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import DataSpec, make_dataset
from huedb.engine import recall_calibration as rc
from huedb.engine.vector_index import HnswParams, build_graph, graph_input, search_graph

RESULTS = Path(__file__).parent / "results"


def _recall(graph: Any, vectors: np.ndarray, queries: np.ndarray, ef: int) -> float:
    """Mean recall@10 of `queries` through the graph (14 candidates re-ranked exactly)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    asked = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(asked @ unit.T), axis=1)[:, :10]
    found, _ = search_graph(graph, queries, 14, ef)
    hits = []
    for i, row in enumerate(found.astype(np.int64)):
        best = row[np.argsort(1 - unit[row] @ asked[i])[:10]]
        hits.append(len(set(best.tolist()) & set(truth[i].tolist())) / 10)
    return float(np.mean(hits))


def measure(n: int) -> dict[str, Any]:
    """Build, measure and add the sample back; the figures of the run."""
    data = make_dataset(DataSpec(n=n, dim=384, queries=200))
    vectors, keys = data.vectors, np.arange(n, dtype=np.uint64)
    params = HnswParams(space="cosine")
    held = rc.holdout_rows(n)
    started = time.perf_counter()
    graph = build_graph(384, params, keys, vectors, skip=held)
    built = time.perf_counter()
    source = rc.ArrayVectors(keys, vectors)
    found = rc.calibrate(
        partial(search_graph, graph),
        "cosine",
        source,
        held,
        0.95,
        rc.ladder(params.ef_search, False),
    )
    measured = time.perf_counter()
    graph.add(keys[held], graph_input("cosine", vectors[held]))
    added = time.perf_counter()
    return {
        "n": n,
        "dim": 384,
        "build_s": round(built - started, 2),
        "measurement_s": round(measured - built, 2),
        "add_sample_s": round(added - measured, 3),
        "chosen_ef": found.ef_search,
        "measured_recall": round(found.recall, 4),
        "queries_recall_default_ef": _recall(graph, vectors, data.queries, params.ef_search),
        "queries_recall_chosen_ef": _recall(graph, vectors, data.queries, found.ef_search),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    figures = measure(parser.parse_args().size)
    print(json.dumps(figures, indent=1))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"recall-calibration-{figures['n']}.json"
    out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
