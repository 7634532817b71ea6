"""E-mail (.eml) files through aiservice.mail: who, when and what, the message's whole text
(quoted history included: a document loses nothing), then each text attachment's text."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiservice.documents.document import Document, DocumentError, failure, finished
from aiservice.mail import MailMessage, MailReadError, read_message
from aiservice.mail.charsets import clean_header, part_text
from aiservice.mail.html_text import html_to_text

# aiservice.mail reads these as the body (when they name no file) or as events, never as files.
_BODY_TYPES = {"text/plain", "text/html"}
_CALENDAR_TYPES = {"text/calendar"}


def read_eml(data: bytes, name: str) -> Document:
    """The Document of an .eml file's bytes."""
    try:
        message = read_message(data)
        attachments = _text_attachments(
            BytesParser(EmailMessage, policy=policy.default).parsebytes(data)
        )
    except MailReadError as exc:
        raise DocumentError(f"{name}: {exc}") from None
    except Exception as exc:  # the email package on a pathological message
        raise DocumentError(f"{name}: not a readable e-mail message ({failure(exc)})") from None
    if not message.thread.strip() and not attachments:
        # Headers alone are no document: there is nothing in it to analyse.
        raise DocumentError(f"{name}: the document is empty (the message has no text)")
    sections = [_headers(message), message.thread]
    sections += [f"Attachment: {filename}\n{text}" for filename, text in attachments]
    return finished(name, "eml", "\n\n".join(sections), message.subject)


def _headers(message: MailMessage) -> str:
    lines = [f"From: {message.sender}"] if message.sender else []
    if message.to:
        lines.append("To: " + ", ".join(message.to))
    if message.cc:
        lines.append("Cc: " + ", ".join(message.cc))
    if message.date:
        lines.append(f"Date: {message.date}")
    if message.subject:
        lines.append(f"Subject: {message.subject}")
    return "\n".join(lines)


def _text_attachments(part: EmailMessage) -> list[tuple[str, str]]:
    """(file name, text) of each text/* part that aiservice.mail lists as an attachment."""
    found: list[tuple[str, str]] = []
    content_type = part.get_content_type()
    # Attached messages are listed, never read (as aiservice.mail does); of an alternative,
    # mail has read one version as the body already.
    if content_type == "message/rfc822" or part.get_content_subtype() == "alternative":
        return found
    if part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, EmailMessage):
                found += _text_attachments(child)
        return found
    if part.get_content_maintype() != "text" or content_type in _CALENDAR_TYPES:
        return found
    filename = _filename(part)
    if (
        content_type in _BODY_TYPES
        and not filename
        and part.get_content_disposition() != "attachment"
    ):
        return found  # the body, already read
    text = part_text(part)
    if content_type == "text/html":
        text = html_to_text(text)
    if text.strip():
        found.append((filename or f"unnamed {content_type}", text.strip("\n")))
    return found


def _filename(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError):  # a malformed RFC 2231 parameter
        return None
    return (clean_header(name) or None) if name else None
