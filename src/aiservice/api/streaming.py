"""Shared by the routes that create chat and text completions: SSE streams and client
disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sse_starlette import ServerSentEvent
from starlette.requests import Request

from aiservice.errors import AIServiceError, as_service_error

log = logging.getLogger(__name__)

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"


def _openai_envelope(error: AIServiceError) -> dict[str, Any]:
    return error.envelope()


async def sse(
    chunks: AsyncIterator[BaseModel],  # chat completion chunks, or text completion ones
    error_body: Callable[[AIServiceError], dict[str, Any]] = _openai_envelope,
) -> AsyncIterator[ServerSentEvent]:
    """Each chunk as a `data:` event, then `[DONE]`; a failure becomes a last `error_body` event."""
    try:
        async for chunk in chunks:
            yield ServerSentEvent(data=chunk.model_dump_json(exclude_unset=True))
    except Exception as exc:  # headers are gone: the error travels as an event, as OpenAI does
        error = as_service_error(exc)
        if error.status_code >= 500:
            log.error("stream failed", extra={"error_type": type(exc).__name__})
        yield ServerSentEvent(data=json.dumps(error_body(error)))
        return
    yield ServerSentEvent(data="[DONE]")


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """Await `work`, but cancel it (stopping generation) if the client disconnects first.

    `work` runs in the caller's task and only the watcher gets one of its own: a task for
    each would cost a second task and an `asyncio.wait` on every request.
    """
    caller = asyncio.current_task()
    assert caller is not None
    client_left = False

    async def cancel_when_client_leaves() -> None:
        nonlocal client_left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        client_left = True
        caller.cancel()

    watcher = asyncio.ensure_future(cancel_when_client_leaves())
    try:
        result = await work
    except BaseException:
        if not client_left:
            raise  # the work failed, or the caller itself was cancelled
        result = None
    finally:
        watcher.cancel()
    if not client_left:
        return result
    # The cancellation was ours and has been dealt with: the caller is not being cancelled.
    caller.uncancel()
    log.info("client disconnected; generation cancelled")
    return None
