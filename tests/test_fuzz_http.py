"""Fuzzing the HTTP API from its OpenAPI schema, plus hand-written hostile requests.

Acceptance: every operation in `/openapi.json` is fuzzed with schemathesis (positive and
negative generation) and a list of hostile requests is sent by hand (deeply nested
`where`, 10^5 ids, huge strings, odd unicode, path-encoded names, NaN, negative limits,
wrong content types, broken JSON, truncated base64). Across all of them:

* no response has a 5xx status, and every 4xx carries Chroma's JSON error body
  (`{"error": ..., "message": ...}`);
* the server never hangs (30 s per request) or dies: the heartbeat answers within 2 s
  after every batch;
* data is unchanged by every rejected request: a snapshot of the "pristine" data, taken
  through `huedb.HttpClient`, is compared after every rejected write aimed at it and at
  the end. Requests that may legitimately succeed and change data only ever target a
  separate scratch tenant.

One server (module fixture) serves every test. The numbers of requests sent and of 5xx
responses seen are printed at the end of the module and written to
`<pytest basetemp>/fuzz_http_report.json`. `HUEDB_FUZZ_EXAMPLES` (default 20) sets the
number of generated examples per operation and generation mode; `HUEDB_FUZZ_SEED` fixes
Hypothesis' seed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import huedb

try:
    from tests.servers import RunningServer, huedb_server
except ImportError:  # pragma: no cover - when run from inside tests/
    from servers import RunningServer, huedb_server  # type: ignore[no-redef]

EXAMPLES = int(os.environ.get("HUEDB_FUZZ_EXAMPLES", "20"))
SEED = os.environ.get("HUEDB_FUZZ_SEED")
REQUEST_TIMEOUT = 30.0
HEARTBEAT_TIMEOUT = 2.0
DIM = 8

PRISTINE_TENANT = "pristine_tenant"
PRISTINE_DB = "pristine_db"
SCRATCH_TENANT = "scratch_tenant"
SCRATCH_DB = "scratch_db"
SCRATCH_VICTIM_DB = "scratch_victim_db"
SCRATCH_COLLECTION = "scratch_main"
SCRATCH_VICTIM = "scratch_victim"
SCRATCH_ALIAS = "scratch_alias"
DEFAULT_PREFIX = "/api/v2/tenants/default_tenant/databases/default_database"
SCRATCH_PREFIX = f"/api/v2/tenants/{SCRATCH_TENANT}/databases/{SCRATCH_DB}"

# The lists of FuzzStats that must stay empty.
PROBLEM_LISTS = ("server_errors", "hangs", "bad_error_bodies", "data_changes", "accepted_invalid")
# Operations that cannot change data (POST /reset is refused: reset is not enabled).
READ_ONLY_POSTS = ("/get", "/query", "/admin/backup", "/reset")


# -- bookkeeping -------------------------------------------------------------------------


@dataclass
class FuzzStats:
    """What was sent and what came back, for the closing report."""

    schema_cases: int = 0
    hostile_cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    bad_error_bodies: list[str] = field(default_factory=list)
    data_changes: list[str] = field(default_factory=list)
    accepted_invalid: list[str] = field(default_factory=list)
    per_operation: Counter[str] = field(default_factory=Counter)
    hostile_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return self.schema_cases + self.hostile_cases

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def as_json(self) -> dict[str, Any]:
        return {
            "cases_sent": self.sent,
            "schema_cases": self.schema_cases,
            "hostile_cases": self.hostile_cases,
            "5xx_seen": self.five_xx,
            "hangs": len(self.hangs),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": self.server_errors,
            "hang_details": self.hangs,
            "bad_error_bodies": self.bad_error_bodies,
            "data_changes": self.data_changes,
            "accepted_invalid": self.accepted_invalid,
            "per_operation": dict(sorted(self.per_operation.items())),
            "hostile_statuses": self.hostile_statuses,
        }


@dataclass
class Target:
    """Path parameter values for one collection; read at draw time, so they stay live."""

    tenant: str
    database: str
    name: str
    collection_id: str = ""
    alias: str = ""

    def params_for(self, names: list[str]) -> dict[str, str] | None:
        """The values of `names`, or None when this target cannot fill all of them."""
        values = {
            "tenant": self.tenant,
            "database": self.database,
            "name": self.name,
            "collection_id": self.collection_id,
            "alias": self.alias,
        }
        if any(not values.get(n) for n in names):
            return None
        return {n: values[n] for n in names}


@dataclass
class FuzzEnv:
    """The running server, its schema, the pristine snapshot and the scratch targets."""

    server: RunningServer
    schema: Any
    session: requests.Session
    http: httpx.Client
    clients: dict[tuple[str, str], Any]
    pristine: list[Target]
    scratch: list[Target]
    scratch_victim_db: Target
    baseline: dict[str, Any]
    stats: FuzzStats
    ids: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url


def describe(method: str, path: str, body: Any, status: int | str, text: str) -> str:
    """A one-line reproduction of a request and what it got."""
    shown = body if isinstance(body, str | bytes) else json.dumps(body, default=repr)
    if len(shown) > 400:
        shown = shown[:400] + f"... ({len(shown)} chars)"
    return f"{method} {path} body={shown!r} -> {status} {text[:400]!r}"


def is_chroma_error(text: str) -> bool:
    """Whether a response body is Chroma's JSON error: an object with error and message."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("message"), str)
    )


# -- data --------------------------------------------------------------------------------


def vector(i: int, salt: int = 0) -> list[float]:
    """A deterministic embedding."""
    return [float(((i + 1) * (k + 3) + salt) % 17) / 17.0 + 0.01 for k in range(DIM)]


