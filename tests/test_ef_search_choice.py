"""An `ef_search` the user chose wins over the planner's, even Chroma's default 100 (issue 18).

Chroma writes its default `ef_search` into every stored configuration, so the value alone
cannot tell a chosen 100 from the default the recall planner tunes. huedb records the choice
when it is made (create, modify), beside the configuration and never echoed. Each collection
here holds 2,000 random vectors in a deliberately poor graph (4 neighbours, ef_construction 8):
at ef 100 it misses the default recall target 0.95, so the planner raises `ef_search` unless
the user chose it. The ef in use is read from the loaded index (`search_ef`, which searches
set on the graph) and from `get_indexing_status()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.api.collection_config import create_configuration
from huedb.engine.hnsw_config import (
    EF_SEARCH_CHOSEN_KEY,
    EF_SEARCH_MAX,
    RECALL_TARGET_KEY,
    UNCHOSEN_EF_MIN,
    ef_search_set,
)
from huedb.ops.collection_definition import create_like
from huedb.ops.stats import gather_stats
from tests.graph_wait import wait_for_graph
from tests.servers import huedb_server

N = 2_000
DIM = 32
GRAPH = {"max_neighbors": 4, "ef_construction": 8}  # misses 0.95 at ef 100; passed as a
# copy: chromadb adds "space" to the configuration dicts it is given
EXACT_MAX_FLOATS = 1_000  # a graph from 32 vectors of 32 dimensions on
VECTORS = np.random.default_rng(18).standard_normal((N, DIM)).astype(np.float32)
IDS = [f"v{i}" for i in range(N)]


def _client(path: Path, **settings: Any) -> huedb.Client:
    clear_system_cache()
    return huedb.PersistentClient(
        path=path, settings=huedb.Settings(huedb_exact_max_floats=EXACT_MAX_FLOATS, **settings)
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[huedb.Client]:
    opened = _client(tmp_path)
    yield opened
    opened.close()


def _fill(col: huedb.Collection) -> None:
    """Add the vectors and wait for the graph."""
    col.add(ids=IDS, embeddings=VECTORS)
    wait_for_graph(col)


def _ef_in_use(client: huedb.Client, col: huedb.Collection) -> tuple[int, int | None, str | None]:
    """(the loaded graph's search ef, the reported ef_search and its source)."""
    wait_for_graph(col)  # loads the index if it is not (a new node builds its graph)
    engine = client._server.engine  # type: ignore[attr-defined]
    index = engine._indexes.loaded(engine.get_collection_by_uuid(str(col.id)).cid)
    assert index is not None and index.uses_graph
    status = col.get_indexing_status()
    return index.search_ef, status.ef_search, status.ef_search_source


def _stored(client: huedb.Client, col: huedb.Collection) -> dict[str, Any]:
    """The configuration as stored in the collection's row."""
    engine = client._server.engine  # type: ignore[attr-defined]
    return engine.get_collection_by_uuid(str(col.id)).configuration


CHOSEN_100 = (100, 100, "configuration")


def _create_with_100(client: huedb.Client, how: str) -> huedb.Collection:
    """A collection whose user gave ef_search 100, in one of the ways Chroma takes it."""
    if how == "configuration":
        return client.create_collection(
            "explicit", configuration={"hnsw": {"ef_search": 100, **GRAPH}}
        )
    if how == "legacy metadata":
        metadata = {"hnsw:search_ef": 100, "hnsw:M": 4, "hnsw:construction_ef": 8}
        return client.create_collection("explicit", metadata=metadata)
    schema = huedb.Schema().create_index(
        huedb.VectorIndexConfig(hnsw=huedb.HnswIndexConfig(ef_search=100, **GRAPH))
    )
    return client.create_collection("explicit", schema=schema)


@pytest.mark.parametrize("how", ["configuration", "legacy metadata", "schema"])
def test_an_ef_search_of_100_given_at_create_is_used(client: huedb.Client, how: str) -> None:
    col = _create_with_100(client, how)
    _fill(col)
    assert _ef_in_use(client, col) == CHOSEN_100


def test_without_ef_search_the_planner_tunes_it(client: huedb.Client) -> None:
    col = client.create_collection("tuned", configuration={"hnsw": dict(GRAPH)})
    _fill(col)
    search_ef, reported, source = _ef_in_use(client, col)
    assert source == "recall_target" and search_ef == reported and search_ef > 100
    assert EF_SEARCH_CHOSEN_KEY not in _stored(client, col)


def test_modify_to_100_is_a_choice_and_survives_a_reopen(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        col = client.create_collection(
            "modified", configuration={"hnsw": {"ef_search": 50, **GRAPH}}
        )
        _fill(col)
        assert _ef_in_use(client, col) == (50, 50, "configuration")
        col.modify(configuration={"hnsw": {"ef_search": 100}})
        assert _ef_in_use(client, col) == CHOSEN_100
        col.modify(configuration={"hnsw": {"num_threads": 2}})  # another setting: still chosen
        assert _ef_in_use(client, col) == CHOSEN_100
    finally:
        client.close()
    again = _client(tmp_path)
    try:
        col = again.get_collection("modified")
        assert _ef_in_use(again, col) == CHOSEN_100
    finally:
        again.close()


def test_a_choice_made_at_create_survives_a_reopen(tmp_path: Path) -> None:
    client = _client(tmp_path)
    try:
        _fill(_create_with_100(client, "configuration"))
    finally:
        client.close()
    again = _client(tmp_path)
    try:
        assert _ef_in_use(again, again.get_collection("explicit")) == CHOSEN_100
    finally:
        again.close()


def test_the_echoed_configuration_and_schema_do_not_show_the_choice(
    client: huedb.Client,
) -> None:
    """A collection whose user chose 100 echoes exactly what one with the default does."""
    chosen = client.create_collection("chosen", configuration={"hnsw": {"ef_search": 100}})
    default = client.create_collection("default")
    assert _stored(client, chosen)[EF_SEARCH_CHOSEN_KEY] is True
    assert EF_SEARCH_CHOSEN_KEY not in _stored(client, default)
    a, b = chosen.get_model(), default.get_model()
    assert a.configuration_json == b.configuration_json
    assert a.schema == b.schema
    assert a.configuration_json["hnsw"]["ef_search"] == 100
    assert chosen.configuration == default.configuration
    assert ef_search_set(_stored(client, chosen)) and not ef_search_set(_stored(client, default))


def test_collections_without_the_record_keep_the_inference() -> None:
    """A configuration stored before the choice was recorded: a value other than 100 is
    the user's, 100 is the default the planner tunes."""
    assert not ef_search_set({"hnsw": {"ef_search": 100}})
    assert ef_search_set({"hnsw": {"ef_search": 50}})
    assert not ef_search_set(None)
    assert ef_search_set({"hnsw": {"ef_search": 100}, EF_SEARCH_CHOSEN_KEY: True})


def test_a_copied_definition_is_not_a_choice(client: huedb.Client) -> None:
    """Importers (Chroma directories, Parquet) recreate a collection from its stored
    definition, which holds every setting: that tells no choice, so a collection at
    ef_search 100 is tuned as in its source; a legacy `hnsw:search_ef` key is the user's."""
    source = client.create_collection("source", configuration={"hnsw": dict(GRAPH)})
    model = source.get_model()
    assert EF_SEARCH_CHOSEN_KEY not in create_configuration(model.configuration_json, None)
    copy = create_like(client, "copy", None, model.schema)
    assert EF_SEARCH_CHOSEN_KEY not in _stored(client, copy)
    _fill(copy)
    search_ef, _, source_of_ef = _ef_in_use(client, copy)
    assert source_of_ef == "recall_target" and search_ef > 100
    legacy = create_like(client, "legacy", {"hnsw:search_ef": 100}, model.schema)
    assert _stored(client, legacy)[EF_SEARCH_CHOSEN_KEY] is True


def test_over_http(tmp_path: Path) -> None:
    """chromadb's client creates with ef_search 100: the server uses 100, and echoes the
    same configuration and schema as for a collection without it."""
    with huedb_server(tmp_path, "--exact-max-floats", str(EXACT_MAX_FLOATS)) as srv:
        theirs = chromadb.HttpClient(host=srv.host, port=srv.port)
        chosen = theirs.create_collection(
            "chosen", configuration={"hnsw": {"ef_search": 100, **GRAPH}}
        )
        default = theirs.create_collection("default", configuration={"hnsw": dict(GRAPH)})
        for col in (chosen, default):
            col.add(ids=IDS, embeddings=VECTORS)
        assert chosen.configuration["hnsw"] == default.configuration["hnsw"]
        base = f"{srv.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
        echoes = []
        for name in ("chosen", "default"):
            body = httpx.get(f"{base}/{name}").json()
            echoes.append({k: v for k, v in body.items() if k not in ("id", "name")})
        assert echoes[0] == echoes[1]
        ours = huedb.HttpClient(host=srv.host, port=srv.port)
        for name in ("chosen", "default"):
            wait_for_graph(ours.get_collection(name))
        got = ours.get_collection("chosen").get_indexing_status()
        assert (got.ef_search, got.ef_search_source) == (100, "configuration")
        got = ours.get_collection("default").get_indexing_status()
        assert got.ef_search_source == "recall_target" and (got.ef_search or 0) > 100


def test_postgresql_keeps_the_choice(pg_url: str, tmp_path: Path) -> None:
    client = _client(tmp_path / "a", huedb_store=pg_url)
    try:
        _fill(_create_with_100(client, "configuration"))
        col = client.create_collection("modified", configuration={"hnsw": {"ef_search": 50}})
        col.modify(configuration={"hnsw": {"ef_search": 100}})
    finally:
        client.close()
    again = _client(tmp_path / "b", huedb_store=pg_url)  # another node: only the store
    try:
        assert _ef_in_use(again, again.get_collection("explicit")) == CHOSEN_100
        assert ef_search_set(_stored(again, again.get_collection("modified")))
    finally:
        again.close()


def test_the_largest_ef_search_chroma_stores_is_searched_within_bounds(tmp_path: Path) -> None:
    """Chroma stores any ef_search up to 2**64 - 1 and refuses larger ones as serde does;
    huedb stored those too (every JSON answer showing them, `huedb stats` among them, then
    failed) and searched a graph at 2**64 - 1 ("Out of memory!" from usearch). Now the
    largest is kept and echoed, graphs are searched at `EF_SEARCH_MAX`, and a larger one is
    refused at create and modify with serde's message."""
    client = _client(tmp_path)
    try:
        top = 2**64 - 1
        col = client.create_collection("top", configuration={"hnsw": {"ef_search": top}})
        _fill(col)
        got = col.query(query_embeddings=VECTORS[:20], n_results=1)["ids"]
        assert [r[0] for r in got] == IDS[:20]
        assert _ef_in_use(client, col) == (EF_SEARCH_MAX, top, "configuration")
        engine = client._server.engine  # type: ignore[attr-defined]
        assert gather_stats(engine, tmp_path)["collections"][0]["ef_search"] == top
        message = re.escape("invalid type: floating point `1.8446744073709552e+19`, expected usize")
        with pytest.raises(huedb.errors.InvalidArgumentError, match=message):
            client.create_collection("over", configuration={"hnsw": {"ef_search": 2**64}})
        with pytest.raises(huedb.errors.InvalidArgumentError, match=message):
            col.modify(configuration={"hnsw": {"ef_search": 2**64}})
    finally:
        client.close()


def test_stats_without_the_index_loaded_report_the_ef_searches_use(tmp_path: Path) -> None:
    """A graph snapshotted without a recall measurement (built with the target off here; by
    an older huedb on an upgraded store), its target back on, not loaded by the process
    asked: stats report the ef its searches will use (at least `UNCHOSEN_EF_MIN`), as they
    do once the graph is loaded, not the configured 100."""
    client = _client(tmp_path)
    col = client.create_collection(
        "unmeasured", metadata={RECALL_TARGET_KEY: 0}, configuration={"hnsw": dict(GRAPH)}
    )
    _fill(col)
    col.modify(metadata={"other": 1})  # the recall target back to its default
    client.close()
    client = _client(tmp_path)
    try:
        engine = client._server.engine  # type: ignore[attr-defined]
        figures = gather_stats(engine, tmp_path)["collections"][0]
        assert engine._indexes.loaded(engine.get_collection_by_uuid(str(col.id)).cid) is None
        assert figures["ef_search"] >= UNCHOSEN_EF_MIN
        assert figures["ef_search_source"] == "recall_target"
    finally:
        client.close()
