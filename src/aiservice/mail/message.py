"""What reading a message gives: the message, its attachments' names, its calendar events, and
the one error raised for input that is not a message."""

from __future__ import annotations

from dataclasses import dataclass, field


class MailReadError(ValueError):
    """The input is not an e-mail message (or an mbox of them); the text says what is wrong."""


@dataclass(frozen=True)
class Attachment:
    """A part that is not read as text: named and measured, its content never kept."""

    filename: str | None  # None when the part names no file (an inline image, say)
    content_type: str
    size: int  # bytes after the transfer encoding is undone


@dataclass(frozen=True)
class CalendarEvent:
    """One VEVENT of a text/calendar part (an invitation, an update, a cancellation)."""

    summary: str | None = None
    start: str | None = None  # ISO 8601: a date for all-day events, with an offset when known
    end: str | None = None  # as written: the day after the last one for all-day events
    timezone: str | None = None  # the TZID the times were written in, when they name one
    location: str | None = None
    organizer: str | None = None  # "Name <address>" or the bare address
    attendees: list[str] = field(default_factory=list)
    cancelled: bool = False  # STATUS:CANCELLED, or a METHOD:CANCEL calendar


@dataclass(frozen=True)
class MailMessage:
    """One e-mail message, read: its headers decoded, its text and its parts' names."""

    subject: str
    sender: str  # the From header, "Name <address>"; "" when there is none
    to: list[str]
    cc: list[str]
    date: str | None  # ISO 8601 with the offset the Date header gave
    message_id: str | None  # as written, angle brackets included
    body: str  # the new text only: quoted history and signature removed
    thread: str  # the whole readable text, quoted history included
    attachments: list[Attachment] = field(default_factory=list)
    calendar: list[CalendarEvent] = field(default_factory=list)
    language_hint: str | None = None  # "en", "fr", "de" or "es" when the text clearly is
