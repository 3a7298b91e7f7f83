"""Embedding-model versions: `reembed` builds a new collection from stored documents with a
new embedder (resumable; a run again catches up the source's changes), and `eval` compares
collections on labelled or unlabelled queries.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huedb.api.client import Client
from huedb.api.collection import Collection
from huedb.api.collection_config import embedding_function_identity
from huedb.api.collection_schema import (
    parse_schema,
    schema_from_configuration,
    sparse_embedding_targets,
    update_vector_indexes,
)
from huedb.engine.catalog import validate_name
from huedb.engine.engine import Engine
from huedb.errors import NotFoundError
from huedb.ops.collection_definition import create_like, differences, ef_search_chosen
from huedb.ops.pages import Page, collection_pages
from huedb.ops.progress import progress
from huedb.record_batch import URI_META_KEY
from huedb.sparse_vector import SparseVector

logger = logging.getLogger(__name__)

DEFAULT_MAX_RECALL_DROP = 0.02
# Query vectors per request: under a server's default max_query_embeddings (1,000).
QUERY_CHUNK = 500


def load_embedder(spec: str) -> Any:
    """`default` (the offline MiniLM) or `package.module:factory` returning an embedder."""
    if spec == "default":
        from huedb.embedding_functions import DefaultEmbeddingFunction

        return DefaultEmbeddingFunction()
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"embedder must be 'default' or 'module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load embedder {spec!r}: {exc}") from None
    if not callable(factory):
        raise ValueError(f"cannot load embedder {spec!r}: {attr} is a {type(factory).__name__}")
    try:
        embedder = factory()
    except Exception as exc:  # the factory's own failure, reported as a failed load
        raise ValueError(f"cannot load embedder {spec!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(embedder):
        raise ValueError(
            f"cannot load embedder {spec!r}: {attr}() returned a {type(embedder).__name__}, "
            "not an embedding function"
        )
    return embedder


@dataclass
class ReembedReport:
    """What a reembed run did."""

    source: str
    target: str
    embedded: int = 0
    already_present: int = 0
    without_document: int = 0
    updated: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        return (
            f"{self.source} -> {self.target}: embedded {self.embedded}, already present "
            f"{self.already_present}, metadata or uri updated {self.updated}, deleted "
            f"{self.deleted}, skipped without document {self.without_document}"
        )


@dataclass
class _PageChanges:
    """What one source page asks of the target."""

    embed: list[int] = field(default_factory=list)  # positions to embed: new or new document
    patch: list[int] = field(default_factory=list)  # same document, other metadata or uri
    stale: list[str] = field(default_factory=list)  # ids the target has, without a document now
    unchanged: int = 0
    without_document: int = 0


def reembed(
    client: Client,
    source: str,
    target: str,
    embedder: Any,
    batch_size: int = 256,
    show_progress: bool | None = None,
) -> ReembedReport:
    """Bring `target` to the documents of `source` embedded by `embedder`.

    A missing target is created like the source (`_create_target`), and only once every
    input is checked: the batch size, the embedder (callable), the target's name, the
    source, and the embedder's vectors for the first page (one per document), so a bad
    input leaves no target behind. Batches are capped at the client's maximum batch size.
    A run makes the target hold the source's records as one snapshot of the source read
    them: records missing from the target or whose document changed are embedded, records
    whose metadata or uri alone changed are patched, and target records whose id the source
    no longer has (or that lost their document) are deleted. So it is safe to interrupt and
    run again, nothing is embedded twice, and a run just before switching an alias catches
    up the writes made to the source meanwhile. Records without a document are not
    embedded. The source is read with `collection_pages`: one snapshot for a local store;
    over HTTP a concurrent delete that would skip live records stops the run with an error.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not callable(embedder):
        raise ValueError(f"the embedder must be callable, got a {type(embedder).__name__}")
    if source == target:
        raise ValueError(f"the target must be another collection than the source {source!r}")
    validate_name(target, "target")
    _refuse_served_target(client, target)
    batch_size = min(batch_size, client.get_max_batch_size())
    src = client.get_collection(source)
    try:
        dst: Collection | None = client.get_collection(target, embedding_function=embedder)
    except NotFoundError:
        dst = None  # created once the first page is embedded
    filled = _filled_keys(dst)
    report = ReembedReport(source, target)
    bar = progress(src.count(), f"reembed {source} -> {target}", enabled=show_progress)
    for page in _pages(src, batch_size):
        present = _target_rows(dst, page.ids)
        changes = _page_changes(page, present, filled)
        report.already_present += changes.unchanged
        report.without_document += changes.without_document
        docs = [page.documents[n] for n in changes.embed]
        vectors = _embed(embedder, docs) if docs else None
        if dst is None:
            dst = _create_target(client, src, target, embedder)
            filled = _filled_keys(dst)
        if vectors is not None:
            dst.upsert(
                ids=[page.ids[n] for n in changes.embed],
                embeddings=vectors,
                documents=docs,
                metadatas=[_metadata_patch(page, n, present, filled) for n in changes.embed],
                uris=[page.uris[n] for n in changes.embed],
            )
            report.embedded += len(changes.embed)
        if changes.patch:
            dst.update(
                ids=[page.ids[n] for n in changes.patch],
                metadatas=[_metadata_patch(page, n, present, filled) for n in changes.patch],
                uris=[page.uris[n] for n in changes.patch],
            )
            report.updated += len(changes.patch)
        if changes.stale:
            dst.delete(ids=changes.stale)
            report.deleted += len(changes.stale)
        bar.update(len(page.ids))
    bar.close()
    if dst is None:  # a source without records
        dst = _create_target(client, src, target, embedder)
    report.deleted += _delete_gone(src, dst, batch_size, show_progress)
    if report.without_document:
        logger.warning("%d records of %s have no document", report.without_document, source)
    return report


