"""`GET /metrics` (issue 17, acceptance 1): Prometheus text from every worker of
`huedb run --workers 2`, parsed with prometheus_client's own parser.

A scripted workload through the real `chromadb` client (plus refused requests over fresh
connections) is counted exactly: requests per route template and status, request latency
histogram totals, queries per plan, and per-collection record counts equal to `count()`.
Several scrapes over fresh connections (served by either worker) give the same figures.
Access: read-only and admin tokens read it, a tenant-scoped token gets 403, no token 401;
`--metrics-public` (or `metrics_public` in --config) opens /metrics alone. Past 100
collections the rest is one `_other` series. On a real full disk (a 12 MB tmpfs) each 507
is counted as a storage error; a full temporary directory (the workers' metric files) costs
new series, never the server (it died of SIGBUS before `metric_files`).
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from huedb.engine.registry import release_engine
from huedb.server.app import create_app
from huedb.server.metrics import RequestMetricsMiddleware
from huedb.server.server_config import ServerConfig
from tests.cli import run_cli
from tests.http_checks import chroma_client, token_settings
from tests.servers import RunningServer, huedb_server
from tests.small_disk import fill_up, small_tmpfs

ADMIN, READER, SCOPED, WRONG = "metrics-admin-1", "metrics-read-1", "metrics-acme-1", "nope-nope-1"
TOKENS_ENV = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:read-only,{SCOPED}:read-only@acme"}
COL = "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}"
REQUESTS = "huedb_http_requests_total"
COMPUTATIONS = "huedb_collection_figures_computations_total"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer, token: str | None = READER) -> Samples:
    """One scrape over a fresh connection, parsed: (sample name, labels) -> value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, method: str, status: int, error: str = "") -> float:
    labels = {"route": route, "method": method, "status": str(status), "error": error}
    return value(samples, REQUESTS, **labels)


def workload_series(samples: Samples) -> Samples:
    """Everything but the scrapes' own requests and figure scans (which grow with scrapes)."""
    return {
        k: v
        for k, v in samples.items()
        if ("route", "/metrics") not in k[1] and not k[0].startswith(COMPUTATIONS[:-6])
    }


