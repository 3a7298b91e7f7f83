"""`huedb reembed` (resumable) and `huedb eval` (recall@k, MRR, overlap, exit codes)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.bm25 import ChromaBm25EmbeddingFunction
from huedb.ops.model_versions import reembed
from tests.cli import run_cli as huedb_cli
from tests.cli import start_cli
from tests.embedders import v1, v2

ROOT = Path(__file__).resolve().parent.parent


def test_reembed_killed_halfway_then_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    src = client.create_collection("docs_v1", embedding_function=v1())
    docs = [f"document number {i} about topic {i % 17} and {i % 5}" for i in range(3000)]
    src.add(ids=[f"d{i}" for i in range(3000)], documents=docs)
    src.add(ids=["no-doc"], embeddings=[np.ones(16)])
    client.close()
    clear_system_cache()
    args = ["reembed", "--path", str(data), "--source", "docs_v1", "--target", "docs_v2"]
    args += ["--embedder", "tests.embedders:v2", "--batch-size", "100"]
    proc = start_cli(*args, env={"EMBED_DELAY_S": "0.05"})
    partial = 0
    deadline = time.monotonic() + 120
    while partial < 500 and time.monotonic() < deadline:
        time.sleep(0.2)
        probe = huedb.PersistentClient(path=data)
        try:
            partial = probe.get_collection("docs_v2").count()
        except huedb.errors.NotFoundError:
            partial = 0
        probe.close()
        clear_system_cache()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < partial < 3000, "the run was not interrupted halfway"
    done = huedb_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "already present" in done.stdout
    client = huedb.PersistentClient(path=data)
    target = client.get_collection("docs_v2", embedding_function=v2())
    assert target.count() == 3000
    got = target.get(include=["documents", "embeddings"])
    assert sorted(got["ids"]) == sorted(f"d{i}" for i in range(3000))
    by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
    for i in (0, 1234, 2999):
        assert np.array_equal(by_id[f"d{i}"], v2()([docs[i]])[0])
    assert target.configuration_json["embedding_function"]["name"] == "words-v2"
    client.close()


def _eval_store(path: Path) -> None:
    client = huedb.PersistentClient(path=path)
    eye = np.eye(4, dtype=np.float32)
    cand = client.create_collection("cand")
    cand.add(ids=["a", "b", "c", "d"], embeddings=eye)
    base = client.create_collection("base")
    base.add(ids=["a", "b", "c", "x"], embeddings=eye)
    client.close()
    clear_system_cache()


def test_eval_recall_mrr_and_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _eval_store(data)
    queries = tmp_path / "q.jsonl"
    rows = [
        {"query": "q1", "relevant": ["a"]},
        {"query": "q2", "relevant": ["d", "b"]},
        {"query": "q3", "relevant": ["c"]},
    ]
    queries.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = ["eval", "--path", str(data), "--queries", str(queries), "--k", "2"]
    common += ["--embedder", "tests.embedders:lookup"]
    # By hand, k=2: q1 -> a, b (recall 1, RR 1); q2 -> c, d (recall 1/2, RR 1/2);
    # q3 -> b, a (recall 0, RR 0). recall@2 = 0.5, MRR = 0.5.
    r = huedb_cli(*common, "--collection", "cand", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["scores"]["cand"] == {"recall_at_k": 0.5, "mrr": 0.5}
    assert huedb_cli(*common, "--collection", "cand", "--min-recall", "0.6").returncode == 1
    assert huedb_cli(*common, "--collection", "cand", "--min-recall", "0.4").returncode == 0
    # Baseline lacks d: q2 -> c, x (recall 0, RR 0): baseline recall@2 = 1/3, MRR = 1/3.
    r = huedb_cli(*common, "--collection", "cand", "--baseline", "base", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0
    assert abs(report["scores"]["base"]["recall_at_k"] - 1 / 3) < 1e-9
    # Overlap: q1 {a,b}/{a,b}=1, q2 {c,d}/{c,x}=1/2, q3 {b,a}/{b,a}=1 -> 5/6.
    assert abs(report["overlap_at_k"] - 5 / 6) < 1e-9
    r = huedb_cli(*common, "--collection", "base", "--baseline", "cand")
    assert r.returncode == 1 and "below the baseline" in r.stdout


def test_eval_without_labels_gates_on_overlap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _eval_store(data)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "q1"}\n{"query": "q2"}\n{"query": "q3"}\n')
    args = ["eval", "--path", str(data), "--queries", str(queries), "--k", "2"]
    args += ["--embedder", "tests.embedders:lookup", "--collection", "cand", "--baseline", "base"]
    assert huedb_cli(*args, "--min-overlap", "0.8").returncode == 0
    failed = huedb_cli(*args, "--min-overlap", "0.9")
    assert failed.returncode == 1 and "overlap" in failed.stdout


def test_eval_overlap_of_collections_smaller_than_k(tmp_path: Path) -> None:
    """Both collections hold 4 records and answer the same ids: full overlap at k=10, not
    4/10 (a gate on --min-overlap blocked every such switch)."""
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    eye = np.eye(4, dtype=np.float32)
    for name in ("small_v1", "small_v2"):
        client.create_collection(name).add(ids=["a", "b", "c", "d"], embeddings=eye)
    client.close()
    clear_system_cache()
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "q1"}\n{"query": "q2"}\n')
    args = ["eval", "--path", str(data), "--queries", str(queries), "--k", "10", "--json"]
    args += ["--embedder", "tests.embedders:lookup", "--collection", "small_v2"]
    r = huedb_cli(*args, "--baseline", "small_v1", "--min-overlap", "0.99")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["overlap_at_k"] == 1.0


def test_unknown_embedder_is_a_clear_error(tmp_path: Path) -> None:
    r = huedb_cli(
        "reembed", "--path", str(tmp_path), "--source", "a", "--target", "b", "--embedder", "nope"
    )
    assert r.returncode == 2 and "module:factory" in r.stderr
    assert v1()(["x"])[0].shape == (16,)


def test_eval_over_http_sends_more_queries_than_one_request_may_carry(tmp_path: Path) -> None:
    from tests.servers import huedb_server

    data = tmp_path / "data"
    _eval_store(data)
    queries = tmp_path / "q.jsonl"
    rows = [{"query": f"q{1 + i % 3}", "relevant": ["a"]} for i in range(1200)]
    queries.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with huedb_server(data) as server:
        r = huedb_cli(
            *("eval", "--url", server.url, "--queries", str(queries), "--k", "2"),
            *("--embedder", "tests.embedders:lookup", "--collection", "cand", "--json"),
        )
    assert r.returncode == 0, r.stderr
    # q1 finds a first, q2 does not find it, q3 finds it second (as above): 800 of 1,200.
    assert json.loads(r.stdout)["scores"]["cand"]["recall_at_k"] == 800 / 1200


def _state(collection: huedb.Collection) -> dict[str, tuple]:
    got = collection.get(include=["documents", "metadatas", "uris", "embeddings"])
    rows = zip(got["documents"], got["metadatas"], got["uris"], got["embeddings"], strict=True)
    return {
        rid: (d, _typed(m), u, list(e)) for rid, (d, m, u, e) in zip(got["ids"], rows, strict=True)
    }


def _typed(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metadata with each value's type, so True, 1 and 1.0 differ."""
    return {k: (type(v).__name__, v) for k, v in metadata.items()} if metadata else None


