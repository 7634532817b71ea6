"""The stateful APIs on an upstream model, on both storage backends: what aiservice keeps for
a local model it keeps the same way for a model served by an OpenAI-compatible upstream (here
the project's fake upstream over real HTTP): stored completions, response chains, streamed and
background responses, conversations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream
from support import (
    MASTER_KEY,
    PostgresDatabases,
    assert_matches_schema,
    start_server,
    stop_server,
    wait_until,
)

MODEL = "gpt-4o-mini"  # configured below as an upstream model, as with OPENAI_API_KEY


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
    postgres_databases: PostgresDatabases,
) -> Iterator[tuple[OpenAI, httpx.Client]]:
    home: Path = tmp_path_factory.mktemp(f"aiservice-upstream-{request.param}")
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\nbase_url = "{upstream.base_url}"\n',
        encoding="utf-8",
    )
    env: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
    if request.param == "postgres":
        env["DATABASE_URL"] = postgres_databases.create()
    server = start_server(home, env=env)
    sdk = OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60
    ) as http:
        yield sdk, http
    stop_server(server)


def reply_to(text: str) -> str:
    return f"Fake reply to: {text}"


def test_stored_completions_list_filter_update_and_delete(gateway):
    sdk, http = gateway
    tag = {"run": json.dumps(id(gateway))}
    created = [
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"question {n}"}],
            store=True,
            metadata={**tag, "n": str(n)},
        )
        for n in range(3)
    ]
    assert [c.model for c in created] == [MODEL] * 3
    listed = [c.id for c in sdk.chat.completions.list(metadata=tag, model=MODEL)]
    assert listed == [c.id for c in created]
    stored = sdk.chat.completions.retrieve(created[1].id)
    assert stored.choices[0].message.content == reply_to("question 1")
    assert_matches_schema(
        http.get(f"/v1/chat/completions/{created[1].id}").json(), "CreateChatCompletionResponse"
    )
    messages = list(sdk.chat.completions.messages.list(created[1].id))
    assert [m.content for m in messages] == ["question 1"]
    updated = sdk.chat.completions.update(created[2].id, metadata={"n": "two"})
    assert updated.metadata == {"n": "two"}
    sdk.chat.completions.delete(created[0].id)
    assert [c.id for c in sdk.chat.completions.list(metadata=tag)] == [created[1].id]


def test_a_response_chain_is_kept_and_replayed_to_the_upstream(gateway, upstream):
    sdk, http = gateway
    first = sdk.responses.create(model=MODEL, input="one", instructions="Be brief.")
    second = sdk.responses.create(model=MODEL, input="two", previous_response_id=first.id)
    third = sdk.responses.create(model=MODEL, input="three", previous_response_id=second.id)
    assert third.output_text == reply_to("three")
    sent = upstream.requests[-1].json["messages"]
    assert [m["content"] for m in sent] == [
        "one",
        reply_to("one"),
        "two",
        reply_to("two"),
        "three",
    ]  # the chain in order, without the first response's instructions
    body = http.get(f"/v1/responses/{third.id}").json()
    assert_matches_schema(body, "Response")
    assert body["output"][0]["content"][0]["text"] == reply_to("three")
    items = list(sdk.responses.input_items.list(third.id))
    assert [item.content[0].text for item in items] == ["three"]
    sdk.responses.delete(second.id)
    response = http.post(
        "/v1/responses", json={"model": MODEL, "input": "x", "previous_response_id": third.id}
    )
    assert response.status_code == 404  # a link of the chain is gone


def test_a_streamed_response_is_stored_whole(gateway):
    sdk, _ = gateway
    with sdk.responses.stream(model=MODEL, input="streamed question") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == reply_to("streamed question") == final.output_text
    assert sdk.responses.retrieve(final.id).output_text == final.output_text


def test_background_responses_run_stream_and_resume(gateway):
    sdk, http = gateway
    job = sdk.responses.create(model=MODEL, input="later", background=True)
    assert job.status == "queued"
    done = wait_until(
        lambda: (r := sdk.responses.retrieve(job.id)).status == "completed" and r,
        timeout=30,
        what="the background response",
    )
    assert done.output_text == reply_to("later")

    with http.stream(
        "POST",
        "/v1/responses",
        json={"model": MODEL, "input": "streamed later", "background": True, "stream": True},
    ) as response:
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    response_id = events[0]["response"]["id"]
    with http.stream(
        "GET", f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": 2}
    ) as response:
        replayed = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]
    assert replayed == events[3:]


def test_conversations_keep_the_turns_in_order(gateway, upstream):
    sdk, _ = gateway
    conversation = sdk.conversations.create(items=[{"role": "system", "content": "Be kind."}])
    for text in ("hello", "and again"):
        sdk.responses.create(model=MODEL, input=text, conversation=conversation.id)
    sent = upstream.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    texts = [item.content[0].text for item in items]
    assert texts == ["Be kind.", "hello", reply_to("hello"), "and again", reply_to("and again")]
