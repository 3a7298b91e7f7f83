"""docs/search.md stays true: its Python blocks run in order, in-process, and give the
results its comments show."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "search.md"


def run_blocks() -> dict[str, Any]:
    """The namespace after running every ```python block of the page, in order."""
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S):
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace


def commented_literals() -> list[tuple[str, Any]]:
    """(expression, value) of each line `expression  # literal` of the page's code."""
    found = []
    for line in DOC.read_text().splitlines():
        expression, _, comment = line.partition("  # ")
        if not comment or "=" in expression or expression.startswith((" ", "client")):
            continue
        try:
            found.append((expression, ast.literal_eval(comment.strip())))
        except (ValueError, SyntaxError):
            continue
    return found


def test_search_page_examples_run_and_answer_as_shown() -> None:
    ns = run_blocks()
    articles, keys = ns["articles"], ns["K"]
    checked = commented_literals()
    assert len(checked) == 2  # the filter and group_by examples
    for expression, value in checked:
        assert eval(expression, ns) == value, expression  # noqa: S307 (our own docs)
    keyword = articles.search(ns["keyword"].select(keys.SCORE)).rows()[0]
    assert [row["id"] for row in keyword] == ["a1", "a2", "a3"]  # "a4 never appears"
    assert keyword[0]["score"] < keyword[2]["score"] < 0
    fused = articles.search(ns["hybrid"].limit(3).select(keys.SCORE)).rows()[0]
    assert len(fused) == 3 and fused[0]["id"] == "a1"  # first in both lists: -(1/60 + 1/60)
    assert abs(fused[0]["score"] + 2 / 60) < 1e-6
    assert all(-2 / 60 - 1e-6 <= row["score"] < 0 for row in fused)
    assert len(ns["results"]["ids"]) == 2
