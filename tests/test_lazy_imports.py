"""Every huedb process (an embedded client, each CLI command, each server start and worker,
each graph and recall child) pays for what it imports: psycopg, httpx and asyncio cost ~70,
~70 and ~40 ms and most processes never use them (no PostgreSQL store, no `--url`, no async
client). They are imported where they are used; a process that does not use them does not
load them.

The top-level package loads its public names on first use (PEP 562): `import huedb` imports
nothing heavy, so the graph and recall children (started after graph builds) import neither
the client API nor FastAPI. Every public name still resolves, as `huedb.<name>`,
`from huedb import <name>` and `from huedb import *`, and the `if TYPE_CHECKING:` imports
that editors and type checkers read name the same objects."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import huedb
from tests.cli import REPO_ROOT, child_env

LAZY = ("psycopg", "psycopg_pool", "httpx", "asyncio")
HEAVY = ("huedb.api.client", "huedb.api.types", "fastapi", "pydantic", "huedb.server.app")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter, as the suite's child processes run."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
        timeout=120,
    )


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    res = _python(f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))")
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def _loaded_after(code: str) -> list[str]:
    """The LAZY modules loaded by a fresh interpreter after running `code`."""
    loaded = _modules_after(code)
    return [m for m in LAZY if m in loaded]


def test_an_embedded_client_and_the_commands_load_none_of_them(tmp_path) -> None:
    code = (
        "import huedb, huedb.cli.commands\n"
        f"client = huedb.PersistentClient(path={str(tmp_path / 'data')!r})\n"
        "client.create_collection('docs').add(ids=['a'], embeddings=[[1.0, 2.0]])\n"
        "client.close()"
    )
    assert _loaded_after(code) == []


def test_a_postgresql_store_and_an_http_client_load_theirs(pg_url: str) -> None:
    code = (
        "import huedb\n"
        f"client = huedb.Client(huedb.Settings(huedb_store={pg_url!r}))\n"
        "client.heartbeat(); client.close()\n"
        "try:\n"
        "    huedb.HttpClient(host='127.0.0.1', port=9)\n"
        "except Exception:\n"
        "    pass"
    )
    assert set(_loaded_after(code)) >= {"psycopg", "psycopg_pool", "httpx"}


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the `if TYPE_CHECKING:` block of huedb/__init__.py."""
    tree = ast.parse(Path(huedb.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.dump(node)
        for alias in node.names:
            found[alias.asname or alias.name] = node.module
    return found


def test_import_huedb_loads_no_other_huedb_module() -> None:
    loaded = _modules_after("import huedb")
    assert {m for m in loaded if m.startswith("huedb.")} == {"huedb.version"}
    assert "numpy" not in loaded


@pytest.mark.parametrize(
    "module",
    # the graph and recall children; `huedb run`'s command (with --workers N, the parent
    # that opens the store once and starts the workers, which import the app themselves)
    ["huedb.engine.graph_process", "huedb.engine.recall_process", "huedb.cli.serve"],
)
def test_processes_import_no_client_api_or_web_framework_they_do_not_use(module: str) -> None:
    loaded = _modules_after(f"import {module}")
    assert module in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_public_name_resolves_to_its_home() -> None:
    homes = huedb._MODULE_OF
    assert set(huedb.__all__) == {"__version__", "errors", "utils", *homes}
    for name, module in homes.items():
        assert getattr(huedb, name) is getattr(sys.modules[module], name), name
    assert huedb.errors is sys.modules["huedb.errors"]
    assert huedb.utils.embedding_functions is sys.modules["huedb.utils.embedding_functions"]
    assert set(huedb.__all__) <= set(dir(huedb))


def test_star_and_from_imports_in_a_fresh_interpreter() -> None:
    code = (
        "from huedb import *\n"
        "from huedb import PersistentClient, Knn, errors\n"
        "import huedb\n"
        "missing = [n for n in huedb.__all__ if n not in globals()]\n"
        "assert not missing, missing\n"
        "assert PersistentClient is huedb.api.client.PersistentClient\n"
        "assert Knn is huedb.execution.expression.Knn\n"
    )
    res = _python(code)
    assert res.returncode == 0, res.stderr


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        _ = huedb.NoSuchName
    with pytest.raises(AttributeError, match="has no attribute '_private'"):
        _ = huedb._private
    assert not hasattr(huedb, "no_such_submodule")
    with pytest.raises(ImportError):
        from huedb import NoSuchName  # noqa: F401


def test_type_checking_imports_name_the_exported_objects() -> None:
    declared = _type_checking_imports()
    assert declared.pop("errors") == declared.pop("utils") == "huedb"
    assert declared == huedb._MODULE_OF
