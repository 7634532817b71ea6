"""`aiservice.AIService` and `aiservice.ai_service`: the e-mail manager's Python object (seed 000).

Every method runs in both modes: embedded (in this process, on a fresh AISERVICE_HOME) and
remote (against a real server). Results are the seed's dictionaries; API errors never raise.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from aiservice import AIService
from support import (
    MASTER_KEY,
    ROOT,
    RunningServer,
    free_port,
    start_server,
    stop_server,
    wait_for_log_line,
    wait_until,
)

LOCAL_MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Hello!"}]
# SmolLM2's end-of-generation tokens, banned so that a generation runs to its max_tokens.
NO_END = {"0": -100, "2": -100, "4": -100}
COMPLETION_KEYS = {"success", "id", "model", "choices", "usage", "created"}
# Whatever the test process's environment says, the embedded services use their home's SQLite.
DATABASE_VARIABLES = ("DATABASE_URL", "AISERVICE_DATABASE_URL")
SEND_EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "description": "Envoie un email",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    },
}
# Seed 000's "Démarrage rapide", after its import line, exactly as the seed prints it.
SEED_QUICK_START_BODY = """
# 2. Première completion
result = ai_service.create_chat_completion(
    messages=[
        {"role": "user", "content": "Hello!"}
    ],
    model="gpt-4o-mini"
)

# 3. Afficher résultat
if result['success']:
    print(result['choices'][0]['message']['content'])
    print(f"Tokens: {result['usage']['total_tokens']}")
"""


def embedded_env(home: Path) -> dict[str, str]:
    """The test process's environment for a fresh home: no AISERVICE_* nor database URL."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("AISERVICE_") and name.upper() not in DATABASE_VARIABLES
    }
    return {**clean, "AISERVICE_HOME": str(home)}