def populate(client: Any, name: str, n: int, salt: int, metadata: dict[str, Any]) -> Any:
    """A collection of `n` records with every kind of field filled in."""
    collection = client.create_collection(name, metadata=metadata)
    collection.add(
        ids=[f"{name}-{i:03d}" for i in range(n)],
        embeddings=[vector(i, salt) for i in range(n)],
        metadatas=[
            {"i": i, "f": i / 3, "even": i % 2 == 0, "s": f"val-{i}", "tag": "x" if i % 3 else "y"}
            for i in range(n)
        ],
        documents=[f"document {i} of {name} with words apple banana {i % 5}" for i in range(n)],
        uris=[f"file:///{name}/{i}" for i in range(n)],
    )
    return collection


def snapshot(clients: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Everything in the pristine databases: collections, aliases and full records."""
    out: dict[str, Any] = {}
    for (tenant, database), client in sorted(clients.items()):
        entry: dict[str, Any] = {
            "aliases": client.list_aliases(),
            "count": client.count_collections(),
            "collections": {},
        }
        for collection in client.list_collections():
            got = collection.get(include=["embeddings", "metadatas", "documents", "uris"])
            embeddings = got["embeddings"]
            records = {}
            for k, record_id in enumerate(got["ids"]):
                records[record_id] = (
                    [float(x) for x in embeddings[k]],
                    got["metadatas"][k],
                    got["documents"][k],
                    got["uris"][k],
                )
            entry["collections"][collection.name] = {
                "id": str(collection.id),
                "metadata": collection.metadata,
                "configuration": collection.configuration_json,
                "count": collection.count(),
                "records": records,
            }
        out[f"{tenant}/{database}"] = entry
    out["pristine_tenant_databases"] = sorted(
        d["name"] for d in clients[(PRISTINE_TENANT, PRISTINE_DB)].list_databases()
    )
    return out


def ensure_scratch(http: httpx.Client) -> dict[str, str]:
    """(Re)create the scratch tenant, databases, collections and alias; their ids by name."""
    http.post("/api/v2/tenants", json={"name": SCRATCH_TENANT})
    base = f"/api/v2/tenants/{SCRATCH_TENANT}/databases"
    for db in (SCRATCH_DB, SCRATCH_VICTIM_DB):
        if http.get(f"{base}/{db}").status_code != 200:
            response = http.post(base, json={"name": db})
            assert response.status_code == 200, response.text
    ids = {}
    for name in (SCRATCH_COLLECTION, SCRATCH_VICTIM):
        response = http.post(
            f"{SCRATCH_PREFIX}/collections", json={"name": name, "get_or_create": True}
        )
        assert response.status_code == 200, response.text
        ids[name] = response.json()["id"]
    http.post(
        f"{SCRATCH_PREFIX}/aliases", json={"name": SCRATCH_ALIAS, "collection": SCRATCH_VICTIM}
    )
    return ids


# -- fixture -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[FuzzEnv]:
    """One server over a populated database, shared by every test in this module."""
    root = tmp_path_factory.mktemp("fuzz_http")
    stats = FuzzStats()
    with huedb_server(root / "data") as server:
        default = huedb.HttpClient(host=server.url)
        alpha = populate(default, "pristine_alpha", 30, 0, {"kind": "alpha", "n": 1})
        beta = populate(default, "pristine_beta", 12, 5, {"kind": "beta", "ratio": 0.5})
        default.create_alias("pristine_alias", "pristine_alpha")
        default.create_tenant(PRISTINE_TENANT)
        default.create_database(PRISTINE_DB, tenant=PRISTINE_TENANT)
        other = huedb.HttpClient(host=server.url, tenant=PRISTINE_TENANT, database=PRISTINE_DB)
        gamma = populate(other, "pristine_gamma", 9, 11, {"kind": "gamma"})
        other.create_alias("pristine_gamma_alias", "pristine_gamma")
        clients = {
            ("default_tenant", "default_database"): default,
            (PRISTINE_TENANT, PRISTINE_DB): other,
        }
        http = httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT)
        scratch_ids = ensure_scratch(http)
        pristine = [
            Target(
                "default_tenant",
                "default_database",
                "pristine_alpha",
                str(alpha.id),
                "pristine_alias",
            ),
            Target("default_tenant", "default_database", "pristine_alias", str(alpha.id)),
            Target("default_tenant", "default_database", "pristine_beta", str(beta.id)),
            Target(
                PRISTINE_TENANT,
                PRISTINE_DB,
                "pristine_gamma",
                str(gamma.id),
                "pristine_gamma_alias",
            ),
        ]
        scratch = [
            Target(
                SCRATCH_TENANT,
                SCRATCH_DB,
                SCRATCH_VICTIM,
                scratch_ids[SCRATCH_COLLECTION],
                SCRATCH_ALIAS,
            )
        ]
        victim_db = Target(SCRATCH_TENANT, SCRATCH_VICTIM_DB, SCRATCH_VICTIM)
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)
        session = requests.Session()
        fuzz_env = FuzzEnv(
            server=server,
            schema=schema,
            session=session,
            http=http,
            clients=clients,
            pristine=pristine,
            scratch=scratch,
            scratch_victim_db=victim_db,
            baseline=snapshot(clients),
            stats=stats,
            ids={
                "alpha": str(alpha.id),
                "beta": str(beta.id),
                "gamma": str(gamma.id),
                **scratch_ids,
            },
        )
        try:
            yield fuzz_env
        finally:
            session.close()
            http.close()
            report(request, tmp_path_factory, stats)


def report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stats: FuzzStats
) -> None:
    """Print the closing numbers and write them as JSON under the pytest temp dir."""
    path = Path(tmp_path_factory.getbasetemp()) / "fuzz_http_report.json"
    path.write_text(json.dumps(stats.as_json(), indent=2))
    line = (
        f"fuzz_http: {stats.sent} cases sent ({stats.schema_cases} schema-generated, "
        f"{stats.hostile_cases} hostile), {stats.five_xx} 5xx seen, {len(stats.hangs)} hangs; "
        f"report: {path}"
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    disabled = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with disabled:
        print(f"\n{line}", flush=True)


# -- liveness and data checks ------------------------------------------------------------


def assert_alive(env: FuzzEnv, after: str) -> None:
    """The server process runs and its heartbeat answers within 2 s."""
    if env.server.process.poll() is not None:
        pytest.fail(f"server died (exit {env.server.process.returncode}) after {after}")
    started = time.monotonic()
    try:
        response = httpx.get(f"{env.url}/api/v2/heartbeat", timeout=HEARTBEAT_TIMEOUT)
    except httpx.HTTPError as exc:
        pytest.fail(f"heartbeat failed after {after}: {exc!r}")
    elapsed = time.monotonic() - started
    assert response.status_code == 200, f"heartbeat {response.status_code} after {after}"
    assert elapsed < HEARTBEAT_TIMEOUT, f"heartbeat took {elapsed:.2f}s after {after}"


def check_unchanged(env: FuzzEnv, after: str) -> None:
    """Record (and re-baseline) when the pristine data differs from the baseline."""
    now = snapshot(env.clients)
    if now != env.baseline:
        changed = sorted(
            k for k in set(now) | set(env.baseline) if now.get(k) != env.baseline.get(k)
        )
        env.stats.data_changes.append(f"{after} changed {changed}")
        env.baseline = now


def classify(env: FuzzEnv, label: str, status: int, text: str, where: str) -> None:
    """Count a response and record a 5xx or a 4xx without Chroma's error body."""
    env.stats.statuses[status] += 1
    env.stats.per_operation[label] += 1
    if status >= 500:
        env.stats.server_errors.append(where)
    elif status >= 400 and not is_chroma_error(text):
        env.stats.bad_error_bodies.append(where)


def assert_clean(env: FuzzEnv, since: dict[str, int]) -> None:
    """Fail listing every new 5xx, hang, bad error body or data change since `since`."""
    problems = []
    for name in PROBLEM_LISTS:
        new = getattr(env.stats, name)[since[name] :]
        problems.extend(f"{name}: {p}" for p in new)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def marks(env: FuzzEnv) -> dict[str, int]:
    """Current lengths of the problem lists, to see what a test added."""
    return {name: len(getattr(env.stats, name)) for name in PROBLEM_LISTS}


# -- schema fuzzing ----------------------------------------------------------------------


def operations(env: FuzzEnv) -> list[Any]:
    """Every operation of the schema."""
    return [result.ok() for result in env.schema.get_all_operations()]


def is_write(operation: Any) -> bool:
    """Whether an operation may change data when it succeeds."""
    method = operation.method.upper()
    if method == "GET":
        return False
    if operation.path.startswith("/api/v1/"):
        return False  # gone: always 410
    return not (method == "POST" and operation.path.endswith(READ_ONLY_POSTS))


def path_names(operation: Any) -> list[str]:
    """Names of an operation's path parameters."""
    return [p.name for p in operation.path_parameters]


def pinned_strategy(operation: Any, mode: GenerationMode, targets: list[Target]) -> Any:
    """Cases whose path parameters name one of `targets`, read when each case is drawn."""
    names = path_names(operation)
    usable = [t for t in targets if t.params_for(names) is not None]
    if not names or not usable:
        return None
    return st.sampled_from(usable).flatmap(
        lambda t: operation.as_strategy(generation_mode=mode, path_parameters=t.params_for(names))
    )


def fuzz(
    env: FuzzEnv,
    operation: Any,
    mode: GenerationMode,
    strategy: Any,
    *,
    after_case: Callable[[Any, int], None] | None = None,
    examples: int = EXAMPLES,
) -> int:
    """Send `examples` generated cases; record statuses; return how many were sent."""
    sent = 0

    def run_case(case: Any) -> None:
        nonlocal sent
        where = f"{case.method} {case.formatted_path} query={case.query!r}"
        sent += 1
        env.stats.schema_cases += 1
        try:
            response = case.call(base_url=env.url, session=env.session, timeout=REQUEST_TIMEOUT)
        except requests.exceptions.Timeout:
            env.stats.hangs.append(describe(case.method, where, _body_of(case), "timeout", ""))
            return
        except requests.exceptions.ConnectionError as exc:
            env.stats.hangs.append(
                describe(case.method, where, _body_of(case), "connection error", repr(exc))
            )
            if env.server.process.poll() is not None:
                raise AssertionError(f"server died on {where}\n{env.server.log()[-3000:]}") from exc
            return
        text = response.content.decode("utf-8", errors="replace")
        classify(
            env,
            f"{mode.value} {operation.label}",
            response.status_code,
            text,
            describe(case.method, where, _body_of(case), response.status_code, text),
        )
        if after_case is not None:
            after_case(case, response.status_code)

    settings_ = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    test = given(case=strategy)(run_case)
    test = settings_(test)
    if SEED is not None:
        test = seed(int(SEED))(test)
    with contextlib.suppress(Unsatisfiable):
        test()
    assert_alive(env, f"fuzzing {mode.value} {operation.label}")
    return sent


def _body_of(case: Any) -> Any:
    """The generated body, or an empty marker when there is none."""
    body = case.body
    return "<none>" if type(body).__name__ == "NotSet" else body


def test_fuzz_read_operations(env: FuzzEnv) -> None:
    """Every read-only operation, positive and negative, against random and pristine paths."""
    since = marks(env)
    sent = 0
    for operation in operations(env):
        if is_write(operation):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += fuzz(env, operation, mode, operation.as_strategy(generation_mode=mode))
            pinned = pinned_strategy(operation, mode, env.pristine)
            if pinned is not None:
                sent += fuzz(env, operation, mode, pinned)
    check_unchanged(env, "read-only fuzzing")
    assert sent > 0
    assert_clean(env, since)


def test_fuzz_rejected_writes_leave_pristine_data(env: FuzzEnv) -> None:
    """Invalid bodies for every write aimed at pristine data: 4xx each, data unchanged.

    After every rejected request the full pristine snapshot is compared; a negative
    (schema-invalid) case that the server accepts is reported as `accepted_invalid`.
    """
    since = marks(env)
    sent = 0
    for operation in operations(env):
        if not is_write(operation):
            continue
        mode = GenerationMode.NEGATIVE
        strategy = pinned_strategy(operation, mode, env.pristine)
        if strategy is None and not path_names(operation):
            strategy = operation.as_strategy(generation_mode=mode)
        if strategy is None:
            continue

        def after_case(case: Any, status: int, label: str = operation.label) -> None:
            where = (
                f"{label}: {describe(case.method, case.formatted_path, _body_of(case), status, '')}"
            )
            if 200 <= status < 300:
                env.stats.accepted_invalid.append(where)
            check_unchanged(env, where)

        sent += fuzz(env, operation, mode, strategy, after_case=after_case)
    check_unchanged(env, "rejected-write fuzzing")
    assert sent > 0
    assert_clean(env, since)


def test_fuzz_writes_on_scratch(env: FuzzEnv) -> None:
    """Every write, positive and negative, on the scratch tenant only (and random paths).

    The scratch tenant is re-created after any request that succeeds, so deletes keep
    having something to delete; the pristine data must be unchanged at the end.
    """
    since = marks(env)
    sent = 0

    def after_case(case: Any, status: int) -> None:
        if 200 <= status < 300 and case.method.upper() != "GET":
            ids = ensure_scratch(env.http)
            env.scratch[0].collection_id = ids[SCRATCH_COLLECTION]

    for operation in operations(env):
        if not is_write(operation):
            continue
        names = path_names(operation)
        targets = env.scratch
        if names == ["tenant", "database"] and operation.method.upper() == "DELETE":
            targets = [env.scratch_victim_db]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            pinned = pinned_strategy(operation, mode, targets)
            if pinned is not None:
                sent += fuzz(env, operation, mode, pinned, after_case=after_case)
            # Random path parameters: names and ids that exist nowhere (or new tenants).
            sent += fuzz(env, operation, mode, operation.as_strategy(generation_mode=mode))
    check_unchanged(env, "scratch write fuzzing")
    assert sent > 0
    assert_clean(env, since)


# -- hand-written hostile requests -------------------------------------------------------

Body = bytes | Callable[[], bytes] | None


@dataclass(frozen=True)
class Hostile:
    """One hand-written request; `{A}`, `{B}`, `{S}` in the path are collection routes."""

    name: str
    method: str
    path: str
    body: Body = None
    # "4xx", "2xx" or "any" (2xx or 4xx are both legitimate). A trailing "/" (or %2F) is a
    # 404: huedb turns off Starlette's slash redirect, which would let a client that follows
    # redirects delete `name` when it asked for `name/`.
    expect: str = "4xx"
    content_type: str | None = "application/json"
    # When it legitimately succeeds it may change the pristine data (e.g. update of one
    # existing and one missing id); a 4xx must still leave the data unchanged.
    may_change: bool = False


def j(value: Any) -> bytes:
    """JSON bytes; NaN/Infinity literals allowed, non-ASCII kept as \\u escapes."""
    return json.dumps(value, allow_nan=True).encode()


def nested(depth: int, inner: str, op: str = "$and", sibling: str = '{"nokey": "y"}') -> str:
    """`{op: [{op: [... inner ..., sibling]}, sibling]}` nested `depth` deep, as JSON text."""
    return f'{{"{op}": [' * depth + inner + f", {sibling}]}}" * depth


def where_body(where_json: str, extra: str = '"include": []') -> bytes:
    """A get/delete/query body around a `where` given as JSON text."""
    return f'{{"where": {where_json}, {extra}}}'.encode()


def where_doc_body(where_json: str) -> bytes:
    """A get body around a `where_document` given as JSON text."""
    return f'{{"where_document": {where_json}, "include": []}}'.encode()


def add_body(ids: list[str], **fields: Any) -> dict[str, Any]:
    """An add/upsert body with one valid embedding per id, plus `fields`."""
    body: dict[str, Any] = {"ids": ids, "embeddings": [vector(i) for i in range(len(ids))]}
    body.update(fields)
    return body


def big(n: int) -> str:
    """A string of `n` characters."""
    return "x" * n


MB = 1024 * 1024
NO_MATCH = '{"nokey": "x"}'
NO_MATCH_DOC = '{"$contains": "zzz-no-such-text"}'
ODD = {
    "rtl": "\u202eevil\u202c",
    "zero_width": "a\u200b\u200c\u200d\ufeffb",
    "emoji": "\U0001f600\U0001f9d1\u200d\U0001f680",
    "nul": "a\x00b",
    "lone_surrogate": "\ud800x",
    "combining": "e\u0301\u0301\u0301",
    "nonchar": "\uffff\U0010ffff",
}

HOSTILE: list[Hostile] = [
    # deeply nested filters (pristine; they match nothing, so delete may legitimately succeed)
    *[
        Hostile(
            f"where_depth_{d}_{route}",
            "POST",
            f"{{A}}/{route}",
            where_body(nested(d, NO_MATCH)),
            "any",
        )
        for d in (1000, 10_000)
        for route in ("get", "delete")
    ],
    *[
        Hostile(
            f"where_depth_{d}_query",
            "POST",
            "{A}/query",
            where_body(nested(d, NO_MATCH), f'"query_embeddings": [{vector(1)}]'),
            "any",
        )
        for d in (1000, 10_000)
    ],
    *[
        Hostile(
            f"where_document_depth_{d}",
            "POST",
            "{A}/get",
            where_doc_body(nested(d, NO_MATCH_DOC, sibling=NO_MATCH_DOC)),
            "any",
        )
        for d in (1000, 10_000)
    ],
    Hostile(
        "where_raw_list_depth_100000",
        "POST",
        "{A}/get",
        b'{"where": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    Hostile(
        "where_raw_dict_depth_100000",
        "POST",
        "{A}/get",
        b'{"where": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        "any",
    ),
    Hostile(
        "where_and_10000_clauses",
        "POST",
        "{A}/get",
        lambda: j({"where": {"$and": [{"i": {"$ne": -k}} for k in range(10_000)]}, "include": []}),
        "any",
    ),
    Hostile(
        "where_or_10000_clauses_delete",
        "POST",
        "{A}/delete",
        lambda: j({"where": {"$or": [{"s": f"none-{k}"} for k in range(10_000)]}}),
        "any",
    ),
    Hostile(
        "where_and_10000_clauses_query",
        "POST",
        "{A}/query",
        lambda: j(
            {
                "query_embeddings": [vector(4)],
                "where": {"$and": [{"i": {"$ne": -k}} for k in range(10_000)]},
            }
        ),
        "any",
    ),
    Hostile(
        "where_document_or_10000_clauses",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$or": [{"$contains": f"w{k}"} for k in range(10_000)]}}),
        "any",
    ),
    Hostile(
        "where_in_100000_values",
        "POST",
        "{A}/get",
        lambda: j({"where": {"s": {"$in": [f"v{k}" for k in range(100_000)]}}, "include": []}),
        "any",
    ),
    Hostile("where_unknown_operator", "POST", "{A}/delete", j({"where": {"i": {"$regex": ".*"}}})),
    Hostile("where_empty_and", "POST", "{A}/delete", j({"where": {"$and": []}})),
    Hostile("where_is_list", "POST", "{A}/delete", j({"where": [{"i": 1}]})),
    Hostile("where_document_bad_op", "POST", "{A}/delete", j({"where_document": {"$nope": "x"}})),
    # 10^5 ids
    Hostile(
        "get_100000_ids",
        "POST",
        "{A}/get",
        lambda: j({"ids": [f"missing-{k}" for k in range(100_000)], "include": []}),
        "2xx",
    ),
    Hostile(
        "delete_100000_missing_ids",
        "POST",
        "{A}/delete",
        lambda: j({"ids": [f"missing-{k}" for k in range(100_000)]}),
        "any",
    ),
    Hostile(
        "add_100000_ids_over_batch_limit",
        "POST",
        "{A}/add",
        lambda: j(add_body([f"new-{k}" for k in range(100_000)])),
    ),
    Hostile(
        "upsert_100000_ids_over_batch_limit",
        "POST",
        "{A}/upsert",
        lambda: j(
            {"ids": [f"new-{k}" for k in range(100_000)], "embeddings": [[0.5] * DIM] * 100_000}
        ),
    ),
    Hostile(
        "query_100000_ids_filter",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": [vector(2)], "ids": [f"m{k}" for k in range(100_000)]}),
        "any",
    ),
    # huge strings: valid ones go to scratch, invalid ones to pristine
    Hostile(
        "document_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-doc"], documents=[big(MB)])),
        "2xx",
    ),
    Hostile(
        "document_30mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["huge-doc"], documents=[big(30 * MB)])),
        "any",
    ),
    Hostile("id_1mb_scratch", "POST", "{S}/upsert", lambda: j(add_body([big(MB)])), "any"),
    Hostile("id_30mb_scratch", "POST", "{S}/upsert", lambda: j(add_body([big(30 * MB)])), "any"),
    Hostile(
        "metadata_value_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-md"], metadatas=[{"k": big(MB)}])),
        "any",
    ),
    Hostile(
        "metadata_key_1mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["big-key"], metadatas=[{big(MB): 1}])),
        "any",
    ),
    Hostile(
        "metadata_value_30mb_scratch",
        "POST",
        "{S}/upsert",
        lambda: j(add_body(["huge-md"], metadatas=[{"k": big(30 * MB)}])),
        "any",
    ),
    Hostile(
        "where_value_30mb",
        "POST",
        "{A}/get",
        lambda: j({"where": {"s": big(30 * MB)}, "include": []}),
        "2xx",
    ),
    Hostile(
        "where_document_1mb",
        "POST",
        "{A}/get",
        lambda: j({"where_document": {"$contains": big(MB)}}),
        "2xx",
    ),
    Hostile(
        "body_over_limit_50mb",
        "POST",
        "{A}/add",
        lambda: j(add_body(["x"], documents=[big(50 * MB)])),
        "4xx",
    ),
    Hostile(
        "collection_name_1mb", "POST", f"{SCRATCH_PREFIX}/collections", lambda: j({"name": big(MB)})
    ),
    Hostile("tenant_name_1mb", "POST", "/api/v2/tenants", lambda: j({"name": big(MB)}), "any"),
    Hostile(
        "collection_metadata_30mb_on_pristine_rename",
        "PUT",
        "{A}",
        lambda: j({"new_name": "bad/name", "new_metadata": {"k": big(30 * MB)}}),
    ),
    # odd unicode: names, ids, metadata keys (scratch) and filter keys (pristine)
    *[
        Hostile(
            f"collection_name_{k}",
            "POST",
            f"{SCRATCH_PREFIX}/collections",
            j({"name": f"c{v}c"}),
            "any",
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(f"id_{k}_scratch", "POST", "{S}/upsert", j(add_body([f"id{v}"])), "any")
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"metadata_key_{k}_scratch",
            "POST",
            "{S}/upsert",
            j(add_body([f"mk-{k}"], metadatas=[{f"k{v}": f"v{v}"}])),
            "any",
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"where_key_{k}", "POST", "{A}/get", j({"where": {f"k{v}": v}, "include": []}), "any"
        )
        for k, v in ODD.items()
    ],
    *[
        Hostile(
            f"document_{k}_scratch",
            "POST",
            "{S}/upsert",
            j(add_body([f"doc-{k}"], documents=[v])),
            "any",
        )
        for k, v in ODD.items()
    ],
    Hostile(
        "raw_invalid_utf8_in_id",
        "POST",
        "{A}/add",
        b'{"ids": ["a\xed\xa0\x80b"], "embeddings": [[1,2,3,4,5,6,7,8]]}',
    ),
    Hostile(
        "raw_latin1_bytes",
        "POST",
        "{A}/add",
        b'{"ids": ["\xff\xfe"], "embeddings": [[1,2,3,4,5,6,7,8]]}',
    ),
    Hostile("utf16_body", "POST", "{A}/get", '{"include": []}'.encode("utf-16"), "any"),
    Hostile("utf8_bom_body", "POST", "{A}/get", b"\xef\xbb\xbf" + j({"include": []}), "any"),
    Hostile(
        "lone_surrogate_id_pristine_mixed",
        "POST",
        "{A}/add",
        j(add_body(["ok-new-1", "bad\udfff"])),
        "any",
    ),
    # path-encoded names in collection, database and tenant routes
    *[
        Hostile(f"get_collection_name_{label}", "GET", f"{DEFAULT_PREFIX}/collections/{enc}")
        for label, enc in (
            ("slash", "pristine_alpha%2Fx"),
            ("nul", "pristine_alpha%00"),
            ("dotdot", ".."),
            ("dotdot_enc", "%2E%2E"),
            ("traversal", "..%2F..%2F..%2Fetc%2Fpasswd"),
            ("rtl", "%E2%80%AEpristine_alpha"),
            ("emoji", "%F0%9F%98%80"),
            ("surrogate_enc", "%ED%A0%80"),
            ("invalid_utf8", "%FF%FE"),
            ("percent", "%25"),
            ("long", "a" * 8000),
        )
    ],
    *[
        Hostile(f"delete_collection_name_{label}", "DELETE", f"{DEFAULT_PREFIX}/collections/{enc}")
        for label, enc in (
            ("nul", "pristine_alpha%00"),
            ("dotdot", "%2E%2E"),
            ("star", "%2A"),
            ("pct", "pristine%5Falpha%20"),
            ("invalid_utf8", "pristine_alpha%FF"),
        )
    ],
    Hostile(
        "delete_database_nul",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default_database%00",
    ),
    Hostile(
        "delete_collection_name_trailing_slash",
        "DELETE",
        f"{DEFAULT_PREFIX}/collections/pristine_alpha%2F",
    ),
    Hostile(
        "delete_database_trailing_slash",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default_database%2F",
    ),
    Hostile(
        "delete_database_inner_slash",
        "DELETE",
        "/api/v2/tenants/default_tenant/databases/default%2Fdatabase",
    ),
    Hostile(
        "delete_database_dotdot_tenant", "DELETE", f"/api/v2/tenants/%2E%2E/databases/{PRISTINE_DB}"
    ),
    Hostile("get_tenant_invalid_utf8", "GET", "/api/v2/tenants/%C0%AF", expect="4xx"),
    Hostile(
        "list_collections_tenant_nul",
        "GET",
        "/api/v2/tenants/default_tenant%00/databases/default_database/collections",
    ),
    Hostile(
        "collection_id_not_uuid", "POST", f"{DEFAULT_PREFIX}/collections/not-a-uuid/get", j({})
    ),
    Hostile(
        "collection_id_unknown_uuid",
        "POST",
        f"{DEFAULT_PREFIX}/collections/00000000-0000-0000-0000-000000000000/delete",
        j({"ids": ["a"]}),
    ),
    Hostile(
        "collection_id_uuid_braces",
        "POST",
        f"{DEFAULT_PREFIX}/collections/%7B00000000-0000-0000-0000-000000000000%7D/get",
        j({}),
        "any",
    ),
    Hostile("alias_delete_encoded", "DELETE", f"{DEFAULT_PREFIX}/aliases/pristine_alias%00"),
    Hostile(
        "alias_retarget_to_missing",
        "PUT",
        f"{DEFAULT_PREFIX}/aliases/pristine_alias",
        j({"collection": "no_such_collection"}),
    ),
    # NaN / Infinity
    Hostile(
        "nan_embedding_query",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "inf_embedding_query",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[Infinity, -Infinity, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "nan_embedding_scratch",
        "POST",
        "{S}/upsert",
        b'{"ids": ["nan"], "embeddings": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}',
        "any",
    ),
    Hostile(
        "nan_metadata_scratch",
        "POST",
        "{S}/upsert",
        j(add_body(["nan-md"], metadatas=[{"x": float("nan"), "y": float("inf")}])),
        "any",
    ),
    Hostile(
        "nan_where", "POST", "{A}/get", b'{"where": {"f": {"$gt": NaN}}, "include": []}', "any"
    ),
    Hostile("nan_limit", "POST", "{A}/get", b'{"limit": NaN}'),
    Hostile("inf_offset", "POST", "{A}/get", b'{"offset": Infinity}'),
    Hostile(
        "nan_n_results",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[1,1,1,1,1,1,1,1]], "n_results": NaN}',
    ),
    Hostile(
        "huge_exponent_float",
        "POST",
        "{A}/query",
        b'{"query_embeddings": [[1e999,1,1,1,1,1,1,1]]}',
        "any",
    ),
    Hostile(
        "float32_overflow_scratch",
        "POST",
        "{S}/upsert",
        j({"ids": ["of"], "embeddings": [[1e39] * DIM]}),
        "any",
    ),
    Hostile(
        "nan_embedding_add_pristine_mixed",
        "POST",
        "{A}/add",
        b'{"ids": ["n1", "n2"], "embeddings": [[1,1,1,1,1,1,1,1], [NaN,1,1]]}',
    ),
    # negative / huge limits, offsets, n_results
    *[
        Hostile(f"get_limit_{v}", "POST", "{A}/get", j({"limit": v, "include": []}), e)
        for v, e in (
            (-1, "4xx"),
            (0, "2xx"),
            (10**9, "2xx"),
            (2**63, "any"),
            (10**30, "any"),
            ("10", "any"),
            (1.5, "4xx"),
        )
    ],
    *[
        Hostile(f"get_offset_{v}", "POST", "{A}/get", j({"offset": v, "include": []}), e)
        for v, e in ((-1, "4xx"), (10**9, "2xx"), (2**63, "any"), (10**30, "any"))
    ],
    *[
        Hostile(f"delete_limit_{v}", "POST", "{A}/delete", j({"ids": ["missing"], "limit": v}), e)
        for v, e in ((-1, "4xx"), (2**64, "any"))
    ],
    *[
        Hostile(
            f"n_results_{v}",
            "POST",
            "{A}/query",
            j({"query_embeddings": [vector(3)], "n_results": v}),
            e,
        )
        for v, e in (
            (0, "4xx"),
            (-1, "4xx"),
            (10**9, "any"),
            (2**63, "any"),
            (10**30, "any"),
            (True, "any"),
        )
    ],
    *[
        Hostile(f"list_collections_{q}", "GET", f"{DEFAULT_PREFIX}/collections?{q}", None, e)
        for q, e in (
            ("limit=-1", "4xx"),
            ("offset=-5", "4xx"),
            ("limit=99999999999999999999999", "any"),
            ("offset=99999999999999999999999", "any"),
            ("limit=abc", "4xx"),
            ("limit=1e3", "4xx"),
            ("limit=%00", "4xx"),
            ("limit=NaN", "4xx"),
        )
    ],
    Hostile(
        "list_databases_negative",
        "GET",
        f"/api/v2/tenants/{PRISTINE_TENANT}/databases?limit=-1&offset=-1",
    ),
    Hostile("query_empty_embeddings", "POST", "{A}/query", j({"query_embeddings": []})),
    Hostile("query_wrong_dimension", "POST", "{A}/query", j({"query_embeddings": [[1.0] * 3]})),
    Hostile(
        "query_million_dimension",
        "POST",
        "{A}/query",
        lambda: j({"query_embeddings": [[0.5] * 1_000_000]}),
    ),
    Hostile(
        "query_10000_vectors",
        "POST",
        "{A}/query",
        lambda: j(
            {"query_embeddings": [vector(k) for k in range(10_000)], "n_results": 1, "include": []}
        ),
        "any",
    ),
    # wrong content types, empty and invalid bodies
    Hostile("content_type_text_plain", "POST", "{A}/get", j({"include": []}), "any", "text/plain"),
    Hostile(
        "content_type_form",
        "POST",
        "{A}/delete",
        b"ids=pristine_alpha-000",
        "4xx",
        "application/x-www-form-urlencoded",
    ),
    Hostile(
        "content_type_multipart",
        "POST",
        "{A}/delete",
        b'--b\r\nContent-Disposition: form-data; name="ids"\r\n\r\nx\r\n--b--\r\n',
        "4xx",
        "multipart/form-data; boundary=b",
    ),
    Hostile("content_type_missing_valid_json", "POST", "{A}/get", j({"include": []}), "any", None),
    Hostile(
        "content_type_xml", "POST", "{A}/add", b"<ids><id>x</id></ids>", "4xx", "application/xml"
    ),
    Hostile(
        "content_type_json_garbage_charset",
        "POST",
        "{A}/get",
        j({"include": []}),
        "any",
        "application/json; charset=klingon",
    ),
    Hostile("empty_body_add", "POST", "{A}/add", b""),
    Hostile("empty_body_delete", "POST", "{A}/delete", b""),
    Hostile("empty_body_update_collection", "PUT", "{A}", b"", "any"),
    Hostile("empty_body_create_tenant", "POST", "/api/v2/tenants", b""),
    Hostile("invalid_json_truncated", "POST", "{A}/delete", b'{"ids": ["pristine_alpha-000"'),
    Hostile("invalid_json_trailing", "POST", "{A}/delete", b'{"ids": ["pristine_alpha-000"]} x'),
    Hostile("invalid_json_single_quotes", "POST", "{A}/delete", b"{'ids': ['pristine_alpha-000']}"),
    Hostile("json_null_body", "POST", "{A}/delete", b"null"),
    Hostile("json_array_body", "POST", "{A}/delete", b'["pristine_alpha-000"]'),
    Hostile("json_string_body", "POST", "{A}/update", b'"ids"'),
    Hostile("duplicate_keys", "POST", "{A}/delete", b'{"ids": ["missing"], "ids": 5}', "any"),
    Hostile("nul_bytes_body", "POST", "{A}/delete", b"\x00" * 1000),
    Hostile("delete_nothing_given", "POST", "{A}/delete", j({})),
    Hostile("unknown_method", "PATCH", "{A}", j({"new_name": "x"})),
    Hostile("update_collection_bad_name", "PUT", "{A}", j({"new_name": ""})),
    Hostile(
        "update_collection_bad_metadata", "PUT", "{A}", j({"new_metadata": {"nested": {"a": 1}}})
    ),
    Hostile("update_collection_rename_to_existing", "PUT", "{A}", j({"new_name": "pristine_beta"})),
    Hostile(
        "create_collection_existing",
        "POST",
        f"{DEFAULT_PREFIX}/collections",
        j({"name": "pristine_alpha", "metadata": {"kind": "changed"}}),
    ),
    Hostile(
        "create_database_existing",
        "POST",
        f"/api/v2/tenants/{PRISTINE_TENANT}/databases",
        j({"name": PRISTINE_DB}),
    ),
    # truncated / malformed base64 embeddings and partial batches on pristine data
    Hostile(
        "base64_truncated", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["AAAAAAAAgD8AAA"]})
    ),
    Hostile(
        "base64_not_multiple_of_4", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["AAAA"]})
    ),
    Hostile(
        "base64_garbage", "POST", "{A}/add", j({"ids": ["b64"], "embeddings": ["!!!not base64!!!"]})
    ),
    Hostile(
        "base64_wrong_dimension",
        "POST",
        "{A}/upsert",
        j({"ids": ["pristine_alpha-001"], "embeddings": ["AACAPwAAgD8="]}),
    ),
    Hostile(
        "base64_mixed_with_floats",
        "POST",
        "{A}/add",
        j({"ids": ["b1", "b2"], "embeddings": ["AACAPwAAgD8=", [1.0, 1.0]]}),
    ),
    Hostile(
        "add_partial_batch_bad_metadata",
        "POST",
        "{A}/add",
        j(add_body(["fresh-1", "fresh-2"], metadatas=[{"ok": 1}, {"bad": {"nested": 1}}])),
    ),
    Hostile("add_duplicate_ids", "POST", "{A}/add", j(add_body(["dup", "dup"]))),
    Hostile(
        "add_existing_and_new",
        "POST",
        "{A}/add",
        j(add_body(["pristine_alpha-000", "brand-new"])),
        "any",
        may_change=True,
    ),
    Hostile("add_empty_id", "POST", "{A}/add", j(add_body(["fresh-3", ""])), "any"),
    Hostile(
        "add_length_mismatch",
        "POST",
        "{A}/add",
        j({"ids": ["a", "b"], "embeddings": [vector(1)], "documents": ["x", "y", "z"]}),
    ),
    Hostile(
        "upsert_partial_batch_wrong_dimension",
        "POST",
        "{A}/upsert",
        j({"ids": ["pristine_alpha-002", "fresh-4"], "embeddings": [vector(9), [1.0, 2.0]]}),
    ),
    Hostile(
        "update_partial_batch_bad_metadata",
        "POST",
        "{A}/update",
        j(
            {
                "ids": ["pristine_alpha-003", "pristine_alpha-004"],
                "metadatas": [{"s": "changed"}, {"bad": [1, {"x": 2}]}],
            }
        ),
    ),
    Hostile(
        "update_missing_id_with_existing",
        "POST",
        "{A}/update",
        j({"ids": ["pristine_alpha-005", "missing-id"], "documents": ["changed", "changed"]}),
        "any",
        may_change=True,
    ),
    Hostile(
        "update_embeddings_half_null",
        "POST",
        "{A}/update",
        j({"ids": ["pristine_alpha-006", "pristine_alpha-007"], "embeddings": [vector(1), None]}),
    ),
    Hostile(
        "delete_ids_with_bad_where",
        "POST",
        "{A}/delete",
        j({"ids": ["pristine_alpha-008"], "where": {"$bogus": 1}}),
    ),
    Hostile("get_include_distances", "POST", "{A}/get", j({"include": ["distances"]})),
    Hostile("get_include_unknown", "POST", "{A}/get", j({"include": ["passwords"]})),
]


