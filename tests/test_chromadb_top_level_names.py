"""chromadb's top-level `configure` / `get_settings`, and `TokenTransportHeader` working as
the token header setting (test_embedding_function_compat checks every name of
`chromadb.__all__` is in huedb)."""

from __future__ import annotations

from pathlib import Path

import chromadb

import huedb
from huedb import TokenTransportHeader, configure, get_settings
from tests.servers import huedb_server

TOKEN = "admin-token-for-the-enum-test"


def test_configure_and_get_settings() -> None:
    try:
        assert get_settings().allow_reset is False
        configure(allow_reset=True)
        assert get_settings().allow_reset is True
    finally:
        configure()
    assert get_settings().allow_reset is False


def test_token_transport_header_enum(tmp_path: Path) -> None:
    """The enum member as `chroma_auth_token_transport_header` sends the token there."""
    env = {"HUEDB_AUTH_TOKENS": f"{TOKEN}:admin"}
    with huedb_server(tmp_path / "data", env=env) as server:
        for header in TokenTransportHeader:
            settings = huedb.Settings(
                chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
                chroma_client_auth_credentials=TOKEN,
                chroma_auth_token_transport_header=header,
            )
            client = huedb.HttpClient(host="127.0.0.1", port=server.port, settings=settings)
            assert client.list_collections() == []
            client.close()
    assert TokenTransportHeader.X_CHROMA_TOKEN == chromadb.TokenTransportHeader.X_CHROMA_TOKEN


CLIENT_TYPES = ("ClientAPI", "AsyncClientAPI", "AdminAPI", "CloudClient")


def test_client_types_are_top_level_names(tmp_path: Path) -> None:
    """chromadb's top-level client types (not in its `__all__`, but in annotations such as
    `chromadb.ClientAPI` and in `from chromadb import ClientAPI`) are huedb's too, and
    huedb's clients are instances of them."""
    for name in CLIENT_TYPES:
        assert hasattr(chromadb, name), name
        assert hasattr(huedb, name), name
        assert name in huedb.__all__, name
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    assert isinstance(client, huedb.ClientAPI)
    assert isinstance(huedb.AdminClient(client.get_settings()), huedb.AdminAPI)
    client.close()
