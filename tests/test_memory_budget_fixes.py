"""Fixes of the index memory budget (`index_memory`) after review.

- A graph whose background snapshot write or backlog pass has ended is taken up and evicted
  like any other (it stayed held over the budget until its own collection was used again).
- A query answered by the index already held checks the budget too: after a failed snapshot
  write kept a graph held, the write is retried and the graph evicted once the disk
  recovers, even while every query finds its index in memory.
- Sparse indexes count in the budget: the least recently used index, dense or sparse, is
  evicted; their bytes are in the stats' `index_cache` and in `huedb_index_resident_bytes`.
- `index_memory` refuses a size below one byte ("0.5" meant 0: no limit) and a size too
  large for any machine (a 400-digit number raised OverflowError), naming the setting.
- The thrashing warning shows a budget under 1 MiB readably (it said "0 MiB").

Budgets are checked through the engine's own figures (`Engine.index_memory`). A budget of
1 byte keeps only the index of the call (every index exceeds it). Chroma has no memory
budget to compare with.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

import huedb
from huedb import Knn, Search
from huedb.cli.parser import build_parser
from huedb.cli.serve import server_config
from huedb.engine import events, snapshot
from huedb.engine.engine import Engine
from huedb.engine.graph_backlog import INLINE_MAX_CHANGES
from huedb.errors import ConfigError
from huedb.ops.stats import gather_stats
from huedb.options import MAX_BYTES
from huedb.server.metrics import EngineMetrics
from tests.graph_wait import wait_for_graph

DIM = 8
GRAPH_AT = 800  # exact_max_floats: collections above 100 vectors of 8 dims get a graph


def open_client(path: Path, **settings: Any) -> huedb.PersistentClient:
    return huedb.PersistentClient(path=str(path), settings=huedb.Settings(**settings))


def engine_of(client: huedb.PersistentClient) -> Engine:
    return client._server.engine


def held(engine: Engine) -> list[str]:
    """The collections whose dense index is held, least recently used first."""
    return [col.name for col, _ in engine.index_memory()["resident"]]


def vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def graph_collection(client: huedb.PersistentClient, name: str, n: int, seed: int) -> Any:
    """A collection of `n` vectors with its graph built and snapshotted."""
    col = client.create_collection(name, embedding_function=None)
    col.add(ids=[f"r{i}" for i in range(n)], embeddings=vectors(n, seed))
    wait_for_graph(col, seconds=120)
    return col


def nearest(col: Any, vector: np.ndarray) -> str:
    return col.query(query_embeddings=vector[None, :], n_results=1)["ids"][0][0]


def state_of(engine: Engine, col: Any) -> Any:
    """The index cache's state of a collection (to wait for its threads)."""
    return engine._indexes._states[engine.get_collection_by_uuid(str(col.id)).cid]


def settled(engine: Engine, *cols: Any) -> None:
    """Wait for the background threads of every index held (snapshot writes, backlog
    passes, recall measurements), then use each of `cols` in turn, which takes them up:
    the last one's index alone is then held."""
    for state in list(engine._indexes._states.values()):
        for job in (state.saving, state.backlog_pass, state.calibrating, state.build):
            if job is not None:
                job.thread.join()
    for col in cols:
        nearest(col, vectors(1, 99)[0])
    assert held(engine) == [cols[-1].name]


# --------------------------------------------------------------------------- finished threads


def test_a_graph_whose_snapshot_thread_ended_is_evicted(tmp_path: Path) -> None:
    """The reviewer's t9: once the thread writing a graph's snapshot had ended, the graph
    stayed held over the budget while other collections were queried."""
    client = open_client(
        tmp_path / "data",
        huedb_exact_max_floats=GRAPH_AT,
        huedb_index_memory=1,
        huedb_snapshot_every=50,
    )
    engine = engine_of(client)
    colx = graph_collection(client, "colx", 400, 1)
    coly = graph_collection(client, "coly", 400, 2)
    settled(engine, coly, colx)
    changed = vectors(100, 4)  # a quarter of the graph: its snapshot is written by a thread
    colx.upsert(ids=[f"r{i}" for i in range(100)], embeddings=changed)
    state = state_of(engine, colx)
    assert state.saving is not None
    state.saving.thread.join()
    assert held(engine) == ["colx"]
    nearest(coly, vectors(1, 5)[0])  # loads coly: colx, done saving, is evicted
    assert held(engine) == ["coly"]
    assert "colx" in {col.name for col in engine.index_memory()["evicted"]}
    assert nearest(colx, changed[7]) == "r7"  # reloaded with the changes
    assert held(engine) == ["colx"]
    client.close()


