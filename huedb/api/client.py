"""`Client`: Chroma's client API (collections, tenants, databases) over any `ServerAPI`."""

from __future__ import annotations

import base64
import os
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from huedb.api import collection_config
from huedb.api.base import ServerAPI
from huedb.api.checks import plain_collection_metadata
from huedb.api.collection import DEFAULT_EMBEDDING_FUNCTION, Collection
from huedb.api.embedding_identity import (
    check_embedding_function,
    check_embedding_function_signature,
)
from huedb.api.http_headers import merged_headers
from huedb.api.local import LocalAPI
from huedb.api.requests import CreateCollectionRequest
from huedb.api.types import CollectionModel, UserIdentity
from huedb.api.validation import not_a_string
from huedb.config import (
    ASYNC_HTTP_API_IMPL,
    DEFAULT_DATABASE,
    DEFAULT_TENANT,
    HTTP_API_IMPL,
    LOCAL_API_IMPL,
    TOKEN_CHARS,
    Settings,
    TokenTransportHeader,
    _env_value,
    settings_of,
)
from huedb.engine.engine import Engine
from huedb.engine.registry import acquire_engine, close_all_engines, release_engine
from huedb.errors import ChromaAuthError, ChromaError, ConfigError, InvalidArgumentError

# The path of Chroma's v2 API, which `HttpServerAPI` adds to the server's base URL.
API_V2_PATH = "/api/v2"


def clear_system_cache() -> None:
    """Close every shared engine of this process (Chroma's `Client.clear_system_cache`)."""
    close_all_engines()


class SharedSystemClient:
    """chromadb's per-process shared state of clients; here only its cache reset is public
    (`clear_system_cache`, which test suites call between tests)."""

    clear_system_cache = staticmethod(clear_system_cache)


def _local_api(settings: Settings) -> LocalAPI:
    """The engine of the settings: with `huedb_store` a PostgreSQL store (persist_directory,
    if persistent, holds this node's derived files), else SQLite in persist_directory or in
    memory."""
    path = Path(settings.persist_directory) if settings.is_persistent else None
    engine = acquire_engine(path, settings.engine_options(), owner=settings.allow_reset)
    return LocalAPI(engine, settings)


def resolve_url(host: str, ssl_enabled: bool, default_api_path: str, port: int | None) -> str:
    """The server's API URL, as chromadb's `BaseHTTPClient.resolve_url` makes it.

    `host` is a host name (then `port` is added) or an http(s) URL, whose own port and
    path are kept (`port` then unused); the scheme is https whenever `ssl_enabled`, and
    the path ends in `default_api_path`. Unlike chromadb, a host written with a port but
    no scheme (`localhost:8000`), which chromadb turns into a URL nothing answers, is a
    ConfigError.
    """
    parsed = urlparse(host)
    if parsed.scheme in ("http", "https"):
        net_loc, path = parsed.netloc, parsed.path
    elif "/" in host:
        raise ConfigError(
            f"Invalid URL {host!r}: unrecognized protocol {parsed.scheme!r} "
            "(add http:// or https:// to the host)"
        )
    elif ":" in host.rsplit("]", 1)[-1]:
        raise ConfigError(
            f"Invalid host {host!r}: give the port as the port (port=, "
            "chroma_server_http_port), an IPv6 address in brackets, or a URL (http://host:port)"
        )
    else:
        net_loc, path = f"{host}:{port}", ""
    scheme = "https" if ssl_enabled else parsed.scheme or "http"
    if not path.endswith(default_api_path):
        path += default_api_path
    return urlunparse((scheme, net_loc, quote(path.replace("//", "/")), "", "", ""))


# chromadb's client auth providers (`chroma_client_auth_provider`), the only ones huedb's
# HTTP client knows: they are chromadb classes, which huedb does not import.
TOKEN_AUTH_CLIENT_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"
BASIC_AUTH_CLIENT_PROVIDER = "chromadb.auth.basic_authn.BasicAuthClientProvider"
_TOKEN_HEADERS = [
    TokenTransportHeader.AUTHORIZATION.value,
    TokenTransportHeader.X_CHROMA_TOKEN.value,
]
CONNECT_ERROR_MESSAGE = "Could not connect to a Chroma server. Are you sure it is running?"
OVERWRITE_FROM_AUTH = "chroma_overwrite_singleton_tenant_database_access_from_auth"


