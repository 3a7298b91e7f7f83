"""Parquet export -> import keeps a collection's configuration and schema (issue 12).

The file carries the echoed configuration (`huedb.configuration`) and schema
(`huedb.schema`), both covered by the metadata checksum; a collection the import creates
echoes both as the exported one did, and refuses the same filters. Files written before
`huedb.schema` existed import as before. Whether the user chose `ef_search`, which the echoed
configuration cannot tell, travels as `huedb.ef_search_chosen`: a chosen ef_search (100
included) stays chosen, an unchosen one stays the planner's; files without it import as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from chromadb.api.types import (
    FtsIndexConfig,
    HnswIndexConfig,
    IntInvertedIndexConfig,
    Schema,
    StringInvertedIndexConfig,
    VectorIndexConfig,
)

import huedb
from huedb.api.client import clear_system_cache
from huedb.api.collection_schema import schema_from_configuration
from huedb.errors import InvalidArgumentError
from huedb.ops.parquet import (
    KEY_EF_SEARCH_CHOSEN,
    KEY_METADATA_SHA256,
    KEY_SCHEMA,
    export_collection,
    import_collection,
    metadata_digest,
    read_file_metadata,
)
from tests.test_schema import chroma_server  # noqa: F401 - a fixture used here
from tests.test_space_precedence import CosineEmbedder

RECORDS: dict[str, Any] = {
    "ids": ["a", "b", "c"],
    "embeddings": [[1.0, 2.0, 3.0], [3.0, 1.0, 2.5], [-1.0, 0.5, 2.0]],
    "metadatas": [{"secret": "s1", "n": 1}, {"secret": 1, "n": "1"}, {"other": True}],
    "documents": ["doc one", "doc two", None],
}


def _restricted() -> Schema:
    schema = Schema()
    schema.create_index(
        config=VectorIndexConfig(space="cosine", embedding_function=CosineEmbedder(3))
    )
    schema.delete_index(config=StringInvertedIndexConfig(), key="secret")
    schema.delete_index(config=FtsIndexConfig(), key="#document")
    return schema


def _ints_off() -> Schema:
    schema = Schema()
    schema.create_index(config=VectorIndexConfig(space="ip", embedding_function=None))
    schema.delete_index(config=IntInvertedIndexConfig())
    return schema


def _legacy_modified(client: huedb.Client, name: str) -> huedb.Collection:
    col = client.create_collection(
        name, metadata={"hnsw:space": "cosine", "owner": "x"}, embedding_function=None
    )
    col.modify(configuration={"hnsw": {"ef_search": 66, "num_threads": 7}})
    return col


MAKERS: dict[str, Callable[[huedb.Client, str], huedb.Collection]] = {
    "restricted": lambda c, n: c.create_collection(n, schema=_restricted()),
    "ints-off": lambda c, n: c.create_collection(n, schema=_ints_off(), embedding_function=None),
    "configured-no-function": lambda c, n: c.create_collection(
        n,
        configuration={"hnsw": {"space": "ip", "ef_search": 50, "max_neighbors": 24}},
        embedding_function=None,
    ),
    "legacy-modified": _legacy_modified,
    "legacy-with-function": lambda c, n: c.create_collection(
        n, metadata={"hnsw:space": "ip", "hnsw:M": 32}
    ),
    "plain": lambda c, n: c.create_collection(n),
}
FILTERS: dict[str, dict[str, Any]] = {
    "secret-str": {"where": {"secret": "s1"}},
    "n-int": {"where": {"n": 1}},
    "document": {"where_document": {"$contains": "doc"}},
}


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple[huedb.Client, huedb.Client]]:
    src, dst = huedb.PersistentClient(tmp_path / "src"), huedb.PersistentClient(tmp_path / "dst")
    yield src, dst
    src.close()
    dst.close()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except InvalidArgumentError as exc:
        return str(exc)


def _filters(col: huedb.Collection) -> dict[str, Any]:
    return {
        label: _outcome(lambda k=kwargs: col.get(**k)["ids"]) for label, kwargs in FILTERS.items()
    }


def _definition(col: huedb.Collection) -> tuple[Any, ...]:
    model = col.get_model()
    return model.configuration_json, model.schema, model.metadata


def _rewrite_metadata(path: Path, change: Callable[[dict[str, str]], None]) -> None:
    """The same rows with the file's huedb metadata changed by `change`."""
    table = pq.read_table(path)
    kv = read_file_metadata(path)
    change(kv)
    table = table.replace_schema_metadata(kv)
    pq.write_table(table, path, compression="zstd", write_page_checksum=True)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_round_trip_keeps_configuration_and_schema(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path, kind: str
) -> None:
    src_client, dst_client = clients
    src = MAKERS[kind](src_client, kind)
    src.add(**RECORDS)
    src = src_client.get_collection(kind, embedding_function=None)
    out = tmp_path / f"{kind}.parquet"
    export_collection(src, out, show_progress=False)
    assert json.loads(read_file_metadata(out)[KEY_SCHEMA]) == src.get_model().schema

    report = import_collection(dst_client, out, show_progress=False)
    assert report.created and report.warnings == []
    dst = dst_client.get_collection(kind, embedding_function=None)
    assert _definition(dst) == _definition(src)
    assert _filters(dst) == _filters(src)
    got = dst.query(query_embeddings=[[3.0, 1.0, 2.0]], n_results=3, include=["distances"])
    expected = src.query(query_embeddings=[[3.0, 1.0, 2.0]], n_results=3, include=["distances"])
    assert got["ids"] == expected["ids"] and got["distances"] == expected["distances"]


