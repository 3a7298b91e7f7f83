"""Stateful differential test: huedb against the pure-Python reference model.

A hypothesis state machine drives random sequences of collection and record operations,
valid and invalid, against a huedb client and `reference_model.ModelClient`, and asserts
that results, errors (by class name) and orderings agree. It runs on an ephemeral client
and on a persistent client with close-and-reopen steps, on the SQLite store, and on a
persistent client on the PostgreSQL store (`tests/stores.py`; an ephemeral client is always
SQLite in memory).

`HUEDB_HYPOTHESIS_EXAMPLES` raises the number of examples per mode (default 150); the
PostgreSQL mode runs a third of them (default 50: each step is a round trip to the server
and every example starts with a reset, so it costs about as much as the two SQLite modes).
The machine is backend-agnostic (see `build_machine`), so the same rules can be pointed
at real chromadb to validate the model.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests import stores
from tests.knobs import knob
from tests.reference_model import ModelClient, ModelCollection
from tests.stores import StoreTarget

# --------------------------------------------------------------------------- vocabularies

VALID_NAMES = ["coll-a", "coll_b", "c.3", "top+coll"]
INVALID_NAMES = ["ab", "-abc", "abc-", "a..b", "10.0.0.1", "bad name", "x", "a+b", "t1+t2+coll"]
IDS = ["a", "b", "c", "d", "e", "f"]
DIMS = [2, 3, 4]
COMPONENTS = [-2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0]
DOCS = ["apple pie", "Apple", "banana split", "", "cherry apple", "pie"]
DOC_WORDS = ["apple", "Apple", "pie", "an", "split"]
REGEXES = ["^apple", "pie$", "(?i)apple", "an+a", "^$", "e|z", "ch.rry"]
BAD_REGEXES = ["(", "(?=a)", "a(?!b)", "(a)\\1"]
STR_VALUES = ["x", "y", "z"]
INT_VALUES = [0, 1, 2]
FLOAT_VALUES = [1.0, 2.5, -0.5]
META_KEYS = ["s", "n", "b", "l", "m"]
SPACES = ["l2", "ip", "cosine"]

scalar_values = st.one_of(
    st.sampled_from(STR_VALUES),
    st.sampled_from(INT_VALUES),
    st.sampled_from(FLOAT_VALUES),
    st.booleans(),
)
list_values = st.one_of(
    st.lists(st.sampled_from(STR_VALUES), min_size=1, max_size=3),
    st.lists(st.sampled_from(INT_VALUES), min_size=1, max_size=3),
)
metadata_values = st.one_of(scalar_values, scalar_values, list_values)
valid_metadata = st.dictionaries(
    st.sampled_from(META_KEYS), metadata_values, min_size=1, max_size=3
)
invalid_metadata = st.sampled_from(
    [{}, {"$bad": 1}, {"": "x"}, {"#k": 1}, {"s": []}, {"l": [1, "x"]}, {"s": {"x": 1}}]
)
update_metadata = st.dictionaries(
    st.sampled_from(META_KEYS), st.one_of(metadata_values, st.none()), min_size=1, max_size=3
)

collection_metadata = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["k", "j"]), scalar_values, min_size=1, max_size=2),
)
invalid_collection_metadata = st.sampled_from([{}, {"hnsw:space": "bogus"}, {"k": None}])

where_leaf = st.one_of(
    st.builds(lambda k, v: {k: v}, st.sampled_from(META_KEYS), scalar_values),
    st.builds(
        lambda k, op, v: {k: {op: v}},
        st.sampled_from(META_KEYS),
        st.sampled_from(["$eq", "$ne", "$contains", "$not_contains"]),
        scalar_values,
    ),
    st.builds(
        lambda k, op, v: {k: {op: v}},
        st.sampled_from(META_KEYS),
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
        st.sampled_from(INT_VALUES + FLOAT_VALUES),
    ),
    st.builds(
        lambda k, op, v: {k: {op: v}},
        st.sampled_from(META_KEYS),
        st.sampled_from(["$in", "$nin"]),
        st.one_of(
            st.lists(st.sampled_from(STR_VALUES), min_size=1, max_size=2),
            st.lists(st.sampled_from(INT_VALUES), min_size=1, max_size=2),
            st.lists(st.sampled_from(FLOAT_VALUES), min_size=1, max_size=2),
            st.lists(st.booleans(), min_size=1, max_size=2),
        ),
    ),
    st.builds(
        lambda op, w: {"#document": {op: w}},
        st.sampled_from(["$contains", "$not_contains"]),
        st.sampled_from(DOC_WORDS),
    ),
)
valid_where = st.one_of(
    where_leaf,
    st.builds(
        lambda op, ws: {op: ws},
        st.sampled_from(["$and", "$or"]),
        st.lists(where_leaf, min_size=2, max_size=3),
    ),
)
invalid_where = st.sampled_from(
    [
        {},
        {"s": "x", "n": 1},
        {"s": None},
        {"n": {"$gt": "x"}},
        {"n": {"$gt": True}},
        {"n": {"$ne": [1]}},
        {"n": {"$in": []}},
        {"n": {"$in": [1, "x"]}},
        {"n": {"$bogus": 1}},
        {"n": {"$eq": 1, "$ne": 2}},
        {"$and": [{"n": 1}]},
        {"$or": []},
        {"s": ["x"]},
        {"$contains": "x"},
    ]
)
doc_leaf = st.one_of(
    st.builds(
        lambda op, w: {op: w},
        st.sampled_from(["$contains", "$not_contains"]),
        st.sampled_from(DOC_WORDS),
    ),
    st.builds(
        lambda op, r: {op: r}, st.sampled_from(["$regex", "$not_regex"]), st.sampled_from(REGEXES)
    ),
)
valid_where_document = st.one_of(
    doc_leaf,
    st.builds(
        lambda op, ws: {op: ws},
        st.sampled_from(["$and", "$or"]),
        st.lists(doc_leaf, min_size=2, max_size=2),
    ),
)
invalid_where_document = st.one_of(
    st.sampled_from([{}, {"$contains": ""}, {"$bogus": "x"}, {"$contains": 1}, {"$and": []}]),
    st.builds(lambda r: {"$regex": r}, st.sampled_from(BAD_REGEXES)),
)


def maybe_invalid(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> Any:
    """None most of the time, a valid value often, an invalid one sometimes."""
    return st.one_of(st.none(), st.none(), valid, valid, invalid)


get_include = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["documents", "embeddings", "metadatas"]), max_size=3, unique=True),
    st.sampled_from([["distances"], ["bogus"]]),
)
query_include = st.one_of(
    st.none(),
    st.lists(
        st.sampled_from(["documents", "embeddings", "metadatas", "distances"]),
        max_size=4,
        unique=True,
    ),
    st.just(["bogus"]),
)

# --------------------------------------------------------------------------- comparison

Outcome = tuple[str, Any]  # ("ok", value) or ("err", exception)


def run(fn: Callable[[], Any]) -> Outcome:
    """Call fn and capture its result or exception."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - any exception class is compared
        return ("err", exc)