def auth_headers(settings: Settings) -> dict[str, str]:
    """The auth header of the settings' `chroma_client_auth_provider`, as chromadb's
    providers make it (with their ValueErrors):

    - `TokenAuthClientProvider`: `Authorization: Bearer <token>`, or `X-Chroma-Token:
      <token>` when `chroma_auth_token_transport_header` says so (no other header);
    - `BasicAuthClientProvider`: `Authorization: Basic base64(<user:password>)`.

    Unlike chromadb, credentials without a provider act as the token provider's (huedb's
    own tools and clients pass the token alone); chromadb sends nothing then.
    """
    provider = settings.chroma_client_auth_provider
    credentials = settings.chroma_client_auth_credentials
    if not provider:
        if not credentials:
            return {}
        provider = TOKEN_AUTH_CLIENT_PROVIDER
    if provider not in (TOKEN_AUTH_CLIENT_PROVIDER, BASIC_AUTH_CLIENT_PROVIDER):
        raise ConfigError(
            f"chroma_client_auth_provider={provider!r}: huedb's client knows chromadb's "
            f"{TOKEN_AUTH_CLIENT_PROVIDER} and {BASIC_AUTH_CLIENT_PROVIDER}; send other "
            "headers with HttpClient(headers=...) or chroma_server_headers"
        )
    if credentials is None:
        raise ValueError("Missing required config value 'chroma_client_auth_credentials'")
    secret = str(credentials)
    if provider == BASIC_AUTH_CLIENT_PROVIDER:
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
    if not all(c in TOKEN_CHARS for c in secret):
        raise ValueError("Invalid token. Must contain only ASCII letters, digits, and punctuation.")
    transport = settings.chroma_auth_token_transport_header
    if not transport:
        return {"Authorization": f"Bearer {secret}"}
    header = next((h for h in _TOKEN_HEADERS if h == transport), None)
    if header is None:
        raise ValueError(
            f"Invalid token transport header: {transport}. Must be one of {_TOKEN_HEADERS}"
        )
    return {header: f"Bearer {secret}" if header == "Authorization" else secret}


def _http_server_api(
    settings: Settings,
    host: str,
    port: int | None,
    ssl: bool,
    headers: dict[str, str] | None,
    timeout: float | None = None,
) -> ServerAPI:
    """A server's API over HTTP, with the settings' headers (then `headers`), auth header
    and TLS verification; no timeout unless given (chromadb's client has none)."""
    # Imported here, not at the top: httpx costs ~65 ms of import time that embedded
    # users never need (measured with `python -X importtime -c "import huedb"`).
    from huedb.api.http import HttpServerAPI

    api_path = settings.chroma_server_api_default_path
    if not api_path.endswith(API_V2_PATH):
        raise ConfigError(
            f"chroma_server_api_default_path={api_path!r}: huedb speaks Chroma's v2 API, "
            f"so the path must end in {API_V2_PATH}"
        )
    base_url = resolve_url(host, ssl, api_path, port).removesuffix(API_V2_PATH)
    all_headers = merged_headers(settings.chroma_server_headers, headers, auth_headers(settings))
    verify = settings.chroma_server_ssl_verify
    return HttpServerAPI(
        base_url,
        headers=all_headers,
        verify=True if verify is None else verify,
        timeout=timeout,
        keepalive_s=settings.chroma_http_keepalive_secs,
        max_connections=settings.chroma_http_max_connections,
        max_keepalive_connections=getattr(settings, "chroma_http_max_keepalive_connections", None),
    )


def _server_api(settings: Settings) -> ServerAPI:
    """The API `settings.chroma_api_impl` names, as chromadb's clients pick it: huedb's
    engine, or (chromadb's `FastAPI`) the server at chroma_server_host:_http_port."""
    impl = settings.chroma_api_impl
    if impl == LOCAL_API_IMPL:
        return _local_api(settings)
    if impl == HTTP_API_IMPL:
        for name in ("chroma_server_host", "chroma_server_http_port"):
            if getattr(settings, name) is None:
                raise ConfigError(
                    f"Missing required config value {name!r}: chroma_api_impl={impl} "
                    "connects to a server"
                )
        port = settings.chroma_server_http_port
        return _http_server_api(
            settings,
            str(settings.chroma_server_host),
            int(port) if isinstance(port, str) else port,  # chromadb's Settings make it an int
            settings.chroma_server_ssl_enabled,
            None,
        )
    if impl == ASYNC_HTTP_API_IMPL:
        raise ConfigError(
            f"chroma_api_impl={impl} is the async client's: use "
            "`await huedb.AsyncHttpClient(host, port, ...)`"
        )
    raise ConfigError(
        f"Unsupported Chroma API implementation {impl!r}: huedb runs {LOCAL_API_IMPL} "
        f"(the default) or {HTTP_API_IMPL} (a server)"
    )


