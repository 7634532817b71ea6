"""The bodies and queries of the Batch API, validated."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiservice.services.metadata import Metadata

# OpenAI takes only "24h". aiservice also takes a count of seconds, minutes or hours up to
# a week ("30m", "2h"): a short window is how a test (or an impatient operator) sees expiry.
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smh])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
MAX_WINDOW_S = 7 * 86400


def window_seconds(window: str) -> int:
    match = _WINDOW.match(window)
    assert match is not None  # validated
    return int(match.group(1)) * _UNIT_S[match.group(2)]


class OutputExpiresAfter(BaseModel):
    """When a batch's output and error files expire: `seconds` after they are written."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: str
    completion_window: str
    metadata: Metadata | None = None
    output_expires_after: OutputExpiresAfter | None = None

    @field_validator("completion_window")
    @classmethod
    def _known_window(cls, window: str) -> str:
        match = _WINDOW.match(window)
        if match is None or window_seconds(window) > MAX_WINDOW_S:
            raise ValueError(
                "the completion window is '24h' (or a duration such as '30m' or '2h', up to a week)"
            )
        return window


class BatchPage(BaseModel):
    """GET /v1/batches: newest first, `limit` per page after the batch `after`."""

    limit: int = Field(default=20, ge=1, le=100)
    after: str | None = None
