"""Shared by the routes that create chat completions: SSE streams and client disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from openai.types.chat import ChatCompletionChunk
from sse_starlette import ServerSentEvent
from starlette.requests import Request

from aiservice.errors import AIServiceError, as_service_error

log = logging.getLogger(__name__)

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"


def _openai_envelope(error: AIServiceError) -> dict[str, Any]:
    return error.envelope()


async def sse(
    chunks: AsyncIterator[ChatCompletionChunk],
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
    """Await `work`, but cancel it (stopping generation) if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    log.info("client disconnected; generation cancelled")
    return None
