"""The body of `POST /v1/chat/completions`, validated, and its reduction to a GenerationRequest."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from aiservice.errors import ParameterConflict, UnknownParameter
from aiservice.providers.base import (
    FunctionTool,
    GenerationRequest,
    OutputFormat,
    PromptMessage,
    ToolCall,
)
from aiservice.services.metadata import Metadata
from aiservice.services.moderation_param import ModerationParam
from aiservice.services.request_limits import MAX_CONTENT_PARTS, MAX_MESSAGES

log = logging.getLogger(__name__)

# Every parameter the official SDK can send. Those we do not act on are accepted and ignored;
# anything else is refused, as OpenAI does, so that a misspelt parameter is not silently dropped.
KNOWN_PARAMETERS = frozenset(
    CompletionCreateParamsBase.__required_keys__
    | CompletionCreateParamsBase.__optional_keys__
    | {"stream"}
)
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Lenient):
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_parts_have_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a content part of type 'text' needs a 'text' string")
        return self


class FunctionCall(_Lenient):
    name: str
    arguments: str


class MessageToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        elif self.content is None:
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        return self

    def text(self) -> str:
        """The message's text; non-text parts are dropped (text-only models) and logged."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        skipped = [part.type for part in self.content if part.type not in ("text", "refusal")]
        if skipped:
            log.info("non-text content ignored by a text-only model", extra={"part_types": skipped})
        return "".join(
            part.text or getattr(part, "refusal", "") or ""
            for part in self.content
            if part.type in ("text", "refusal")
        )


class FunctionDefinition(_Lenient):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _FUNCTION_NAME.match(name):
            raise ValueError("function names are 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")
        return name


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: dict[str, str]


class JSONSchemaFormat(_Lenient):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class StreamOptions(_Lenient):
    include_usage: bool | None = None


Probability = Annotated[float, Field(ge=0, le=1)]


def _at_most_four_stops(stop: str | list[str] | None) -> str | list[str] | None:
    if isinstance(stop, list) and len(stop) > 4:
        raise ValueError("at most 4 stop sequences are allowed")
    return stop


def _token_id_keys(bias: dict[str, float] | None) -> dict[str, float] | None:
    for key in bias or {}:
        if not key.isdigit():
            raise ValueError(f"keys must be token ids, got {key!r}")
    return bias


def refuse_unknown_parameters(body: Any, known: frozenset[str] | set[str]) -> Any:
    """A body (before validation) whose every name is in `known`; else UnknownParameter."""
    if isinstance(body, dict):
        for name in body:
            if name not in known:
                raise UnknownParameter(name)
    return body


# Shared with the legacy completions' request (text_completion_request.py).
StopSequences = Annotated[str | list[str] | None, AfterValidator(_at_most_four_stops)]
LogitBias = Annotated[
    dict[str, Annotated[float, Field(ge=-100, le=100)]] | None, AfterValidator(_token_id_keys)
]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class ChatCompletionRequest(_Lenient):
    """OpenAI's chat completion parameters; see docs/api.md for what the local model honours."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: StopSequences = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    metadata: Metadata | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    moderation: ModerationParam | None = None

    @property
    def user_text(self) -> str:
        """What the users wrote, the part of the input that moderation checks (system and
        developer messages are the application's, the others are earlier outputs)."""
        return "\n".join(m.text() for m in self.messages if m.role == "user")

    @property
    def output_token_cap(self) -> int | None:
        """The most output tokens the request may cost (rate limits charge it up front)."""
        cap = self.max_completion_tokens or self.max_tokens
        return cap * (self.n or 1) if cap is not None else None

    store: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_parameters(cls, body: Any) -> Any:
        return refuse_unknown_parameters(body, KNOWN_PARAMETERS)

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ParameterConflict(
                "top_logprobs", "'logprobs' must be true to use 'top_logprobs'."
            )
        if self.stream_options is not None and not self.stream:
            raise ParameterConflict(
                "stream_options", "'stream_options' is only allowed when 'stream' is enabled."
            )
        if self.tool_choice is not None and not self.tools and self.tool_choice != "none":
            raise ParameterConflict(
                "tool_choice", "'tool_choice' is only allowed when 'tools' are specified."
            )
        if isinstance(self.tool_choice, NamedToolChoice):
            name = self.tool_choice.function.get("name")
            if name not in {tool.function.name for tool in self.tools or []}:
                raise ParameterConflict(
                    "tool_choice", f"Tool choice names function {name!r}, which is not in 'tools'."
                )
        return self

    def to_generation(self, served_model: str) -> GenerationRequest:
        """The provider-neutral request, with OpenAI's defaults filled in."""
        return GenerationRequest(
            model=served_model,
            messages=[_prompt_message(m) for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            n=self.n or 1,
            stop=[self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            seed=self.seed,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
            logprobs=bool(self.logprobs),
            top_logprobs=self.top_logprobs or 0,
            output_format=_output_format(self.response_format),
            tools=[
                FunctionTool(t.function.name, t.function.description, t.function.parameters)
                for t in self.tools or []
            ],
            tool_choice=_tool_choice(self.tool_choice, bool(self.tools)),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            stream=bool(self.stream),
        )


def _prompt_message(message: ChatMessage) -> PromptMessage:
    role = {"developer": "system", "function": "tool"}.get(message.role, message.role)
    return PromptMessage(
        role=role,  # type: ignore[arg-type]
        content=message.text(),
        tool_calls=tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []
        ),
        tool_call_id=message.tool_call_id,
        name=message.name,
    )


def _output_format(response_format: ResponseFormat | None) -> OutputFormat | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return OutputFormat("json_object")
    assert response_format.json_schema is not None
    return OutputFormat("json_schema", response_format.json_schema.schema_)


def _tool_choice(choice: str | NamedToolChoice | None, has_tools: bool) -> str:
    if isinstance(choice, NamedToolChoice):
        return choice.function["name"]
    return choice or ("auto" if has_tools else "none")
