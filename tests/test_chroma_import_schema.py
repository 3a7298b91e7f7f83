"""Chroma directories keep their collection schema through `migrate_chroma` (issue 12).

Chroma 1.5 stores a collection's reconciled schema in `collections.schema_str` of its sysdb
(and `config_json_str` as `{}`): the space, HNSW settings and embedding function of the
vector index, per-key inverted indexes switched off, full-text search switched off, keys it
discovered in written metadata. The directories here are written by the real chromadb 1.5.9
`PersistentClient`; older layouts are made from them by rewriting the `collections` table as
those versions had it (no `schema_str` column, or a NULL one; the configuration in
`config_json_str`).
"""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.api.collection_schema import default_schema, schema_from_configuration
from huedb.engine.hnsw_config import hnsw_defaults
from huedb.ops.chroma_import import migrate_chroma
from tests.cli import check_cli

chromadb = pytest.importorskip(
    "chromadb", reason="chromadb (a test dependency) is needed to write Chroma directories"
)
from chromadb.api.types import (  # noqa: E402
    FtsIndexConfig,
    IntInvertedIndexConfig,
    Schema,
    StringInvertedIndexConfig,
    VectorIndexConfig,
)

from tests.test_space_precedence import CosineEmbedder  # noqa: E402 - registers it in chromadb

QUERY = [[3.0, 1.0, 2.0]]
# Filters compared between Chroma and huedb: label -> get() arguments.
FILTERS: dict[str, dict[str, Any]] = {
    "secret-str": {"where": {"secret": "s1"}},
    "secret-int": {"where": {"secret": 1}},
    "n-int": {"where": {"n": 1}},
    "n-str": {"where": {"n": "1"}},
    "document": {"where_document": {"$contains": "doc"}},
}


@dataclass
class Echo:
    """What chromadb answers for one collection of the directory."""

    configuration: dict[str, Any]
    schema: dict[str, Any]
    metadata: dict[str, Any] | None
    filters: dict[str, Any]
    distances: list[float]


def _restricted_schema() -> Schema:
    """Cosine with a function, a key's string index off, full-text search off."""
    schema = Schema()
    schema.create_index(
        config=VectorIndexConfig(space="cosine", embedding_function=CosineEmbedder(3))
    )
    schema.delete_index(config=StringInvertedIndexConfig(), key="secret")
    schema.delete_index(config=FtsIndexConfig(), key="#document")
    return schema


def _ip_schema() -> Schema:
    """ip without a function; ints not indexed anywhere."""
    schema = Schema()
    schema.create_index(config=VectorIndexConfig(space="ip", embedding_function=None))
    schema.delete_index(config=IntInvertedIndexConfig())
    return schema


BUILDERS: dict[str, Callable[[Any, str], Any]] = {
    "restricted": lambda c, n: c.create_collection(n, schema=_restricted_schema()),
    "ip-schema": lambda c, n: c.create_collection(n, schema=_ip_schema(), embedding_function=None),
    "legacy": lambda c, n: c.create_collection(
        n, metadata={"hnsw:space": "cosine", "owner": "x"}, embedding_function=None
    ),
    "configured": lambda c, n: c.create_collection(
        n,
        configuration={"hnsw": {"space": "ip", "max_neighbors": 24, "ef_search": 70}},
        embedding_function=None,
    ),
    "plain": lambda c, n: c.create_collection(n),
}


def _close_chroma() -> None:
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    gc.collect()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - compared between chromadb and huedb
        return (type(exc).__name__, str(exc))


def _filters(col: Any) -> dict[str, Any]:
    return {
        label: _outcome(lambda k=kwargs: col.get(**k)["ids"]) for label, kwargs in FILTERS.items()
    }


def _distances(col: Any) -> list[float]:
    got = col.query(query_embeddings=QUERY, n_results=3, include=["distances"])
    return [round(d, 5) for d in got["distances"][0]]


@pytest.fixture(scope="module")
def chroma_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Echo]]:
    """A Chroma 1.5.9 directory, and what chromadb echoes and answers for each collection."""
    path = tmp_path_factory.mktemp("chroma-schema") / "store"
    _close_chroma()
    client = chromadb.PersistentClient(path=str(path))
    for name, build in BUILDERS.items():
        col = build(client, name)
        col.add(
            ids=["a", "b", "c"],
            embeddings=[[1.0, 2.0, 3.0], [3.0, 1.0, 2.5], [-1.0, 0.5, 2.0]],
            metadatas=[{"secret": "s1", "n": 1}, {"secret": 1, "n": "1"}, {"other": True}],
            documents=["doc one", "doc two", None],
        )
    legacy = client.get_collection("legacy")
    legacy.modify(configuration={"hnsw": {"ef_search": 55}})
    legacy.add(ids=["gone"], embeddings=[[0.0, 1.0, 0.0]], metadatas=[{"gone": 1.5}])
    legacy.delete(ids=["gone"])  # Chroma keeps the key in the schema
    _close_chroma()
    client = chromadb.PersistentClient(path=str(path))
    echoes = {}
    for name in BUILDERS:
        col = client.get_collection(name)
        echoes[name] = Echo(
            configuration=col.configuration_json,
            schema=col._model.serialized_schema,
            metadata=col.metadata,
            filters=_filters(col),
            distances=_distances(col),
        )
    _close_chroma()
    return path, echoes


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "huedb"
    clear_system_cache()


