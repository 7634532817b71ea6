"""read_message: headers decoded, the body's text chosen among the MIME parts and decoded
whatever the transfer encoding and charset, attachments listed without their content, and a
clear error for what is not a message."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from aiservice.mail import Attachment, MailReadError, read_message

SAMPLES = Path(__file__).parent / "messages"


def test_the_headers_are_decoded_into_plain_values(sample):
    message = sample("latin1_qp_fr.eml")
    assert message.subject == "Réunion de préparation du séminaire"
    assert message.sender == "Hélène Lefèvre <helene.lefevre@exemple.fr>"
    assert message.to == ["François Dupont <francois.dupont@exemple.fr>"]
    assert message.cc == ["secretariat@exemple.fr"]
    assert message.date == "2025-03-12T08:30:00+01:00"
    assert message.message_id == "<reunion-seminaire@exemple.fr>"


def test_a_display_name_with_a_comma_stays_quoted_so_the_list_still_splits(sample):
    message = sample("alternative.eml")
    assert message.to == [
        '"Durand, Paul" <paul.durand@example.org>',
        "Mei Tanaka <mei@example.org>",
    ]
    assert message.date == "2025-03-10T14:05:00-05:00"


def test_multipart_alternative_reads_the_plain_text_part(sample):
    message = sample("alternative.eml")
    assert message.thread.startswith("Hi Paul, hi Mei,\n\nHere is the agenda")
    assert "HTML VERSION" not in message.thread


def test_an_html_only_message_is_read_as_text(sample):
    message = sample("html_only.eml")
    assert message.body.startswith("Dear Mei,\n\nThank you for your message.")
    assert "you can download it from your invoices page." in message.body
    assert "Amount: 1 234,56 €\nDue: 31 March 2025" in message.body
    assert "trackOpen" not in message.thread and "margin" not in message.thread


def test_quoted_printable_iso_8859_1_is_decoded(sample):
    message = sample("latin1_qp_fr.eml")
    # The soft line break joins the two halves of the first sentence.
    assert "votre présence à la réunion de préparation du séminaire, jeudi" in message.body
    assert "salle « Clémence » ?" in message.body


def test_base64_utf8_is_decoded_with_its_encoded_subject(sample):
    message = sample("utf8_base64.eml")
    assert message.subject == "Protokoll der Sitzung \u2013 nächste Schritte"
    assert message.sender == "Jürgen Weiß <juergen.weiss@beispiel.de>"
    assert "2. Termin mit dem Kunden in München vereinbaren" in message.body


def test_windows_1252_gives_the_euro_sign_and_curly_quotes(sample):
    message = sample("outlook_forward.eml")
    assert "12 480 € HT" in message.body
    assert "L\u2019offre est valable 30 jours." in message.thread


def test_an_8bit_utf8_header_is_read_as_utf8(sample):
    assert sample("attachment.eml").subject == "Devis et plan d'accès"


def test_attachments_are_listed_by_name_type_and_size_never_read(sample):
    message = sample("attachment.eml")
    assert message.attachments == [
        Attachment(filename=None, content_type="image/png", size=29),
        Attachment(filename="devis été 2025.pdf", content_type="application/pdf", size=83),
        Attachment(filename="notes.txt", content_type="text/plain", size=43),
    ]
    # notes.txt is text, but an attached document: its words are not the message's.
    assert "CONFIDENTIEL" not in message.thread
    assert message.body == (
        "Bonjour Paul,\n\nVous trouverez ci-joint le devis n° 2025-004512 et le plan d'accès."
        "\n\nBien à vous,\nClaire"
    )


def test_an_attached_message_is_listed_not_read():
    raw = (
        b"From: a@exemple.fr\nSubject: Fwd\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nSee the attached mail.\n"
        b"--b\nContent-Type: message/rfc822\n\nFrom: c@exemple.fr\nSubject: Old\n\nSecret plans\n"
        b"--b--\n"
    )
    message = read_message(raw)
    assert message.body == "See the attached mail."
    assert [attachment.content_type for attachment in message.attachments] == ["message/rfc822"]
    assert "Secret plans" not in message.thread


def test_a_str_is_read_as_the_message_text():
    message = read_message("From: Zoé <zoe@exemple.fr>\nSubject: Été\n\nÇa va ?\n")
    assert (message.sender, message.subject, message.body) == (
        "Zoé <zoe@exemple.fr>",
        "Été",
        "Ça va ?",
    )


def test_missing_headers_are_empty_or_none():
    message = read_message(b"Subject: only a subject\n")
    assert (message.sender, message.to, message.cc, message.date, message.message_id) == (
        "",
        [],
        [],
        None,
        None,
    )
    assert message.body == message.thread == ""


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        # An unknown charset: guessed as UTF-8, else windows-1252.
        (b"Content-Type: text/plain; charset=x-klingon\n\ncaf\xe9 \x80\n", "café €"),
        # Declared UTF-8, but Latin-1 bytes: the bad byte is replaced.
        (b"Content-Type: text/plain; charset=utf-8\n\ncaf\xe9 ok\n", "caf\ufffd ok"),
        # A codec name that is not a text encoding.
        (b"Content-Type: text/plain; charset=base64\n\nhello\n", "hello"),
        # No charset, 8-bit UTF-8.
        (b"Content-Type: text/plain\n\n\xc3\xa9t\xc3\xa9\n", "été"),
        # Broken base64: what decodes is kept.
        (
            b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
            b"Y2Fmw6k=!!!%%\n",
            "café",
        ),
    ],
)
def test_broken_charsets_and_encodings_decode_without_raising(raw: bytes, body: str):
    assert read_message(b"From: x@exemple.fr\n" + raw).body == body


def test_a_broken_encoded_word_or_8bit_header_is_replaced_not_raised():
    raw = b"From: x@exemple.fr\nSubject: =?x-klingon?q?caf=E9?= \xe9t\xe9\n\nbody\n"
    assert read_message(raw).subject == "caf\ufffd \ufffdt\ufffd"


def test_an_unparseable_address_header_falls_back_to_its_text():
    message = read_message(b'From: Ann <ann@exemple.fr>\nTo: "\\"" <\n\nhi\n')
    assert message.sender == "Ann <ann@exemple.fr>"
    assert message.body == "hi"


def test_a_multipart_without_its_boundary_keeps_its_text():
    raw = b"From: x@exemple.fr\nContent-Type: multipart/mixed; boundary=zzz\n\nhello text\n"
    assert read_message(raw).body == "hello text"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "empty input"),
        (b" \r\n\n\t", "empty input"),
        (bytes.fromhex("89504e470d0a1a0a0000000d49484452") * 8, "binary data"),
        (b"From: a@exemple.fr\n\nsome text\x00\x00\x00", "binary data"),
        (b"Hello, can we meet tomorrow?\nThanks\n", "no header lines"),
        (b"Note: this line only looks like a header\nmore text\n", "no header lines"),
        (b'{"from": "a@exemple.fr"}', "no header lines"),
    ],
)
def test_what_is_not_a_message_raises_mail_read_error_saying_why(raw: bytes, says: str):
    with pytest.raises(MailReadError, match=says):
        read_message(raw)


def test_mail_read_error_is_a_value_error():
    with pytest.raises(ValueError):
        read_message(b"")


def test_other_types_are_refused():
    with pytest.raises(TypeError):
        read_message(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("alternative.eml", "en"),
        ("latin1_qp_fr.eml", "fr"),
        ("utf8_base64.eml", "de"),
        ("invitation.eml", "fr"),
    ],
)
def test_the_language_hint_names_a_clear_language(sample, name: str, language: str):
    assert sample(name).language_hint == language


def test_the_language_hint_is_none_for_too_little_text():
    assert read_message(b"From: a@exemple.fr\n\nOK 14h\n").language_hint is None


def test_mangled_messages_raise_nothing_but_mail_read_error():
    # Cut, spliced and sprinkled with MIME syntax: a mailbox holds worse than this.
    samples = [path.read_bytes() for path in sorted(SAMPLES.glob("*.eml"))]
    syntax = [
        b'"', b"<", b"=?utf-8?q?", b"?=", b";", b"\r\n", b"\n ", b"\xff", b"--", b"*=",
        b"boundary=", b"charset=", b"BEGIN:VEVENT", b"> ", b"On x wrote:", b"<blockquote>",
        b"<![", b"&#",
    ]  # fmt: skip
    rng = random.Random(17)
    for _ in range(300):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data) + 1)
            if rng.random() < 0.6:
                data[position:position] = rng.choice(syntax)
            else:
                del data[position : position + rng.randint(1, 20)]
        with contextlib.suppress(MailReadError):
            read_message(bytes(data))
