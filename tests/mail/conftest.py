"""The sample messages of tests/mail/messages, written for these tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aiservice.mail import MailMessage, read_message

MESSAGES = Path(__file__).parent / "messages"


@pytest.fixture
def sample() -> Callable[[str], MailMessage]:
    """Reads a sample message by file name."""

    def read(name: str) -> MailMessage:
        return read_message((MESSAGES / name).read_bytes())

    return read


@pytest.fixture
def mbox_path() -> Path:
    return MESSAGES / "five.mbox"
