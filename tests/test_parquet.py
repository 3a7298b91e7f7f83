"""Parquet export and import: exact round trips, idempotence, refusals, Chroma's pandas loop files
and the bounded memory of exporting a large collection."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import huedb
import huedb.ops.parquet as parquet_ops
from huedb.ops.parquet import (
    export_collection,
    import_collection,
    read_batches,
    read_file_metadata,
    string_array,
)
from tests.cli import run_python

ROOT = Path(__file__).resolve().parent.parent
EXPORT_MEMORY_LIMIT_MB = 300


@pytest.fixture
def client(tmp_path: Path) -> Iterator[huedb.Client]:
    c = huedb.PersistentClient(path=tmp_path / "src")
    yield c
    c.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[huedb.Client]:
    c = huedb.PersistentClient(path=tmp_path / "dst")
    yield c
    c.close()


def typed(value: Any) -> Any:
    """A value with its types spelled out, so 1 != 1.0 != True in comparisons."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def records(col: Any) -> dict[str, dict[str, Any]]:
    """Every record of a collection (huedb or chromadb) by id."""
    got = col.get(include=["documents", "metadatas", "embeddings", "uris"])
    out = {}
    for i, rid in enumerate(got["ids"]):
        out[rid] = {
            "document": got["documents"][i],
            "metadata": typed(got["metadatas"][i]),
            "embedding": np.asarray(got["embeddings"][i], dtype=np.float32),
            "uri": got["uris"][i] if got.get("uris") is not None else None,
        }
    return out