def _expected(source: huedb.Collection) -> dict[str, tuple]:
    """The reference: the source's records with a document, embedded by v2."""
    got = source.get(include=["documents", "metadatas", "uris"])
    rows = zip(got["ids"], got["documents"], got["metadatas"], got["uris"], strict=True)
    return {
        rid: (d, _typed(m), u, list(np.asarray(v2()([d])[0], dtype=np.float32)))
        for rid, d, m, u in rows
        if d is not None
    }


@pytest.mark.parametrize("persistent", [True, False])
def test_reembed_run_again_catches_up_every_change_to_the_source(
    tmp_path: Path, persistent: bool
) -> None:
    """Random adds, document changes, metadata and uri changes (keys removed, uris cleared),
    documents dropped and deletes in the source between runs: each run leaves the target
    equal to the source's documented records embedded by v2 (an in-memory store too)."""
    client = (
        huedb.PersistentClient(path=tmp_path / "data") if persistent else huedb.EphemeralClient()
    )
    src = client.create_collection("docs_v1", embedding_function=v1())
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "eps"]

    def record(i: int) -> dict[str, Any]:
        meta = {k: rng.randint(0, 3) for k in rng.sample(["a", "b", "c"], rng.randint(0, 3))}
        return {
            "document": " ".join(rng.choices(words, k=3)) + f" {i}",
            "metadata": meta or None,
            "uri": rng.choice([None, f"s3://x/{i}"]),
        }

    ids = [f"r{i}" for i in range(60)]
    first = [record(i) for i in range(60)]
    src.add(
        ids=ids,
        embeddings=v1()([r["document"] for r in first]),
        documents=[r["document"] for r in first],
        metadatas=[r["metadata"] for r in first],
        uris=[r["uri"] for r in first],
    )
    for round_ in range(4):
        report = reembed(client, "docs_v1", "docs_v2", v2(), batch_size=16)
        target = client.get_collection("docs_v2", embedding_function=v2())
        assert _state(target) == _expected(src), (round_, str(report))
        for rid in rng.sample(ids, 8):
            change = rng.choice(["document", "metadata", "uri", "drop", "delete"])
            new = record(rng.randint(0, 999))
            if change == "document":
                src.update(ids=[rid], documents=[new["document"]])
            elif change == "metadata":
                old = src.get(ids=[rid], include=["metadatas"])["metadatas"]
                patch = {k: None for k in (old[0] or {}) if rng.random() < 0.5}
                value = rng.choice([round_, float(round_), round_ % 2 == 1])
                src.update(ids=[rid], metadatas=[{**patch, "m": value}])
            elif change == "uri":
                src.update(ids=[rid], metadatas=[{"chroma:uri": new["uri"]}])
            elif change == "drop":
                src.delete(ids=[rid])
                src.add(ids=[rid], embeddings=[np.ones(16)])  # no document
            else:
                src.delete(ids=[rid])
        fresh = [f"n{round_}-{i}" for i in range(3)]
        src.add(ids=fresh, documents=[record(i)["document"] for i in range(3)])
        ids += fresh
    assert report.embedded + report.already_present > 0
    if persistent:
        client.close()
    clear_system_cache()


