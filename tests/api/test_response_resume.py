"""Resuming the event stream of a background response (`background: true, stream: true`).

The POST streams the job's events as server-sent events (`event: <type>` and `data: <json>`
per event), the first `response.created` with the response still `queued`, every event
numbered by `sequence_number`, one more than the one before. Those events are kept with the
response, so GET /v1/responses/{id}?stream=true&starting_after=N sends again exactly the events
after N, to the end (`response.completed`): a client that lost its connection picks up where it
left off, and the job does not stop because its first client went away.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from support import assert_matches_schema

URL = "/v1/responses"
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "input": "What is 2+2?",  # greedy, it ends by itself after about ten tokens
    "temperature": 0,
    "max_output_tokens": 40,
    "background": True,
    "stream": True,
}
# How a job that ran to its end (or to max_output_tokens) finishes its stream.
ENDS = ("response.completed", "response.incomplete")


def sse(lines: Iterator[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(event name, parsed data) per server-sent event, as they arrive."""
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = None, []
    if data:
        yield name, json.loads("\n".join(data))


def checked(events: list[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each event's `event:` name is its data's type, its data is a ResponseStreamEvent and the
    sequence numbers go up by one; returns the data."""
    for name, data in events:
        assert name == data["type"], (name, data)
        assert_matches_schema(data, "ResponseStreamEvent")
    assert events, "an empty event stream"
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    return [data for _, data in events]


@contextmanager
def event_stream(http: httpx.Client, method: str, url: str, **kwargs: Any) -> Iterator[Any]:
    """Open a request that must answer 200 with server-sent events; yields (name, data) pairs."""
    with http.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, response.read().decode()
        content_type = response.headers["content-type"]
        assert content_type.startswith("text/event-stream"), (
            f"{method} {url}: {content_type}, not an event stream: {response.read().decode()}"
        )
        yield sse(response.iter_lines())


def stream_new(http: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    """POST a background+stream request and read its whole stream."""
    with event_stream(http, "POST", URL, json=request) as events:
        return checked(list(events))


def resume(http: httpx.Client, response_id: str, after: int) -> list[dict[str, Any]]:
    params = {"stream": "true", "starting_after": str(after)}
    with event_stream(http, "GET", f"{URL}/{response_id}", params=params) as events:
        return checked(list(events))


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def test_a_background_stream_starts_queued_and_numbers_its_events(http: httpx.Client) -> None:
    events = stream_new(http, REQUEST)

    created, last = events[0], events[-1]
    assert created["type"] == "response.created", created
    assert created["response"]["status"] == "queued", created
    assert created["response"]["background"] is True, created
    assert_matches_schema(created["response"], "Response")
    assert last["type"] == "response.completed", last
    assert_matches_schema(last["response"], "Response")
    assert {e["type"] for e in events[1:-1]} >= {"response.in_progress"}

    stored = http.get(f"{URL}/{created['response']['id']}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["status"] == "completed", stored.json()
    assert stored.json()["output"] == last["response"]["output"]


def test_resuming_after_an_event_replays_exactly_the_events_after_it(http: httpx.Client) -> None:
    original = stream_new(http, REQUEST)
    assert len(original) >= 4, [e["type"] for e in original]
    response_id = original[0]["response"]["id"]

    for cut in (original[0], original[len(original) // 2], original[-2]):
        after = cut["sequence_number"]
        replayed = resume(http, response_id, after)
        assert replayed == [e for e in original if e["sequence_number"] > after], after
        assert replayed[-1]["type"] == "response.completed"


def test_a_client_that_disconnects_picks_up_where_it_left_off(http: httpx.Client) -> None:
    """Read the stream up to the first text delta, hang up, resume: nothing lost or repeated,
    and the job ran to its end without a listener."""
    seen: list[dict[str, Any]] = []
    story = {**REQUEST, "input": "Write a short story about a cat.", "max_output_tokens": 120}
    with event_stream(http, "POST", URL, json=story) as stream:
        for name, data in stream:
            seen.append(data)
            assert name == data["type"], (name, data)
            if data["type"] == "response.output_text.delta" or data["type"] in ENDS:
                break
    response_id = seen[0]["response"]["id"]

    rest = resume(http, response_id, seen[-1]["sequence_number"])
    events = checked([(e["type"], e) for e in seen + rest])
    assert events[0]["sequence_number"] == seen[0]["sequence_number"]
    assert events[-1]["type"] in ENDS, events[-1]

    stored = http.get(f"{URL}/{response_id}").json()
    assert stored["status"] in {"completed", "incomplete"}, stored
    final = events[-1]["response"]
    assert stored["output"] == final["output"]
    text = "".join(
        part["text"] for item in final["output"] if item["type"] == "message"
        for part in item["content"] if part["type"] == "output_text"
    )  # fmt: skip
    assert streamed_text(events) == text
