"""The one settings chain: defaults < config file < HUEDB_* environment < arguments.

Proved on what the running engine uses: the options it reports, SQLite's sync level read
back from its connection, and the planner switching to a graph at the configured size.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

import huedb
from huedb.errors import ConfigError
from huedb.options import SERVER_DEFAULTS, EngineOptions, resolve_options
from tests.graph_wait import wait_for_graph
from tests.servers import huedb_server

DIM = 8
DEFAULTS = EngineOptions()
SERVER = EngineOptions(**SERVER_DEFAULTS)  # what `huedb run` starts from


def test_defaults_are_written_once_and_layered_in_order() -> None:
    assert resolve_options() == DEFAULTS
    file = {"sync": "off", "exact-max-floats": 10, "snapshot_every": 5}
    env = {"HUEDB_SYNC": "normal", "HUEDB_SNAPSHOT_EVERY": "7"}
    args = {"snapshot_every": 9, "exact_max_floats": None}
    got = resolve_options(file=file, env=env, args=args)
    assert got.sync == "normal"  # env beats the file
    assert got.exact_max_floats == 10  # file beats the default; None arguments are not set
    assert got.snapshot_every == 9  # arguments beat the environment
    assert got.filtered_exact_max_floats == DEFAULTS.filtered_exact_max_floats


@pytest.mark.parametrize(
    ("layer", "value"),
    [
        ({"env": {"HUEDB_SYNC": "sometimes"}}, "sync"),
        ({"env": {"HUEDB_EXACT_MAX_FLOATS": "lots"}}, "exact_max_floats"),
        ({"file": {"snapshot_every": 0}}, "snapshot_every"),
        ({"args": {"exact_max_floats": True}}, "exact_max_floats"),
        ({"args": {"no_such_option": 1}}, "no_such_option"),
        ({"env": {"HUEDB_QUERY_TIMEOUT": "soon"}}, "query_timeout"),
        ({"env": {"HUEDB_QUERY_TIMEOUT": "-1"}}, "query_timeout"),
        ({"env": {"HUEDB_QUERY_TIMEOUT": "nan"}}, "query_timeout"),
        ({"args": {"query_timeout": True}}, "query_timeout"),
        ({"file": {"max_filter_terms": 0}}, "max_filter_terms"),
        ({"file": {"max_filter_terms": 20_001}}, "max_filter_terms"),
        ({"env": {"HUEDB_MAX_IN_VALUES": "100001"}}, "max_in_values"),
        ({"args": {"max_ids": -5}}, "max_ids"),
    ],
)
def test_bad_values_are_refused_by_name(layer: dict, value: str) -> None:
    with pytest.raises(ConfigError, match=value):
        resolve_options(**layer)


def _stats(url: str) -> dict:
    resp = httpx.get(url + "/api/v2/admin/stats", timeout=30)
    resp.raise_for_status()
    return resp.json()


def _fill(client: huedb.Client, name: str, n: int) -> huedb.Collection:
    col = client.create_collection(name)
    rng = np.random.default_rng(0)
    col.add(ids=[str(i) for i in range(n)], embeddings=rng.random((n, DIM), dtype=np.float32))
    return col


def test_huedb_run_uses_environment_config_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "huedb.toml"
    config.write_text(
        "exact-max-floats = 800\nfiltered_exact_max_floats = 1600\nsnapshot_every = 77\n"
        'sync = "extra"\n'
    )
    env = {"HUEDB_SYNC": "normal", "HUEDB_SNAPSHOT_EVERY": "55"}
    args = ("--config", str(config), "--snapshot-every", "66")
    with huedb_server(tmp_path / "data", *args, env=env) as server:
        stats = _stats(server.url)
        assert stats["engine"] == {
            **SERVER.to_dict(),
            "sync": "normal",  # HUEDB_SYNC beats the file
            "sqlite_synchronous": "normal",  # and reached SQLite's connection
            "exact_max_floats": 800,  # from the file
            "filtered_exact_max_floats": 1600,
            "snapshot_every": 66,  # the flag beats HUEDB_SNAPSHOT_EVERY and the file
        }
        client = huedb.HttpClient(host=server.url)
        col = _fill(client, "big", 200)  # 1,600 floats: above 800, so a graph
        wait_for_graph(col)
        (entry,) = _stats(server.url)["collections"]
        assert entry["index_kind"] == "hnsw"
        client.close()


def test_huedb_run_defaults_without_settings(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data") as server:
        engine = _stats(server.url)["engine"]
        assert engine == {**SERVER.to_dict(), "sqlite_synchronous": SERVER.sync}
        client = huedb.HttpClient(host=server.url)
        col = _fill(client, "small", 200)
        wait_for_graph(col)
        (entry,) = _stats(server.url)["collections"]
        assert entry["index_kind"] == "exact"  # 1,600 floats stay exact by default
        client.close()


def test_huedb_run_refuses_a_bad_engine_setting(tmp_path: Path) -> None:
    from tests.cli import run_cli

    res = run_cli("run", "--path", str(tmp_path / "d"), env={"HUEDB_SNAPSHOT_EVERY": "0"})
    assert res.returncode == 2
    assert "snapshot_every" in res.stderr


def test_persistent_client_settings_reach_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUEDB_SYNC", "off")
    monkeypatch.setenv("HUEDB_FILTERED_EXACT_MAX_FLOATS", "1234")
    settings = huedb.Settings(huedb_sync="normal", huedb_exact_max_floats=800)
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    engine = client._server.engine
    assert engine.settings_in_force() == {
        **DEFAULTS.to_dict(),
        "sync": "normal",  # the argument beats HUEDB_SYNC
        "sqlite_synchronous": "normal",
        "exact_max_floats": 800,
        "filtered_exact_max_floats": 1234,  # from the environment
    }
    assert settings.huedb_filtered_exact_max_floats == 1234  # Settings shows what is in force
    col = _fill(client, "big", 200)
    wait_for_graph(col)
    assert engine.collection_figures(engine.collections()[0])["index_kind"] == "hnsw"


def test_a_second_client_with_other_engine_settings_is_refused(tmp_path: Path) -> None:
    first = huedb.PersistentClient(path=tmp_path / "db")
    with pytest.raises(ValueError, match="different settings"):
        huedb.PersistentClient(path=tmp_path / "db", settings=huedb.Settings(huedb_sync="off"))
    same = huedb.PersistentClient(path=tmp_path / "db")
    assert same._server.engine is first._server.engine


def test_operations_join_the_engine_this_process_has_open(tmp_path: Path) -> None:
    from huedb.ops.store import open_store

    settings = huedb.Settings(huedb_snapshot_every=5, allow_reset=True)
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    with open_store(tmp_path / "db") as engine:
        assert engine is client._server.engine
        assert engine.options.snapshot_every == 5
    with pytest.raises(ValueError, match="different settings"):
        huedb.PersistentClient(path=tmp_path / "db", settings=huedb.Settings(allow_reset=False))


def test_operations_open_a_closed_store_with_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huedb.ops.store import open_store

    huedb.PersistentClient(path=tmp_path / "db").close()  # a store to open
    monkeypatch.setenv("HUEDB_SYNC", "normal")
    with open_store(tmp_path / "db") as engine:
        assert engine.settings_in_force()["sqlite_synchronous"] == "normal"


def test_request_limits_and_time_budget_come_through_the_chain(tmp_path: Path) -> None:
    """Request limits are engine options: file < environment < flags, in every worker."""
    config = tmp_path / "huedb.toml"
    config.write_text("max-ids = 3\nmax_filter_terms = 50\nquery_timeout = 12\n")
    env = {"HUEDB_MAX_FILTER_TERMS": "2", "HUEDB_QUERY_TIMEOUT": "9"}
    args = ("--config", str(config), "--query-timeout", "7.5", "--workers", "2")
    with huedb_server(tmp_path / "data", *args, env=env) as server:
        engine = _stats(server.url)["engine"]
        assert engine["max_ids"] == 3  # from the file
        assert engine["max_filter_terms"] == 2  # the environment beats the file
        assert engine["query_timeout"] == 7.5  # the flag beats both
        assert engine["max_query_results"] == SERVER.max_query_results
        client = huedb.HttpClient(host=server.url)
        col = _fill(client, "limited", 10)
        for _ in range(4):  # whichever worker answers
            assert len(col.get(ids=["1", "2", "3"])["ids"]) == 3
            with pytest.raises(huedb.errors.QuotaError, match="max_ids"):
                col.get(ids=["1", "2", "3", "4"])
            with pytest.raises(huedb.errors.QuotaError, match="max_filter_terms"):
                col.get(where={"$and": [{"a": 1}, {"b": 2}]})  # 3 terms: $and and two
        client.close()


def test_embedded_settings_set_request_limits(tmp_path: Path) -> None:
    settings = huedb.Settings(huedb_max_query_results=20, huedb_query_timeout=0)
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    assert client._server.engine.options.query_timeout == 0  # the budget turned off
    col = _fill(client, "small", 30)
    assert len(col.query(query_embeddings=np.ones((2, DIM)), n_results=10)["ids"]) == 2
    with pytest.raises(huedb.errors.QuotaError, match="max_query_results"):
        col.query(query_embeddings=np.ones((3, DIM)), n_results=7)
