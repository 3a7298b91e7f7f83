"""`huedb export`, `import`, `reembed` and `eval` work in any tenant and database:
`--tenant` / `--database` (default default_tenant / default_database, as Chroma's) with
`--path`, `--store` and `--url`. A tenant or database that does not exist is refused with one
line and exit 2 before anything is created: no store, tenant, database, collection or file.

Before these options the commands only reached default_tenant/default_database: a collection
acme/prod/docs could not be exported ("Collection [docs] does not exist"), and over `--url` a
token scoped to one tenant could not export that tenant's own collections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb.config
import numpy as np
import psycopg
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.cli.parser import build_parser
from huedb.errors import NotFoundError
from tests import stores
from tests.cli import check_cli, run_cli
from tests.embedders import v2 as words_v2
from tests.servers import huedb_server
from tests.stores import StoreTarget
from tests.test_cli_robustness import assert_one_line
from tests.test_parquet import assert_same_records, fill, records

store = stores.store

TENANT, DATABASE, OTHER_DATABASE = "acme", "prod", "staging"
SCOPE = ("--tenant", TENANT, "--database", DATABASE)
ADMIN_TOKEN = "tenancy-admin-token-123456"
ACME_TOKEN = "tenancy-acme-token-1234567"  # admin of acme/prod and acme/staging only


def settings_of(target: StoreTarget) -> huedb.Settings:
    return huedb.Settings(**target.settings)


@pytest.fixture
def sqlite() -> StoreTarget:
    return stores.SQLITE


def make_scope(target: StoreTarget, data: Path, *databases: str) -> None:
    """Tenant `acme` with `databases` in the store of `target` (data directory `data`)."""
    admin = huedb.AdminClient(
        huedb.Settings(is_persistent=True, persist_directory=str(data), **target.settings)
    )
    try:
        admin.create_tenant(TENANT)
        for name in databases:
            admin.create_database(name, tenant=TENANT)
    finally:
        admin.close()
        clear_system_cache()


@pytest.fixture
def scoped_client_of() -> Iterator[Any]:
    """Opens `huedb.PersistentClient`s of a store's tenant/database; closed at the end."""
    opened: list[huedb.Client] = []

    def open_client(
        target: StoreTarget, data: Path, tenant: str = TENANT, database: str = DATABASE
    ) -> huedb.Client:
        client = target.client(data, tenant=tenant, database=database)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()
    clear_system_cache()


def docs_store(target: StoreTarget, data: Path) -> dict[str, dict[str, Any]]:
    """acme/prod holding `docs` (every kind of value; cosine, chosen ef_search) and an empty
    acme/staging; default_tenant/default_database holds another `docs`. Returns the records
    of acme/prod/docs."""
    make_scope(target, data, DATABASE, OTHER_DATABASE)
    client = target.client(data, tenant=TENANT, database=DATABASE)
    default = target.client(data)
    try:
        src = client.create_collection(
            "docs",
            configuration={"hnsw": {"space": "cosine", "ef_search": 77}},
            metadata={"owner": "acme"},
        )
        fill(src, n=30, dim=8)
        default.create_collection("docs").add(ids=["elsewhere"], embeddings=[[1.0] * 4])
        return records(src)
    finally:
        client.close()
        default.close()
        clear_system_cache()


def assert_same_collection(src: huedb.Collection, dst: huedb.Collection) -> None:
    """Same records (bit for bit), configuration, schema and metadata."""
    assert_same_records(records(src), records(dst))
    assert dst.configuration_json == src.configuration_json
    assert dst.get_model().serialized_schema == src.get_model().serialized_schema
    assert dst.metadata == src.metadata


def test_the_default_tenant_and_database_are_chromas() -> None:
    chroma = (chromadb.config.DEFAULT_TENANT, chromadb.config.DEFAULT_DATABASE)
    for argv in (
        ["export", "--collection", "c", "--out", "o"],
        ["import", "f"],
        ["reembed", "--source", "a", "--target", "b", "--embedder", "default"],
        ["eval", "--collection", "c", "--queries", "q"],
    ):
        args = build_parser().parse_args(argv)
        assert (args.tenant, args.database) == chroma, argv


# ------------------------------------------------------------------- export and import