def _pages(collection: Collection, size: int) -> Iterable[Page]:
    """`collection_pages`, read in full first for an in-memory store, whose one connection
    cannot write the target while it holds the source's read snapshot."""
    pages = collection_pages(collection, size)
    engine = getattr(collection._client, "engine", None)
    return list(pages) if isinstance(engine, Engine) and engine.path is None else pages


def _target_rows(dst: Collection | None, ids: list[str]) -> dict[str, tuple]:
    """The target's (document, metadata, uri) of those of `ids` it holds."""
    if dst is None or not ids:
        return {}
    got = dst.get(ids=ids, include=["documents", "metadatas", "uris"])
    rows = zip(got["documents"], got["metadatas"], got["uris"], strict=True)
    return dict(zip(got["ids"], rows, strict=True))


def _refuse_served_target(client: Client, target: str) -> None:
    """A target an alias serves takes the applications' writes: a run would undo them
    (patch its records back to the source's, delete those the source lacks)."""
    aliases = client.list_aliases()
    serving = sorted(alias for alias, name in aliases.items() if name == target)
    if target in aliases or serving:
        through = f"alias {target!r}" if target in aliases else f"alias {serving[0]!r}"
        raise ValueError(
            f"the target {target!r} is served through {through}: a run would undo the "
            "writes made through it; switch the alias back to the source first, or reembed "
            "into a new collection"
        )


def _filled_keys(dst: Collection | None) -> frozenset[str]:
    """The metadata keys the target's schema fills itself (its sparse indexes with an
    embedding function, e.g. BM25 of the documents): never copied nor cleared."""
    if dst is None:
        return frozenset()
    targets = sparse_embedding_targets(dst.get_model().schema)
    return frozenset(key for key, _, _ in targets)


def _own(metadata: Any, filled: frozenset[str]) -> dict[str, Any]:
    """A record's metadata without the keys the target's schema fills."""
    return {k: v for k, v in (metadata or {}).items() if k not in filled}