def test_imported_schema_refuses_what_the_source_refused(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path
) -> None:
    src_client, dst_client = clients
    src = MAKERS["restricted"](src_client, "restricted")
    src.add(**RECORDS)
    out = tmp_path / "restricted.parquet"
    export_collection(src, out, show_progress=False)
    import_collection(dst_client, out, collection_name="copy", show_progress=False)
    assert _filters(dst_client.get_collection("copy")) == {
        "secret-str": "Cannot filter using metadata key 'secret' with type 'Str' because "
        "indexing is disabled",
        "n-int": ["a"],
        "document": "Cannot filter using full-text search because FTS indexing is disabled",
    }


def test_schema_is_covered_by_the_metadata_checksum(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path
) -> None:
    src_client, dst_client = clients
    src = MAKERS["restricted"](src_client, "restricted")
    src.add(**RECORDS)
    out = tmp_path / "restricted.parquet"
    export_collection(src, out, show_progress=False)

    def enable_everything(kv: dict[str, str]) -> None:
        kv[KEY_SCHEMA] = json.dumps(schema_from_configuration({}))

    _rewrite_metadata(out, enable_everything)
    with pytest.raises(ValueError, match="corrupt.*nothing was imported"):
        import_collection(dst_client, out, show_progress=False)
    assert dst_client.list_collections() == []


def test_file_without_a_schema_imports_as_before(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path
) -> None:
    """A file written before `huedb.schema` existed: the collection is created from the
    file's configuration, with the schema derived from it."""
    src_client, dst_client = clients
    src = src_client.create_collection(
        "older", configuration={"hnsw": {"space": "cosine", "ef_search": 77}}
    )
    src.add(**RECORDS)
    out = tmp_path / "older.parquet"
    export_collection(src, out, show_progress=False)

    def as_written_before(kv: dict[str, str]) -> None:
        del kv[KEY_SCHEMA]
        kv[KEY_METADATA_SHA256] = metadata_digest(kv)

    _rewrite_metadata(out, as_written_before)
    assert KEY_SCHEMA not in read_file_metadata(out)
    report = import_collection(dst_client, out, show_progress=False)
    assert report.created and report.warnings == []
    dst = dst_client.get_collection("older")
    assert dst.configuration_json == src.configuration_json
    schema = dst.get_model().schema
    expected = schema_from_configuration(src.configuration_json)
    assert schema["defaults"] == expected["defaults"]
    assert {k: schema["keys"][k] for k in expected["keys"]} == expected["keys"]
    assert _filters(dst) == _filters(src)


