"""huedb's SparseVector and BM25 function against chromadb's (the reference, a test dependency).

* BM25 vectors: huedb's ``ChromaBm25EmbeddingFunction`` gives exactly chromadb's indices,
  values (bit for bit) and labels for 1,200 seeded texts (unicode, punctuation, digits, long
  words, stopwords, repeats, mixed case, empty) under five parameter sets, for documents and
  queries, plus hypothesis-drawn unicode text and two known hash collisions.
* SparseVector: every check of chromadb's ``__post_init__`` and ``from_dict``, by examples
  and by a hypothesis comparison over arbitrary inputs: same outcome, type and message.
* Configuration: ``get_config`` / ``build_from_config`` / ``validate_config`` /
  ``validate_config_update`` round-trip and agree with chromadb's, including how chromadb's
  ``Schema`` serialises a sparse index that names the function.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.types import Schema, SparseVectorIndexConfig
from chromadb.utils import embedding_functions as chroma_efs
from hypothesis import given, settings
from hypothesis import strategies as st

import huedb
from huedb import base_types
from huedb.bm25 import DEFAULT_CHROMA_BM25_STOPWORDS, ChromaBm25EmbeddingFunction, tokenizer
from huedb.sparse_vector import SparseVector, validate_sparse_vectors
from huedb.utils import embedding_functions as huedb_efs

ChromaBm25 = chroma_efs.ChromaBm25EmbeddingFunction

PARAMETER_SETS: list[dict[str, Any]] = [
    {},
    {"include_tokens": True},
    {"k": 0.9, "b": 0.4, "avg_doc_length": 12.5, "token_max_length": 8, "include_tokens": True},
    {"k": 2, "b": 0, "avg_doc_length": 3, "stopwords": ["Quick", "FOX", "über", "the"]},
    {"k": 1.5, "b": 1, "token_max_length": 3, "stopwords": []},
]

# ------------------------------------------------------------------------------------------
# Seeded texts
# ------------------------------------------------------------------------------------------

_ENGLISH = (
    "running runs ran runner easily fairly generously happiness relational conditional "
    "national nationalization hopefully agreed feed sky skies dying lying news innings "
    "proceed exceed succeed cannily atlas cosmos bias andes generate generously general "
    "communism communication arsenal fox foxes quick brown lazy dog jumps over the a an and "
    "of to is was were be been being have has had do does did not no nor very just should "
    "won't don't isn't it's you're i me my we our you he she they them what which who whom"
)
_UNICODE_WORDS = (
    "café naïve Straße STRASSE İstanbul ISTANBUL ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ Москва бег 東京 日本語テキスト "
    "مرحبا שלום हिन्दी 한국어 emoji🙂face 🙂 👍🏽 ﬁnance e\u0301te\u0301 Ǆungla ǅ ⅷ x² ١٢٣ "
    "snake_case_word __init__ ŉ ẞ ﬀ Ⅻ Ǳ ß ǰ ı \u212a \u212b"
)
_PUNCTUATION = (
    "! \" # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ ` { | } ~ ... — – « » “ ” ¿ ¡ • … "
    "© ™ § ° € ¶ $100 3.14 1,000 e-mail U.S.A. C++ node.js a/b (x) #tag @user 50% ~27.8 "
    "44.72 km/h -- ''"
)
ENGLISH = _ENGLISH.split()
UNICODE_WORDS = _UNICODE_WORDS.split()
PUNCTUATION = _PUNCTUATION.split()
DIGITS = ["0", "7", "42", "2024", "3.0", "1e10", "007", "12345678901234567890", "v2", "4th"]
SEPARATORS = [
    " ",
    " ",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u00a0",
    "\u3000",
    "\u2003",
    "\u2028",
    "\x1c",
    "\x0b",
    "",
    "-",
    "/",
    "_",
    ".",
    ",",
]
SPECIAL_TEXTS = [
    "",
    " ",
    "!!!",
    "\t\n ",
    "the a an and of",
    " ".join(DEFAULT_CHROMA_BM25_STOPWORDS),
    "a" * 40,
    "a" * 41,
    "fox " * 50,
    "Usain Bolt's top speed reached ~27.8 mph (44.72 km/h)",
    "The   space-time   continuum   WARPS   near   massive   objects...",
    "running runs ran foxes Foxes",
    "İ",
    "\u0130stanbul \u0130",
]


def _long_word(rng: random.Random) -> str:
    """A word around the default 40-character limit (and far beyond it)."""
    length = rng.choice([38, 39, 40, 41, 42, 60, 120])
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzéß") for _ in range(length))


def _random_chars(rng: random.Random) -> str:
    """A few code points from anywhere but the surrogates (utf-8 cannot encode those)."""
    out = []
    for _ in range(rng.randint(1, 6)):
        point = rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x300, 0x2FFF)])
        if rng.random() < 0.2:
            point = rng.randint(0xE000, 0x1FAFF)
        out.append(chr(point))
    return "".join(out)


def _piece(rng: random.Random, earlier: list[str]) -> str:
    kind = rng.random()
    if earlier and kind < 0.15:
        return rng.choice(earlier)  # repeated words
    if kind < 0.55:
        word = rng.choice(ENGLISH)
    elif kind < 0.68:
        word = rng.choice(UNICODE_WORDS)
    elif kind < 0.78:
        word = rng.choice(PUNCTUATION)
    elif kind < 0.86:
        word = rng.choice(DIGITS)
    elif kind < 0.92:
        word = _long_word(rng)
    else:
        word = _random_chars(rng)
    case = rng.random()
    if case < 0.1:
        word = word.upper()
    elif case < 0.2:
        word = word.title()
    elif case < 0.25:
        word = word.swapcase()
    return word


def seeded_texts(count: int, seed: int = 16) -> list[str]:
    """``count`` varied texts (the special ones first), reproducible from ``seed``."""
    rng = random.Random(seed)
    texts = list(SPECIAL_TEXTS)
    while len(texts) < count:
        pieces: list[str] = []
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 34])):
            pieces.append(_piece(rng, pieces))
            pieces.append(rng.choice(SEPARATORS))
        texts.append("".join(pieces))
    return texts


TEXTS = seeded_texts(1200)


def _plain(vectors: list[Any]) -> list[tuple[list[int], list[float], list[str] | None]]:
    """Vectors of either library as comparable tuples (values compared exactly)."""
    return [(v.indices, v.values, v.labels) for v in vectors]


def _assert_same(
    texts: list[str], params: dict[str, Any], method: Callable[[Any], Any] = lambda ef: ef
) -> None:
    ours = method(ChromaBm25EmbeddingFunction(**params))(texts)
    theirs = method(ChromaBm25(**params))(texts)
    assert all(isinstance(v, SparseVector) for v in ours)
    for text, mine, reference in zip(texts, _plain(ours), _plain(theirs), strict=True):
        assert mine == reference, (text, params)


# ------------------------------------------------------------------------------------------
# BM25 vectors
# ------------------------------------------------------------------------------------------


def test_texts_are_varied() -> None:
    """The corpus has what it claims: empty, unicode, punctuation, long words, stopwords."""
    assert len(TEXTS) >= 1000 and "" in TEXTS
    joined = "".join(TEXTS)
    assert any(ord(c) > 0x3000 for c in joined) and "—" in joined and "2024" in joined
    assert any(len(word) > 40 for text in TEXTS for word in text.split())
    assert sum(not ChromaBm25EmbeddingFunction()([t])[0].indices for t in TEXTS) >= 5
    assert max(len(ChromaBm25EmbeddingFunction()([t])[0].indices) for t in TEXTS) >= 20


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=lambda p: ",".join(p) or "defaults")
def test_documents_equal_chromadb(params: dict[str, Any]) -> None:
    """Every seeded text gives chromadb's vector exactly (the first 400 for the later sets)."""
    _assert_same(TEXTS if params in PARAMETER_SETS[:2] else TEXTS[:400], params)


