"""Reading real e-mail for the e-mail assistant: one message (.eml) or an mbox file, decoded
into a `MailMessage` whose `body` is what the sender wrote this time and whose `thread` keeps
the quoted history; `as_prompt_text` makes the text a model is given.

Pure standard library, no network, nothing written. docs/email.md says what is read, what is
stripped and what is never sent.
"""

from aiservice.mail.mbox import read_mbox
from aiservice.mail.message import Attachment, CalendarEvent, MailMessage, MailReadError
from aiservice.mail.prompt import TRUNCATION_MARKER, as_prompt_text
from aiservice.mail.reader import read_message

__all__ = [
    "TRUNCATION_MARKER",
    "Attachment",
    "CalendarEvent",
    "MailMessage",
    "MailReadError",
    "as_prompt_text",
    "read_mbox",
    "read_message",
]
