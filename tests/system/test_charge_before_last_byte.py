"""A model request's usage record is taken before its answer's last byte is sent.

Found by the soak (tests/system/soak_harness.py): a stream whose client had received all of it,
`[DONE]` and the end of the chunked body included, had no usage record after its server was
killed with SIGKILL ~150 ms later. The record was taken when the app returned, and
sse-starlette's app returns only after cancelling its ping and disconnect tasks, which a busy
event loop can delay for that long: the charge was neither in the database nor in the journal.
RequestContextMiddleware now takes it as the last body message goes out (and still at the end
for an answer that never finished)."""

from __future__ import annotations

from typing import Any

from aiservice.api.middleware import RequestContextMiddleware
from aiservice.metering.meter import Meter


class Ledger:
    """Records what the middleware hands it, in the order of the events around it."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.statuses: list[int] = []

    def record(self, meter: Meter, status_code: int) -> None:
        self.events.append("record")
        self.statuses.append(status_code)


def scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


async def call(app: Any) -> tuple[list[str], Ledger]:
    events: list[str] = []
    ledger = Ledger(events)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        more = "+" if message.get("more_body") else ""
        events.append(message["type"].removeprefix("http.response.") + more)

    middleware = RequestContextMiddleware(app, ledger=ledger)  # type: ignore[arg-type]
    try:
        await middleware(scope(), receive, send)
    except RuntimeError:
        events.append("raised")
    return events, ledger


async def test_a_stream_is_recorded_before_its_last_body_message() -> None:
    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    seen, ledger = await call(streaming)
    assert seen == ["start", "body+", "record", "body"]
    assert ledger.statuses == [200]  # once: not again when the app returns


async def test_a_whole_answer_is_recorded_before_its_body() -> None:
    async def whole(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    seen, ledger = await call(whole)
    assert seen == ["start", "record", "body"]
    assert ledger.statuses == [429]


async def test_an_answer_that_never_ends_is_recorded_at_the_end() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        raise RuntimeError("the stream broke")

    seen, ledger = await call(broken)
    assert seen == ["start", "body+", "record", "raised"]
    assert ledger.statuses == [200]  # the ledger turns a meter's error into its status