@pytest.mark.parametrize("params", PARAMETER_SETS[:3], ids=["defaults", "tokens", "custom"])
def test_queries_equal_chromadb(params: dict[str, Any]) -> None:
    """``embed_query`` gives chromadb's query vectors (the same weights as documents)."""
    _assert_same(TEXTS if not params else TEXTS[:400], params, lambda ef: ef.embed_query)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80))
def test_drawn_unicode_text_equals_chromadb(text: str) -> None:
    """Arbitrary unicode text (hypothesis) gives chromadb's vector, with tokens."""
    _assert_same([text, text.upper()], {"include_tokens": True})


@pytest.mark.parametrize("first, second", [("bgqjhlm", "nrqnxqx"), ("pxjfkvx", "mjgknsc")])
def test_hash_collisions_merge_as_chromadb(first: str, second: str) -> None:
    """Two stems with one index (|h| = |-h|, or equal hashes) count as one term, labelled by
    the first one seen. The pairs were found by hashing ~98k random 7-letter stems."""
    vectors = ChromaBm25EmbeddingFunction(include_tokens=True)(
        [f"{first} {second} {second}", f"{second} {first}"]
    )
    assert [len(v.indices) for v in vectors] == [1, 1]
    assert [v.labels for v in vectors] == [[first], [second]]
    _assert_same([f"{first} {second} {second}", f"{second} {first}"], {"include_tokens": True})


