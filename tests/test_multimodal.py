"""Chroma's multimodal pattern: a differential test against in-process chromadb.

A collection with an image embedding function and a data loader gets records by `uris`
(the loader reads them, the function embeds what it read) and by `images`, is queried by
`query_images` and `query_uris`, and returns loaded data with `include=["data"]`. The same
steps, errors included, run on chromadb's own `EphemeralClient`, on huedb's, and on
chromadb's client over the huedb bridge; every outcome must be the same (class, message,
and the records stored). No model: the embedding function and the loaders are tiny
deterministic classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.chroma_bridge import chroma_client


class PixelEmbedder(EmbeddingFunction[Embeddable]):
    """Images: [mean pixel, 1]; documents: [length, 1]."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Embeddable) -> Embeddings:
        return [
            np.array(
                [float(len(x)) if isinstance(x, str) else float(np.mean(x)), 1.0],
                dtype=np.float32,
            )
            for x in input
        ]

    @staticmethod
    def name() -> str:
        return "pixel-test"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PixelEmbedder:
        return PixelEmbedder()


class ImageLoader:
    """As chromadb's `ImageLoader`: uri "img-N" -> a 2x2 RGB image of value N."""

    def __call__(self, uris: list[str | None]) -> list[np.ndarray]:
        return [np.full((2, 2, 3), int(str(u).split("-")[1]), dtype=np.uint8) for u in uris]


class TextLoader:
    """A loader whose data is text, to read data back unchanged."""

    def __call__(self, uris: list[str | None]) -> list[str]:
        return [f"loaded:{u}" for u in uris]


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


Step = Callable[[Any], Any]

WITH_LOADER: list[tuple[str, Step]] = [
    ("add uris", lambda c: c.add(ids=["a", "b"], uris=["img-10", "img-200"])),
    ("add one uri", lambda c: c.add(ids="c", uris="img-90")),
    ("add images", lambda c: c.add(ids=["d"], images=[image(50)], metadatas=[{"k": 1}])),
    ("add one image", lambda c: c.add(ids="e", images=image(120))),
    ("add images and uris", lambda c: c.add(ids=["f"], images=[image(1)], uris=["img-1"])),
    ("add documents and uris", lambda c: c.add(ids=["f"], documents=["x"], uris=["img-1"])),
    ("add a 1-D image", lambda c: c.add(ids=["f"], images=[np.array([1, 2])])),
    ("add a text image", lambda c: c.add(ids=["f"], images=["x"])),
    ("add no images", lambda c: c.add(ids=["f"], images=[])),
    ("add no uris", lambda c: c.add(ids=["f"], uris=[])),
    ("add unequal images", lambda c: c.add(ids=["f", "g"], images=[image(1)])),
    ("add nothing to embed", lambda c: c.add(ids=["f"])),
    ("add images, None document", lambda c: c.add(ids=["f"], images=[image(1)], documents=[None])),
    (
        "add embeddings and uris",
        lambda c: c.add(ids=["h"], embeddings=[[3.0, 1.0]], uris=["img-3"]),
    ),
    ("upsert uris", lambda c: c.upsert(ids=["a"], uris=["img-11"])),
    ("upsert images", lambda c: c.upsert(ids=["a", "i"], images=[image(12), image(13)])),
    ("update uris only", lambda c: c.update(ids=["b"], uris=["img-7"])),
    ("update images", lambda c: c.update(ids=["c"], images=[image(91)], uris=["img-91"])),
    (
        "update documents and images",
        lambda c: c.update(ids=["c"], images=[image(1)], documents=["x"]),
    ),
    ("query images", lambda c: c.query(query_images=[image(55), image(0)], n_results=2)),
    ("query one image", lambda c: c.query(query_images=image(118), n_results=1)),
    (
        "query uris, data",
        lambda c: c.query(query_uris=["img-45"], n_results=3, include=["data", "distances"]),
    ),
    ("query one uri", lambda c: c.query(query_uris="img-8", n_results=1, include=["uris"])),
    ("query texts and images", lambda c: c.query(query_texts=["ab"], query_images=[image(1)])),
    (
        "query embeddings and images",
        lambda c: c.query(query_embeddings=[[1.0, 1.0]], query_images=[image(1)], n_results=1),
    ),
    (
        "query unequal",
        lambda c: c.query(query_embeddings=[[1.0, 1.0]], query_images=[image(1), image(2)]),
    ),
    ("query a 1-D image", lambda c: c.query(query_images=[np.array([1, 2])])),
    ("query no images", lambda c: c.query(query_images=[])),
    ("query no uris", lambda c: c.query(query_uris=[])),
    ("get data", lambda c: c.get(ids=["a", "b", "h"], include=["data"])),
    ("get data and uris", lambda c: c.get(ids=["d"], include=["data", "uris", "documents"])),
    ("get data, nothing found", lambda c: c.get(ids=["zz"], include=["data"])),
    ("get everything", lambda c: c.get(include=["embeddings", "uris", "metadatas"])),
]

WITHOUT_LOADER: list[tuple[str, Step]] = [
    ("add uris", lambda c: c.add(ids=["a"], uris=["img-10"])),
    ("add images", lambda c: c.add(ids=["a"], images=[image(10)], uris=None)),
    ("add embeddings and uris", lambda c: c.add(ids=["b"], embeddings=[[3.0, 1.0]], uris=["u"])),
    ("query uris", lambda c: c.query(query_uris=["img-45"], n_results=1)),
    ("query images, data", lambda c: c.query(query_images=[image(4)], include=["data"])),
    ("get data", lambda c: c.get(include=["data"])),
    ("get everything", lambda c: c.get(include=["embeddings", "uris"])),
]

