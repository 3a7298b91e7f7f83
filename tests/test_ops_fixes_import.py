"""A refused Parquet import changes nothing: no collection created, no record written, no
store created for a file that is not there."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.ops.parquet import (
    KEY_FORMAT,
    KEY_METADATA_SHA256,
    export_collection,
    import_collection,
    metadata_digest,
)
from tests.cli import run_cli

OK = [[1.0, 2.0]]
BAD_FILES = {
    "int-ids": ({"id": [1, 2], "embedding": OK * 2}, "ids must be strings"),
    "str-embeddings": ({"id": ["a", "b"], "embedding": [["1", "2"], ["3", "4"]]}, "floats"),
    "ragged": ({"id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0]]}, "dimension 1"),
    "null-embedding": ({"id": ["a", "b"], "embedding": [[1.0, 2.0], None]}, "no embedding"),
    "empty-id": ({"id": ["a", ""], "embedding": OK * 2}, "id is empty"),
    "meta-not-json": ({"id": ["a"], "embedding": OK, "metadata": ["{x"]}, "not JSON"),
    "meta-nested": (
        {"id": ["a"], "embedding": OK, "metadata": ['{"k": {"x": 1}}']},
        "Expected metadata value",
    ),
    "meta-reserved-key": (
        {"id": ["a"], "embedding": OK, "metadata": ['{"$k": 1}']},
        "Invalid metadata",
    ),
    "sparse-vector-without-indices": (
        {"id": ["a"], "embedding": OK, "metadata": ['{"sv": {"#type": "sparse_vector"}}']},
        "missing ['indices', 'values']",
    ),
    "duplicate-ids": ({"id": ["a", "a"], "embedding": OK * 2}, "duplicates of: a"),
    "nan": ({"id": ["a"], "embedding": [[float("nan"), 2.0]]}, "NaN"),
    "document-not-text": ({"id": ["a"], "embedding": OK, "document": [7]}, "strings"),
    # Bad rows in the last batch, after good ones (batches of 3).
    "late-dimension": (
        {"id": [f"r{i}" for i in range(10)], "embedding": OK * 9 + [[1.0, 2.0, 3.0]]},
        "dimension 3",
    ),
    "late-metadata": (
        {
            "id": [f"r{i}" for i in range(10)],
            "embedding": OK * 10,
            "metadata": ['{"a": 1}'] * 9 + ['{"a": [1, "x"]}'],
        },
        "rows 9 to 9",
    ),
    "late-nan": (
        {"id": [f"r{i}" for i in range(10)], "embedding": OK * 9 + [[float("inf"), 1.0]]},
        "rows 9 to 9",
    ),
    # The same id in two batches (of 3): refused whatever the batch size (review, 2026-12-08).
    "duplicate-ids-far-apart": (
        {"id": ["d0", *[f"r{i}" for i in range(8)], "d0"], "embedding": OK * 10},
        "id 'd0' is in 2 rows",
    ),
}


def _snapshot(data: Path) -> dict[str, int]:
    client = huedb.PersistentClient(path=data)
    try:
        return {c.name: c.count() for c in client.list_collections()}
    finally:
        client.close()
        clear_system_cache()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_collection("keep").add(ids=["x", "y"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
    client.close()
    clear_system_cache()
    return data


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_refused_import_creates_no_collection(data: Path, tmp_path: Path, case: str) -> None:
    columns, message = BAD_FILES[case]
    path = tmp_path / f"{case}.parquet"
    pq.write_table(pa.table(columns), path)
    before = _snapshot(data)
    for target in ("new-one", "keep"):  # a new collection, and an existing one
        r = run_cli(
            "import", str(path), "--path", str(data), "--collection", target,
            "--batch-size", "3",
        )  # fmt: skip
        assert r.returncode == 2, (target, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert _snapshot(data) == before


def test_a_refused_import_through_the_library_writes_nothing(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "late.parquet"
    ids = [f"r{i}" for i in range(10)]
    pq.write_table(pa.table({"id": ids, "embedding": OK * 9 + [[float("nan"), 1.0]]}), path)
    client = huedb.PersistentClient(path=data)
    with pytest.raises(ValueError, match="nothing was imported"):
        import_collection(client, path, collection_name="keep", batch_size=3)
    with pytest.raises(ValueError, match="nothing was imported"):
        import_collection(client, path, collection_name="fresh", batch_size=3)
    assert {c.name: c.count() for c in client.list_collections()} == {"keep": 2}
    client.close()


def test_import_of_a_missing_file_creates_no_store(tmp_path: Path) -> None:
    new = tmp_path / "new"
    r = run_cli("import", str(tmp_path / "missing.parquet"), "--path", str(new))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "missing.parquet is not a file" in r.stderr and "Traceback" not in r.stderr
    assert not new.exists()


def test_import_into_a_refused_collection_name_creates_no_store(data: Path, tmp_path: Path) -> None:
    """The target collection's name (--collection, else the file's, else its stem) is checked
    before a store is created for the import."""
    exported = tmp_path / "x.parquet"
    done = run_cli("export", "--path", str(data), "--collection", "keep", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    new = tmp_path / "new"
    r = run_cli("import", str(exported), "--path", str(new), "--collection", "c")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Expected a name containing 3-512 characters" in r.stderr
    assert "Traceback" not in r.stderr and not new.exists()
    stem_named = tmp_path / "y.parquet"  # a file without huedb metadata: named by its stem
    pq.write_table(pa.table({"id": ["a"], "embedding": [[1.0, 2.0]]}), stem_named)
    r = run_cli("import", str(stem_named), "--path", str(new))
    assert r.returncode == 2 and not new.exists(), r.stdout + r.stderr
    r = run_cli("import", str(exported), "--path", str(new), "--collection", "okay")
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_with_a_space_the_file_contradicts_creates_no_store(
    data: Path, tmp_path: Path
) -> None:
    """`--space` is checked against the file's space before a store is created for it (the
    refusal left an empty store at a mistyped path)."""
    exported = tmp_path / "x.parquet"  # "keep" was created with the default space, l2
    done = run_cli("export", "--path", str(data), "--collection", "keep", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    new = tmp_path / "new"
    for space, message in (("cosine", "was exported with space 'l2', not 'cosine'"),
                           ("manhattan", "invalid choice")):  # fmt: skip
        r = run_cli("import", str(exported), "--path", str(new), "--space", space)
        assert r.returncode == 2 and message in r.stderr, r.stdout + r.stderr
        assert "Traceback" not in r.stderr and not new.exists()


def test_a_checked_file_is_not_read_again_by_the_import(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`huedb import` into a new store checks the file before creating the store, then the
    import asks again: the unchanged file is read once; a changed one is checked again."""
    from huedb.ops import parquet

    exported = tmp_path / "x.parquet"
    done = run_cli("export", "--path", str(data), "--collection", "keep", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    reads: list[Path] = []
    real_check = parquet._check_file

    def counting(path: Path, batch_size: int) -> int | None:
        reads.append(path)
        return real_check(path, batch_size)

    monkeypatch.setattr(parquet, "_check_file", counting)
    assert parquet.check_file(exported, 100) == 2
    client = huedb.PersistentClient(path=tmp_path / "new")
    try:
        parquet.import_collection(client, exported, collection_name="first", batch_size=100)
        assert len(reads) == 1
        table = pq.read_table(exported)
        pq.write_table(table.slice(0, 1), exported)  # changed: checked again
        report = parquet.import_collection(
            client, exported, collection_name="second", batch_size=100
        )
        assert len(reads) == 2 and report.rows == 1
    finally:
        client.close()
        clear_system_cache()


def test_a_file_of_a_newer_export_format_is_refused(data: Path, tmp_path: Path) -> None:
    """As `restore` refuses a newer backup (review, 2026-12-08): the file's format is one
    this huedb does not read; its metadata checksum is right, so it is not "corrupt"."""
    source = huedb.PersistentClient(path=tmp_path / "source")
    source.create_collection("col").add(ids=["a"], embeddings=OK)
    exported = tmp_path / "col.parquet"
    export_collection(source.get_collection("col"), exported)
    source.close()
    clear_system_cache()
    table = pq.read_table(exported)
    kv = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    kv[KEY_FORMAT] = "2"
    kv[KEY_METADATA_SHA256] = metadata_digest(kv)
    newer = tmp_path / "newer.parquet"
    pq.write_table(table.replace_schema_metadata(kv), newer)
    before = _snapshot(data)
    r = run_cli("import", str(newer), "--path", str(data))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "export format '2'" in r.stderr and "upgrade huedb" in r.stderr, r.stderr
    assert _snapshot(data) == before


def test_an_empty_collection_keeps_its_dimension_through_export_and_import(
    tmp_path: Path,
) -> None:
    """Its records all deleted, a collection still refuses another dimension; so does the
    one an import of its export creates (before, the import left it without one, and an
    export through a handle opened before the first record declared none)."""
    source = huedb.PersistentClient(path=tmp_path / "source")
    col = source.create_collection("emptied")
    col.add(ids=["a"], embeddings=OK)
    col.delete(ids=["a"])
    exported = tmp_path / "emptied.parquet"
    export_collection(col, exported)
    source.close()
    clear_system_cache()
    target = huedb.PersistentClient(path=tmp_path / "target")
    report = import_collection(target, exported)
    assert report.rows == 0 and report.created
    imported = target.get_collection("emptied")
    assert imported.get_model().dimension == 2
    with pytest.raises(huedb.errors.InvalidArgumentError, match="dimension of 2"):
        imported.add(ids=["b"], embeddings=[[1.0, 2.0, 3.0]])
    target.close()
    clear_system_cache()