def _typed(value: Any) -> Any:
    """A metadata value with its types, so `True`, `1` and `1.0` compare unequal as they
    are stored (Python's `==` finds them equal)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, SparseVector):
        return ("sparse", tuple(value.indices), tuple(value.values), tuple(value.labels or ()))
    return (type(value).__name__, value)


def _page_changes(page: Page, present: dict[str, tuple], filled: frozenset[str]) -> _PageChanges:
    changes = _PageChanges()
    for n, rid in enumerate(page.ids):
        document, uri = page.documents[n], page.uris[n]
        held = present.get(rid)
        if document is None:
            changes.without_document += 1
            if held is not None:
                changes.stale.append(rid)
        elif held is None or held[0] != document:
            changes.embed.append(n)
        elif held[2] != uri or _typed(_own(held[1], filled)) != _typed(
            _own(page.metadatas[n], filled)
        ):
            changes.patch.append(n)
        else:
            changes.unchanged += 1
    return changes


def _metadata_patch(page: Page, n: int, dst_rows: dict[str, tuple], filled: frozenset[str]) -> Any:
    """The metadata to write for record `n`: the source's (less the keys the target fills
    itself), plus None for each other key the target's record has that the source's lost,
    and a cleared uri when the source has none (`chroma:uri` None), so the target's record
    ends equal to the source's."""
    metadata = _own(page.metadatas[n], filled)
    old = dst_rows.get(page.ids[n])
    if old is not None:
        for key in _own(old[1], filled):
            metadata.setdefault(key, None)
        if page.uris[n] is None and old[2] is not None:
            metadata[URI_META_KEY] = None
    # A record with a uri and no metadata reads as {}, which a write refuses.
    return metadata or None


def _delete_gone(src: Collection, dst: Collection, size: int, show_progress: bool | None) -> int:
    """Delete the target's records whose id the source no longer has; how many."""
    gone: list[str] = []
    bar = progress(dst.count(), f"reembed: records deleted from {src.name}", enabled=show_progress)
    for page in _pages(dst, size):
        kept = set(src.get(ids=page.ids, include=[])["ids"])
        gone += [rid for rid in page.ids if rid not in kept]
        bar.update(len(page.ids))
    bar.close()
    for start in range(0, len(gone), size):
        dst.delete(ids=gone[start : start + size])
    return len(gone)


