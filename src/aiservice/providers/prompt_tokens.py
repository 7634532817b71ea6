"""A local model's prompt as tokens, in time linear in its length.

llama.cpp first cuts its input at every special token (`<|im_start|>`, `<|im_end|>`…), then
tokenizes each text between them on its own; that first pass takes time quadratic in the number
of special tokens (2,500 chat messages took 0.3 s, 10,000 took 2.9 s; 1.6 MB of `<|im_start|>`
in one message, 100 s). No token spans a special token, so cutting the prompt just after one
gives the same tokens: a long prompt is tokenized in pieces of about PIECE_CHARS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import llama_cpp
from llama_cpp import Llama

PIECE_CHARS = 2048  # measured: 512 to 8192 all linear; 2048 the fastest here
# The tokens llama.cpp's first pass cuts at.
_SPECIAL = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
)


class PromptTokenizer:
    def __init__(self, llama: Llama):
        self._llama = llama
        self._cut_after, self._longest_token = _vocabulary_facts(llama)

    def surely_longer_than(self, prompt: str, tokens: int) -> bool:
        """True if `prompt` is certain to be more than `tokens` tokens, known without
        tokenizing it: no token is longer than the vocabulary's longest, in bytes."""
        return self._longest_token is not None and len(prompt) > tokens * self._longest_token

    def tokenize(self, prompt: str) -> list[int]:
        if len(prompt) <= PIECE_CHARS or self._cut_after is None:
            return self._tokens(prompt)
        tokens: list[int] = []
        for piece in pieces(prompt, self._cut_after, PIECE_CHARS):
            tokens += self._tokens(piece)
        return tokens

    def _tokens(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def _vocabulary_facts(llama: Llama) -> tuple[re.Pattern[str] | None, int | None]:
    """The special tokens a prompt may be cut after, as one pattern (longest first, as
    llama.cpp matches them), and the longest token's length in bytes; (None, None) where
    neither is known to be exact. One pass over the vocabulary (about 40 ms for 49,152)."""
    vocab = llama._model.vocab
    # A SentencePiece vocabulary may add a space at the start of each call, and stores its
    # texts in another form: one call there, and no bound.
    if llama_cpp.llama_vocab_type(vocab) != llama_cpp.LLAMA_VOCAB_TYPE_BPE:
        return None, None
    cut_after: list[str] = []
    longest = 0
    for token in range(llama.n_vocab()):
        stored = llama_cpp.llama_vocab_get_text(vocab, token) or b""
        attributes = llama_cpp.llama_vocab_get_attr(vocab, token)
        if attributes & _SPECIAL:
            longest = max(longest, len(stored))  # stored as the text itself
            # A token that strips the spaces after it would lose them to a cut after it.
            if stored and not attributes & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP:
                cut_after.append(stored.decode("utf-8", errors="replace"))
        else:
            # Byte-level BPE stores each byte of a token as one character.
            longest = max(longest, len(stored.decode("utf-8", errors="replace")))
    pattern = (
        re.compile("|".join(re.escape(t) for t in sorted(cut_after, key=len, reverse=True)))
        if cut_after
        else None
    )
    return pattern, longest or None


def pieces(text: str, cut_after: re.Pattern[str], size: int) -> Iterator[str]:
    """`text` cut just after matches of `cut_after`, in pieces of at least `size` characters
    (but the last); joined, they are `text`."""
    start = 0
    for match in cut_after.finditer(text):
        if match.end() - start >= size:
            yield text[start : match.end()]
            start = match.end()
    if start < len(text):
        yield text[start:]
