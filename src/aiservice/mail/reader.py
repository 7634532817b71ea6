"""One RFC 5322 / MIME message (an .eml file) read into a `MailMessage`: headers decoded, the
body's text chosen and decoded, its history and signature told apart, attachments listed."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiservice.mail.headers import header_addresses, header_date, header_text
from aiservice.mail.history import without_history
from aiservice.mail.invitations import read_events
from aiservice.mail.language import language_hint
from aiservice.mail.message import CalendarEvent, MailMessage, MailReadError
from aiservice.mail.parts import sort_parts
from aiservice.mail.signatures import without_signature

# Headers of which a message has at least one. A text whose first line merely looks like a
# header ("Note: ...") has none of them, and is not a message.
_MESSAGE_HEADERS = {
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "sender", "reply-to",
    "in-reply-to", "references", "mime-version", "content-type", "received", "return-path",
    "delivered-to",
}  # fmt: skip
_BINARY_SAMPLE = 8192
# Control bytes but tab, the line breaks and escape (ISO-2022-JP, Japanese mail, shifts with it).
_CONTROL_BYTES = bytes(set(range(32)) - {9, 10, 12, 13, 27})
_MOST_CONTROL_SHARE = 0.05  # text has nearly none; images, archives and PDFs have plenty


def read_message(data: bytes | str) -> MailMessage:
    """Read one message. A str is taken as the message's text (as read from a UTF-8 file).

    Raises MailReadError when `data` is not a message: empty, binary, or without headers."""
    raw = _as_bytes(data)
    _check_is_text(raw)
    message = BytesParser(EmailMessage, policy=policy.default).parsebytes(raw)
    if not _MESSAGE_HEADERS & {name.lower() for name in message}:
        raise MailReadError(
            "not an e-mail message: no header lines (From:, To:, Subject:, Date:...) at the top"
        )
    parts = sort_parts(message)
    thread = "\n\n".join(text.strip("\n") for text in parts.texts)
    body = without_signature(without_history(thread))
    return MailMessage(
        subject=header_text(message, "subject"),
        sender=next(iter(header_addresses(message, "from")), ""),
        to=header_addresses(message, "to"),
        cc=header_addresses(message, "cc"),
        date=header_date(message),
        message_id=header_text(message, "message-id") or None,
        body=body,
        thread=thread,
        attachments=parts.attachments,
        calendar=_distinct_events(parts.calendars),
        language_hint=language_hint(body or thread),
    )


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        # surrogateescape: a str read with errors="surrogateescape" gets its bytes back.
        return data.encode("utf-8", "surrogateescape")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"read_message takes bytes or str, not {type(data).__name__}")


def _check_is_text(raw: bytes) -> None:
    if not raw.strip():
        raise MailReadError("empty input: there is no message to read")
    sample = raw[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if b"\x00" in sample or controls > _MOST_CONTROL_SHARE * len(sample):
        raise MailReadError("binary data, not an e-mail message (an .eml file is text)")


def _distinct_events(calendars: list[str]) -> list[CalendarEvent]:
    # Invitations often carry the same calendar twice (inline and as invite.ics).
    events: list[CalendarEvent] = []
    for calendar_text in calendars:
        events += [event for event in read_events(calendar_text) if event not in events]
    return events
