"""Cut generated text at the first stop sequence, holding back what might become one."""

from __future__ import annotations


class StopScanner:
    """Feed text as it is generated; get back what is safe to emit.

    A stop sequence may arrive split across tokens, so the tail of the text that is a prefix
    of some stop sequence is held until the next token decides it.
    """

    def __init__(self, stops: list[str]):
        self._stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Return the text that can be emitted now; sets `stopped` once a stop is found."""
        if not self._stops:
            return text
        self._pending += text
        first = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if first >= 0:
            emit, self._pending = self._pending[:first], ""
            self.stopped = True
            return emit
        keep = self._held_tail_length()
        cut = len(self._pending) - keep
        emit, self._pending = self._pending[:cut], self._pending[cut:]
        return emit

    def flush(self) -> str:
        """At the end of generation, whatever was held back is plain text."""
        emit, self._pending = self._pending, ""
        return emit

    def _held_tail_length(self) -> int:
        pending = self._pending
        for length in range(min(self._longest - 1, len(pending)), 0, -1):
            tail = pending[-length:]
            if any(s.startswith(tail) for s in self._stops):
                return length
        return 0
