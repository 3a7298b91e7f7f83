"""Security of `huedb run`: startup refusals and secrets.

Invalid auth/TLS configuration makes the server refuse to start (exit 2, quickly, with a
clear message), the loopback/unauthenticated rules hold, and tokens never reach the
server log.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from huedb.server.server_config import (
    ConfigError,
    ServerConfig,
    digest,
    make_token,
    parse_token_file,
    parse_token_list,
)
from tests.cli import run_cli
from tests.http_checks import (
    ADMIN,
    DB,
    HEADER_STYLES,
    READER,
    TOKENS_ENV,
    WRONG,
    auth_headers,
)
from tests.servers import free_port, huedb_server

# --------------------------------------------------------------------------- startup refusals


def run_refused(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `huedb run` expecting it to refuse to start: exit code 2, quickly. Returns its log."""
    host_args = () if "--host" in args else ("--host", "127.0.0.1")
    start = time.monotonic()
    proc = run_cli(
        *("run", "--path", str(tmp_path / "data"), *host_args, "--port", str(free_port()), *args),
        env=env,
        timeout=30,
    )
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert elapsed < 15, elapsed
    assert "cannot start" in output, output
    return output


SECRET = "s3cret-token-value-42"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("env bad role", "token #1 from HUEDB_AUTH_TOKENS: unknown role"),
        ("env short token", "at least 8 characters"),
        ("env several tokens, one without a role", "has no role: when it lists several"),
        ("env token with space", "printable ASCII without spaces"),
        ("chroma short credentials", "invalid token"),
        ("env token file bad role", "unknown role"),
        ("token file missing", "cannot read token file"),
        ("token file too many fields", "expected 'token [role]'"),
        ("token file empty", "holds no token"),
        ("config unknown key", "unknown setting 'listen_address'"),
        ("config bad role", "unknown role 'root'"),
        ("config unknown auth key", "must hold only 'tokens'"),
        ("config short token", "at least 8 characters"),
        ("config not TOML", "cannot parse config file"),
        ("config missing", "cannot read config file"),
        ("TLS cert missing", "TLS file not found"),
        ("TLS key missing", "TLS file not found"),
        ("TLS cert without key", "must be given together"),
        ("non-loopback without tokens", "refusing to serve 0.0.0.0 without authentication"),
        ("tiny body limit", "max_body_bytes"),
        ("zero workers", "--workers must be at least 1"),
    ],
)
def test_invalid_configuration_refuses_to_start(tmp_path: Path, case: str, message: str) -> None:
    """Each invalid setting: exit code 2 within seconds, a clear message, no secret echoed."""
    cfg = tmp_path / "server.toml"
    tokens = tmp_path / "tokens.txt"
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a cert\n")
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if case == "env bad role":
        env = {"HUEDB_AUTH_TOKENS": f"{SECRET}:superuser"}
    elif case == "env short token":
        env = {"HUEDB_AUTH_TOKENS": f"{SECRET}:admin,short:admin"}
    elif case == "env several tokens, one without a role":  # meant: one token with a ','
        env = {"HUEDB_AUTH_TOKENS": f"{SECRET},part-two-of-it:read-only"}
    elif case == "env token with space":
        env = {"HUEDB_AUTH_TOKENS": "has a space in it"}
    elif case == "chroma short credentials":
        env = {"CHROMA_SERVER_AUTH_CREDENTIALS": "tiny"}
    elif case == "env token file bad role":
        tokens.write_text(f"{SECRET} owner\n")
        env = {"HUEDB_AUTH_TOKENS_FILE": str(tokens)}
    elif case == "token file missing":
        args = ("--auth-tokens-file", str(tmp_path / "nope.txt"))
    elif case == "token file too many fields":
        tokens.write_text(f"{SECRET} admin extra\n")
        args = ("--auth-tokens-file", str(tokens))
    elif case == "token file empty":
        tokens.write_text("# nothing here\n\n")
        args = ("--auth-tokens-file", str(tokens))
    elif case == "config unknown key":
        cfg.write_text('listen_address = "0.0.0.0"\n')
        args = ("--config", str(cfg))
    elif case == "config bad role":
        cfg.write_text(f'[auth]\ntokens = [{{token = "{SECRET}", role = "root"}}]\n')
        args = ("--config", str(cfg))
    elif case == "config unknown auth key":
        cfg.write_text(f'[auth]\ntoken = "{SECRET}"\n')
        args = ("--config", str(cfg))
    elif case == "config short token":
        cfg.write_text('[auth]\ntokens = [{token = "abc"}]\n')
        args = ("--config", str(cfg))
    elif case == "config not TOML":
        cfg.write_text(f"token: {SECRET}\n[[[\n")
        args = ("--config", str(cfg))
    elif case == "config missing":
        args = ("--config", str(tmp_path / "missing.toml"))
    elif case == "TLS cert missing":
        args = ("--ssl-certfile", str(tmp_path / "no-cert.pem"), "--ssl-keyfile", str(cert))
    elif case == "TLS key missing":
        args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "no-key.pem"))
    elif case == "TLS cert without key":
        args = ("--ssl-certfile", str(cert))
    elif case == "non-loopback without tokens":
        args = ("--host", "0.0.0.0")
    elif case == "tiny body limit":
        args = ("--max-body-bytes", "10")
    elif case == "zero workers":
        args = ("--workers", "0")
    output = run_refused(tmp_path, *args, env=env)
    assert message in output, output
    assert SECRET not in output, output


