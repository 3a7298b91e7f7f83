"""`Collection.fork(new_name)` (issue 16, acceptance 5), on both stores and in every mode.

A fork is a new collection (new id, the given name) with the source's metadata,
configuration, schema and records (ids, documents, uris, metadata, vectors bit for bit) as
of one moment; later writes to either are independent. Checked in process (ephemeral and
persistent), over HTTP with `huedb.HttpClient` and the real `chromadb.HttpClient`; two
processes writing to the source and the fork never see each other's writes and
`huedb verify` passes after; a fork racing a writer holds all or none of each batch;
errors and tenant-scoped tokens over HTTP.

Run as a script (`python tests/test_fork.py <json-args>`), this module is the writer
process of those tests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import huedb  # noqa: E402
from tests import stores  # noqa: E402
from tests.cli import check_cli, child_env  # noqa: E402
from tests.http_checks import assert_error, chroma_client, ok, token_settings  # noqa: E402
from tests.servers import RunningServer, huedb_server  # noqa: E402
from tests.stores import StoreTarget  # noqa: E402

store = stores.store
module_store = stores.module_store

DIM = 8
ADMIN = "fork-admin-token-1"
SCOPED = "fork-scoped-token-1"  # admin of default_tenant/db_one only
ALL = ["embeddings", "documents", "uris", "metadatas"]


def seed_records(n: int = 40, sparse: Any = huedb.SparseVector) -> dict[str, Any]:
    """Records with every field, missing values and vectors whose bits must survive (-0.0,
    a subnormal, a large value)."""
    vectors = np.random.default_rng(7).standard_normal((n, DIM)).astype(np.float32)
    vectors[0, :3] = [-0.0, 1e-45, 1.2345678e10]
    metadatas: list[Any] = [
        {
            "i": i,
            "f": i / 3,
            "s": f"s{i % 5}",
            "b": i % 2 == 0,
            "tags": [f"t{i % 3}", "all"],
            "sp": sparse(indices=[i, i + 1], values=[0.5, 0.25]),
        }
        for i in range(n)
    ]
    metadatas[3] = None
    return {
        "ids": [f"r{i:03d}" for i in range(n)],
        "embeddings": vectors,
        "documents": [None if i % 7 == 0 else f"doc {i} word{i % 4}" for i in range(n)],
        "uris": [None if i % 5 == 0 else f"file://{i}" for i in range(n)],
        "metadatas": metadatas,
    }


def records(col: Any) -> dict[str, Any]:
    """Everything `get` returns, vectors as their float32 bytes."""
    got = col.get(include=ALL)
    return {
        "ids": got["ids"],
        "documents": got["documents"],
        "uris": got["uris"],
        "metadatas": [normal(m) for m in got["metadatas"]],
        "vectors": [np.asarray(e, dtype=np.float32).tobytes() for e in got["embeddings"]],
    }


def normal(metadata: Any) -> Any:
    """Metadata with sparse vectors as plain dicts (huedb's and chromadb's classes differ)."""
    if metadata is None:
        return None
    return {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in metadata.items()}


def check_fork(client: Any, name: str, sparse: Any = huedb.SparseVector) -> None:
    """Create, fill and fork a collection with `client` (any mode); every field is equal,
    filters and queries answer the same, later writes are independent."""
    source = client.create_collection(
        name,
        metadata={"topic": "fork", "n": 1},
        configuration={"hnsw": {"space": "cosine"}},
        embedding_function=None,
    )
    source.add(**seed_records(sparse=sparse))
    fork = source.fork(f"{name}-copy")
    assert fork.name == f"{name}-copy" and fork.id != source.id
    again = client.get_collection(f"{name}-copy")
    for col in (fork, again):
        assert col.metadata == source.metadata
        assert col.configuration_json == source.configuration_json
        assert col._model.dimension == DIM
        assert col.count() == source.count() == 40
        assert records(col) == records(source)
    where = {"$and": [{"s": "s1"}, {"tags": {"$contains": "t1"}}]}
    for kwargs in ({"where": where}, {"where_document": {"$contains": "word2"}}):
        assert fork.get(**kwargs)["ids"] == source.get(**kwargs)["ids"] != []
    probe = seed_records()["embeddings"][5:8]
    assert (
        fork.query(query_embeddings=probe, n_results=5)["ids"]
        == (source.query(query_embeddings=probe, n_results=5)["ids"])
    )
    source.add(ids=["only-source"], embeddings=[[1.0] * DIM], documents=["s"])
    fork.update(
        ids=["r001"],
        embeddings=[[0.5] * DIM],
        documents=["changed in fork"],
        metadatas=[{"s": "fork"}],
    )
    fork.delete(ids=["r002"])
    assert fork.get(ids=["only-source"])["ids"] == []
    assert source.get(ids=["r001"], include=["documents"])["documents"] == ["doc 1 word1"]
    assert source.get(ids=["r002"])["ids"] == ["r002"]
    assert fork.get(where={"s": "fork"})["ids"] == ["r001"]
    assert source.get(where={"s": "fork"})["ids"] == []
    assert source.query(query_embeddings=[[1.0] * DIM], n_results=1)["ids"] == [["only-source"]]
    assert fork.query(query_embeddings=[[1.0] * DIM], n_results=1)["ids"] == [["r001"]]


def check_fork_edges(client: Any) -> None:
    """An empty collection forks (no dimension yet, fixed apart later); refusals in process:
    a taken name (a collection's or an alias's), a bad name, a deleted source."""
    from huedb.errors import CollectionExistsError, InvalidArgumentError, NotFoundError

    empty = client.create_collection("empty", embedding_function=None)
    twin = empty.fork("empty-twin")
    assert twin.count() == 0 and twin._model.dimension is None
    twin.add(ids=["x"], embeddings=[[1.0, 2.0]])
    empty.add(ids=["y"], embeddings=[[1.0, 2.0, 3.0]])
    assert (twin.count(), empty.count()) == (1, 1)
    client.create_alias("an-alias", "empty")
    for taken in ("persistent", "an-alias"):
        with pytest.raises(CollectionExistsError):
            empty.fork(taken)
    with pytest.raises(InvalidArgumentError):
        empty.fork("no")
    client.delete_collection("empty-twin")
    with pytest.raises(NotFoundError):
        twin.fork("never")
    assert {c.name for c in client.list_collections()} == {
        "persistent",
        "persistent-copy",
        "empty",
    }


def test_fork_in_process(store: StoreTarget, tmp_path: Path) -> None:
    """Ephemeral and persistent clients; the fork survives a reopen."""
    check_fork(huedb.Client(), "ephemeral")
    client = store.client(tmp_path / "data")
    check_fork(client, "persistent")
    expected = records(client.get_collection("persistent-copy"))
    check_fork_edges(client)
    client.close()
    reopened = store.client(tmp_path / "data")
    assert records(reopened.get_collection("persistent-copy")) == expected
    reopened.close()


def test_fork_through_the_chromadb_bridge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chromadb's own `PersistentClient` on huedb's store (`CHROMA_API_IMPL`) forks too."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient

    from huedb.api.client import clear_system_cache
    from huedb.chroma_bridge import API_IMPL

    monkeypatch.setenv("CHROMA_API_IMPL", API_IMPL)
    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(path=str(tmp_path / "data"))
    check_fork(client, "bridged", chromadb.SparseVector)
    with pytest.raises(chromadb.errors.InternalError, match="already exists"):
        client.get_collection("bridged").fork("bridged-copy")
    SharedSystemClient.clear_system_cache()
    clear_system_cache()


@pytest.fixture(scope="module")
def server(module_store: StoreTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`huedb run` on each store with an admin token and one limited to db_one."""
    data = tmp_path_factory.mktemp("fork") / "data"
    tokens = f"{ADMIN}:admin,{SCOPED}:admin@default_tenant/db_one"
    env = {**module_store.env(), "HUEDB_AUTH_TOKENS": tokens}
    with huedb_server(data, *module_store.cli_args(), env=env) as running:
        with httpx.Client(base_url=running.url, headers=bearer(ADMIN), timeout=60) as http:
            for db in ("db_one", "db_two"):
                ok(http.post("/api/v2/tenants/default_tenant/databases", json={"name": db}))
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_fork_over_http(server: RunningServer) -> None:
    """`huedb.HttpClient` and the real `chromadb.HttpClient` fork through `huedb run`; the
    server describes source and fork alike (configuration, schema, metadata, dimension)."""
    import chromadb

    ours = huedb.HttpClient(host=server.host, port=server.port, headers=bearer(ADMIN))
    check_fork(ours, "ours")
    theirs = chroma_client(server.port, settings=token_settings(ADMIN))
    check_fork(theirs, "theirs", chromadb.SparseVector)
    forked = asyncio.run(fork_async(server))
    assert forked.name == "async-copy" and forked.id != ours.get_collection("async").id
    assert records(ours.get_collection("async-copy")) == records(ours.get_collection("async"))
    base = "/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN), timeout=60) as http:
        for name in ("ours", "theirs", "async"):
            described = [ok(http.get(f"{base}/{n}")) for n in (name, f"{name}-copy")]
            for d in described:
                del d["id"], d["name"]
            assert described[0] == described[1]