def _embed(embedder: Any, documents: list[str]) -> np.ndarray:
    """The embedder's vectors of `documents` as float32 rows, one per document (ValueError
    for anything else)."""
    output = embedder(documents)
    try:
        vectors = np.asarray(output, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the embedder did not return vectors: {exc}") from None
    if vectors.ndim != 2 or len(vectors) != len(documents):
        raise ValueError(
            f"the embedder returned an array of shape {vectors.shape} for {len(documents)} "
            "documents; expected one vector per document"
        )
    return vectors


def _create_target(client: Client, src: Collection, target: str, embedder: Any) -> Collection:
    """Create `target` with the source's definition (space, HNSW settings and whether
    `ef_search` was chosen, sparse and BM25 indexes with their functions, disabled inverted
    indexes, full-text search, collection metadata without legacy `hnsw:*` keys), the dense
    vector index's embedding function swapped for `embedder`. What could not be reproduced
    is logged as a warning."""
    model = src.get_model()
    if model.schema is not None:
        schema = parse_schema(model.schema)
    else:  # a server that reports no schema: the one its configuration implies
        schema = schema_from_configuration(model.configuration_json or {})
    schema = update_vector_indexes(schema, {}, embedding_function_identity(embedder))
    # The schema carries the settings of legacy keys; with them a schema cannot be given.
    metadata = {k: v for k, v in (src.metadata or {}).items() if not k.startswith("hnsw:")}
    created = create_like(client, target, metadata or None, schema, ef_search_chosen(src))
    for message in differences(client, created, schema):
        logger.warning(message)
    return client.get_collection(target, embedding_function=embedder)


@dataclass
class Query:
    """One evaluation query: its text and, when labelled, the ids that should come back."""

    text: str
    relevant: list[str] | None = None


def read_queries(path: Path) -> list[Query]:
    """JSON lines of {"query": str, "relevant": [ids]} ("relevant" optional)."""
    queries = []
    try:
        text_of_file = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for n, line in enumerate(text_of_file.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, relevant = row["query"], row.get("relevant")
        except (ValueError, KeyError, TypeError):
            raise ValueError(f'{path}:{n}: expected {{"query": ..., "relevant": [...]}}') from None
        if not isinstance(text, str) or (relevant is not None and not isinstance(relevant, list)):
            raise ValueError(f"{path}:{n}: query must be a string and relevant a list of ids")
        queries.append(Query(text, relevant))
    if not queries:
        raise ValueError(f"{path} holds no queries")
    return queries


@dataclass
class CollectionScore:
    """Retrieval quality of one collection."""

    collection: str
    recall_at_k: float | None = None
    mrr: float | None = None
    results: list[list[str]] = field(default_factory=list, repr=False)


@dataclass
class EvalReport:
    """Scores per collection, the baseline/candidate overlap, and the verdict."""

    k: int
    candidate: CollectionScore
    baseline: CollectionScore | None = None
    overlap_at_k: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        out = []
        for score in (self.candidate, self.baseline):
            if score is None:
                continue
            if score.recall_at_k is not None:
                out.append(
                    f"{score.collection}: recall@{self.k} {score.recall_at_k:.4f}, "
                    f"MRR {score.mrr:.4f}"
                )
        if self.overlap_at_k is not None:
            out.append(f"top-{self.k} overlap candidate/baseline: {self.overlap_at_k:.4f}")
        out += [f"FAIL: {f}" for f in self.failures]
        out.append("PASS" if self.passed else "candidate below threshold")
        return out


def score(collection: Collection, embedder: Any, queries: list[Query], k: int) -> CollectionScore:
    """Run every query; recall@k and MRR when the queries are labelled."""
    vectors = np.asarray(embedder([q.text for q in queries]), dtype=np.float32)
    results = [
        ids
        for start in range(0, len(vectors), QUERY_CHUNK)
        for ids in collection.query(
            query_embeddings=vectors[start : start + QUERY_CHUNK], n_results=k, include=[]
        )["ids"]
    ]
    result = CollectionScore(collection.name, results=results)
    labelled = [(q, r) for q, r in zip(queries, results, strict=True) if q.relevant]
    if labelled:
        recalls, ranks = [], []
        for q, got in labelled:
            relevant = set(q.relevant or [])
            recalls.append(len(relevant & set(got[:k])) / len(relevant))
            first = next((i for i, rid in enumerate(got[:k], 1) if rid in relevant), None)
            ranks.append(0.0 if first is None else 1.0 / first)
        result.recall_at_k = float(np.mean(recalls))
        result.mrr = float(np.mean(ranks))
    return result


def evaluate(
    client: Client,
    candidate: str,
    queries: list[Query],
    embedder: Any,
    baseline: str | None = None,
    baseline_embedder: Any = None,
    k: int = 10,
    min_recall: float | None = None,
    min_overlap: float | None = None,
    max_recall_drop: float = DEFAULT_MAX_RECALL_DROP,
) -> EvalReport:
    """Score the candidate (and baseline); record a failure for every threshold missed."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    report = EvalReport(k, score(client.get_collection(candidate), embedder, queries, k))
    cand = report.candidate
    if min_recall is not None and (cand.recall_at_k is None or cand.recall_at_k < min_recall):
        report.failures.append(f"recall@{k} {cand.recall_at_k} < {min_recall}")
    if baseline is None:
        return report
    base = score(client.get_collection(baseline), baseline_embedder or embedder, queries, k)
    report.baseline = base
    overlaps = [_overlap(a[:k], b[:k]) for a, b in zip(cand.results, base.results, strict=True)]
    report.overlap_at_k = float(np.mean(overlaps))
    if min_overlap is not None and report.overlap_at_k < min_overlap:
        report.failures.append(f"top-{k} overlap {report.overlap_at_k:.4f} < {min_overlap}")
    both = cand.recall_at_k is not None and base.recall_at_k is not None
    if both and cand.recall_at_k < base.recall_at_k - max_recall_drop:
        report.failures.append(
            f"recall@{k} {cand.recall_at_k:.4f} is more than {max_recall_drop} below the "
            f"baseline's {base.recall_at_k:.4f}"
        )
    return report


def _overlap(candidate: list[str], baseline: list[str]) -> float:
    """The share of the longer result list found in both (1.0 when both hold the same ids:
    a collection or filter with fewer than k matches is not a disagreement; two empty lists
    agree)."""
    longer = max(len(candidate), len(baseline))
    return 1.0 if longer == 0 else len(set(candidate) & set(baseline)) / longer