def test_export_import_round_trip_in_a_tenant_database(
    store: StoreTarget, tmp_path: Path, scoped_client_of: Any
) -> None:
    """--path (SQLite) and --store (PostgreSQL): acme/prod/docs exported, imported into
    acme/staging and back as it was; default_tenant's own `docs` untouched."""
    data = tmp_path / "data"
    expected = docs_store(store, data)
    target = [*store.cli_args(), "--path", str(data)]
    out = tmp_path / "docs.parquet"
    default_only = run_cli("export", *target, "--collection", "docs", "--out", str(tmp_path / "d"))
    assert default_only.returncode == 0, default_only.stderr  # default_tenant's `docs`: 1 record
    assert "exported 1 records of docs" in default_only.stdout
    done = check_cli("export", *target, *SCOPE, "--collection", "docs", "--out", str(out))
    assert "exported 30 records of docs" in done.stdout
    staging = ("--tenant", TENANT, "--database", OTHER_DATABASE)
    done = check_cli("import", str(out), *target, *staging)
    assert "into created collection docs" in done.stdout
    src = scoped_client_of(store, data).get_collection("docs")
    dst = scoped_client_of(store, data, database=OTHER_DATABASE).get_collection("docs")
    assert_same_records(expected, records(dst))
    assert_same_collection(src, dst)
    default = scoped_client_of(store, data, "default_tenant", "default_database")
    assert [c.name for c in default.list_collections()] == ["docs"]
    assert default.get_collection("docs").get()["ids"] == ["elsewhere"]
    again = check_cli("import", str(out), *target, *staging)  # upsert: unchanged
    assert "into existing collection docs" in again.stdout
    assert_same_records(expected, records(dst))


def test_export_import_round_trip_over_url_with_a_tenant_scoped_token(
    tmp_path: Path, scoped_client_of: Any, sqlite: StoreTarget
) -> None:
    """A token limited to acme exports acme/prod/docs and imports it into acme/staging;
    without --tenant/--database it is refused (default_tenant is not its tenant)."""
    data = tmp_path / "data"
    expected = docs_store(sqlite, data)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{ADMIN_TOKEN}\n{ACME_TOKEN} admin@{TENANT}/{DATABASE}+{OTHER_DATABASE}\n")
    out = tmp_path / "docs.parquet"
    with huedb_server(data, "--auth-tokens-file", str(tokens)) as server:
        remote = ("--url", server.url, "--token", ACME_TOKEN)
        refused = run_cli("export", *remote, "--collection", "docs", "--out", str(out))
        assert "limited to tenant 'acme'" in assert_one_line(refused, 2)
        assert not out.exists()
        done = check_cli("export", *remote, *SCOPE, "--collection", "docs", "--out", str(out))
        assert "exported 30 records of docs" in done.stdout
        staging = ("--tenant", TENANT, "--database", OTHER_DATABASE)
        done = check_cli("import", str(out), *remote, *staging, "--collection", "docs")
        assert "into created collection docs" in done.stdout
        missing = run_cli(
            "import", str(out), "--url", server.url, "--token", ADMIN_TOKEN,
            "--tenant", TENANT, "--database", "nope",
        )  # fmt: skip
        message = assert_one_line(missing, 2)
        assert "database 'nope' does not exist in tenant 'acme'; check --database" in message
    src = scoped_client_of(sqlite, data).get_collection("docs")
    dst = scoped_client_of(sqlite, data, database=OTHER_DATABASE).get_collection("docs")
    assert_same_records(expected, records(dst))
    assert_same_collection(src, dst)
    admin = scoped_client_of(sqlite, data, "default_tenant", "default_database")
    assert {d["name"] for d in admin.list_databases(tenant=TENANT)} == {DATABASE, OTHER_DATABASE}


# ---------------------------------------------------------------------- reembed and eval


