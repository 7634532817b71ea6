"""The body of `POST /v1/embeddings`, validated as OpenAI validates it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from openai.types.embedding_create_params import EmbeddingCreateParams
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from aiservice.providers.embedding import EmbeddingCall
from aiservice.services.chat_request import refuse_unknown_parameters

# Every parameter the official SDK can send; anything else is refused, as OpenAI does.
KNOWN_PARAMETERS = frozenset(
    EmbeddingCreateParams.__required_keys__ | EmbeddingCreateParams.__optional_keys__
)
# OpenAI's limits: any array of `input` holds at most 2048 entries, and one input at most
# 8192 tokens (so a list of token-id lists may hold longer lists than a single one).
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192

TokenId = Annotated[StrictInt, Field(ge=0)]
# A text, texts, one text as token ids, or texts as token ids.
Input = (
    str
    | Annotated[list[str], Field(max_length=MAX_INPUTS)]
    | Annotated[list[TokenId], Field(max_length=MAX_INPUTS)]
    | Annotated[
        list[Annotated[list[TokenId], Field(max_length=MAX_INPUT_TOKENS)]],
        Field(max_length=MAX_INPUTS),
    ]
)


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings parameters; see docs/api.md for what each model honours."""

    model_config = ConfigDict(extra="allow")  # unknown names are refused below, by name

    model: str = Field(min_length=1)
    input: Input
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None  # accepted and ignored, as by the chat routes

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_parameters(cls, body: Any) -> Any:
        return refuse_unknown_parameters(body, KNOWN_PARAMETERS)

    @field_validator("input", mode="before")
    @classmethod
    def _one_shape(cls, value: Any) -> Any:
        """Refuse what OpenAI refuses (an empty text, an empty list, an empty entry), and a
        list whose entries are not all of the first's kind, saying which entry is wrong (the
        union's own errors would name every shape the list is not)."""
        if isinstance(value, str) and not value:
            raise ValueError("it must not be an empty string")
        if not isinstance(value, list):
            return value  # a string, or the union's type error
        if not value:
            raise ValueError("it must not be an empty list")
        kind = _kind_of(value[0])
        if kind is None:
            raise ValueError("its entries must be texts, token ids or lists of token ids")
        for position, entry in enumerate(value):
            if _kind_of(entry) != kind:
                raise ValueError(f"entry {position} is not {_KINDS[kind]}, as the first one is")
        return value

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list: of texts, or of token-id lists."""
        if isinstance(self.input, str):
            return [self.input]
        if isinstance(self.input[0], int):
            return [list(self.input)]  # type: ignore[arg-type]
        return list(self.input)  # type: ignore[arg-type]

    @property
    def output_token_cap(self) -> int:
        """The most output tokens the request may cost (rate limits charge it up front):
        embeddings generate none."""
        return 0

    def to_call(self) -> EmbeddingCall:
        """The provider-neutral call."""
        return EmbeddingCall(inputs=self.inputs, dimensions=self.dimensions)


_KINDS = {
    "text": "a non-empty text",
    "token": "a token id (an integer of at least 0)",
    "tokens": "a non-empty list of token ids",
}


def _kind_of(entry: Any) -> str | None:
    """Which of OpenAI's list entries `entry` is (a key of _KINDS), if any."""
    if isinstance(entry, str):
        return "text" if entry else None
    if _is_token_id(entry):
        return "token"
    if isinstance(entry, list) and entry and all(_is_token_id(token) for token in entry):
        return "tokens"
    return None


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