def test_threads_embed_as_one() -> None:
    """Four threads embedding at once (stem cache cold, a thread switch every microsecond)
    get the serial vectors: Snowball stemmer objects keep per-word state, so each thread has
    its own (one shared stemmer fails this test with wrong stems or IndexError)."""
    ef = ChromaBm25EmbeddingFunction(include_tokens=True)
    expected = ef(TEXTS)
    tokenizer.stem_and_hash.cache_clear()
    results: dict[int, Any] = {}

    def work(part: int) -> None:
        try:
            results[part] = ef(TEXTS[part::4])
        except Exception as error:  # reported by the assertion below
            results[part] = error

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(part,)) for part in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    for part in range(4):
        assert results[part] == expected[part::4]


def test_reference_vectors() -> None:
    """The worked vectors of shared/chroma-search-api.md §4.3."""
    ef = ChromaBm25EmbeddingFunction()
    fox, quick = ef(["fox animal", "the quick brown fox jumps over the lazy dog"])
    assert fox.indices == [1177748882, 1621867415]
    assert fox.values == [1.6832038254632398] * 2
    assert quick.indices == [226376294, 741580288, 771291085, 1312749093, 1621867415, 1913189942]
    assert quick.values == [1.6652868125369606] * 6
    (running,) = ChromaBm25EmbeddingFunction(include_tokens=True)(["running runs ran foxes Foxes"])
    assert running.indices == [243905464, 567658162, 1621867415]
    assert running.labels == ["run", "ran", "fox"]


def test_call_errors_match_chromadb() -> None:
    """An empty input is chromadb's ValueError; a text without terms is an empty vector."""
    for ef in (ChromaBm25EmbeddingFunction(), ChromaBm25()):
        with pytest.raises(ValueError) as caught:
            ef([])
        assert str(caught.value) == (
            "Expected sparse vectors to be a non-empty list, got 0 sparse vectors"
        )
    (empty,) = ChromaBm25EmbeddingFunction(include_tokens=True)(["!!! the"])
    assert empty == SparseVector(indices=[], values=[], labels=None)


# ------------------------------------------------------------------------------------------
# SparseVector checks
# ------------------------------------------------------------------------------------------

INVALID_VECTORS: list[tuple[Any, Any, Any]] = [
    ((1, 2), [0.1, 0.2], None),  # indices not a list
    ([1, 2], (0.1, 0.2), None),  # values not a list
    ([1, 2], [0.1], None),  # lengths differ
    ([1], [0.1], ("a",)),  # labels not a list
    ([1, 2], [0.1, 0.2], ["a"]),  # labels length differs
    ([1, 2.0], [0.1, 0.2], None),  # a float index
    ([np.int64(1)], [0.1], None),  # a numpy integer is not an int
    (["1"], [0.1], None),
    ([-1], [0.1], None),  # negative
    ([3, -1], [0.1, 0.2], None),  # negative after a valid index
    ([1, "x"], [0.1, "y"], None),  # the index is checked before the value
    ([1], ["0.5"], None),  # a string value
    ([1], [None], None),
    ([1], [np.float32(0.5)], None),  # numpy float32 is not a float
    ([5, 1], [0.1, 0.2], None),  # descending
    ([1, 1], [0.1, 0.2], None),  # duplicate
    ([0, 2, 2, 1], [0.1, 0.2, 0.3, 0.4], None),
    ([5, -1], [0.1, "x"], None),  # sign before value type before order
]

VALID_VECTORS: list[tuple[Any, Any, Any]] = [
    ([], [], None),
    ([], [], []),
    ([0, 1, 2**31, 2**40], [1, -2.5, 0.0, float("inf")], None),  # no range checks client-side
    ([False, True, 2], [True, 0.5, np.float64(1.5)], ["a", "b", "c"]),  # bool is an int
    ([7], [1.0], [3]),  # label types are not checked
]