def test_a_hash_inside_a_token_is_part_of_it(tmp_path: Path) -> None:
    """In a token file `#` starts a comment only at the start of a line or after white
    space: `acme-reader#9f3kQ read-only@acme` was read as the global admin token
    `acme-reader` (the rest a comment)."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(
        "# the tokens\n"
        "acme-reader#9f3kQ read-only@acme\n"
        "ops-admin-token-1 admin  # the on-call team\n"
        "   #indented comment\n"
    )
    found = {(e.digest, e.role, e.tenant) for e in parse_token_file(str(tokens))}
    assert found == {
        (digest("acme-reader#9f3kQ"), "read-only", "acme"),
        (digest("ops-admin-token-1"), "admin", None),
    }


def test_a_single_token_may_leave_its_role_out() -> None:
    (entry,) = parse_token_list(SECRET, "HUEDB_AUTH_TOKENS")
    assert (entry.digest, entry.role, entry.tenant) == (digest(SECRET), "admin", None)
    with pytest.raises(ConfigError, match="has no role"):
        parse_token_list(f"{SECRET}:read-only,{SECRET}-2", "HUEDB_AUTH_TOKENS")


def test_loopback_and_unauthenticated_rules() -> None:
    """ServerConfig.check(): non-loopback needs tokens or --allow-unauthenticated."""
    token = make_token("long-enough-token", "admin")
    ServerConfig(host="127.0.0.1").check()
    ServerConfig(host="::1").check()
    ServerConfig(host="localhost").check()
    ServerConfig(host="0.0.0.0", tokens=[token]).check()
    ServerConfig(host="0.0.0.0", allow_unauthenticated=True).check()
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError, match="without authentication"):
            ServerConfig(host=host).check()


def test_tokens_never_appear_in_the_log(tmp_path: Path) -> None:
    """After right and wrong tokens in both styles (and a read-only 403), the log is clean."""
    tokens_file = tmp_path / "tokens.txt"
    file_token = "file-only-token-9c1d"
    tokens_file.write_text(f"{file_token} read-only\n")
    env = {**TOKENS_ENV, "CHROMA_SERVER_AUTH_CREDENTIALS": "chroma-env-token-5e6f"}
    secrets = [ADMIN, READER, WRONG, file_token, "chroma-env-token-5e6f", "another-wrong-one"]
    args = ("--log-level", "debug", "--auth-tokens-file", str(tokens_file))
    with huedb_server(tmp_path / "data", *args, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for token in secrets:
                for style in HEADER_STYLES:
                    headers = auth_headers(token, style)
                    client.get("/api/v2/auth/identity", headers=headers)
                    client.post(f"{DB}/collections", json={"name": "logged"}, headers=headers)
                    client.post(f"{DB}/collections", json={"name": "x"}, headers=headers)
                    client.post(f"{DB}/collections", content=b"{", headers=headers)
            client.get("/api/v2/heartbeat", headers=auth_headers(WRONG, "bearer"))
        time.sleep(0.3)
        log = server.log()
    assert "token auth with 4 token(s)" in log, log
    for secret in secrets:
        assert secret not in log, f"{secret} leaked into the log"
