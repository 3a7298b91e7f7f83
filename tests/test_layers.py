"""The layering of docs/ARCHITECTURE.md holds: import-linter's contracts, and no module
below the CLI imports the top-level `huedb` package (which import-linter cannot see)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "huedb"
# The package's own __init__ re-exports the public API; the CLI sits above everything.
MAY_IMPORT_ROOT = {PACKAGE / "__init__.py"}


def _root_imports(path: Path) -> list[int]:
    """Lines of `path` that import the top-level package itself."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        plain = isinstance(node, ast.Import) and any(a.name == "huedb" for a in node.names)
        named = isinstance(node, ast.ImportFrom) and node.module == "huedb" and not node.level
        if plain or named:
            lines.append(node.lineno)
    return lines


def test_no_module_imports_the_top_level_package() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in MAY_IMPORT_ROOT
        and not path.is_relative_to(PACKAGE / "cli")
        and (lines := _root_imports(path))
    }
    assert offenders == {}, "import the specific module instead of `huedb`"


def test_a_root_import_is_detected(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport huedb\nfrom huedb import errors\nfrom huedb.api import x\n"
    )
    assert _root_imports(sample) == [2, 3]


def test_import_linter_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run(
        [str(linter)], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout.split("Contracts:")[-1]
