"""A fork and a rename change their database's catalog: on PostgreSQL they take the
database's lock before the collection's, as every other catalog change does (review,
2026-12-08). A fork that locked only its source's row raced `delete_database`, which then
deleted the fork's collection row but left its records for good; and a `get_or_create` of
the fork's name failed with "already exists" instead of returning it.

Each race is forced: another connection holds a row the fork needs, uncommitted, so the
fork waits inside its transaction while the other call starts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg

import huedb


def _settings(pg_url: str) -> huedb.Settings:
    return huedb.Settings(huedb_store=pg_url)


def _run(target: Any, out: dict[str, str], key: str) -> threading.Thread:
    def call() -> None:
        try:
            out[key] = f"ok: {target()}"
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            out[key] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_fork_racing_delete_database_leaves_no_records(pg_url: str, tmp_path: Path) -> None:
    huedb.AdminClient(_settings(pg_url)).create_database("dbone")
    node_a = huedb.PersistentClient(
        path=tmp_path / "a", settings=_settings(pg_url), database="dbone"
    )
    source = node_a.create_collection("src", embedding_function=None)
    source.add(ids=[f"r{i}" for i in range(50)], embeddings=[[float(i), 1.0] for i in range(50)])
    out: dict[str, str] = {}
    with psycopg.connect(pg_url) as blocker:  # holds the fork's name, uncommitted
        db_id = blocker.execute("SELECT id FROM databases WHERE name = 'dbone'").fetchone()[0]
        blocker.execute("INSERT INTO catalog_names VALUES (%s, 'forked', -1, false)", (db_id,))
        fork = _run(lambda: source.fork("forked").name, out, "fork")
        time.sleep(1.0)
        drop = _run(
            lambda: huedb.AdminClient(_settings(pg_url)).delete_database("dbone"), out, "drop"
        )
        time.sleep(1.0)
        blocker.rollback()
    fork.join(60)
    drop.join(60)
    assert out["drop"].startswith("ok"), out
    with psycopg.connect(pg_url) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM records r WHERE NOT EXISTS "
            "(SELECT 1 FROM collections c WHERE c.cid = r.cid)"
        ).fetchone()[0]
        left = conn.execute("SELECT count(*) FROM collections").fetchone()[0]
    assert (orphans, left) == (0, 0), out
    node_a.close()


def test_get_or_create_of_a_name_a_fork_is_taking_returns_the_fork(
    pg_url: str, tmp_path: Path
) -> None:
    node_a = huedb.PersistentClient(path=tmp_path / "a", settings=_settings(pg_url))
    node_b = huedb.PersistentClient(path=tmp_path / "b", settings=_settings(pg_url))
    source = node_a.create_collection("src", embedding_function=None)
    source.add(ids=["r1", "r2"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
    source.fork("first-fork")  # creates the source's lineage row
    out: dict[str, str] = {}
    with psycopg.connect(pg_url) as blocker:  # the fork waits on it, its name inserted
        blocker.execute(
            "SELECT 1 FROM huedb_meta WHERE key = %s FOR UPDATE", (f"fork_edges:{source.id}",)
        )
        fork = _run(lambda: source.fork("target").name, out, "fork")
        time.sleep(1.0)
        made = _run(
            lambda: node_b.get_or_create_collection("target", embedding_function=None).count(),
            out,
            "get_or_create",
        )
        time.sleep(1.0)
        blocker.commit()
    fork.join(60)
    made.join(60)
    assert out == {"fork": "ok: target", "get_or_create": "ok: 2"}, out
    node_a.close()
    node_b.close()