def _overwrite_from_auth(settings: Settings) -> bool:
    """chromadb's `chroma_overwrite_singleton_tenant_database_access_from_auth` (a setting
    huedb keeps among the extras; CHROMA_OVERWRITE_... from the environment too)."""
    value = getattr(settings, OVERWRITE_FROM_AUTH, None)
    if value is None:
        env = {key.lower(): raw for key, raw in os.environ.items()}
        value = env.get(OVERWRITE_FROM_AUTH)
    if isinstance(value, str):
        value = _env_value(OVERWRITE_FROM_AUTH, "bool", value)
    return bool(value)


def tenant_database_from_auth(
    identity: UserIdentity, tenant: str, database: str
) -> tuple[str, str]:
    """The tenant and database a client uses when the server's identity of its credentials
    may choose them (chromadb's `maybe_set_tenant_and_database`): the identity's tenant
    (unless "*") and its one database (if it lists exactly one, not "*") replace the
    defaults; a tenant or database given explicitly (not the default) that differs from
    them is a ChromaAuthError."""
    scoped_tenant = identity.tenant if identity.tenant and identity.tenant != "*" else None
    databases = set(identity.databases or [])
    scoped_database = (
        next(iter(databases)) if len(databases) == 1 and "*" not in databases else None
    )
    if tenant and tenant != DEFAULT_TENANT and scoped_tenant and scoped_tenant != tenant:
        raise ChromaAuthError(
            f"Tenant {tenant} does not match {scoped_tenant} from the server. "
            "Are you sure the tenant is correct?"
        )
    if (
        database
        and database != DEFAULT_DATABASE
        and scoped_database
        and scoped_database != database
    ):
        raise ChromaAuthError(
            f"Database {database} does not match {scoped_database} from the server. "
            "Are you sure the database is correct?"
        )
    if (not tenant or tenant == DEFAULT_TENANT) and scoped_tenant:
        tenant = scoped_tenant
    if (not database or database == DEFAULT_DATABASE) and scoped_database:
        database = scoped_database
    return tenant, database


