"""`huedb run --workers 2`: two processes serve one data directory consistently.

Acceptance: writes through one connection are visible at once to requests served by the
other worker, and two clients writing concurrently lose nothing.

Which worker serves a connection is found out, not guessed: after a request on a kept-alive
connection, the server side of that TCP connection (from /proc/net/tcp) is an open file of
exactly one worker process (/proc/<pid>/fd). Tests pin one connection to each worker and
write through one while reading through the other. A second variant uses a new connection
per request (no keep-alive), as ordinary clients behind a load balancer would.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers import RunningServer, huedb_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DIM = 16


def socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server-side socket of the TCP connection from `client_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port and fields[9] != "0":
                return fields[9]
    return None


def serving_worker(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The worker pid holding the server side of the connection from `client_port`."""
    inode = socket_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    owners = []
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(fd_dir / fd) == target:
                    owners.append(pid)
                    break
            except OSError:
                continue
    assert len(owners) <= 1, f"connection held by several workers: {owners}"
    return owners[0] if owners else None


class PinnedConnection:
    """One kept-alive HTTP connection; it fails rather than silently reconnecting."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.connect()
        self.sock = self.conn.sock
        self.local_port: int = self.sock.getsockname()[1]
        self.server_port = port
        self.worker: int | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request on this very connection and return (status, JSON body)."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        assert self.conn.sock is self.sock, "the connection was re-opened"
        return response.status, json.loads(data)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """The JSON answer of a request that must succeed with `status`."""
        got, data = self.call(method, path, body)
        assert got == status, (method, path, got, data)
        return data

    def close(self) -> None:
        self.conn.close()


def connections_per_worker(server: RunningServer, pids: list[int]) -> dict[int, PinnedConnection]:
    """Open connections until each worker serves one of them; close the spare ones."""
    pinned: dict[int, PinnedConnection] = {}
    spare: list[PinnedConnection] = []
    for _ in range(200):
        conn = PinnedConnection(server.port)
        conn.ok("GET", "/api/v2/heartbeat")
        worker = serving_worker(server.port, conn.local_port, pids)
        assert worker is not None, "the connection is not held by any worker"
        if worker in pinned:
            spare.append(conn)
        else:
            conn.worker = worker
            pinned[worker] = conn
        if len(pinned) == len(pids):
            break
    for conn in spare:
        conn.close()
    assert sorted(pinned) == pids, f"only workers {sorted(pinned)} of {pids} took connections"
    return pinned


@dataclass
class WorkersServer:
    """A server with two workers and their pids."""

    server: RunningServer
    pids: list[int]


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersServer]:
    """`huedb run --workers 2` on a fresh directory."""
    data = tmp_path_factory.mktemp("workers") / "data"
    with huedb_server(data, "--workers", "2") as server:
        pids = server.worker_pids(2)
        yield WorkersServer(server, pids)
        assert server.process.poll() is None
        assert all(Path(f"/proc/{pid}").exists() for pid in pids), "a worker died"
        assert "unhandled error" not in server.log()


def vector(i: int, seed: int = 0) -> list[float]:
    """A distinct float32-representable vector for record `i`."""
    rng = np.random.default_rng([seed, i])
    return [float(x) for x in rng.standard_normal(DIM).astype(np.float32)]


def test_two_distinct_workers_serve_requests(workers_server: WorkersServer) -> None:
    """There are two worker processes, and each one accepts connections."""
    pids = workers_server.pids
    assert len(pids) == 2 and pids[0] != pids[1]
    pinned = connections_per_worker(workers_server.server, pids)
    for worker, conn in pinned.items():
        for _ in range(5):
            conn.ok("GET", "/api/v2/version")
        assert serving_worker(conn.server_port, conn.local_port, pids) == worker
        conn.close()


def test_writes_on_one_worker_are_visible_on_the_other_at_once(
    workers_server: WorkersServer,
) -> None:
    """Alternating writer/reader workers: each acknowledged write is seen by the next read."""
    server, pids = workers_server.server, workers_server.pids
    first, second = connections_per_worker(server, pids).values()
    assert first.worker != second.worker
    pairs = [(first, second), (second, first)]

    # Collections: create on one worker, use it on the other at once.
    col = first.ok("POST", f"{DB}/collections", {"name": "pinned", "metadata": {"v": 0}})
    path = f"{DB}/collections/{col['id']}"
    assert second.ok("GET", f"{DB}/collections/pinned")["id"] == col["id"]

    n = 200
    for i in range(n):
        writer, reader = pairs[i % 2]
        rid = f"pin-{i}"
        writer.ok(
            "POST",
            f"{path}/add",
            {"ids": [rid], "embeddings": [vector(i)], "metadatas": [{"i": i, "v": 0}]},
            status=201,
        )
        got = reader.ok("POST", f"{path}/get", {"ids": [rid], "include": ["metadatas"]})
        assert got["ids"] == [rid] and got["metadatas"] == [{"i": i, "v": 0}], (i, got)
        res = reader.ok(
            "POST",
            f"{path}/query",
            {"query_embeddings": [vector(i)], "n_results": 1, "include": ["distances"]},
        )
        assert res["ids"] == [[rid]] and res["distances"][0][0] < 1e-4, (i, res)
        assert reader.ok("GET", f"{path}/count") == i + 1

    # Updates, upserts and deletes are seen by the other worker at once, too.
    for i in range(0, n, 10):
        writer, reader = pairs[(i // 10) % 2]
        rid = f"pin-{i}"
        writer.ok("POST", f"{path}/update", {"ids": [rid], "metadatas": [{"v": 1}]})
        got = reader.ok("POST", f"{path}/get", {"ids": [rid], "include": ["metadatas"]})
        assert got["metadatas"] == [{"i": i, "v": 1}], (i, got)
        moved = [-x for x in vector(i)]
        writer.ok("POST", f"{path}/upsert", {"ids": [rid], "embeddings": [moved]})
        res = reader.ok(
            "POST",
            f"{path}/query",
            {"query_embeddings": [moved], "n_results": 1, "include": ["distances"]},
        )
        assert res["ids"] == [[rid]] and res["distances"][0][0] < 1e-4, (i, res)
        assert writer.ok("POST", f"{path}/delete", {"ids": [rid]}) == {"deleted": 1}
        assert reader.ok("POST", f"{path}/get", {"ids": [rid]})["ids"] == []
        res = reader.ok("POST", f"{path}/query", {"query_embeddings": [moved], "n_results": 1})
        assert res["ids"][0] != [rid]
    deleted = n // 10
    assert first.ok("GET", f"{path}/count") == second.ok("GET", f"{path}/count") == n - deleted
    where = {"v": 1}
    assert second.ok("POST", f"{path}/get", {"where": where})["ids"] == []
    assert len(first.ok("POST", f"{path}/get", {"where": {"v": 0}})["ids"]) == n - deleted

    # Collection metadata, rename and deletion cross over as well.
    first.ok("PUT", path, {"new_metadata": {"v": 1}, "new_name": "pinned2"})
    assert second.ok("GET", f"{DB}/collections/by-id/{col['id']}")["metadata"] == {"v": 1}
    assert second.call("GET", f"{DB}/collections/pinned")[0] == 404
    second.ok("DELETE", f"{DB}/collections/pinned2")
    status, body = first.call("POST", f"{path}/get", {})
    assert status == 404, body
    assert first.ok("GET", f"{DB}/collections_count") == 0
    first.close()
    second.close()


def test_fresh_connections_read_their_own_writes(workers_server: WorkersServer) -> None:
    """A new connection per request (spread over both workers) always sees prior writes."""
    url = workers_server.server.url
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=no_keepalive, timeout=60) as client:
        col = client.post(f"{DB}/collections", json={"name": "fresh"}).json()
        path = f"{DB}/collections/{col['id']}"
        for i in range(200):
            rid = f"fresh-{i}"
            r = client.post(f"{path}/add", json={"ids": [rid], "embeddings": [vector(i, 1)]})
            assert r.status_code == 201, r.text
            got = client.post(f"{path}/get", json={"ids": [rid]}).json()
            assert got["ids"] == [rid], (i, got)
            res = client.post(
                f"{path}/query",
                json={"query_embeddings": [vector(i, 1)], "n_results": 1, "include": []},
            ).json()
            assert res["ids"] == [[rid]], (i, res)
            assert client.get(f"{path}/count").json() == i + 1
        client.delete(f"{DB}/collections/fresh")


def ids_and_vectors(prefix: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`n` ids and distinct float32 vectors for one writer."""
    vecs = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [f"{prefix}-{i}" for i in range(n)], vecs


