"""Values PostgreSQL's btree indexes cannot hold whole, and filters of many terms (review,
2026-12-08): each was a 503 "PostgreSQL is unavailable (connection failed)", which also
marks a node down behind a proxy retrying 503s.

- A metadata string of ~3 KB (LlamaIndex keeps a node's JSON in metadata) is stored and
  filtered as on SQLite: strings of 256 characters or more are indexed by their MD5.
- An id or a metadata key that long is an InvalidArgumentError naming PostgreSQL's limit.
- A filter of 17,000 terms (the embedded limit is 20,000) binds 2-4 parameters a term,
  under libpq's 65,535 (more is a 422 naming it).
- Older stores' whole-string index is dropped when a newer huedb opens them.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import huedb
from huedb.engine.postgres_store.schema import STRING_PREFIX
from huedb.errors import InvalidArgumentError


def _text(seed: int, length: int) -> str:
    rnd = random.Random(seed)
    return "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(length))


@pytest.fixture
def clients(pg_url: str, tmp_path: Path) -> Iterator[dict[str, huedb.ClientAPI]]:
    made = {
        "sqlite": huedb.PersistentClient(path=tmp_path / "sqlite"),
        "postgresql": huedb.PersistentClient(
            path=tmp_path / "node", settings=huedb.Settings(huedb_store=pg_url)
        ),
    }
    yield made
    for client in made.values():
        client.close()


def test_long_metadata_strings_are_stored_and_filtered_as_on_sqlite(
    clients: dict[str, huedb.ClientAPI],
) -> None:
    long_text = _text(7, 3_000)
    same_prefix = long_text[:STRING_PREFIX] + "different tail"
    edge = long_text[: STRING_PREFIX - 1]  # the longest value indexed whole
    values = [long_text, same_prefix, long_text[:STRING_PREFIX], "short", long_text + "x", edge]
    filters = [
        {"text": long_text},
        {"text": same_prefix},
        {"text": long_text[:STRING_PREFIX]},
        {"text": edge},
        {"text": {"$in": [edge, long_text[:STRING_PREFIX], "absent"]}},
        {"text": {"$ne": long_text}},
        {"text": {"$in": [long_text, "short"]}},
        {"text": {"$nin": [same_prefix, long_text + "x"]}},
        {"tags": {"$contains": long_text}},
        {"$or": [{"text": "short"}, {"text": long_text + "x"}]},
    ]
    answers = {}
    for name, client in clients.items():
        col = client.create_collection("long-values")
        col.add(
            ids=[f"r{i}" for i in range(len(values))],
            embeddings=[[1.0, float(i)] for i in range(len(values))],
            metadatas=[{"text": v, "tags": [v, "t"]} for v in values],
        )
        answers[name] = [sorted(col.get(where=where)["ids"]) for where in filters]
        assert col.get(ids=["r0"])["metadatas"][0]["text"] == long_text
    assert answers["postgresql"] == answers["sqlite"]
    assert answers["sqlite"][0] == ["r0"] and answers["sqlite"][1] == ["r1"]


@pytest.mark.parametrize("what", ["id", "metadata key"])
def test_an_id_or_key_past_the_index_limit_is_an_invalid_argument(
    clients: dict[str, huedb.ClientAPI], what: str
) -> None:
    long_text = _text(8, 3_000)
    record = {"ids": [long_text]} if what == "id" else {"ids": ["a"], "metadatas": [{long_text: 1}]}
    col = clients["postgresql"].create_collection("too-long")
    with pytest.raises(InvalidArgumentError, match="past one of PostgreSQL's limits"):
        col.add(embeddings=[[1.0, 2.0]], **record)
    assert col.count() == 0


def test_a_filter_of_17000_terms_is_answered(clients: dict[str, huedb.ClientAPI]) -> None:
    where = {"$or": [{"n": i} for i in range(17_000)]}
    got = {}
    for name, client in clients.items():
        col = client.create_collection("many-terms")
        col.add(
            ids=[f"i{i}" for i in range(5)],
            embeddings=[[1.0, float(i)] for i in range(5)],
            metadatas=[{"n": i} for i in range(5)],
        )
        got[name] = sorted(col.get(where=where)["ids"])
    assert got["postgresql"] == got["sqlite"] == [f"i{i}" for i in range(5)]


@pytest.mark.parametrize("limit", [2**32, 2**63])
def test_a_delete_limit_beyond_u32_is_chromadbs_overflow_error_on_both_stores(
    clients: dict[str, huedb.ClientAPI], limit: int
) -> None:
    """Was psycopg's NumericValueOutOfRange on PostgreSQL, sqlite3's OverflowError
    ("too large to convert to SQLite INTEGER") on SQLite, and at 2**32 a delete."""
    for client in clients.values():
        col = client.create_collection("big-limit")
        col.add(ids=["a"], embeddings=[[1.0, 2.0]], metadatas=[{"k": 1}])
        with pytest.raises(OverflowError, match="out of range integral type conversion"):
            col.delete(where={"k": 1}, limit=limit)
        assert col.count() == 1


def test_an_older_stores_whole_string_index_is_replaced(pg_url: str, tmp_path: Path) -> None:
    def node() -> huedb.ClientAPI:
        return huedb.PersistentClient(
            path=tmp_path / "node", settings=huedb.Settings(huedb_store=pg_url)
        )

    node().close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as huedb before 2026-12-08
        conn.execute("DROP INDEX record_meta_short_strings")
        conn.execute("DROP INDEX record_meta_long_strings")
        conn.execute(
            "CREATE INDEX record_meta_strings ON record_meta (cid, name, is_array, txt, key) "
            "WHERE txt IS NOT NULL"
        )
        conn.execute("UPDATE huedb_meta SET value = 'older' WHERE key = 'schema_digest'")
    huedb.api.client.clear_system_cache()
    client = node()
    client.create_collection("after").add(
        ids=["a"], embeddings=[[1.0, 2.0]], metadatas=[{"text": _text(9, 3_000)}]
    )
    client.close()
    with psycopg.connect(pg_url) as conn:
        names = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
    assert {"record_meta_short_strings", "record_meta_long_strings"} <= names
    assert "record_meta_strings" not in names