def test_reembed_refuses_a_target_an_alias_serves(tmp_path: Path) -> None:
    """After the switch, a run would undo the writes made through the alias (patch records
    back, delete the ones v1 lacks): refused, nothing changed."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    src = client.create_collection("docs_v1", embedding_function=v1())
    src.add(ids=["a"], documents=["alpha beta"])
    reembed(client, "docs_v1", "docs_v2", v2())
    client.create_alias("docs", "docs_v2")
    live = client.get_collection("docs", embedding_function=v2())
    live.add(ids=["new"], documents=["written after the switch"])
    for target in ("docs_v2", "docs"):
        with pytest.raises(ValueError, match="served through alias 'docs'"):
            reembed(client, "docs_v1", target, v2())
    assert sorted(live.get()["ids"]) == ["a", "new"]
    client.close()
    clear_system_cache()


def test_reembed_keeps_the_vectors_the_target_schema_fills(tmp_path: Path) -> None:
    """A target whose schema fills a BM25 key from the documents keeps those vectors run
    after run (the source has no such key: they were cleared as keys the source lacked)."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    src = client.create_collection("docs_v1", embedding_function=v1())
    src.add(ids=["a", "b"], documents=["alpha beta", "gamma"], metadatas=[{"k": 1}, None])
    schema = (
        huedb.Schema()
        .create_index(config=huedb.VectorIndexConfig(embedding_function=v2()))
        .create_index(
            config=huedb.SparseVectorIndexConfig(
                embedding_function=ChromaBm25EmbeddingFunction(), source_key="#document"
            ),
            key="bm25",
        )
    )
    client.create_collection("docs_v2", schema=schema)
    for _ in range(2):
        report = reembed(client, "docs_v1", "docs_v2", v2())
        got = client.get_collection("docs_v2", embedding_function=v2()).get(include=["metadatas"])
        assert [sorted(m) for m in got["metadatas"]] == [["bm25", "k"], ["bm25"]]
    assert (report.embedded, report.updated, report.already_present) == (0, 0, 2)
    client.close()
    clear_system_cache()


def test_reembed_carries_a_change_of_value_type(tmp_path: Path) -> None:
    """1 -> True and 0 -> 0.0 are changes (Python's == finds them equal)."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    src = client.create_collection("docs_v1", embedding_function=v1())
    src.add(ids=["a", "b"], documents=["alpha", "beta"], metadatas=[{"k": 1}, {"f": 0}])
    reembed(client, "docs_v1", "docs_v2", v2())
    src.update(ids=["a", "b"], metadatas=[{"k": True}, {"f": 0.0}])
    assert reembed(client, "docs_v1", "docs_v2", v2()).updated == 2
    got = client.get_collection("docs_v2", embedding_function=v2()).get(include=["metadatas"])
    assert [_typed(m) for m in got["metadatas"]] == [{"k": ("bool", True)}, {"f": ("float", 0.0)}]
    client.close()
    clear_system_cache()
