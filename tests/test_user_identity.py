"""`client.get_user_identity()`, as chromadb's clients have it: in-process, over HTTP (what
the server says the token may use) and through the async client."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import chromadb
import pytest

import huedb
from huedb.config import Settings
from tests.servers import huedb_server

ADMIN = "admin-token-identity-1"
SCOPED = "scoped-token-identity-2"
TOKENS = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{SCOPED}:read-only@acme/prod+staging"}


def _fields(identity: object) -> tuple[object, ...]:
    return tuple(getattr(identity, f) for f in ("user_id", "tenant", "databases", "attributes"))


def test_in_process_as_chromadb(tmp_path: Path) -> None:
    ours = huedb.PersistentClient(path=str(tmp_path / "data")).get_user_identity()
    theirs = chromadb.EphemeralClient().get_user_identity()
    assert _fields(ours) == _fields(theirs)
    assert dataclasses.is_dataclass(ours)


@pytest.mark.parametrize(
    ("token", "tenant", "databases"),
    [(ADMIN, "default_tenant", ["default_database"]), (SCOPED, "acme", ["prod", "staging"])],
)
def test_over_http_the_servers_answer(
    tmp_path: Path, token: str, tenant: str, databases: list[str]
) -> None:
    with huedb_server(tmp_path / "data", env=TOKENS) as server:
        address = {"host": server.host, "port": server.port}
        admin = huedb.HttpClient(**address, settings=Settings(chroma_client_auth_credentials=ADMIN))
        if tenant != "default_tenant":
            admin.create_tenant(tenant)
            admin.create_database(databases[0], tenant=tenant)
        admin.close()
        place = {"tenant": tenant, "database": databases[0]}
        settings = Settings(chroma_client_auth_credentials=token)
        identity = huedb.HttpClient(**address, settings=settings, **place).get_user_identity()
        assert (identity.user_id, identity.tenant, identity.databases) == ("", tenant, databases)

        theirs = chromadb.HttpClient(
            **address,
            settings=chromadb.config.Settings(
                chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
                chroma_client_auth_credentials=token,
            ),
            **place,
        ).get_user_identity()
        assert _fields(identity)[:3] == _fields(theirs)[:3]

        async def asynchronous() -> object:
            client = await huedb.AsyncHttpClient(**address, settings=settings, **place)
            return await client.get_user_identity()

        assert _fields(asyncio.run(asynchronous())) == _fields(identity)
