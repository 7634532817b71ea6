"""The `moderation` parameter of /v1/chat/completions and /v1/responses (a moderated
completion): the moderation model, and per side `score` or `block`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModerationSide(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["score", "block"]


class ModerationPolicyParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: ModerationSide | None = None
    output: ModerationSide | None = None


class ModerationParam(BaseModel):
    """`moderation` on /v1/chat/completions and /v1/responses (a moderated completion)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    policy: ModerationPolicyParam | None = None
