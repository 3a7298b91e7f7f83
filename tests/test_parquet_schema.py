"""Parquet export -> import keeps a collection's configuration and schema (issue 12).

The file carries the echoed configuration (`huedb.configuration`) and schema
(`huedb.schema`), both covered by the metadata checksum; a collection the import creates
echoes both as the exported one did, and refuses the same filters. Files written before
`huedb.schema` existed import as before.
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
    KEY_METADATA_SHA256,
    KEY_SCHEMA,
    export_collection,
    import_collection,
    metadata_digest,
    read_file_metadata,
)
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
