"""`huedb run` reads its configuration fail-closed: nothing given is silently ignored.

A config-file value of the wrong type (`allow_reset = "false"`, a truthy string), a token
source that is set but empty, an empty TLS path, a misspelt `HUEDB_*` variable and a
`null` in a token's scope each used to start a server more open than asked for (no
tokens, reset on, `/metrics` public, plain HTTP, a token of every tenant). Each is now
refused at start with one `cannot start:` line (exit 2) naming the source.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import trustme

from huedb.cli.parser import build_parser
from huedb.cli.serve import server_config
from huedb.errors import ConfigError
from huedb.options import OPTION_NAMES, env_name
from huedb.server.server_config import (
    OTHER_ENVIRONMENT,
    SERVER_ENVIRONMENT,
    ServerConfig,
    check_environment_names,
)
from tests.cli import REPO_ROOT, run_cli
from tests.servers import free_port

TOKEN = "admin-token-123"


def config_of(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> ServerConfig:
    """The configuration `huedb run --path <tmp>/data *flags` would start with under `env`."""
    args = build_parser().parse_args(["run", "--path", str(tmp_path / "data"), *flags])
    return server_config(args, env or {})


def write_config(tmp_path: Path, text: str, suffix: str = ".toml") -> Path:
    path = tmp_path / f"server{suffix}"
    path.write_text(text)
    return path


def run_refused(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """Run `huedb run` expecting exit 2 with a single `cannot start:` line; returns it."""
    proc = run_cli(
        *("run", "--path", str(tmp_path / "data"), "--port", str(free_port()), *flags),
        env=env,
        timeout=60,
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert "cannot start: " in output and "Traceback" not in output, output
    return output


# --------------------------------------------------------------------------- config value types


@pytest.mark.parametrize("key", ["allow_unauthenticated", "allow_reset", "metrics_public"])
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_config_boolean_given_as_a_string_is_refused(
    tmp_path: Path, key: str, suffix: str
) -> None:
    """`"false"` is a non-empty string: it used to switch the setting on."""
    text = f'{key} = "false"\n' if suffix == ".toml" else json.dumps({key: "false"})
    path = write_config(tmp_path, text, suffix)
    with pytest.raises(ConfigError) as refused:
        config_of(tmp_path, "--config", str(path), env={"HUEDB_AUTH_TOKENS": TOKEN})
    message = str(refused.value)
    assert f"{key} must be true or false, not 'false' in {path}" in message
    assert "without quotes" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"max_body_bytes": "40MiB"}',
            "max_body_bytes must be a whole number of bytes, not '40MiB'",
        ),
        ('{"workers": true}', "workers must be a whole number, not True"),
        (
            '{"max_header_bytes": 2048.5}',
            "max_header_bytes must be a whole number of bytes, not 2048.5",
        ),
        ('{"request_timeout_s": "60"}', "request_timeout_s must be a number of seconds, not '60'"),
        ('{"host": 8000}', "host must be a string, not 8000"),
        ('{"log_format": null}', "log_format must be a string, not null"),
        ('{"allow_reset": 1}', "allow_reset must be true or false, not 1"),
        ('{"sync": true}', "sync must be a string, not True"),
        ('{"snapshot_every": "500"}', "snapshot_every must be a whole number, not '500'"),
        ('{"query_timeout": false}', "query_timeout must be a number of seconds, not False"),
        (
            '{"index_memory": true}',
            "index_memory must be a whole number of bytes or a size with a unit",
        ),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Named with its key and file; a string number used to crash check() with a traceback."""
    path = write_config(tmp_path, text, ".json")
    with pytest.raises(ConfigError) as refused:
        config_of(tmp_path, "--config", str(path))
    assert expected in str(refused.value)
    assert f" in {path}" in str(refused.value)


def test_config_values_of_the_right_type_are_read(tmp_path: Path) -> None:
    """Real booleans and numbers work as before; sizes with a unit stay accepted."""
    path = write_config(
        tmp_path,
        "allow_reset = true\nmetrics_public = false\nmax_body_bytes = 2048\n"
        'request_timeout_s = 5\nindex_memory = "2GiB"\nquery_timeout = 3\n',
    )
    config = config_of(tmp_path, "--config", str(path))
    assert (config.allow_reset, config.metrics_public) == (True, False)
    assert (config.max_body_bytes, config.request_timeout_s) == (2048, 5)
    assert config.engine.index_memory == 2 * 2**30
    assert config.engine.query_timeout == 3.0


