"""The store URL's passwords never reach logs, stats or error texts.

libpq ends a URL's user-info at the `@` ahead of the authority's first `/` (a `#` or `?`
before it is part of the password), and reads `password` / `sslpassword` from the query
string too: `masked_url` and `without_password` must mask every one of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huedb.options import masked_url, without_password
from tests.cli import check_cli
from tests.servers import huedb_server

MASKED = [
    ("postgresql://u:p#ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p?ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p:ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ("postgres://u:pw@h1:5432,[::1]:6/db", "postgres://u:***@h1:5432,[::1]:6/db"),
    (
        "postgresql://h/db?sslpassword=k3y&user=me@corp&Password=pw",
        "postgresql://h/db?sslpassword=***&user=me@corp&Password=***",
    ),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("postgresql:///db?host=/tmp", "postgresql:///db?host=/tmp"),
    # Not a URL libpq can split safely: shown as a placeholder, never in part.
    ("postgresql://u:pa/ss@host/db", "<unparsable store URL>"),
    ("postgresql://u:p/s?a=b@h/db", "<unparsable store URL>"),
    ("mysql://u:pw@h/db", "<unparsable store URL>"),
]


@pytest.mark.parametrize(("url", "expected"), MASKED)
def test_masked_url_hides_every_password(url: str, expected: str) -> None:
    assert masked_url(url) == expected


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://u:p#ss@h/db", "p#ss"),
        ("postgresql://u:p?ss@h/db", "p?ss"),
        ("postgresql://u:pa/ss@host/db", "pa/ss"),
        ("postgresql://u:p%40ss@h/db", "p@ss"),
        ("postgresql://u:p@ss@h/db", "p@ss"),
        ("postgresql://h/db?sslpassword=k3y", "k3y"),
    ],
)
def test_without_password_scrubs_error_text(url: str, password: str) -> None:
    text = f"connection to {url} failed: password {password} rejected (raw {url[13:]})"
    scrubbed = without_password(text, url)
    assert password not in scrubbed
    assert "connection to" in scrubbed and "rejected" in scrubbed


def _with_password(url: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}?sslpassword=k3y-s3cret"


# The test cluster trusts 127.0.0.1, so libpq never needs the password: it is only shown.
PASSWORD = "s3cr#t?pw"


def test_run_and_stats_show_no_password(tmp_path: Path, pg_url: str) -> None:
    url = _with_password(pg_url, PASSWORD)
    with huedb_server(tmp_path / "node", "--store", url) as server:
        log = server.log()
    assert "store: PostgreSQL postgresql://" in log
    assert "s3cr" not in log and "k3y" not in log
    stats = check_cli("stats", "--store", url, "--json").stdout
    assert json.loads(stats)["store_kind"] == "postgresql"
    assert "s3cr" not in stats and "k3y" not in stats
