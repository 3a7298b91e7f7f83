"""Embedding functions in-process, side by side with chromadb 1.5.9 (PersistentClient on
tmp_path): chromadb's `EmbeddingFunction[D]` protocol and type aliases from `huedb`, a
function given through a Schema's `VectorIndexConfig`, the refusal of a function that
conflicts with the recorded one, and the default function a handle opened with
`embedding_function=None` falls back to. chromadb's default model is never downloaded:
both default functions are stubbed, every other function is a small deterministic one."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import chromadb.api.types as chroma_types
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2
from chromadb.utils.embedding_functions import (
    register_embedding_function as register_in_chromadb,
)

import huedb
import huedb.embedding_functions as huedb_default
from huedb.utils.embedding_functions import register_embedding_function as register_in_huedb

# Both libraries warn (DeprecationWarning) about the legacy functions used on purpose here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODULES = (chromadb, huedb)
DEFAULT_VECTOR = [0.5, 0.5, 0.5]  # what the stubbed default functions return


def _names(module: Any) -> str:
    return module.__name__


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[dict[Any, Any]]:
    """chromadb's and huedb's persistent clients, each on its own directory, by module."""
    chroma = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    ours = huedb.PersistentClient(path=str(tmp_path / "huedb"))
    yield {chromadb: chroma, huedb: ours}
    ours.close()
    SharedSystemClient.clear_system_cache()


@pytest.fixture
def default_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Both default functions stubbed (chromadb's would download its model): each returns
    DEFAULT_VECTOR per input and records the call."""
    calls: list[tuple[str, list[str]]] = []

    def stub(label: str) -> Callable[..., Any]:
        def call(self: Any, input: Any) -> list[np.ndarray]:
            calls.append((label, list(input)))
            return [np.asarray(DEFAULT_VECTOR, dtype=np.float32) for _ in input]

        return call

    monkeypatch.setattr(chroma_types.DefaultEmbeddingFunction, "__call__", stub("chromadb"))
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", stub("chromadb-onnx"))
    monkeypatch.setattr(huedb_default.DefaultEmbeddingFunction, "__call__", stub("huedb"))
    return calls


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """("ok", value) or ("err", exception class name, message)."""
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 - the outcome is compared
        return ("err", type(exc).__name__, str(exc))


def plain(value: Any) -> Any:
    """Results as plain Python values (numpy arrays to rounded lists, with their dtype)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), np.round(value.astype(float), 5).tolist())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def side_by_side(run: Callable[[Any], Any]) -> dict[str, Any]:
    """`run(module)`'s outcome for chromadb and huedb, by module name."""
    return {_names(m): plain(outcome(lambda m=m: run(m))) for m in MODULES}


# -- functions, one class per module (registered once: registries refuse a second class) --


def _length_vector(text: str) -> list[float]:
    return [float(len(text)), 1.0, 0.0]


def _named(module: Any, register: Callable[[Any], Any], label: str, space: str) -> Any:
    """A registered, named subclass of the module's `EmbeddingFunction[Documents]` (only
    `__init__`, `__call__`, `name`, `get_config`, `build_from_config` and
    `default_space` of its own)."""
    base = module.EmbeddingFunction[module.Documents]

    class Named(base):  # type: ignore[misc, valid-type]
        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def __call__(self, input: Any) -> Any:
            return [[v * self.scale for v in _length_vector(t)] for t in input]

        @staticmethod
        def name() -> str:
            return label

        def get_config(self) -> dict[str, Any]:
            return {"scale": self.scale}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> Any:
            return Named(config["scale"])

        def default_space(self) -> Any:
            return space

    Named.__qualname__ = Named.__name__ = f"Named_{label}"
    return register(Named)


def _legacy(module: Any) -> Any:
    """A subclass of the module's `EmbeddingFunction` without a name (a legacy one)."""

    class Legacy(module.EmbeddingFunction):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            pass

        def __call__(self, input: Any) -> Any:
            return [[0.0, 9.0, 9.0] for _ in input]

    return Legacy


FUNCTIONS: dict[Any, dict[str, Any]] = {}
for _module, _register in ((chromadb, register_in_chromadb), (huedb, register_in_huedb)):
    FUNCTIONS[_module] = {
        "cosine": _named(_module, _register, "compat-cosine", "cosine"),
        "l2": _named(_module, _register, "compat-l2", "l2"),
        "legacy": _legacy(_module),
    }