def test_a_graph_whose_backlog_pass_ended_is_evicted(tmp_path: Path) -> None:
    """The reviewer's t8: once a background pass applying a graph's backlog had ended, the
    graph stayed held over the budget while other collections were queried."""
    client = open_client(tmp_path / "data", huedb_exact_max_floats=GRAPH_AT, huedb_index_memory=1)
    engine = engine_of(client)
    colx = graph_collection(client, "colx", 400, 1)
    coly = graph_collection(client, "coly", 400, 2)
    settled(engine, colx, coly)
    many = INLINE_MAX_CHANGES + 100  # too many to apply within a query: a background pass
    added = vectors(many, 6)
    colx.upsert(ids=[f"n{i}" for i in range(many)], embeddings=added)
    nearest(colx, vectors(1, 7)[0])  # reloads colx, whose catch-up starts the pass
    state = state_of(engine, colx)
    assert state.backlog_pass is not None
    state.backlog_pass.thread.join()
    assert held(engine) == ["colx"]
    nearest(coly, vectors(1, 8)[0])  # loads coly: colx, its pass ended, is evicted
    assert held(engine) == ["coly"]
    assert nearest(colx, added[11]) == "n11"
    assert held(engine) == ["colx"]
    client.close()


# --------------------------------------------------------------------------- warm queries


