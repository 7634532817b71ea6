"""Restoring placeholders in an answer that arrives as a stream of small deltas, where one
placeholder can be cut anywhere ("<EM", "AIL_1>")."""

from __future__ import annotations

from collections.abc import Mapping

from aiservice.privacy.placeholders import restore_placeholders


class StreamRestorer:
    """Feeds deltas in, gives out restored text as soon as no placeholder can be cut in it.

    Everything `feed` and `flush` return, joined, is what restoring the whole answer at once
    gives. Only a suffix that is the start of one of the request's placeholders is held back, so
    a stream of a request that had nothing redacted passes through unchanged and undelayed.
    """

    def __init__(self, originals: Mapping[str, str]) -> None:
        self._originals = originals  # the redactor's own mapping, read at every delta
        self._pending = ""  # at most one placeholder's length less one character

    def feed(self, delta: str) -> str:
        """The text that is safe to send now, restored."""
        text = self._pending + delta
        cut = _held_back_from(text, self._originals)
        self._pending = text[cut:]
        return restore_placeholders(text[:cut], self._originals)

    def flush(self) -> str:
        """What was held back, at the end of the answer: there is nothing left to complete it."""
        rest, self._pending = self._pending, ""
        return restore_placeholders(rest, self._originals)


def _held_back_from(text: str, originals: Mapping[str, str]) -> int:
    """Where the suffix that could still grow into a placeholder of `originals` starts, or
    len(text). A placeholder holds a single "<", at its start, so only the last "<" can begin
    one that is not finished yet."""
    start = text.rfind("<")
    if start == -1:
        return len(text)
    suffix = text[start:]
    if any(len(known) > len(suffix) and known.startswith(suffix) for known in originals):
        return start
    return len(text)
