"""`huedb.server.metric_files`: the workers' metric files are never sparse, and a file
system that cannot hold them says so with an OSError (never SIGBUS, never a broken file).

Real file systems: the test's own directory, a full 1 MB tmpfs, and a ramfs (which has
no fallocate, so glibc's fallback writes the blocks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from huedb.server.metric_files import INITIAL_BYTES, AllocatedMmapedDict
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
        with pytest.raises(OSError):  # a new file: refused, and none left behind
            AllocatedMmapedDict(str(disk / "counter_1.db"))
        assert not (disk / "counter_1.db").exists()
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
