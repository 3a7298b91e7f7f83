"""`python -m bench search`: hybrid search (dense + BM25) in huedb, against `bm25s`.

Per size, on a seeded corpus of real-looking text with 384-d vectors (`bench/search_data.py`),
in one run on the embedded persistent client:

- ingest: `add` (batches of `--batch`, ids, embeddings and documents) into a collection with
  a dense index only, then into one whose schema fills a BM25 sparse key from `#document`
  (huedb's `ChromaBm25EmbeddingFunction`): docs/s of both and their ratio;
- dense `Knn`, sparse BM25 `Knn` and `Rrf(dense, BM25)` through `collection.search`, and
  `bm25s`'s `retrieve` on the same terms (huedb's tokeniser, stemmer and hashing) with the
  same BM25 (Chroma's term weight, Lucene's IDF, the same k1, b and average length), one
  call at a time, query by query over the cases (in a seeded random order at each query),
  after warm-up: p50/p99; BM25 and
  bm25s top-k agreement with a brute-force float64 scan, dense recall against exact cosine,
  and the fused list against an RRF of the two lists.

Targets of issue 16 (acceptance 6, at 100k): BM25 Knn p50 <= 2x bm25s's at top-10 agreement
>= 0.99; hybrid RRF p50 <= dense p50 + BM25 p50 + 1 ms; BM25 ingest >= 0.5x dense-only ingest.
Example: python -m bench search --sizes 20000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import _fmt, machine_info
from bench.search_data import (
    Corpus,
    CorpusSpec,
    exact_dense_top,
    exact_top,
    index_stored_vectors,
    make_corpus,
)
from bench.search_huedb import (
    RRF_DEFAULT_RANK,
    RRF_K,
    STORED_SAMPLE,
    Queries,
    bm25_function,
    build_queries,
    hybrid_collection,
    interleaved,
    latency_figures,
    log,
    mean_agreement,
    rrf_agreement,
    searcher,
)
from huedb.bm25.embedding_function import DEFAULT_B, DEFAULT_K

RESULTS = Path(__file__).resolve().parent / "results"
# Chroma's BM25 in bm25s's terms: its term weight tf*(k1+1)/(tf + k1*(1-b+b*len/avg)) is
# ATIRE's, its IDF ln(1 + (N - n_t + 0.5)/(n_t + 0.5)) Lucene's; k1 and b are Chroma's.
BM25S_SETTINGS = {"k1": DEFAULT_K, "b": DEFAULT_B, "method": "atire", "idf_method": "lucene"}
# bm25s retrieves with numpy, or with its faster numba backend when numba is installed (it is
# not a dependency): both run when they can, and the first target uses the fastest.
BM25S_BACKENDS = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") else [])
BM25S_CASES = {"numpy": "bm25s", "numba": "bm25s_numba"}
# Figures only some runs have (the numba backend), shown after FIGURES when present.
OPTIONAL_FIGURES = [
    ("bm25s_numba_index_s", "bm25s index build (numba backend)", "s"),
    ("bm25s_numba_p50_ms", "bm25s retrieve p50 (numba backend, 1 query)", "ms"),
    ("bm25s_numba_p99_ms", "bm25s retrieve p99 (numba backend, 1 query)", "ms"),
    ("bm25s_numba_agreement", "bm25s (numba) top-k agreement vs brute-force scan", ""),
]


# -- bm25s ----------------------------------------------------------------------------------


def bm25s_searcher(
    corpus: Corpus, queries: Queries, k: int, backend: str
) -> tuple[Callable[[list[int]], list[int]], list[list[int]], float]:
    """bm25s (its retrieval `backend`) indexed on the corpus's term ids: (retrieve one
    query's term ids -> document indices, every query's term ids, index build seconds)."""
    import bm25s

    vocabulary: dict[int, int] = {}
    for terms in corpus.doc_terms:
        for t in terms:
            vocabulary.setdefault(t, len(vocabulary))
    token_ids = [[vocabulary[t] for t in terms] for terms in corpus.doc_terms]
    vocab_dict = {str(t): i for t, i in vocabulary.items()}
    retriever = bm25s.BM25(**BM25S_SETTINGS, backend=backend)
    t0 = time.perf_counter()
    retriever.index((token_ids, vocab_dict), show_progress=False)
    index_s = time.perf_counter() - t0
    query_ids = [
        [vocabulary[t] for t in sorted(w) if t in vocabulary] for w in queries.sparse_weights
    ]

    def run(ids: list[int]) -> list[int]:
        docs, scores = retriever.retrieve([ids], k=k, show_progress=False, n_threads=0)
        return [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    return run, query_ids, index_s


# -- one size -------------------------------------------------------------------------------


FIGURES = [
    ("dense_ingest_docs_per_s", "ingest, dense only (add with embeddings + documents)", "docs/s"),
    ("bm25_ingest_docs_per_s", "ingest, dense + BM25 auto-embedding", "docs/s"),
    ("ingest_ratio", "ingest ratio BM25 / dense only", ""),
    ("dense_ingest_s", "ingest time, dense only", "s"),
    ("bm25_ingest_s", "ingest time, dense + BM25", "s"),
    ("bm25_embed_docs_per_s", "BM25 function alone (client side, cold stems)", "docs/s"),
    ("index_ready_s", "dense index ready after ingest (first query + build)", "s"),
    ("dense_p50_ms", "dense Knn p50", "ms"),
    ("dense_p99_ms", "dense Knn p99", "ms"),
    ("dense_recall", "dense Knn recall@k vs exact cosine", ""),
    ("bm25_first_ms", "BM25 Knn first query (cold)", "ms"),
    ("bm25_p50_ms", "BM25 Knn p50", "ms"),
    ("bm25_p99_ms", "BM25 Knn p99", "ms"),
    ("bm25_agreement", "BM25 Knn top-k agreement vs brute-force scan", ""),
    ("hybrid_p50_ms", "RRF(dense, BM25) p50", "ms"),
    ("hybrid_p99_ms", "RRF(dense, BM25) p99", "ms"),
    ("hybrid_agreement", "RRF top-k vs RRF of the two Knn lists", ""),
    ("bm25s_index_s", "bm25s index build (numpy backend)", "s"),
    ("bm25s_p50_ms", "bm25s retrieve p50 (numpy backend, 1 query)", "ms"),
    ("bm25s_p99_ms", "bm25s retrieve p99 (numpy backend, 1 query)", "ms"),
    ("bm25s_agreement", "bm25s top-k agreement vs brute-force scan", ""),
    ("bm25_over_bm25s", "BM25 Knn p50 / fastest bm25s p50", ""),
    ("dense_disk_bytes_per_doc", "disk bytes per doc, dense only", "B"),
    ("bm25_disk_bytes_per_doc", "disk bytes per doc, dense + BM25", "B"),
]


def targets(f: dict[str, float], fastest: str) -> list[dict[str, Any]]:
    """The three targets of issue 16, acceptance 6."""
    speed = f["bm25_over_bm25s"]
    sums = f["hybrid_p50_ms"] - f["dense_p50_ms"] - f["bm25_p50_ms"]
    return [
        {
            "label": "BM25 Knn p50 <= 2x bm25s p50 at top-10 agreement >= 0.99",
            "value": f"{speed:.2f}x ({f['bm25_p50_ms']:.3f} ms vs {fastest}'s "
            f"{f[f'{fastest}_p50_ms']:.3f} ms) at agreement {f['bm25_agreement']:.4f}",
            "met": speed <= 2.0 and f["bm25_agreement"] >= 0.99,
        },
        {
            "label": "RRF p50 <= dense p50 + BM25 p50 + 1 ms",
            "value": f"{f['hybrid_p50_ms']:.2f} ms vs {f['dense_p50_ms'] + f['bm25_p50_ms']:.2f}"
            f" + 1 ms ({sums:+.2f} ms)",
            "met": sums <= 1.0,
        },
        {
            "label": "ingest with BM25 auto-embedding >= 0.5x dense-only ingest",
            "value": f"{f['ingest_ratio']:.2f}x",
            "met": f["ingest_ratio"] >= 0.5,
        },
    ]


def run_size(spec: CorpusSpec, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Everything for one corpus size."""
    started = time.perf_counter()
    k = args.k
    log(f"n={spec.n}: generating the corpus")
    t0 = time.perf_counter()
    corpus = make_corpus(spec)
    index_stored_vectors(corpus)
    generate_s = time.perf_counter() - t0
    log(f"n={spec.n}: corpus in {generate_s:.1f} s, avg {corpus.avg_doc_length:.1f} terms/doc")
    bm25 = bm25_function(corpus)
    queries = build_queries(corpus, bm25, k)
    measured = slice(spec.warmup, None)
    exact = [exact_top(corpus, w, k) for w in queries.sparse_weights[measured]]
    dense_truth = exact_dense_top(corpus, k)[measured]

    f: dict[str, float] = {}
    details: dict[str, Any] = {"generate_s": generate_s}
    root = Path(tempfile.mkdtemp(prefix="huedb-bench-search-", dir=workdir))
    try:
        options = (args.batch, args.http)
        with hybrid_collection(corpus, bm25, root, options, f, details) as collection:
            bm25s_cases = {}
            for backend in BM25S_BACKENDS:
                log(f"n={spec.n}: bm25s index ({backend} backend)")
                name = BM25S_CASES[backend]
                run_b, items, f[f"{name}_index_s"] = bm25s_searcher(corpus, queries, k, backend)
                bm25s_cases[name] = (run_b, items)
            run = searcher(collection)
            log(f"n={spec.n}: dense Knn, BM25 Knn, RRF and bm25s, query by query")
            timings = interleaved(
                {
                    "dense": (run, queries.dense),
                    "bm25": (run, queries.sparse),
                    "hybrid": (run, queries.hybrid),
                    **bm25s_cases,
                },
                spec.warmup,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, t in timings.items():
        f |= latency_figures(name, t.latencies)
    f["bm25_first_ms"] = timings["bm25"].first * 1000
    dense, sparse = timings["dense"].results, timings["bm25"].results
    hits = [len(set(r) & t) / k for r, t in zip(dense, dense_truth, strict=True)]
    f["dense_recall"] = float(np.mean(hits))
    f["bm25_agreement"] = mean_agreement(sparse, exact, k)
    for name in bm25s_cases:
        f[f"{name}_agreement"] = mean_agreement(timings[name].results, exact, k)
    lists = zip(dense, sparse, timings["hybrid"].results, strict=True)
    f["hybrid_agreement"] = float(np.mean([rrf_agreement(d, s, h, k) for d, s, h in lists]))
    fastest = min(bm25s_cases, key=lambda name: f[f"{name}_p50_ms"])
    f["bm25s_fastest_p50_ms"] = f[f"{fastest}_p50_ms"]
    f["bm25_over_bm25s"] = f["bm25_p50_ms"] / f[f"{fastest}_p50_ms"]

    return {
        "command": "search",
        "data": {
            "n": spec.n,
            "dim": spec.dim,
            "vocabulary": spec.vocabulary,
            "topics": spec.topics,
            "queries": spec.queries,
            "warmup": spec.warmup,
            "seed": spec.seed,
            "k": k,
            "batch": args.batch,
            "avg_doc_length_terms": corpus.avg_doc_length,
            "avg_doc_words": float(np.mean([len(d.split()) for d in corpus.documents])),
            "stored_entries": len(corpus.term),
            "distinct_terms": len(corpus.doc_freq),
            "mean_query_terms": float(np.mean([len(w) for w in queries.sparse_weights])),
        },
        "settings": {
            "bm25": bm25.get_config(),
            "bm25s": BM25S_SETTINGS | {"backends": BM25S_BACKENDS, "fastest": fastest},
            "rrf": {"k": RRF_K, "default_rank": RRF_DEFAULT_RANK, "knn_limit": k},
            "client": "huedb.HttpClient to huedb run" if args.http else "huedb.PersistentClient",
            # huedb scores sparse searches with numba's compiled loop when numba is installed
            # (engine/sparse_kernel.py), else with numpy.
            "huedb_scoring": "numba" if importlib.util.find_spec("numba") else "numpy",
        },
        "figures": f,
        "targets": targets(f, fastest),
        "details": details,
        "elapsed_s": time.perf_counter() - started,
    }


# -- report ---------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    """The table of figures and the targets."""
    d = report["data"]
    lines = [
        f"search benchmark: n={d['n']} dim={d['dim']} k={d['k']} queries={d['queries']} "
        f"(+{d['warmup']} warm-up) seed={d['seed']}; {d['avg_doc_words']:.0f} words and "
        f"{d['avg_doc_length_terms']:.1f} BM25 terms per doc, {d['distinct_terms']:,} terms; "
        f"{report['elapsed_s']:.0f} s",
        f"huedb through {report['settings']['client']}, scoring sparse searches with "
        f"{report['settings'].get('huedb_scoring', 'numpy')}; bm25s backends "
        f"{', '.join(report['settings']['bm25s']['backends'])} (the target uses the fastest)",
        "",
    ]
    rows = [["figure", "unit", "value"]]
    present = [row for row in OPTIONAL_FIGURES if row[0] in report["figures"]]
    for key, label, unit in FIGURES + present:
        rows.append([label, unit, _fmt(report["figures"].get(key))])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for j, r in enumerate(rows):
        lines.append(f"{r[0].ljust(widths[0])} | {r[1].rjust(widths[1])} | {r[2].rjust(widths[2])}")
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    lines += ["", f"targets (issue 16, acceptance 6; they apply at n=100,000), at n={d['n']}:"]
    for t in report["targets"]:
        lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {t['label']}: {t['value']}")
    bad = report["details"]["stored_vectors_differing"]
    if bad:
        lines.append(
            f"problem: {bad} of {STORED_SAMPLE} stored BM25 vectors differ from the scan's"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import parse_sizes

    parser = argparse.ArgumentParser(
        prog="python -m bench search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="100000", help="comma-separated doc counts")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200, help="measured queries per case")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up queries per case")
    parser.add_argument("--k", type=int, default=10, help="top-k of every search (default 10)")
    parser.add_argument("--batch", type=int, default=1000, help="records per add")
    parser.add_argument("--vocabulary", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where temp dirs go")
    parser.add_argument(
        "--http",
        action="store_true",
        help="run huedb's side through huedb.HttpClient against `huedb run` on loopback",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where search-<size>.json goes"
    )
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    if args.queries < 1 or args.warmup < 1:
        parser.error("--queries and --warmup must be at least 1")

    machine = machine_info()
    for dist in ("bm25s", "snowballstemmer", "mmh3", "numba"):
        try:
            machine["versions"][dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            machine["versions"][dist] = None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        if n < args.k:
            parser.error(f"size {n} is below k={args.k}")
        spec = CorpusSpec(
            n=n,
            dim=args.dim,
            vocabulary=args.vocabulary,
            topics=args.topics,
            queries=args.queries,
            warmup=args.warmup,
            seed=args.seed,
        )
        report = run_size(spec, args, args.workdir or Path(tempfile.gettempdir()))
        machine["loadavg_end"] = list(os.getloadavg())
        report["machine"] = machine
        out = args.out_dir / f"search-{n}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(format_report(report))
        print()
        print(f"results: {out}")
    return 0
