"""POST /v1/chat/completions: parse, hand to the service, answer with JSON or an SSE stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request, Response
from openai.types.chat import ChatCompletionChunk
from sse_starlette import EventSourceResponse, ServerSentEvent

from aiservice.api.deps import Principal, authenticate, chat_completions, json_body
from aiservice.errors import as_service_error
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.chat_request import ChatCompletionRequest

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Depends(authenticate)])

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"


@router.post("/chat/completions")
async def create_chat_completion(
    request: Request,
    principal: Principal = Depends(authenticate),
    service: ChatCompletionService = Depends(chat_completions),
) -> Response:
    body = await json_body(request, ChatCompletionRequest)
    chat = await service.prepare(body, principal.owner)
    if body.stream:
        return EventSourceResponse(_sse(service.stream(chat)), sep="\n", ping=15)
    completion = await _unless_client_leaves(request, service.complete(chat))
    if completion is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Response(completion.model_dump_json(exclude_unset=True), media_type="application/json")


async def _sse(chunks: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[ServerSentEvent]:
    try:
        async for chunk in chunks:
            yield ServerSentEvent(data=chunk.model_dump_json(exclude_unset=True))
    except Exception as exc:  # headers are gone: the error travels as an event, as OpenAI does
        error = as_service_error(exc)
        if error.status_code >= 500:
            log.error("stream failed", extra={"error_type": type(exc).__name__})
        yield ServerSentEvent(data=json.dumps(error.envelope()))
        return
    yield ServerSentEvent(data="[DONE]")


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
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