def test_metrics_count_a_workload_over_two_workers(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--workers", "2", env=TOKENS_ENV) as server:
        client = chroma_client(server.port, settings=token_settings(ADMIN))
        other = chroma_client(server.port, settings=token_settings(ADMIN))
        first = client.create_collection("metrics_a")
        second = other.create_collection("metrics_b")
        for i in range(7):
            first.add(ids=[f"a{i}"], embeddings=[[float(i), 1.0]], metadatas=[{"n": i}])
        second.add(ids=[f"b{i}" for i in range(5)], embeddings=[[1.0, float(i)] for i in range(5)])
        for i in range(3):
            first.upsert(ids=[f"u{i}"], embeddings=[[2.0, float(i)]], metadatas=[{"n": 10 + i}])
        for i in range(4):
            first.query(query_embeddings=[[1.0, float(i)]], n_results=2)
        for i in range(2):
            second.query(query_embeddings=[[1.0, 1.0]], n_results=1, where={"n": {"$gte": i}})
        for i in range(3):
            other.get_collection("metrics_a").get(ids=[f"a{i}"])
        first.delete(ids=["a0"])
        for _ in range(2):  # wrong dimension: refused by the engine
            try:
                first.add(ids=["bad"], embeddings=[[1.0, 2.0, 3.0]])
            except Exception as exc:  # chromadb raises its own error class for a 400
                assert "dimension" in str(exc)
        cid = str(first.id)
        count_path = (
            f"/api/v2/tenants/default_tenant/databases/default_database/collections/{cid}/count"
        )
        for _ in range(3):  # fresh connections, a wrong token: refused before routing
            bad = httpx.get(server.url + count_path, headers={"x-chroma-token": WRONG})
            assert bad.status_code == 401
        counts = {"metrics_a": first.count(), "metrics_b": second.count()}
        assert counts == {"metrics_a": 9, "metrics_b": 5}

        scrapes = [scrape(server) for _ in range(4)]
    samples = scrapes[0]
    # Any worker's scrape merges both workers' files: the same figures every time.
    for later in scrapes[1:]:
        assert workload_series(later) == workload_series(samples)

    assert requests(samples, COL + "/add", "POST", 201) == 8
    assert requests(samples, COL + "/add", "POST", 400, "InvalidArgumentError") == 2
    assert requests(samples, COL + "/upsert", "POST", 200) == 3
    assert requests(samples, COL + "/query", "POST", 200) == 6
    assert requests(samples, COL + "/get", "POST", 200) == 3
    assert requests(samples, COL + "/delete", "POST", 200) == 1
    assert requests(samples, COL + "/count", "GET", 200) == 2
    assert requests(samples, COL + "/count", "GET", 401, "AuthorizationError") == 3
    # No raw path (a collection id) ever becomes a label value.
    assert not any(cid in v for _, labels in samples for _, v in labels)

    histogram = "huedb_http_request_duration_seconds"
    route = {"route": COL + "/query", "method": "POST"}
    assert value(samples, histogram + "_count", **route) == 6
    assert value(samples, histogram + "_bucket", **route, le="+Inf") == 6
    assert 0 < value(samples, histogram + "_sum", **route) < 60
    add_route = {"route": COL + "/add", "method": "POST"}
    assert value(samples, histogram + "_count", **add_route) == 10

    assert value(samples, "huedb_query_duration_seconds_count", plan="exact") == 4
    assert value(samples, "huedb_query_duration_seconds_count", plan="filtered_exact") == 2
    assert value(samples, "huedb_query_duration_seconds_bucket", plan="exact", le="+Inf") == 4

    where = {"tenant": "default_tenant", "database": "default_database"}
    for name, count in counts.items():
        assert value(samples, "huedb_collection_records", **where, collection=name) == count
        assert value(samples, "huedb_collection_disk_bytes", **where, collection=name) >= count * 8
    assert value(samples, "huedb_collections") == 2


def test_metrics_access_by_token_and_public_flag(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        url = f"{server.url}/metrics"
        assert httpx.get(url).status_code == 401
        refused = httpx.get(url, headers={"Authorization": f"Bearer {SCOPED}"})
        assert refused.status_code == 403 and refused.json()["error"] == "AuthError"
        assert httpx.get(url, headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
        scrape(server, READER)
        scrape(server, ADMIN)
    with huedb_server(tmp_path / "data", "--metrics-public", env=TOKENS_ENV) as server:
        scrape(server, None)
        assert httpx.get(f"{server.url}/api/v2/tenants/default_tenant").status_code == 401
    config = tmp_path / "huedb.toml"
    config.write_text('metrics_public = true\nlog_format = "json"\n')
    with huedb_server(tmp_path / "data", "--config", str(config), env=TOKENS_ENV) as server:
        scrape(server, None)
        assert all(line.startswith("{") for line in server.log().splitlines() if line)


def test_a_bad_log_format_in_the_config_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "huedb.toml"
    config.write_text('log_format = "xml"\n')
    res = run_cli("run", "--path", str(tmp_path / "data"), "--config", str(config))
    assert res.returncode == 2
    assert "log_format must be one of text, json, not 'xml'" in res.stderr


def test_collections_past_the_cap_are_summed_as_other(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"
        with httpx.Client(headers={"x-chroma-token": ADMIN}, timeout=30) as http:
            for n in range(103):
                made = http.post(f"{base}/collections", json={"name": f"cap_{n:03d}"})
                records = [[1.0, float(i)] for i in range(n % 5 + 1)]
                ids = [f"r{i}" for i in range(len(records))]
                http.post(
                    f"{base}/collections/{made.json()['id']}/add",
                    json={"ids": ids, "embeddings": records},
                ).raise_for_status()
        samples = scrape(server)
    records = {
        dict(labels)["collection"]: v
        for (name, labels), v in samples.items()
        if name == "huedb_collection_records"
    }
    assert len(records) == 101 and "_other" in records
    assert sum(records.values()) == sum(n % 5 + 1 for n in range(103))
    # The largest collections keep their own series: the 3 summed are among the smallest.
    assert records["_other"] <= 3
    assert Counter(v for k, v in records.items() if k != "_other")[5.0] == 20
    assert value(samples, "huedb_collections") == 103


def test_a_full_disk_is_counted_as_storage_errors(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, 12) as disk:
        (disk / "filler").write_bytes(b"\0" * (3 << 20))
        with huedb_server(disk / "data", env=TOKENS_ENV) as server:
            base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"
            rng = np.random.default_rng(3)
            with httpx.Client(headers={"x-chroma-token": ADMIN}, timeout=60) as http:
                cid = http.post(f"{base}/collections", json={"name": "full"}).json()["id"]
                statuses = Counter()
                for batch in range(10_000):
                    body = {
                        "ids": [f"b{batch}-{i}" for i in range(200)],
                        "embeddings": rng.standard_normal((200, 64)).tolist(),
                    }
                    status = http.post(f"{base}/collections/{cid}/add", json=body).status_code
                    statuses[status] += 1
                    if statuses[507] == 3:
                        break
            samples = scrape(server)
    assert set(statuses) == {201, 507}
    assert value(samples, "huedb_storage_errors_total", status="507") == 3
    assert requests(samples, COL + "/add", "POST", 507, "ChromaError") == 3
    assert requests(samples, COL + "/add", "POST", 201) == statuses[201]


def test_a_full_temporary_directory_skips_new_series(tmp_path: Path) -> None:
    """The metric files (in TMPDIR) cannot grow: the server answers every request, scrapes
    work, a warning says series were skipped; once space is back new series are counted."""
    timed = "huedb_http_request_duration_seconds_count"
    with (
        small_tmpfs(tmp_path, 1) as disk,
        huedb_server(tmp_path / "data", env={**TOKENS_ENV, "TMPDIR": str(disk)}) as server,
    ):
        paths = sorted(httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"])
        fill_up(disk)
        with httpx.Client(headers={"x-chroma-token": ADMIN}, timeout=30) as http:
            # Every route template by two methods: a histogram series each, ~4 KiB of keys,
            # so the histograms' file must grow past the 64 KiB it started with.
            for path in paths:
                url = server.url + path.replace("{", "x").replace("}", "x")
                for method in ("GET", "DELETE"):
                    assert http.request(method, url, json={}).status_code < 500, url
            assert server.process.poll() is None, server.log()[-3000:]
            while_full = scrape(server)
            assert "metrics not recorded" in server.log()
            (disk / "filler").unlink()
            assert http.patch(f"{server.url}/api/v2/version").status_code == 405
        samples = scrape(server)
    pairs_timed_while_full = sum(1 for k in while_full if k[0] == timed)
    assert 0 < pairs_timed_while_full < 2 * len(paths)  # some were skipped, not all
    assert value(samples, timed, route="/api/v2/version", method="PATCH") == 1
    assert requests(samples, "/api/v2/version", "PATCH", 405, "ChromaError") == 1


def test_graph_plans_and_index_builds_are_measured(tmp_path: Path) -> None:
    """Thresholds small enough that 300 vectors get a graph and a filter over 100 of them
    is searched through it: each plan's count is exact once the graph is ready."""
    args = ("--exact-max-floats", "64", "--filtered-exact-max-floats", "8")
    with huedb_server(tmp_path / "data", *args, env=TOKENS_ENV) as server:
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"
        rng = np.random.default_rng(5)
        with httpx.Client(headers={"x-chroma-token": ADMIN}, timeout=60) as http:
            cid = http.post(f"{base}/collections", json={"name": "graphs"}).json()["id"]
            body = {
                "ids": [f"g{i}" for i in range(300)],
                "embeddings": rng.standard_normal((300, 4)).tolist(),
                "metadatas": [{"third": i % 3} for i in range(300)],
            }
            http.post(f"{base}/collections/{cid}/add", json=body).raise_for_status()
            status = f"{base}/collections/{cid}/indexing_status"
            for _ in range(600):  # the graph of 300 vectors builds in milliseconds
                if http.get(status).json()["op_indexing_progress"] == 1.0:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the graph was never ready")
            before = scrape(server)
            query = {"query_embeddings": [[0.1, 0.2, 0.3, 0.4]], "n_results": 3}
            for _ in range(3):
                http.post(f"{base}/collections/{cid}/query", json=query).raise_for_status()
            filtered = {**query, "where": {"third": 1}}
            for _ in range(2):
                http.post(f"{base}/collections/{cid}/query", json=filtered).raise_for_status()
        after = scrape(server)
    for plan, n in (("graph", 3), ("filtered_graph", 2), ("exact", 0), ("filtered_exact", 0)):
        name = "huedb_query_duration_seconds_count"
        assert value(after, name, plan=plan) - value(before, name, plan=plan) == n, plan
    assert value(after, "huedb_index_build_duration_seconds_count", outcome="ok") == 1
    assert value(after, "huedb_index_build_duration_seconds_count", outcome="failed") == 0


def test_metrics_directories_of_killed_servers_are_removed(tmp_path: Path) -> None:
    """`huedb run` makes a fresh metrics directory per start and removes it at exit; one
    left by a killed server (its pid no longer runs) is removed by the next start."""
    temp = Path(tempfile.gettempdir())
    stale = temp / "huedb-metrics-4194303-stale0"  # above any pid the tests run with
    stale.mkdir(exist_ok=True)
    (stale / "counter_4194303.db").write_bytes(b"left over")
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        assert not stale.exists()
        mine = list(temp.glob(f"huedb-metrics-{server.process.pid}-*"))
        assert len(mine) == 1 and any(mine[0].iterdir())
    assert not mine[0].exists()


def test_collection_figures_are_computed_once_per_ttl(tmp_path: Path) -> None:
    """Rapid scrapes reuse each collection's cached figures (one scan per TTL per worker);
    after the TTL the gauges equal count() again."""
    ttl = 3.0
    env = {**TOKENS_ENV, "HUEDB_FIGURES_TTL_S": str(ttl)}
    with huedb_server(tmp_path / "data", env=env) as server:
        client = chroma_client(server.port, settings=token_settings(ADMIN))
        cols = [client.create_collection(f"ttl_{n}") for n in range(3)]
        for col in cols:
            col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
        started = time.monotonic()
        for _ in range(30):
            samples = scrape(server)
        elapsed = time.monotonic() - started
        # Without the cache: 3 scans per scrape (90); with it, 3 per TTL started.
        assert len(cols) <= samples[(COMPUTATIONS, frozenset())] <= len(cols) * (elapsed // ttl + 2)
        cols[0].add(ids=["c", "d", "e"], embeddings=[[1.0, 1.0]] * 3)
        deadline = time.monotonic() + 60
        while True:
            samples = scrape(server)
            shown = {
                dict(labels)["collection"]: v
                for (name, labels), v in samples.items()
                if name == "huedb_collection_records"
            }
            if shown["ttl_0"] == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert shown == {col.name: col.count() for col in cols}


def test_console_stats_of_a_scoped_token_name_only_its_collections(tmp_path: Path) -> None:
    """Two tenants with same-named collections: a tenant-scoped token's database stats hold
    its own collection only, and no store-wide warning (here: reclaimable bytes) or RAM."""
    env = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{SCOPED}:read-only@acme"}
    with huedb_server(tmp_path / "data", env=env) as server:
        with httpx.Client(base_url=server.url, headers={"x-chroma-token": ADMIN}) as http:
            ids = {}
            for tenant in ("acme", "other"):
                http.post("/api/v2/tenants", json={"name": tenant}).raise_for_status()
                base = f"/api/v2/tenants/{tenant}/databases"
                http.post(base, json={"name": "shared"}).raise_for_status()
                made = http.post(f"{base}/shared/collections", json={"name": "same"})
                ids[tenant] = made.json()["id"]
            other = f"/api/v2/tenants/other/databases/shared/collections/{ids['other']}"
            records = [f"r{i}" for i in range(3000)]
            http.post(
                f"{other}/add",
                json={
                    "ids": records,
                    "embeddings": [[1.0, 0.0]] * 3000,
                    "documents": ["x" * 2000] * 3000,
                },
                timeout=60,
            ).raise_for_status()
            http.post(f"{other}/delete", json={"ids": records}, timeout=60).raise_for_status()
            whole = http.get("/api/v2/tenants/other/databases/shared/stats").json()
            assert any("reclaimable" in w for w in whole["warnings"]) and whole["ram_bytes"] > 0
        with httpx.Client(base_url=server.url, headers={"x-chroma-token": SCOPED}) as scoped:
            own = scoped.get("/api/v2/tenants/acme/databases/shared/stats").json()
    assert [c["id"] for c in own["collections"]] == [ids["acme"]]
    assert own["warnings"] == [] and "ram_bytes" not in own


def raw_get(port: int, target: str) -> int:
    """The status of a GET of `target` sent over a raw socket (httpx refuses long URLs)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_long_and_unmatched_paths_are_not_remembered(tmp_path: Path) -> None:
    """Route templates are cached only for short paths of a route: a 1 MB path is refused,
    and long or unmatched paths leave the middleware's cache as it was."""
    with huedb_server(tmp_path / "data", "--metrics-public", env=TOKENS_ENV) as server:
        status = raw_get(server.port, "/" + "x" * 2**20)
        assert status in (400, 404, 414)  # uvicorn's parser refuses it: 400
        scrape(server, None)
    app = create_app(ServerConfig(path=str(tmp_path / "inproc")))
    try:
        middleware = RequestMetricsMiddleware(app, lambda: app.routes)
        long_col = "/api/v2/tenants/t/databases/d/collections/" + "c" * 2**20
        assert middleware.template_of("GET", long_col) == COL.replace("collection_id", "name")
        assert middleware.template_of("GET", "/nope/" + "y" * 2**20) == "unmatched"
        assert middleware.template_of("GET", "/nope") == "unmatched"
        assert middleware.templates == {}
        assert middleware.template_of("GET", "/api/v2/heartbeat") == "/api/v2/heartbeat"
        assert list(middleware.templates) == [("GET", "/api/v2/heartbeat")]
    finally:
        release_engine(app.state.api.engine)
