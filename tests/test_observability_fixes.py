"""Fixes to metrics and logs of `huedb run`:

- a histogram series that a full metrics disk let in only part-way (some keys of its
  worker's file written, its `le="+Inf"` bucket not) is left out of `/metrics`: it showed
  without `+Inf` and with `_count` 0;
- an error body longer than 8 KiB (an `add` of 600 duplicate ids) is counted under its
  Chroma error name, not `error="other"`;
- `log_format = "json"` in `--config` applies to the lines logged before the server
  starts (the "cannot start" line), as `--log-format json` did;
- `/openapi.json` has unique operationIds (the `/api/v1/...` route of four methods is out
  of the schema, as in Chroma's) and building it logs no "Duplicate Operation ID" warning.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import time
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from huedb.server.metric_files import ENTRY_OVERHEAD
from huedb.server.metrics import LATENCY_BUCKETS, REQUEST_SECONDS
from tests.cli import run_cli
from tests.servers import RunningServer, huedb_server
from tests.small_disk import fill_up, small_tmpfs

ADMIN = "observability-admin-4k2"
TOKENS_ENV = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin"}
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
DB = "/api/v2/tenants/default_tenant/databases/default_database"
ADD_ROUTE = "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/add"
TIMED = "huedb_http_request_duration_seconds"


def histogram_keys(route: str, method: str) -> list[str]:
    """The keys a request's latency series takes in its worker's histogram file, in the
    order prometheus_client writes them (its sum, then each bucket up to +Inf)."""
    names, labels, doc = ("route", "method"), (route, method), REQUEST_SECONDS._documentation
    keys = [mmap_key(TIMED, TIMED + "_sum", names, labels, doc)]
    for bound in (*LATENCY_BUCKETS, float("inf")):
        bucket_labels = (*labels, floatToGoString(bound))
        keys.append(mmap_key(TIMED, TIMED + "_bucket", (*names, "le"), bucket_labels, doc))
    return keys


def entry_bytes(key: str) -> int:
    """Bytes of one entry of a metric file: length, key padded to 8 bytes, two doubles."""
    size = len(key.encode())
    return 4 + size + (8 - (size + 4) % 8) + 16


def room_needed(key: str) -> int:
    """The room `metric_files` asks for before it writes an entry (else the file grows)."""
    return len(key.encode()) + ENTRY_OVERHEAD


def file_keys(path: Path) -> set[str]:
    return {key for key, _, _, _ in MmapedDict.read_all_values_from_file(str(path))}


def room_left(path: Path) -> int:
    """Bytes the metric file holds beyond its entries (it grows when they do not fit)."""
    with open(path, "rb") as f:
        used = struct.unpack("i", f.read(4))[0]
    return path.stat().st_size - used


def wait_for_key(path: Path, key: str, timeout: float = 5) -> bool:
    """Whether `key` is in the file within `timeout` (a request is counted after its answer)."""
    deadline = time.monotonic() + timeout
    while key not in file_keys(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def histogram_series(text: str) -> dict[tuple[str, tuple], dict[str, float]]:
    """Each histogram series of a scrape: its samples by `le` bound, `sum` and `count`."""
    series: dict[tuple[str, tuple], dict[str, float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            part = sample.labels.get("le") or sample.name.rsplit("_", 1)[1]
            series[(family.name, labels)][part] = sample.value
    return series


def test_a_histogram_series_half_written_on_a_full_disk_is_not_published(
    tmp_path: Path,
) -> None:
    """New routes are requested until the histogram file's room left can hold the next
    series' first keys but not its last; the disk is filled and that route requested: its
    file keeps the keys that fitted without `+Inf`, and the scrape leaves it out (it showed
    with buckets up to some bound, no `+Inf`, `_count` 0). Every series scraped is whole."""
    with (
        small_tmpfs(tmp_path, 4) as disk,
        huedb_server(tmp_path / "data", env={**TOKENS_ENV, "TMPDIR": str(disk)}) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http,
    ):
        spec = http.get("/openapi.json").json()["paths"]
        pairs = [(path, m.upper()) for path, ops in spec.items() for m in ops]
        pairs += [(path, "HEAD") for path, ops in spec.items() if "get" in ops]
        (histograms,) = disk.glob("huedb-metrics-*/histogram_*.db")
        half_written = None
        for route, method in pairs:
            keys = histogram_keys(route, method)
            room = room_left(histograms)
            if room_needed(keys[0]) <= room < sum(map(entry_bytes, keys)):
                fill_up(disk)  # its sum fits in the file, its +Inf bucket does not
                half_written = (route, method)
            http.request(method, route.replace("{", "x").replace("}", "x"))
            if half_written:
                assert wait_for_key(histograms, keys[0]), server.log()[-2000:]
                break
            wait_for_key(histograms, keys[-1])  # in the file unless the route differs
        assert half_written, "the histogram file's room never fell between two keys"
        route, method = half_written
        time.sleep(0.2)
        assert keys[-1] not in file_keys(histograms)  # the file holds it in part
        text = http.get("/metrics").text
        assert "metrics not recorded" in server.log()

    series = histogram_series(text)
    assert (TIMED, (("method", method), ("route", route))) not in series, text
    assert series
    for name, parts in series.items():
        assert "+Inf" in parts, name
        assert parts["count"] == parts["+Inf"], name


def add_with_duplicates(server: RunningServer) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        col = http.post(f"{DB}/collections", json={"name": "long_errors"}).json()["id"]
        ids = [f"duplicate-id-{n:05d}" for n in range(600)] * 2
        body = {"ids": ids, "embeddings": [[1.0]] * len(ids)}
        return http.post(f"{DB}/collections/{col}/add", json=body)


def test_an_error_body_over_8_kib_is_counted_by_its_name(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        refused = add_with_duplicates(server)
        text = httpx.get(f"{server.url}/metrics", headers=HEADERS, timeout=30).text
    assert refused.status_code == 400 and refused.json()["error"] == "DuplicateID"
    assert len(refused.content) > 8192
    counted = {
        sample.labels["error"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "huedb_http_requests_total"
        and sample.labels["route"] == ADD_ROUTE
        and sample.labels["status"] == "400"
    }
    assert counted == {"DuplicateID": 1.0}


def test_the_config_files_json_log_format_applies_before_the_start(tmp_path: Path) -> None:
    """The port is taken: the "cannot start" line is JSON when the config file asks for
    it, as with `--log-format json` (it was text)."""
    config = tmp_path / "huedb.toml"
    config.write_text('log_format = "json"\n')
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        args = ("run", "--path", str(tmp_path / "data"), "--host", "127.0.0.1", "--port", port)
        by_file = run_cli(*args, "--config", str(config))
        by_flag = run_cli(*args, "--log-format", "json")
    for res in (by_file, by_flag):
        assert res.returncode == 2, res.stderr
        lines = [json.loads(line) for line in res.stderr.splitlines() if line.strip()]
        assert lines[-1]["level"] == "ERROR", res.stderr
        assert lines[-1]["message"].startswith("cannot start: ")
        assert "already in use" in lines[-1]["message"]


def test_openapi_operation_ids_are_unique_and_build_without_warnings(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--log-format", "json", env=TOKENS_ENV) as server:
        spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        assert httpx.get(f"{server.url}/docs", timeout=30).status_code == 200
        gone = httpx.get(f"{server.url}/api/v1/heartbeat", headers=HEADERS, timeout=30)
        log = server.log()
    ids = collections.Counter(
        op["operationId"] for ops in spec["paths"].values() for op in ops.values()
    )
    assert ids and max(ids.values()) == 1, {k: n for k, n in ids.items() if n > 1}
    assert not any(path.startswith("/api/v1/") for path in spec["paths"])  # as Chroma's
    assert gone.status_code == 410 and gone.json()["error"] == "Unimplemented"
    warnings = [json.loads(line) for line in log.splitlines() if "py.warnings" in line]
    assert warnings == []
    assert "Duplicate Operation ID" not in log
