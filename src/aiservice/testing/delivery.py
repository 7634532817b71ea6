"""Sending an answer over raw ASGI, normally or spoiled by a fault.

Raw ASGI rather than a framework's responses: a fault needs to decide exactly which bytes have
left (headers, N events) before it stalls or cuts the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from aiservice.testing.faults import Fault
from aiservice.testing.wire import Body, error_envelope

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Headers = list[tuple[bytes, bytes]]

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
MALFORMED_BODY = b'{"id": "fake", "object": not json'
MALFORMED_EVENT = b"data: {not json\n\n"


class ConnectionDropped(Exception):
    """Raised to end a request when the server gives no way to close its connection."""


@dataclass(slots=True)
class Answer:
    """An answer ready to send: a body (JSON unless told), or the events of an SSE stream."""

    status: int = 200
    body: bytes = b""
    events: list[bytes] | None = None  # each a complete SSE block, blank line included
    headers: Headers = field(default_factory=list)
    content_type: bytes = b"application/json"  # of `body`; a file's content is raw bytes


def json_answer(payload: Any, status: int = 200, headers: Headers | None = None) -> Answer:
    return Answer(status, dumps(payload), headers=headers or [])


def error_answer(status: int, message: str | None = None, **fields: Any) -> Answer:
    return json_answer(error_envelope(status, message=message, **fields), status)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def data_event(payload: Body) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def named_event(payload: Body) -> bytes:
    return f"event: {payload['type']}\n".encode() + data_event(payload)


async def send_answer(send: Send, answer: Answer) -> None:
    """Send the whole answer. A stream's events go out in one write: with nothing to wait
    for between them the client could not tell, and a write per event costs benchmarks."""
    await _start(send, answer)
    body = answer.body if answer.events is None else b"".join(answer.events)
    await send({"type": "http.response.body", "body": body})


async def send_faulty(
    send: Send,
    receive: Receive,
    fault: Fault,
    answer_for: Callable[[], Answer],
    stopping: asyncio.Event,
) -> None:
    """Send what `fault` makes of the answer `answer_for()` would give. `stopping` is the
    server's shutdown asyncio.Event: it, or the client leaving, cuts any wait short."""
    if fault.first_byte_delay_s and await _interrupted(fault.first_byte_delay_s, stopping, receive):
        return await drop_connection(send, receive)
    if fault.drop_connection and fault.drop_after_chunks is None:
        return await drop_connection(send, receive)
    if fault.status is not None:
        return await send_answer(send, _fault_error(fault))
    answer = answer_for()
    if fault.malformed_json:
        if answer.events is None:
            answer.body, answer.content_type = MALFORMED_BODY, b"application/json"
        else:
            answer.events.insert(0, MALFORMED_EVENT)
        return await send_answer(send, answer)
    stalls = fault.stall_after_chunks is not None
    cut_at = fault.stall_after_chunks if stalls else fault.drop_after_chunks
    if cut_at is None:  # only a first-byte delay
        return await send_answer(send, answer)
    events = answer.events or []
    await _start(send, answer)
    await _send_events(send, events[:cut_at])
    if not stalls or await _interrupted(fault.stall_s, stopping, receive):
        return await drop_connection(send, receive)
    await _send_events(send, events[cut_at:])
    await _finish(send, answer)


async def drop_connection(send: Send, receive: Receive) -> None:
    """Close the connection at once, whatever has been sent: the client sees it reset."""
    # uvicorn answers 500 to an exception raised before the headers, so the connection is
    # aborted through the transport of the request cycle that `send` belongs to.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDropped("the fake upstream dropped the connection")
    transport.abort()
    # Return only once uvicorn has seen the connection go, so it neither answers the request
    # nor logs it as left incomplete.
    while (await receive())["type"] != "http.disconnect":
        pass


def _fault_error(fault: Fault) -> Answer:
    assert fault.status is not None
    answer = error_answer(
        fault.status, fault.message, error_type=fault.error_type, code=fault.error_code
    )
    if fault.retry_after is not None:
        seconds = fault.retry_after
        text = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        answer.headers += [
            (b"retry-after", text.encode()),
            (b"retry-after-ms", str(round(seconds * 1000)).encode()),
        ]
    return answer


async def _interrupted(seconds: float, stopping: asyncio.Event, receive: Receive) -> bool:
    """Wait `seconds`; True when the server began to stop or the client left first."""
    # Timed on the monotonic clock: the loop's timers may fire a little early, and a test may
    # rely on the wait lasting at least `seconds`.
    deadline = time.monotonic() + seconds
    waits = {asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(_left(receive))}
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            done, _ = await asyncio.wait(waits, timeout=remaining, return_when="FIRST_COMPLETED")
            if done:
                return True
        return False
    finally:
        for task in waits:
            task.cancel()


async def _left(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _start(send: Send, answer: Answer) -> None:
    if answer.events is None:
        length = (b"content-length", str(len(answer.body)).encode())
        headers = [(b"content-type", answer.content_type), length, *answer.headers]
    else:
        headers = [*_SSE_HEADERS, *answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})


async def _send_events(send: Send, events: list[bytes]) -> None:
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})


async def _finish(send: Send, answer: Answer) -> None:
    body = answer.body if answer.events is None else b""
    await send({"type": "http.response.body", "body": body})
