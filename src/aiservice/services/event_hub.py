"""Wake-ups for readers of recorded streaming events, within one process.

The events themselves are in the database (any process can read them); a reader in the process
that records them is woken at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class EventHub:
    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, response_id: str) -> None:
        for listener in self._listeners.get(response_id, ()):
            listener.set()

    @contextmanager
    def listen(self, response_id: str) -> Iterator[asyncio.Event]:
        """An event set by every notify for this response while the block runs. Clear it
        before reading, so that a notify during the read is not lost."""
        listener = asyncio.Event()
        self._listeners[response_id].add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners[response_id]
            listeners.discard(listener)
            if not listeners:
                del self._listeners[response_id]
