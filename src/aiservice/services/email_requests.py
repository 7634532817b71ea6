"""The typed requests of the e-mail assistant: one per feature, the same for the REST routes
(their JSON bodies) and the Python facade (its keyword arguments).

Light on purpose, as services.queries is: the facade's remote mode validates with these before
sending, without importing the server's machinery.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from aiservice.services.metadata import Metadata

DEFAULT_MODEL = "gpt-4o-mini"  # the seed's model for its e-mail features
DEFAULT_LABELS = ("urgent", "important", "spam", "marketing")
# An e-mail (or a thread) of about 25k words at most: far more than any model here reads.
MAX_EMAIL_CHARS = 200_000
MAX_THREAD_MESSAGES = 200

# Words only: `tone` and `language` are written into the instructions, so they must not be
# able to carry instructions of their own.
_WORDS = re.compile(r"^[^\W\d_]+(?:[ '\u2019-][^\W\d_]+){0,3}$")


def _words(value: str) -> str:
    if not _WORDS.match(value):
        raise ValueError("give one to four words of letters (spaces, hyphens and apostrophes)")
    return value


def _distinct(labels: list[str] | None) -> list[str] | None:
    if labels is not None and len({label.casefold() for label in labels}) != len(labels):
        raise ValueError("labels must be distinct")
    return labels


EmailText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EMAIL_CHARS)]
Words = Annotated[str, StringConstraints(min_length=1, max_length=40), AfterValidator(_words)]
# A label is written into the instructions and the schema's enum: a short name, no sentence.
Label = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[^\W_][\w .-]*$")]


class EmailOptions(BaseModel):
    """What every feature accepts besides its e-mail. None: the feature's default."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=16_384)
    # The caller's own pairs; the feature's name is added as `feature` (at most 15 of theirs).
    metadata: Metadata | None = None
    # "auto": write in the e-mail's language; else a language's name or code ("fr", "English").
    language: Words = "auto"


class ReplyRequest(EmailOptions):
    """generate_email_response: a reply to `email_content`, in `tone`."""

    email_content: EmailText
    tone: Words = "professional"


class ClassifyRequest(EmailOptions):
    """classify_email: one of `labels` (default: urgent, important, spam, marketing)."""

    subject: Annotated[str, StringConstraints(max_length=1000)] = ""
    content: EmailText
    labels: Annotated[
        list[Label] | None, Field(min_length=2, max_length=20), AfterValidator(_distinct)
    ] = None

    @property
    def label_set(self) -> tuple[str, ...]:
        return tuple(self.labels) if self.labels else DEFAULT_LABELS


class EmailRequest(EmailOptions):
    """extract_meeting_info, quick_reply_suggestions, triage_email: one e-mail."""

    email: EmailText


class ThreadMessage(BaseModel):
    """One message of a thread given as a list; only `body` is required."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str | None = Field(default=None, alias="from", max_length=500)
    date: str | None = Field(default=None, max_length=100)
    subject: str | None = Field(default=None, max_length=1000)
    body: EmailText


class SummaryRequest(EmailOptions):
    """summarize_email_thread: the whole thread as one text, or its messages oldest first."""

    thread: (
        EmailText
        | Annotated[
            list[EmailText | ThreadMessage], Field(min_length=1, max_length=MAX_THREAD_MESSAGES)
        ]
    )


# Each feature: its name (the stored completions' `metadata.feature`), its request, and its
# path under /api/ai/email (the REST routes, and the facade's remote mode).
REQUEST_TYPES: dict[str, type[EmailOptions]] = {
    "auto_reply": ReplyRequest,
    "classification": ClassifyRequest,
    "extraction": EmailRequest,
    "quick_replies": EmailRequest,
    "summary": SummaryRequest,
    "triage": EmailRequest,
}
ROUTE_NAMES: dict[str, str] = {
    "auto_reply": "reply",
    "classification": "classify",
    "extraction": "extract-meeting",
    "quick_replies": "quick-replies",
    "summary": "summary",
    "triage": "triage",
}
