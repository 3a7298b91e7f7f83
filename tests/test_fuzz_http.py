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
`<pytest basetemp>/fuzz_http_report.json`. `HUEDB_FUZZ_EXAMPLES` (default 10) sets the
number of generated examples per operation and generation mode; `HUEDB_FUZZ_SEED` fixes
Hypothesis' seed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
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
from tests.hostile_requests import (
    HOSTILE,
    PREFIXES,
    PRISTINE_DB,
    PRISTINE_TENANT,
    SCRATCH_ALIAS,
    SCRATCH_COLLECTION,
    SCRATCH_DB,
    SCRATCH_PREFIX,
    SCRATCH_TENANT,
    SCRATCH_VICTIM,
    SCRATCH_VICTIM_DB,
    SHORTHANDS,
    Hostile,
    vector,
)
from tests.knobs import knob
from tests.servers import RunningServer, huedb_server

EXAMPLES = int(knob("HUEDB_FUZZ_EXAMPLES", "10"))
SEED = knob("HUEDB_FUZZ_SEED")
REQUEST_TIMEOUT = 30.0
HEARTBEAT_TIMEOUT = 2.0


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
        log = env.server.log()[-4000:]
        pytest.fail(f"server died (exit {env.server.process.returncode}) after {after}:\n{log}")
    started = time.monotonic()
    try:
        # Plain HTTP on loopback: verify=False only skips loading a CA bundle (~26 ms).
        response = httpx.get(f"{env.url}/api/v2/heartbeat", timeout=HEARTBEAT_TIMEOUT, verify=False)
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


# -- hand-written hostile requests (the list: tests/hostile_requests.py) -----------------


def resolve(env: FuzzEnv, path: str) -> str:
    """Fill in the placeholders of a hostile path: shorthands, then prefixes and ids."""
    for shorthand, route in SHORTHANDS.items():
        path = path.replace(shorthand, route)
    for name, prefix in PREFIXES.items():
        path = path.replace(f"{{prefix:{name}}}", prefix)
    ids = {**env.ids, "scratch": env.ids[SCRATCH_COLLECTION]}
    for key, collection_id in ids.items():
        path = path.replace(f"{{id:{key}}}", collection_id)
    assert "{" not in path, f"unresolved placeholder: {path}"
    return path


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


def fresh_scratch(env: FuzzEnv) -> None:
    """A new, empty scratch collection: a write expected to succeed there must not meet the
    dimension an earlier case's vectors gave it (the cases run in any order on a worker)."""
    env.http.delete(f"{SCRATCH_PREFIX}/collections/{SCRATCH_COLLECTION}")
    ids = ensure_scratch(env.http)
    env.ids[SCRATCH_COLLECTION] = env.scratch[0].collection_id = ids[SCRATCH_COLLECTION]


@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_request(env: FuzzEnv, case: Hostile) -> None:
    """A hand-written hostile request: expected status class, JSON errors, data unchanged."""
    if "{S}" in case.path and case.expect == "2xx":
        fresh_scratch(env)
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
    elif case.expect == "403/404":
        assert status in (403, 404), f"expected 403 or 404: {shown}"
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
