"""A data subject: the person an export or an erasure is about.

The e-mail manager's end users are not aiservice accounts: they show up as the OpenAI `user` or
`safety_identifier` of a request, or as a metadata value (the seed stores `metadata.user_id`).
So a subject is one of: an account (an aiservice user, by e-mail or id), an end user (`user`),
or one metadata pair whose key the operator declared as naming people
(`privacy_subject_keys`): declaring them keeps an erasure from being aimed at a label such as
`feature=triage`, which would wipe everyone. `within` narrows an end user or a metadata value
to one account's data, for when two applications both have a "user 42".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiservice.errors import InvalidRequest
from aiservice.store.subjects import Subject

__all__ = ["PrivacyRequest", "Subject", "SubjectSpec", "check_metadata_key", "spec_from_cli"]


class SubjectSpec(BaseModel):
    """The `subject` object of the privacy routes, as sent."""

    model_config = ConfigDict(extra="forbid")

    account: str | None = Field(default=None, min_length=1, max_length=320)
    user: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SubjectSpec:
        given = [name for name in ("account", "user", "metadata") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("name the subject by exactly one of: account, user, metadata")
        if self.metadata is not None and len(self.metadata) != 1:
            raise ValueError("a metadata subject is one key and its value")
        return self


class PrivacyRequest(BaseModel):
    """The body of POST /v1/admin/privacy/export and /erase."""

    model_config = ConfigDict(extra="forbid")

    subject: SubjectSpec
    # An account (e-mail or id) whose data alone is searched for an end user or metadata value.
    within: str | None = Field(default=None, min_length=1, max_length=320)


def check_metadata_key(key: str, subject_keys: list[str]) -> None:
    if key not in subject_keys:
        raise InvalidRequest(
            f"Metadata key {key!r} does not name data subjects; the keys that do are "
            f"{', '.join(subject_keys)} (setting privacy_subject_keys).",
            param="subject.metadata",
            code="unknown_subject_key",
        )


def parse_cli_subject(text: str) -> tuple[str, str]:
    """`account=ann@example.com`, `user=u-17` or `user_id=42` as (name, value)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value:
        raise InvalidRequest(
            "A subject is NAME=VALUE: account=<e-mail>, user=<user or safety_identifier> or "
            "<metadata key>=<value>.",
            param="subject",
        )
    return name.strip(), value


def spec_from_cli(text: str) -> SubjectSpec:
    name, value = parse_cli_subject(text)
    if name == "account":
        return SubjectSpec(account=value)
    if name == "user":
        return SubjectSpec(user=value)
    return SubjectSpec(metadata={name: value})