def is_connect_error(exc: BaseException | None) -> bool:
    """Whether `exc` is httpx's ConnectError (httpx imported only by HTTP clients)."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.ConnectError)


class Client:
    """Chroma's `ClientAPI`: one tenant and database at a time over a `ServerAPI`.

    Without `server`, the settings' `chroma_api_impl` (or CHROMA_API_IMPL) picks it, as in
    chromadb (for every factory but HttpClient): huedb's engine by default, a server with
    `chromadb.api.fastapi.FastAPI`.

    As chromadb's client, with `chroma_overwrite_singleton_tenant_database_access_from_auth`
    on it asks the server who its credentials are (`get_user_identity`) when it is built and
    takes the tenant, and the database, they are limited to (`tenant_database_from_auth`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
        server: ServerAPI | None = None,
    ) -> None:
        self._settings = settings_of(settings)
        self._owns_engine = server is None
        if server is None:
            server = _server_api(self._settings)
        self._server = server
        self._closed = False
        self.tenant = tenant
        self.database = database
        try:
            if _overwrite_from_auth(self._settings):
                identity = self.get_user_identity()
                self.tenant, self.database = tenant_database_from_auth(identity, tenant, database)
            self._validate_tenant_database(self.tenant, self.database)
        except Exception:
            self.close()
            raise

    def _validate_tenant_database(self, tenant: str, database: str) -> None:
        """That the tenant and database exist, as chromadb's client checks them: a refused
        connection (httpx's ConnectError) is a ValueError, as is any error of the tenant's
        check that is no ChromaError; other errors pass through."""
        try:
            self._server.get_tenant(tenant)
        except ChromaError:
            raise
        except Exception as exc:
            if is_connect_error(exc):
                raise ValueError(CONNECT_ERROR_MESSAGE) from exc
            # The server's own words too: a proxy's 502 page read as "does it exist?"
            raise ValueError(
                f"Could not connect to tenant {tenant}. Are you sure it exists? ({exc})"
            ) from exc
        try:
            self._server.get_database(database, tenant)
        except Exception as exc:
            if is_connect_error(exc):
                raise ValueError(CONNECT_ERROR_MESSAGE) from exc
            raise

    clear_system_cache = staticmethod(clear_system_cache)

    # -- system ------------------------------------------------------------------------

    def heartbeat(self) -> int:
        """Nanoseconds since the epoch, from the server."""
        return self._server.heartbeat()

    def get_version(self) -> str:
        return self._server.get_version()

    def get_user_identity(self) -> UserIdentity:
        """Who this client is to the server: its user, tenant and databases. As chromadb's
        client: a refused connection, or an error that is no ChromaError, is a ValueError."""
        try:
            return self._server.get_user_identity()
        except ChromaError:
            raise
        except Exception as exc:
            if is_connect_error(exc):
                raise ValueError(CONNECT_ERROR_MESSAGE) from exc
            raise ValueError(str(exc)) from exc

    def get_settings(self) -> Settings:
        return self._settings

    def get_max_batch_size(self) -> int:
        return self._server.get_max_batch_size()

    def reset(self) -> bool:
        """Delete everything (only with Settings(allow_reset=True))."""
        return self._server.reset()

    def close(self) -> None:
        """Release this client's hold on the store (snapshots are written when the last
        closes). A client of a server only closes its connections: as chromadb's, it and its
        collections keep working (with new connections) after `close()`."""
        if not isinstance(self._server, LocalAPI):
            self._closed = True
            self._server.close()
            return
        if self._closed:
            return
        self._closed = True
        if self._owns_engine:
            release_engine(self._server.engine)
        else:
            self._server.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tenants and databases ---------------------------------------------------------

    def set_tenant(self, tenant: str, database: str = DEFAULT_DATABASE) -> None:
        self._validate_tenant_database(tenant, database)
        self.tenant, self.database = tenant, database

    def set_database(self, database: str) -> None:
        self._validate_tenant_database(self.tenant, database)
        self.database = database

    def create_tenant(self, name: str) -> None:
        self._server.create_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        return self._server.get_tenant(name)

    def create_database(self, name: str, tenant: str | None = None) -> None:
        self._server.create_database(name, tenant or self.tenant)

    def get_database(self, name: str, tenant: str | None = None) -> dict[str, Any]:
        return self._server.get_database(name, tenant or self.tenant)

    def delete_database(self, name: str, tenant: str | None = None) -> None:
        self._server.delete_database(name, tenant or self.tenant)

    def list_databases(
        self, limit: int | None = None, offset: int | None = None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        return self._server.list_databases(limit, offset, tenant or self.tenant)

    # -- collections -------------------------------------------------------------------

    def _wrap(
        self, model: CollectionModel, ef: Any, data_loader: Any = None, alias: str | None = None
    ) -> Collection:
        if ef is not None and ef is not DEFAULT_EMBEDDING_FUNCTION:
            check_embedding_function_signature(ef)
        check_embedding_function(model, ef)
        return Collection(
            self._server, model, embedding_function=ef, data_loader=data_loader, alias=alias
        )

    def list_collections(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[Collection]:
        models = self._server.list_collections(limit, offset, self.tenant, self.database)
        return [self._wrap(m, DEFAULT_EMBEDDING_FUNCTION) for m in models]

    def count_collections(self) -> int:
        return self._server.count_collections(self.tenant, self.database)

    def create_collection(
        self,
        name: str,
        schema: Any = None,
        configuration: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        embedding_function: Any = DEFAULT_EMBEDDING_FUNCTION,
        data_loader: Any = None,
        get_or_create: bool = False,
    ) -> Collection:
        """Create a collection (InternalError if the name exists, unless get_or_create).

        As in chromadb: `schema` is a chromadb `Schema` (or its JSON); the embedding
        function's identity (`name()` / `get_config()`) is recorded in the configuration,
        the default one when none is given (pass `embedding_function=None` for none), so a
        later client with another one is refused. Space and settings are reconciled from
        `configuration`, the legacy `hnsw:*` metadata keys and `schema` by Chroma's rules.
        """
        metadata = plain_collection_metadata(metadata)
        given = embedding_function
        if given is not None and given is not DEFAULT_EMBEDDING_FUNCTION:
            check_embedding_function_signature(given)
        if given is DEFAULT_EMBEDDING_FUNCTION:
            given = collection_config.DEFAULT_EF_IDENTITY
        config_json = collection_config.client_request(configuration, metadata, given)
        schema_json = collection_config.schema_request(schema)
        request = CreateCollectionRequest(
            name, metadata, config_json, get_or_create, self.tenant, self.database, schema_json
        )
        model = self._server.create_collection(request)
        ef = embedding_function
        if ef is DEFAULT_EMBEDDING_FUNCTION or ef is None:
            # Chroma's collections embed with the schema's function when none is given.
            chosen = collection_config.schema_embedding_function(schema)
            if chosen is not None and collection_config.embedding_function_identity(chosen) not in (
                None,
                collection_config.DEFAULT_EF_IDENTITY,
                {"type": "legacy"},
            ):
                ef = chosen
        alias = name if model.name != name else None
        return self._wrap(model, ef, data_loader, alias)

    def get_collection(
        self,
        name: str,
        embedding_function: Any = DEFAULT_EMBEDDING_FUNCTION,
        data_loader: Any = None,
    ) -> Collection:
        """An existing collection by name or alias (NotFoundError if missing).

        Through an alias, every later call on the returned collection follows the alias to
        its current target.
        """
        if not isinstance(name, str):
            raise not_a_string("name", name)
        model = self._server.get_collection(name, self.tenant, self.database)
        alias = name if model.name != name else None
        return self._wrap(model, embedding_function, data_loader, alias)

    def get_collection_by_id(
        self, id: Any, embedding_function: Any = DEFAULT_EMBEDDING_FUNCTION, data_loader: Any = None
    ) -> Collection:
        try:
            collection_id = str(uuid.UUID(str(id)))
        except ValueError:
            raise InvalidArgumentError(
                "Validation error: collection_id: Invalid collection ID format, expected UUID"
            ) from None
        if isinstance(self._server, LocalAPI):
            model = self._server.get_collection_by_id(collection_id)
        else:
            # Over HTTP the id is looked up in the client's tenant and database (as
            # chromadb's client asks the server).
            model = self._server.get_collection_by_id(  # type: ignore[call-arg]
                collection_id, self.tenant, self.database
            )
        return self._wrap(model, embedding_function, data_loader)

    def get_or_create_collection(
        self,
        name: str,
        schema: Any = None,
        configuration: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        embedding_function: Any = DEFAULT_EMBEDDING_FUNCTION,
        data_loader: Any = None,
    ) -> Collection:
        """The named collection, created if missing (arguments ignored when it exists)."""
        return self.create_collection(
            name,
            schema=schema,
            configuration=configuration,
            metadata=metadata,
            embedding_function=embedding_function,
            data_loader=data_loader,
            get_or_create=True,
        )

    def delete_collection(self, name: str) -> None:
        """Delete a collection and all its records (NotFoundError if missing)."""
        self._server.delete_collection(name, self.tenant, self.database)

    # -- aliases (huedb) ---------------------------------------------------------------

    def create_alias(self, alias: str, collection: str) -> None:
        """Make `alias` a second name of `collection`: get_collection(alias) reaches it."""
        self._server.set_alias(alias, collection, True, self.tenant, self.database)

    def update_alias(self, alias: str, collection: str) -> None:
        """Point `alias` at another collection, atomically for every process and worker."""
        self._server.set_alias(alias, collection, False, self.tenant, self.database)

    def delete_alias(self, alias: str) -> None:
        """Remove an alias (the collection stays)."""
        self._server.delete_alias(alias, self.tenant, self.database)

    def list_aliases(self) -> dict[str, str]:
        """Every alias of the current database and the collection it names."""
        rows = self._server.list_aliases(self.tenant, self.database)
        return {r["name"]: r["collection"] for r in rows}


def local_engine(client: Client) -> Engine:
    """The engine an in-process client runs on (for huedb's own tools; TypeError for a
    client of a server)."""
    server = client._server
    if not isinstance(server, LocalAPI):
        raise TypeError("the client talks to a server: it has no engine in this process")
    return server.engine


def EphemeralClient(  # noqa: N802 - chromadb's factory name
    settings: Settings | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> Client:
    """An in-memory store shared by every EphemeralClient of this process (always SQLite,
    whatever `huedb_store` or HUEDB_STORE say)."""
    settings = settings_of(settings)
    settings.is_persistent = False
    settings.huedb_store = ""
    return Client(settings, tenant, database)


def AdminClient(settings: Settings | None = None) -> Client:  # noqa: N802 - chromadb's name
    """Chroma's admin client, for tenants and databases: huedb's `Client` of the store (or
    server) the settings name, which has those methods (and the rest)."""
    return Client(settings)


def PersistentClient(  # noqa: N802 - chromadb's factory name
    path: str | Path = "./chroma",
    settings: Settings | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> Client:
    """A store in a directory, safe to open from any number of processes at once; with
    `settings.huedb_store` (or HUEDB_STORE) a PostgreSQL URL, the store is that database and
    the directory holds only this process's derived files (index snapshots)."""
    settings = settings_of(settings)
    settings.is_persistent = True
    settings.persist_directory = str(path)
    return Client(settings, tenant, database)


def claim_http_settings(
    settings: Settings,
    impl: str,
    host: Any,
    port: Any,
    ssl: Any,
    headers: dict[str, str] | None,
) -> tuple[str, int, bool]:
    """chromadb's `HttpClient` / `AsyncHttpClient` steps on their settings: the arguments
    converted (`str(host)`, `int(port)`: `"abc"` is a ValueError, `8000.0` is 8000,
    `bool(ssl)`); a host or port the settings name that differs from them a ValueError;
    then the settings describe the server (`chroma_api_impl` = `impl`, host, port, ssl,
    headers), so `get_settings()` handed to `Client` / `AdminClient` reaches it again.
    huedb keeps the settings' own headers with `headers` (chromadb drops them)."""
    host, port, ssl = str(host), int(port), bool(ssl)
    configured_host = settings.chroma_server_host
    if configured_host and configured_host != host:
        raise ValueError(
            f"Chroma server host provided in settings[{configured_host}] is different to "
            f"the one provided in HttpClient: [{host}]"
        )
    configured_port = settings.chroma_server_http_port
    if configured_port and int(configured_port) != port:
        raise ValueError(
            f"Chroma server http port provided in settings[{configured_port}] is different "
            f"to the one provided in HttpClient: [{port}]"
        )
    all_headers = merged_headers(settings.chroma_server_headers, headers)
    settings.chroma_api_impl = impl
    settings.chroma_server_host = host
    settings.chroma_server_http_port = port
    settings.chroma_server_ssl_enabled = ssl
    settings.chroma_server_headers = all_headers or headers
    return host, port, ssl


def HttpClient(  # noqa: N802 - chromadb's factory name
    host: str = "localhost",
    port: int = 8000,
    ssl: bool = False,
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> Client:
    """A client of a huedb (or Chroma) server; `host` may also be a URL (its port and path
    are then kept, `port` unused); `ssl=True` makes it https, as in chromadb. As chromadb's,
    it writes the server's address into `settings` (see `claim_http_settings`)."""
    settings = settings_of(settings)
    host, port, ssl = claim_http_settings(settings, HTTP_API_IMPL, host, port, ssl, headers)
    return connect_http(settings, host, port, ssl, tenant, database)


def connect_http(
    settings: Settings,
    host: str,
    port: int,
    ssl: bool,
    tenant: Any,
    database: Any,
    timeout: float | None = None,
) -> Client:
    """A client of the server at host:port, its settings claimed (`claim_http_settings`);
    the tenant and database as strings, as chromadb's factories make them. `timeout`:
    seconds to wait for each answer (None: for ever, as chromadb's client)."""
    server = _http_server_api(settings, host, port, ssl, None, timeout)
    return Client(settings, str(tenant), str(database), server=server)


# chromadb's client types (`chromadb.ClientAPI`, `chromadb.AdminAPI`, in annotations and
# isinstance checks): huedb's one `Client` class is both.
ClientAPI = Client
AdminAPI = Client


def CloudClient(  # noqa: N802 - chromadb's factory name
    tenant: str | None = None,
    database: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    *,
    cloud_host: str = "api.trychroma.com",
    cloud_port: int = 443,
    enable_ssl: bool = True,
) -> Client:
    """chromadb's client of Chroma Cloud, which huedb does not offer: NotImplementedError
    naming `HttpClient`, which reaches a huedb (or Chroma) server with the same token."""
    raise NotImplementedError(
        "huedb has no CloudClient (Chroma Cloud is Chroma's hosted service). For a huedb "
        "server use huedb.HttpClient(host=..., port=..., ssl=True, tenant=..., database=..., "
        "settings=huedb.Settings(chroma_client_auth_provider="
        f"'{TOKEN_AUTH_CLIENT_PROVIDER}', chroma_client_auth_credentials=<api key>))"
    )
