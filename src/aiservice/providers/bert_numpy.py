"""A BERT encoder's forward pass in numpy (float32), for the bundled sentence-embedding model:
token, position and type embeddings, then N layers of masked multi-head self-attention and a
feed-forward block, each followed by a residual LayerNorm — the computation of Hugging Face's
`BertModel`, minus dropout (inference) and the pooler (sentence-transformers never uses it).

No torch: the weights are read from safetensors and every product is a BLAS matmul on 2-D
arrays, which releases the GIL, so an encode in a worker thread leaves the event loop free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erf

Array = np.ndarray[Any, np.dtype[Any]]


@dataclass(frozen=True, slots=True)
class BertConfig:
    """What the forward pass needs from a model's config.json."""

    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    layer_norm_eps: float
    vocab_size: int
    max_position_embeddings: int

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> BertConfig:
        # Anything else would run, and silently compute another function than the model's.
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported activation {config['hidden_act']!r} (want exact gelu)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        if config["hidden_size"] % config["num_attention_heads"]:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        return cls(
            hidden_size=config["hidden_size"],
            num_attention_heads=config["num_attention_heads"],
            num_hidden_layers=config["num_hidden_layers"],
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            vocab_size=config["vocab_size"],
            max_position_embeddings=config["max_position_embeddings"],
        )


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer's weights, laid out for `x @ w` (PyTorch keeps them as `w @ x`)."""

    qkv_w: Array  # (hidden, 3 * hidden): query, key and value in one product
    qkv_b: Array
    attention_out_w: Array
    attention_out_b: Array
    attention_norm: tuple[Array, Array]
    intermediate_w: Array
    intermediate_b: Array
    output_w: Array
    output_b: Array
    output_norm: tuple[Array, Array]


def _layer(tensors: dict[str, Array], prefix: str) -> _Layer:
    def weight(name: str) -> Array:
        return np.ascontiguousarray(tensors[f"{prefix}.{name}.weight"].T, dtype=np.float32)

    def bias(name: str) -> Array:
        return _float32(tensors[f"{prefix}.{name}.bias"])

    def norm(name: str) -> tuple[Array, Array]:
        return _float32(tensors[f"{prefix}.{name}.weight"]), bias(name)

    parts = ("attention.self.query", "attention.self.key", "attention.self.value")
    return _Layer(
        qkv_w=np.ascontiguousarray(np.concatenate([weight(p) for p in parts], axis=1)),
        qkv_b=np.concatenate([bias(p) for p in parts]),
        attention_out_w=weight("attention.output.dense"),
        attention_out_b=bias("attention.output.dense"),
        attention_norm=norm("attention.output.LayerNorm"),
        intermediate_w=weight("intermediate.dense"),
        intermediate_b=bias("intermediate.dense"),
        output_w=weight("output.dense"),
        output_b=bias("output.dense"),
        output_norm=norm("output.LayerNorm"),
    )


def _float32(values: Array) -> Array:
    return np.asarray(values, dtype=np.float32)


class BertEncoder:
    """The forward pass of one BERT model; `hidden_states` is thread-safe (it only reads)."""

    def __init__(self, config: BertConfig, tensors: dict[str, Array]):
        self.config = config
        # Checkpoints name their tensors with or without the model's "bert." prefix.
        tensors = {name.removeprefix("bert."): value for name, value in tensors.items()}
        self._words = _float32(tensors["embeddings.word_embeddings.weight"])
        self._positions = _float32(tensors["embeddings.position_embeddings.weight"])
        # Every input is a single segment: token type 0 throughout.
        self._segment = _float32(tensors["embeddings.token_type_embeddings.weight"][0])
        self._embedding_norm = (
            _float32(tensors["embeddings.LayerNorm.weight"]),
            _float32(tensors["embeddings.LayerNorm.bias"]),
        )
        self._layers = [
            _layer(tensors, f"encoder.layer.{i}") for i in range(config.num_hidden_layers)
        ]

    def hidden_states(self, input_ids: Array, attention_mask: Array) -> Array:
        """The last layer's output, (batch, tokens, hidden), for padded `input_ids` whose real
        tokens `attention_mask` marks with 1 (padding with 0)."""
        batch, length = input_ids.shape
        if length > self.config.max_position_embeddings:
            raise ValueError(f"{length} tokens: more than the model's positions")
        x = self._words[input_ids] + self._positions[:length] + self._segment
        x = self._norm(x.reshape(batch * length, -1), self._embedding_norm)
        # Padding keys get the lowest float: after the softmax they weigh exactly 0, so a
        # text's vector does not depend on how much its batch was padded.
        key_bias = np.where(attention_mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min)
        key_bias = key_bias.astype(np.float32)
        for layer in self._layers:
            x = self._attention_block(x, layer, batch, length, key_bias)
            x = self._feed_forward_block(x, layer)
        return x.reshape(batch, length, -1)

    def _attention_block(
        self, x: Array, layer: _Layer, batch: int, length: int, key_bias: Array
    ) -> Array:
        heads = self.config.num_attention_heads
        head_size = self.config.hidden_size // heads
        qkv = x @ layer.qkv_w + layer.qkv_b
        # (batch * length, 3 * hidden) -> 3 x (batch, heads, length, head_size)
        qkv = qkv.reshape(batch, length, 3, heads, head_size).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = query @ key.transpose(0, 1, 3, 2)
        scores *= np.float32(1 / math.sqrt(head_size))
        scores += key_bias
        weights = _softmax(scores)
        context = (weights @ value).transpose(0, 2, 1, 3).reshape(batch * length, -1)
        attended = context @ layer.attention_out_w + layer.attention_out_b
        return self._norm(attended + x, layer.attention_norm)

    def _feed_forward_block(self, x: Array, layer: _Layer) -> Array:
        inner = _gelu(x @ layer.intermediate_w + layer.intermediate_b)
        out = inner @ layer.output_w + layer.output_b
        return self._norm(out + x, layer.output_norm)

    def _norm(self, x: Array, scale_and_shift: tuple[Array, Array]) -> Array:
        scale, shift = scale_and_shift
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        variance = np.mean(np.square(centred), axis=-1, keepdims=True)  # biased, as PyTorch's
        return centred / np.sqrt(variance + np.float32(self.config.layer_norm_eps)) * scale + shift


def _softmax(scores: Array) -> Array:
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


_SQRT_HALF = np.float32(1 / math.sqrt(2))


def _gelu(x: Array) -> Array:
    """GELU with the exact error function (BERT's "gelu"), not the tanh approximation."""
    return np.float32(0.5) * x * (np.float32(1) + erf(x * _SQRT_HALF))