async def fork_async(server: RunningServer) -> Any:
    """`huedb.AsyncHttpClient`: fork is awaited and answers an `AsyncCollection`."""
    client = await huedb.AsyncHttpClient(host=server.host, port=server.port, headers=bearer(ADMIN))
    source = await client.create_collection("async", embedding_function=None)
    await source.add(**seed_records(5))
    forked = await source.fork("async-copy")
    assert await forked.count() == 5
    return forked


def test_fork_errors_over_http(server: RunningServer) -> None:
    """Chroma's statuses and error names: a taken name as create's (409), a missing source
    404, a bad name 400, a malformed body 4xx; nothing is created by a refused fork."""
    base = "/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN), timeout=60) as http:
        src = ok(http.post(base, json={"name": "err-src"}))
        ok(http.post(base, json={"name": "err-taken"}))
        fork = f"{base}/{src['id']}/fork"
        counted = f"{base[: -len('/collections')]}/collections_count"
        before = ok(http.get(counted))
        duplicate = http.post(base, json={"name": "err-taken"})
        assert_error(http.post(fork, json={"new_name": "err-taken"}), 409)
        assert (
            http.post(fork, json={"new_name": "err-taken"}).json()["error"]
            == (duplicate.json()["error"])
        )
        missing = f"{base}/00000000-0000-4000-8000-000000000000/fork"
        assert_error(http.post(missing, json={"new_name": "err-new"}), 404, "NotFoundError")
        for bad in ("a", "has space", "-start", "1.2.3.4"):
            assert_error(http.post(fork, json={"new_name": bad}), 400, "InvalidArgumentError")
        assert_error(http.post(fork, json={}), None)
        assert_error(http.post(fork, json={"new_name": 5}), None)
        assert ok(http.get(counted)) == before
    import chromadb.errors

    theirs = chroma_client(server.port, settings=token_settings(ADMIN))
    with pytest.raises(chromadb.errors.InvalidArgumentError):
        theirs.get_collection("err-src").fork("a")
    gone = theirs.create_collection("err-gone")
    theirs.delete_collection("err-gone")
    with pytest.raises(chromadb.errors.NotFoundError):
        gone.fork("err-new")