def assert_same_records(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert sorted(a) == sorted(b)
    for rid in a:
        ra, rb = a[rid], b[rid]
        assert ra["document"] == rb["document"], rid
        assert type(ra["document"]) is type(rb["document"]), rid
        assert ra["metadata"] == rb["metadata"], rid
        assert ra["uri"] == rb["uri"], rid
        assert ra["embedding"].dtype == rb["embedding"].dtype == np.float32
        assert np.array_equal(ra["embedding"].view(np.uint32), rb["embedding"].view(np.uint32)), rid


def fill(col: huedb.Collection, n: int = 40, dim: int = 8, seed: int = 0) -> None:
    """Records with every kind of document, metadata value, uri and awkward float."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb[0, :4] = [np.float32(1e-45), -0.0, np.finfo(np.float32).max, np.finfo(np.float32).tiny]
    ids, docs, metas, uris = [], [], [], []
    for i in range(n):
        ids.append(f"id-{i:03d}" if i % 5 else f"ïd/{i} ✓")
        docs.append([None, "", f"doc {i}", "naïve — 文字"][i % 4])
        uris.append(None if i % 3 else f"s3://bucket/{i}")
        if i % 7 == 0:
            metas.append(None)
            continue
        meta: dict[str, Any] = {"i": i, "f": i / 3, "whole": float(i), "flag": i % 2 == 0}
        if i % 2:
            meta["s"] = f"text {i}"
            meta["big"] = 2**53 + 1
            meta["neg"] = -(2**63)
        if i % 3 == 0:
            meta.update(li=[1, 2, i], lf=[0.1, 2.0], ls=["a", "b"], lb=[True, False])
        metas.append(meta)
    col.add(ids=ids, embeddings=emb, documents=docs, metadatas=metas, uris=uris)


# -- huedb files -----------------------------------------------------------------------


def test_round_trip_is_exact(client: huedb.Client, other: huedb.Client, tmp_path: Path) -> None:
    src = client.create_collection(
        "round-trip",
        configuration={"hnsw": {"space": "cosine", "ef_search": 77}},
        metadata={"owner": "me", "n": 3},
    )
    fill(src, n=45)
    out = tmp_path / "rt.parquet"
    report = export_collection(src, out, batch_size=7, show_progress=False)
    assert (report.rows, report.dimension, report.space, report.row_groups) == (45, 8, "cosine", 7)

    file = pq.ParquetFile(out)
    assert file.metadata.num_row_groups == 7
    schema = file.schema_arrow
    assert schema.field("embedding").type == pa.list_(pa.float32(), 8)
    assert schema.field("metadata").type == pa.string()
    kv = read_file_metadata(out)
    assert kv["huedb.space"] == "cosine"
    assert kv["huedb.dimension"] == "8"
    assert kv["huedb.rows"] == "45"
    assert kv["huedb.collection"] == "round-trip"
    assert json.loads(kv["huedb.configuration"])["hnsw"]["ef_search"] == 77
    assert json.loads(kv["huedb.collection_metadata"]) == {"owner": "me", "n": 3}
    # Created without an embedding function: Chroma's default one is recorded.
    assert json.loads(kv["huedb.embedding_function"]) == {
        "type": "known",
        "name": "default",
        "config": {},
    }
    assert kv["huedb.version"] == huedb.__version__

    imported = import_collection(other, out, batch_size=10, show_progress=False)
    assert (imported.collection, imported.rows, imported.created) == ("round-trip", 45, True)
    dst = other.get_collection("round-trip")
    assert dst.configuration_json["hnsw"]["space"] == "cosine"
    assert dst.configuration_json["hnsw"]["ef_search"] == 77
    assert dst.metadata == {"owner": "me", "n": 3}
    assert_same_records(records(src), records(dst))
    assert [i for b in read_batches(out) for i in b.ids] == src.get()["ids"]


def test_reimport_is_idempotent(client: huedb.Client, other: huedb.Client, tmp_path: Path) -> None:
    src = client.create_collection("idem")
    fill(src, n=30)
    out = tmp_path / "idem.parquet"
    export_collection(src, out, batch_size=8, show_progress=False)
    first = import_collection(other, out, collection_name="copy", show_progress=False)
    before = records(other.get_collection("copy"))
    second = import_collection(other, out, collection_name="copy", batch_size=4)
    assert (first.created, second.created) == (True, False)
    dst = other.get_collection("copy")
    assert dst.count() == 30
    assert other.count_collections() == 1
    assert_same_records(before, records(dst))
    assert_same_records(records(src), records(dst))


def test_import_into_existing_compatible_collection(
    client: huedb.Client, other: huedb.Client, tmp_path: Path
) -> None:
    src = client.create_collection("compat", metadata={"hnsw:space": "ip"})
    fill(src, n=12)
    out = tmp_path / "compat.parquet"
    export_collection(src, out, show_progress=False)
    dst = other.create_collection("target", configuration={"hnsw": {"space": "ip"}})
    dst.add(ids=["local"], embeddings=[[0.5] * 8])
    report = import_collection(other, out, collection_name="target")
    assert not report.created
    assert dst.count() == 13
    got = records(dst)
    got.pop("local")
    assert_same_records(records(src), got)


def test_dimension_mismatch_is_refused(
    client: huedb.Client, other: huedb.Client, tmp_path: Path
) -> None:
    src = client.create_collection("dims")
    fill(src, n=5, dim=8)
    out = tmp_path / "dims.parquet"
    export_collection(src, out, show_progress=False)
    dst = other.create_collection("dims")
    dst.add(ids=["x"], embeddings=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"dimension mismatch.*dimension 3.*dimension 8"):
        import_collection(other, out)
    assert dst.count() == 1


def test_dimension_mismatch_is_refused_for_a_file_without_huedb_metadata(
    other: huedb.Client, tmp_path: Path
) -> None:
    out = tmp_path / "plain.parquet"
    table = pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0, 4.0]]})
    pq.write_table(table, out)
    dst = other.create_collection("plain")
    dst.add(ids=["x"], embeddings=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"dimension 3.*dimension 2"):
        import_collection(other, out)
    assert dst.count() == 1


def test_space_mismatch_is_refused(
    client: huedb.Client, other: huedb.Client, tmp_path: Path
) -> None:
    src = client.create_collection("spaces", configuration={"hnsw": {"space": "l2"}})
    fill(src, n=5)
    out = tmp_path / "spaces.parquet"
    export_collection(src, out, show_progress=False)
    other.create_collection("spaces", configuration={"hnsw": {"space": "cosine"}})
    with pytest.raises(ValueError, match=r"space mismatch.*'cosine'.*'l2'"):
        import_collection(other, out)
    assert other.get_collection("spaces").count() == 0


def test_failed_export_leaves_no_file(
    client: huedb.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = client.create_collection("broken")
    fill(src, n=20)
    out = tmp_path / "out" / "broken.parquet"
    out.parent.mkdir()
    out.write_bytes(b"previous export")
    real_pages = parquet_ops.collection_pages

    def failing_pages(*args: Any, **kwargs: Any) -> Any:
        for n, page in enumerate(real_pages(*args, **kwargs)):
            if n == 2:
                raise RuntimeError("connection lost")
            yield page

    monkeypatch.setattr(parquet_ops, "collection_pages", failing_pages)
    with pytest.raises(RuntimeError, match="connection lost"):
        export_collection(src, out, batch_size=5, show_progress=False)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in out.parent.iterdir()) == ["broken.parquet"]


def test_empty_collection_round_trip(
    client: huedb.Client, other: huedb.Client, tmp_path: Path
) -> None:
    src = client.create_collection("empty", configuration={"hnsw": {"space": "ip"}})
    out = tmp_path / "empty.parquet"
    report = export_collection(src, out, show_progress=False)
    assert report.rows == 0
    assert pq.ParquetFile(out).metadata.num_rows == 0
    imported = import_collection(other, out)
    assert imported.rows == 0
    assert other.get_collection("empty").configuration_json["hnsw"]["space"] == "ip"


def test_string_array_matches_pyarrow() -> None:
    values = ["a", None, "", "naïve 文字 ✓", None, "x" * 1000]
    built = string_array(values)
    built.validate(full=True)
    assert built.to_pylist() == values
    assert built.equals(pa.array(values, type=pa.string()))
    assert string_array([]).to_pylist() == []


# -- foreign files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "embedding_type",
    [
        pa.list_(pa.float32()),
        pa.list_(pa.float64()),
        pa.large_list(pa.float32()),
        pa.list_(pa.float64(), 3),
        pa.list_(pa.float32(), 3),
    ],
    ids=str,
)
@pytest.mark.parametrize("metadata_kind", ["struct", "json", "map", "absent"])
def test_foreign_layouts_are_read(
    other: huedb.Client, tmp_path: Path, embedding_type: pa.DataType, metadata_kind: str
) -> None:
    emb = np.array([[0.1, -2.5, 3.0], [1e-30, 0.0, -0.0], [7.0, 8.0, 9.0]], dtype=np.float32)
    metas: list[dict[str, Any] | None] = [{"a": 1, "b": "x"}, None, {"b": "y"}]
    columns: dict[str, pa.Array] = {
        "id": pa.array(["r1", "r2", "r3"], type=pa.large_string()),
        "document": pa.array(["one", None, ""]),
        "embedding": pa.array(
            emb.astype(embedding_type.value_type.to_pandas_dtype()).tolist()
        ).cast(embedding_type),
        "uri": pa.array([None, "file:///b", None]),
    }
    if metadata_kind == "struct":
        columns["metadata"] = pa.array(metas)
    elif metadata_kind == "json":
        columns["metadata"] = pa.array([None if m is None else json.dumps(m) for m in metas])
    elif metadata_kind == "map":
        columns["metadata"] = pa.array(
            [None if m is None else [(k, str(v)) for k, v in m.items()] for m in metas],
            type=pa.map_(pa.string(), pa.string()),
        )
    out = tmp_path / "foreign.parquet"
    pq.write_table(pa.table(columns), out, row_group_size=2)
    report = import_collection(other, out, collection_name="foreign", batch_size=2)
    assert report.rows == 3
    got = other.get_collection("foreign").get(
        include=["documents", "metadatas", "embeddings", "uris"]
    )
    assert got["ids"] == ["r1", "r2", "r3"]
    assert got["documents"] == ["one", None, ""]
    assert got["uris"] == [None, "file:///b", None]
    assert np.array_equal(
        np.asarray(got["embeddings"], dtype=np.float32).view(np.uint32), emb.view(np.uint32)
    )
    # r2 has a uri but no metadata: like Chroma, huedb returns {} for it.
    expected: list[Any] = {
        "struct": [metas[0], {}, metas[2]],
        "json": [metas[0], {}, metas[2]],
        "map": [{"a": "1", "b": "x"}, {}, {"b": "y"}],
        "absent": [None, {}, None],
    }[metadata_kind]
    assert [typed(m) for m in got["metadatas"]] == [typed(m) for m in expected]


def test_broken_foreign_files_are_refused(other: huedb.Client, tmp_path: Path) -> None:
    no_emb = tmp_path / "no-emb.parquet"
    pq.write_table(pa.table({"id": ["a"], "document": ["x"]}), no_emb)
    with pytest.raises(ValueError, match="no 'embedding' column"):
        import_collection(other, no_emb, collection_name="broken1")
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]}), ragged)
    with pytest.raises(ValueError, match=r"'b' has an embedding of dimension 1"):
        import_collection(other, ragged, collection_name="broken2")
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0], None]}), missing)
    with pytest.raises(ValueError, match=r"'b' has no embedding"):
        import_collection(other, missing, collection_name="broken3")


@pytest.mark.parametrize("variant", ["as-is", "json-float32"])
def test_chroma_pandas_loop_file_imports_exactly(
    other: huedb.Client, tmp_path: Path, variant: str
) -> None:
    """The seed-style export of a real chromadb collection, read with every record equal."""
    chromadb = pytest.importorskip("chromadb")
    pd = pytest.importorskip("pandas")
    source = chromadb.EphemeralClient(
        settings=chromadb.config.Settings(anonymized_telemetry=False, allow_reset=True)
    )
    source.reset()
    col = source.create_collection(
        "seed-src", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    rng = np.random.default_rng(7)
    n, dim = 230, 16
    metas = []
    for i in range(n):
        meta: dict[str, Any] = {"source": f"file{i % 4}.txt", "chunk": i}
        if i % 2:
            meta["score"] = i / 7
        if i % 3 == 0:
            meta["reviewed"] = i % 2 == 0
        metas.append(meta)
    col.add(
        ids=[f"doc-{i}" for i in range(n)],
        embeddings=rng.standard_normal((n, dim)).astype(np.float32),
        documents=["" if i == 5 else f"chunk {i} ünïcode" for i in range(n)],
        metadatas=metas,
    )

    frames = []
    page = 100
    for offset in range(0, col.count(), page):
        batch = col.get(include=["documents", "metadatas", "embeddings"], limit=page, offset=offset)
        embeddings = list(batch["embeddings"])
        metadatas: list[Any] = batch["metadatas"]
        if variant == "json-float32":
            embeddings = [np.asarray(e, dtype=np.float32) for e in embeddings]
            metadatas = [json.dumps(m) for m in metadatas]
        frames.append(
            pd.DataFrame(
                {
                    "id": batch["ids"],
                    "document": batch["documents"],
                    "metadata": metadatas,
                    "embedding": embeddings,
                }
            )
        )
    out = tmp_path / "seed-src.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(out)
    # chromadb returns float64 arrays (holding float32 values): list<double> unless cast
    schema = pq.ParquetFile(out).schema_arrow
    expected = {"as-is": pa.float64(), "json-float32": pa.float32()}[variant]
    assert schema.field("embedding").type.value_type == expected
    assert pa.types.is_struct(schema.field("metadata").type) == (variant == "as-is")

    report = import_collection(other, out, batch_size=64, show_progress=False)
    assert (report.collection, report.rows, report.dimension) == ("seed-src", n, dim)
    dst = other.get_collection("seed-src")
    assert_same_records(records(col), records(dst))
    again = import_collection(other, out, show_progress=False)
    assert again.rows == n and dst.count() == n


# -- server ----------------------------------------------------------------------------


def test_export_over_http_with_token(client: huedb.Client, tmp_path: Path) -> None:
    from tests.servers import huedb_server

    token = "parquet-admin-token-123456"
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{token}\n")
    data = tmp_path / "served"
    local = huedb.PersistentClient(path=data)
    src = local.create_collection("remote", configuration={"hnsw": {"space": "ip"}})
    fill(src, n=25)
    expected = records(src)
    local.close()
    with huedb_server(data, "--auth-tokens-file", str(tokens)) as server:
        remote = huedb.HttpClient(
            host=server.url, settings=huedb.Settings(chroma_client_auth_credentials=token)
        )
        out = tmp_path / "remote.parquet"
        report = export_collection(remote.get_collection("remote"), out, batch_size=6)
        assert (report.rows, report.space, report.dimension) == (25, "ip", 8)
        imported = import_collection(remote, out, collection_name="remote-copy", batch_size=9)
        assert imported.created
        assert_same_records(expected, records(remote.get_collection("remote-copy")))
        remote.close()
    import_collection(client, out)
    assert_same_records(expected, records(client.get_collection("remote")))


# -- memory ----------------------------------------------------------------------------

BUILD_SCRIPT = """
import sys, time
import numpy as np
import huedb
import huedb.ops.parquet as parquet_ops
path, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = huedb.PersistentClient(path)
col = client.create_collection("big", configuration={"hnsw": {"space": "cosine"}})
rng = np.random.default_rng(0)
for start in range(0, n, 5000):
    k = min(5000, n - start)
    col.add(
        ids=[f"id-{i}" for i in range(start, start + k)],
        embeddings=rng.standard_normal((k, dim), dtype=np.float32),
        documents=[f"document number {i}" for i in range(start, start + k)],
        metadatas=[{"i": i, "group": f"g{i % 7}"} for i in range(start, start + k)],
    )
client.close()
"""

# The child samples its anonymous resident memory (RssAnon: what the process allocated) every
# 5 ms, besides the kernel's max RSS. Max RSS also counts file-backed pages of mapped shared
# libraries, which depend on the page cache (file huge pages): the same export measured
# 214 MB alone and 627 MB in the middle of the full suite. The bound applies to RssAnon.
EXPORT_SCRIPT = """
import resource, sys, threading
from pathlib import Path

peak = [0]
done = threading.Event()

def anon_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anon_kb())
        done.wait(0.005)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
