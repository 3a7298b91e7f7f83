"""The SQLite document index (`documents_fts`, external content over `records.document`)
against a model: random adds, updates, upserts and deletes of records with and without
documents, then `$contains` (indexed: 3+ characters) and `$not_contains` must select exactly
the records whose document holds the text. `huedb compact` builds the index again: after it,
FTS5's own integrity check against `records` passes, and every deleted record's postings are
gone. The index never deletes a row it does not hold (a record without a document), which
would break FTS5's row count ("database disk image is malformed" on a later delete).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.engine import Engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.filters import trigram_query

ALPHABET = 'ab c"é'
IDS = [f"r{i}" for i in range(8)]
documents = st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=9))
id_sets = st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True)
ops = st.one_of(
    st.tuples(
        st.sampled_from(["add", "update", "upsert"]), id_sets, st.lists(documents, min_size=4)
    ),
    st.tuples(st.just("delete"), id_sets, st.just([])),
)
probes = st.lists(st.text(alphabet=ALPHABET, min_size=3, max_size=5), min_size=1, max_size=4)


def _apply(col: huedb.Collection, model: dict[str, str | None], op: tuple) -> None:
    """One write through the client, mirrored in the model (Chroma's rules: an add of an
    existing id is ignored, an update of a missing one too, a None document is unchanged
    on update and absent on insert; writes carry vectors, so None documents are allowed)."""
    kind, ids, docs = op
    if kind == "delete":
        col.delete(ids=ids)
        for i in ids:
            model.pop(i, None)
        return
    docs = docs[: len(ids)] + [None] * (len(ids) - len(docs))
    vectors = [[float(len(i)), 1.0] for i in ids]
    if kind == "add":
        fresh = [(i, d) for i, d in zip(ids, docs, strict=True) if i not in model]
        if fresh:
            col.add(
                ids=[i for i, _ in fresh],
                embeddings=vectors[: len(fresh)],
                documents=[d for _, d in fresh],
            )
            model.update(fresh)
        return
    if kind == "update":
        present = [(i, d) for i, d in zip(ids, docs, strict=True) if i in model]
        if present:  # with vectors: without them, Chroma embeds the new documents
            col.update(
                ids=[i for i, _ in present],
                embeddings=[[float(len(i)), 1.0] for i, _ in present],
                documents=[d for _, d in present],
            )
    else:
        col.upsert(ids=ids, embeddings=vectors, documents=docs)
        present = list(zip(ids, docs, strict=True))
    for i, d in present:
        if d is not None or i not in model:
            model[i] = d


def _check(col: huedb.Collection, model: dict[str, str | None], texts: list[str]) -> None:
    for text in texts:
        holding = {i for i, d in model.items() if d is not None and text in d}
        assert set(col.get(where_document={"$contains": text})["ids"]) == holding, text
        lacking = set(model) - holding
        assert set(col.get(where_document={"$not_contains": text})["ids"]) == lacking, text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=12), probes)
def test_contains_matches_the_model_then_compact_rebuilds(
    writes: list[tuple], texts: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        client = huedb.PersistentClient(path=data)
        col = client.create_collection("docs", embedding_function=None)
        other = client.create_collection("other", embedding_function=None)
        other.add(ids=["o1", "o2"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["abc", None])
        model: dict[str, str | None] = {}
        for op in writes:
            _apply(col, model, op)
            _check(col, model, texts)
        client.delete_collection(
            "other"
        )  # its rows leave the index, the one without a document too
        client.close()
        clear_system_cache()
        engine = Engine(data)
        try:
            engine.reclaim_space()
        finally:
            engine.close()
        with sqlite3.connect(data / DB_FILENAME) as conn:
            conn.execute(
                "INSERT INTO documents_fts (documents_fts, rank) VALUES ('integrity-check', 1)"
            )
            for text in texts:
                hits = {
                    r[0]
                    for r in conn.execute(
                        "SELECT r.id FROM documents_fts f JOIN records r ON r.key = f.rowid "
                        "WHERE documents_fts MATCH ?",
                        (trigram_query(text),),
                    )
                }
                indexed = conn.execute(
                    "SELECT count(*) FROM documents_fts WHERE documents_fts MATCH ?",
                    (trigram_query(text),),
                ).fetchone()[0]
                assert indexed == len(hits)  # no posting of a deleted record is left
                assert hits >= {i for i, d in model.items() if d is not None and text in d}
        conn.close()
        clear_system_cache()
        client = huedb.PersistentClient(path=data)
        _check(client.get_collection("docs", embedding_function=None), model, texts)
        client.close()
        clear_system_cache()


def test_trigram_query_covers_the_text() -> None:
    """Every third trigram and the last one, distinct, quotes doubled."""
    assert trigram_query("abc") == '"abc"'
    assert trigram_query("abcdefg") == '"abc" AND "def" AND "efg"'
    assert trigram_query('a"bcd"') == '"a""b" AND "cd"""'
    assert trigram_query("aaaaaa") == '"aaa"'