def _outcome(cls: Any, indices: Any, values: Any, labels: Any) -> tuple[str, Any]:
    """What a constructor does with these arguments: the error (type, message) or the dict."""
    try:
        vector = cls(indices=indices, values=values, labels=labels)
    except Exception as error:  # the comparison is of the exception's type and text
        return type(error).__name__, str(error)
    return "ok", vector.to_dict()


@pytest.mark.parametrize("indices, values, labels", INVALID_VECTORS)
def test_invalid_vectors_refused_as_chromadb(indices: Any, values: Any, labels: Any) -> None:
    """Each check fails with chromadb's ValueError and message, in chromadb's order."""
    ours = _outcome(SparseVector, indices, values, labels)
    assert ours[0] == "ValueError"
    assert ours == _outcome(chromadb.SparseVector, indices, values, labels)


@pytest.mark.parametrize("indices, values, labels", VALID_VECTORS)
def test_valid_vectors_accepted_as_chromadb(indices: Any, values: Any, labels: Any) -> None:
    """What chromadb accepts, huedb accepts, with the same wire form."""
    ours = _outcome(SparseVector, indices, values, labels)
    assert ours[0] == "ok"
    assert ours == _outcome(chromadb.SparseVector, indices, values, labels)


_ITEMS = st.one_of(
    st.integers(-3, 2**33),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=2),
    st.none(),
)
_SEQUENCES = st.one_of(
    st.lists(_ITEMS, max_size=4),
    st.lists(st.integers(0, 9), max_size=4).map(sorted),
    st.lists(st.integers(0, 9), max_size=4, unique=True).map(sorted),
    st.lists(_ITEMS, max_size=4).map(tuple),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(_SEQUENCES, _SEQUENCES, st.one_of(st.none(), _SEQUENCES))
def test_any_input_has_chromadb_outcome(indices: Any, values: Any, labels: Any) -> None:
    """Arbitrary arguments: accepted or refused exactly as chromadb's SparseVector does."""
    assert _outcome(SparseVector, indices, values, labels) == _outcome(
        chromadb.SparseVector, indices, values, labels
    )


def test_wire_form_round_trips() -> None:
    """``to_dict`` is chromadb's wire form (labels travel as ``tokens``); ``from_dict``
    rebuilds the vector, reading each library's output; a wrong ``#type`` is refused."""
    for labels in (None, ["fox", "run"]):
        ours = SparseVector(indices=[3, 9], values=[0.5, 1.25], labels=labels)
        theirs = chromadb.SparseVector(indices=[3, 9], values=[0.5, 1.25], labels=labels)
        assert ours.to_dict() == theirs.to_dict()
        assert ("tokens" in ours.to_dict()) == (labels is not None)
        assert SparseVector.from_dict(theirs.to_dict()) == ours
        assert chromadb.SparseVector.from_dict(ours.to_dict()) == theirs
    for wire in (
        {"indices": [1], "values": [0.1]},
        {"#type": "dense", "indices": [], "values": []},
    ):
        with pytest.raises(ValueError) as ours_error:
            SparseVector.from_dict(wire)
        with pytest.raises(ValueError) as theirs_error:
            chromadb.SparseVector.from_dict(wire)
        assert str(ours_error.value) == str(theirs_error.value)
    with pytest.raises(ValueError, match="strictly ascending"):
        SparseVector.from_dict({"#type": "sparse_vector", "indices": [2, 1], "values": [1, 1]})
    # chromadb raises a bare KeyError('indices') for a tagged dict without its lists.
    with pytest.raises(ValueError, match=r"missing \['values'\]"):
        SparseVector.from_dict({"#type": "sparse_vector", "indices": [1]})


def test_validate_sparse_vectors_as_chromadb() -> None:
    """The output check of sparse embedding functions: same messages as chromadb's."""
    from chromadb.api.types import validate_sparse_vectors as chroma_validate

    vector = SparseVector(indices=[], values=[])
    assert validate_sparse_vectors([vector]) == [vector]
    for bad in ((vector,), [], [{"indices": []}], None):
        with pytest.raises(ValueError) as ours:
            validate_sparse_vectors(bad)
        with pytest.raises(ValueError) as theirs:
            chroma_validate(bad)
        assert str(ours.value) == str(theirs.value)


def test_module_paths() -> None:
    """The names sit where chromadb code looks for them after ``import huedb as chromadb``."""
    assert huedb.SparseVector is base_types.SparseVector is SparseVector
    assert (
        huedb.utils.embedding_functions.ChromaBm25EmbeddingFunction is ChromaBm25EmbeddingFunction
    )
    assert huedb_efs.sparse_known_embedding_functions["chroma_bm25"] is ChromaBm25EmbeddingFunction


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=lambda p: ",".join(p) or "defaults")
def test_config_round_trips_as_chromadb(params: dict[str, Any]) -> None:
    """``get_config`` equals chromadb's; rebuilding from it (by huedb or by chromadb, through
    the name registry) keeps the configuration and the vectors."""
    ours = ChromaBm25EmbeddingFunction(**params)
    config = ours.get_config()
    assert ours.name() == ChromaBm25.name() == "chroma_bm25"
    assert config == ChromaBm25(**params).get_config()
    assert [type(config[key]) for key in config] == [
        type(value) for value in ChromaBm25(**params).get_config().values()
    ]
    ours.validate_config(config)
    rebuilt = huedb_efs.sparse_known_embedding_functions[ours.name()].build_from_config(config)
    assert rebuilt.get_config() == config
    texts = TEXTS[:40]
    assert _plain(rebuilt(texts)) == _plain(ours(texts))
    assert _plain(ChromaBm25.build_from_config(config)(texts)) == _plain(ours(texts))


