"""`make run` until the server lands: store and query a few documents in a data directory."""

from __future__ import annotations

import argparse
import sys

import numpy as np

import huedb

DOCS = {
    "doc-apple": ("Apples are red or green fruit.", {"topic": "fruit"}),
    "doc-banana": ("Bananas are long yellow fruit.", {"topic": "fruit"}),
    "doc-car": ("A car has four wheels and an engine.", {"topic": "vehicle"}),
    "doc-bike": ("A bicycle has two wheels and pedals.", {"topic": "vehicle"}),
}


def toy_embedding(text: str, dim: int = 32) -> np.ndarray:
    """A deterministic bag-of-letters vector, so the quick start needs no model download."""
    vec = np.zeros(dim, dtype=np.float32)
    for word in text.lower().split():
        vec[hash_word(word) % dim] += 1.0
    return vec / max(float(np.linalg.norm(vec)), 1e-9)


def hash_word(word: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(word))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", default="./data")
    args = parser.parse_args(argv)
    client = huedb.PersistentClient(path=args.path)
    collection = client.get_or_create_collection("quickstart", metadata={"hnsw:space": "cosine"})
    ids = list(DOCS)
    collection.upsert(
        ids=ids,
        documents=[DOCS[i][0] for i in ids],
        metadatas=[DOCS[i][1] for i in ids],
        embeddings=[toy_embedding(DOCS[i][0]) for i in ids],
    )
    question = "which one has wheels and pedals"
    result = collection.query(
        query_embeddings=[toy_embedding(question)], n_results=2, where={"topic": "vehicle"}
    )
    sys.stdout.write(f"huedb {huedb.__version__}: {collection.count()} documents in {args.path}\n")
    for doc_id, dist, doc in zip(
        result["ids"][0], result["distances"][0], result["documents"][0], strict=True
    ):
        sys.stdout.write(f"  {dist:.3f}  {doc_id}: {doc}\n")
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