@pytest.mark.parametrize("mode", ["pinned", "fresh"])
def test_two_concurrent_writers_lose_nothing(workers_server: WorkersServer, mode: str) -> None:
    """Two clients add 3,000 ids each in batches of 100 at once; all 6,000 are there.

    `pinned`: each writer keeps one connection, and the two are served by different workers.
    `fresh`: each writer opens a new connection per request.
    """
    server, pids = workers_server.server, workers_server.pids
    n_each, batch = 3000, 100
    name = f"concurrent_{mode}"
    with httpx.Client(base_url=server.url, timeout=120) as admin:
        cid = admin.post(f"{DB}/collections", json={"name": name}).json()["id"]
    path = f"{DB}/collections/{cid}"
    writers = {p: ids_and_vectors(p, n_each, seed) for p, seed in (("w1", 11), ("w2", 22))}
    barrier = threading.Barrier(2)
    errors: list[str] = []
    acked: dict[str, int] = {}
    pinned = list(connections_per_worker(server, pids).values()) if mode == "pinned" else []

    def write(prefix: str, index: int) -> None:
        ids, vecs = writers[prefix]
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        client = httpx.Client(base_url=server.url, limits=no_keepalive, timeout=120)
        try:
            barrier.wait(timeout=30)
            for start in range(0, n_each, batch):
                body = {
                    "ids": ids[start : start + batch],
                    "embeddings": vecs[start : start + batch].tolist(),
                    "metadatas": [{"w": prefix, "n": start + k} for k in range(batch)],
                }
                if pinned:
                    status, answer = pinned[index].call("POST", f"{path}/add", body)
                else:
                    r = client.post(f"{path}/add", json=body)
                    status, answer = r.status_code, r.json()
                if status != 201:
                    errors.append(f"{prefix} batch {start}: {status} {answer}")
                    return
                acked[prefix] = start + batch
        except Exception as exc:  # reported by the main thread
            errors.append(f"{prefix}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=write, args=(p, i)) for i, p in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert not errors, errors
    assert acked == {"w1": n_each, "w2": n_each}

    all_ids = [i for ids, _ in writers.values() for i in ids]
    all_vecs = np.vstack([vecs for _, vecs in writers.values()])
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, limits=no_keepalive, timeout=120) as client:
        for _ in range(4):  # fresh connections: both workers answer the count
            assert client.get(f"{path}/count").json() == 2 * n_each
        listed = client.post(f"{path}/get", json={"include": []}).json()["ids"]
        assert len(listed) == 2 * n_each and set(listed) == set(all_ids)
        for start in range(0, len(all_ids), 1000):
            chunk = all_ids[start : start + 1000]
            got = client.post(
                f"{path}/get", json={"ids": chunk, "include": ["embeddings", "metadatas"]}
            ).json()
            by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
            assert set(by_id) == set(chunk)
            want = all_vecs[start : start + 1000]
            # written in float32's shortest decimals (as Chroma writes them): the same float32s
            got_vecs = np.array([by_id[i] for i in chunk], dtype=np.float32)
            np.testing.assert_array_equal(got_vecs, want)
        misses = []
        for start in range(0, len(all_ids), 500):
            res = client.post(
                f"{path}/query",
                json={
                    "query_embeddings": all_vecs[start : start + 500].tolist(),
                    "n_results": 1,
                    "include": ["distances"],
                },
            ).json()
            for k, (got_ids, dists) in enumerate(zip(res["ids"], res["distances"], strict=True)):
                want_id = all_ids[start + k]
                if got_ids != [want_id] or dists[0] > 1e-4:
                    misses.append(f"{want_id} -> {got_ids} {dists}")
        assert not misses, misses[:20]
        client.delete(f"{DB}/collections/{name}")
    for conn in pinned:
        conn.close()