def test_a_string_boolean_stops_huedb_run_in_one_line(tmp_path: Path) -> None:
    """The reviewer's start: `allow_unauthenticated = "false"` on 0.0.0.0 without tokens
    served everything to anyone; a string number no longer prints a traceback."""
    path = write_config(tmp_path, 'allow_unauthenticated = "false"\n')
    output = run_refused(tmp_path, "--config", str(path), "--host", "0.0.0.0")
    assert f"allow_unauthenticated must be true or false, not 'false' in {path}" in output
    path = write_config(tmp_path, 'max_body_bytes = "40MiB"\n')
    output = run_refused(tmp_path, "--config", str(path))
    assert f"max_body_bytes must be a whole number of bytes, not '40MiB' in {path}" in output


# --------------------------------------------------------------------------- empty token sources


@pytest.mark.parametrize(
    ("env", "flags", "config", "expected"),
    [
        ({"HUEDB_AUTH_TOKENS": ""}, (), None, "HUEDB_AUTH_TOKENS is set but holds no token"),
        ({"HUEDB_AUTH_TOKENS_FILE": ""}, (), None, "HUEDB_AUTH_TOKENS_FILE is set but names no"),
        ({}, ("--auth-tokens-file", ""), None, "--auth-tokens-file is set but names no file"),
        ({}, (), "[auth]\ntokens = []\n", "holds no token"),
        ({}, (), "[auth]\n", "holds no token"),
        ({}, (), '{"auth": {}}', "holds no token"),
        (
            {"CHROMA_SERVER_AUTHN_CREDENTIALS": ""},
            (),
            None,
            "CHROMA_SERVER_AUTHN_CREDENTIALS is set but holds no token",
        ),
        (
            {"CHROMA_SERVER_AUTH_CREDENTIALS": " "},
            (),
            None,
            "CHROMA_SERVER_AUTH_CREDENTIALS is set but holds no token",
        ),
        (
            {"chroma_server_authn_provider": "chromadb.auth.token_authn.TokenAuthnProvider"},
            (),
            None,
            "chroma_server_authn_provider is spelt in lower case",
        ),
        (
            {"Chroma_Server_Authn_Credentials": "a-long-token"},
            (),
            None,
            "rename it CHROMA_SERVER_AUTHN_CREDENTIALS",
        ),
    ],
)
def test_a_token_source_that_is_set_but_empty_is_refused(
    tmp_path: Path,
    env: dict[str, str],
    flags: tuple[str, ...],
    config: str | None,
    expected: str,
) -> None:
    """Each used to start with no authentication at all (a blank ' ' was already refused)."""
    if config is not None:
        path = write_config(tmp_path, config, ".json" if config.startswith("{") else ".toml")
        flags = ("--config", str(path))
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_of(tmp_path, *flags, env=env)


def test_an_empty_token_variable_stops_huedb_run(tmp_path: Path) -> None:
    output = run_refused(tmp_path, env={"HUEDB_AUTH_TOKENS": ""})
    assert "HUEDB_AUTH_TOKENS is set but holds no token" in output


@pytest.mark.parametrize(
    "content", ["caf\xe9-token-1234\n".encode("latin-1"), "token-1234abcd\n".encode("utf-16")]
)
def test_a_token_file_that_is_not_utf8_stops_huedb_run_in_one_line(
    tmp_path: Path, content: bytes
) -> None:
    """A Latin-1 file, or UTF-16 as Windows Notepad writes it, stopped the start with a
    UnicodeDecodeError traceback."""
    path = tmp_path / "tokens.txt"
    path.write_bytes(content)
    output = run_refused(tmp_path, "--auth-tokens-file", str(path))
    assert f"cannot read token file {path}: it is not UTF-8 text" in output


