"""Redaction for one request: each piece of personal data becomes a typed, numbered
placeholder before the text goes upstream or into the store, and the answer gets the originals
back wherever the model echoed a placeholder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from aiservice.privacy.pii import Finding, PiiKind, canonical_value, find_pii, spliced
from aiservice.privacy.placeholders import PLACEHOLDER, placeholder, restore_placeholders
from aiservice.privacy.streaming import StreamRestorer


class Redactor:
    """The placeholders of one request, shared by all its messages so that a conversation stays
    coherent: the same value always gets the same placeholder.

    A placeholder-shaped word the client wrote itself ("<EMAIL_1>") is never confused with
    ours: its number is skipped when numbering, and if it only turns up after that number was
    given out (a later message), it is redacted like a value so that restoring gives it back.
    """

    def __init__(self, default_region: str = "FR") -> None:
        self.default_region = default_region  # reads national phone numbers written without +
        self._placeholder_of: dict[tuple[str, str], str] = {}  # (kind, canonical value) ->
        self._original_of: dict[str, str] = {}  # placeholder -> the first spelling it replaced
        self._clients_own: set[str] = set()  # placeholder-shaped words of the input: not ours
        self._last_number: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()

    @property
    def counts(self) -> dict[str, int]:
        """How many findings were replaced, by kind: for logs and metrics, which must never see
        the values themselves."""
        return {str(kind): count for kind, count in self._counts.items()}

    def reserve(self, text: str) -> None:
        """Marks the placeholder-shaped words of `text` as the client's, before any numbering:
        call it with every message first (or use `redact_all`) so none of them needs renaming."""
        for match in PLACEHOLDER.finditer(text):
            if match.group() not in self._original_of:
                self._clients_own.add(match.group())

    def redact(self, text: str) -> str:
        """`text` with each finding replaced by its placeholder."""
        self.reserve(text)
        # The client's word that is already one of ours (given out for an earlier message).
        clashes = [m.span() for m in PLACEHOLDER.finditer(text) if m.group() in self._original_of]
        replacements = [
            (start, end, self._placeholder_for_word(text[start:end])) for start, end in clashes
        ]
        for finding in find_pii(text, self.default_region):
            if not any(start < finding.end and finding.start < end for start, end in clashes):
                replacements.append((finding.start, finding.end, self._placeholder_for(finding)))
        return spliced(text, sorted(replacements))

    def redact_all(self, texts: Iterable[str]) -> list[str]:
        """Each text redacted, after reserving the placeholder-shaped words of all of them."""
        texts = list(texts)
        for text in texts:
            self.reserve(text)
        return [self.redact(text) for text in texts]

    def restore(self, text: str) -> str:
        """`text` with each of this request's placeholders replaced by its original; any other
        placeholder-shaped word ("<EMAIL_9>", "<email_1>") stays as it is."""
        return restore_placeholders(text, self._original_of)

    def stream_restorer(self) -> StreamRestorer:
        """A restorer for a streamed answer to this request (see StreamRestorer)."""
        return StreamRestorer(self._original_of)

    def _placeholder_for(self, finding: Finding) -> str:
        self._counts[finding.kind] += 1
        key = (finding.kind, canonical_value(finding, self.default_region))
        if key not in self._placeholder_of:
            self._placeholder_of[key] = self._new_placeholder(finding.kind, finding.text)
        return self._placeholder_of[key]

    def _placeholder_for_word(self, word: str) -> str:
        """A fresh placeholder for the client's own `word`, of the same kind: restored, it is
        `word` again, and the model never sees one placeholder meaning two things."""
        key = ("", word)
        if key not in self._placeholder_of:
            kind = PiiKind(word[1 : word.rindex("_")])
            self._placeholder_of[key] = self._new_placeholder(kind, word)
        return self._placeholder_of[key]

    def _new_placeholder(self, kind: PiiKind, original: str) -> str:
        while True:
            self._last_number[kind] += 1
            candidate = placeholder(kind, self._last_number[kind])
            if candidate not in self._clients_own:
                break
        self._original_of[candidate] = original
        return candidate
