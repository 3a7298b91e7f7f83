"""Graph snapshots streamed through a staging file (`snapshot.write_snapshot_streamed`).

The graph is written by usearch to a file next to the snapshot, then copied a block at a
time behind a header whose CRC is written once it is known: the file must equal the one the
in-memory path writes, be served by a mapped view alike, and a failure must leave the
previous snapshot and no temporary behind.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import xxhash

from huedb.engine import snapshot
from huedb.engine.vector_index import (
    HnswParams,
    Thresholds,
    VectorIndex,
    build_graph,
    reconnected,
)

OWNER = "store-1/collection-1"
DIM = 16
THRESHOLDS = Thresholds(0, 0)


def graph_index(n: int, seed: int) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = np.arange(1, n + 1, dtype=np.uint64)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    params = HnswParams(space="cosine")
    # Every node reachable first, as the engine's builds leave it (`reconnected`): else
    # `save_graph` links some in and the streamed file differs from `serialize`'s bytes.
    graph = reconnected(build_graph(DIM, params, keys, vectors))
    return VectorIndex.from_graph(DIM, params, THRESHOLDS, graph), keys, vectors


def test_streamed_snapshot_equals_the_in_memory_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte for byte the file write_snapshot writes (payloads spanning several copy blocks),
    and a view of it answers as the graph it came from."""
    monkeypatch.setattr(snapshot, "COPY_BLOCK", 4096)  # many blocks for a small graph
    index, keys, vectors = graph_index(500, seed=3)
    saved = tmp_path / "saved.usearch"
    index.save_graph(saved)
    payload = saved.read_bytes()
    saved.unlink()
    assert len(payload) > 3 * snapshot.COPY_BLOCK
    calibration = {"ef_search": 128}
    reference = tmp_path / "reference.hnsw"
    snapshot.write_snapshot(reference, OWNER, 42, DIM, "cosine", payload, calibration)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    length = snapshot.write_snapshot_streamed(
        path, OWNER, 42, DIM, "cosine", index.save_graph, calibration
    )
    assert length == len(payload)
    assert path.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collection-1.hnsw", "reference.hnsw"]
    snap = snapshot.read_snapshot(path, OWNER)
    assert snap is not None and (snap.watermark, snap.calibration) == (42, calibration)
    view = VectorIndex.from_serialized(
        DIM, HnswParams(space="cosine"), THRESHOLDS, snap.payload, snap.mapping
    )

    def fetch(wanted: np.ndarray) -> np.ndarray:
        return vectors[np.asarray(wanted, dtype=np.int64) - 1]

    for query in vectors[:20]:
        got = view.search(query, 10, None, fetch)
        want = index.search(query, 10, None, fetch)
        assert got[0].tolist() == want[0].tolist()
        assert np.array_equal(got[1], want[1])
    assert sorted(view.keys().tolist()) == keys.tolist()


def test_a_failed_streamed_snapshot_keeps_the_previous_one(tmp_path: Path) -> None:
    """A save that fails (after writing part of its staging file) raises OSError, and the
    snapshot already there stays readable with no temporary left."""
    index, _, _ = graph_index(200, seed=5)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    snapshot.write_snapshot_streamed(path, OWNER, 7, DIM, "cosine", index.save_graph)
    before = path.read_bytes()

    def failing_save(staging: Path) -> None:
        staging.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        snapshot.write_snapshot_streamed(path, OWNER, 9, DIM, "cosine", failing_save)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["collection-1.hnsw"]
    snap = snapshot.read_snapshot(path, OWNER)
    assert snap is not None and snap.watermark == 7


def test_save_graph_reports_an_unwritable_path_as_oserror(tmp_path: Path) -> None:
    """usearch's RuntimeError for a file it cannot create becomes OSError (the snapshot
    writer's callers treat OSError as "no snapshot this time", never a failed query)."""
    index, _, _ = graph_index(50, seed=7)
    with pytest.raises(OSError, match="cannot write the graph"):
        index.save_graph(tmp_path / "missing-directory" / "graph")


def test_a_copied_snapshot_has_its_payloads_checksum_in_a_header_of_one_length(
    tmp_path: Path,
) -> None:
    """The header written before the payload's checksum is known is as long as the final
    one, whatever the checksum (it is written again in place); the checksum is the
    payload's XXH3-64, so a flipped payload byte is refused, except by a read told not to
    check it (a snapshot the caller has just written)."""
    widths = {
        len(snapshot._header_lines(OWNER, 9, DIM, "l2", 10, value, {"ef_search": 7})[0])
        for value in (0, 9, 2**31, 2**63, 2**64 - 1)
    }
    assert len(widths) == 1
    payload_file = tmp_path / "graph.bin"
    payload = np.random.default_rng(1).bytes(10_000)
    payload_file.write_bytes(payload)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    assert snapshot.write_snapshot_from_file(path, OWNER, 9, DIM, "l2", payload_file) == 10_000
    header = snapshot.read_header(path)
    assert header is not None and header["xxh3"] == xxhash.xxh3_64_intdigest(payload)
    assert path.read_bytes().startswith(snapshot.MAGIC)
    data = bytearray(path.read_bytes())
    assert data.endswith(payload)
    data[-5_000] ^= 1
    path.write_bytes(bytes(data))
    assert snapshot.read_snapshot(path, OWNER) is None
    unchecked = snapshot.read_snapshot(path, OWNER, check_payload=False)
    assert unchecked is not None and len(unchecked.payload) == 10_000


def _format_2_file(path: Path, payload: bytes, crc: int) -> None:
    """A snapshot as huedb wrote them before XXH3: magic 2, the payload's CRC-32."""
    fields = {"owner": OWNER, "watermark": 4, "dim": DIM, "space": "l2"}
    fields |= {"library": snapshot.library_version, "length": len(payload), "crc32": crc}
    header = json.dumps(fields).encode()
    checksum = b"%08x\n" % zlib.crc32(header)
    path.write_bytes(b"HUEDB-SNAPSHOT-2\n" + header + b"\n" + checksum + payload)


def test_a_format_2_snapshot_is_still_read_and_checked(tmp_path: Path) -> None:
    """Snapshots written before XXH3 (CRC-32 of the payload) serve after an upgrade: no
    rebuild of every graph; their payload is still checked."""
    payload = np.random.default_rng(2).bytes(4_000)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    _format_2_file(path, payload, zlib.crc32(payload))
    header = snapshot.read_header(path)
    assert header is not None and header["watermark"] == 4
    read = snapshot.read_snapshot(path, OWNER)
    assert read is not None and bytes(read.payload) == payload
    _format_2_file(path, payload, zlib.crc32(payload) ^ 1)
    assert snapshot.read_snapshot(path, OWNER) is None
