"""A `migrate-chroma` rerun mirrors the Chroma 1.5.9 source exactly: records deleted, updated
or added there since the last run, and the collection's metadata and configuration."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.cli.output import migrate_lines
from huedb.ops.chroma_import import MigrationReport, migrate_chroma

chromadb = pytest.importorskip(
    "chromadb", reason="chromadb (a test dependency) is needed to write Chroma directories"
)

NAME = "mirrored"
INCLUDE = ["embeddings", "documents", "metadatas", "uris"]
PAGE = 7  # batch size of the runs: the target's ids are read in many pages


@pytest.fixture()
def source(tmp_path: Path) -> Iterator[Path]:
    """A Chroma directory with one collection of 60 records."""
    path = tmp_path / "chroma"
    rng = np.random.default_rng(3)
    col = chromadb.PersistentClient(path=str(path)).create_collection(
        NAME, embedding_function=None, metadata={"owner": "team", "version": 1}
    )
    col.add(
        ids=[f"id{i:02d}" for i in range(60)],
        embeddings=rng.standard_normal((60, 4)).astype(np.float32),
        metadatas=[{"n": i, "even": i % 2 == 0} for i in range(60)],
        documents=[f"document {i}" if i % 3 else None for i in range(60)],
        uris=[f"s3://b/{i}" if i % 5 == 0 else None for i in range(60)],
    )
    _close_chroma()
    yield path
    _close_chroma()
    clear_system_cache()


@dataclass
class Target:
    """A huedb store to migrate into: the SQLite store in `path`, or the PostgreSQL store
    of `url` with this node's derived files in `path`."""

    path: Path
    url: str = ""

    def migrate(self, source: Path) -> MigrationReport:
        return migrate_chroma(
            source, self.path, show_progress=False, batch_size=PAGE, store=self.url or None
        )

    def collection(self) -> Any:
        settings = huedb.Settings(huedb_store=self.url)
        return huedb.PersistentClient(path=self.path, settings=settings).get_collection(NAME)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """Each kind of huedb store (its engines closed before a PostgreSQL one is dropped)."""
    if request.param == "sqlite":
        yield Target(tmp_path / "huedb")
    else:
        yield Target(tmp_path / "node", request.getfixturevalue("pg_url"))
    clear_system_cache()


def _close_chroma() -> None:
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    gc.collect()


def _chroma_collection(path: Path) -> Any:
    return chromadb.PersistentClient(path=str(path)).get_collection(NAME, embedding_function=None)


def _typed(value: Any) -> Any:
    """A value with its exact types made part of equality (True != 1, 2.0 != 2)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _by_id(got: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Every record as (document, uri, typed metadata, embedding), keyed by id."""
    return {
        record_id: (
            got["documents"][i],
            got["uris"][i],
            _typed(got["metadatas"][i] or None),  # chromadb answers {} for a uri alone
            np.asarray(got["embeddings"][i], dtype=np.float32).tolist(),
        )
        for i, record_id in enumerate(got["ids"])
    }


def _assert_mirrors(target: Target, expected: dict[str, Any], report: MigrationReport) -> None:
    """The huedb collection holds exactly the source's records, and the report says so."""
    col = target.collection()
    assert _by_id(col.get(include=INCLUDE)) == _by_id(expected)
    (collection,) = report.collections
    assert collection.records == col.count() == len(expected["ids"])
    assert f"/{NAME}: {col.count()} records" in "\n".join(migrate_lines(report))


def test_rerun_mirrors_deletes_updates_and_adds(source: Path, store: Target) -> None:
    store.migrate(source)
    col = _chroma_collection(source)
    # Deleted: the first and last records, runs across several pages, single records.
    deleted = ["id00", "id59", "id30", *(f"id{i:02d}" for i in range(5, 17)), "id41", "id42"]
    col.delete(ids=deleted)
    col.update(
        ids=["id01", "id20", "id58"],
        embeddings=[[9, 9, 9, 9], [0.5, 0, 0, 0], [-1, -2, -3, -4]],
        metadatas=[{"n": None, "new": "x"}, {"even": None}, {"n": 2.5}],
        documents=["changed", "also changed", "third"],
    )
    col.add(
        ids=["id05", "fresh1", "fresh2"],  # id05: deleted, then added again
        embeddings=[[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
        metadatas=[{"again": True}, None, {"k": [1, 2]}],
        documents=[None, "fresh", None],
    )
    expected = col.get(include=INCLUDE)
    _close_chroma()
    report = store.migrate(source)
    _assert_mirrors(store, expected, report)
    assert not store.collection().get(ids=["id00", "id30", "id59"])["ids"]
    assert report.collections[0].deleted == len(deleted) - 1  # id05 came back
    assert f"deleted {len(deleted) - 1} gone from the source" in "\n".join(migrate_lines(report))


def test_rerun_after_every_record_was_deleted(source: Path, store: Target) -> None:
    store.migrate(source)
    col = _chroma_collection(source)
    col.delete(ids=col.get(include=[])["ids"])
    expected = col.get(include=INCLUDE)
    _close_chroma()
    report = store.migrate(source)
    _assert_mirrors(store, expected, report)
    assert store.collection().count() == 0
    assert report.collections[0].deleted == 60


def test_rerun_without_source_changes_deletes_nothing(source: Path, tmp_path: Path) -> None:
    target = Target(tmp_path / "huedb")
    target.migrate(source)
    expected = _chroma_collection(source).get(include=INCLUDE)
    _close_chroma()
    report = target.migrate(source)
    _assert_mirrors(target, expected, report)
    assert report.collections[0].deleted == 0 and not report.collections[0].warnings


def test_rerun_mirrors_collection_metadata_and_configuration(source: Path, tmp_path: Path) -> None:
    target = Target(tmp_path / "huedb")
    target.migrate(source)
    col = _chroma_collection(source)
    col.modify(metadata={"owner": "other", "version": 2.0, "public": True})
    col.modify(
        configuration={
            "hnsw": {"ef_search": 77, "num_threads": 3, "sync_threshold": 2000},
            "embedding_function": chromadb.utils.embedding_functions.DefaultEmbeddingFunction(),
        }
    )
    col = _chroma_collection(source)
    metadata, configuration = col.metadata, col.configuration_json
    _close_chroma()
    report = target.migrate(source)
    assert not report.collections[0].warnings
    col = target.collection()
    assert _typed(col.metadata) == _typed(metadata)
    assert col.configuration_json == configuration
    assert configuration["hnsw"]["ef_search"] == 77
    assert configuration["embedding_function"]["name"] == "default"


def test_rerun_warns_when_metadata_with_hnsw_space_cannot_be_mirrored(tmp_path: Path) -> None:
    """`modify` cannot set `hnsw:space`: a target whose metadata was changed in huedb keeps
    it, with a warning naming both."""
    source, target = tmp_path / "chroma", Target(tmp_path / "huedb")
    chromadb.PersistentClient(path=str(source)).create_collection(
        NAME, embedding_function=None, metadata={"hnsw:space": "ip", "a": 1}
    ).add(ids=["x"], embeddings=[[1.0, 2.0]])
    _close_chroma()
    target.migrate(source)
    target.collection().modify(metadata={"b": 2})
    clear_system_cache()
    report = target.migrate(source)
    (warning,) = report.collections[0].warnings
    assert "metadata {'b': 2} differs from the source's {" in warning
    assert "'hnsw:space': 'ip'" in warning and "'a': 1" in warning
    assert target.collection().metadata == {"b": 2}
    _close_chroma()