import huedb
import huedb.ops.parquet as parquet_ops
from huedb.ops.parquet import export_collection
client = huedb.PersistentClient(sys.argv[1])
report = export_collection(client.get_collection("big"), Path(sys.argv[2]), show_progress=False)
client.close()
done.set()
sampler.join()
peak[0] = max(peak[0], anon_kb())
print(report.rows, peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_script(script: str, *args: str) -> str:
    return run_python("-c", textwrap.dedent(script), *args, timeout=600)


def test_export_of_200k_x_384_stays_under_300_mb(tmp_path: Path) -> None:
    n, dim = 200_000, 384
    data, out = tmp_path / "big", tmp_path / "big.parquet"
    started = time.monotonic()
    run_script(BUILD_SCRIPT, str(data), str(n), str(dim))
    built = time.monotonic()
    rows, anon_kb, max_rss_kb = run_script(EXPORT_SCRIPT, str(data), str(out)).split()
    exported = time.monotonic()
    peak_mb = int(anon_kb) / 1024
    print(
        f"build {built - started:.1f}s, export {exported - built:.1f}s, "
        f"export peak anonymous RSS {peak_mb:.0f} MB (max RSS {int(max_rss_kb) / 1024:.0f} MB)"
    )
    assert int(rows) == n
    assert peak_mb < EXPORT_MEMORY_LIMIT_MB
    file = pq.ParquetFile(out)
    assert file.metadata.num_rows == n
    assert file.metadata.num_row_groups == n // 5000
    assert read_file_metadata(out)["huedb.dimension"] == str(dim)
    first = next(file.iter_batches(batch_size=3))
    assert first.column("id").to_pylist() == ["id-0", "id-1", "id-2"]
    assert json.loads(first.column("metadata")[2].as_py()) == {"i": 2, "group": "g2"}