def test_import_over_http_keeps_configuration_and_schema(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path
) -> None:
    from tests.servers import huedb_server

    src_client, _ = clients
    files = {}
    for kind in ("restricted", "legacy-modified"):
        src = MAKERS[kind](src_client, kind)
        src.add(**RECORDS)
        files[kind] = tmp_path / f"{kind}.parquet"
        export_collection(src, files[kind], show_progress=False)
    data = tmp_path / "served"
    huedb.PersistentClient(path=data).close()
    with huedb_server(data) as server:
        remote = huedb.HttpClient(host=server.url)
        for path in files.values():
            assert import_collection(remote, path, show_progress=False).warnings == []
        remote.close()
    served = huedb.PersistentClient(path=data)
    for kind in files:
        src = src_client.get_collection(kind, embedding_function=None)
        dst = served.get_collection(kind, embedding_function=None)
        assert _definition(dst) == _definition(src)
        assert _filters(dst) == _filters(src)
    served.close()


def test_export_over_http_carries_the_schema(tmp_path: Path) -> None:
    from tests.servers import huedb_server

    source = huedb.PersistentClient(tmp_path / "served")
    MAKERS["restricted"](source, "restricted").add(**RECORDS)
    expected = _definition(source.get_collection("restricted", embedding_function=None))
    source.close()
    clear_system_cache()
    out = tmp_path / "remote.parquet"
    with huedb_server(tmp_path / "served") as server:
        remote = huedb.HttpClient(host=server.url)
        export_collection(remote.get_collection("restricted"), out, show_progress=False)
        remote.close()
    target = huedb.PersistentClient(tmp_path / "target")
    assert import_collection(target, out, show_progress=False).warnings == []
    assert _definition(target.get_collection("restricted", embedding_function=None)) == expected
    target.close()


# -- whether the user chose ef_search (`huedb.ef_search_chosen`) ------------------------

GRAPH = {"space": "ip", "max_neighbors": 24, "ef_construction": 50}  # not Chroma's defaults


def _modified(
    client: huedb.Client, name: str, hnsw: dict[str, Any], **create: Any
) -> huedb.Collection:
    """A collection created with `create`, then modified to the `hnsw` settings."""
    col = client.create_collection(name, embedding_function=None, **create)
    col.modify(configuration={"hnsw": hnsw})
    return col


# Collections whose user chose ef_search (100 included, which Chroma also writes by default).
CHOSEN: dict[str, Callable[[huedb.Client, str], huedb.Collection]] = {
    "configuration": lambda c, n: c.create_collection(
        n, configuration={"hnsw": {"ef_search": 100}}
    ),
    "configuration-graph": lambda c, n: c.create_collection(
        n, configuration={"hnsw": {**GRAPH, "ef_search": 100}}, embedding_function=None
    ),
    "modify": lambda c, n: _modified(c, n, {"ef_search": 100}),
    "legacy-then-modify": lambda c, n: _modified(
        c, n, {"ef_search": 100}, metadata={"hnsw:space": "cosine", "hnsw:M": 24}
    ),
    "legacy-key": lambda c, n: c.create_collection(
        n, metadata={"hnsw:search_ef": 100, "hnsw:M": 24}
    ),
    "schema": lambda c, n: c.create_collection(
        n,
        schema=Schema().create_index(
            VectorIndexConfig(hnsw=HnswIndexConfig(ef_search=100, max_neighbors=24))
        ),
    ),
    "other-value": lambda c, n: c.create_collection(n, configuration={"hnsw": {"ef_search": 77}}),
}
# Collections whose ef_search the planner tunes (Chroma's default 100, chosen by no one).
UNCHOSEN: dict[str, Callable[[huedb.Client, str], huedb.Collection]] = {
    "plain": lambda c, n: c.create_collection(n),
    "configuration-graph": lambda c, n: c.create_collection(
        n, configuration={"hnsw": GRAPH}, embedding_function=None
    ),
    "configuration-graph-with-function": lambda c, n: c.create_collection(
        n, configuration={"hnsw": GRAPH}
    ),
    "legacy": lambda c, n: c.create_collection(n, metadata={"hnsw:space": "cosine", "hnsw:M": 24}),
    "legacy-modified": lambda c, n: _modified(
        c, n, {"num_threads": 3, "resize_factor": 1.5}, metadata={"hnsw:M": 24}
    ),
    "schema": lambda c, n: c.create_collection(
        n,
        schema=Schema().create_index(VectorIndexConfig(hnsw=HnswIndexConfig(max_neighbors=24))),
    ),
}


