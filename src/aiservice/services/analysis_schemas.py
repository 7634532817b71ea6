"""What each stage of a document analysis must answer: the key points of a piece (the map
stage, and the intermediate reduce stages), and the report (the last stage).

As for the e-mail assistant (services/email_schemas.py), every string has a maxLength and
every list a maxItems, so that the longest valid answer fits the stage's output budget and a
rambling model still closes its JSON; the local model's grammar shrinks them further.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiservice.services.email_schemas import inline_definitions

Point = Annotated[str, Field(min_length=1, max_length=200)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyPoints(_Answer):
    key_points: list[Point] = Field(min_length=1, max_length=8)


class Section(_Answer):
    heading: Annotated[str, Field(min_length=1, max_length=80)]
    summary: Annotated[str, Field(min_length=1, max_length=400)]


class Report(_Answer):
    title: Annotated[str, Field(min_length=1, max_length=120)]
    summary: Annotated[str, Field(min_length=1, max_length=1200)]
    key_points: list[Point] = Field(min_length=1, max_length=10)
    recommendations: list[Point] = Field(max_length=6)
    sections: list[Section] = Field(max_length=8)


def schema_of(answer: type[_Answer]) -> dict[str, Any]:
    """The answer's JSON schema without titles, defaults or $refs."""
    return inline_definitions(answer.model_json_schema(), drop=("title", "default"))


KEY_POINTS_SCHEMA = schema_of(KeyPoints)
REPORT_SCHEMA = schema_of(Report)


class AnswerRejected(Exception):
    """The model's text is not a valid answer of its stage."""


def parse(answer: type[_Answer], text: str) -> Any:
    try:
        return answer.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        reason = "not valid JSON" if not isinstance(exc, ValidationError) else "off the schema"
        raise AnswerRejected(f"The model's answer is {reason}.") from None