def resolve(env: FuzzEnv, path: str) -> str:
    """Fill in the collection placeholders of a hostile path."""
    return (
        path.replace("{A}", f"{DEFAULT_PREFIX}/collections/{env.ids['alpha']}")
        .replace("{B}", f"{DEFAULT_PREFIX}/collections/{env.ids['beta']}")
        .replace("{S}", f"{SCRATCH_PREFIX}/collections/{env.ids[SCRATCH_COLLECTION]}")
    )


def send_raw(
    env: FuzzEnv, method: str, path: str, body: bytes | None, content_type: str | None
) -> tuple[int, str, float]:
    """Send bytes exactly as given (no URL normalisation); status, text and seconds taken."""
    connection = http.client.HTTPConnection(
        env.server.host, env.server.port, timeout=REQUEST_TIMEOUT
    )
    headers = {"Connection": "close"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    started = time.monotonic()
    try:
        # The server may answer (413) and stop reading before a huge body is sent;
        # like urllib3, read the answer it already sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        return response.status, text, time.monotonic() - started
    finally:
        connection.close()


@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_request(env: FuzzEnv, case: Hostile) -> None:
    """A hand-written hostile request: expected status class, JSON errors, data unchanged."""
    path = resolve(env, case.path)
    body = case.body() if callable(case.body) else case.body
    where = f"hostile {case.name}: {case.method} {path[:200]}"
    try:
        status, text, seconds = send_raw(env, case.method, path, body, case.content_type)
    except (TimeoutError, OSError) as exc:
        env.stats.hostile_cases += 1
        env.stats.hangs.append(f"{where} -> {exc!r}")
        assert_alive(env, where)
        pytest.fail(f"{where}: no answer within {REQUEST_TIMEOUT}s ({exc!r})")
    env.stats.hostile_cases += 1
    env.stats.hostile_statuses[case.name] = status
    shown = describe(case.method, path[:300], body if body is None else body[:300], status, text)
    shown += f" ({seconds:.1f}s)"
    classify(env, f"hostile {case.name}", status, text, shown)
    body = None  # free the big ones before the snapshot
    assert status < 500, f"5xx: {shown}"
    if status >= 400:
        assert is_chroma_error(text), f"4xx without Chroma's JSON error body: {shown}"
    if case.expect == "4xx":
        assert 400 <= status < 500, f"expected 4xx: {shown}"
    elif case.expect == "2xx":
        assert 200 <= status < 300, f"expected 2xx: {shown}"
    else:
        assert 200 <= status < 300 or 400 <= status < 500, f"expected 2xx or 4xx: {shown}"
    assert_alive(env, where)
    if case.may_change and 200 <= status < 300:
        env.baseline = snapshot(env.clients)  # accepted, so a change is legitimate
        return
    before = len(env.stats.data_changes)
    check_unchanged(env, where)
    assert len(env.stats.data_changes) == before, env.stats.data_changes[-1]


def test_pristine_data_unchanged_and_report(env: FuzzEnv) -> None:
    """After everything: pristine data as at the start, and no 5xx or hang anywhere."""
    assert_alive(env, "all fuzzing")
    check_unchanged(env, "the whole module")
    stats = env.stats
    assert stats.sent > 0
    assert stats.five_xx == 0, "5xx responses:\n" + "\n".join(stats.server_errors[:40])
    assert not stats.hangs, "hangs:\n" + "\n".join(stats.hangs[:40])
    assert not stats.data_changes, "data changed:\n" + "\n".join(stats.data_changes[:40])
