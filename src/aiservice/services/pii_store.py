"""The PII policy `redact` on what is stored without a model request around it: items added
to a conversation, a batch's lines (before they are written, and so before they reach a
worker or an upstream's Batch API), a document's pieces. One `Redactor` per request, line or
document, so that a value keeps its placeholder throughout; what is stored then holds the
placeholders only, as a stored chat completion or response does."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from aiservice.governance.accounts import Principal
from aiservice.privacy.redaction import Redactor
from aiservice.services.content_guard import ContentGuard
from aiservice.services.pii_screen import offloaded
from aiservice.services.response_pii import item_texts, redacted_items
from aiservice.store.batches import NewLine

Item = dict[str, Any]


def redacts(guard: ContentGuard, principal: Principal | None) -> bool:
    """Whether the caller's PII policy (its key's, its user's, the config's) is `redact`."""
    return guard.policy(None, principal).pii == "redact"


async def redacted_items_to_store(
    guard: ContentGuard, principal: Principal | None, items: list[Item]
) -> tuple[list[Item], Redactor | None]:
    """`items` as the store may keep them, and the redactor that restores them (None: the
    policy is not `redact`, and they are kept as given)."""
    if not items or not redacts(guard, principal):
        return items, None
    texts = item_texts(items)
    redactor = await guard.pii.redactor("redact", texts)
    assert redactor is not None
    items = await offloaded(texts, partial(redacted_items, items, redactor))
    guard.pii.redacted(redactor)
    return items, redactor


async def redacted_texts_to_store(
    guard: ContentGuard, principal: Principal | None, texts: list[str]
) -> list[str]:
    """`texts` (one document's pieces) as the store may keep them, one redactor for all."""
    if not redacts(guard, principal):
        return texts
    redactor = await guard.pii.redactor("redact", texts)
    assert redactor is not None
    redacted = await offloaded(texts, partial(redactor.redact_all, texts))
    guard.pii.redacted(redactor)
    return redacted


async def redacted_lines(
    guard: ContentGuard,
    principal: Principal,
    endpoint: str,
    slices: AsyncIterator[list[NewLine]],
) -> AsyncIterator[list[NewLine]]:
    """A batch's lines, a slice at a time, with the texts of each line's body redacted when
    the batch's creator's policy is `redact` (the endpoints that generate text only)."""
    fields = _TEXT_FIELDS.get(endpoint)
    active = fields is not None and redacts(guard, principal)
    async for lines in slices:
        if not active:
            yield lines
            continue
        redactors = [
            await guard.pii.redactor("redact", _body_texts(line.body, fields)) for line in lines
        ]
        redacted = await asyncio.to_thread(_redacted_slice, lines, redactors, fields)
        counts: Counter[str] = Counter()
        for redactor in redactors:
            counts.update(redactor.counts if redactor is not None else {})
        guard.pii.redacted_counts(dict(counts))
        yield redacted


# Where a line's body holds what someone wrote: fields of items, or plain strings.
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/chat/completions": ("messages",),
    "/v1/responses": ("input", "instructions"),
}


def _body_texts(body: dict[str, Any], fields: tuple[str, ...] | None) -> list[str]:
    texts: list[str] = []
    for name in fields or ():
        value = body.get(name)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts += item_texts([item for item in value if isinstance(item, dict)])
    return texts


def _redacted_slice(
    lines: list[NewLine], redactors: list[Redactor | None], fields: tuple[str, ...] | None
) -> list[NewLine]:
    return [
        NewLine(line.line, line.custom_id, _redacted_body(line.body, redactor, fields))
        if redactor is not None
        else line
        for line, redactor in zip(lines, redactors, strict=True)
    ]


def _redacted_body(
    body: dict[str, Any], redactor: Redactor, fields: tuple[str, ...] | None
) -> dict[str, Any]:
    redacted = dict(body)
    for name in fields or ():
        value = body.get(name)
        if isinstance(value, str):
            redacted[name] = redactor.redact(value)
        elif isinstance(value, list):
            redacted[name] = redacted_items(value, redactor)
    return redacted
