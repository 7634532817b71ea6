"""Nothing sensitive in the logs: a real server (log level INFO, the default) runs the whole
HTTP flow — accounts and keys through the admin API, chat completions plain, streamed and
stored, stored completions read, updated and deleted, responses plain, stored, chained and in
the background, a conversation, a moderation, embeddings, a file and a batch, the seed routes
with Basic auth, wrong credentials, a malformed body and an upstream failure — and then every
line it wrote is scanned for the prompts, the answers, the keys, the password, the e-mail
address, the `user` field and the Basic credentials.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from batch_support import chat_line, file_lines, submit, wait_for
from support import (
    MASTER_KEY,
    RunningServer,
    basic_auth,
    bearer,
    sse_events,
    start_server,
    stop_server,
    wait_until,
)

LOCAL = "smollm2-135m-instruct"
FAKE = "fake-mini"  # served by the fake upstream: echoes the prompt, fails on demand
SEED = "/api/ai/chat/completions"
WINDOW = 20  # an answer's run of this many characters must not appear in a log line


@dataclass
class Sensitive:
    """What the flow sent and received that no log line may show, by what it is."""

    values: dict[str, str] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def marker(self, label: str) -> str:
        """A unique word for a prompt, remembered as prompt text."""
        value = f"zq{label}{secrets.token_hex(5)}"
        self.values[f"prompt:{label}"] = value
        return value

    def answer(self, text: str | None) -> None:
        if text:
            self.answers.append(text)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-log-hygiene")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{LOCAL}"\n\n'
        f'[[models]]\nname = "{FAKE}"\nprovider = "openai"\nbase_url = "{fake.base_url}"\n'
        'upstream_model = "gpt-4o-mini"\nmax_retries = 0\n\n'
        '[pii]\nmode = "flag"\n',
        encoding="utf-8",
    )
    env = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None, "AISERVICE_WORKER_POLL_S": "0.1"}
    running = start_server(home, env=env)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def flow(server: RunningServer, fake: FakeUpstream) -> Sensitive:
    """The whole flow, run once; what it must not find in the logs."""
    sensitive = Sensitive()
    key = _accounts(server, sensitive)
    sdk = OpenAI(base_url=server.api_url, api_key=key, max_retries=0, timeout=120)
    with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=120) as http:
        _chat(sdk, http, sensitive)
        _stored_completions(sdk, sensitive)
        _responses(sdk, sensitive)
        _conversation(sdk, sensitive)
        _moderation_embeddings_files(sdk, sensitive)
        _batch(sdk, sensitive)
        _seed_routes(server, sensitive)
        _failures(server, http, fake, sensitive)
    # Every request's access line is written when it ends: wait for the last one.
    last = sensitive.request_ids[-1]
    wait_until(lambda: last in server.log_path.read_text(), what="the flow's last access line")
    return sensitive


def _accounts(server: RunningServer, sensitive: Sensitive) -> str:
    email = f"ann.{secrets.token_hex(4)}@privacy-example.org"
    password = f"pw-{secrets.token_hex(8)}"
    sensitive.values |= {"master key": MASTER_KEY, "e-mail": email, "password": password}
    with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30) as admin:
        user = admin.post("/v1/admin/users", json={"email": email, "password": password})
        assert user.status_code == 201, user.text
        created = admin.post("/v1/admin/keys", json={"email": email, "name": "log-scan"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        # The admin routes that name a user by e-mail, in their path.
        limits = admin.put(f"/v1/admin/users/{email}/rate_limits", json={"rpm": 10_000})
        assert limits.status_code == 200, limits.text
        safety = admin.put(f"/v1/admin/users/{email}/safety", json={"pii": "flag"})
        assert safety.status_code == 200, safety.text
        sensitive.request_ids.append(safety.headers["x-request-id"])
    sensitive.values["api key"] = key
    sensitive.values["api key secret"] = key.removeprefix("sk-")
    for label, secret in (("right", password), ("wrong", "wrong-pass-9f8e7d")):
        credentials = f"{email}:{secret}".encode()
        sensitive.values[f"basic {label}"] = base64.b64encode(credentials).decode()
    return key


def _chat(sdk: OpenAI, http: httpx.Client, sensitive: Sensitive) -> None:
    end_user = f"end-user-{secrets.token_hex(5)}"
    sensitive.values["user field"] = end_user
    plain = sdk.chat.completions.create(
        model=LOCAL,
        messages=[
            {"role": "system", "content": f"Be brief {sensitive.marker('system')}."},
            {"role": "user", "content": f"Say hello to {sensitive.marker('plain')}."},
        ],
        max_tokens=8,
    )
    sensitive.answer(plain.choices[0].message.content)
    streamed = http.post(
        "/v1/chat/completions",
        json={
            "model": LOCAL,
            "messages": [{"role": "user", "content": f"Count {sensitive.marker('stream')}"}],
            "max_tokens": 8,
            "stream": True,
        },
    )
    assert streamed.status_code == 200, streamed.text
    deltas = [
        json.loads(event)["choices"][0]["delta"].get("content") or ""
        for event in sse_events(streamed)
        if event != "[DONE]" and json.loads(event)["choices"]
    ]
    sensitive.answer("".join(deltas))
    # An address in the prompt: the `flag` policy finds it, and logs only its kind.
    with_email = f"Write to {sensitive.values['e-mail']} about {sensitive.marker('pii')}."
    stored = sdk.chat.completions.create(
        model=LOCAL,
        messages=[{"role": "user", "content": with_email}],
        max_tokens=8,
        store=True,
        metadata={"user_id": sensitive.marker("metadata"), "topic": "scan"},
        user=end_user,
    )
    sensitive.answer(stored.choices[0].message.content)
    sensitive.values["stored id"] = stored.id


def _stored_completions(sdk: OpenAI, sensitive: Sensitive) -> None:
    completion_id = sensitive.values.pop("stored id")
    listed = sdk.chat.completions.list(metadata={"topic": "scan"})
    assert [c.id for c in listed.data] == [completion_id]
    assert sdk.chat.completions.retrieve(completion_id).id == completion_id
    messages = sdk.chat.completions.messages.list(completion_id)
    assert sensitive.values["prompt:pii"] in (messages.data[0].content or "")
    updated = sdk.chat.completions.update(completion_id, metadata={"topic": "scanned"})
    assert updated.metadata == {"topic": "scanned"}
    assert sdk.chat.completions.delete(completion_id).deleted


def _responses(sdk: OpenAI, sensitive: Sensitive) -> None:
    plain = sdk.responses.create(
        model=LOCAL,
        input=f"Greet {sensitive.marker('response')}",
        instructions=f"Answer {sensitive.marker('instructions')}",
        max_output_tokens=16,
        store=False,
    )
    sensitive.answer(plain.output_text)
    first = sdk.responses.create(
        model=LOCAL, input=f"Name {sensitive.marker('chain')}", max_output_tokens=16
    )
    sensitive.answer(first.output_text)
    second = sdk.responses.create(
        model=LOCAL,
        input=f"And {sensitive.marker('followup')}",
        previous_response_id=first.id,
        max_output_tokens=16,
    )
    sensitive.answer(second.output_text)
    queued = sdk.responses.create(
        model=LOCAL,
        input=f"Later {sensitive.marker('background')}",
        background=True,
        max_output_tokens=16,
    )

    def finished():
        body = sdk.responses.retrieve(queued.id)
        return body if body.status not in ("queued", "in_progress") else None

    done = wait_until(finished, timeout=90, what="the background response")
    assert done.status in ("completed", "incomplete"), done  # incomplete: max_output_tokens
    sensitive.answer(done.output_text)


def _conversation(sdk: OpenAI, sensitive: Sensitive) -> None:
    item = {"type": "message", "role": "user", "content": f"Hi {sensitive.marker('conv')}"}
    conversation = sdk.conversations.create(items=[item], metadata={"topic": "scan"})
    added = {"type": "message", "role": "user", "content": f"Also {sensitive.marker('item')}"}
    sdk.conversations.items.create(conversation.id, items=[added])  # type: ignore[list-item]
    assert len(sdk.conversations.items.list(conversation.id).data) == 2
    answer = sdk.responses.create(
        model=LOCAL,
        input=f"Reply {sensitive.marker('turn')}",
        conversation=conversation.id,
        max_output_tokens=16,
    )
    sensitive.answer(answer.output_text)


def _moderation_embeddings_files(sdk: OpenAI, sensitive: Sensitive) -> None:
    moderated = sdk.moderations.create(input=f"I will hurt {sensitive.marker('moderation')}")
    assert moderated.results
    embedded = sdk.embeddings.create(
        model="all-minilm-l6-v2", input=f"Embed {sensitive.marker('embedding')}"
    )
    assert embedded.data[0].embedding
    text = f"notes about {sensitive.marker('file')}\n".encode()
    uploaded = sdk.files.create(file=("notes.txt", text), purpose="user_data")
    assert sdk.files.content(uploaded.id).content == text
    assert sdk.files.delete(uploaded.id).deleted


def _batch(sdk: OpenAI, sensitive: Sensitive) -> None:
    lines = [
        chat_line(f"line-{n}", FAKE, f"Batch {sensitive.marker(f'batch{n}')}", max_tokens=8)
        for n in range(2)
    ]
    batch = wait_for(sdk, submit(sdk, lines).id)
    assert batch.status == "completed", batch
    for line in file_lines(sdk, batch.output_file_id):
        sensitive.answer(line["response"]["body"]["choices"][0]["message"]["content"])


def _seed_routes(server: RunningServer, sensitive: Sensitive) -> None:
    email, password = sensitive.values["e-mail"], sensitive.values["password"]
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Réponds à {sensitive.marker('seed')}"}],
        "max_tokens": 8,
        "store": True,
        "metadata": {"user_id": "123", "category": "email_response"},
    }
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        created = http.post(SEED, json=body, headers=basic_auth(email, password))
        assert created.status_code == 200, created.text
        assert created.json()["success"] is True
        sensitive.answer(created.json()["choices"][0]["message"]["content"])
        listed = http.get(SEED, headers=basic_auth(email, password))
        assert listed.status_code == 200, listed.text
        wrong = http.post(SEED, json=body, headers=basic_auth(email, "wrong-pass-9f8e7d"))
        assert wrong.status_code == 401, wrong.text
        stranger = f"nobody.{secrets.token_hex(4)}@privacy-example.org"
        sensitive.values["unknown e-mail"] = stranger
        unknown = http.post(SEED, json=body, headers=basic_auth(stranger, password))
        assert unknown.status_code == 401, unknown.text


def _failures(
    server: RunningServer, http: httpx.Client, fake: FakeUpstream, sensitive: Sensitive
) -> None:
    wrong_key = f"sk-{secrets.token_hex(20)}"
    sensitive.values["wrong key"] = wrong_key
    marked = {"role": "user", "content": f"Nope {sensitive.marker('refused')}"}
    refused = httpx.post(
        f"{server.api_url}/chat/completions",
        json={"model": LOCAL, "messages": [marked]},
        headers=bearer(wrong_key),
        timeout=30,
    )
    assert refused.status_code == 401, refused.text
    cut = f'{{"model": "{LOCAL}", "messages": [{{"role": "user", "content": "{marked["content"]}'
    malformed = http.post(
        "/v1/chat/completions", content=cut, headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400, malformed.text
    invalid_message = {"role": "wizard", "content": f"Bad {sensitive.marker('invalid')}"}
    invalid = http.post(
        "/v1/chat/completions", json={"model": LOCAL, "messages": [invalid_message]}
    )
    assert invalid.status_code == 400, invalid.text
    fake.add_fault(Fault(status=500, message=f"upstream saw {sensitive.marker('upstream')}"))
    failed = http.post(
        "/v1/chat/completions",
        json={"model": FAKE, "messages": [{"role": "user", "content": sensitive.marker("fail")}]},
    )
    assert failed.status_code >= 500, failed.text
    sensitive.request_ids.append(failed.headers["x-request-id"])


def leaks(log_lines: list[str], sensitive: Sensitive) -> list[str]:
    """What of `sensitive` shows in the log lines: what it is, and the line it is in."""
    found = []
    for line in log_lines:
        lowered = line.lower()
        labels = [label for label, value in sensitive.values.items() if value.lower() in lowered]
        labels += [f"answer text {run!r}" for run in _answer_runs(line, sensitive.answers)]
        found += [f"{label} in {line[:300]}" for label in labels]
    return found


def _answer_runs(line: str, answers: list[str]) -> list[str]:
    """The first run of WINDOW characters (half of them word characters) of each answer that
    `line` holds."""
    runs = []
    for answer in answers:
        for start in range(max(len(answer) - WINDOW + 1, 0)):
            run = answer[start : start + WINDOW]
            if len(re.findall(r"\w", run)) >= WINDOW // 2 and run in line:
                runs.append(run)
                break
    return runs


def test_the_scan_finds_what_it_looks_for():
    """The scanner itself: a planted value, a planted stretch of an answer, nothing else."""
    sensitive = Sensitive({"password": "hunter2-secret"}, ["The weather in Lyon is sunny today."])
    line = '{"message": "request", "path": "/v1/chat/completions"}'
    assert leaks([line], sensitive) == []
    planted = '{"note": "HUNTER2-SECRET"}'
    assert leaks([line, planted], sensitive) == [f"password in {planted}"]
    echoed = '{"x": "in Lyon is sunny today"}'
    assert leaks([echoed], sensitive) == [f"answer text 'in Lyon is sunny tod' in {echoed}"]


def test_no_log_line_holds_prompts_answers_keys_passwords_or_addresses(
    server: RunningServer, flow: Sensitive
):
    lines = server.log_lines()
    # The capture is real: the access lines of the flow's requests are in it.
    access = [line for line in lines if line.get("logger") == "aiservice.access"]
    assert len(access) > 40, len(access)
    assert set(flow.request_ids) <= {line.get("request_id") for line in access}
    assert any(line.get("message") == "personal data found" for line in lines)
    assert len(flow.answers) >= 10, flow.answers
    shown = [line for line in lines if line.get("level") != "DEBUG"]
    found = leaks([json.dumps(line, ensure_ascii=False) for line in shown], flow)
    assert found == [], found
