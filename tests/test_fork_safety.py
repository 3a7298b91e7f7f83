"""A client opened before the process forks (multiprocessing's default on Linux, a
pre-forking server, Celery's prefork pool) keeps working in the parent and the children.

The child must not use the parent's SQLite connections or PostgreSQL sockets: there the
client opens the store afresh (`registry.engine_for_this_process`), while the parent goes
on with its own. Each child writes its own records and reads everyone's; the parent writes
between and after the children; a client opened afterwards finds every record."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from tests import stores
from tests.stores import StoreTarget

store = stores.store

CHILDREN = 4
PER_CHILD = 50
DIM = 8


# The collection handle the forked children inherit (a Pool pickles only the function).
_inherited: dict[str, Any] = {}


def _vector(n: int) -> list[float]:
    return [float(n), *([1.0] * (DIM - 1))]


def _child(number: int) -> tuple[int, list[str]]:
    col = _inherited["col"]
    ids = [f"child{number}-{i}" for i in range(PER_CHILD)]
    base = 1_000 * (number + 1)
    col.add(ids=ids, embeddings=[_vector(base + i) for i in range(PER_CHILD)])
    found = col.query(query_embeddings=[_vector(base)], n_results=1)["ids"][0]
    return col.count(), found + col.get(ids=["parent-0"])["ids"]


def test_clients_opened_before_a_fork_work_in_parent_and_children(
    store: StoreTarget, tmp_path: Path
) -> None:
    client = store.client(tmp_path / "data")
    col = client.create_collection("docs")
    col.add(ids=["parent-0"], embeddings=[_vector(0)], documents=["before the fork"])
    _inherited["col"] = col
    context = multiprocessing.get_context("fork")
    answers = []
    for number in range(CHILDREN):
        with context.Pool(1) as pool:
            answers.append(pool.apply_async(_child, (number,)).get(timeout=60))
        col.add(ids=[f"parent-{number + 1}"], embeddings=[_vector(-number - 1)])

    for number, (count, found) in enumerate(answers):
        # each child saw the parent's and the earlier children's records, and its own
        assert count == 1 + number + PER_CHILD * (number + 1), (number, count)
        assert found == [f"child{number}-0", "parent-0"]
    total = 1 + CHILDREN + CHILDREN * PER_CHILD
    assert col.count() == total
    assert col.get(ids=["child3-49"])["ids"] == ["child3-49"]
    client.close()
    _inherited.clear()

    fresh = store.client(tmp_path / "data")
    try:
        assert fresh.get_collection("docs").count() == total
    finally:
        fresh.close()