def _schema_with(module: Any, function: Any, space: str | None = None) -> Any:
    config = module.VectorIndexConfig(embedding_function=function, space=space)
    return module.Schema().create_index(config=config)


# -- 1. the EmbeddingFunction protocol and chromadb's type aliases ---------------------


RECIPE = """
from {m} import Documents, EmbeddingFunction, Embeddings

class MyEmbeddingFunction(EmbeddingFunction[Documents]):
    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return [[1.0, 2.0] for _ in input]
"""


def test_chromadb_names_import_from_huedb() -> None:
    """Every name of `chromadb.__all__` is in `huedb`, and the type aliases chromadb's
    guides import are importable from `huedb.api.types` too."""
    missing = [n for n in chromadb.__all__ if not hasattr(huedb, n)]
    assert missing == []
    from huedb.api.types import (  # noqa: F401
        Documents,
        Embeddable,
        EmbeddingFunction,
        Embeddings,
        Images,
        Space,
        SparseEmbeddingFunction,
        URIs,
    )


def test_documented_recipe_defaults_as_chromadb() -> None:
    """chromadb's custom-function recipe with `huedb` for `chromadb`: the class builds, and
    every default method answers as chromadb's, `__call__`'s output included (a list of
    float32 arrays)."""

    def run(module: Any) -> Any:
        scope: dict[str, Any] = {}
        exec(RECIPE.format(m=module.__name__), scope)
        ef = scope["MyEmbeddingFunction"]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return {
                "call": ef(["a", "b"]),
                "embed_query": ef.embed_query(["a"]),
                "embed_with_retries": ef.embed_with_retries(["a"]),
                "default_space": ef.default_space(),
                "supported_spaces": ef.supported_spaces(),
                "is_legacy": ef.is_legacy(),
                "name": ef.name() is NotImplemented,
                "get_config": ef.get_config() is NotImplemented,
                "build_from_config": ef.build_from_config({}) is NotImplemented,
                "validate_config": ef.validate_config({}),
                "validate_config_update": ef.validate_config_update({}, {}),
            }

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]


@pytest.mark.parametrize(
    "output",
    [
        [1, 2],
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        [np.array([1, 2], dtype=np.int64)],
        [],
        [[]],
        [np.array([])],
        [np.array(["a"])],
        [np.array([1.0]), [2.0]],
        [[True, False]],
        np.zeros((1, 1, 2)),
        "text",
    ],
    ids=repr,
)
def test_call_output_checked_as_chromadb(output: Any) -> None:
    """A subclass's `__call__` output is normalized and checked as chromadb's wrapper does
    (same values, dtypes, exception classes and messages)."""

    def run(module: Any) -> Any:
        class Fixed(module.EmbeddingFunction[module.Documents]):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                pass

            def __call__(self, input: Any) -> Any:
                return output

        return Fixed()(["x"])

    results = side_by_side(run)
    assert results["huedb"] == results["chromadb"]


def test_embed_with_retries_takes_tenacity_options() -> None:
    from tenacity import stop_after_attempt

    def run(module: Any) -> Any:
        class Flaky(module.EmbeddingFunction[module.Documents]):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                self.calls = 0

            def __call__(self, input: Any) -> Any:
                self.calls += 1
                if self.calls < 3:
                    raise RuntimeError("busy")
                return [[1.0] for _ in input]

        ef = Flaky()
        vectors = ef.embed_with_retries(["x"], stop=stop_after_attempt(3))
        return (
            vectors,
            ef.calls,
            outcome(lambda: Flaky().embed_with_retries(["x"], stop=stop_after_attempt(2)))[:2],
        )

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]


def test_sparse_embedding_function_protocol() -> None:
    """`SparseEmbeddingFunction[Documents]` subclasses: their output is checked as
    chromadb checks it, and `embed_query` defaults to `__call__`."""

    def run(module: Any) -> Any:
        class Sparse(module.SparseEmbeddingFunction[module.Documents]):  # type: ignore[misc, name-defined]
            def __init__(self, good: bool = True) -> None:
                self.good = good

            def __call__(self, input: Any) -> Any:
                if not self.good:
                    return [{"indices": [1], "values": [1.0]} for _ in input]
                return [module.SparseVector(indices=[len(t)], values=[1.0]) for t in input]

            @staticmethod
            def name() -> str:
                return "compat-sparse"

            def get_config(self) -> dict[str, Any]:
                return {"good": self.good}

            @staticmethod
            def build_from_config(config: dict[str, Any]) -> Any:
                return Sparse(config["good"])

        good = Sparse().embed_query(["abc"])[0]
        return (good.indices, good.values), outcome(lambda: Sparse(False)(["abc"]))

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]


