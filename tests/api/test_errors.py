"""Bad requests get OpenAI's error envelope with the right status, type, param and code.

Every case goes over real HTTP to the session server, which must stay healthy afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from support import MASTER_KEY, assert_error_envelope

URL = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
LIMIT = 8 * 1024 * 1024  # the default max_request_bytes


def body(**fields: Any) -> dict[str, Any]:
    """A valid request with `fields` laid over it; a None value removes the field."""
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 4, **fields}
    return {name: value for name, value in request.items() if value is not None}


def raw(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json"}}


# (id, request kwargs for httpx, status, param, code)
BAD_REQUESTS = [
    ("malformed-json", raw(b'{"model": "gpt-4o-mini", "messages": ['), 400, None, None),
    ("empty-body", raw(b""), 400, None, None),
    ("json-array-body", {"json": [body()]}, 400, None, None),
    ("json-string-body", {"json": "hello"}, 400, None, None),
    ("json-number-body", {"json": 42}, 400, None, None),
    ("missing-messages", {"json": body(messages=None)}, 400, "messages", None),
    ("empty-messages", {"json": body(messages=[])}, 400, "messages", None),
    ("messages-not-a-list", {"json": body(messages="hi")}, 400, "messages", None),
    ("missing-model", {"json": body(model=None)}, 400, "model", None),
    ("empty-model", {"json": body(model="")}, 400, "model", None),
    (
        "bad-role",
        {"json": body(messages=[{"role": "robot", "content": "hi"}])},
        400,
        "messages[0].role",
        None,
    ),
    (
        "message-without-content",
        {"json": body(messages=[{"role": "user"}])},
        400,
        "messages[0]",
        None,
    ),
    (
        "tool-message-without-tool-call-id",
        {"json": body(messages=[*MESSAGES, {"role": "tool", "content": "42"}])},
        400,
        "messages[1]",
        None,
    ),
    ("temperature-2.5", {"json": body(temperature=2.5)}, 400, "temperature", None),
    ("temperature-negative", {"json": body(temperature=-1)}, 400, "temperature", None),
    ("temperature-string", {"json": body(temperature="hot")}, 400, "temperature", None),
    ("top-p-1.5", {"json": body(top_p=1.5)}, 400, "top_p", None),
    ("n-0", {"json": body(n=0)}, 400, "n", None),
    ("max-tokens-0", {"json": body(max_tokens=0)}, 400, "max_tokens", None),
    (
        "max-completion-tokens-0",
        {"json": body(max_completion_tokens=0)},
        400,
        "max_completion_tokens",
        None,
    ),
    ("five-stop-sequences", {"json": body(stop=["a", "b", "c", "d", "e"])}, 400, "stop", None),
    ("frequency-penalty-3", {"json": body(frequency_penalty=3)}, 400, "frequency_penalty", None),
    (
        "presence-penalty-minus-3",
        {"json": body(presence_penalty=-3)},
        400,
        "presence_penalty",
        None,
    ),
    ("logit-bias-non-numeric-key", {"json": body(logit_bias={"abc": 1})}, 400, "logit_bias", None),
    ("logit-bias-value-200", {"json": body(logit_bias={"50": 200})}, 400, "logit_bias", None),
    (
        "logit-bias-unknown-token",
        {"json": body(logit_bias={"99999999": 1})},
        400,
        "logit_bias",
        None,
    ),
    ("top-logprobs-without-logprobs", {"json": body(top_logprobs=2)}, 400, "top_logprobs", None),
    ("top-logprobs-21", {"json": body(logprobs=True, top_logprobs=21)}, 400, "top_logprobs", None),
    (
        "stream-options-without-stream",
        {"json": body(stream_options={"include_usage": True})},
        400,
        "stream_options",
        None,
    ),
    ("tool-choice-without-tools", {"json": body(tool_choice="auto")}, 400, "tool_choice", None),
    (
        "tool-choice-unknown-function",
        {
            "json": body(
                tools=[TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}
            )
        },
        400,
        "tool_choice",
        None,
    ),
    (
        "bad-tool-function-name",
        {"json": body(tools=[{"type": "function", "function": {"name": "get weather!"}}])},
        400,
        "tools[0].function.name",
        None,
    ),
    (
        "response-format-xml",
        {"json": body(response_format={"type": "xml"})},
        400,
        "response_format.type",
        None,
    ),
    (
        "json-schema-format-without-schema",
        {"json": body(response_format={"type": "json_schema"})},
        400,
        "response_format",
        None,
    ),
    ("unrecognised-parameter", {"json": body(foo="bar")}, 400, "foo", None),
    (
        "metadata-17-pairs",
        {"json": body(metadata={f"key{i}": "value" for i in range(17)})},
        400,
        "metadata",
        None,
    ),
    ("metadata-key-65-chars", {"json": body(metadata={"k" * 65: "value"})}, 400, "metadata", None),
    (
        "metadata-value-513-chars",
        {"json": body(metadata={"key": "v" * 513})},
        400,
        "metadata",
        None,
    ),
    (
        "streamed-request-with-bad-parameter",
        {"json": body(stream=True, top_p=1.5)},
        400,
        "top_p",
        None,
    ),
    ("unknown-model", {"json": body(model="no-such-model")}, 404, "model", "model_not_found"),
    (
        "prompt-longer-than-the-context-window",
        {"json": body(messages=[{"role": "user", "content": "word " * 40_000}], max_tokens=None)},
        400,
        "messages",
        "context_length_exceeded",
    ),
    (
        "max-tokens-beyond-the-context-window",
        {"json": body(max_tokens=1_000_000)},
        400,
        "messages",
        "context_length_exceeded",
    ),
]


@pytest.fixture
def still_healthy(http: httpx.Client) -> Iterator[None]:
    """After the test, the server still answers /health."""
    yield
    assert http.get("/health").status_code == 200


@pytest.mark.usefixtures("still_healthy")
@pytest.mark.parametrize(
    ("request_kwargs", "status", "param", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_chat_completion_request_gets_an_error_envelope(
    http: httpx.Client,
    request_kwargs: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    response = http.post(URL, **request_kwargs)
    assert_error_envelope(response, status, param=param, code=code)


@pytest.mark.usefixtures("still_healthy")
def test_malformed_json_message_says_so(http: httpx.Client) -> None:
    error = assert_error_envelope(http.post(URL, **raw(b"{nope")), 400, param=None)
    assert "JSON" in error["message"]


@pytest.mark.usefixtures("still_healthy")
def test_unrecognised_parameter_is_named_in_the_message(http: httpx.Client) -> None:
    error = assert_error_envelope(http.post(URL, json=body(foo=1)), 400, param="foo")
    assert "foo" in error["message"]


@pytest.mark.usefixtures("still_healthy")
def test_context_length_message_gives_the_window_and_the_request(http: httpx.Client) -> None:
    error = assert_error_envelope(
        http.post(URL, json=body(max_tokens=1_000_000)), 400, code="context_length_exceeded"
    )
    assert "maximum context length is 8192 tokens" in error["message"]
    assert "1000000 in the completion" in error["message"]


def _oversized_body() -> bytes:
    padding = b"a" * (LIMIT + 1024)
    return (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + padding + b'"}]}'
    )


@pytest.mark.usefixtures("still_healthy")
def test_oversized_body_with_content_length_is_refused_with_413(http: httpx.Client) -> None:
    content = _oversized_body()
    response = http.post(URL, **raw(content))
    assert response.request.headers["content-length"] == str(len(content))
    assert_error_envelope(response, 413, param=None, code="request_too_large")


@pytest.mark.usefixtures("still_healthy")
def test_oversized_chunked_body_is_refused_with_413(http: httpx.Client) -> None:
    content = _oversized_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    response = http.post(URL, **raw(chunks()))  # type: ignore[arg-type]
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error_envelope(response, 413, param=None, code="request_too_large")


@pytest.mark.usefixtures("still_healthy")
def test_chunked_body_under_the_limit_is_served(http: httpx.Client) -> None:
    content = httpx.Request("POST", URL, json=body(max_tokens=2)).read()

    def chunks() -> Iterator[bytes]:
        yield content[:10]
        yield content[10:]

    response = http.post(URL, **raw(chunks()))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


@pytest.mark.usefixtures("still_healthy")
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("POST", "/v1/nope"), ("GET", "/v1/chat/completions/some-id/extra")],
)
def test_unknown_url_gets_a_404_envelope(http: httpx.Client, method: str, path: str) -> None:
    error = assert_error_envelope(http.request(method, path), 404, param=None)
    assert path in error["message"]


@pytest.mark.usefixtures("still_healthy")
@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", URL), ("PUT", URL), ("DELETE", "/health"), ("POST", "/v1/models")],
)
def test_wrong_method_gets_a_405_envelope(http: httpx.Client, method: str, path: str) -> None:
    error = assert_error_envelope(http.request(method, path), 405, param=None)
    assert method in error["message"]


# Through the official SDK: the error classes and fields an application would catch.


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_bad_request_with_param(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=2.5)
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"
    assert caught.value.code is None
    assert caught.value.type == "invalid_request_error"


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_bad_request_for_an_unrecognised_parameter(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=2, extra_body={"foo": 1}
        )
    assert caught.value.param == "foo"


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_bad_request_for_context_length(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "word " * 40_000}],
        )
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_bad_request_when_streaming(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, n=0)
    assert caught.value.param == "n"


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_not_found_for_an_unknown_model(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


@pytest.mark.usefixtures("still_healthy")
def test_sdk_raises_authentication_error_for_a_wrong_key(client: OpenAI) -> None:
    wrong = client.with_options(api_key="sk-not-" + MASTER_KEY)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.param is None


# Union fields: the error comes from the branch the input meant, not the first one tried.
# (id, route, body, param, words the message must hold)
UNION_CASES = [
    (
        "responses-input-unknown-item-type",
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": [{"role": "user", "content": "hi"}, {"type": "nope"}]},
        "input[1]",
        ["'nope'", "message", "function_call", "function_call_output"],
    ),
    (
        "responses-input-part-without-text",
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0]",
        ["input_text", "text"],
    ),
    (
        "responses-input-neither-string-nor-list",
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": 5},
        "input",
        ["string", "array"],
    ),
    ("chat-stop-list-item", URL, body(stop=["ok", 5]), "stop[1]", ["string"]),
    ("chat-stop-neither", URL, body(stop=5), "stop", ["string", "array"]),
    (
        "chat-tool-choice-neither",
        URL,
        body(tools=[TOOL], tool_choice=7),
        "tool_choice",
        ["'none'", "'required'", "object"],
    ),
    (
        "chat-response-format-unknown-type",
        URL,
        body(response_format={"type": "yaml"}),
        "response_format.type",
        ["'json_schema'"],
    ),
]


@pytest.mark.usefixtures("still_healthy")
@pytest.mark.parametrize(
    ("route", "request_body", "param", "words"),
    [case[1:] for case in UNION_CASES],
    ids=[case[0] for case in UNION_CASES],
)
def test_a_union_field_error_comes_from_the_branch_the_input_meant(
    http: httpx.Client, route: str, request_body: dict[str, Any], param: str, words: list[str]
) -> None:
    response = http.post(route, json=request_body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], error
    assert "valid string" not in error["message"] or "string" in words, error
