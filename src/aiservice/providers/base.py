"""What every provider implements: prepare a generation, then stream its events.

A provider is two async methods: `prepare_chat`, and `prepare_text` for a raw prompt. Preparing
does all checks that can fail on the request (context length, grammar compilation), so that
errors reach the client as a status code before any streamed byte; the prepared generation then
yields events.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ToolChoice = Literal["none", "auto", "required"] | str  # a bare str names the forced function
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as on the wire


@dataclass(frozen=True, slots=True)
class PromptMessage:
    """A chat message reduced to what a model sees: a role and its text."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """`text`, free `json_object`, or `json_schema` with its schema."""

    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None


@dataclass(slots=True)
class GenerationRequest:
    """Provider-neutral parameters of one chat generation (OpenAI's semantics)."""

    model: str
    messages: list[PromptMessage]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    output_format: OutputFormat | None = None
    tools: list[FunctionTool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    # Whether the client reads the answer as a stream; an upstream may then be asked for one.
    stream: bool = True
    # A text completion (POST /v1/completions, `prepare_text`): the raw prompt, completed as it
    # is, without a chat template (`messages` is then empty); the text after the insertion
    # point; how many candidates to generate server-side for the `n` returned.
    prompt: str | None = None
    suffix: str | None = None
    best_of: int | None = None


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text for choice `index`, with the logprobs of the tokens it came from if asked."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True, slots=True)
class ChoiceFinished:
    index: int
    finish_reason: FinishReason
    tool_calls: list[ToolCall] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None  # of the prompt's, when the provider says

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


GenerationEvent = TextDelta | ChoiceFinished | Usage


class PreparedGeneration(ABC):
    """A checked request, ready to run; iterate `events()` once. Closing it stops the work."""

    model: str  # the model that really answers, as clients should see it
    prompt_tokens: int
    attempts: Sequence[Any] = ()  # upstream attempts so far (providers.upstream.Attempt)

    @abstractmethod
    def events(self) -> AsyncIterator[GenerationEvent]:
        """Yield TextDelta/ChoiceFinished per choice, then exactly one Usage last."""


class ChatProvider(ABC):
    """A source of chat generations for one or more model ids."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """True once requests can be served."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load what the provider needs (called in the app's lifespan)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what start() took."""

    @abstractmethod
    async def prepare_chat(self, request: GenerationRequest) -> PreparedGeneration:
        """Check the request against the model and return the generation to run."""

    @abstractmethod
    async def prepare_text(self, request: GenerationRequest) -> PreparedGeneration:
        """The same for a completion of `request.prompt` as raw text (POST /v1/completions)."""