def _huedb(path: Path, name: str) -> Any:
    return huedb.PersistentClient(path=path).get_collection(name, embedding_function=None)


def _rewrite(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path / "chroma.sqlite3")
    try:
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)
    finally:
        conn.close()


def _copy(source: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(source, copy)
    return copy


def _discovered(schema: dict[str, Any]) -> set[str]:
    """Keys Chroma added from written metadata (they copy the defaults)."""
    return {
        key
        for key, types in schema["keys"].items()
        if not key.startswith("#")
        and all(schema["defaults"].get(t) == indexes for t, indexes in types.items())
    }


# -- Chroma 1.5 directories ---------------------------------------------------------------


def test_schema_reaches_huedb_as_chroma_echoes_it(
    chroma_dir: tuple[Path, dict[str, Echo]], target: Path
) -> None:
    path, echoes = chroma_dir
    assert echoes["restricted"].schema["keys"]["secret"]["string"]["string_inverted_index"] == {
        "enabled": False,
        "config": {},
    }  # the fixture really has a schema worth keeping
    report = migrate_chroma(path, target, show_progress=False)
    for name, echo in echoes.items():
        col = _huedb(target, name)
        model = col.get_model()
        assert model.configuration_json == echo.configuration, name
        assert model.metadata == echo.metadata, name
        if name != "legacy":
            assert model.schema == echo.schema, name
    warnings = {c.name: c.warnings for c in report.collections}
    assert [name for name, found in warnings.items() if found] == ["legacy"]
    # A schema cannot be given beside legacy hnsw:* keys: the keys Chroma discovered in
    # metadata are only those the imported records bring (not "gone", of a deleted record),
    # with a warning naming the others; everything else of the schema is kept.
    legacy = _huedb(target, "legacy").get_model().schema
    expected = json.loads(json.dumps(echoes["legacy"].schema))
    lost = set(expected["keys"]) - set(legacy["keys"])
    assert "gone" in lost and lost <= _discovered(expected)
    for key in lost:
        del expected["keys"][key]
    assert legacy == expected
    (message,) = warnings["legacy"]
    assert all(key in message for key in lost) and "filters on them behave the same" in message


def test_schema_is_enforced_as_in_chroma(
    chroma_dir: tuple[Path, dict[str, Echo]], target: Path
) -> None:
    path, echoes = chroma_dir
    migrate_chroma(path, target, show_progress=False)
    restricted = echoes["restricted"].filters
    assert restricted["secret-str"][0] == "InvalidArgumentError"
    assert restricted["document"] == (
        "InvalidArgumentError",
        "Cannot filter using full-text search because FTS indexing is disabled",
    )
    assert echoes["ip-schema"].filters["n-int"][0] == "InvalidArgumentError"
    for name, echo in echoes.items():
        col = _huedb(target, name)
        assert _filters(col) == echo.filters, name
        assert _distances(col) == echo.distances, name


def test_schema_written_on_another_machine_keeps_its_num_threads(
    chroma_dir: tuple[Path, dict[str, Echo]], tmp_path: Path, target: Path
) -> None:
    """Chroma records the writer's core count as num_threads; the import keeps it."""
    path, echoes = chroma_dir
    copy = _copy(path, tmp_path, "other-machine")
    threads = hnsw_defaults()["num_threads"] + 6
    rows = sqlite3.connect(copy / "chroma.sqlite3").execute(
        "SELECT name, schema_str FROM collections"
    )
    updates = []
    for name, text in rows.fetchall():
        updates.append(
            (
                "UPDATE collections SET schema_str = ? WHERE name = ?",
                (text.replace('"num_threads":2', f'"num_threads":{threads}'), name),
            )
        )
    _rewrite(copy, *updates)
    assert f'"num_threads":{threads}' in updates[0][1][0]
    migrate_chroma(copy, target, show_progress=False)
    for name in ("plain", "restricted", "configured", "legacy"):
        schema = _huedb(target, name).get_model().schema
        for types in (schema["defaults"], schema["keys"]["#embedding"]):
            assert types["float_list"]["vector_index"]["config"]["hnsw"]["num_threads"] == threads
        assert _huedb(target, name).configuration_json == echoes[name].configuration


# -- older layouts --------------------------------------------------------------------------


def _old_layout(copy: Path, configs: dict[str, Any], drop_column: bool) -> None:
    """`collections` as Chroma 0.5 to 1.0 had it: the configuration in config_json_str and
    no schema (the column dropped, or NULL as after an upgrade)."""
    statements = [
        (
            "UPDATE collections SET config_json_str = ?, schema_str = NULL WHERE name = ?",
            (json.dumps(config), name),
        )
        for name, config in configs.items()
    ]
    if drop_column:
        statements.append(("ALTER TABLE collections DROP COLUMN schema_str", ()))
    _rewrite(copy, *statements)


def _assert_default_schema(col: Any, expected: dict[str, Any]) -> None:
    """`expected`, plus any keys of written metadata (copies of the defaults)."""
    schema = col.get_model().schema
    assert schema["defaults"] == expected["defaults"]
    assert {k: schema["keys"][k] for k in expected["keys"]} == expected["keys"]
    assert set(schema["keys"]) - set(expected["keys"]) <= _discovered(schema)


@pytest.mark.parametrize("drop_column", [True, False], ids=["no-column", "null-column"])
def test_older_layouts_import_with_the_default_schema(
    chroma_dir: tuple[Path, dict[str, Echo]], tmp_path: Path, target: Path, drop_column: bool
) -> None:
    path, echoes = chroma_dir
    copy = _copy(path, tmp_path, "old")
    one_o = {
        "hnsw": {"space": "cosine", "ef_construction": 120, "max_neighbors": 20},
        "embedding_function": {"type": "known", "name": "default", "config": {}},
    }
    zero_six = {  # 0.5/0.6: `_type`-tagged, `hnsw:*` metadata keys win
        "_type": "CollectionConfigurationInternal",
        "hnsw_configuration": {"_type": "HNSWConfigurationInternal", "M": 12, "space": "l2"},
    }
    _old_layout(copy, {"restricted": one_o, "ip-schema": {}, "legacy": zero_six}, drop_column)
    report = migrate_chroma(copy, target, show_progress=False)
    warnings = {c.name: c.warnings for c in report.collections}
    assert warnings["restricted"] == warnings["ip-schema"] == []
    # No function and settings the legacy keys do not give: the settings are kept, with
    # chromadb's default function recorded (the one its client uses for none), and said.
    assert "'embedding_function': {'type': 'known', 'name': 'default'" in warnings["legacy"][0]

    restricted = _huedb(target, "restricted")
    hnsw = {**hnsw_defaults(), **one_o["hnsw"]}
    _assert_default_schema(restricted, default_schema(hnsw, one_o["embedding_function"]))
    assert restricted.configuration_json["hnsw"]["space"] == "cosine"
    # Without a schema nothing is switched off: the filters Chroma 1.5 refused are answered.
    assert _filters(restricted)["secret-str"] == ["a"]
    assert _filters(restricted)["document"] == ["a", "b"]
    assert _distances(restricted) == echoes["restricted"].distances

    ip = _huedb(target, "ip-schema")  # nothing stored: l2, Chroma's defaults
    _assert_default_schema(ip, schema_from_configuration({}))
    assert ip.configuration_json["hnsw"]["space"] == "l2"

    legacy = _huedb(target, "legacy").configuration_json["hnsw"]
    assert (legacy["space"], legacy["max_neighbors"]) == ("cosine", 12)
    assert _distances(_huedb(target, "legacy")) == echoes["legacy"].distances


def test_a_refused_schema_is_refused_before_anything_is_written(
    chroma_dir: tuple[Path, dict[str, Echo]], tmp_path: Path, target: Path
) -> None:
    path, _ = chroma_dir
    copy = _copy(path, tmp_path, "bad-schema")
    _rewrite(
        copy,
        (
            "UPDATE collections SET schema_str = ? WHERE name = 'plain'",
            (json.dumps({"defaults": {}, "keys": {"k": {"int": {"int_inverted_index": 3}}}}),),
        ),
    )
    with pytest.raises(ValueError, match="'plain': schema refused: invalid type"):
        migrate_chroma(copy, target, show_progress=False)
    assert huedb.PersistentClient(path=target).list_collections() == []


def test_sparse_index_schema_is_refused(tmp_path: Path, target: Path) -> None:
    """A sparse index enabled by default (Chroma's hosted rules refuse it; `chroma run`
    refuses any sparse index): written here by hand."""
    source = tmp_path / "sparse"
    _close_chroma()
    chromadb.PersistentClient(path=str(source)).create_collection("sparse", embedding_function=None)
    _close_chroma()
    schema = default_schema()
    schema["defaults"]["sparse_vector"]["sparse_vector_index"]["enabled"] = True
    _rewrite(source, ("UPDATE collections SET schema_str = ?", (json.dumps(schema),)))
    with pytest.raises(
        ValueError,
        match="'sparse': schema refused: .*Sparse vector index cannot be enabled by default",
    ):
        migrate_chroma(source, target, show_progress=False)
    assert huedb.PersistentClient(path=target).list_collections() == []


def test_migrate_chroma_prints_each_collections_warnings(
    chroma_dir: tuple[Path, dict[str, Echo]], tmp_path: Path
) -> None:
    path, _ = chroma_dir
    out = check_cli("migrate-chroma", "--from", str(path), "--path", str(tmp_path / "cli-target"))
    lines = out.stdout.splitlines()
    legacy = next(i for i, line in enumerate(lines) if "/legacy:" in line)
    assert lines[legacy + 1].startswith("  WARNING: ") and "gone" in lines[legacy + 1]
    assert sum("WARNING" in line for line in lines) == 1