def test_build_from_partial_config_uses_defaults() -> None:
    """Missing keys take the defaults, as chromadb's ``build_from_config`` does."""
    for config in ({}, {"k": 2}, {"stopwords": ["fox"], "include_tokens": True}):
        ours = ChromaBm25EmbeddingFunction.build_from_config(config)
        assert ours.get_config() == ChromaBm25.build_from_config(config).get_config()


def test_schema_serialises_function_as_chromadb() -> None:
    """chromadb's Schema records huedb's function exactly as it records its own."""

    def schema_json(ef: Any) -> dict[str, Any]:
        config = SparseVectorIndexConfig(embedding_function=ef, source_key="#document", bm25=True)
        return Schema().create_index(config=config, key="bm25_sparse").serialize_to_json()

    params = {"k": 1.1, "stopwords": ["fox"], "include_tokens": True}
    ours = schema_json(ChromaBm25EmbeddingFunction(**params))
    assert ours == schema_json(ChromaBm25(**params))
    recorded = ours["keys"]["bm25_sparse"]["sparse_vector"]["sparse_vector_index"]["config"]
    assert recorded["embedding_function"]["name"] == "chroma_bm25"


BAD_CONFIGS: list[Any] = [
    [],
    None,
    {"k": "1.2"},
    {"b": True},
    {"avg_doc_length": None},
    {"token_max_length": [40]},
    {"stopwords": "the"},
    {"stopwords": ["the", 3, None]},
    {"include_tokens": 1},
    {"foo": 1},
    {"foo": 1, "bar": 2, "k": "x"},
    {"k": "x", "b": "y", "stopwords": [1]},
    {"stopwords": [1], "include_tokens": "no"},
]


@pytest.mark.parametrize("config", BAD_CONFIGS)
def test_bad_config_refused_as_chromadb(config: Any) -> None:
    """``validate_config`` refuses what chromadb's JSON schema refuses, with its message
    (chromadb raises jsonschema's ValidationError, huedb a ValueError)."""
    with pytest.raises(ValueError) as ours:
        ChromaBm25EmbeddingFunction.validate_config(config)
    with pytest.raises(Exception) as theirs:
        ChromaBm25.validate_config(config)
    assert str(ours.value) == theirs.value.message


def test_good_configs_accepted_as_chromadb() -> None:
    """Numbers of any kind, empty stopwords and an empty config pass both checks."""
    for config in ({}, {"k": 1, "b": 0.5, "token_max_length": 7.5}, {"stopwords": []}):
        ChromaBm25EmbeddingFunction.validate_config(config)
        ChromaBm25.validate_config(config)


def test_config_update_rules_as_chromadb() -> None:
    """Every known key may change; an unknown key is refused with chromadb's message."""
    old = ChromaBm25EmbeddingFunction().get_config()
    new = {"k": 1, "b": 1, "avg_doc_length": 1, "token_max_length": 1, "stopwords": []}
    ChromaBm25EmbeddingFunction().validate_config_update(old, {**new, "include_tokens": True})
    with pytest.raises(ValueError) as ours:
        ChromaBm25EmbeddingFunction().validate_config_update(old, {"k": 1, "space": "ip"})
    with pytest.raises(ValueError) as theirs:
        ChromaBm25().validate_config_update(old, {"k": 1, "space": "ip"})
    assert (
        str(ours.value) == str(theirs.value) == "Updating 'space' is not supported for chroma_bm25"
    )