# --------------------------------------------------------------------------- empty TLS paths


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[str, str]:
    """A certificate and its key for 127.0.0.1, as files."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    return str(cert), str(key)


def test_an_empty_tls_path_is_refused(tmp_path: Path, tls_pair: tuple[str, str]) -> None:
    """Empty paths used to serve plain HTTP, and an empty flag switched off the file's TLS."""
    cert, key = tls_pair
    empty = write_config(tmp_path, 'ssl_certfile = ""\nssl_keyfile = ""\n')
    with_tls = write_config(
        tmp_path, json.dumps({"ssl_certfile": cert, "ssl_keyfile": key}), ".json"
    )
    assert config_of(tmp_path, "--config", str(with_tls)).ssl_certfile == cert
    for flags, expected in (
        (("--ssl-certfile", "", "--ssl-keyfile", ""), "--ssl-certfile (ssl_certfile) is empty"),
        (("--ssl-certfile", "", "--ssl-keyfile", key), "--ssl-certfile (ssl_certfile) is empty"),
        (("--ssl-certfile", cert, "--ssl-keyfile", " "), "--ssl-keyfile (ssl_keyfile) is empty"),
        (("--config", str(empty)), f"(ssl_certfile) is empty in {empty}"),
        (("--config", str(with_tls), "--ssl-certfile", ""), "(ssl_certfile) is empty"),
    ):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            config_of(tmp_path, *flags)


# --------------------------------------------------------------------------- HUEDB_* variables


@pytest.mark.parametrize("name", ["HUEDB_AUTH_TOKEN", "HUEDB_AUTH_TOKN", "HUEDB_TOKENS"])
def test_a_misspelt_token_variable_is_refused_with_the_right_name(
    tmp_path: Path, name: str
) -> None:
    """Each used to be ignored: the server started without the token it named."""
    with pytest.raises(ConfigError) as refused:
        config_of(tmp_path, env={name: TOKEN})
    assert f"unknown environment variable {name}" in str(refused.value)
    assert "did you mean HUEDB_AUTH_TOKENS?" in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_other_unknown_huedb_variables_are_refused(tmp_path: Path) -> None:
    """Names are case-sensitive; a name close to none gets no guess."""
    with pytest.raises(ConfigError, match="did you mean HUEDB_SYNC\\? \\(names are case-sensitive"):
        config_of(tmp_path, env={"huedb_sync": "normal"})
    with pytest.raises(ConfigError, match="HUEDB_QWERTYUIOP: huedb reads no such .*; unset it$"):
        config_of(tmp_path, env={"HUEDB_QWERTYUIOP": "1"})
    output = run_refused(tmp_path, env={"HUEDB_AUTH_TOKEN": TOKEN})
    assert "did you mean HUEDB_AUTH_TOKENS?" in output


# Names in the code base that look like variables but are not read from the environment:
# Python constants (bench/core.py, tests/test_error_names.py) and deliberate misspellings.
NOT_VARIABLES = {
    "HUEDB_SETTINGS_ENV",
    "HUEDB_FAMILY",
    "HUEDB_ONLY",
    "HUEDB_SNAPSHOT_EVRY",  # tests/test_cli_fixes.py: a misspelt Settings field
    "HUEDB_AUTH_TOKEN",  # huedb/server/server_config.py: the misspelling of its docstring
}
SCANNED = ("huedb", "tests", "bench", "docs", "deploy", ".ci")
SCANNED_FILES = ("README.md", "Makefile", "compose.yaml", "Dockerfile")


