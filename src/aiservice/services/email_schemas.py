"""What the e-mail assistant's structured features must answer: one pydantic model each, the
JSON schema the model is held to (response_format json_schema, strict), and the check of the
answer against the same model.

Every string has a maxLength and every list a maxItems: the longest valid answer must fit the
feature's default max_tokens (services.email_assistant), or a model that rambles (the bundled
135M one does) fills a free string until it is cut, and the JSON never closes. The local model
gets a grammar from the schema that also shrinks those bounds to fit a smaller max_tokens.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

# Strict ASCII patterns: pydantic's `\d` would also take other scripts' digits.
DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
MAX_QUICK_REPLY_WORDS = 50


# Non-empty texts of at most so many characters.
Text40 = Annotated[str, Field(min_length=1, max_length=40)]
Text50 = Annotated[str, Field(min_length=1, max_length=50)]
Text100 = Annotated[str, Field(min_length=1, max_length=100)]
Text150 = Annotated[str, Field(min_length=1, max_length=150)]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Text300 = Annotated[str, Field(min_length=1, max_length=300)]


class _Answer(BaseModel):
    # No extra keys, every key required (strict json_schema asks for both).
    model_config = ConfigDict(extra="forbid")


class Classification(_Answer):
    category: str  # the schema's enum is the request's labels (see answer_schema)
    reason: Text150

    @field_validator("category")
    @classmethod
    def _one_of_the_labels(cls, category: str, info: ValidationInfo) -> str:
        labels = (info.context or {}).get("labels", ())
        if category not in labels:
            raise ValueError(f"{category!r} is not one of the labels")
        return category


class MeetingInfo(_Answer):
    date: Annotated[str, Field(pattern=DATE_PATTERN)] | None
    time: Annotated[str, Field(pattern=TIME_PATTERN)] | None
    location: Text100 | None
    participants: list[Text50] = Field(max_length=6)
    subject: Text100 | None

    @field_validator("date")
    @classmethod
    def _a_real_day(cls, day: str | None) -> str | None:
        if day is not None:
            datetime.date.fromisoformat(day)  # the pattern lets 2026-02-31 through
        return day


def _short_enough(suggestion: str) -> str:
    if len(suggestion.split()) > MAX_QUICK_REPLY_WORDS:
        raise ValueError(f"a suggestion is at most {MAX_QUICK_REPLY_WORDS} words")
    return suggestion


class QuickReplies(_Answer):
    suggestions: list[Text200] = Field(min_length=3, max_length=3)

    @field_validator("suggestions")
    @classmethod
    def _each_short_enough(cls, suggestions: list[str]) -> list[str]:
        return [_short_enough(suggestion) for suggestion in suggestions]


class ActionItem(_Answer):
    task: Text100
    owner: Text40 | None


class ThreadSummary(_Answer):
    summary: Text300
    decisions: list[Text100] = Field(max_length=3)
    open_questions: list[Text100] = Field(max_length=3)
    action_items: list[ActionItem] = Field(max_length=3)


class Triage(_Answer):
    needs_reply: bool
    is_newsletter: bool
    is_cold_outreach: bool
    priority: int = Field(ge=1, le=5)  # 1: can wait, 5: at once


ANSWERS: dict[str, type[_Answer]] = {
    "classification": Classification,
    "extraction": MeetingInfo,
    "quick_replies": QuickReplies,
    "summary": ThreadSummary,
    "triage": Triage,
}


def answer_schema(feature: str, labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema of `feature`'s answer: no titles, no $refs (both the upstreams and the
    local grammar read it), the classification's category an enum of `labels`."""
    schema = _plain(ANSWERS[feature].model_json_schema())
    if feature == "classification":
        schema["properties"]["category"] = {"type": "string", "enum": list(labels)}
    return schema


class AnswerRejected(Exception):
    """The model's text is not a valid answer; the message says why, for the caller."""


def parse_answer(feature: str, text: str, labels: tuple[str, ...] = ()) -> _Answer:
    """`text` as `feature`'s answer, whole and valid, or AnswerRejected."""
    try:
        document = json.loads(text)
    except ValueError:
        raise AnswerRejected("The model's answer is not valid JSON.") from None
    try:
        return ANSWERS[feature].model_validate(document, context={"labels": labels})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
        raise AnswerRejected(
            f"The model's answer does not match the schema: {where}: {message}."
        ) from None


def inline_definitions(schema: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """`schema` with each `$ref` to its `$defs` replaced by the definition (for schemas without
    recursion, as all of these are), and the keywords in `drop` removed."""
    definitions = schema.get("$defs", {})

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if in_properties:  # property names, not keywords: a property may be called "title"
            return {name: walk(value) for name, value in node.items()}
        if "$ref" in node:
            return walk(copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]]))
        return {
            key: walk(value, in_properties=key == "properties")
            for key, value in node.items()
            if key != "$defs" and key not in drop
        }

    return walk(schema)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    return inline_definitions(schema, drop=("title", "default"))


# --- the dictionaries the features return (for the OpenAPI document and the tests) -------------


class _Call(BaseModel):
    """What every answer carries about its call: the stored completion's id, the model that
    answered, the tokens and their cost in USD."""

    id: str
    model: str
    usage: dict[str, Any]
    cost: float


class ReplyResult(_Call):
    success: Literal[True]
    reply: str
    truncated: bool  # max_tokens cut the reply


class ClassificationResult(_Call, Classification):
    success: Literal[True]


class ExtractionResult(_Call):
    success: Literal[True]
    meeting: MeetingInfo


class QuickRepliesResult(_Call, QuickReplies):
    success: Literal[True]


class SummaryResult(_Call, ThreadSummary):
    success: Literal[True]


class TriageResult(_Call, Triage):
    success: Literal[True]


class FailedAnswer(BaseModel):
    """A call that gave no valid answer. After the model was called (an unusable answer), the
    call's `id`, `model`, `usage` and `cost` come with it: the completion is stored and billed."""

    success: Literal[False]
    error: str
    id: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    cost: float | None = None


RESULTS: dict[str, type[BaseModel]] = {
    "auto_reply": ReplyResult,
    "classification": ClassificationResult,
    "extraction": ExtractionResult,
    "quick_replies": QuickRepliesResult,
    "summary": SummaryResult,
    "triage": TriageResult,
}