def _ef_search(col: huedb.Collection) -> tuple[int | None, str | None]:
    """(the ef_search graph searches use, its source): "configuration" when the user chose it."""
    status = col.get_indexing_status()
    return status.ef_search, status.ef_search_source


def _export_import(
    src_client: huedb.Client,
    dst_client: huedb.Client,
    make: Callable[[huedb.Client, str], huedb.Collection],
    path: Path,
    change: Callable[[dict[str, str]], None] | None = None,
) -> tuple[huedb.Collection, huedb.Collection, list[str]]:
    """(source, imported copy, import warnings) of a collection `make` creates."""
    make(src_client, "efs").add(**RECORDS)
    src = src_client.get_collection("efs", embedding_function=None)
    export_collection(src, path, show_progress=False)
    if change is not None:
        _rewrite_metadata(path, change)
    report = import_collection(dst_client, path, show_progress=False)
    return src, dst_client.get_collection("efs", embedding_function=None), report.warnings


@pytest.mark.parametrize("kind", list(CHOSEN))
def test_a_chosen_ef_search_stays_chosen(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "efs.parquet"
    src, dst, warnings = _export_import(*clients, CHOSEN[kind], out)
    assert _ef_search(src)[1] == "configuration"
    assert read_file_metadata(out)[KEY_EF_SEARCH_CHOSEN] == "true"
    assert warnings == []
    assert _ef_search(dst) == _ef_search(src)
    assert _definition(dst) == _definition(src)


@pytest.mark.parametrize("kind", list(UNCHOSEN))
def test_an_unchosen_ef_search_stays_tunable(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "efs.parquet"
    src, dst, warnings = _export_import(*clients, UNCHOSEN[kind], out)
    assert _ef_search(src) == (100, "default")
    assert read_file_metadata(out)[KEY_EF_SEARCH_CHOSEN] == "false"
    assert warnings == []
    assert _ef_search(dst) == (100, "default")
    assert _definition(dst) == _definition(src)


def test_a_legacy_search_ef_key_that_is_no_choice_is_warned_about(
    clients: tuple[huedb.Client, huedb.Client], tmp_path: Path
) -> None:
    """Chroma lets `modify(metadata=...)` add `hnsw:search_ef` without changing the index: the
    source's ef_search stays the planner's, but creating the copy with that metadata records
    a choice (Chroma's rule for legacy keys), which the import says."""

    def metadata_key_added(c: huedb.Client, n: str) -> huedb.Collection:
        col = c.create_collection(n, configuration={"hnsw": GRAPH}, embedding_function=None)
        col.modify(metadata={"hnsw:search_ef": 100, "hnsw:M": 24})
        return col

    src, dst, warnings = _export_import(*clients, metadata_key_added, tmp_path / "efs.parquet")
    assert _ef_search(src) == (100, "default")
    assert _ef_search(dst) == (100, "configuration")
    assert len(warnings) == 1 and "ef_search" in warnings[0] and "hnsw:search_ef" in warnings[0]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("configuration", (100, "default")),  # a chosen 100 was not told from the default
        ("other-value", (77, "configuration")),
        ("plain", (100, "default")),
    ],
)
def test_a_file_without_the_choice_imports_as_before(
    clients: tuple[huedb.Client, huedb.Client],
    tmp_path: Path,
    kind: str,
    expected: tuple[int, str],
) -> None:
    """A file written before `huedb.ef_search_chosen` existed: a value other than 100 is
    the user's, 100 is the planner's."""

    def as_written_before(kv: dict[str, str]) -> None:
        del kv[KEY_EF_SEARCH_CHOSEN]
        kv[KEY_METADATA_SHA256] = metadata_digest(kv)

    make = {**UNCHOSEN, **CHOSEN}[kind]
    src, dst, warnings = _export_import(*clients, make, tmp_path / "efs.parquet", as_written_before)
    assert warnings == []
    assert _ef_search(dst) == expected
    assert _definition(dst) == _definition(src)