def test_every_huedb_variable_of_the_code_base_is_accepted() -> None:
    """No variable huedb, its tests, benchmarks, docs or deployment files use is refused:
    a new one must be added to SERVER_ENVIRONMENT or OTHER_ENVIRONMENT
    (huedb/server/server_config.py), or `huedb run` would refuse to start beside it."""
    files = [REPO_ROOT / name for name in SCANNED_FILES]
    for folder in SCANNED:
        files += [f for f in (REPO_ROOT / folder).rglob("*") if f.is_file()]
    found: dict[str, str] = {}
    for file in files:
        if file.suffix in (".pyc", ".png") or file.name == Path(__file__).name:
            continue
        for name in re.findall(r"\bHUEDB_[A-Z0-9_]*[A-Z0-9]\b", file.read_text(errors="replace")):
            found.setdefault(name, str(file.relative_to(REPO_ROOT)))
    used = {name: where for name, where in found.items() if name not in NOT_VARIABLES}
    assert "HUEDB_MEMORY_BUDGET_FULL" in used and "HUEDB_AUTH_TOKENS" in used
    for name, where in sorted(used.items()):
        try:
            check_environment_names({name: "1"})
        except ConfigError as exc:
            pytest.fail(f"{name} (used in {where}) is refused by huedb run: {exc}")
    known = {*SERVER_ENVIRONMENT, *OTHER_ENVIRONMENT, *(env_name(o) for o in OPTION_NAMES)}
    check_environment_names(dict.fromkeys(known, "1"))


# --------------------------------------------------------------------------- null token scope


@pytest.mark.parametrize("key", ["tenant", "databases", "role", "name", "token"])
def test_a_null_key_of_a_config_token_is_refused(tmp_path: Path, key: str) -> None:
    """`"tenant": null` used to make a token of every tenant, as if the key were absent."""
    token = {"token": "acme-token-123", "role": "admin", "tenant": "acme", key: None}
    path = write_config(tmp_path, json.dumps({"auth": {"tokens": [token]}}), ".json")
    with pytest.raises(ConfigError, match=re.escape(f"auth.tokens[1] in {path}: {key} may not")):
        config_of(tmp_path, "--config", str(path))


def test_a_config_token_name_must_be_a_string(tmp_path: Path) -> None:
    token = {"token": "acme-token-123", "role": "admin", "name": 7}
    path = write_config(tmp_path, json.dumps({"auth": {"tokens": [token]}}), ".json")
    with pytest.raises(ConfigError, match=re.escape("auth.tokens[1].name must be a string")):
        config_of(tmp_path, "--config", str(path))


# --------------------------------------------------------------------------- HUEDB_ALLOW_RESET


@pytest.mark.parametrize(
    ("in_file", "value", "expected"),
    [
        (True, "0", False),
        (True, "false", False),
        (True, " No ", False),
        (False, "1", True),
        (False, "TRUE", True),
        (False, "yes", True),
        (None, "0", False),
    ],
)
def test_huedb_allow_reset_overrides_the_config_file_both_ways(
    tmp_path: Path, in_file: bool | None, value: str, expected: bool
) -> None:
    """config < environment: HUEDB_ALLOW_RESET=0 used to leave the file's `true` on."""
    flags: tuple[str, ...] = ()
    if in_file is not None:
        path = write_config(tmp_path, f"allow_reset = {str(in_file).lower()}\n")
        flags = ("--config", str(path))
    env = {"HUEDB_ALLOW_RESET": value}
    assert config_of(tmp_path, *flags, env=env).allow_reset is expected


def test_the_allow_reset_flag_beats_the_environment(tmp_path: Path) -> None:
    config = config_of(tmp_path, "--allow-reset", env={"HUEDB_ALLOW_RESET": "0"})
    assert config.allow_reset is True


@pytest.mark.parametrize("value", ["", "maybe", "on", "2"])
def test_huedb_allow_reset_that_is_no_boolean_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="HUEDB_ALLOW_RESET=.* is not a boolean"):
        config_of(tmp_path, env={"HUEDB_ALLOW_RESET": value})


# --------------------------------------------------------------------------- loopback names


def test_a_loopback_name_that_resolves_elsewhere_needs_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`localhost` or `x.localhost` bound without tokens must resolve to loopback addresses
    only: a hosts file mapping one to a network address would serve it openly. (The hosts
    file is simulated: tests cannot edit /etc/hosts.)"""
    assert config_of(tmp_path, "--host", "localhost").host == "localhost"
    real = socket.getaddrinfo

    def hosts_file(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("localhost", "app.localhost"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hosts_file)
    for host in ("localhost", "app.localhost"):
        with pytest.raises(ConfigError, match=f"refusing to serve {host} without auth"):
            config_of(tmp_path, "--host", host)
    assert config_of(tmp_path, "--host", "127.0.0.1").host == "127.0.0.1"
