"""The body of `POST /v1/responses` (and of `/v1/responses/input_tokens`), validated."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from openai.types.responses.input_token_count_params import InputTokenCountParams
from openai.types.responses.response_create_params import ResponseCreateParamsBase
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiservice.errors import ParameterConflict, UnknownParameter
from aiservice.services.metadata import Metadata
from aiservice.services.moderation_param import ModerationParam
from aiservice.services.request_limits import MAX_CONTENT_PARTS, MAX_INPUT_ITEMS

# Every parameter the official SDK can send; see chat_request.KNOWN_PARAMETERS for why.
KNOWN_PARAMETERS = frozenset(
    ResponseCreateParamsBase.__required_keys__
    | ResponseCreateParamsBase.__optional_keys__
    | {"stream"}
)
KNOWN_COUNT_PARAMETERS = frozenset(
    InputTokenCountParams.__required_keys__ | InputTokenCountParams.__optional_keys__
)
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MessageRole = Literal["user", "system", "developer", "assistant"]
ITEM_TYPES = ("message", "function_call", "function_call_output", "item_reference")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Lenient):
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_parts_have_text(self) -> ContentPart:
        if self.type in ("input_text", "output_text") and self.text is None:
            raise ValueError(f"a content part of type '{self.type}' needs a 'text' string")
        return self


Content = str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)]


class InputItem(_Lenient):
    """One input item: a message (with or without `type`), a function call, its output, or a
    reference to an item stored earlier."""

    type: str = "message"
    id: str | None = Field(default=None, max_length=64)
    role: MessageRole | None = None
    content: Content | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: Content | None = None

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> InputItem:
        if self.type not in ITEM_TYPES:
            raise ValueError(
                f"input items of type '{self.type}' are not supported; use one of "
                + ", ".join(ITEM_TYPES)
            )
        required = {
            "message": ("role", "content"),
            "function_call": ("call_id", "name", "arguments"),
            "function_call_output": ("call_id", "output"),
            "item_reference": ("id",),  # an item of an earlier stored response
        }[self.type]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a '{self.type}' item needs '{missing[0]}'")
        return self


class FunctionToolParam(_Lenient):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _a_named_function(self) -> FunctionToolParam:
        if self.type != "function":
            raise ValueError(f"tools of type '{self.type}' are not supported; only 'function'")
        if self.name is None or not _FUNCTION_NAME.match(self.name):
            raise ValueError("function names are 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")
        return self


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    name: str


class TextFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema" and (self.schema_ is None or self.name is None):
            raise ValueError("a 'json_schema' format needs 'name' and 'schema'")
        return self


class ConversationRef(_Lenient):
    id: str = Field(min_length=1, max_length=64)


class TextConfig(_Lenient):
    format: TextFormat | None = None


Probability = Annotated[float, Field(ge=0, le=1)]


class _ResponseInput(_Lenient):
    """What shapes the model's input: shared by create and input_tokens."""

    model: str = Field(min_length=1)
    input: str | Annotated[list[InputItem], Field(max_length=MAX_INPUT_ITEMS)] | None = None
    instructions: str | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=64)
    conversation: str | ConversationRef | None = None
    tools: list[FunctionToolParam] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None

    known_parameters: ClassVar[frozenset[str]] = KNOWN_PARAMETERS

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_parameters(cls, body: Any) -> Any:
        if isinstance(body, dict):
            for name in body:
                if name not in cls.known_parameters:
                    raise UnknownParameter(name)
        return body

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: str | list[InputItem] | None) -> str | list[InputItem] | None:
        if isinstance(value, list) and not value:
            raise ValueError("'input' needs at least one item")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _ResponseInput:
        if self.conversation is not None and self.previous_response_id is not None:
            raise ParameterConflict(
                "conversation",
                "'conversation' and 'previous_response_id' cannot be used together: a response "
                "continues either a conversation or a chain of responses.",
            )
        if self.input is None and self.previous_response_id is None:
            raise ParameterConflict("input", "Missing required parameter: 'input'.")
        if isinstance(self.tool_choice, NamedToolChoice):
            if self.tool_choice.name not in {tool.name for tool in self.tools or []}:
                raise ParameterConflict(
                    "tool_choice",
                    f"Tool choice names function {self.tool_choice.name!r}, which is not in "
                    "'tools'.",
                )
        elif self.tool_choice == "required" and not self.tools:
            raise ParameterConflict(
                "tool_choice", "'tool_choice' is 'required' but no 'tools' are specified."
            )
        return self


class ResponseRequest(_ResponseInput):
    """OpenAI's Responses parameters; see docs/api.md for what the local model honours."""

    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    max_output_tokens: int | None = Field(default=None, ge=16)
    metadata: Metadata | None = None
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tool_calls: int | None = Field(default=None, ge=1)
    service_tier: str | None = None
    moderation: ModerationParam | None = None

    @model_validator(mode="after")
    def _background_is_stored(self) -> ResponseRequest:
        if self.background and self.store is False:
            raise ParameterConflict("background", "Background mode requires 'store' to be true.")
        return self

    @property
    def stored(self) -> bool:
        return self.store is not False

    @property
    def output_token_cap(self) -> int | None:
        """The most output tokens the request may cost (rate limits charge it up front)."""
        return self.max_output_tokens


class InputTokensRequest(_ResponseInput):
    """The body of `POST /v1/responses/input_tokens`."""

    known_parameters: ClassVar[frozenset[str]] = KNOWN_COUNT_PARAMETERS
