"""The operator's content policy in the config, on a server whose chat model and moderation
classifier are the fake upstream over real HTTP: `[moderation] mode = "score"` moderates
every request, `upstream_base_url` sends moderation upstream, `[pii] mode = "redact"` keeps
personal data from the upstream and the store and gives it back to the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream
from aiservice.testing.moderation_replies import FLAG_MARK
from support import MASTER_KEY, RunningServer, sse_events, start_server, stop_server

MODEL = "gpt-4o-mini"
EMAIL, PHONE = "jean.dupont@example.com", "+33 6 12 34 56 78"
PERSONAL = f"Write to {EMAIL} or call {PHONE} about the invoice."


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:  # replies "Fake reply to: <the last user message>"
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-policy")
    (home / "config.toml").write_text(
        f'[moderation]\nmode = "score"\nupstream_base_url = "{upstream.base_url}"\n\n'
        '[pii]\nmode = "redact"\n\n'
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\nbase_url = "{upstream.base_url}"\n',
        encoding="utf-8",
    )
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> OpenAI:
    return OpenAI(base_url=gateway.api_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


def _last_body(upstream: FakeUpstream, path: str) -> dict:
    return [r for r in upstream.requests if r.path == path][-1].json


def test_moderations_go_to_the_configured_upstream(sdk: OpenAI, upstream: FakeUpstream) -> None:
    answer = sdk.moderations.create(input=["fine", f"rude {FLAG_MARK}"])
    assert [r.flagged for r in answer.results] == [False, True]
    assert answer.results[1].categories.harassment
    assert _last_body(upstream, "/v1/moderations")["input"] == ["fine", f"rude {FLAG_MARK}"]


def test_image_parts_are_forwarded_to_an_upstream_classifier(sdk: OpenAI) -> None:
    answer = sdk.moderations.create(
        input=[
            {"type": "text", "text": "a picture"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    )
    assert answer.results[0].category_applied_input_types.violence == ["text", "image"]


def test_the_configured_policy_moderates_a_request_that_asks_for_none(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"hello {FLAG_MARK}"}]
    )
    assert completion.choices[0].finish_reason == "stop"  # score: reported, not blocked
    assert completion.moderation.input.results[0].flagged
    assert completion.moderation.output.results[0].flagged  # the fake echoes the mark
    # The fake answers with the name it was asked for: the configured upstream_model.
    assert completion.moderation.input.model == "omni-moderation-latest"


def test_personal_data_never_reaches_the_upstream_and_comes_back(
    sdk: OpenAI, upstream: FakeUpstream
) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PERSONAL}], store=True
    )
    sent = json.dumps(_last_body(upstream, "/v1/chat/completions"))
    assert EMAIL not in sent and "6 12 34 56 78" not in sent
    assert "<EMAIL_1>" in sent and "<PHONE_1>" in sent
    answer = completion.choices[0].message.content
    assert EMAIL in answer and PHONE in answer and "<EMAIL_1>" not in answer
    stored = sdk.chat.completions.retrieve(completion.id)
    assert "<EMAIL_1>" in stored.choices[0].message.content
    messages = sdk.chat.completions.messages.list(completion.id)
    assert all(EMAIL not in (m.content or "") for m in messages.data)


def test_a_redacted_stream_is_restored_for_the_client(
    gateway: RunningServer, upstream: FakeUpstream
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": PERSONAL}], "stream": True}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.stream(
        "POST", f"{gateway.api_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as answer:
        chunks = [json.loads(e) for e in sse_events(answer)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == f"Fake reply to: {PERSONAL}"
    assert "<EMAIL_1>" in json.dumps(_last_body(upstream, "/v1/chat/completions"))


def test_a_redacted_response_is_restored_for_the_client(
    sdk: OpenAI, upstream: FakeUpstream
) -> None:
    response = sdk.responses.create(model=MODEL, input=PERSONAL, instructions=f"Reply to {EMAIL}.")
    assert response.output_text.endswith(PERSONAL)
    assert response.instructions == f"Reply to {EMAIL}."
    model_calls = [r for r in upstream.requests if r.path != "/v1/moderations"]
    sent = json.dumps(model_calls[-1].json)
    assert EMAIL not in sent and "<EMAIL_1>" in sent
    stored = sdk.responses.retrieve(response.id)
    assert EMAIL not in stored.output_text and "<EMAIL_1>" in stored.output_text
    events = list(sdk.responses.create(model=MODEL, input=PERSONAL, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.endswith(PERSONAL)
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_redactions_are_counted_and_no_log_line_holds_the_data(
    gateway: RunningServer, sdk: OpenAI
) -> None:
    def redacted_emails() -> float:
        metrics = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
        series = 'aiservice_pii_findings_total{action="redacted",kind="EMAIL"}'
        line = next((x for x in metrics.splitlines() if x.startswith(series)), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = redacted_emails()
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PERSONAL}])
    assert redacted_emails() == before + 1
    log = gateway.log_path.read_text(encoding="utf-8")
    assert "personal data found" in log and EMAIL not in log and "12 34 56 78" not in log
