"""The huedb side of `python -m bench search`: collections, ingest and timed searches.

`hybrid_collection` ingests, on the embedded persistent client (or a `huedb run` server),
a dense-only collection and one whose schema fills a BM25 sparse key from `#document`;
`build_queries` makes the dense `Knn`, BM25 `Knn` and `Rrf` searches, `interleaved` times
them (and bm25s) one call at a time, and the agreement functions check their rankings.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import disk_usage
from bench.search_data import Corpus, ExactTop, agreement, bm25_weights, doc_index
from huedb.bm25.embedding_function import DEFAULT_B, DEFAULT_K

SPARSE_KEY = "bm25"
RRF_DEFAULT_RANK = 1000  # rank of a record missing from one list (the docs' recipe)
RRF_K = 60
STORED_SAMPLE = 200
ORDER_SEED = 16  # the cases' order at each query (`interleaved`)


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def latency_figures(prefix: str, seconds: list[float]) -> dict[str, float]:
    """p50/p99/mean in ms of measured latencies."""
    ms = np.asarray(seconds) * 1000
    return {
        f"{prefix}_p50_ms": float(np.percentile(ms, 50)),
        f"{prefix}_p99_ms": float(np.percentile(ms, 99)),
        f"{prefix}_mean_ms": float(np.mean(ms)),
    }


def mean_agreement(found: list[list[int]], exact: list[ExactTop], k: int) -> float:
    """Mean top-k agreement over the measured queries."""
    return float(np.mean([agreement(r, e, k) for r, e in zip(found, exact, strict=True)]))


def bm25_function(corpus: Corpus) -> Any:
    """huedb's BM25 function with the corpus's average length in terms (as bm25s uses)."""
    from huedb.embedding_functions import ChromaBm25EmbeddingFunction

    return ChromaBm25EmbeddingFunction(avg_doc_length=corpus.avg_doc_length)


def make_schema(bm25: Any | None) -> Any:
    """Cosine dense index; with `bm25`, a BM25 sparse index on `SPARSE_KEY` from `#document`."""
    import huedb

    schema = huedb.Schema().create_index(config=huedb.VectorIndexConfig(space="cosine"))
    if bm25 is None:
        return schema
    return schema.create_index(
        config=huedb.SparseVectorIndexConfig(
            embedding_function=bm25, source_key=huedb.K.DOCUMENT, bm25=True
        ),
        key=SPARSE_KEY,
    )


def ingest(collections: dict[str, Any], corpus: Corpus, batch: int) -> dict[str, Any]:
    """`add` every document in batches to each collection, batch by batch in turn over the
    collections (a change of load weighs on all alike); the stem cache is emptied first, so
    a BM25 collection pays its stemming as a fresh process would. Per collection: seconds,
    docs/s and the seconds of each batch."""
    from huedb.bm25.tokenizer import stem_and_hash

    stem_and_hash.cache_clear()
    ids = corpus.ids
    n = len(ids)
    times: dict[str, list[float]] = {name: [] for name in collections}
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        for name, collection in collections.items():
            t0 = time.perf_counter()
            collection.add(
                ids=ids[start:stop],
                embeddings=corpus.embeddings[start:stop],
                documents=corpus.documents[start:stop],
            )
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"seconds": sum(t), "docs_per_s": n / sum(t), "batch_seconds": t}
        for name, t in times.items()
    }


def embed_throughput(bm25: Any, corpus: Corpus, batch: int) -> float:
    """Docs/s of the BM25 function alone on the documents, from an empty stem cache: the
    client-side share of the BM25 ingest."""
    from huedb.bm25.tokenizer import stem_and_hash

    stem_and_hash.cache_clear()
    t0 = time.perf_counter()
    for start in range(0, len(corpus.documents), batch):
        bm25(corpus.documents[start : start + batch])
    return len(corpus.documents) / (time.perf_counter() - t0)


def wait_until_indexed(collection: Any, query: list[float]) -> float:
    """First dense query, then until the dense index reports done: seconds."""
    from huedb import Knn, Search

    t0 = time.perf_counter()
    collection.search(Search().rank(Knn(query=query, limit=1)).limit(1))
    while collection.get_indexing_status().op_indexing_progress < 1.0:
        time.sleep(0.05)
    return time.perf_counter() - t0


def stored_vectors_match(collection: Any, corpus: Corpus, rng: np.random.Generator) -> int:
    """How many of a sample of stored BM25 vectors differ from the bench's own weights
    (indices equal, values equal in float32): 0 when huedb stored what the scan assumes."""
    sample = sorted(rng.choice(len(corpus.documents), STORED_SAMPLE, replace=False).tolist())
    got = collection.get(ids=[corpus.ids[i] for i in sample], include=["metadatas"])
    bad = 0
    for record_id, metadata in zip(got["ids"], got["metadatas"], strict=True):
        terms = corpus.doc_terms[doc_index(record_id)]
        weights = bm25_weights(terms, DEFAULT_K, DEFAULT_B, corpus.avg_doc_length)
        vector = metadata[SPARSE_KEY]
        expected = sorted(weights)
        values = np.asarray([weights[t] for t in expected], dtype=np.float32)
        if vector.indices != expected or not np.array_equal(
            np.asarray(vector.values, dtype=np.float32), values
        ):
            bad += 1
    return bad


@dataclass
class Queries:
    """The search objects of every query (built before timing)."""

    dense: list[Any]
    sparse: list[Any]
    hybrid: list[Any]
    sparse_weights: list[dict[int, float]]
    bm25: Any  # the BM25 function that embedded them (and fills the collection's key)
    k: int


def build_queries(corpus: Corpus, bm25: Any, k: int) -> Queries:
    """Dense, BM25 and RRF searches for every query (warm-up ones first)."""
    from huedb import K, Knn, Rrf, Search

    dense, sparse, hybrid, weights = [], [], [], []
    for text, vector in zip(corpus.query_texts, corpus.query_embeddings, strict=True):
        dense_q = vector.tolist()
        sparse_q = bm25.embed_query([text])[0]
        weights.append(
            {
                i: float(np.float32(v))
                for i, v in zip(sparse_q.indices, sparse_q.values, strict=True)
            }
        )
        dense.append(Search().rank(Knn(query=dense_q, limit=k)).limit(k).select(K.SCORE))
        sparse.append(
            Search().rank(Knn(query=sparse_q, key=SPARSE_KEY, limit=k)).limit(k).select(K.SCORE)
        )
        fused = Rrf(
            [
                Knn(query=dense_q, limit=k, return_rank=True, default=RRF_DEFAULT_RANK),
                Knn(
                    query=sparse_q,
                    key=SPARSE_KEY,
                    limit=k,
                    return_rank=True,
                    default=RRF_DEFAULT_RANK,
                ),
            ],
            k=RRF_K,
        )
        hybrid.append(Search().rank(fused).limit(k).select(K.SCORE))
    return Queries(dense, sparse, hybrid, weights, bm25, k)


@dataclass
class Timings:
    """One case's measured latencies (s), its results (document indices in rank order) and
    the latency of its very first call (warm-up included)."""

    latencies: list[float]
    results: list[list[int]]
    first: float


def interleaved(cases: dict[str, tuple[Callable[[Any], list[int]], list[Any]]], warmup: int):
    """Time every case's items one call at a time, query by query in turn over the cases
    (query i of each case, then query i + 1), so a change of load on a shared machine
    weighs on every case alike; the first `warmup` queries are not measured. After the
    first query (in the given order: each case's first call is its cold one), the cases run
    in a new seeded random order at each query, so each follows every other about as often:
    a call runs faster after one that warmed the same code and data (bm25s's numba backend
    after its numpy backend, whose `retrieve` it shares) than after one that evicted them
    (a BM25 search after a dense one), and a fixed order credits that to the case."""
    out = {name: Timings([], [], math.nan) for name in cases}
    count = len(next(iter(cases.values()))[1])
    orders = random.Random(ORDER_SEED)
    for i in range(count):
        for name in orders.sample(list(cases), len(cases)) if i else cases:
            run, items = cases[name]
            t0 = time.perf_counter()
            found = run(items[i])
            elapsed = time.perf_counter() - t0
            timings = out[name]
            if i == 0:
                timings.first = elapsed
            if i >= warmup:
                timings.latencies.append(elapsed)
                timings.results.append(found)
    return out


def searcher(collection: Any) -> Callable[[Any], list[int]]:
    """One search -> document indices in rank order."""

    def run(search: Any) -> list[int]:
        return [doc_index(i) for i in collection.search(search)["ids"][0]]

    return run


def rrf_agreement(dense: list[int], sparse: list[int], found: list[int], k: int) -> float:
    """Share of the RRF top-k of the two lists (ranks from 0, missing = RRF_DEFAULT_RANK)
    that `found` holds; ties at the k-th score are interchangeable."""
    score: dict[int, float] = {}
    for ranked in (dense, sparse):
        for doc in set(dense) | set(sparse):
            rank = ranked.index(doc) if doc in ranked else RRF_DEFAULT_RANK
            score[doc] = score.get(doc, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(score, key=lambda d: -score[d])
    if not order:
        return 1.0 if not found else 0.0
    wanted = min(k, len(order))
    bound = score[order[wanted - 1]] * (1 - 1e-6)
    return min(sum(1 for d in found[:k] if score.get(d, -1.0) >= bound), wanted) / wanted


@contextlib.contextmanager
def open_client(path: Path, http: bool) -> Iterator[Any]:
    """A persistent client on `path`, or a client of `huedb run --path path` on loopback."""
    import huedb

    if not http:
        client = huedb.PersistentClient(path=str(path))
        try:
            yield client
        finally:
            client.close()
        return
    from tests.servers import huedb_server  # the test extra, as bench.cluster's nodes

    with huedb_server(path) as server:
        yield huedb.HttpClient(host=server.host, port=server.port)


@contextlib.contextmanager
def hybrid_collection(
    corpus: Corpus,
    bm25: Any,
    root: Path,
    options: tuple[int, bool],
    f: dict[str, float],
    details: dict[str, Any],
) -> Iterator[Any]:
    """Time the BM25 function alone, ingest a dense-only collection (then closed) and the
    hybrid one under `root` (`options`: batch size, HTTP or not), wait for the dense index
    and check a sample of stored BM25 vectors; yield the hybrid collection. Figures go to
    `f`, the rest to `details`."""
    batch, http = options
    n = corpus.spec.n
    dense_dir, bm25_dir = root / "dense", root / "bm25"
    log(f"n={n}: BM25 embedding alone")
    f["bm25_embed_docs_per_s"] = embed_throughput(bm25, corpus, batch)
    with open_client(bm25_dir, http) as client:
        with open_client(dense_dir, http) as dense_client:
            collections = {
                "dense": dense_client.create_collection(
                    "dense", schema=make_schema(None), embedding_function=None
                ),
                "bm25": client.create_collection(
                    "hybrid", schema=make_schema(bm25), embedding_function=None
                ),
            }
            log(f"n={n}: ingest, dense only and dense + BM25, batch by batch in turn")
            details["ingest"] = ingest(collections, corpus, batch)
        f["dense_disk_bytes_per_doc"] = disk_usage(dense_dir) / n
        for name in ("dense", "bm25"):
            f[f"{name}_ingest_docs_per_s"] = details["ingest"][name]["docs_per_s"]
            f[f"{name}_ingest_s"] = details["ingest"][name]["seconds"]
        f["ingest_ratio"] = f["bm25_ingest_docs_per_s"] / f["dense_ingest_docs_per_s"]
        col = collections["bm25"]
        log(f"n={n}: waiting for the dense index")
        f["index_ready_s"] = wait_until_indexed(col, corpus.query_embeddings[0].tolist())
        details["stored_vectors_differing"] = stored_vectors_match(
            col, corpus, np.random.default_rng(corpus.spec.seed + 1)
        )
        yield col
    f["bm25_disk_bytes_per_doc"] = disk_usage(bm25_dir) / n