def test_recipe_class_through_create_get_and_schema(clients: dict[Any, Any]) -> None:
    """A registered `EmbeddingFunction[Documents]` subclass, given to create_collection or
    through a Schema, embeds documents and queries, and a handle opened with
    `get_collection(name)` rebuilds it (with its configuration)."""

    def run(module: Any, via_schema: bool) -> Any:
        client, named = clients[module], FUNCTIONS[module]["l2"]
        name = f"recipe-{'schema' if via_schema else 'arg'}"
        if via_schema:
            client.create_collection(name, schema=_schema_with(module, named(2.0)))
        else:
            client.create_collection(name, embedding_function=named(2.0))
        reopened = client.get_collection(name)
        reopened.add(ids=["a", "b"], documents=["abcd", "z"])
        found = reopened.query(query_texts=["abc"], n_results=1, include=["distances"])
        function = reopened.configuration["embedding_function"]
        return {
            "function": (type(function).__name__, function.get_config()),
            "stored": reopened.get(include=["embeddings"])["embeddings"],
            "found": (found["ids"], found["distances"]),
            "recorded": reopened.configuration_json["embedding_function"],
        }

    for via_schema in (False, True):
        results = side_by_side(lambda m, s=via_schema: run(m, s))
        assert results["chromadb"][0] == "ok", results
        assert results["huedb"] == results["chromadb"], via_schema
        assert results["huedb"][1]["function"] == ["Named_compat-l2", {"scale": 2.0}]


# -- 2. a function given through a Schema ----------------------------------------------


def test_schema_function_recorded_as_known_with_its_default_space(
    clients: dict[Any, Any],
) -> None:
    """Through `VectorIndexConfig(embedding_function=...)` a named function is recorded as
    known in the schema and the configuration, its default space applies (cosine here),
    and reopening rebuilds it (huedb recorded it as legacy, in l2, and reopened without
    it)."""

    def run(module: Any) -> Any:
        client = clients[module]
        client.create_collection(
            "by-schema", schema=_schema_with(module, FUNCTIONS[module]["cosine"]())
        )
        reopened = client.get_collection("by-schema")
        reopened.add(ids=["a"], documents=["abcd"])
        vector_index = reopened.schema.keys["#embedding"].float_list.vector_index.config
        return {
            "configuration": reopened.configuration_json["embedding_function"],
            "space": reopened.configuration_json["hnsw"]["space"],
            "schema space": vector_index.space,
            "schema function": type(vector_index.embedding_function).__name__,
            "rebuilt": type(reopened.configuration["embedding_function"]).__name__,
            "stored": reopened.get(include=["embeddings"])["embeddings"],
        }

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]
    assert results["huedb"][1]["space"] == "cosine"


def test_schema_function_conflicting_on_get_refused(clients: dict[Any, Any]) -> None:
    def run(module: Any) -> Any:
        client, functions = clients[module], FUNCTIONS[module]
        client.create_collection("conflict", schema=_schema_with(module, functions["cosine"]()))
        return client.get_collection("conflict", embedding_function=functions["l2"]())

    results = side_by_side(run)
    assert results["chromadb"][:2] == ["err", "ValueError"], results
    assert results["huedb"] == results["chromadb"]
    assert "conflict: new: compat-l2 vs persisted: compat-cosine" in results["huedb"][2]


def test_schema_function_space_warning_and_refused_config() -> None:
    """An explicit space the function does not support warns (UserWarning, as chromadb);
    a function whose `validate_config` refuses its configuration is recorded as legacy."""

    def run(module: Any) -> Any:
        named = FUNCTIONS[module]["l2"]

        class Picky(named):  # type: ignore[misc, valid-type]
            def supported_spaces(self) -> list[str]:
                return ["cosine"]

            @staticmethod
            def validate_config(config: dict[str, Any]) -> None:
                if config["scale"] < 0:
                    raise ValueError("negative scale")

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            json = _schema_with(module, Picky(), space="ip").serialize_to_json()
        refused = _schema_with(module, Picky(-1.0)).serialize_to_json()
        vector = json["keys"]["#embedding"]["float_list"]["vector_index"]["config"]
        refused_vector = refused["keys"]["#embedding"]["float_list"]["vector_index"]["config"]
        messages = [str(w.message) for w in caught if w.category is UserWarning]
        return vector, messages, refused_vector

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]
    assert results["huedb"][1][2]["embedding_function"] == {"type": "legacy"}


