"""The body of `POST /v1/completions` (OpenAI's legacy text completions), validated, and its
reduction to the GenerationRequest each of its prompts is completed with."""

from __future__ import annotations

from typing import Annotated, Any

from openai.types.completion_create_params import CompletionCreateParamsBase
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiservice.errors import ParameterConflict
from aiservice.providers.base import GenerationRequest
from aiservice.services.chat_request import (
    LogitBias,
    Penalty,
    Probability,
    StopSequences,
    StreamOptions,
    refuse_unknown_parameters,
)

# Every parameter the official SDK can send; anything else is refused, as OpenAI does.
KNOWN_PARAMETERS = frozenset(
    CompletionCreateParamsBase.__required_keys__
    | CompletionCreateParamsBase.__optional_keys__
    | {"stream"}
)
# OpenAI's default for this endpoint (chat's is the rest of the context window).
DEFAULT_MAX_TOKENS = 16
# As many prompts as OpenAI takes inputs in one embeddings request; far past any real batch.
MAX_PROMPTS = 2048

Prompt = str | Annotated[list[str], Field(max_length=MAX_PROMPTS)] | list[int] | list[list[int]]


class TextCompletionRequest(BaseModel):
    """OpenAI's text completion parameters; see docs/api.md for what each model honours."""

    model_config = ConfigDict(extra="allow")  # unknown names are refused below, by name

    model: str = Field(min_length=1)
    # Required, but may be null: OpenAI then completes from the start of a new document.
    prompt: Prompt | None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=0, le=20)
    stop: StopSequences = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = None
    suffix: str | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_parameters(cls, body: Any) -> Any:
        return refuse_unknown_parameters(body, KNOWN_PARAMETERS)

    @field_validator("prompt")
    @classmethod
    def _text_prompts(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("the list of prompts is empty")
        if isinstance(prompt, list) and not isinstance(prompt[0], str):
            raise ValueError("prompts given as token ids are not supported; send the text")
        return prompt

    @model_validator(mode="after")
    def _consistent(self) -> TextCompletionRequest:
        n = self.n or 1
        if self.best_of is not None and self.best_of < n:
            raise ParameterConflict("best_of", "'best_of' must be greater than or equal to 'n'.")
        if self.stream and (self.best_of or 1) > 1:
            raise ParameterConflict("best_of", "Cannot stream results when 'best_of' is over 1.")
        if self.stream_options is not None and not self.stream:
            raise ParameterConflict(
                "stream_options", "'stream_options' is only allowed when 'stream' is enabled."
            )
        if self.echo and self.logprobs is not None:
            # The prompt's own logprobs would need the logits of every prompt position.
            raise ParameterConflict(
                "logprobs", "'logprobs' with 'echo' is not supported: the prompt is not scored."
            )
        return self

    @property
    def prompts(self) -> list[str]:
        if self.prompt is None:
            return [""]
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def output_token_cap(self) -> int:
        """The most output tokens the request may cost (rate limits charge it up front)."""
        candidates = max(self.n or 1, self.best_of or 1)
        return self._max_tokens * candidates * len(self.prompts)

    @property
    def _max_tokens(self) -> int:
        return DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens

    def to_generation(self, served_model: str) -> GenerationRequest:
        """The provider-neutral request, with OpenAI's defaults filled in; each prompt goes in
        `prompt` in turn."""
        return GenerationRequest(
            model=served_model,
            messages=[],
            max_tokens=self._max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            n=self.n or 1,
            stop=[self.stop] if isinstance(self.stop, str) else list(self.stop or []),
            seed=self.seed,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
            logprobs=self.logprobs is not None,
            top_logprobs=self.logprobs or 0,
            stream=bool(self.stream),
            suffix=self.suffix,
            best_of=self.best_of,
        )
