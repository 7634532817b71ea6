"""An mbox file read one message at a time, in one pass and read-only. The standard library's
`mailbox.mbox` indexes the whole file before the first message and opens it for writing; a
mailbox being triaged needs neither."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import BinaryIO

from aiservice.mail.message import MailMessage, MailReadError
from aiservice.mail.reader import read_message

# "From alice@example.com Mon Mar 10 09:12:00 2025" (RFC 4155): a sender, then a date with a
# time. The time is required so that an unescaped "From here on..." in a body starts nothing.
_SEPARATOR = re.compile(rb"From \S+ .*\d{1,2}:\d{2}")
# mboxrd escapes a body line starting with "From " as ">From ", ">From " as ">>From "...
_ESCAPED_FROM = re.compile(rb">+From ")


def read_mbox(path: str | os.PathLike[str]) -> Iterator[MailMessage]:
    """Every message of the mbox at `path`, in order, read as the iteration reaches it.

    Raises MailReadError at once when the file is not an mbox (it does not start with a
    "From " line), and during the iteration for a message that cannot be read, naming it."""
    mbox_file = open(path, "rb")  # noqa: SIM115 - the generator below owns and closes it
    try:
        first_line = next((line for line in mbox_file if line.strip()), b"")
        if first_line and not _SEPARATOR.match(first_line):
            raise MailReadError(
                f"{os.fspath(path)} is not an mbox file: it does not start with a 'From ' line"
            )
        mbox_file.seek(0)
    except BaseException:
        mbox_file.close()
        raise
    return _messages(mbox_file, os.fspath(path))


def _messages(mbox_file: BinaryIO, path: str) -> Iterator[MailMessage]:
    with mbox_file:
        for number, raw in enumerate(_raw_messages(mbox_file), start=1):
            try:
                yield read_message(raw)
            except MailReadError as error:
                raise MailReadError(f"message {number} of {path}: {error}") from error


def _raw_messages(mbox_file: BinaryIO) -> Iterator[bytes]:
    """The bytes of each message, the "From " line left out and body lines unescaped."""
    lines: list[bytes] | None = None  # None before the first separator
    previous_blank = True
    for line in mbox_file:
        if previous_blank and _SEPARATOR.match(line):
            if lines is not None:
                yield _joined(lines)
            lines = []
        elif lines is not None:
            lines.append(line[1:] if _ESCAPED_FROM.match(line) else line)
        previous_blank = not line.strip()
    if lines is not None:
        yield _joined(lines)


def _joined(lines: list[bytes]) -> bytes:
    # The blank line before the next "From " line is the mbox's, not the message's.
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return b"".join(lines)