class _DuckNamed:
    """A named function that does not subclass `EmbeddingFunction` (no `is_legacy`,
    `default_space` or `supported_spaces`)."""

    def __call__(self, input: list[str]) -> list[list[float]]:
        return [_length_vector(t) for t in input]

    @staticmethod
    def name() -> str:
        return "compat-duck"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> _DuckNamed:
        return _DuckNamed()


register_in_huedb(_DuckNamed)


def test_schema_records_a_duck_typed_function_as_create_collection_does(tmp_path: Path) -> None:
    """huedb identifies a function the same way through a Schema as through
    `create_collection(embedding_function=...)`: a named class without chromadb's other
    methods is known in both (chromadb records such a class as legacy in both; huedb
    accepts any Chroma-style callable, docs/chroma-schema.md), in the l2 space."""
    client = huedb.PersistentClient(path=tmp_path)
    try:
        client.create_collection("by-arg", embedding_function=_DuckNamed())
        client.create_collection("by-schema", schema=_schema_with(huedb, _DuckNamed()))
        recorded = {
            n: client.get_collection(n).configuration_json["embedding_function"]
            for n in ("by-arg", "by-schema")
        }
        known = {"type": "known", "name": "compat-duck", "config": {}}
        assert recorded == {"by-arg": known, "by-schema": known}
        reopened = client.get_collection("by-schema")
        assert reopened.configuration_json["hnsw"]["space"] == "l2"
        assert isinstance(reopened.configuration["embedding_function"], _DuckNamed)
        reopened.add(ids=["a"], documents=["abcd"])
        assert reopened.get(include=["embeddings"])["embeddings"].tolist() == [[4.0, 1.0, 0.0]]
    finally:
        client.close()


# -- 3. a legacy function on a collection that recorded a named one ---------------------


@pytest.mark.parametrize("created_with", ["named", "default", "legacy", "none"])
@pytest.mark.parametrize("opened_by", ["get_collection", "get_or_create_collection"])
def test_legacy_function_on_recorded_named_one(
    clients: dict[Any, Any], default_calls: list[Any], created_with: str, opened_by: str
) -> None:
    """An unnamed (legacy) function is refused on a collection that recorded a named one
    (the default one included), with chromadb's ValueError and message; accepted on one
    that recorded none or a legacy one."""

    def run(module: Any) -> Any:
        client, functions = clients[module], FUNCTIONS[module]
        create = {
            "named": {"embedding_function": functions["l2"]()},
            "default": {},
            "legacy": {"embedding_function": functions["legacy"]()},
            "none": {"embedding_function": None},
        }[created_with]
        client.create_collection("recorded", **create)
        col = getattr(client, opened_by)("recorded", embedding_function=functions["legacy"]())
        col.add(ids=["a"], documents=["doc"])
        return col.get(include=["embeddings"])["embeddings"]

    results = side_by_side(run)
    assert results["huedb"] == results["chromadb"]
    refused = created_with in ("named", "default")
    assert (results["huedb"][0] == "err") is refused, results
    if refused:
        persisted = "compat-l2" if created_with == "named" else "default"
        assert results["huedb"][1:] == [
            "ValueError",
            "An embedding function already exists in the collection configuration, and a "
            "new one is provided. If this is intentional, please embed documents separately. "
            f"Embedding function conflict: new: NotImplemented vs persisted: {persisted}",
        ]


# -- 4. embedding_function=None, and the default function passed explicitly -------------


CREATED = {
    "none": {"embedding_function": None},
    "none+metadata space": {"embedding_function": None, "metadata": {"hnsw:space": "ip"}},
    "none+configuration": {"embedding_function": None, "configuration": {"hnsw": {"space": "l2"}}},
    "legacy": "legacy",
    "default": {},
    "schema without function": "schema-none",
}


