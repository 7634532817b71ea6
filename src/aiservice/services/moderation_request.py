"""The body of `POST /v1/moderations`, validated: what is to be classified, and by which model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from openai.types.moderation_create_params import ModerationCreateParams
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiservice.errors import InvalidRequest, array_too_long
from aiservice.services.chat_request import refuse_unknown_parameters

KNOWN_PARAMETERS = frozenset(
    ModerationCreateParams.__required_keys__ | ModerationCreateParams.__optional_keys__
)
DEFAULT_MODEL = "omni-moderation-latest"
# Our own bounds (OpenAI documents none for this endpoint): what the embedded classifier
# answers in well under a second, and what a request of another model would carry.
MAX_INPUTS = 32
MAX_TEXT_CHARS = 32_768
MAX_TOTAL_CHARS = 131_072


class ImageURL(BaseModel):
    url: str = Field(min_length=1)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ModerationRequest(BaseModel):
    """`input`: one string, several strings (one result each), or the parts of one
    multi-modal input (one result for them all, as OpenAI answers)."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[Part]
    model: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_parameters(cls, body: Any) -> Any:
        return refuse_unknown_parameters(body, KNOWN_PARAMETERS)

    @model_validator(mode="after")
    def _within_bounds(self) -> ModerationRequest:
        if isinstance(self.input, list):
            if not self.input:
                raise InvalidRequest("'input' must not be empty.", param="input")
            if len(self.input) > MAX_INPUTS:
                raise array_too_long("input", MAX_INPUTS, len(self.input))
        total = 0
        for position, text in enumerate(self.texts()):
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidRequest(
                    f"Each input may hold at most {MAX_TEXT_CHARS} characters; input "
                    f"{position} holds {len(text)}.",
                    param="input",
                    code="string_above_max_length",
                )
            total += len(text)
        if total > MAX_TOTAL_CHARS:
            raise InvalidRequest(
                f"The inputs may hold at most {MAX_TOTAL_CHARS} characters in all; these hold "
                f"{total}.",
                param="input",
                code="string_above_max_length",
            )
        if not any(text.strip() for text in self.texts()) and not self.images():
            raise InvalidRequest("'input' holds no text to classify.", param="input")
        return self

    @property
    def output_token_cap(self) -> int:
        return 0  # nothing is generated (rate limits charge the input estimate only)

    @property
    def is_multimodal(self) -> bool:
        return isinstance(self.input, list) and not isinstance(self.input[0], str)

    def texts(self) -> list[str]:
        """One text per result: each string, or the text parts of a multi-modal input joined."""
        if isinstance(self.input, str):
            return [self.input]
        if not self.is_multimodal:
            return list(self.input)  # type: ignore[arg-type]
        return ["\n".join(part.text for part in self.input if isinstance(part, TextPart))]

    def images(self) -> list[int]:
        """Positions of the image parts."""
        if not self.is_multimodal:
            return []
        return [i for i, part in enumerate(self.input) if isinstance(part, ImagePart)]

    def wire_input(self) -> Any:
        """The input as it was sent, for an upstream."""
        if isinstance(self.input, list) and self.is_multimodal:
            return [part.model_dump() for part in self.input]  # type: ignore[union-attr]
        return self.input
