"""Filter operands as Chroma takes them, compared with in-process chromadb.

`$regex`: Rust's Unicode `\\b` / `\\B` on non-ASCII documents and CRLF mode `(?R)` (a framed
document on RE2, `regex_dialect._frame`), Rust's binary Unicode properties, and the
characters new in Unicode 16.0 of the classes that carry them. `where`: ints beyond int64
(read as floats, or refused as Chroma refuses them), lone surrogates in any operand (refused),
the key "" (no record has it).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings

import huedb
from huedb import errors
from huedb.engine import regex_dialect

Collections = tuple[Any, Any]  # (chromadb's, huedb's) with the same records


@pytest.fixture(scope="module")
def chroma_client() -> Iterator[Any]:
    # chromadb shares one in-memory system per process and refuses other settings: start
    # from a clean one and leave none behind.
    SharedSystemClient.clear_system_cache()
    yield chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    SharedSystemClient.clear_system_cache()


@pytest.fixture
def make_pair(chroma_client: Any, tmp_path: Path) -> Iterator[Callable[..., Collections]]:
    """Creates one collection in each, with the same records (ids "0", "1", ...)."""
    huedb_client = huedb.PersistentClient(path=str(tmp_path / "data"))
    names: list[str] = []

    def make(documents: list[str] | None = None, metadatas: list[dict] | None = None):
        count = len(documents if documents is not None else metadatas or [])
        name = f"operands{len(names)}"
        names.append(name)
        pair = []
        for client in (chroma_client, huedb_client):
            col = client.create_collection(name, embedding_function=None)
            col.add(
                ids=[str(i) for i in range(count)],
                documents=documents,
                metadatas=metadatas,
                embeddings=[[1.0, float(i)] for i in range(count)],
            )
            pair.append(col)
        return pair[0], pair[1]

    yield make
    for name in names:
        chroma_client.delete_collection(name)
    huedb_client.close()


def _outcome(col: Any, **filters: Any) -> list[str] | str:
    try:
        return sorted(col.get(**filters)["ids"], key=int)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__


def _differences(pair: Collections, clauses: list[dict]) -> list[tuple]:
    chroma, ours = pair
    found = []
    for filters in clauses:
        expected, got = _outcome(chroma, **filters), _outcome(ours, **filters)
        if expected != got:
            found.append((filters, expected, got))
    return found


# --- $regex: Unicode word boundaries and CRLF mode -------------------------------------

BOUNDARY_DOCS = [
    "ö",
    "wörld",
    "日本語",
    "ΣΑΣ σας",
    "x_ö",
    "é1 ab",
    "\u0301a",  # a combining mark (a word character) first
    "a\u200db",  # ZERO WIDTH JOINER (a word character)
    "Ⓐ ⅸ",  # Other_Alphabetic and Nl: word characters
    "a\u0897b",  # a mark new in Unicode 16.0: a word character for Rust
    "😀 smile",
    "cat concatenate",
    "a\r\nb",
    "a\rb",
    "\r",
    "x\ny\r\n\r\nz",
    "",
]
BOUNDARY_PATTERNS = [
    r"\bö", r"\bö\b", r"ö\b", r"\Bö", r"ö\B", r"\b", r"\B", r"^\B", r"\B$", r"\w\b\W",
    r"\W\b\w", r"\bcat\b", r"\Bcat", r"(?i)\bσας\b", r"\b\w+\b", r"\ba\b", r"a\Bb",
    r"\b\x{0897}", r"x\b", r"(?-u:\b)ö", r"(?-u)\bö", r"(?-u:\B)", r"(?-u:\B)ö", r"\b$",
    r"(?s)\b.\B", r"[^a]\b", r"(?m)^\b", r"(?Rm)a$", r"(?R)^.$", r"(?R)a.b", r"(?mR)^$",
    r"(?mR)^b", r"(?mR)a$", r"(?mR)$", r"(?mR)\r$", r"(?mR)^\n", r"(?sR)a.b", r"(?Rs:.)",
    r"(?mR)^z$", r"(?mR)y\r$", r"(?R)\r\n", r"(?m)a$", r"(?m)^\n", r"(?mR)\b$",
    r"(?mR)^\w+\b$", r"(?mR:^)\bx",
]  # fmt: skip


def test_word_boundaries_and_crlf_mode_as_chroma(make_pair) -> None:
    pair = make_pair(documents=BOUNDARY_DOCS)
    clauses = [
        {"where_document": {op: pattern}}
        for pattern in BOUNDARY_PATTERNS
        for op in ("$regex", "$not_regex")
    ]
    assert not _differences(pair, clauses)


def test_generated_boundary_and_crlf_patterns_as_chroma(make_pair) -> None:
    """Patterns drawn from atoms that frame, and documents of the characters they test."""
    rng = random.Random(7)
    alphabet = ["a", "ö", "日", "σ", " ", "\r", "\n", "_", "1", "١", "\u0301", "\u200d", "-"]
    alphabet += ["😀", "Ⓐ", "\x01", "\u0897"]
    documents = sorted({"".join(rng.choices(alphabet, k=rng.randint(0, 7))) for _ in range(80)})
    atoms = ["a", "ö", "σ", " ", "\\r", "\\n", "_", ".", "\\w", "\\W", "\\s", "[^a]", "[aö]"]
    atoms += ["\\b", "\\B", "^", "$", "(?m:^)", "(?m:$)", "(?R:.)", "(?s:.)", "(?i)Σ", "\\z"]
    atoms += ["\\x01", "😀", "\\x{0897}"]
    crlf_atoms = ["(?mR:^)", "(?mR:$)", "(?R:.)", "\\b", "\\r", "\\n", "."]
    patterns = set()
    for _ in range(150):
        pool = crlf_atoms if rng.random() < 0.3 else atoms
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.3:
            parts[0] = f"(?:{parts[0]})*"
        patterns.add("".join(parts))
    pair = make_pair(documents=documents)
    clauses = [{"where_document": {"$regex": p}} for p in sorted(patterns)]
    assert not _differences(pair, clauses)


def test_delete_by_word_boundary_removes_chroma_s_records(make_pair) -> None:
    chroma, ours = make_pair(documents=["ö", "wörld", "日本語", "ΣΑΣ σας", "a ö b"])
    for col in (chroma, ours):
        col.delete(where_document={"$regex": r"\bö\b"})
    assert sorted(ours.get()["ids"]) == sorted(chroma.get()["ids"]) == ["1", "2", "3"]


def test_refused_mixtures_say_not_supported() -> None:
    # One framing cannot serve both kinds of boundary, nor both kinds of line end.
    for pattern in (r"\b(?-u:\b)", r"(?-u:\B)x\b", r"(?m)^(?R)$", r"(?mR)$(?-R)^"):
        with pytest.raises(errors.InvalidArgumentError, match="not supported by huedb"):
            regex_dialect.compile_pattern(pattern)


@pytest.mark.serial  # a hang guard, not a speed test: measured alone, bound far above
def test_framed_documents_take_linear_time() -> None:
    """A pattern that backtracks exponentially elsewhere answers on a framed 200,000-char
    document (~20 ms here; a backtracking engine would not finish in a lifetime)."""
    document = "wörd " * 40_000  # 200,000 characters, framed to 600,000
    start = time.perf_counter()
    assert not regex_dialect.search(r"(\w+\s?)+\bX", document)
    assert regex_dialect.search(r"(?mR)\bwörd $", document.replace(" ", "\r\n", 1))
    assert time.perf_counter() - start < 30.0


# --- $regex: binary properties and Unicode 16.0's characters ---------------------------

PROPERTY_PATTERNS = [
    r"\p{ASCII}", r"\P{ASCII}", r"[\P{ASCII}a]", r"\p{gc=ASCII}", r"\p{Assigned}",
    r"\P{Assigned}", r"\p{White_Space}", r"\p{space}", r"\p{WSpace}", r"\p{Lowercase}",
    r"\p{lower}", r"\P{Lowercase}", r"\p{Uppercase}", r"\p{Upper}", r"[\p{Uppercase}\d]",
]  # fmt: skip
PROPERTY_DOCS = ["abc", "ΣΑΣ", "σας", "\u00a0", "ª", "ʰ", "ⅸ", "Ⅸ", "Ⓐ", "ⓐ", "\u0378", "😀"]


def test_binary_properties_as_chroma(make_pair) -> None:
    pair = make_pair(documents=PROPERTY_DOCS)
    clauses = [{"where_document": {"$regex": p}} for p in PROPERTY_PATTERNS]
    assert not _differences(pair, clauses)


def test_binary_properties_huedb_refuses_are_refused() -> None:
    for pattern in (r"\p{Alphabetic}", r"\p{Emoji}", r"\p{scx=Greek}"):
        with pytest.raises(errors.InvalidArgumentError, match="not supported by huedb"):
            regex_dialect.compile_pattern(pattern)


def _range_edges(body: str) -> set[str]:
    """Each range of an RE2 class body of \\x{..} ranges, its ends and their neighbours."""
    points: set[int] = set()
    for low, high in re.findall(r"\\x\{([0-9A-F]+)\}(?:-\\x\{([0-9A-F]+)\})?", body):
        first, last = int(low, 16), int(high or low, 16)
        points.update((first - 1, first, last, last + 1))
    return {chr(p) for p in points if not 0xD800 <= p <= 0xDFFF}


def test_unicode_16_characters_of_words_and_properties_as_chroma(make_pair) -> None:
    """RE2's tables are Unicode 15.1: the ranges added for Rust's 16.0, at their edges."""
    tables = (
        regex_dialect._WORD_16,
        regex_dialect._ASSIGNED_16,
        regex_dialect._OTHER_LOWER,
        regex_dialect._OTHER_UPPER,
    )
    characters = sorted(set().union(*(_range_edges(body) for body in tables)))
    assert len(characters) > 250
    pair = make_pair(documents=[f"{c}" for c in characters])
    patterns = [r"^\w$", r"^\W$", r"\b", r"\B", r"^\p{Lowercase}$", r"^\p{Uppercase}$"]
    patterns += [r"^\p{Assigned}$", r"^\P{Assigned}$"]
    clauses = [{"where_document": {"$regex": p}} for p in patterns]
    assert not _differences(pair, clauses)


# --- where operands --------------------------------------------------------------------

INT64_MAX = 2**63 - 1
BIG_INT_CLAUSES: list[dict] = [
    {"v": 2**63},
    {"v": 2**64 - 1},
    {"v": 2**64},
    {"v": -(2**63) - 1},
    {"v": -(2**64)},
    {"v": {"$gt": 2**63}},
    {"v": {"$gt": 2**64}},
    {"v": {"$lt": 2**64}},
    {"v": {"$gt": -(2**63) - 1}},
    {"v": {"$gte": -(2**70)}},
    {"v": {"$lt": 10**400}},
    {"v": 10**400},
    {"v": {"$in": [2**63]}},
    {"v": {"$in": [1, 2**63]}},
    {"v": {"$in": [-(2**63) - 1]}},
    {"v": {"$nin": [-(2**63) - 1]}},
    {"v": {"$ne": 2**63}},
    {"v": {"$ne": 2**65}},
    {"v": {"$contains": 2**63}},
    {"v": {"$not_contains": 2**64}},
]


def test_ints_beyond_int64_as_chroma(make_pair) -> None:
    """Chroma refuses 2**63 .. 2**64 - 1 and ints beyond a float, reads others as floats.

    The stored values avoid Chroma's float truncation (README: a deliberate difference).
    """
    pair = make_pair(metadatas=[{"v": 1}, {"v": -5}, {"v": 1.5}, {"v": "x"}])
    assert not _differences(pair, [{"where": w} for w in BIG_INT_CLAUSES])


def test_ints_beyond_int64_are_refused_with_invalid_argument(make_pair) -> None:
    _, ours = make_pair(metadatas=[{"v": INT64_MAX}])
    for where in ({"v": 2**63}, {"v": {"$in": [2**64 - 1]}}, {"v": {"$gte": -(10**400)}}):
        with pytest.raises(errors.InvalidArgumentError, match="Invalid where clause"):
            ours.get(where=where)
        with pytest.raises(errors.InvalidArgumentError):
            ours.delete(where=where)
    assert ours.get(where={"v": {"$lt": 2**64}})["ids"] == ["0"]
    assert ours.get(where={"v": {"$gt": -(2**64)}})["ids"] == ["0"]


SURROGATE_FILTERS: list[dict] = [
    {"where_document": {"$contains": "\ud800"}},
    {"where_document": {"$not_contains": "a\udfff"}},
    {"where_document": {"$regex": "\ud800"}},
    {"where_document": {"$not_regex": "x|\ud800"}},
    {"where": {"k": "\ud800"}},
    {"where": {"k": {"$ne": "\ud800"}}},
    {"where": {"k": {"$in": ["a", "\udfff"]}}},
    {"where": {"k": {"$contains": "\ud800"}}},
    {"where": {"\ud800": "x"}},
    {"where": {"$and": [{"k": "x"}, {"k": {"$nin": ["\ud800"]}}]}},
]


def test_lone_surrogates_in_operands_are_refused_as_chroma(make_pair) -> None:
    pair = make_pair(documents=["hello"], metadatas=[{"k": "x"}])
    assert not _differences(pair, SURROGATE_FILTERS)
    for filters in SURROGATE_FILTERS:
        with pytest.raises(errors.InvalidArgumentError, match="lone surrogate"):
            pair[1].get(**filters)


def test_empty_key_matches_no_record_as_chroma(make_pair) -> None:
    pair = make_pair(metadatas=[{"v": 1}, {"w": "x"}])
    clauses = [{"": 1}, {"": {"$ne": 1}}, {"": {"$nin": ["x"]}}, {"": {"$gt": 0}}]
    clauses += [{"$or": [{"": 1}, {"v": 1}]}]
    assert not _differences(pair, [{"where": w} for w in clauses])
    assert pair[1].get(where={"": 1})["ids"] == []
