"""langchain-openai's ChatOpenAI and langchain's create_agent against a real server, on the
embedded model and behind the fake upstream (`backend`). No token counting (langchain counts
with tiktoken, which downloads its encodings), no tracing."""

from __future__ import annotations

from typing import Any

import pytest
from compat_support import FAKE_TEXT, JSON_TOKENS, SEGMENT_PROMPT, TEXT_TOKENS, Backend, Segment
from langchain.agents import create_agent
from langchain.agents.middleware import wrap_model_call
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError


def chat_model(backend: Backend, *, max_tokens: int = TEXT_TOKENS, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=backend.model,
        base_url=backend.api_url,
        api_key=backend.api_key,
        temperature=0,
        max_tokens=max_tokens,
        max_retries=0,
        timeout=120,
        **options,
    )


class DrawSegment(BaseModel):
    """Draw a labelled line segment on the canvas."""

    segment: Segment


def test_invoke(backend: Backend):
    message = chat_model(backend).invoke("Say hello.")
    assert isinstance(message, AIMessage)
    assert isinstance(message.content, str) and message.tool_calls == []
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    assert message.response_metadata["model_name"]
    usage = message.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    if not backend.embedded:
        assert message.content == FAKE_TEXT


def test_stream(backend: Backend):
    chunks = list(chat_model(backend, stream_usage=True).stream("Count to three."))
    assert chunks and all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.content == "".join(str(chunk.content) for chunk in chunks)
    assert whole.response_metadata["finish_reason"] in ("stop", "length")
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0
    if not backend.embedded:
        assert whole.content == FAKE_TEXT


@pytest.mark.parametrize("tool_choice", ["DrawSegment", "required"])
def test_bind_tools_with_a_forced_choice(backend: Backend, tool_choice: str):
    llm = chat_model(backend, max_tokens=JSON_TOKENS).bind_tools(
        [DrawSegment], tool_choice=tool_choice
    )
    message = llm.invoke(SEGMENT_PROMPT)
    assert isinstance(message, AIMessage)
    assert message.tool_calls and message.tool_calls[0]["name"] == "DrawSegment"
    assert message.tool_calls[0]["id"]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    backend.forced_call_arguments(message.tool_calls[0]["args"], DrawSegment)
    backend.assert_upstream_got_segment_schema()


def test_structured_output_by_json_schema(backend: Backend):
    llm = chat_model(backend, max_tokens=JSON_TOKENS)
    segment = llm.with_structured_output(Segment, method="json_schema").invoke(SEGMENT_PROMPT)
    assert isinstance(segment, Segment)
    backend.assert_upstream_got_segment_schema()


def test_structured_output_by_function_calling(backend: Backend):
    llm = chat_model(backend, max_tokens=JSON_TOKENS)
    structured = llm.with_structured_output(Segment, method="function_calling", include_raw=True)
    result = structured.invoke(SEGMENT_PROMPT)
    raw = result["raw"]
    assert isinstance(raw, AIMessage) and raw.tool_calls[0]["name"] == "Segment"
    if backend.embedded:
        assert result["parsing_error"] is None
        assert isinstance(result["parsed"], Segment)
        assert result["parsed"] == Segment.model_validate(raw.tool_calls[0]["args"])
    else:  # the fake's forced call carries "{}", which no Segment validates
        assert raw.tool_calls[0]["args"] == {}
        assert isinstance(result["parsing_error"], ValidationError)
    backend.assert_upstream_got_segment_schema()


def test_invoke_on_the_responses_api(backend: Backend):
    message = chat_model(backend, use_responses_api=True).invoke("Say hello.")
    assert isinstance(message, AIMessage) and message.tool_calls == []
    assert isinstance(message.text, str)
    assert message.response_metadata["id"].startswith("resp")
    assert message.response_metadata["status"] in ("completed", "incomplete")
    usage = message.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    if not backend.embedded:
        assert message.text == FAKE_TEXT


@tool
def server_time() -> str:
    """Tell the time on the server."""
    return "12:00"


@wrap_model_call
def tool_first_then_answer(request, handler):
    """Forces the tool on the agent's first model call and an answer after its result (the
    embedded model would not choose the tool by itself, nor stop calling it if forced)."""
    answered = any(isinstance(message, ToolMessage) for message in request.messages)
    return handler(request.override(tool_choice="none" if answered else "required"))


def test_create_agent_with_one_tool(backend: Backend):
    agent = create_agent(
        model=chat_model(backend),
        tools=[server_time],
        middleware=[tool_first_then_answer],
        system_prompt="Answer with the tool's result.",
    )
    state = agent.invoke({"messages": [{"role": "user", "content": "What time is it?"}]})
    messages = state["messages"]
    assert isinstance(messages[0], HumanMessage)
    call, *results, answer = messages[1:]
    assert isinstance(call, AIMessage) and call.tool_calls
    assert {c["name"] for c in call.tool_calls} == {"server_time"}
    assert [r.tool_call_id for r in results] == [c["id"] for c in call.tool_calls]
    assert all(isinstance(r, ToolMessage) and r.content == "12:00" for r in results)
    assert isinstance(answer, AIMessage) and answer.tool_calls == []
    assert isinstance(answer.content, str)