def test_fork_respects_tenant_scoped_tokens(server: RunningServer) -> None:
    """A token limited to db_one forks there; in db_two (another database) it gets 403 and
    nothing is created."""
    db = "/api/v2/tenants/default_tenant/databases"
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN), timeout=60) as admin:
        two = ok(admin.post(f"{db}/db_two/collections", json={"name": "scoped-src"}))
        with httpx.Client(base_url=server.url, headers=bearer(SCOPED), timeout=60) as scoped:
            one = ok(scoped.post(f"{db}/db_one/collections", json={"name": "scoped-src"}))
            url = f"{db}/db_one/collections/{one['id']}/fork"
            assert ok(scoped.post(url, json={"new_name": "scoped-copy"}))["name"] == "scoped-copy"
            refused = scoped.post(
                f"{db}/db_two/collections/{two['id']}/fork", json={"new_name": "stolen"}
            )
            assert_error(refused, 403)
            # The collection of db_two named under db_one's path: not there (404).
            elsewhere = scoped.post(
                f"{db}/db_one/collections/{two['id']}/fork", json={"new_name": "stolen"}
            )
            assert_error(elsewhere, 404, "NotFoundError")
        names = {c["name"] for c in ok(admin.get(f"{db}/db_two/collections"))}
        assert names == {"scoped-src"}


# ------------------------------------------------------------------ concurrent writers


def start_writer(store: StoreTarget, data: Path, **args: Any) -> subprocess.Popen:
    """This module as a writer process (`write_batches`) on the store."""
    spec = json.dumps({"path": str(data), "settings": store.settings, **args})
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), spec],
        env=child_env(),
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err


def batch_vectors(prefix: str, batch: int, size: int) -> np.ndarray:
    seed = sum(map(ord, prefix)) * 10_000 + batch
    return np.random.default_rng(seed).standard_normal((size, DIM)).astype(np.float32)


