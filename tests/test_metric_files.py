"""`huedb.server.metric_files`: the workers' metric files are never sparse, and a file
system that cannot hold them says so with an OSError (never SIGBUS, never a broken file).

Real file systems: the test's own directory, a full 1 MB tmpfs, and a ramfs (which has
no fallocate, so glibc's fallback writes the blocks).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from huedb.server.metric_files import INITIAL_BYTES, AllocatedMmapedDict
from tests.cli import child_env
from tests.small_disk import fill_up, ramfs, small_tmpfs

KEY_BYTES = 200  # keys like prometheus's: a JSON list of metric name, labels and help


def key(n: int) -> str:
    return f"series-{n:06d}-".ljust(KEY_BYTES, "x")


def allocated(path: Path) -> bool:
    """Whether every byte of the file has a block (no hole a mapping could fault on)."""
    st = path.stat()
    return st.st_blocks * 512 >= st.st_size


def test_files_are_allocated_when_opened_and_as_they_grow(tmp_path: Path) -> None:
    plain = MmapedDict(str(tmp_path / "plain.db"))
    plain.write_value(key(0), 1.0, 0.0)
    plain.close()
    assert not allocated(tmp_path / "plain.db")  # the library's own file is sparse

    values = AllocatedMmapedDict(str(tmp_path / "counter_1.db"))
    assert allocated(tmp_path / "counter_1.db")
    for n in range(2_000):  # ~450 KiB of entries: the file doubles three times
        values.write_value(key(n), float(n), 0.0)
        if n % 250 == 0:
            assert allocated(tmp_path / "counter_1.db"), n
    values.close()
    assert (tmp_path / "counter_1.db").stat().st_size >= 8 * INITIAL_BYTES
    assert allocated(tmp_path / "counter_1.db")
    read = {k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(tmp_path / "counter_1.db")}
    assert read == {key(n): float(n) for n in range(2_000)}


def test_a_full_disk_is_an_error_and_leaves_readable_files(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, 1) as disk:
        values = AllocatedMmapedDict(str(disk / "histogram_1.db"))
        values.write_value(key(0), 5.0, 0.0)
        fill_up(disk)
        n = 1
        with pytest.raises(OSError):  # the first entry past the 64 KiB it has
            for n in range(1, 2_000):
                values.write_value(key(n), float(n), 0.0)
        written = {key(k): float(k) for k in range(n)} | {key(0): 5.0}
        read = MmapedDict.read_all_values_from_file(disk / "histogram_1.db")
        assert {k: v for k, v, _, _ in read} == written
        (disk / "filler").unlink()
        values.write_value(key(n), float(n), 0.0)  # space is back: the file grows
        values.close()
        assert allocated(disk / "histogram_1.db")


def test_growth_without_fallocate(tmp_path: Path) -> None:
    """ramfs has no fallocate: glibc's fallback (which refuses an O_APPEND descriptor like
    the library's own) still allocates every block."""
    with ramfs(tmp_path) as disk:
        values = AllocatedMmapedDict(str(disk / "gauge_livesum_1.db"))
        for n in range(1_000):
            values.write_value(key(n), float(n), 0.0)
        values.close()
        assert (disk / "gauge_livesum_1.db").stat().st_size > INITIAL_BYTES
        read = MmapedDict.read_all_values_from_file(disk / "gauge_livesum_1.db")
        assert len(list(read)) == 1_000


def test_a_file_the_disk_cannot_hold_is_kept_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new file on a full disk: its values live in memory (a memfd), with a warning; no
    file is left in the directory (an empty one would break every scrape's merge)."""
    with small_tmpfs(tmp_path, 1) as disk:
        fill_up(disk)
        with caplog.at_level(logging.WARNING, logger="huedb"):
            values = AllocatedMmapedDict(str(disk / "counter_1.db"))
        assert "keeps those metrics in memory" in caplog.text
        assert not (disk / "counter_1.db").exists()
        for n in range(1_000):  # ~225 KiB: grows past its first 64 KiB, in memory
            values.write_value(key(n), float(n), 0.0)
        assert [values.read_value(key(n)) for n in (0, 999)] == [(0.0, 0.0), (999.0, 0.0)]
        values.close()
        assert list(disk.iterdir()) == [disk / "filler"]


# Run in a child process: prometheus_client picks its multi-process values when it is
# imported, from PROMETHEUS_MULTIPROC_DIR (a 1 MB tmpfs here), filled before the worker's
# imports or after them.
FULL_DISK_WORKER = """
import gc, json, os, sys
from pathlib import Path
from tests.small_disk import fill_up
disk = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
if sys.argv[1] == "before":
    fill_up(disk)
from prometheus_client import values
from huedb.server import app, metrics  # a worker's imports: its unlabelled metrics' files
if sys.argv[1] == "after":
    fill_up(disk)

def kept():
    gc.collect()
    return sum(type(o) is values.ValueClass for o in gc.get_objects())

for n in range(200):  # new routes until one's histogram series no longer fits
    route = f"/api/v2/route-{n:04d}"
    metrics.count_request(route, "GET", 200, "", 0.01)
    if metrics.REQUEST_SECONDS._metrics.get((route, "GET")) is None:
        break
before = kept()
for _ in range(500):
    metrics.count_request(route, "GET", 200, "", 0.01)  # the same series again
files = sorted(p.name for p in disk.iterdir() if p.name != "filler")
json.dump({"series": n, "kept": kept() - before, "files": files}, sys.stdout)
"""


def _worker_on_a_full_disk(disk: Path, filled: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_WORKER, filled],
        env=child_env({"PROMETHEUS_MULTIPROC_DIR": str(disk)}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout), "log": done.stderr}


def test_a_worker_starts_on_a_full_disk(tmp_path: Path) -> None:
    """A worker whose metrics directory is full when it starts still imports (it failed
    with ENOSPC from the metrics without labels): its metrics live in memory, with a
    warning, and no file is left behind."""
    with small_tmpfs(tmp_path, 1) as disk:
        got = _worker_on_a_full_disk(disk, "before")
    assert "keeps those metrics in memory" in got["log"]
    assert got["files"] == [] and got["series"] == 199  # every series fits, in memory


def test_a_series_that_fits_in_part_is_not_retried_at_every_request(tmp_path: Path) -> None:
    """The disk fills after the worker started: a histogram series whose first values fit
    and a later one does not is not created; asking for it again at every request kept
    the values that fitted each time (~3.7 KB a request, without bound while the disk
    stayed full); now it is tried again only after `SKIPPED_LOG_GAP_S`."""
    with small_tmpfs(tmp_path, 1) as disk:
        got = _worker_on_a_full_disk(disk, "after")
    assert got["series"] < 199, got  # a series did not fit
    assert got["kept"] == 0, got
    assert "metrics not recorded" in got["log"]
