"""A read message as the text a model is given: the headers that say who, when and what, the
attachments by name, the calendar events, then the message's text, cut to a size if asked."""

from __future__ import annotations

from aiservice.mail.message import Attachment, CalendarEvent, MailMessage

TRUNCATION_MARKER = "[... the rest of the message is cut]"
_SMALLEST_LIMIT = len(TRUNCATION_MARKER) + 1


def as_prompt_text(
    message: MailMessage, *, include_thread: bool = False, max_chars: int | None = None
) -> str:
    """The prompt text of `message`: its new text, or with `include_thread` the quoted history
    too. A message with no new text of its own (a forward without a note) gives its thread.

    With `max_chars`, the text is at most that long: cut at a line boundary, and ended with
    TRUNCATION_MARKER on a line of its own."""
    if max_chars is not None and max_chars < _SMALLEST_LIMIT:
        raise ValueError(f"max_chars must be at least {_SMALLEST_LIMIT}, got {max_chars}")
    lines = [f"From: {message.sender}"]
    if message.to:
        lines.append("To: " + ", ".join(message.to))
    if message.cc:
        lines.append("Cc: " + ", ".join(message.cc))
    if message.date:
        lines.append(f"Date: {message.date}")
    lines.append(f"Subject: {message.subject}")
    if message.attachments:
        names = ", ".join(_attachment_name(attachment) for attachment in message.attachments)
        lines.append(f"Attachments (not included): {names}")
    for event in message.calendar:
        lines += _event_lines(event)
    text = message.thread if include_thread or not message.body else message.body
    prompt = "\n".join(lines) + "\n\n" + text
    return _cut(prompt.rstrip("\n"), max_chars)


def _attachment_name(attachment: Attachment) -> str:
    return attachment.filename or f"unnamed {attachment.content_type}"


def _event_lines(event: CalendarEvent) -> list[str]:
    label = "Cancelled event" if event.cancelled else "Event"
    when = " to ".join(moment for moment in (event.start, event.end) if moment)
    if when and event.timezone:
        when += f" ({event.timezone})"
    # One detail a line: a location or a name may hold commas and semicolons of its own.
    details = [
        ("When", when),
        ("Where", event.location),
        ("Organizer", event.organizer),
        ("Attendees", ", ".join(event.attendees)),
    ]
    lines = [f"{label}: {_one_line(event.summary) or '(no title)'}"]
    return lines + [f"  {name}: {_one_line(value)}" for name, value in details if value]


def _one_line(text: str | None) -> str:
    # An event's summary may hold line breaks (\n escapes); in the header block it is one line.
    return " ".join((text or "").split())


def _cut(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    room = max_chars - len(TRUNCATION_MARKER) - 1  # the marker and its line break
    end = text.rfind("\n", 0, room + 1)
    if end <= 0:
        end = room  # no whole line fits: cut inside the first one
    return text[:end].rstrip() + "\n" + TRUNCATION_MARKER