def error_matches(exc: BaseException, expected_name: str) -> bool:
    """True if exc's class, or one of its bases, has the expected name.

    A backend may raise a subclass (e.g. a specific InternalError) as long as
    `except <ChromaName>` still catches it.
    """
    return any(cls.__name__ == expected_name for cls in type(exc).__mro__)


def same_outcome(actual: Outcome, expected: Outcome, what: str) -> bool:
    """Assert both succeeded or both failed with the same error class; True if both ok."""
    if actual[0] == "err" or expected[0] == "err":
        a = type(actual[1]).__name__ if actual[0] == "err" else "success"
        e = type(expected[1]).__name__ if expected[0] == "err" else "success"
        ok = a == e or (actual[0] == "err" and expected[0] == "err" and error_matches(actual[1], e))
        assert ok, f"{what}: backend gave {a} ({actual[1]!r}), model gave {e} ({expected[1]!r})"
        return False
    return True


def typed(value: Any) -> Any:
    """Make a metadata value comparable with its type (bool/int/float/str distinct)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    """Distances equal within float32 noise."""
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def assert_embeddings(actual: Any, expected: Any, what: str) -> None:
    """Embeddings equal within float32 tolerance (shapes must agree)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: embeddings shape {a.shape} != {e.shape}"
    assert np.allclose(a, e, rtol=1e-5, atol=1e-6), f"{what}: embeddings {a} != {e}"


