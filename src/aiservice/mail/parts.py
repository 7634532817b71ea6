"""A message's MIME tree sorted into what is read and what is only listed: the text parts of the
body (one alternative of each multipart/alternative), the calendar parts, and the attachments,
of which only the name, type and size are kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

from aiservice.mail.charsets import clean_header, part_text
from aiservice.mail.html_text import html_to_text
from aiservice.mail.message import Attachment

_CALENDAR_TYPES = {"text/calendar", "application/ics"}
_BODY_TYPES = {"text/plain", "text/html"}


@dataclass
class MessageParts:
    """What the tree holds, in the order the parts come."""

    texts: list[str] = field(default_factory=list)  # readable text of each body part
    calendars: list[str] = field(default_factory=list)  # iCalendar text of each calendar part
    attachments: list[Attachment] = field(default_factory=list)


def sort_parts(message: EmailMessage) -> MessageParts:
    """Walk `message`'s tree; nothing in it raises, however malformed."""
    found = MessageParts()
    _collect(message, found)
    return found


def _collect(part: EmailMessage, found: MessageParts) -> None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        # A message sent as an attachment is listed like any attachment, never read.
        found.attachments.append(_attachment(part))
    elif part.is_multipart():
        if part.get_content_subtype() == "alternative":
            _collect_alternative(part, found)
        else:
            for child in _children(part):
                _collect(child, found)
    elif content_type in _CALENDAR_TYPES:
        found.calendars.append(part_text(part))
        if _filename(part):
            found.attachments.append(_attachment(part))
    elif _is_body_text(part) or part.get_content_maintype() == "multipart":
        # (A multipart whose boundary is missing has only its raw text: kept rather than lost.)
        text = _readable(part)
        if text.strip():
            found.texts.append(text)
    else:
        found.attachments.append(_attachment(part))


def _collect_alternative(part: EmailMessage, found: MessageParts) -> None:
    """Read one of the alternatives: the plain text, else the HTML, else the first nested
    multipart. Calendar alternatives (an invitation's) are read as well."""
    children = _children(part)
    for child in children:
        if child.get_content_type() in _CALENDAR_TYPES:
            found.calendars.append(part_text(child))
    for wanted in ("text/plain", "text/html"):
        for child in children:
            if child.get_content_type() == wanted and (text := _readable(child)).strip():
                found.texts.append(text)
                return
    for child in children:
        if child.is_multipart():
            _collect(child, found)
            return


def _children(part: EmailMessage) -> list[EmailMessage]:
    payload = part.get_payload()
    return (
        [child for child in payload if isinstance(child, EmailMessage)]
        if isinstance(payload, list)
        else []
    )


def _is_body_text(part: EmailMessage) -> bool:
    # A text part with a file name is a document the sender attached (notes.txt), not the body.
    return (
        part.get_content_type() in _BODY_TYPES
        and part.get_content_disposition() != "attachment"
        and not _filename(part)
    )


def _readable(part: EmailMessage) -> str:
    text = part_text(part)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


def _attachment(part: EmailMessage) -> Attachment:
    return Attachment(
        filename=_filename(part),
        content_type=part.get_content_type(),
        size=_size(part),
    )


def _filename(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError):  # a malformed RFC 2231 parameter
        return None
    return (clean_header(name) or None) if name else None


def _size(part: EmailMessage) -> int:
    if not part.is_multipart():
        payload = part.get_payload(decode=True)
        return len(payload) if isinstance(payload, bytes) else 0
    # An attached message: its size as it would be written out again, near enough.
    try:
        return len(part.get_payload(0).as_bytes())
    except (ValueError, LookupError, TypeError, UnicodeError, IndexError):
        return 0
