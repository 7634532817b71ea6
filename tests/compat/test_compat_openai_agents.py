"""openai-agents (the OpenAI Agents SDK) against a real server: its Responses model and its Chat
Completions model, each with an AsyncOpenAI client on the server, on the embedded model and
behind the fake upstream (`backend`). Shapes, states and numbers are asserted, never the text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    ToolCallItem,
    function_tool,
    set_tracing_disabled,
)
from agents.models.interface import Model
from compat_support import (
    FAKE_TEXT,
    JSON_TOKENS,
    SEGMENT_PROMPT,
    TEXT_TOKENS,
    Backend,
    Segment,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

set_tracing_disabled(True)
# The session loop, as the fixtures' (pyproject: asyncio_default_fixture_loop_scope): clients
# and the connections they pool live on one loop.
pytestmark = pytest.mark.asyncio(loop_scope="session")

TEXT = ModelSettings(temperature=0, max_tokens=TEXT_TOKENS)
JSON = ModelSettings(temperature=0, max_tokens=JSON_TOKENS)


@pytest.fixture(params=["responses", "chat"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def openai_client(backend: Backend) -> AsyncIterator[AsyncOpenAI]:
    async with backend.async_client() as client:
        yield client


def agent_model(api: str, backend: Backend, client: AsyncOpenAI) -> Model:
    if api == "responses":
        return OpenAIResponsesModel(model=backend.model, openai_client=client)
    return OpenAIChatCompletionsModel(model=backend.model, openai_client=client)


async def test_a_plain_run(backend: Backend, api: str, openai_client: AsyncOpenAI):
    agent = Agent(
        name="greeter",
        instructions="Answer in one short sentence.",
        model=agent_model(api, backend, openai_client),
        model_settings=TEXT,
    )
    result = await Runner.run(agent, "Say hello.", max_turns=1)
    assert isinstance(result.final_output, str)
    (raw,) = result.raw_responses
    assert raw.usage.requests == 1
    assert raw.usage.input_tokens > 0 and raw.usage.output_tokens > 0
    assert raw.usage.total_tokens == raw.usage.input_tokens + raw.usage.output_tokens
    if not backend.embedded:
        assert result.final_output == FAKE_TEXT
    if api == "responses":
        assert result.last_response_id and result.last_response_id.startswith("resp")


async def test_a_streamed_run(backend: Backend, api: str, openai_client: AsyncOpenAI):
    agent = Agent(
        name="counter",
        instructions="Answer in one short sentence.",
        model=agent_model(api, backend, openai_client),
        model_settings=TEXT.resolve(ModelSettings(include_usage=True)),  # chat: stream_options
    )
    result = Runner.run_streamed(agent, "Count to three.", max_turns=1)
    kinds: list[str] = []
    deltas: list[str] = []
    async for event in result.stream_events():
        kinds.append(event.type)
        if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
            deltas.append(event.data.delta)
    assert result.is_complete
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert deltas and "".join(deltas) == result.final_output
    (raw,) = result.raw_responses
    assert raw.usage.output_tokens > 0


async def test_a_forced_tool_with_nested_arguments(
    backend: Backend, api: str, openai_client: AsyncOpenAI
):
    drawn: list[Segment] = []

    @function_tool
    def draw_segment(segment: Segment) -> str:
        """Draw a labelled line segment on the canvas."""
        drawn.append(segment)
        return "drawn"

    assert "$defs" in json.dumps(draw_segment.params_json_schema)  # a model inside a model
    agent = Agent(
        name="draftsman",
        instructions="Use the tool.",
        model=agent_model(api, backend, openai_client),
        model_settings=ModelSettings(temperature=0, max_tokens=JSON_TOKENS, tool_choice="required"),
        tools=[draw_segment],
        tool_use_behavior="stop_on_first_tool",
    )
    result = await Runner.run(agent, SEGMENT_PROMPT, max_turns=2)
    calls = [item.raw_item for item in result.new_items if isinstance(item, ToolCallItem)]
    assert calls and calls[0].name == "draw_segment"
    arguments = json.loads(calls[0].arguments)
    if backend.embedded:
        assert drawn == [Segment.model_validate(arguments["segment"])]
        assert result.final_output == "drawn"
    else:  # the fake calls with "{}": the SDK reports the invalid input as the tool's output
        assert arguments == {} and drawn == []
        assert isinstance(result.final_output, str) and "error" in result.final_output.lower()
    backend.assert_upstream_got_segment_schema()


async def test_a_nested_output_type(backend: Backend, api: str, openai_client: AsyncOpenAI):
    agent = Agent(
        name="geometer",
        instructions="Answer with the segment.",
        model=agent_model(api, backend, openai_client),
        model_settings=JSON,
        output_type=Segment,
    )
    result = await Runner.run(agent, SEGMENT_PROMPT, max_turns=1)
    assert isinstance(result.final_output, Segment)
    assert Segment.model_validate(result.final_output.model_dump()) == result.final_output
    backend.assert_upstream_got_segment_schema()


async def test_a_chain_with_previous_response_id(backend: Backend, openai_client: AsyncOpenAI):
    agent = Agent(
        name="memory",
        instructions="Answer in one short sentence.",
        model=agent_model("responses", backend, openai_client),
        model_settings=TEXT,
    )
    first = await Runner.run(agent, "My name is Ada.", max_turns=1)
    second = await Runner.run(
        agent, "What is my name?", previous_response_id=first.last_response_id, max_turns=1
    )
    assert first.last_response_id and second.last_response_id
    assert second.last_response_id != first.last_response_id
    stored = await openai_client.responses.retrieve(second.last_response_id)
    assert stored.previous_response_id == first.last_response_id
    assert stored.status == "completed"
    if not backend.embedded:  # the chain reached the upstream in order
        messages = backend.last_upstream_body()["messages"]
        texts = [m["content"] for m in messages if m["role"] in ("user", "assistant")]
        assert texts == ["My name is Ada.", FAKE_TEXT, "What is my name?"]