@pytest.mark.parametrize("created", list(CREATED))
@pytest.mark.parametrize("reopened", [False, True])
@pytest.mark.parametrize("call", ["add", "upsert", "update", "query"])
def test_none_handle_falls_back_as_chromadb(
    clients: dict[Any, Any],
    default_calls: list[Any],
    created: str,
    reopened: bool,
    call: str,
) -> None:
    """A handle with `embedding_function=None` (from create_collection, or get_collection
    with None) embeds documents and query texts with the default function when the
    collection's schema names no function, as chromadb's does (a collection created with
    `embedding_function=None` and no configuration); it refuses them when the collection
    recorded none (a legacy function, or None with a configuration)."""

    def run(module: Any) -> Any:
        client = clients[module]
        how = CREATED[created]
        if how == "legacy":
            how = {"embedding_function": FUNCTIONS[module]["legacy"]()}
        elif how == "schema-none":
            how = {"embedding_function": None, "schema": _schema_with(module, None)}
        col = client.create_collection("fallback", **how)
        col.add(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["first"])
        if reopened:
            col = client.get_collection("fallback", embedding_function=None)
        if call == "query":
            found = col.query(query_texts=["x"], n_results=1, include=["distances"])
            return found["ids"], found["distances"]
        getattr(col, call)(ids=["a"] if call == "update" else ["b"], documents=["second"])
        return col.get(include=["embeddings", "documents"])

    results = side_by_side(run)
    assert results["huedb"] == results["chromadb"]
    own = created == "legacy" and not reopened  # the creating handle keeps its function
    falls_back = created in ("none", "none+metadata space", "default")
    assert (results["huedb"][0] == "ok") is (falls_back or own), results
    if not (falls_back or own):
        assert results["huedb"][2].startswith("You must provide an embedding function")
    used = sorted({label for label, _ in default_calls})
    assert used == (["chromadb", "huedb"] if falls_back else [])


def test_explicit_default_function_uses_the_recorded_one(
    clients: dict[Any, Any], default_calls: list[Any]
) -> None:
    """A handle given the DefaultEmbeddingFunction explicitly on a collection that recorded
    another function embeds with the recorded one, as chromadb treats its default function
    (huedb embedded with the default model: two models' vectors in one collection)."""

    def run(module: Any) -> Any:
        client = clients[module]
        defaults = importlib.import_module(module.__name__ + ".utils.embedding_functions")
        client.create_collection("recorded-l2", embedding_function=FUNCTIONS[module]["l2"](3.0))
        col = client.get_collection(
            "recorded-l2", embedding_function=defaults.DefaultEmbeddingFunction()
        )
        col.add(ids=["a"], documents=["abcd"])
        return col.get(include=["embeddings"])["embeddings"]

    results = side_by_side(run)
    assert results["chromadb"][0] == "ok", results
    assert results["huedb"] == results["chromadb"]
    assert results["huedb"][1][2] == [[12.0, 3.0, 0.0]]
    assert default_calls == []


class _PreProtocolFunction:
    """A function written before chromadb 0.4.16: `__call__(self, texts)`."""

    def __call__(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 2.0, 3.0] for _ in texts]


@pytest.mark.parametrize(
    "function",
    ["not-a-function", 5, _PreProtocolFunction(), lambda input: [[1.0, 2.0, 3.0]]],
    ids=["str", "int", "pre-protocol", "lambda"],
)
@pytest.mark.parametrize("call", ["create_collection", "get_collection", "get_or_create"])
def test_function_with_the_wrong_signature_refused(
    clients: dict[Any, Any], function: Any, call: str
) -> None:
    """chromadb's `validate_embedding_function`: a ValueError naming the signature it
    expected, on every call that takes a function. huedb refuses before creating anything
    (chromadb creates the collection, then raises). On get, chromadb calls the function's
    `name()` first, so an object without one fails there (AttributeError); huedb gives the
    signature's ValueError on every call."""
    for client in clients.values():
        client.create_collection("existing")

    def run(module: Any) -> Any:
        client = clients[module]
        if call == "create_collection":
            return client.create_collection("new-one", embedding_function=function).name
        if call == "get_collection":
            return client.get_collection("existing", embedding_function=function).name
        return client.get_or_create_collection("existing", embedding_function=function).name

    results = side_by_side(run)
    assert results["chromadb"][0] == "err"
    assert results["huedb"][:2] == ["err", "ValueError"]
    first_lines = {name: result[2].splitlines()[0] for name, result in results.items()}
    assert "to have the following signature: odict_keys(['self', 'input'])" in first_lines["huedb"]
    if call == "create_collection" or results["chromadb"][1] == "ValueError":
        assert first_lines["huedb"] == first_lines["chromadb"]
    else:
        assert results["chromadb"][1] == "AttributeError"
    assert [c.name for c in clients[huedb].list_collections()] == ["existing"]
