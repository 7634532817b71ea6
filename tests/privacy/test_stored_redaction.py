"""With `pii = "redact"`, what is stored holds placeholders only, on SQLite and PostgreSQL.

A server whose models are served by the project's fake upstream (it echoes the last user
message, so its answers carry the placeholders it was sent) gets an e-mail address, a phone
number, a card number and an IBAN in every kind of request that stores something: chat
completions (plain, streamed, the seed's route), responses (stored, chained, background,
streamed in the background, with instructions), conversations and their items, batches (run
by the workers, and sent whole to the upstream's Batch API) and a document analysis. The
client gets the originals back where it is answered at once; then every row of every table is
read raw and none of the originals may be in it, in any of their spellings, and the upstream
never saw them either. The one exception is a file the client uploaded itself (a batch's
input file): it is kept as it was uploaded, as the Files API returns it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from sqlalchemy import inspect, text

from aiservice.privacy import find_pii
from aiservice.store.database import Database
from aiservice.testing.fake_upstream import FakeUpstream
from aiservice.testing.wire import DEFAULT_REPLY_PREFIX, content_text
from analysis_support import stage_reply
from batch_support import chat_line, file_lines, submit, wait_for
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    bearer,
    run_in_thread,
    sse_events,
    start_server,
    stop_server,
    wait_until,
)

FAKE = "fake-mini"  # its lines run on aiservice's workers
VENDOR = "vendor-mini"  # its batches go whole to the upstream's Batch API
EMAIL = "claire.martin@exemple-client.fr"
PHONE = "06 98 76 54 32"
CARD = "4012 8888 8888 1881"
IBAN = "FR76 3000 6000 0112 3456 7890 189"
PERSONAL = f"Contact {EMAIL} or {PHONE}; card {CARD}; IBAN {IBAN}."
# Each original in every spelling a store could keep it in.
SPELLINGS = {
    "e-mail": [EMAIL],
    "phone": [PHONE, PHONE.replace(" ", ""), "+33698765432", "698765432"],
    "card": [CARD, CARD.replace(" ", "")],
    "iban": [IBAN, IBAN.replace(" ", "")],
}
ANALYSIS_PATH = "/api/ai/documents/analyses"
PLACEHOLDER = re.compile(r"<(EMAIL|PHONE|CARD|IBAN)_\d+>")


def echo_or_stage(body: dict[str, Any]) -> str:
    """A document analysis stage gets valid JSON of its schema; anything else is echoed."""
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return stage_reply(body)
    user = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    return DEFAULT_REPLY_PREFIX + (content_text(user[-1].get("content")) if user else "")


@dataclass
class Stored:
    """The server after the flow, with what the client was answered."""

    server: RunningServer
    answers: dict[str, str] = field(default_factory=dict)
    input_file_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(reply=echo_or_stage) as upstream:
        yield upstream


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stored(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeUpstream,
    postgres_databases: PostgresDatabases,
) -> Iterator[Stored]:
    home: Path = tmp_path_factory.mktemp(f"aiservice-redacted-{request.param}")
    models = "".join(
        f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{fake.base_url}"\n'
        f'upstream_model = "gpt-4o-mini"\n{extra}\n'
        for name, extra in ((FAKE, ""), (VENDOR, 'batch = "upstream"'))
    )
    (home / "config.toml").write_text(
        f'[[models]]\nname = "smollm2-135m-instruct"\n\n{models}\n[pii]\nmode = "redact"\n',
        encoding="utf-8",
    )
    env: dict[str, str | None] = {
        "DATABASE_URL": None,
        "AISERVICE_DATABASE_URL": None,
        "AISERVICE_WORKER_POLL_S": "0.1",
        "AISERVICE_UPSTREAM_BATCH_POLL_S": "0.2",
    }
    if request.param == "postgres":
        env["DATABASE_URL"] = postgres_databases.create()
    fake.reset()
    server = start_server(home, env=env)
    try:
        result = Stored(server)
        sdk = OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
        with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=60) as http:
            _chat(sdk, http, result)
            _responses(sdk, http, result)
            _conversation(sdk, result)
            _batches(sdk, result)
            _analysis(http, result)
        yield result
    finally:
        stop_server(server)


def _chat(sdk: OpenAI, http: httpx.Client, result: Stored) -> None:
    messages = [
        {"role": "system", "content": f"The customer: {EMAIL}."},
        {"role": "user", "content": PERSONAL},
    ]
    plain = sdk.chat.completions.create(model=FAKE, messages=messages, store=True)  # type: ignore[arg-type]
    result.answers["chat"] = plain.choices[0].message.content or ""
    body = {"model": FAKE, "messages": messages, "store": True, "stream": True}
    streamed = http.post("/v1/chat/completions", json=body)
    assert streamed.status_code == 200, streamed.text
    chunks = [json.loads(event) for event in sse_events(streamed) if event != "[DONE]"]
    result.answers["chat stream"] = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
    )
    seed = http.post("/api/ai/chat/completions", json={**body, "stream": False})
    assert seed.status_code == 200, seed.text
    result.answers["seed"] = seed.json()["choices"][0]["message"]["content"]


def _responses(sdk: OpenAI, http: httpx.Client, result: Stored) -> None:
    first = sdk.responses.create(model=FAKE, input=PERSONAL, instructions=f"Write to {EMAIL}.")
    result.answers["response"] = first.output_text
    second = sdk.responses.create(model=FAKE, input=f"And {PHONE}?", previous_response_id=first.id)
    result.answers["chained response"] = second.output_text
    queued = sdk.responses.create(model=FAKE, input=PERSONAL, background=True)
    body = {"model": FAKE, "input": PERSONAL, "background": True, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as streamed:
        assert streamed.status_code == 200
        events = list(streamed.iter_lines())
    assert any("response.completed" in line for line in events), events[-3:]
    wait_until(
        lambda: sdk.responses.retrieve(queued.id).status == "completed",
        what="the background response",
    )


def _conversation(sdk: OpenAI, result: Stored) -> None:
    item = {"type": "message", "role": "user", "content": PERSONAL}
    conversation = sdk.conversations.create(items=[item])  # type: ignore[list-item]
    added = sdk.conversations.items.create(conversation.id, items=[item])  # type: ignore[list-item]
    result.answers["conversation items"] = added.model_dump_json()
    turn = sdk.responses.create(model=FAKE, input=PERSONAL, conversation=conversation.id)
    result.answers["conversation turn"] = turn.output_text


def _batches(sdk: OpenAI, result: Stored) -> None:
    for model in (FAKE, VENDOR):
        lines = [chat_line(f"{model}-{n}", model, PERSONAL) for n in range(2)]
        batch = wait_for(sdk, submit(sdk, lines).id)
        assert batch.status == "completed", batch
        assert len(file_lines(sdk, batch.output_file_id)) == 2
        result.input_file_ids.append(batch.input_file_id)


def _analysis(http: httpx.Client, result: Stored) -> None:
    document = "\n\n".join(f"Part {n}. {PERSONAL} " + "word " * 400 for n in range(3))
    created = http.post(ANALYSIS_PATH, json={"text": document, "model": FAKE, "chunk_tokens": 300})
    assert created.status_code == 200, created.text
    analysis_id = created.json()["id"]

    def ended() -> dict[str, Any] | None:
        body = http.get(f"{ANALYSIS_PATH}/{analysis_id}").json()
        return body if body["status"] in {"completed", "failed", "cancelled"} else None

    assert wait_until(ended, timeout=120, what="the analysis")["status"] == "completed"


def table_texts(server: RunningServer, skip_file_ids: list[str]) -> dict[str, str]:
    """Every table of the server's database, each row as text (bytes decoded); the chunks
    of the files in `skip_file_ids` left out."""
    url = server.database_url or f"sqlite+aiosqlite:///{server.home / 'aiservice.db'}"

    async def read() -> dict[str, str]:
        database = Database(url)
        texts: dict[str, str] = {}
        try:
            async with database.engine.connect() as connection:
                names = await connection.run_sync(lambda c: inspect(c).get_table_names())
                skipped = {
                    row.seq
                    for row in await connection.execute(text("SELECT id, seq FROM files"))
                    if row.id in skip_file_ids
                }
                for name in names:
                    rows = (await connection.execute(text(f'SELECT * FROM "{name}"'))).mappings()
                    kept = [
                        r for r in rows if name != "file_chunks" or r["file_seq"] not in skipped
                    ]
                    texts[name] = "\n".join(_row_text(row) for row in kept)
        finally:
            await database.close()
        return texts

    return run_in_thread(read)


def _row_text(row: Any) -> str:
    values = [
        value.decode("utf-8", "replace") if isinstance(value, bytes | memoryview) else value
        for value in (bytes(v) if isinstance(v, memoryview) else v for v in row.values())
    ]
    return json.dumps(values, default=str, ensure_ascii=False)


def originals_in(found_in: str) -> list[str]:
    return [kind for kind, spellings in SPELLINGS.items() if any(s in found_in for s in spellings)]


def test_the_prompt_holds_each_kind_of_personal_data():
    assert {str(finding.kind) for finding in find_pii(PERSONAL)} == {
        "EMAIL",
        "PHONE",
        "CARD",
        "IBAN",
    }


def test_the_client_is_answered_with_the_originals(stored: Stored):
    """What is answered at once gets the originals back (so placeholders went through)."""
    for name, answer in stored.answers.items():
        assert originals_in(answer), (name, answer)
        assert not PLACEHOLDER.search(answer), (name, answer)


def test_no_table_holds_an_original(stored: Stored):
    texts = table_texts(stored.server, stored.input_file_ids)
    leaked = {name: originals_in(rows) for name, rows in texts.items() if originals_in(rows)}
    assert leaked == {}, leaked
    # And the placeholders are there, where the texts are kept.
    for name in (
        "chat_completions",
        "responses",
        "response_events",
        "conversation_items",
        "batch_lines",
        "file_chunks",
        "document_analyses",
    ):
        assert "<EMAIL_1>" in texts[name], name


def test_the_upstream_never_sees_an_original(stored: Stored, fake: FakeUpstream):
    sent = [json.dumps(record.json) for record in fake.requests]
    sent += [
        fake.app.files.get(meta["id"]).content.decode("utf-8", "replace")  # type: ignore[union-attr]
        for meta in fake.app.files.listed()
    ]
    assert len(sent) > 10
    leaked = [originals_in(body) for body in sent if originals_in(body)]
    assert leaked == [], leaked
