"""The PII policy of a request: `flag` counts and logs the kinds of personal data found,
`redact` also replaces each finding with a typed placeholder (privacy/redaction.py) in what
reaches the model and the store, and the originals are put back in what the client receives.
Logs and metrics carry kinds and counts, never a value."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from aiservice.observability.metrics import ServiceMetrics
from aiservice.privacy.pii import find_pii
from aiservice.privacy.redaction import Redactor
from aiservice.settings import PiiConfig, PiiMode

log = logging.getLogger(__name__)
T = TypeVar("T")
# Texts longer than this in all are scanned in a worker thread: about 0.4 ms per 2,000
# characters, but a long run of spaced digits costs the phone matcher far more.
_INLINE_CHARS = 4096


class PiiScreen:
    def __init__(self, config: PiiConfig, metrics: ServiceMetrics | None = None):
        self._region = config.default_region
        self._metrics = metrics

    async def redactor(self, mode: PiiMode, texts: list[str]) -> Redactor | None:
        """With `redact`, a redactor with the placeholder-shaped words of `texts` reserved
        (the caller redacts them, through `offloaded`); with `flag`, the findings in `texts`
        are counted here."""
        if mode == "redact":
            redactor = Redactor(self._region)
            for text in texts:
                redactor.reserve(text)
            return redactor
        if mode == "flag":
            counts = await offloaded(texts, lambda: self._kinds(texts))
            self._observe(counts, "flagged")
        return None

    def _kinds(self, texts: list[str]) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(str(finding.kind) for finding in find_pii(text, self._region))
        return dict(counts)

    def redacted(self, redactor: Redactor | None) -> None:
        """Count what `redactor` replaced, once the request's texts are redacted."""
        if redactor is not None:
            self._observe(redactor.counts, "redacted")

    def redacted_counts(self, counts: dict[str, int]) -> None:
        """Count what several redactors replaced, in one go (a slice of a batch's lines)."""
        self._observe({kind: n for kind, n in counts.items() if n}, "redacted")

    def _observe(self, counts: dict[str, int], action: str) -> None:
        if not counts:
            return
        if self._metrics is not None:
            self._metrics.observe_pii(counts, action)
        log.info("personal data found", extra={"action": action, "pii_counts": counts})


async def offloaded(texts: list[str], work: Callable[[], T]) -> T:
    """`work` (a scan of `texts`) on the event loop if they are short, else in a thread."""
    if sum(len(text) for text in texts) <= _INLINE_CHARS:
        return work()
    return await asyncio.to_thread(work)