def assert_get_equal(actual: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    """Compare two GetResults field by field (ids ordered)."""
    assert list(actual["ids"]) == expected["ids"], (
        f"{what}: ids {actual['ids']} != {expected['ids']}"
    )
    included = expected["included"]
    assert list(actual["included"]) == included, f"{what}: included"
    for key in ("documents", "metadatas", "embeddings"):
        if key not in included:
            assert actual[key] is None, f"{what}: {key} not included but returned"
        elif key == "embeddings":
            assert_embeddings(actual[key], expected[key], what)
        else:
            assert typed(list(actual[key])) == typed(expected[key]), (
                f"{what}: {key} {actual[key]} != {expected[key]}"
            )


def assert_query_equal(
    actual: dict[str, Any],
    expected: dict[str, Any],
    n_results: int,
    model: ModelCollection,
    what: str,
) -> None:
    """Compare QueryResults; ids at (nearly) equal distances may be permuted."""
    included = expected["included"]
    assert list(actual["included"]) == included, f"{what}: included"
    assert len(actual["ids"]) == len(expected["ids"]), f"{what}: number of queries"
    for key in ("documents", "metadatas", "embeddings", "distances"):
        if key not in included:
            assert actual[key] is None, f"{what}: {key} not included but returned"
    for qi, ranking in enumerate(expected["_ranking"]):
        ids = list(actual["ids"][qi])
        dist_of = dict(ranking)
        assert len(ids) == min(n_results, len(ranking)), (
            f"{what}: got {len(ids)} results, expected {min(n_results, len(ranking))}"
            f" (ranking {ranking})"
        )
        assert len(set(ids)) == len(ids), f"{what}: duplicate ids {ids}"
        for pos, rid in enumerate(ids):
            assert rid in dist_of, f"{what}: unexpected id {rid!r} (ranking {ranking})"
            assert close(dist_of[rid], ranking[pos][1]), (
                f"{what}: id {rid!r} at position {pos} has distance {dist_of[rid]},"
                f" expected {ranking[pos][1]} (got {ids}, ranking {ranking})"
            )
        if "distances" in included:
            dists = list(actual["distances"][qi])
            assert len(dists) == len(ids)
            for rid, d in zip(ids, dists, strict=True):
                assert close(d, dist_of[rid]), f"{what}: distance of {rid!r} {d} != {dist_of[rid]}"
        if not ids:
            for key in ("documents", "metadatas"):
                if key in included:
                    assert list(actual[key][qi]) == [], f"{what}: {key} not empty"
            continue
        ref = model.get(ids=ids, include=["documents", "metadatas", "embeddings"])
        by_id = {
            rid: (ref["documents"][n], ref["metadatas"][n], ref["embeddings"][n])
            for n, rid in enumerate(ref["ids"])
        }
        if "documents" in included:
            assert list(actual["documents"][qi]) == [by_id[r][0] for r in ids], f"{what}: documents"
        if "metadatas" in included:
            assert typed(list(actual["metadatas"][qi])) == typed([by_id[r][1] for r in ids]), (
                f"{what}: metadatas {actual['metadatas'][qi]}"
            )
        if "embeddings" in included:
            assert_embeddings(actual["embeddings"][qi], [by_id[r][2] for r in ids], what)


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """How to open clients of the system under test."""

    api: Any  # module exposing EphemeralClient, PersistentClient, Settings
    persistent: bool
    store_settings: dict[str, Any] = field(default_factory=dict)  # e.g. huedb_store

    def open(self, path: str | None) -> Any:
        """Open a client (persistent when path is given)."""
        s = self.api.Settings(allow_reset=True, anonymized_telemetry=False, **self.store_settings)
        if path is not None:
            return self.api.PersistentClient(path=path, settings=s)
        return self.api.EphemeralClient(settings=s)


def close_client(client: Any) -> None:
    """Close a client if it supports it."""
    closer = getattr(client, "close", None)
    if callable(closer):
        closer()


class Handle:
    """A pair of collection handles (backend, model) obtained together."""

    def __init__(self, real: Any, model: ModelCollection) -> None:
        self.real = real
        self.model = model


def build_machine(
    backend: Backend, query_ids_existing_only: bool = False, nonfinite_queries: bool = True
) -> type:
    """Build a RuleBasedStateMachine class comparing `backend` with the model.

    The two flags exist to point the machine at real chromadb, which raises InternalError
    for query ids that do not exist and returns NaN distances for NaN query vectors.
    """

    class StatefulCompare(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.path = tempfile.mkdtemp(prefix="huedb-stateful-") if backend.persistent else None
            self.client = backend.open(self.path)
            self.client.reset()
            self.model = ModelClient()
            self.handles: list[Handle] = []

        def teardown(self) -> None:
            close_client(self.client)
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)

        # -- helpers ----------------------------------------------------------------

        def pick(self, index: int) -> Handle:
            return self.handles[index % len(self.handles)]

        def remember(self, real: Any, model: ModelCollection, what: str) -> None:
            assert real.name == model.name, f"{what}: name {real.name} != {model.name}"
            assert typed(real.metadata) == typed(model.metadata), (
                f"{what}: metadata {real.metadata} != {model.metadata}"
            )
            self.handles.append(Handle(real, model))
            if len(self.handles) > 8:
                self.handles.pop(0)

        def vectors(
            self, data: st.DataObject, handle: Handle, n: int, bad: bool, nonfinite: bool = True
        ) -> list[Any]:
            dim = handle.model.dimension or data.draw(st.sampled_from(DIMS), label="dim")
            if bad and data.draw(st.booleans(), label="bad dim"):
                dim = data.draw(st.sampled_from([d for d in DIMS if d != dim]), label="wrong dim")
            vec = st.lists(st.sampled_from(COMPONENTS), min_size=dim, max_size=dim).filter(
                lambda v: any(x != 0 for x in v)
            )
            rows = data.draw(st.lists(vec, min_size=n, max_size=n), label="embeddings")
            if bad and nonfinite and rows and data.draw(st.booleans(), label="nan"):
                rows[0] = list(rows[0])
                rows[0][0] = data.draw(st.sampled_from([math.nan, math.inf]), label="nonfinite")
            return rows

        def draw_ids(self, data: st.DataObject, bad: bool) -> list[str]:
            pool = IDS + ([""] if bad else [])
            ids = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4), label="ids")
            if not bad:
                ids = list(dict.fromkeys(ids))
            elif data.draw(st.integers(0, 9), label="empty ids") == 0:
                ids = []
            return ids

        # -- collection rules ------------------------------------------------------

        @rule(
            name=st.one_of(st.sampled_from(VALID_NAMES), st.sampled_from(INVALID_NAMES)),
            metadata=st.one_of(
                collection_metadata, collection_metadata, invalid_collection_metadata
            ),
            space=st.sampled_from([None, *SPACES]),
            space_in_metadata=st.booleans(),
            get_or_create=st.booleans(),
        )
        def create_collection(
            self,
            name: str,
            metadata: dict[str, Any] | None,
            space: str | None,
            space_in_metadata: bool,
            get_or_create: bool,
        ) -> None:
            configuration = None
            if space is not None:
                if space_in_metadata:
                    metadata = {**(metadata or {}), "hnsw:space": space}
                else:
                    configuration = {"hnsw": {"space": space}}
            if get_or_create:
                real = run(
                    lambda: self.client.get_or_create_collection(
                        name,
                        metadata=metadata,
                        configuration=configuration,
                        embedding_function=None,
                    )
                )
                model = run(
                    lambda: self.model.get_or_create_collection(name, metadata, configuration)
                )
            else:
                real = run(
                    lambda: self.client.create_collection(
                        name,
                        metadata=metadata,
                        configuration=configuration,
                        embedding_function=None,
                    )
                )
                model = run(lambda: self.model.create_collection(name, metadata, configuration))
            what = f"create_collection({name!r}, {metadata}, {configuration}, goc={get_or_create})"
            if same_outcome(real, model, what):
                self.remember(real[1], model[1], what)

        @rule(name=st.one_of(st.sampled_from(VALID_NAMES), st.sampled_from(INVALID_NAMES)))
        def get_collection(self, name: str) -> None:
            real = run(lambda: self.client.get_collection(name, embedding_function=None))
            model = run(lambda: self.model.get_collection(name))
            if same_outcome(real, model, f"get_collection({name!r})"):
                self.remember(real[1], model[1], f"get_collection({name!r})")

        @rule(name=st.one_of(st.sampled_from(VALID_NAMES), st.sampled_from(INVALID_NAMES)))
        def delete_collection(self, name: str) -> None:
            real = run(lambda: self.client.delete_collection(name))
            model = run(lambda: self.model.delete_collection(name))
            same_outcome(real, model, f"delete_collection({name!r})")

        @rule()
        def list_collections(self) -> None:
            names = sorted(c.name for c in self.client.list_collections())
            assert names == self.model.list_collection_names(), "list_collections"
            assert self.client.count_collections() == self.model.count_collections()

        @precondition(lambda self: self.handles)
        @rule(
            h=st.integers(0, 7),
            name=st.one_of(st.none(), st.sampled_from(VALID_NAMES), st.sampled_from(INVALID_NAMES)),
            metadata=st.one_of(
                st.none(),
                collection_metadata,
                st.sampled_from([{}, {"hnsw:space": "ip"}, {"k": None}]),
            ),
        )
        def modify(self, h: int, name: str | None, metadata: dict[str, Any] | None) -> None:
            handle = self.pick(h)
            what = f"modify({handle.model.name!r} -> name={name!r}, metadata={metadata})"
            real = run(lambda: handle.real.modify(name=name, metadata=metadata))
            model = run(lambda: handle.model.modify(name=name, metadata=metadata))
            same_outcome(real, model, what)

        @rule()
        def reset(self) -> None:
            assert self.client.reset() is True
            self.model.reset()

        @precondition(lambda self: backend.persistent)
        @rule()
        def reopen(self) -> None:
            """Close the persistent client and open a new one on the same directory."""
            close_client(self.client)
            self.client = backend.open(self.path)
            live = {h.model.name: h.model for h in self.handles if self.model_alive(h.model)}
            self.handles = []
            for name in self.model.list_collection_names():
                if name in live or len(self.handles) < 4:
                    real = self.client.get_collection(name, embedding_function=None)
                    self.remember(real, self.model.get_collection(name), f"reopen {name}")

        def model_alive(self, coll: ModelCollection) -> bool:
            return run(coll.count)[0] == "ok"

        # -- record rules ------------------------------------------------------------

        def write(self, op: str, data: st.DataObject, h: int) -> None:
            handle = self.pick(h)
            bad = data.draw(st.integers(0, 4), label="bad") == 0
            ids = self.draw_ids(data, bad)
            n = max(len(ids), 1)
            embeddings: list[Any] | None = self.vectors(data, handle, n, bad)
            if op == "update" and data.draw(st.booleans(), label="no embeddings"):
                embeddings = None
            meta_strategy = update_metadata if op != "add" else valid_metadata
            if bad:
                meta_strategy = st.one_of(meta_strategy, invalid_metadata, update_metadata)
            metadatas = data.draw(
                st.one_of(
                    st.none(),
                    st.lists(st.one_of(st.none(), meta_strategy), min_size=n, max_size=n),
                ),
                label="metadatas",
            )
            documents = None
            if embeddings is not None:
                documents = data.draw(
                    st.one_of(
                        st.none(),
                        st.lists(
                            st.one_of(st.none(), st.sampled_from(DOCS)), min_size=n, max_size=n
                        ),
                    ),
                    label="documents",
                )
            if bad and metadatas and data.draw(st.booleans(), label="short metadatas"):
                metadatas = metadatas[:-1] or None
            kwargs = {
                "ids": ids,
                "embeddings": embeddings,
                "metadatas": metadatas,
                "documents": documents,
            }
            what = f"{op}({handle.model.name!r}, {kwargs})"
            real = run(lambda: getattr(handle.real, op)(**kwargs))
            model = run(lambda: getattr(handle.model, op)(**kwargs))
            same_outcome(real, model, what)

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), h=st.integers(0, 7))
        def add(self, data: st.DataObject, h: int) -> None:
            self.write("add", data, h)

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), h=st.integers(0, 7))
        def upsert(self, data: st.DataObject, h: int) -> None:
            self.write("upsert", data, h)

        @precondition(lambda self: self.handles)
        @rule(data=st.data(), h=st.integers(0, 7))
        def update(self, data: st.DataObject, h: int) -> None:
            self.write("update", data, h)

        @precondition(lambda self: self.handles)
        @rule(
            data=st.data(),
            h=st.integers(0, 7),
            where=maybe_invalid(valid_where, invalid_where),
            where_document=maybe_invalid(valid_where_document, invalid_where_document),
        )
        def delete(self, data: st.DataObject, h: int, where: Any, where_document: Any) -> None:
            handle = self.pick(h)
            ids = None
            if data.draw(st.booleans(), label="by ids") or (
                where is None and where_document is None
            ):
                ids = data.draw(
                    st.one_of(st.none(), st.lists(st.sampled_from(IDS), max_size=4)), label="ids"
                )
            what = f"delete({handle.model.name!r}, ids={ids}, where={where}, wd={where_document})"
            real = run(
                lambda: handle.real.delete(ids=ids, where=where, where_document=where_document)
            )
            model = run(
                lambda: handle.model.delete(ids=ids, where=where, where_document=where_document)
            )
            if same_outcome(real, model, what):
                assert real[1] == model[1], f"{what}: {real[1]} != {model[1]}"

        @precondition(lambda self: self.handles)
        @rule(
            h=st.integers(0, 7),
            ids=st.one_of(st.none(), st.none(), st.lists(st.sampled_from(IDS), max_size=4)),
            where=maybe_invalid(valid_where, invalid_where),
            where_document=maybe_invalid(valid_where_document, invalid_where_document),
            limit=st.one_of(st.none(), st.none(), st.integers(-1, 4)),
            offset=st.one_of(st.none(), st.none(), st.integers(-1, 4)),
            include=get_include,
        )
        def get(
            self,
            h: int,
            ids: list[str] | None,
            where: Any,
            where_document: Any,
            limit: int | None,
            offset: int | None,
            include: list[str] | None,
        ) -> None:
            handle = self.pick(h)
            kwargs: dict[str, Any] = {
                "ids": ids,
                "where": where,
                "where_document": where_document,
                "limit": limit,
                "offset": offset,
            }
            if include is not None:
                kwargs["include"] = include
            what = f"get({handle.model.name!r}, {kwargs})"
            real = run(
                lambda: handle.real.get(
                    **{**kwargs, "include": list(include)} if include is not None else kwargs
                )
            )
            model = run(lambda: handle.model.get(**kwargs))
            if same_outcome(real, model, what):
                assert_get_equal(real[1], model[1], what)

        @precondition(lambda self: self.handles)
        @rule(
            data=st.data(),
            h=st.integers(0, 7),
            n_results=st.one_of(st.integers(1, 7), st.integers(-1, 0)),
            n_queries=st.integers(1, 2),
            where=maybe_invalid(valid_where, invalid_where),
            where_document=maybe_invalid(valid_where_document, invalid_where_document),
            include=query_include,
            by_ids=st.integers(0, 3),
        )
        def query(
            self,
            data: st.DataObject,
            h: int,
            n_results: int,
            n_queries: int,
            where: Any,
            where_document: Any,
            include: list[str] | None,
            by_ids: int,
        ) -> None:
            handle = self.pick(h)
            bad = data.draw(st.integers(0, 5), label="bad query") == 0
            queries = self.vectors(data, handle, n_queries, bad=bad, nonfinite=nonfinite_queries)
            ids = None
            if by_ids == 0:
                pool = IDS
                if query_ids_existing_only:
                    got = run(lambda: handle.model.get(include=[]))
                    pool = got[1]["ids"] if got[0] == "ok" else []
                if pool:
                    ids = data.draw(
                        st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)
                    )
            kwargs: dict[str, Any] = {
                "query_embeddings": queries,
                "ids": ids,
                "n_results": n_results,
                "where": where,
                "where_document": where_document,
            }
            what = f"query({handle.model.name!r}, {kwargs}, include={include})"
            real_kwargs = dict(kwargs)
            if include is not None:
                kwargs["include"] = include
                real_kwargs["include"] = list(include)
            real = run(lambda: handle.real.query(**real_kwargs))
            model = run(lambda: handle.model.query(**kwargs))
            if same_outcome(real, model, what):
                assert_query_equal(real[1], model[1], n_results, handle.model, what)

        @precondition(lambda self: self.handles)
        @rule(h=st.integers(0, 7), limit=st.integers(1, 7))
        def peek_and_count(self, h: int, limit: int) -> None:
            handle = self.pick(h)
            real = run(handle.real.count)
            model = run(handle.model.count)
            if same_outcome(real, model, f"count({handle.model.name!r})"):
                assert real[1] == model[1], f"count: {real[1]} != {model[1]}"
            real = run(lambda: handle.real.peek(limit=limit))
            model = run(lambda: handle.model.peek(limit=limit))
            if same_outcome(real, model, f"peek({handle.model.name!r}, {limit})"):
                assert_get_equal(real[1], model[1], "peek")

        @invariant()
        def collections_agree(self) -> None:
            assert self.client.count_collections() == self.model.count_collections()

    return StatefulCompare


# --------------------------------------------------------------------------- tests

store = stores.store  # the fixture: each store in turn
EXAMPLES = int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))
PG_EXAMPLES = max(1, EXAMPLES // 3)


def stateful_settings(examples: int) -> settings:
    """The state machine's settings with `examples` examples."""
    return settings(
        max_examples=examples,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize(
    ("mode", "store"),
    [("ephemeral", "sqlite"), ("persistent", "sqlite"), ("persistent", "postgresql")],
    indirect=["store"],
)
def test_stateful_against_model(mode: str, store: StoreTarget) -> None:
    """Random operation sequences give the same results and errors on huedb and the model."""
    huedb = pytest.importorskip("huedb")
    machine = build_machine(Backend(huedb, mode == "persistent", store.settings))
    chosen = stateful_settings(PG_EXAMPLES if store.is_postgres else EXAMPLES)
    machine.TestCase.settings = chosen
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=chosen)