def test_a_failed_snapshot_is_retried_by_a_query_on_a_held_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's t12: the budget was checked only when a query loaded its index, so
    after a failed snapshot write kept a graph held, queries that found their index in
    memory never retried it: the graph stayed over the budget after the disk recovered."""
    client = open_client(tmp_path / "data", huedb_exact_max_floats=GRAPH_AT, huedb_index_memory=1)
    engine = engine_of(client)
    colx = graph_collection(client, "colx", 400, 1)
    coly = graph_collection(client, "coly", 400, 2)
    settled(engine, coly, colx)
    write = snapshot.write_snapshot_streamed

    def disk_full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot, "write_snapshot_streamed", disk_full)
    changed = vectors(5, 4)
    colx.upsert(ids=[f"r{i}" for i in range(5)], embeddings=changed)  # not in its snapshot
    nearest(coly, vectors(1, 5)[0])  # loads coly; colx's snapshot cannot be written
    assert held(engine) == ["colx", "coly"]
    monkeypatch.setattr(snapshot, "write_snapshot_streamed", write)  # the disk recovered
    before = engine.index_memory()
    nearest(coly, vectors(1, 6)[0])
    after = engine.index_memory()
    assert (after["hits"], after["misses"]) == (before["hits"] + 1, before["misses"])
    assert held(engine) == ["coly"]  # colx snapshotted and evicted
    assert nearest(colx, changed[3]) == "r3"  # reloaded from that snapshot
    client.close()


def test_a_query_on_a_held_index_within_the_budget_evicts_nothing(tmp_path: Path) -> None:
    """Within the budget, queries that find their index in memory keep every index."""
    client = open_client(tmp_path / "data", huedb_index_memory="64MiB")
    engine = engine_of(client)
    cols = [client.create_collection(f"col{i}", embedding_function=None) for i in range(3)]
    for i, col in enumerate(cols):
        col.add(ids=[f"r{j}" for j in range(50)], embeddings=vectors(50, i))
    for _ in range(3):
        for col in cols:
            nearest(col, vectors(1, 9)[0])
    figures = engine.index_memory()
    assert held(engine) == ["col0", "col1", "col2"]
    assert (figures["hits"], figures["misses"], figures["evictions"]) == (6, 3, 0)
    client.close()


# --------------------------------------------------------------------------- sparse indexes


SPARSE_KEY = "sp"


def sparse_collection(client: huedb.PersistentClient, name: str, seed: int) -> Any:
    schema = huedb.Schema().create_index(
        config=huedb.SparseVectorIndexConfig(bm25=True), key=SPARSE_KEY
    )
    col = client.create_collection(name, schema=schema, embedding_function=None)
    rng = np.random.default_rng(seed)
    col.add(
        ids=[f"x{i}" for i in range(400)],
        embeddings=rng.standard_normal((400, 4)).tolist(),
        metadatas=[
            {
                SPARSE_KEY: huedb.SparseVector(
                    sorted(rng.choice(200, 5, replace=False).tolist()), [1.0] * 5
                )
            }
            for _ in range(400)
        ],
    )
    return col


def sparse_search(col: Any) -> list[str]:
    query = huedb.SparseVector([1, 2, 3], [1.0, 1.0, 0.5])
    return col.search(Search().rank(Knn(query=query, key=SPARSE_KEY)).limit(5))["ids"][0]


def dense_collection(client: huedb.PersistentClient, name: str, seed: int) -> Any:
    col = client.create_collection(name, embedding_function=None)
    col.add(ids=[f"r{i}" for i in range(600)], embeddings=vectors(600, seed, 16))
    return col


def mixed_workload(path: Path, budget: int) -> tuple[huedb.PersistentClient, list[Any]]:
    """A sparse search of `sparse0`, then queries of `dense0` and `dense1`."""
    client = open_client(path, huedb_index_memory=budget)
    cols = [
        sparse_collection(client, "sparse0", 1),
        dense_collection(client, "dense0", 2),
        dense_collection(client, "dense1", 3),
    ]
    sparse_search(cols[0])
    for col in cols[1:]:
        nearest(col, vectors(1, 4, 16)[0])
    return client, cols


@pytest.fixture
def metrics() -> Iterator[EngineMetrics]:
    listener = EngineMetrics()
    events.listen(listener)
    try:
        yield listener
    finally:
        events.listen(None)


def resident_gauge() -> float | None:
    return REGISTRY.get_sample_value("huedb_index_resident_bytes")


def test_sparse_and_dense_indexes_share_the_budget_least_recently_used_first(
    tmp_path: Path, metrics: EngineMetrics
) -> None:
    """The reviewer's t4: loading dense indexes never evicted sparse ones, so the bytes
    held passed the budget; and a sparse search dropped other sparse indexes before an
    older dense one. Sizes are measured first by the same workload without a budget."""
    probe, _ = mixed_workload(tmp_path / "probe", 0)
    figures = engine_of(probe).index_memory()
    sparse_bytes = figures["sparse_resident_bytes"]
    dense = dict((col.name, nbytes) for col, nbytes in figures["resident"])
    probe.close()
    assert sparse_bytes > 0 and set(dense) == {"dense0", "dense1"}
    budget = dense["dense0"] + dense["dense1"] + sparse_bytes // 2  # not all three

    client, (sparse0, _dense0, dense1) = mixed_workload(tmp_path / "data", budget)
    engine = engine_of(client)
    figures = engine.index_memory()
    # sparse0, the least recently used, is dropped: both dense indexes fit.
    assert figures["sparse_resident_bytes"] == 0
    assert held(engine) == ["dense0", "dense1"]
    assert resident_gauge() == figures["resident_bytes"]

    first = sparse_search(sparse0)  # reloaded (from its snapshot): dense0 is now the oldest
    figures = engine.index_memory()
    assert held(engine) == ["dense1"]
    assert figures["sparse_resident_bytes"] > 0
    total = figures["resident_bytes"] + figures["sparse_resident_bytes"]
    assert total <= budget
    assert sparse_search(sparse0) == first  # answered by the held index, the same
    nearest(dense1, vectors(1, 5, 16)[0])
    assert held(engine) == ["dense1"]

    # The sparse bytes are reported: the stats' index cache (`huedb stats`, admin stats)
    # and the resident-bytes gauge, which counts both kinds.
    figures = engine.index_memory()
    cache = gather_stats(engine, tmp_path / "data")["index_cache"]
    assert cache["sparse_resident_bytes"] == figures["sparse_resident_bytes"] > 0
    assert cache["resident_bytes"] == figures["resident_bytes"] > 0
    assert resident_gauge() == figures["resident_bytes"] + figures["sparse_resident_bytes"]

    client.delete_collection("sparse0")
    assert engine.index_memory()["sparse_resident_bytes"] == 0
    assert resident_gauge() == engine.index_memory()["resident_bytes"]
    client.close()


def test_a_budget_of_one_byte_keeps_only_the_index_in_use_of_either_kind(tmp_path: Path) -> None:
    """Every index exceeds 1 byte: after each call only the index it used stays held,
    whether the call searched a sparse or a dense index."""
    client = open_client(tmp_path / "data", huedb_index_memory=1)
    engine = engine_of(client)
    sparse = [sparse_collection(client, f"sparse{i}", i) for i in range(2)]
    dense = [dense_collection(client, f"dense{i}", i) for i in range(2)]
    answers = [sparse_search(col) for col in sparse]
    assert held(engine) == []
    one_sparse = engine.index_memory()["sparse_resident_bytes"]
    assert one_sparse > 0
    nearest(dense[0], vectors(1, 5, 16)[0])
    assert (held(engine), engine.index_memory()["sparse_resident_bytes"]) == (["dense0"], 0)
    assert sparse_search(sparse[0]) == answers[0]
    assert held(engine) == []
    assert 0 < engine.index_memory()["sparse_resident_bytes"] <= 2 * one_sparse
    nearest(dense[1], vectors(1, 6, 16)[0])
    assert (held(engine), engine.index_memory()["sparse_resident_bytes"]) == (["dense1"], 0)
    client.close()


# --------------------------------------------------------------------------- the setting


def cli_options(tmp_path: Path, value: str) -> Any:
    args = build_parser().parse_args(["run", "--path", str(tmp_path), "--index-memory", value])
    return server_config(args, {}).engine


def refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> list[str]:
    """The errors `value` gets as Settings, as HUEDB_INDEX_MEMORY and as `--index-memory`."""
    messages = []
    with pytest.raises(ConfigError) as caught:
        huedb.Settings(huedb_index_memory=value)
    messages.append(str(caught.value))
    monkeypatch.setenv("HUEDB_INDEX_MEMORY", value)
    with pytest.raises(ConfigError) as caught:
        huedb.Settings()
    messages.append(str(caught.value))
    monkeypatch.delenv("HUEDB_INDEX_MEMORY")
    with pytest.raises(ConfigError) as caught:
        cli_options(tmp_path, value)
    messages.append(str(caught.value))
    return messages


@pytest.mark.parametrize("value", ["0.5", "0.999", "0.5B", "0.0001KiB", "0.0000000001 GB"])
def test_a_size_below_one_byte_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """It was rounded down to 0, which means no limit: a budget set fails open."""
    settings, env, cli = refusals(tmp_path, monkeypatch, value)
    assert "index_memory must be 0 or at least one byte" in settings
    assert env.startswith("HUEDB_INDEX_MEMORY: index_memory must be 0 or at least one byte")
    assert "index_memory must be 0 or at least one byte" in cli


def test_a_size_too_large_is_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 400-digit number raised OverflowError (a traceback) instead of a config error."""
    settings, env, cli = refusals(tmp_path, monkeypatch, "9" * 400)
    assert "index_memory must be at most 9223372036854775807 bytes" in settings
    assert env.startswith("HUEDB_INDEX_MEMORY: index_memory must be at most")
    assert "index_memory must be at most" in cli
    for value in (str(MAX_BYTES + 1), "8388608 TiB", "10000000 TB"):
        with pytest.raises(ConfigError, match="index_memory"):
            huedb.Settings(huedb_index_memory=value)
    # Past Python's int conversion limit (4,300 digits) its message would answer instead,
    # and the whole value would be echoed.
    with pytest.raises(ConfigError, match=r"index_memory is no size: 5000 characters") as caught:
        huedb.Settings(huedb_index_memory="9" * 5000)
    assert len(str(caught.value)) < 300
    with pytest.raises(ConfigError, match="index_memory must be at most"):
        huedb.Settings(huedb_index_memory=MAX_BYTES + 1)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("0", 0),
        ("1", 1),
        ("1.5", 1),
        ("0.9KiB", 921),
        ("1.5G", 3 * 2**29),
        ("1_000 MB", 10**9),
        (str(MAX_BYTES), MAX_BYTES),
        ("99999999999999999999.5 b", None),
    ],
)
def test_sizes_of_at_least_one_byte_are_read_exactly(
    tmp_path: Path, value: str, size: int | None
) -> None:
    if size is None:  # above the largest size, though not by much
        with pytest.raises(ConfigError, match="at most"):
            huedb.Settings(huedb_index_memory=value)
        return
    assert huedb.Settings(huedb_index_memory=value).engine_options().index_memory == size
    assert cli_options(tmp_path, value).index_memory == size


# --------------------------------------------------------------------------- the warning


def test_the_thrashing_warning_shows_a_small_budget_readably(tmp_path: Path) -> None:
    """The reviewer's t10: a 1 KiB budget was shown as "(0 MiB)"."""
    client = open_client(tmp_path / "data", huedb_index_memory="1KiB")
    cols = [client.create_collection(f"col{i}", embedding_function=None) for i in range(3)]
    for i, col in enumerate(cols):
        col.add(ids=[str(j) for j in range(50)], embeddings=vectors(50, i, 4))
    for _ in range(40):
        for col in cols:
            col.query(query_embeddings=[[0.1, 0.2, 0.3, 0.4]], n_results=2)
    stats = gather_stats(engine_of(client), tmp_path / "data")
    thrashing = [w for w in stats["warnings"] if "had to reload their index" in w]
    assert thrashing == [
        "120 of 120 queries had to reload their index: index_memory (1 KiB) is below the "
        "working set; raise it or spread collections over more nodes"
    ]
    client.close()