def test_reembed_in_a_tenant_database(
    store: StoreTarget, tmp_path: Path, scoped_client_of: Any
) -> None:
    data = tmp_path / "data"
    make_scope(store, data, DATABASE)
    client = store.client(data, tenant=TENANT, database=DATABASE)
    docs = ["hello world", "bye now", "a third document"]
    client.create_collection("docs_v1", embedding_function=None).add(
        ids=["a", "b", "c"], embeddings=np.eye(3, dtype=np.float32), documents=docs
    )
    client.close()
    clear_system_cache()
    done = check_cli(
        "reembed", *store.cli_args(), "--path", str(data), *SCOPE,
        "--source", "docs_v1", "--target", "docs_v2", "--embedder", "tests.embedders:v2",
    )  # fmt: skip
    assert "docs_v1 -> docs_v2: embedded 3, already present 0" in done.stdout
    scoped = scoped_client_of(store, data)
    target = scoped.get_collection("docs_v2", embedding_function=words_v2())
    got = target.get(ids=["a", "b", "c"], include=["documents", "embeddings"])
    assert got["documents"] == docs
    assert np.array_equal(np.asarray(got["embeddings"]), np.asarray(words_v2()(docs)))
    default = scoped_client_of(store, data, "default_tenant", "default_database")
    assert default.list_collections() == []


def eval_store(target: StoreTarget, data: Path) -> None:
    """acme/prod holds `cand` and `base` (as tests/test_model_versions.py); default_tenant
    holds a `cand` whose ids no query finds relevant."""
    make_scope(target, data, DATABASE)
    client = target.client(data, tenant=TENANT, database=DATABASE)
    default = target.client(data)
    eye = np.eye(4, dtype=np.float32)
    client.create_collection("cand").add(ids=["a", "b", "c", "d"], embeddings=eye)
    client.create_collection("base").add(ids=["a", "b", "c", "x"], embeddings=eye)
    default.create_collection("cand").add(ids=["w", "x", "y", "z"], embeddings=eye)
    client.close()
    default.close()
    clear_system_cache()