def test_the_choice_travels_over_http(tmp_path: Path) -> None:
    """Exported from a huedb server (its indexing status tells the choice) and imported
    into one."""
    from tests.servers import huedb_server

    source = huedb.PersistentClient(tmp_path / "served")
    for name, make in (("chosen", CHOSEN["modify"]), ("tunable", UNCHOSEN["configuration-graph"])):
        make(source, name).add(**RECORDS)
    source.close()
    clear_system_cache()
    with huedb_server(tmp_path / "served") as server:
        remote = huedb.HttpClient(host=server.url)
        for name, flag, expected in (
            ("chosen", "true", (100, "configuration")),
            ("tunable", "false", (100, "default")),
        ):
            out = tmp_path / f"{name}.parquet"
            export_collection(remote.get_collection(name), out, show_progress=False)
            assert read_file_metadata(out)[KEY_EF_SEARCH_CHOSEN] == flag
            report = import_collection(remote, out, f"{name}-copy", show_progress=False)
            assert report.warnings == []
            assert _ef_search(remote.get_collection(f"{name}-copy")) == expected
        remote.close()


@pytest.mark.parametrize(
    ("hnsw", "tuned"), [({"ef_search": 100}, False), ({}, True)], ids=["chosen", "unchosen"]
)
def test_the_planner_tunes_an_imported_collection_only_without_a_choice(
    tmp_path: Path, hnsw: dict[str, Any], tuned: bool
) -> None:
    """After the graph of the copy is built: a poor graph misses the recall target at ef
    100, so the planner raises ef_search unless the user chose it (tests/test_ef_search_choice)."""
    from tests.graph_wait import wait_for_graph
    from tests.test_ef_search_choice import GRAPH as POOR_GRAPH
    from tests.test_ef_search_choice import IDS, VECTORS, _client

    src = huedb.PersistentClient(tmp_path / "src")
    col = src.create_collection("efs", configuration={"hnsw": {**POOR_GRAPH, **hnsw}})
    col.add(ids=IDS, embeddings=VECTORS)
    export_collection(col, tmp_path / "efs.parquet", show_progress=False)
    src.close()
    dst = _client(tmp_path / "dst")
    try:
        assert import_collection(dst, tmp_path / "efs.parquet", show_progress=False).warnings == []
        copy = dst.get_collection("efs")
        wait_for_graph(copy)
        ef, source = _ef_search(copy)
        if tuned:
            assert source == "recall_target" and (ef or 0) > 100
        else:
            assert (ef, source) == (100, "configuration")
    finally:
        dst.close()


def test_a_chroma_server_tells_no_choice(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Chroma records no choice (and `chroma run` reports no indexing status): the file says
    nothing of it, and the copy is as before: a chosen 100 is not told from the default."""
    url: str = request.getfixturevalue("chroma_server")
    host, port = url.removeprefix("http://").split(":")
    remote = huedb.HttpClient(host=host, port=int(port))
    col = CHOSEN["configuration"](remote, "efs")
    col.add(**RECORDS)
    out = tmp_path / "efs.parquet"
    export_collection(col, out, show_progress=False)
    assert KEY_EF_SEARCH_CHOSEN not in read_file_metadata(out)
    assert import_collection(remote, out, "efs-copy", show_progress=False).warnings == []
    remote.close()
    target = huedb.PersistentClient(tmp_path / "target")
    assert import_collection(target, out, show_progress=False).warnings == []
    assert _ef_search(target.get_collection("efs")) == (100, "default")
    target.close()