def write_batches(
    path: str,
    settings: dict[str, Any],
    collection: str,
    prefix: str,
    batches: int,
    size: int,
    pause: float = 0.0,
    other: str = "",
) -> None:
    """Upsert `batches` batches of `size` new records (metadata `batch`). With `other`: after
    each batch, fail if a record of `other` shows up (by filter or query); at the end update
    `r001` (document `prefix`) and delete `r002`."""
    client = huedb.PersistentClient(path=path, settings=huedb.Settings(**settings))
    col = client.get_collection(collection, embedding_function=None)
    for b in range(batches):
        ids = [f"{prefix}-{b}-{i}" for i in range(size)]
        vectors = batch_vectors(prefix, b, size)
        metadatas: list[dict[str, Any]] = [{"batch": b}] * size
        if not other:  # the same upsert also rewrites r000: {"last": b}
            ids, vectors = [*ids, "r000"], np.vstack([vectors, np.ones((1, DIM), np.float32)])
            metadatas = [*metadatas, {"last": b}]
        col.upsert(ids=ids, embeddings=vectors, metadatas=metadatas)
        if other:
            seen = col.get(where={"batch": {"$gte": 0}})["ids"]
            assert not any(i.startswith(f"{other}-") for i in seen), seen
            near = col.query(query_embeddings=batch_vectors(other, b, 1), n_results=3)["ids"][0]
            assert not any(i.startswith(f"{other}-") for i in near), near
        time.sleep(pause)
    if other:
        col.update(ids=["r001"], embeddings=batch_vectors(prefix, -1, 1), documents=[prefix])
        col.delete(ids=["r002"])
    client.close()


def test_two_processes_write_source_and_fork_apart(store: StoreTarget, tmp_path: Path) -> None:
    """Acceptance 5: after a fork, one process writes to the source and another to the fork
    at the same time; neither sees the other's writes, this process's index of each catches
    up with exactly its own collection's writes, and `huedb verify` passes."""
    data = tmp_path / "data"
    client = store.client(data)
    source = client.create_collection("src", embedding_function=None)
    source.add(**seed_records())
    fork = source.fork("frk")
    probe = batch_vectors("frk", 3, 1)
    fork.query(query_embeddings=probe, n_results=1)  # this process holds both indexes
    source.query(query_embeddings=probe, n_results=1)
    writers = [
        start_writer(store, data, collection="src", prefix="a", other="b", batches=8, size=20),
        start_writer(store, data, collection="frk", prefix="b", other="a", batches=8, size=20),
    ]
    for w in writers:
        finish(w)
    original = set(seed_records()["ids"]) - {"r002"}
    for col, mine in ((source, "a"), (fork, "b")):
        ids = set(col.get()["ids"])
        assert ids == original | {f"{mine}-{b}-{i}" for b in range(8) for i in range(20)}
        assert col.get(ids=["r001"], include=["documents"])["documents"] == [mine]
        near = col.query(query_embeddings=batch_vectors(mine, 3, 1), n_results=1)["ids"]
        assert near == [[f"{mine}-3-0"]]
    client.close()
    check_cli("verify", "--path", str(data), *store.cli_args())


def test_fork_racing_a_writer_holds_whole_batches(store: StoreTarget, tmp_path: Path) -> None:
    """Forks taken while another process upserts batches (new records plus a rewrite of
    r000): each fork holds every record of a batch (ids, vectors, filterable metadata) or
    none of it, later batches never, and r000 as the last batch it holds left it."""
    data = tmp_path / "data"
    client = store.client(data)
    source = client.create_collection("raced", embedding_function=None)
    source.add(**seed_records(4))
    batches, size = 40, 25
    writer = start_writer(
        store, data, collection="raced", prefix="w", batches=batches, size=size, pause=0.01
    )
    forks = []
    while writer.poll() is None and len(forks) < 12:
        if source.count() > 4:
            forks.append(source.fork(f"raced-{len(forks)}"))
        time.sleep(0.05)
    finish(writer)
    held = []
    for fork in forks:
        got = fork.get(where={"batch": {"$gte": 0}}, include=["embeddings", "metadatas"])
        by_batch: dict[int, list[str]] = {}
        for rid, meta, vector in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
            b = meta["batch"]
            assert rid.startswith(f"w-{b}-")
            i = int(rid.rsplit("-", 1)[1])
            assert (
                np.asarray(vector, dtype=np.float32).tobytes()
                == batch_vectors("w", b, size)[i].tobytes()
            )
            by_batch.setdefault(b, []).append(rid)
        assert all(len(v) == size for v in by_batch.values()), {
            b: len(v) for b, v in by_batch.items()
        }
        assert sorted(by_batch) == list(range(len(by_batch)))  # a prefix of the batches
        assert fork.count() == 4 + size * len(by_batch)
        if by_batch:  # r000 as the same upsert left it, in its JSON and its filter rows
            last = len(by_batch) - 1
            assert fork.get(ids=["r000"])["metadatas"][0]["last"] == last
            assert fork.get(where={"last": last})["ids"] == ["r000"]
        held.append(len(by_batch))
    assert any(0 < n < batches for n in held), held  # some fork really raced the writer
    client.close()
    check_cli("verify", "--path", str(data), *store.cli_args())


if __name__ == "__main__":
    write_batches(**json.loads(sys.argv[1]))
