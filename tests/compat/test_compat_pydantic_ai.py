"""pydantic-ai's OpenAI models (Chat Completions and Responses, through an OpenAIProvider on the
server) with a nested `output_type`, on the embedded model and behind the fake upstream
(`backend`): by its default tool output (a forced `final_result` call) and by NativeOutput (a
JSON schema response format)."""

from __future__ import annotations

import pytest
from compat_support import JSON_TOKENS, SEGMENT_PROMPT, Backend, Segment
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

SETTINGS = ModelSettings(temperature=0, max_tokens=JSON_TOKENS)
# The session loop, as the fixtures' (pyproject: asyncio_default_fixture_loop_scope): clients
# and the connections they pool live on one loop.
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=["chat", "responses"])
def model(request: pytest.FixtureRequest, backend: Backend) -> Model:
    provider = OpenAIProvider(base_url=backend.api_url, api_key=backend.api_key)
    if request.param == "chat":
        return OpenAIChatModel(backend.model, provider=provider)
    return OpenAIResponsesModel(backend.model, provider=provider)


async def test_a_nested_output_by_tool(backend: Backend, model: Model):
    agent = Agent(model, output_type=Segment, model_settings=SETTINGS, retries=0)
    if not backend.embedded:  # the fake's forced call carries "{}", which no Segment validates
        with pytest.raises(UnexpectedModelBehavior):
            await agent.run(SEGMENT_PROMPT)
        backend.assert_upstream_got_segment_schema()
        return
    result = await agent.run(SEGMENT_PROMPT)
    assert isinstance(result.output, Segment)
    usage = result.usage
    assert usage.requests == 1 and usage.input_tokens > 0 and usage.output_tokens > 0


async def test_a_nested_output_by_json_schema(backend: Backend, model: Model):
    agent = Agent(model, output_type=NativeOutput(Segment), model_settings=SETTINGS, retries=0)
    result = await agent.run(SEGMENT_PROMPT)
    assert isinstance(result.output, Segment)
    usage = result.usage
    assert usage.requests == 1 and usage.input_tokens > 0 and usage.output_tokens > 0
    backend.assert_upstream_got_segment_schema()
