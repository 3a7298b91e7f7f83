"""`huedb run` fails closed on auth and TLS settings it cannot honour.

Chroma's server auth variables that huedb does not implement (another authn provider, a
credentials file, authz, an unknown token header, a provider without credentials), tokens
that can never match (non-ASCII) and a TLS key that does not load each stop the start with
exit code 2 and a message naming the setting; none of them may start an open server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sqlite3
import subprocess
import termios
import time
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.sqlite_store.connection import DB_FILENAME
from tests.cli import child_env, cli_command, run_cli
from tests.http_checks import ADMIN, DB, assert_error, auth_headers
from tests.servers import free_port, huedb_server

SECRETS = ("CHROMA_SERVER_AUTHN_CREDENTIALS", "CHROMA_SERVER_AUTH_CREDENTIALS", "HUEDB_AUTH_TOKENS")
TOKEN_PROVIDER = "chromadb.auth.token_authn.TokenAuthenticationServerProvider"


def refused(tmp_path: Path, *args: str, env: dict[str, str]) -> str:
    """Run `huedb run` on loopback expecting exit code 2 within seconds; returns its output."""
    start = time.monotonic()
    proc = run_cli(
        *("run", "--path", str(tmp_path / "data"), "--host", "127.0.0.1"),
        *("--port", str(free_port()), *args),
        env=env,
        timeout=20,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert time.monotonic() - start < 15
    assert "cannot start" in output and "Traceback" not in output, output
    return output


CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "credentials file (Chroma's YAML users)",
        {
            "CHROMA_SERVER_AUTHN_PROVIDER": TOKEN_PROVIDER,
            "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "authn.yaml",
        },
        ["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE", "HUEDB_AUTH_TOKENS_FILE"],
    ),
    (
        "credentials file without provider",
        {"CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "authn.yaml"},
        ["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE"],
    ),
    (
        "legacy credentials file",
        {"CHROMA_SERVER_AUTH_CREDENTIALS_FILE": "server.htpasswd"},
        ["CHROMA_SERVER_AUTH_CREDENTIALS_FILE"],
    ),
    (
        "basic auth provider",
        {
            "CHROMA_SERVER_AUTHN_PROVIDER": (
                "chromadb.auth.basic_authn.BasicAuthenticationServerProvider"
            ),
            "CHROMA_SERVER_AUTHN_CREDENTIALS": "admin:$2y$05$abcdefghijklmnopqrstuv",
        },
        ["CHROMA_SERVER_AUTHN_PROVIDER", "BasicAuthenticationServerProvider"],
    ),
    (
        "legacy basic provider",
        {"CHROMA_SERVER_AUTH_PROVIDER": "chromadb.auth.basic.BasicAuthServerProvider"},
        ["CHROMA_SERVER_AUTH_PROVIDER"],
    ),
    (
        "token provider without credentials",
        {"CHROMA_SERVER_AUTHN_PROVIDER": TOKEN_PROVIDER},
        ["CHROMA_SERVER_AUTHN_PROVIDER", "no credentials", "CHROMA_SERVER_AUTHN_CREDENTIALS"],
    ),
    (
        "legacy credentials provider",
        {
            "CHROMA_SERVER_AUTH_CREDENTIALS_PROVIDER": (
                "chromadb.auth.providers.HtpasswdFileServerAuthCredentialsProvider"
            ),
            "CHROMA_SERVER_AUTH_CREDENTIALS": "user:password-123",
        },
        ["CHROMA_SERVER_AUTH_CREDENTIALS_PROVIDER"],
    ),
    (
        "authz provider",
        {
            "CHROMA_SERVER_AUTHN_PROVIDER": TOKEN_PROVIDER,
            "CHROMA_SERVER_AUTHN_CREDENTIALS": ADMIN,
            "CHROMA_SERVER_AUTHZ_PROVIDER": (
                "chromadb.auth.simple_rbac_authz.SimpleRBACAuthorizationProvider"
            ),
        },
        ["CHROMA_SERVER_AUTHZ_PROVIDER", "read-only"],
    ),
    (
        "authz config file",
        {"HUEDB_AUTH_TOKENS": ADMIN, "CHROMA_SERVER_AUTHZ_CONFIG_FILE": "authz.yaml"},
        ["CHROMA_SERVER_AUTHZ_CONFIG_FILE"],
    ),
    (
        "authz config",
        {"HUEDB_AUTH_TOKENS": ADMIN, "CHROMA_SERVER_AUTHZ_CONFIG": "roles_mapping: {}"},
        ["CHROMA_SERVER_AUTHZ_CONFIG"],
    ),
    (
        "unknown token header",
        {"HUEDB_AUTH_TOKENS": ADMIN, "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "X-Api-Key"},
        ["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", "X-Api-Key", "X-Chroma-Token"],
    ),
    (
        "legacy unknown token header",
        {"HUEDB_AUTH_TOKENS": ADMIN, "CHROMA_SERVER_AUTH_TOKEN_TRANSPORT_HEADER": "COOKIE"},
        ["CHROMA_SERVER_AUTH_TOKEN_TRANSPORT_HEADER"],
    ),
    (
        "ignore paths",
        {"HUEDB_AUTH_TOKENS": ADMIN, "CHROMA_SERVER_AUTH_IGNORE_PATHS": '{"/api/v2": ["GET"]}'},
        ["CHROMA_SERVER_AUTH_IGNORE_PATHS"],
    ),
    (
        "non-ASCII token",
        {"HUEDB_AUTH_TOKENS": "tökén-ünïcode-123"},
        ["invalid token", "ASCII"],
    ),
    (
        "non-ASCII chroma credentials",
        {"CHROMA_SERVER_AUTHN_CREDENTIALS": "пароль-очень-длинный"},
        ["CHROMA_SERVER_AUTHN_CREDENTIALS", "ASCII"],
    ),
]


@pytest.mark.parametrize(("env", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unsupported_auth_setting_stops_the_start(
    tmp_path: Path, env: dict[str, str], expected: list[str]
) -> None:
    """Exit 2 with a message naming the variable and what to use instead; no secret echoed."""
    output = refused(tmp_path, env=env)
    for text in expected:
        assert text in output, (text, output)
    for name in SECRETS:
        if name in env:
            assert env[name] not in output, output


def test_bad_tls_key_stops_the_start(tmp_path: Path) -> None:
    """A key that does not load (or does not match the certificate): exit 2, no traceback."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    other = ca.issue_cert("127.0.0.1")
    cert_file, key_file, other_key = (tmp_path / n for n in ("cert.pem", "key.pem", "other.pem"))
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    other.private_key_pem.write_to_path(other_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    for key in (garbage, other_key, cert_file):
        output = refused(
            tmp_path, "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key), env={}
        )
        assert "cannot load TLS certificate/key" in output, output


def test_encrypted_tls_key_stops_the_start_on_a_terminal(tmp_path: Path) -> None:
    """A passphrase-protected key, `huedb run` started from a terminal: exit 2 at once with
    one line; OpenSSL asked for the passphrase on the terminal and the start waited."""
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    argv = cli_command(
        *("run", "--path", str(tmp_path / "data"), "--host", "127.0.0.1"),
        *("--port", str(free_port()), "--ssl-certfile", str(cert_file)),
        *("--ssl-keyfile", str(key_file)),
    )
    main, terminal = os.openpty()

    def own_terminal() -> None:  # after setsid: the pty becomes the controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=child_env({}),
        start_new_session=True,
        preexec_fn=own_terminal,
    )
    os.close(terminal)
    output = b""
    try:
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    output += os.read(main, 4096)
        with contextlib.suppress(OSError):
            while select.select([main], [], [], 0.2)[0] and (chunk := os.read(main, 4096)):
                output += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
    text = output.decode(errors="replace")
    assert proc.returncode == 2, text
    assert "cannot load TLS certificate/key" in text and "pass phrase" not in text, text