STORED_URIS: list[tuple[str, Step]] = [
    (
        "add embeddings and uris",
        lambda c: c.add(
            ids=["a", "b", "c"],
            embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            uris=["u-a", "u-b", None],
            metadatas=[{"k": 1}, None, {"k": 2}],
            documents=["doc a", None, "doc c"],
        ),
    ),
    ("get data", lambda c: c.get(include=["data"])),
    ("get data, documents", lambda c: c.get(include=["data", "documents"])),
    ("get data, where", lambda c: c.get(where={"k": 2}, include=["data", "embeddings"])),
    ("get uris", lambda c: c.get(include=["uris"])),
    ("query data", lambda c: c.query(query_embeddings=[[1.0, 0.0]], n_results=2, include=["data"])),
    (
        "query data, two queries",
        lambda c: c.query(
            query_embeddings=[[1.0, 0.0], [0.0, 1.0]],
            n_results=3,
            include=["data", "uris", "distances", "documents"],
        ),
    ),
    (
        "query data, nothing found",
        lambda c: c.query(query_embeddings=[[1.0, 0.0]], where={"k": 9}, include=["data"]),
    ),
]

SCENARIOS: dict[str, tuple[dict[str, Any], list[tuple[str, Step]]]] = {
    "images and a loader": (
        {"embedding_function": PixelEmbedder(), "data_loader": ImageLoader()},
        WITH_LOADER,
    ),
    "images, no loader": ({"embedding_function": PixelEmbedder()}, WITHOUT_LOADER),
    "stored uris": ({"embedding_function": None, "data_loader": TextLoader()}, STORED_URIS),
}

# Chroma names the fields of this message from a set, in the process's hash order.
ONE_OF = re.compile(r"Exactly one of (.+) must be provided")


def plain(value: Any) -> Any:
    """A result with arrays as lists and numbers as floats, comparable with `==`."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def outcome(step: Step, collection: Any) -> Any:
    try:
        return plain(step(collection))
    except Exception as exc:  # every outcome is compared, errors too
        message = ONE_OF.sub(
            lambda m: (
                f"Exactly one of {', '.join(sorted(m.group(1).split(', ')))} must be provided"
            ),
            str(exc),
        )
        return f"{type(exc).__name__}: {message}"


def run(client: Any, scenario: str) -> list[tuple[str, Any, Any]]:
    """Each step's outcome and the collection's records after it."""
    kwargs, steps = SCENARIOS[scenario]
    name = "mm-" + scenario.replace(" ", "-").replace(",", "")
    collection = client.create_collection(name, **kwargs)
    results = []
    for label, step in steps:
        got = outcome(step, collection)
        stored = plain(collection.get(include=["embeddings", "uris", "documents"]))
        results.append((label, got, stored))
    client.delete_collection(name)
    return results


@pytest.fixture
def chroma() -> Iterator[Any]:
    """chromadb's in-memory client; the cache cleared first also drops any bridge client of
    an earlier test (its huedb engine is closed after each test)."""
    SharedSystemClient.clear_system_cache()
    client = chromadb.EphemeralClient(
        settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    )
    client.reset()
    yield client
    client.reset()
    SharedSystemClient.clear_system_cache()


def without_data_metadatas(result: Any) -> Any:
    """A result without the metadatas chromadb's engine reads for "data" (see below)."""
    if isinstance(result, dict) and "data" in result.get("included", ()):
        return {k: v for k, v in result.items() if k != "metadatas"}
    return result


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("flavour", ["huedb", "bridge"])
def test_multimodal_steps_match_chromadb(chroma: Any, flavour: str, scenario: str) -> None:
    """Every step gives chromadb's result or error, and leaves the same records."""
    other = huedb.EphemeralClient() if flavour == "huedb" else chroma_client()
    expected = run(chroma, scenario)
    got = run(other, scenario)
    assert [label for label, *_ in got] == [label for label, *_ in expected]
    for (label, want, want_stored), (_, have, have_stored) in zip(expected, got, strict=True):
        if flavour == "bridge":  # known gap: test_bridge_data_reads_metadatas
            want, have = without_data_metadatas(want), without_data_metadatas(have)
        assert have == want, label
        assert have_stored == want_stored, label


def test_bridge_data_reads_metadatas(chroma: Any) -> None:
    """chromadb's engine answers metadatas when "data" is included (Rust `IncludeList`:
    "data" is `Include::Metadata`); so does huedb's, for every client."""
    expected = run(chroma, "stored uris")
    got = run(chroma_client(), "stored uris")
    assert got == expected


def test_data_adds_uris_without_changing_the_callers_list() -> None:
    """`include=["data"]` reports uris as chromadb does; the caller's list stays as given
    (chromadb appends "uris" to it)."""
    collection = huedb.EphemeralClient().create_collection(
        "mm-include", embedding_function=None, data_loader=TextLoader()
    )
    collection.add(ids=["a"], embeddings=[[1.0, 0.0]], uris=["u-a"])
    include = ["data"]
    result = collection.get(include=include)
    assert include == ["data"]
    assert result["included"] == ["data", "uris"]
    assert result["data"] == ["loaded:u-a"] and result["uris"] == ["u-a"]
