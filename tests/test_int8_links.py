"""A new graph's links chosen on int8 rows, then served with its 16-bit rows (`int8_links`).

- The scale: cosine rows get one scale, with room over their largest component; l2 rows
  are centred first; every entry is within half a step of its row (or clipped to +-127
  past the room); inner-product graphs, rows int8 would blur, and rows with nothing to
  scale keep 16-bit rows.
- The file: a graph usearch saved on int8 rows, rewritten, holds each key's 16-bit row
  and the same head (but its vector type), keys and links; any other file, or rows of the
  wrong shape, are refused and the file left as it was.
- The graph process takes int8 rows only, and saves a checkpoint it goes on from.
- End to end on both stores: a build in a graph process is measured on a view of its
  checkpoint (not by the child's searches) and served with the rows the writer holds:
  the graph holds every record's 16-bit row, answers agree with a scan, and a fresh
  process serves the snapshot with the same measurement.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from usearch.index import Index

from huedb.api.client import clear_system_cache
from huedb.engine import (
    graph_build,
    int8_links,
    snapshot,
    usearch_layout,
)
from huedb.engine.graph_process import ChildFailed, ChildGraph
from huedb.engine.int8_links import HEADROOM, INT8_MAX, Int8Rows, choose, serve_with_rows
from huedb.engine.mapped_rows import rows_as_float32
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    HnswParams,
    graph_config,
    graph_input,
    graph_rows_16,
    graph_vectors,
)
from tests import stores
from tests.graph_wait import wait_for_graph
from tests.knobs import knob
from tests.stores import StoreTarget

store = stores.store

DIM = 16
EXAMPLES = int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))
KIND = usearch_layout.KIND_BF16 if GRAPH_DTYPE == "bf16" else usearch_layout.KIND_F16


def _clustered(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)).astype(np.float32)
    noise = rng.standard_normal((n, dim)).astype(np.float32)
    return centres[rng.integers(0, 8, n)] + np.float32(0.3) * noise


def _unit(seed: int, n: int) -> np.ndarray:
    return graph_input("cosine", _clustered(seed, n))


# -- the scale ------------------------------------------------------------------------------


def test_cosine_rows_get_one_scale_with_room_over_their_largest_component() -> None:
    rows = _unit(1, 500)
    found = choose("cosine", rows)
    assert found is not None and found.centre is None
    ints = found.quantize(rows)
    assert ints.dtype == np.int8
    assert int(np.abs(ints.astype(np.int16)).max()) == round(INT8_MAX / HEADROOM)
    assert np.all(np.abs(ints / np.float32(found.scale) - rows) <= 0.5 / found.scale + 1e-6)
    out = np.zeros_like(ints)
    assert found.quantize(rows, out=out) is out and np.array_equal(out, ints)


def test_l2_rows_are_centred_first() -> None:
    rows = np.float32(1_000) + _clustered(2, 400)  # far from the origin: int8 of the raw
    found = choose("l2", rows)  # values would keep only the offset
    assert found is not None and found.centre is not None
    np.testing.assert_allclose(found.centre, rows.mean(axis=0), rtol=1e-6)
    back = found.quantize(rows) / np.float32(found.scale) + found.centre
    assert np.linalg.norm(back - rows) <= 0.01 * np.linalg.norm(rows - found.centre)


def test_inner_product_graphs_and_rows_int8_would_blur_keep_16_bit_rows() -> None:
    rows = _unit(3, 300)
    assert choose("ip", rows) is None
    spiky = rows.copy()
    spiky[0, 0] = 1_000.0  # one component dwarfs every other: a step would swallow them
    assert choose("l2", spiky) is None
    assert choose("cosine", np.zeros((5, DIM), dtype=np.float32)) is None
    assert choose("cosine", np.empty((0, DIM), dtype=np.float32)) is None


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    rows=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 12)),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    later=st.floats(-4.0, 4.0),
    space=st.sampled_from(("cosine", "l2")),
)
def test_every_entry_is_within_half_a_step_or_clipped(
    rows: np.ndarray, later: float, space: str
) -> None:
    """For any rows: None, or a scale under which every entry of these rows, and of rows
    beyond them (`later` times them), is within half a step of its value, or is +-127 on
    its side when the value lies past +-127 steps."""
    found = choose(space, rows)
    if found is None:
        return
    for block in (rows, rows * np.float32(later)):
        shifted = block - found.centre if found.centre is not None else block
        steps = shifted.astype(np.float64) * found.scale
        ints = found.quantize(block).astype(np.float64)
        inside = np.abs(steps) <= INT8_MAX
        assert np.all(np.abs(ints - steps)[inside] <= 0.5 + 1e-3 * np.abs(steps[inside]) + 1e-3)
        assert np.all(ints[~inside] == np.sign(steps[~inside]) * INT8_MAX)


def test_clipped_components_are_counted_and_a_large_share_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ints = np.array([[127, -127, 3], [126, 0, -127]], dtype=np.int8)
    assert int8_links.clipped(ints) == 3
    with caplog.at_level(logging.DEBUG, logger="huedb.engine.int8_links"):
        int8_links.report_clipped(1, 10_000)  # 0.01 %: within the bound
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        int8_links.report_clipped(20, 10_000)  # 0.2 %
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "0.20 %" in warning.getMessage() and "clipped" in warning.getMessage()


# -- the file -------------------------------------------------------------------------------


def _saved_int8_graph(path: Path, vectors: np.ndarray, keys: np.ndarray) -> None:
    rows = graph_input("cosine", vectors)
    found = choose("cosine", rows)
    assert found is not None
    graph = Index(ndim=vectors.shape[1], metric="ip", dtype="i8", connectivity=8)
    graph.add(keys, found.quantize(rows), threads=1)
    graph.save(str(path))


def _rows_by_key(vectors: np.ndarray, keys: np.ndarray) -> Any:
    rows16 = graph_rows_16(GRAPH_DTYPE, "cosine", vectors)
    where = {int(k): i for i, k in enumerate(keys.tolist())}
    return lambda wanted: rows16[[where[int(k)] for k in wanted]]


def test_an_int8_graph_file_is_rewritten_with_16_bit_rows_and_the_same_links(
    tmp_path: Path,
) -> None:
    vectors = _clustered(4, 700)
    keys = np.random.default_rng(5).permutation(np.arange(10, 10 + 3 * 700, 3)).astype(np.uint64)
    path = tmp_path / "graph"
    _saved_int8_graph(path, vectors, keys)
    before = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    serve_with_rows(path, _rows_by_key(vectors, keys), KIND)
    after = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    old, new = usearch_layout.sections(before), usearch_layout.sections(after)
    assert old is not None and new is not None
    assert (new.rows, new.row_bytes, new.vector_kind) == (700, 2 * DIM, KIND)
    assert np.array_equal(after[new.graph_at :], before[old.graph_at :])  # keys and links
    old_head = before[old.graph_at - usearch_layout.HEAD_BYTES : old.graph_at].copy()
    old_head[usearch_layout.VECTOR_KIND_AT] = KIND
    assert np.array_equal(after[new.graph_at - usearch_layout.HEAD_BYTES : new.graph_at], old_head)
    graph = Index.restore(str(path))
    assert graph is not None and len(graph) == 700
    expected = rows_as_float32(graph_rows_16(GRAPH_DTYPE, "cosine", vectors))
    np.testing.assert_array_equal(graph_vectors(graph, keys), expected)
    graph.expansion_search = 64
    found = graph.search(expected[:20], 1, threads=1)
    assert np.mean(np.asarray(found.keys).reshape(20) == keys[:20]) >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph"]


def test_another_file_or_rows_of_the_wrong_shape_are_refused_and_the_file_kept(
    tmp_path: Path,
) -> None:
    vectors = _clustered(6, 200)
    keys = np.arange(200, dtype=np.uint64)
    bf16 = tmp_path / "bf16"
    graph = Index(ndim=DIM, metric="ip", dtype=GRAPH_DTYPE)
    graph.add(keys, graph_input("cosine", vectors))
    graph.save(str(bf16))
    int8 = tmp_path / "int8"
    _saved_int8_graph(int8, vectors, keys)
    saved = {path: path.read_bytes() for path in (bf16, int8)}
    with pytest.raises(ValueError, match="int8"):
        serve_with_rows(bf16, _rows_by_key(vectors, keys), KIND)
    rows = _rows_by_key(vectors, keys)
    with pytest.raises(ValueError, match="16-bit rows"):
        serve_with_rows(int8, lambda wanted: rows(wanted)[:, 1:], KIND)
    with pytest.raises(ValueError, match="16-bit rows"):
        serve_with_rows(int8, lambda wanted: rows_as_float32(rows(wanted)), KIND)
    assert {path: path.read_bytes() for path in (bf16, int8)} == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16", "int8"]


# -- the graph process ---------------------------------------------------------------------


def _int8_build(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, Int8Rows, np.ndarray, Any]:
    """Clustered vectors, their cosine graph rows, the rows' int8 form, keys 0..n-1 and
    the rewrite of a saved file with their 16-bit rows."""
    vectors = _clustered(seed, n)
    rows = graph_input("cosine", vectors)
    found = choose("cosine", rows)
    assert found is not None
    keys = np.arange(n, dtype=np.uint64)
    served = functools.partial(serve_with_rows, rows_of=_rows_by_key(vectors, keys), kind=KIND)
    return vectors, rows, found, keys, served


def test_a_graph_process_on_int8_rows_takes_int8_rows_and_goes_on_after_a_checkpoint(
    tmp_path: Path,
) -> None:
    vectors, rows, found, keys, served = _int8_build(7, 600)
    child = ChildGraph({**graph_config(DIM, HnswParams(space="cosine")), "dtype": "i8"}, tmp_path)
    try:
        with pytest.raises(TypeError, match="int8"):
            child.add(keys[:10], rows[:10], threads=1)
        child.add(keys[:400], found.quantize(rows[:400]), threads=1)
        first = child.pid
        mapped = child.checkpoint(served)
        assert list(tmp_path.iterdir()) == [child._path]  # both checkpoint files are gone
        assert len(mapped.graph) == 400
        expected = rows_as_float32(graph_rows_16(GRAPH_DTYPE, "cosine", vectors))
        np.testing.assert_array_equal(graph_vectors(mapped.graph, keys[:400]), expected[:400])
        child.add(keys[400:], found.quantize(rows[400:]), threads=2)
        child.save_ahead()
        with pytest.raises(RuntimeError, match="told to save"):
            child.add(keys[:1], found.quantize(rows[:1]), threads=1)
        assert len(mapped.graph) == 400  # the view is the checkpoint's, whatever came after
        del mapped
        assert child.pid == first  # the same child went on from the checkpoint
        graph = child.finish(served=served)
    except BaseException:
        child.kill()
        raise
    assert len(graph) == 600
    np.testing.assert_array_equal(graph_vectors(graph, keys), expected)
    assert list(tmp_path.iterdir()) == []  # the graph's file is gone too


def test_a_graph_process_interrupted_after_a_checkpoint_fails_as_a_child(
    tmp_path: Path,
) -> None:
    """A build told to stop while the child goes on after a checkpoint (the measurement's
    window): the child is gone, so adding to it fails (a pipe it no longer reads) or, at the
    latest, saving it does (a stopped build: BuildStopped in `grow_graph`)."""
    _, rows, found, keys, served = _int8_build(9, 300)
    child = ChildGraph({**graph_config(DIM, HnswParams(space="cosine")), "dtype": "i8"}, tmp_path)
    try:
        child.add(keys[:200], found.quantize(rows[:200]), threads=1)
        assert len(child.checkpoint(served).graph) == 200
        child.interrupt()
        with pytest.raises(ChildFailed, match="graph process"):
            child.add(keys[200:], found.quantize(rows[200:]), threads=1)
            child.finish(served=served)
    finally:
        child.kill()
    assert list(tmp_path.iterdir()) == []


def test_a_build_whose_graph_process_is_killed_at_the_checkpoint_is_built_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The graph process killed (as by the out-of-memory killer) when told to save the
    checkpoint: ChildFailed, and the build runs again in a thread; no file is left."""
    monkeypatch.setattr(graph_build, "CHILD_MIN_FLOATS", 0)
    monkeypatch.setattr(graph_build, "has_int8_kernel", lambda metric: True)
    real_checkpoint = ChildGraph.checkpoint
    killed: list[int] = []

    def killed_first(self: ChildGraph, served: Any) -> Any:
        killed.append(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        return real_checkpoint(self, served)

    monkeypatch.setattr(ChildGraph, "checkpoint", killed_first)
    vectors = _clustered(10, 2_000)
    client = stores.SQLITE.client(tmp_path, {"huedb_exact_max_floats": DIM * 100})
    try:
        col = client.create_collection("thread", configuration={"hnsw": {"space": "cosine"}})
        with caplog.at_level(logging.WARNING, logger="huedb.engine.graph_build"):
            col.add(ids=[f"r{i}" for i in range(2_000)], embeddings=vectors)
            col.query(query_embeddings=vectors[:1], n_results=5)
            status = wait_for_graph(col)
        assert len(killed) == 1 and status.recall is not None
        assert "building the graph in a thread instead" in caplog.text
        got = col.query(query_embeddings=vectors[5:6] + np.float32(0.01), n_results=3)
        assert got["ids"][0][0] == "r5"
        assert not list((tmp_path / "index").glob(".graph-build-*"))
    finally:
        client.close()


# -- end to end -----------------------------------------------------------------------------


def test_rows_far_beyond_the_first_are_clipped_reported_and_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An l2 collection whose later rows lie far beyond the first (the scale's): the build
    warns, and every record is still found by its own vector (exact re-rank)."""
    monkeypatch.setattr(graph_build, "CHILD_MIN_FLOATS", 0)
    monkeypatch.setattr(graph_build, "has_int8_kernel", lambda metric: True)
    near = _clustered(11, 200)
    far = np.float32(40) * _clustered(12, 1_800)
    vectors = np.vstack([near, far])
    client = stores.SQLITE.client(tmp_path, {"huedb_exact_max_floats": DIM * 100})
    try:
        col = client.create_collection("drift", configuration={"hnsw": {"space": "l2"}})
        with caplog.at_level(logging.WARNING, logger="huedb.engine.int8_links"):
            # The writer starts the build once past the threshold (100 rows, near ones),
            # and it grows with every later write.
            for lo in range(0, 2_000, 50):
                ids = [f"r{i}" for i in range(lo, lo + 50)]
                col.add(ids=ids, embeddings=vectors[lo : lo + 50])
            col.query(query_embeddings=near[:1], n_results=1)
            wait_for_graph(col)
        assert "int8 components were clipped" in caplog.text
        for q in range(0, 2_000, 97):
            got = col.query(query_embeddings=vectors[q : q + 1], n_results=1)
            assert got["ids"][0] == [f"r{q}"]
    finally:
        client.close()


def _exact_top(space: str, vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    if space == "cosine":
        units = graph_input("cosine", vectors)
        dists = 1.0 - units @ (query / np.linalg.norm(query))
    else:
        dists = np.sum((vectors - query) ** 2, axis=1)
    return [f"r{i}" for i in np.argsort(dists, kind="stable")[:k]]


@pytest.mark.parametrize("space", ["cosine", "l2"])
def test_a_build_on_int8_rows_is_measured_and_served_with_its_16_bit_rows(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: str
) -> None:
    monkeypatch.setattr(graph_build, "CHILD_MIN_FLOATS", 0)
    monkeypatch.setattr(graph_build, "has_int8_kernel", lambda metric: True)  # any machine
    rewrites: list[int] = []
    real_serve = int8_links.serve_with_rows

    def counted(path: Path, rows_of: Any, kind: int, target: Path | None = None) -> None:
        rewrites.append(kind)
        real_serve(path, rows_of, kind, target)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a graph on int8 rows was measured on its int8 rows")

    monkeypatch.setattr(int8_links, "serve_with_rows", counted)
    monkeypatch.setattr(ChildGraph, "search", refuse)
    vectors = _clustered(8, 3_000)
    client = store.client(tmp_path, {"huedb_exact_max_floats": DIM * 100})
    try:
        col = client.create_collection("int8", configuration={"hnsw": {"space": space}})
        for lo in range(0, 3_000, 250):
            col.add(ids=[f"r{i}" for i in range(lo, lo + 250)], embeddings=vectors[lo : lo + 250])
        col.query(query_embeddings=vectors[:1], n_results=5)
        status = wait_for_graph(col)
        assert rewrites == [KIND, KIND]  # the checkpoint measured, then the graph served
        assert status.recall is not None and status.recall >= 0.95
        col.count()  # adopts the graph
        (state,) = client._server.engine._indexes._states.values()  # type: ignore[attr-defined]
        keys = np.asarray(sorted(state.index.keys()), dtype=np.uint64)
        assert state.index.uses_graph and len(keys) == 3_000
        assert state.index.mismatched(keys, vectors) == []  # each record's 16-bit row
        (path,) = tmp_path.rglob(f"{col.id}{snapshot.GRAPH_SUFFIX}")
        header = snapshot.read_header(path)
        assert header is not None and header["calibration"]["queries"] == 200
        found = 0
        for q in range(0, 3_000, 300):
            query = vectors[q] + np.float32(0.01)
            got = col.query(query_embeddings=query[None, :], n_results=5)
            assert got["ids"][0][0] == f"r{q}"
            found += len(set(got["ids"][0]) & set(_exact_top(space, vectors, query, 5)))
        assert found >= 0.9 * 50, found
    finally:
        client.close()
    clear_system_cache()
    again = store.client(tmp_path, {"huedb_exact_max_floats": DIM * 100})
    try:
        col = again.get_collection("int8")
        got = col.query(query_embeddings=vectors[7:8] + np.float32(0.01), n_results=1)
        assert got["ids"][0] == ["r7"]
        assert col.get_indexing_status().recall == status.recall
    finally:
        again.close()


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("space", ["cosine", "l2"])
def test_a_graph_rewritten_to_int8_and_back_is_the_graph_it_was(
    tmp_path: Path, dtype: str, space: str
) -> None:
    """`to_int8` (a backlog pass's start) keeps the keys, levels and links and writes each
    slot's 16-bit row quantized, read back by usearch as an int8 graph; served again with
    the rows `SavedRows` reads from the first file, by slot, the file is byte for byte the
    one usearch saved."""
    params = HnswParams(space=space)
    rows = _clustered(5, 700)
    config = {**graph_config(DIM, params), "dtype": dtype}
    graph = Index(**config)
    graph.add(np.arange(700, dtype=np.uint64) * 3, graph_input(space, rows), threads=1)
    saved, as_int8, back = tmp_path / "saved", tmp_path / "int8", tmp_path / "back"
    graph.save(str(saved))
    int8 = choose(space, graph_input(space, rows))
    assert int8 is not None
    stored = int8_links.SavedRows(saved)
    try:
        int8_links.to_int8(stored, int8, as_int8)
        restored = Index.restore(str(as_int8))
        assert restored is not None and str(restored.dtype).endswith("I8")
        assert len(restored) == 700 and restored.metric == graph.metric
        expected = int8.quantize(rows_as_float32(stored.block(0, 700)))
        held = np.asarray(restored.get(np.arange(700, dtype=np.uint64) * 3, dtype=np.int8))
        np.testing.assert_array_equal(held, expected)
        int8_links.serve_with_slot_rows(
            as_int8, lambda start, keys: stored.block(start, len(keys)), stored.kind, back
        )
    finally:
        stored.close()
    assert back.read_bytes() == saved.read_bytes()


def test_a_graph_process_removes_the_file_it_started_from_once_read(tmp_path: Path) -> None:
    """The file a graph process starts from (a pass's saved graph: 0.5-1 GB at 1M) is
    removed as soon as the process has read it, not when the build ends."""
    config = graph_config(DIM, HnswParams(space="cosine"))
    rows = graph_input("cosine", _clustered(8, 400))
    start = Index(**config)
    start.add(np.arange(400, dtype=np.uint64), rows, threads=1)
    child = ChildGraph(config, tmp_path, start=lambda path: start.save(str(path)))
    try:
        assert len(list(tmp_path.iterdir())) == 2  # the start, and the file to save to
        keys, counts = child.search(rows[:3], 5, 32)  # answered: the start was read
        assert len(list(tmp_path.iterdir())) == 1 and keys[:, 0].tolist() == [0, 1, 2]
        graph = child.finish()
    except BaseException:
        child.kill()
        raise
    assert len(graph) == 400 and list(tmp_path.iterdir()) == []


def test_saved_rows_refuse_a_file_to_int8_could_not_rewrite(tmp_path: Path) -> None:
    """A graph file whose nodes do not match its rows (here its node count changed) is
    refused when opened, so a backlog pass keeps the graph's own rows rather than failing
    half way (its changes would then be applied in a caller's thread)."""
    graph = Index(**{**graph_config(DIM, HnswParams(space="cosine")), "dtype": "bf16"})
    graph.add(np.arange(50, dtype=np.uint64), graph_input("cosine", _clustered(2, 50)))
    path = tmp_path / "saved"
    graph.save(str(path))
    data = bytearray(path.read_bytes())
    found = usearch_layout.sections(np.frombuffer(bytes(data), dtype=np.uint8))
    assert found is not None
    int8_links.SavedRows(path).close()  # as saved: accepted
    data[found.graph_at : found.graph_at + 8] = (49).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="nodes do not match"):
        int8_links.SavedRows(path)
