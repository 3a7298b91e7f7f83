"""Wire error names: the real `chromadb.HttpClient` raises the same class from huedb as from Chroma.

One table: every error huedb can return over HTTP, each triggered through the real client (or
a raw request mapped by the client's own `_raise_chroma_error` where the client refuses the
call before sending it). Each row records the class and status; rows Chroma shares are also
run against a real `chroma run` server, so the recorded expectation is Chroma's observed one.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.cli import REPO_ROOT, child_env
from tests.http_checks import ADMIN, READER, TOKENS_ENV, WRONG, chroma_client, token_settings
from tests.servers import free_port, huedb_server, wait_until_up

DB = "/api/v2/tenants/default_tenant/databases/default_database"


@dataclass
class Target:
    """One server under test: its client factory and a raw HTTP client with the same token."""

    port: int
    token: str | None

    def client(self, token: str | None = "default") -> Any:
        token = self.token if token == "default" else token
        return chroma_client(self.port, settings=token_settings(token) if token else {})

    def http(self, token: str | None = "default") -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=headers, timeout=60)


def status_of(client: Any) -> list[int]:
    """Statuses of the responses the client receives from now on (last one = the error's)."""
    seen: list[int] = []
    sessions = {id(s): s for s in (client._server._session, client._admin_client._server._session)}
    for session in sessions.values():
        session.event_hooks["response"].append(lambda r: seen.append(r.status_code))
    return seen


def raise_from(response: httpx.Response) -> None:
    """Raise what `chromadb.HttpClient` raises for this response."""
    from chromadb.api.base_http_client import BaseHTTPClient

    BaseHTTPClient._raise_chroma_error(response)


def name() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def new_collection(client: Any, dim: int | None = 2) -> Any:
    col = client.create_collection(name(), embedding_function=None)
    if dim:
        col.add(ids=["a"], embeddings=[[0.0] * dim])
    return col


Outcome = tuple[str, int | None]


def outcome(action: Callable[[], Any], statuses: list[int]) -> Outcome:
    """The class name the call raises (it must raise) and the last response's status."""
    with pytest.raises(Exception) as caught:
        action()
    return type(caught.value).__name__, (statuses[-1] if statuses else None)


def raw(
    method: str, path: str, token: str | None = "default", **kwargs: Any
) -> Callable[[Target], Outcome]:
    """A request sent raw (the client refuses it before sending), mapped by the client's rule."""

    def run(target: Target) -> Outcome:
        col = new_collection(target.client())
        with target.http(token) as http:
            response = http.request(method, path.format(DB=DB, cid=col.id), **kwargs)
        return outcome(lambda: raise_from(response), [response.status_code])

    return run


def via_client(
    action: Callable[[Any], Any], token: str | None = "default"
) -> Callable[[Target], Outcome]:
    """A call through the real `chromadb.HttpClient`."""

    def run(target: Target) -> Outcome:
        client = target.client(token)
        return outcome(lambda: action(client), status_of(client))

    return run


def create_twice(client: Any) -> None:
    """Create a collection, then one of the same name (the server holds no other case's
    collections to rely on: cases run on several workers, in any order)."""
    taken = client.create_collection(name()).name
    client.create_collection(taken)


def rename_onto_existing(client: Any) -> None:
    other = client.create_collection(name())
    client.create_collection(name()).modify(name=other.name)


def dimension_mismatch(client: Any) -> None:
    new_collection(client, 2).add(ids=["b"], embeddings=[[1.0, 2.0, 3.0]])


def missing_collection_id(client: Any) -> None:
    col = new_collection(client)
    client.delete_collection(col.name)
    col.count()


def existing_tenant(admin: Any) -> None:
    tenant = name()
    admin.create_tenant(tenant)
    admin.create_tenant(tenant)


def admin_call(action: Callable[[Any], Any]) -> Callable[[Any], None]:
    def run(client: Any) -> None:
        action(client._admin_client)

    return run


def existing_database(admin: Any) -> None:
    db = name()
    admin.create_database(db)
    admin.create_database(db)


def bad_ids(client: Any) -> None:
    new_collection(client).add(ids=[""], embeddings=[[1.0, 2.0]])


def nan_embedding(client: Any) -> None:
    new_collection(client).add(ids=["b"], embeddings=[[float("nan"), 1.0]])


def too_big_batch(n: int) -> dict[str, Any]:
    return {"ids": [str(i) for i in range(n)], "embeddings": [[0.0, 1.0]] * n}


@dataclass
class Case:
    """One error: how to trigger it, the class and status expected (`huedb_status` where
    huedb deliberately answers another status with the same error name)."""

    id: str
    run: Callable[[Target], Outcome]
    error: str
    status: int | None
    huedb_status: int | None = None


CASES = [
    Case(
        "missing-collection",
        via_client(lambda c: c.get_collection("no-such-col")),
        "NotFoundError",
        404,
    ),
    Case(
        "delete-missing-collection",
        via_client(lambda c: c.delete_collection("no-such-col")),
        "NotFoundError",
        404,
    ),
    Case("missing-collection-id", via_client(missing_collection_id), "NotFoundError", 404),
    Case(
        "non-uuid-collection-id",
        raw("GET", "{DB}/collections/not-a-uuid/count"),
        "InvalidArgumentError",
        400,
    ),
    Case(
        "missing-tenant",
        via_client(admin_call(lambda a: a.get_tenant("no-such-tenant"))),
        "NotFoundError",
        404,
    ),
    Case(
        "missing-database",
        via_client(admin_call(lambda a: a.get_database("no-such-db"))),
        "NotFoundError",
        404,
    ),
    Case(
        "existing-collection",
        via_client(create_twice),
        "ChromaError",
        409,
    ),
    Case("existing-tenant", via_client(admin_call(existing_tenant)), "ChromaError", 409),
    Case("existing-database", via_client(admin_call(existing_database)), "ChromaError", 409),
    # Chroma answers 500; huedb 409 (a client conflict, not a server fault; no 5xx for a
    # client's mistake), with the same name, so the client raises the same class.
    Case("rename-onto-existing", via_client(rename_onto_existing), "InternalError", 500, 409),
    Case(
        "bad-collection-name",
        via_client(lambda c: c.create_collection("a")),
        "InvalidArgumentError",
        400,
    ),
    Case("bad-id", via_client(bad_ids), "InvalidArgumentError", 400),
    Case("dimension-mismatch", via_client(dimension_mismatch), "InvalidArgumentError", 400),
    Case(
        "bad-where",
        raw("POST", "{DB}/collections/{cid}/get", json={"where": {"a": {"$gt": "x"}}}),
        "InvalidArgumentError",
        400,
    ),
    Case(
        "bad-include",
        raw("POST", "{DB}/collections/{cid}/get", json={"include": ["nope"]}),
        "ChromaError",
        422,
    ),
    Case("reset-disabled", via_client(lambda c: c.reset()), "ChromaError", 403),
    Case(
        "search-group-by-without-rank",
        raw(
            "POST",
            "{DB}/collections/{cid}/search",
            json={
                "searches": [
                    {
                        "group_by": {
                            "keys": ["c"],
                            "aggregate": {"$min_k": {"keys": ["#score"], "k": 1}},
                        }
                    }
                ]
            },
        ),
        "InvalidArgumentError",
        400,
    ),
    Case("v1-route", raw("GET", "/api/v1/heartbeat"), "Exception", 410),
    Case("nan-embedding", via_client(nan_embedding), "InvalidArgumentError", 400),
]

HUEDB_ONLY = [
    # Chroma's server stores a batch with a repeated id; huedb refuses it as chromadb's client does.
    Case(
        "duplicate-ids",
        raw(
            "POST",
            "{DB}/collections/{cid}/add",
            json={"ids": ["x", "x"], "embeddings": [[0.0, 1.0]] * 2},
        ),
        "DuplicateIDError",
        400,
    ),
    Case("unauthorized", raw("GET", "{DB}/collections", token=WRONG), "AuthorizationError", 401),
    Case(
        "forbidden",
        via_client(lambda c: c.create_collection(name()), token=READER),
        "ChromaAuthError",
        403,
    ),
    Case(
        "body-too-large",
        raw(
            "POST",
            "{DB}/collections/{cid}/add",
            content=b"x" * 2_000_000,
            headers={"content-type": "application/json"},
        ),
        "ChromaError",
        413,
    ),
    Case(
        "batch-too-large",
        raw("POST", "{DB}/collections/{cid}/add", json=too_big_batch(5462)),
        "BatchSizeExceededError",
        413,
    ),
]


@pytest.fixture(scope="module")
def huedb_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """`huedb run` with tokens and a 1 MB body limit."""
    data = tmp_path_factory.mktemp("huedb") / "data"
    with huedb_server(data, "--max-body-bytes", "1000000", env=TOKENS_ENV) as server:
        yield Target(server.port, ADMIN)


@pytest.fixture(scope="module")
def chroma_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real `chroma run` server (chromadb's Rust server) on a free loopback port."""
    root = tmp_path_factory.mktemp("chroma")
    port = free_port()
    log_path = root / "chroma.log"
    cmd = [str(REPO_ROOT / ".venv/bin/chroma"), "run", "--path", str(root / "data")]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env({"ANONYMIZED_TELEMETRY": "False"}),
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log_path, timeout=60)
        yield Target(port, None)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        process.kill()
        process.wait()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_class_as_chroma(case: Case, huedb_target: Target, chroma_target: Target) -> None:
    """Chroma's server gives the recorded class and status, and so does huedb."""
    assert case.run(chroma_target) == (case.error, case.status), "chroma"
    assert case.run(huedb_target) == (case.error, case.huedb_status or case.status), "huedb"


@pytest.mark.parametrize("case", HUEDB_ONLY, ids=lambda c: c.id)
def test_huedb_only_errors(case: Case, huedb_target: Target) -> None:
    """Errors Chroma's single-node server has no counterpart for: the class chromadb maps."""
    assert case.run(huedb_target) == (case.error, case.status)


def test_every_wire_name_is_one_chromadb_maps() -> None:
    """No huedb error class writes a name chromadb's client would turn into a bare Exception."""
    from chromadb.errors import error_types

    import huedb.errors

    classes = [
        c
        for c in vars(huedb.errors).values()
        if isinstance(c, type) and issubclass(c, huedb.errors.ChromaError)
    ]
    assert len(classes) > 20
    assert {c.__name__: c.wire_name for c in classes if c.wire_name not in error_types} == {}
    for wire_name, cls in huedb.errors.error_types.items():
        assert error_types[wire_name].__name__ == cls.__name__ or wire_name == "InvalidDimension"
