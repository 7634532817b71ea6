"""Concurrency: the event loop stays free while the model works, the model's queue is
first-come first-served, and a client that goes away stops its generation.

Orderings are observed, not timed: each test records events as the client sees them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from support import MASTER_KEY, RunningServer, wait_for_access_line, wait_for_log_line

URL = "/v1/chat/completions"
# SmolLM2's end-of-generation tokens (<|endoftext|>, <|im_end|>, <reponame>), banned so that a
# generation runs to its max_tokens instead of ending whenever the model decides it is done.
NO_END = {"0": -100, "2": -100, "4": -100}


def chat(max_tokens: int, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": max_tokens,
        "temperature": 1,
        "logit_bias": NO_END,
        **({"stream": True} if stream else {}),
        **extra,
    }


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def content_of(line: str) -> str | None:
    """The content delta of an SSE `data:` line, or None for any other line."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    chunk = json.loads(line[len("data: ") :])
    assert "error" not in chunk, chunk
    choices = chunk.get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or None


async def next_content(lines: AsyncIterator[str]) -> str:
    async for line in lines:
        if (content := content_of(line)) is not None:
            return content
    raise AssertionError("the stream ended without content")


async def drain(lines: AsyncIterator[str]) -> list[str]:
    """Read a stream to its end; return the lines read. The last must be [DONE]."""
    rest = [line async for line in lines if line]
    assert rest and rest[-1] == "data: [DONE]", rest[-3:]
    return rest


def async_client(server: RunningServer, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=kwargs.pop("timeout", 180),
        **kwargs,
    )


async def test_health_answers_while_a_long_generation_streams(server: RunningServer) -> None:
    events: list[str] = []
    async with (
        async_client(server) as client,
        client.stream("POST", URL, json=chat(400, stream=True)) as long,
    ):
        assert long.status_code == 200
        lines = long.aiter_lines()
        await next_content(lines)  # the model is generating now

        async def read_to_end() -> None:
            await drain(lines)
            events.append("stream finished")

        reader = asyncio.create_task(read_to_end())
        for path in ("/health", "/ready", "/v1/models"):
            response = await client.get(path)
            assert response.status_code == 200, response.text
            events.append(f"{path} answered")
        await reader
    assert events == [
        "/health answered",
        "/ready answered",
        "/v1/models answered",
        "stream finished",
    ]


async def test_concurrent_requests_all_complete(server: RunningServer) -> None:
    async with async_client(server) as client:

        async def plain(i: int) -> str:
            response = await client.post(URL, json=chat(8 + i))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["usage"]["completion_tokens"] == 8 + i
            return body["choices"][0]["message"]["content"]

        async def streamed(i: int) -> str:
            async with client.stream("POST", URL, json=chat(8 + i, stream=True)) as response:
                assert response.status_code == 200
                lines = [line async for line in response.aiter_lines() if line]
            assert lines[-1] == "data: [DONE]"
            return "".join(filter(None, map(content_of, lines)))

        results = await asyncio.gather(
            *(plain(i) for i in range(4)), *(streamed(i) for i in range(3))
        )
    assert len(results) == 7
    assert all(results), results
    assert (await _get_health(server)) == 200


async def _get_health(server: RunningServer) -> int:
    async with async_client(server) as client:
        return (await client.get("/health")).status_code


async def test_queued_requests_start_first_come_first_served(server: RunningServer) -> None:
    """A runs; B is sent, then C: B's first token must come before C's.

    Each request is sent only once the server has answered the previous one's headers, so the
    server has taken B before C arrives. B generates 40 tokens, C waits for all of them.
    """
    events: list[str] = []
    async with async_client(server) as client, AsyncExitStack() as streams:

        async def send(name: str, max_tokens: int) -> AsyncIterator[str]:
            response = await streams.enter_async_context(
                client.stream("POST", URL, json=chat(max_tokens, stream=True))
            )
            assert response.status_code == 200
            events.append(f"{name} sent")
            return response.aiter_lines()

        async def follow(name: str, lines: AsyncIterator[str], first_seen: bool = False) -> None:
            if not first_seen:
                await next_content(lines)
                events.append(f"{name} first token")
            await drain(lines)
            events.append(f"{name} finished")

        a = await send("A", 200)
        await next_content(a)  # A is on the model, not just queued
        events.append("A first token")
        b = await send("B", 40)
        c = await send("C", 5)
        await asyncio.gather(follow("A", a, first_seen=True), follow("B", b), follow("C", c))

    # A was still generating when C was sent, so B and C really queued behind it...
    assert events.index("C sent") < events.index("A finished"), events
    # ...and the queue served them in arrival order.
    assert events.index("B first token") < events.index("C first token"), events


def test_closing_a_stream_stops_its_generation(server: RunningServer, http: httpx.Client) -> None:
    max_tokens = 4000  # minutes of generation on this model if nothing stopped it
    request_id = unique_id("closed-stream")
    after = len(server.log_lines())
    with http.stream(
        "POST",
        URL,
        json=chat(max_tokens, stream=True),
        headers={"x-request-id": request_id},
    ) as response:
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            received += content_of(line) is not None
            if received == 2:
                break
    # Leaving the block closed the connection mid-stream.

    cancelled = wait_for_log_line(
        server,
        lambda line: (
            line.get("message") == "generation cancelled" and line.get("max_tokens") == max_tokens
        ),
        after=after,
        what="the cancelled stream's 'generation cancelled' line",
    )
    assert 2 <= cancelled["completion_tokens"] < max_tokens, cancelled
    assert cancelled["request_id"] == request_id  # the worker thread logs in the request's context
    assert wait_for_access_line(server, request_id)["status"] == 200  # the stream had begun

    # The model is free again: a short request is served.
    short = http.post(URL, json=chat(3))
    assert short.status_code == 200, short.text
    assert short.json()["usage"]["completion_tokens"] == 3


def test_a_client_timeout_stops_a_non_streamed_generation(server: RunningServer) -> None:
    max_tokens = 3999  # distinct from the stream test's, to tell their log lines apart
    request_id = unique_id("timed-out")
    after = len(server.log_lines())
    with (
        httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": request_id},
            timeout=1,
        ) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(URL, json=chat(max_tokens))

    cancelled = wait_for_log_line(
        server,
        lambda line: (
            line.get("message") == "generation cancelled" and line.get("max_tokens") == max_tokens
        ),
        after=after,
        what="the timed-out request's 'generation cancelled' line",
    )
    assert 1 <= cancelled["completion_tokens"] < max_tokens, cancelled
    assert cancelled["request_id"] == request_id
    assert wait_for_access_line(server, request_id)["status"] == 499
    wait_for_log_line(
        server,
        lambda line: (
            line.get("request_id") == request_id
            and line.get("message") == "client disconnected; generation cancelled"
        ),
        after=after,
        what="the API's disconnect line",
    )

    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=120
    ) as patient:
        short = patient.post(URL, json=chat(3))
    assert short.status_code == 200, short.text