def eval_queries(path: Path) -> Path:
    rows = [
        {"query": "q1", "relevant": ["a"]},
        {"query": "q2", "relevant": ["d", "b"]},
        {"query": "q3", "relevant": ["c"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


EVAL_ARGS = ("--k", "2", "--embedder", "tests.embedders:lookup", "--json")


def test_eval_in_a_tenant_database(store: StoreTarget, tmp_path: Path) -> None:
    """The scores of tests/test_model_versions.py, from acme/prod's collections (the
    default database's `cand` would score 0)."""
    data = tmp_path / "data"
    eval_store(store, data)
    queries = eval_queries(tmp_path / "q.jsonl")
    common = ["eval", *store.cli_args(), "--path", str(data), "--queries", str(queries)]
    r = check_cli(*common, *SCOPE, *EVAL_ARGS, "--collection", "cand", "--baseline", "base")
    report = json.loads(r.stdout)
    assert report["scores"]["cand"] == {"recall_at_k": 0.5, "mrr": 0.5}
    assert abs(report["scores"]["base"]["recall_at_k"] - 1 / 3) < 1e-9
    default = json.loads(check_cli(*common, *EVAL_ARGS, "--collection", "cand").stdout)
    assert default["scores"]["cand"] == {"recall_at_k": 0.0, "mrr": 0.0}


def test_eval_over_url_in_a_tenant_database(tmp_path: Path, sqlite: StoreTarget) -> None:
    data = tmp_path / "data"
    eval_store(sqlite, data)
    queries = eval_queries(tmp_path / "q.jsonl")
    with huedb_server(data) as server:
        r = check_cli(
            "eval", "--url", server.url, "--queries", str(queries), *SCOPE, *EVAL_ARGS,
            "--collection", "cand",
        )  # fmt: skip
    assert json.loads(r.stdout)["scores"]["cand"] == {"recall_at_k": 0.5, "mrr": 0.5}


# -------------------------------------------------------- missing tenants and databases


MISSING = [
    (("--tenant", "nope"), "tenant 'nope' does not exist"),
    (("--tenant", TENANT, "--database", "nope"), "database 'nope' does not exist in tenant 'acme'"),
    (("--database", "nope"), "database 'nope' does not exist in tenant 'default_tenant'"),
]


def store_contents(target: StoreTarget, data: Path) -> dict[str, Any]:
    """Every tenant/database checked here and the collections (with counts) of each."""
    admin = huedb.AdminClient(
        huedb.Settings(is_persistent=True, persist_directory=str(data), **target.settings)
    )
    out: dict[str, Any] = {}
    try:
        for tenant in ("default_tenant", TENANT, "nope"):
            try:
                admin.get_tenant(tenant)
            except NotFoundError:
                continue
            for db in admin.list_databases(tenant=tenant):
                admin.set_tenant(tenant, db["name"])
                out[f"{tenant}/{db['name']}"] = {
                    c.name: c.count() for c in admin.list_collections()
                }
    finally:
        admin.close()
        clear_system_cache()
    return out


# Every case on SQLite; on PostgreSQL the missing tenant (the refusal is the same code path
# for both stores: `ops.store.scoped_client`), to keep the suite's time.
MISSING_CASES = [("sqlite", *case) for case in MISSING] + [("postgresql", *MISSING[0])]


@pytest.mark.parametrize(("store", "scope", "message"), MISSING_CASES, indirect=["store"])
def test_a_missing_tenant_or_database_is_refused_and_nothing_is_created(
    store: StoreTarget, tmp_path: Path, scope: tuple[str, ...], message: str
) -> None:
    """export, import (a new and an existing collection), reembed, eval: one line, exit 2;
    no tenant, database, collection or export file is created."""
    data = tmp_path / "data"
    docs_store(store, data)
    target = [*store.cli_args(), "--path", str(data)]
    exported = tmp_path / "docs.parquet"
    check_cli("export", *target, *SCOPE, "--collection", "docs", "--out", str(exported))
    before = store_contents(store, data)
    queries = eval_queries(tmp_path / "q.jsonl")
    out = tmp_path / "refused.parquet"
    commands = [
        ("export", *target, *scope, "--collection", "docs", "--out", str(out)),
        ("import", str(exported), *target, *scope),
        ("import", str(exported), *target, *scope, "--collection", "fresh"),
        ("reembed", *target, *scope, "--source", "docs", "--target", "docs_v2",
         "--embedder", "tests.embedders:v2"),
        ("eval", *target, *scope, "--collection", "docs", "--queries", str(queries),
         "--embedder", "tests.embedders:lookup"),
    ]  # fmt: skip
    for command in commands:
        output = assert_one_line(run_cli(*command), 2)
        assert f"ERROR huedb: {command[0]}: {message}; check --" in output, output
        assert store_contents(store, data) == before, command
    assert not out.exists()


def exported_keep(tmp_path: Path) -> Path:
    """A Parquet export of a one-record collection `keep` of a default-scope store."""
    exported = tmp_path / "x.parquet"
    source = tmp_path / "source"
    client = huedb.PersistentClient(path=source)
    client.create_collection("keep").add(ids=["x"], embeddings=[[1.0, 2.0]])
    client.close()
    clear_system_cache()
    check_cli("export", "--path", str(source), "--collection", "keep", "--out", str(exported))
    return exported


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        (("--tenant", TENANT, "--database", DATABASE), "tenant 'acme' does not exist"),
        (("--database", "nope"), "database 'nope' does not exist in tenant 'default_tenant'"),
    ],
)
def test_import_into_a_new_directory_with_a_tenant_or_database_creates_no_store(
    tmp_path: Path, scope: tuple[str, ...], message: str
) -> None:
    """A new store holds only default_tenant/default_database: refused before the store is
    made (the directory is not created); the default scope still creates it."""
    exported = exported_keep(tmp_path)
    new = tmp_path / "new"
    refused = run_cli("import", str(exported), "--path", str(new), *scope)
    assert not new.exists(), refused.stderr
    output = assert_one_line(refused, 2)
    assert f"{message}: {new} holds no huedb store yet" in output
    assert "nothing was created" in output
    new.mkdir()  # an existing empty directory stays empty
    assert_one_line(run_cli("import", str(exported), "--path", str(new), *scope), 2)
    assert list(new.iterdir()) == []
    check_cli("import", str(exported), "--path", str(new))
    assert (new / "huedb.sqlite3").is_file()


def test_import_into_a_new_postgres_store_with_a_tenant_creates_no_tables(
    pg_url: str, tmp_path: Path
) -> None:
    exported = exported_keep(tmp_path)
    refused = run_cli("import", str(exported), "--store", pg_url, *SCOPE)
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'huedb%'"
        ).fetchone()
    assert tables == (0,), refused.stderr
    output = assert_one_line(refused, 2)
    assert "tenant 'acme' does not exist" in output and "holds no huedb store yet" in output