def test_chroma_token_provider_settings_are_honoured(tmp_path: Path) -> None:
    """Chroma's token provider, its credentials and either header name: a token server."""
    env = {
        "CHROMA_SERVER_AUTHN_PROVIDER": TOKEN_PROVIDER,
        "CHROMA_SERVER_AUTHN_CREDENTIALS": ADMIN,
        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "X-Chroma-Token",
    }
    with huedb_server(tmp_path / "data", env=env) as server:
        url = f"{server.url}{DB}/collections"
        assert_error(httpx.get(url, timeout=30), 401)
        for style in ("bearer", "x-chroma-token"):
            response = httpx.get(url, headers=auth_headers(ADMIN, style), timeout=30)
            assert response.status_code == 200, response.text


def test_a_store_it_cannot_serve_stops_the_start(tmp_path: Path) -> None:
    """A store of a newer format: exit 2 with the reason, before any worker starts."""
    huedb.PersistentClient(path=tmp_path / "data").close()
    clear_system_cache()
    conn = sqlite3.connect(tmp_path / "data" / DB_FILENAME)
    with conn:
        conn.execute("UPDATE huedb_meta SET value = '99' WHERE key = 'format_version'")
    conn.close()
    output = refused(tmp_path, env={})
    assert "newer huedb" in output, output
