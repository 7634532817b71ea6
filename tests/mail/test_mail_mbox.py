"""read_mbox: every message of an mbox file, in order, read one at a time."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from aiservice.mail import MailReadError, read_mbox


def _mail(number: int, body: str = "Hello.") -> str:
    return (
        f"From sender{number}@exemple.fr Mon Mar 10 09:{number % 60:02d}:00 2025\n"
        f"From: sender{number}@exemple.fr\nSubject: message {number}\n\n{body}\n\n"
    )


def test_every_message_comes_in_order(mbox_path: Path):
    messages = list(read_mbox(mbox_path))
    assert [message.message_id for message in messages] == [
        "<one@example.com>",
        "<two@example.com>",
        "<three@example.com>",
        "<four@example.com>",
        "<five@example.com>",
    ]
    assert [message.body for message in messages] == [
        "The standup moves to 9:30 from tomorrow on.",
        "On se retrouve au café d'en face ?",
        "Here is the plan.\n\nFrom the first of April, the office opens at 8.",
        "Rendez-vous jeudi à 14h.",
        "Works for me.",
    ]
    assert messages[1].subject == "Two: café"


def test_escaped_from_lines_lose_one_mark(mbox_path: Path):
    thread = list(read_mbox(mbox_path))[2].thread
    assert "\nFrom the first of April" in thread
    assert "\n>From is how the old tools wrote it." in thread
    assert "\n> From a quote, kept as a quote." in thread


def test_a_from_line_in_a_body_without_a_date_starts_no_message(tmp_path: Path):
    mbox = tmp_path / "mail.mbox"
    mbox.write_text(_mail(1, "Line one.\n\nFrom here on, all is new."))
    (message,) = read_mbox(mbox)
    assert message.body == "Line one.\n\nFrom here on, all is new."


def test_messages_are_read_as_the_iteration_reaches_them(tmp_path: Path):
    mbox = tmp_path / "growing.mbox"
    mbox.write_text(_mail(1) + _mail(2))
    messages = read_mbox(mbox)
    assert next(messages).subject == "message 1"
    # Written after the first message was handed out, and still read.
    with mbox.open("a") as more:
        more.write(_mail(3))
    assert [message.subject for message in messages] == ["message 2", "message 3"]


def test_a_big_mbox_is_never_held_in_memory_whole(tmp_path: Path):
    mbox = tmp_path / "big.mbox"
    filler = ("Une ligne de texte pour remplir le message. " * 20 + "\n") * 40
    with mbox.open("w") as big:
        for number in range(200):
            big.write(_mail(number, filler))
    size = mbox.stat().st_size
    tracemalloc.start()
    try:
        first = next(read_mbox(mbox))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.subject == "message 0"
    assert size > 5_000_000 and peak < size / 20


def test_an_empty_file_is_an_empty_mailbox(tmp_path: Path):
    mbox = tmp_path / "empty.mbox"
    mbox.write_bytes(b"")
    assert list(read_mbox(mbox)) == []


def test_a_file_that_is_not_an_mbox_is_refused_at_once(tmp_path: Path):
    eml = tmp_path / "one.eml"
    eml.write_text("From: a@exemple.fr\nSubject: hi\n\nbody\n")
    with pytest.raises(MailReadError, match="not an mbox file"):
        read_mbox(eml)


def test_a_message_that_cannot_be_read_is_named(tmp_path: Path):
    mbox = tmp_path / "broken.mbox"
    mbox.write_text(_mail(1) + "From x Mon Mar 10 09:00:00 2025\njust some words\n\n" + _mail(3))
    messages = read_mbox(mbox)
    assert next(messages).subject == "message 1"
    with pytest.raises(MailReadError, match=r"message 2 of .*broken\.mbox: not an e-mail message"):
        next(messages)


def test_a_missing_file_raises_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        read_mbox(tmp_path / "nowhere.mbox")


def test_blank_lines_before_the_first_message_are_allowed(tmp_path: Path):
    mbox = tmp_path / "padded.mbox"
    mbox.write_text("\n\n" + _mail(1))
    assert [message.subject for message in read_mbox(mbox)] == ["message 1"]


def test_blank_lines_then_text_are_not_an_mbox(tmp_path: Path):
    mbox = tmp_path / "text.mbox"
    mbox.write_text("\n\nJust a note.\n")
    with pytest.raises(MailReadError, match="not an mbox file"):
        read_mbox(mbox)