@pytest.fixture(scope="module")
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AISERVICE_HOME (and nothing else of aiservice's) set for this module's embedded services."""
    home = tmp_path_factory.mktemp("embedded-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith("AISERVICE_") or name.upper() in DATABASE_VARIABLES:
                patch.delenv(name)
        patch.setenv("AISERVICE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def embedded(embedded_home: Path) -> Iterator[AIService]:
    service = AIService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def remote(server: RunningServer) -> Iterator[AIService]:
    service = AIService(base_url=server.base_url, api_key=MASTER_KEY, max_retries=0)
    yield service
    service.close()


@pytest.fixture(params=["embedded", "remote"])
def ai(request: pytest.FixtureRequest) -> AIService:
    return request.getfixturevalue(request.param)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["success"] is True, result
    return result


def failed(result: dict[str, Any]) -> str:
    assert set(result) == {"success", "error"}, result
    assert result["success"] is False
    assert isinstance(result["error"], str) and result["error"].strip(), result
    assert "Traceback" not in result["error"]
    return result["error"]


def text_of(result: dict[str, Any], index: int = 0) -> str:
    return result["choices"][index]["message"]["content"]


def tag() -> dict[str, str]:
    """Metadata unique to one test, so that listings see only that test's completions."""
    return {"test": uuid.uuid4().hex}


# --- import and construction -------------------------------------------------------------------


def test_importing_aiservice_loads_nothing_and_touches_no_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = (
        "import sys\n"
        "from aiservice import AIService, ai_service\n"
        "AIService()\n"
        "heavy = ['fastapi', 'llama_cpp', 'sqlalchemy', 'openai']\n"
        "print([m for m in heavy if m in sys.modules], ai_service.mode)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=embedded_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[] embedded"
    assert not home.exists()


def test_modes_and_their_arguments() -> None:
    assert AIService().mode == "embedded"
    assert AIService(base_url="http://127.0.0.1:5000", api_key="sk-x").mode == "remote"
    with pytest.raises(ValueError):
        AIService(api_key="sk-x")  # a key without a server is a mistake, not a mode


# --- create_chat_completion ------------------------------------------------------------------


def test_create_returns_the_seed_dictionary(ai: AIService) -> None:
    result = ok(ai.create_chat_completion(messages=HELLO, model="gpt-4o-mini", max_tokens=30))
    assert set(result) == COMPLETION_KEYS
    assert result["id"].startswith("chatcmpl-")
    assert result["model"] == LOCAL_MODEL
    assert isinstance(result["created"], int)
    (choice,) = result["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_seed_defaults_apply_when_nothing_is_given(ai: AIService) -> None:
    # model="gpt-4o", temperature=1.0, n=1...: the seed's signature, served by the local model.
    result = ok(ai.create_chat_completion(messages=HELLO, max_tokens=5))
    assert result["model"] == LOCAL_MODEL
    assert len(result["choices"]) == 1


def test_n_gives_that_many_choices(ai: AIService) -> None:
    result = ok(
        ai.create_chat_completion(
            messages=[{"role": "user", "content": "Suggest a short reply to: see you tomorrow?"}],
            n=3,
            temperature=0.9,
            max_tokens=20,
        )
    )
    assert [choice["index"] for choice in result["choices"]] == [0, 1, 2]
    assert all(isinstance(text_of(result, i), str) for i in range(3))


def test_json_object_format_gives_parsable_json(ai: AIService) -> None:
    result = ok(
        ai.create_chat_completion(
            messages=[
                {"role": "system", "content": "Extrais les informations et retourne en JSON."},
                {"role": "user", "content": "Reply with a JSON object giving a cat's name."},
            ],
            response_format={"type": "json_object"},
            temperature=0.3,
            seed=0,
            max_tokens=100,
        )
    )
    assert result["choices"][0]["finish_reason"] == "stop"
    assert isinstance(json.loads(text_of(result)), dict)


def test_tools_give_a_tool_call(ai: AIService) -> None:
    result = ok(
        ai.create_chat_completion(
            messages=[
                {"role": "user", "content": "Envoie un email de bienvenue à john@example.com"}
            ],
            tools=[SEND_EMAIL],
            tool_choice={"type": "function", "function": {"name": "send_email"}},
            seed=0,
            max_tokens=120,
        )
    )
    message = result["choices"][0]["message"]
    assert message.get("tool_calls"), message  # the seed's own check
    call = message["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "send_email"
    assert set(json.loads(call["function"]["arguments"])) >= {"to", "subject", "body"}
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def test_other_openai_parameters_pass_through(ai: AIService) -> None:
    result = ok(
        ai.create_chat_completion(messages=HELLO, max_tokens=3, logit_bias=NO_END, user="u")
    )
    assert result["choices"][0]["finish_reason"] == "length"


# --- streaming -------------------------------------------------------------------------------


def test_stream_yields_sdk_chunks_whose_text_is_the_completion(ai: AIService) -> None:
    params: dict[str, Any] = {"messages": HELLO, "seed": 3, "temperature": 0.7, "max_tokens": 30}
    streamed = ok(ai.create_chat_completion(**params, stream=True))
    assert set(streamed) == {"success", "stream"}
    pieces = []
    chunks = list(streamed["stream"])
    for chunk in chunks:
        assert isinstance(chunk, ChatCompletionChunk)
        if chunk.choices[0].delta.content:  # seed 000's loop, on every chunk
            pieces.append(chunk.choices[0].delta.content)
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert "".join(pieces) == text_of(ok(ai.create_chat_completion(**params)))


def test_stream_with_n_has_a_choice_in_every_chunk(ai: AIService) -> None:
    streamed = ok(ai.create_chat_completion(messages=HELLO, n=2, max_tokens=5, stream=True))
    chunks = list(streamed["stream"])
    assert all(len(chunk.choices) == 1 for chunk in chunks)
    assert {chunk.choices[0].index for chunk in chunks} == {0, 1}


def test_stream_refusals_are_error_dicts_not_iterators(ai: AIService) -> None:
    assert "messages" in failed(ai.create_chat_completion(messages=[], stream=True))
    assert "nope" in failed(ai.create_chat_completion(messages=HELLO, model="nope", stream=True))


def closed_after_two_chunks(ai: AIService, max_tokens: int) -> None:
    streamed = ok(
        ai.create_chat_completion(
            messages=[{"role": "user", "content": "Tell me a long story about a lighthouse."}],
            max_tokens=max_tokens,
            logit_bias=NO_END,
            stream=True,
        )
    )
    stream = streamed["stream"]
    received = 0
    for chunk in stream:
        received += bool(chunk.choices[0].delta.content)
        if received == 2:
            break
    stream.close()


def test_closing_an_embedded_stream_stops_its_generation(
    embedded: AIService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiservice.providers.local")
    max_tokens = 4000  # minutes of generation on this model if nothing stopped it
    closed_after_two_chunks(embedded, max_tokens)
    (record,) = wait_until(
        lambda: [
            r
            for r in caplog.records
            if r.getMessage() == "generation cancelled"
            and getattr(r, "max_tokens", 0) == max_tokens
        ],
        what="the closed stream's 'generation cancelled' record",
    )
    assert 2 <= record.completion_tokens < max_tokens
    # The model is free again at once: the next call is not queued behind 4000 tokens.
    ok(embedded.create_chat_completion(messages=HELLO, max_tokens=3))


def test_closing_a_remote_stream_stops_its_generation(
    remote: AIService, server: RunningServer
) -> None:
    max_tokens = 3999  # distinct from the other cancellation tests sharing this server
    after = len(server.log_lines())
    closed_after_two_chunks(remote, max_tokens)
    line = wait_for_log_line(
        server,
        lambda line: (
            line.get("message") == "generation cancelled" and line.get("max_tokens") == max_tokens
        ),
        after=after,
        what="the closed stream's 'generation cancelled' line",
    )
    assert 2 <= line["completion_tokens"] < max_tokens


# --- stored completions --------------------------------------------------------------------


def test_stored_completion_lifecycle(ai: AIService) -> None:
    labels = tag()
    created = ok(
        ai.create_chat_completion(
            messages=[
                {"role": "system", "content": "Tu es un assistant email."},
                {"role": "user", "content": "Écris une réponse professionnelle."},
            ],
            model="gpt-4o-mini",
            temperature=0.7,
            max_tokens=20,
            store=True,
            metadata={**labels, "category": "email_response"},
        )
    )
    completion_id = created["id"]

    got = ok(ai.get_chat_completion(completion_id))
    assert set(got) == COMPLETION_KEYS | {"metadata"}
    assert got["metadata"] == {**labels, "category": "email_response"}
    assert text_of(got) == text_of(created)
    assert got["usage"] == created["usage"]

    updated = ok(
        ai.update_chat_completion(
            completion_id=completion_id, metadata={**labels, "status": "reviewed"}
        )
    )
    assert updated["metadata"] == {**labels, "status": "reviewed"}
    assert ok(ai.get_chat_completion(completion_id))["metadata"] == updated["metadata"]

    messages = ok(ai.get_chat_messages(completion_id=completion_id, limit=50, order="asc"))
    assert [(m["role"], m["content"]) for m in messages["messages"]] == [
        ("system", "Tu es un assistant email."),
        ("user", "Écris une réponse professionnelle."),
    ]
    assert messages["has_more"] is False
    newest = ok(ai.get_chat_messages(completion_id, limit=1, order="desc"))
    assert [m["role"] for m in newest["messages"]] == ["user"]
    assert newest["has_more"] is True
    rest = ok(ai.get_chat_messages(completion_id, limit=1, order="desc", after=newest["last_id"]))
    assert [m["role"] for m in rest["messages"]] == ["system"]

    deleted = ok(ai.delete_chat_completion(completion_id))
    assert deleted["deleted"] is True and deleted["id"] == completion_id
    assert "No stored chat completion" in failed(ai.get_chat_completion(completion_id))
    assert failed(ai.delete_chat_completion(completion_id))


def test_list_filters_and_pages(ai: AIService) -> None:
    labels = tag()
    ids = [
        ok(
            ai.create_chat_completion(
                messages=HELLO, max_tokens=3, store=True, metadata={**labels, "i": str(i)}
            )
        )["id"]
        for i in range(3)
    ]
    ok(ai.create_chat_completion(messages=HELLO, max_tokens=3, metadata=labels))  # not stored

    first = ok(ai.list_chat_completions(limit=2, order="asc", metadata_filter=labels))
    assert set(first) == {"success", "completions", "has_more", "last_id"}
    assert [c["id"] for c in first["completions"]] == ids[:2]
    assert first["has_more"] is True and first["last_id"] == ids[1]
    entry = first["completions"][0]
    assert {"id", "model", "created", "usage"} <= set(entry)
    assert entry["model"] == LOCAL_MODEL and entry["usage"]["total_tokens"] > 0

    second = ok(ai.list_chat_completions(limit=2, after=first["last_id"], metadata_filter=labels))
    assert [c["id"] for c in second["completions"]] == ids[2:]
    assert second["has_more"] is False

    newest = ok(ai.list_chat_completions(order="desc", metadata_filter={**labels, "i": "2"}))
    assert [c["id"] for c in newest["completions"]] == [ids[2]]
    by_model = ok(ai.list_chat_completions(model_filter=LOCAL_MODEL, metadata_filter=labels))
    assert [c["id"] for c in by_model["completions"]] == ids
    other = ok(ai.list_chat_completions(model_filter="gpt-4-turbo", metadata_filter=labels))
    assert other["completions"] == [] and other["last_id"] is None and other["has_more"] is False
    # The seed's analytics loop.
    total = sum(c["usage"]["total_tokens"] for c in by_model["completions"])
    assert total > 0


# --- errors ----------------------------------------------------------------------------------


def test_api_errors_are_dicts_never_exceptions(ai: AIService) -> None:
    assert "messages" in failed(ai.create_chat_completion(messages=[]))
    assert "`nope`" in failed(ai.create_chat_completion(messages=HELLO, model="nope"))
    assert "temperature" in failed(ai.create_chat_completion(messages=HELLO, temperature=5))
    assert "bogus" in failed(ai.create_chat_completion(messages=HELLO, bogus=1))
    assert "metadata" in failed(
        ai.create_chat_completion(messages=HELLO, store=True, metadata={"k": "v" * 600})
    )
    unknown = "chatcmpl-doesnotexist"
    assert unknown in failed(ai.get_chat_completion(unknown))
    assert unknown in failed(ai.update_chat_completion(unknown, {"a": "b"}))
    assert unknown in failed(ai.delete_chat_completion(unknown))
    assert unknown in failed(ai.get_chat_messages(unknown))
    assert "limit" in failed(ai.list_chat_completions(limit=0))
    assert "order" in failed(ai.list_chat_completions(order="sideways"))
    assert unknown in failed(ai.list_chat_completions(after=unknown))


def test_same_errors_in_both_modes(embedded: AIService, remote: AIService) -> None:
    for call in (
        lambda ai: ai.create_chat_completion(messages=[]),
        lambda ai: ai.create_chat_completion(messages=HELLO, model="nope"),
        lambda ai: ai.get_chat_completion("chatcmpl-doesnotexist"),
        lambda ai: ai.list_chat_completions(limit=101),
    ):
        assert call(embedded) == call(remote)


def test_unreachable_server_is_an_error_dict() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AIService(base_url=url, api_key="sk-x", max_retries=0, timeout=5) as ai:
        assert url in failed(ai.create_chat_completion(messages=HELLO))
        assert url in failed(ai.list_chat_completions())


def test_wrong_key_is_an_error_dict(server: RunningServer) -> None:
    with AIService(base_url=server.base_url, api_key="sk-wrong", max_retries=0) as ai:
        assert "API key" in failed(ai.create_chat_completion(messages=HELLO))


def test_embedded_configuration_error_is_an_error_dict(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("retention_days = -1\n", encoding="utf-8")
    ai = AIService(config=config)
    error = failed(ai.create_chat_completion(messages=HELLO))
    assert str(config) in error and "retention_days" in error
    ai.close()


# --- embedded specifics --------------------------------------------------------------------


def test_embedded_service_uses_the_home_and_restarts_after_close(embedded_home: Path) -> None:
    with AIService() as ai:
        ok(ai.create_chat_completion(messages=HELLO, max_tokens=2))
        assert (embedded_home / "aiservice.db").is_file()
        assert str(embedded_home) in repr(ai)
    # Closed, then used again: it starts again.
    ok(ai.create_chat_completion(messages=HELLO, max_tokens=2))
    ai.close()


def test_embedded_and_server_share_one_home(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"
    with pytest.MonkeyPatch.context() as patch:
        for name in DATABASE_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("AISERVICE_HOME", str(home))
        with AIService() as ai:
            labels = tag()
            mine = ok(
                ai.create_chat_completion(messages=HELLO, max_tokens=5, store=True, metadata=labels)
            )
            running = start_server(home, env=dict.fromkeys(DATABASE_VARIABLES))
            try:
                sdk = OpenAI(base_url=running.api_url, api_key=MASTER_KEY, max_retries=0)
                # What the embedded service stored, the server's master key sees...
                seen = sdk.chat.completions.retrieve(mine["id"])
                assert seen.metadata == labels
                assert seen.choices[0].message.content == text_of(mine)
                # ...and the other way round.
                theirs = sdk.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=HELLO,
                    max_tokens=5,
                    store=True,
                    metadata=labels,
                )
                listed = ok(ai.list_chat_completions(metadata_filter=labels))
                assert {c["id"] for c in listed["completions"]} == {mine["id"], theirs.id}
                assert ok(ai.delete_chat_completion(theirs.id))["deleted"] is True
            finally:
                stop_server(running)


# --- docs/python.md ------------------------------------------------------------------------


def quick_start_block() -> str:
    text = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    marker = text.index("<!-- quick-start -->")
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, marker)
    assert match is not None, "no python block after the quick-start marker"
    return match.group(1)


def test_docs_quick_start_is_the_seeds_with_only_the_import_changed() -> None:
    block = quick_start_block()
    assert block == "# 1. Import\nfrom aiservice import ai_service\n" + SEED_QUICK_START_BODY


def test_docs_quick_start_runs_verbatim(tmp_path: Path) -> None:
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start_block(), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script)],
        env=embedded_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    content, tokens = run.stdout.rstrip("\n").rsplit("\n", 1)
    assert content.strip(), run.stdout
    assert re.fullmatch(r"Tokens: [1-9]\d*", tokens), run.stdout
    assert "Traceback" not in run.stderr
