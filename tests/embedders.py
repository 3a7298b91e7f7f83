"""Small deterministic embedders for tests, loadable by `huedb reembed/eval --embedder`."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

LOOKUP = {
    "q1": [1.0, 0.1, 0.0, 0.0],
    "q2": [0.0, 0.0, 1.0, 0.2],
    "q3": [0.1, 1.0, 0.0, 0.0],
}


class WordHash:
    """Bag of hashed words in `dim` dimensions; optionally slow, to be killed mid-run."""

    def __init__(self, dim: int, label: str, delay_s: float = 0.0) -> None:
        self.dim, self.label, self.delay_s = dim, label, delay_s

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for text in input:
            vec = np.zeros(self.dim, dtype=np.float32)
            for word in text.split():
                vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out.append(vec)
        return out

    def name(self) -> str:
        return self.label

    def get_config(self) -> dict[str, int]:
        return {"dim": self.dim}


class Lookup:
    """Maps the evaluation queries q1..q3 to fixed 4-d vectors."""

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return [np.asarray(LOOKUP[t], dtype=np.float32) for t in input]

    def name(self) -> str:
        return "lookup"

    def get_config(self) -> dict[str, int]:
        return {}


def v1() -> WordHash:
    return WordHash(16, "words-v1")


def v2() -> WordHash:
    return WordHash(24, "words-v2", delay_s=float(os.environ.get("EMBED_DELAY_S", "0")))


def lookup() -> Lookup:
    return Lookup()
