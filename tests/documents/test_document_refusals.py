"""What cannot be analysed is refused with a DocumentError, one line naming the file; no
library exception gets out, whatever the input."""

from __future__ import annotations

import random
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from aiservice.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_CHARS,
    DocumentError,
    document_from_text,
    read_document,
    read_document_bytes,
)
from document_samples import Samples, pdf_bytes


def _refusal(read, *args) -> str:
    with pytest.raises(DocumentError) as caught:
        read(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_file_is_refused(tmp_path: Path):
    message = _refusal(read_document, tmp_path / "absent.pdf")
    assert message.startswith("absent.pdf: no such file")


def test_a_directory_is_refused(tmp_path: Path):
    (tmp_path / "dossier.txt").mkdir()
    assert _refusal(read_document, tmp_path / "dossier.txt").startswith("dossier.txt: ")


def test_an_empty_file_is_refused(samples: Samples):
    assert _refusal(read_document, samples.empty) == (
        "vide.txt: the document is empty (no text in it)"
    )


@pytest.mark.parametrize("name", ["blank.txt", "blank.md", "blank"])
def test_a_file_of_whitespace_only_is_refused(name: str):
    assert "empty" in _refusal(read_document_bytes, b" \n\t\r\n  \n", name)


def test_a_pdf_without_a_text_layer_is_refused(samples: Samples):
    assert _refusal(read_document, samples.image_only_pdf) == (
        "scan.pdf: the PDF has no text layer (a scanned image?); run OCR first"
    )


def test_random_bytes_are_not_a_readable_pdf(samples: Samples):
    assert _refusal(read_document, samples.corrupt_pdf).startswith("casse.pdf: not a readable PDF")


def test_random_bytes_are_not_a_readable_word_file(samples: Samples):
    message = _refusal(read_document, samples.corrupt_docx)
    assert message.startswith("casse.docx: not a readable DOCX file")


def test_a_zip_that_is_not_a_word_file_is_refused():
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as writing:
        writing.writestr("hello.txt", "not a document")
    message = _refusal(read_document_bytes, archive.getvalue(), "faux.docx")
    assert message.startswith("faux.docx: not a readable DOCX file")


def test_an_unsupported_type_is_refused_before_reading(tmp_path: Path):
    assert _refusal(read_document, tmp_path / "tableau.xlsx") == (
        "tableau.xlsx: unsupported document type .xlsx (use .txt, .md, .pdf, .docx or .eml)"
    )


def test_binary_data_is_not_a_text_file(samples: Samples):
    message = _refusal(read_document_bytes, samples.image_only_pdf.read_bytes(), "image.txt")
    assert message == "image.txt: binary data, not a text file"


def test_a_text_that_is_not_an_email_is_refused():
    message = _refusal(read_document_bytes, b"Juste une phrase.", "lettre.eml")
    assert message.startswith("lettre.eml: not an e-mail message")


def test_a_message_without_text_is_empty():
    message = b"From: a@example.org\r\nSubject: Rien\r\n\r\n\r\n"
    assert "empty" in _refusal(read_document_bytes, message, "rien.eml")


def test_a_pdf_encrypted_with_a_password_is_refused(tmp_path: Path):
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf_bytes(lambda pdf: pdf.cell(0, 8, "x")))))
    writer.encrypt(user_password="secret", algorithm="AES-256")
    path = tmp_path / "secret.pdf"
    writer.write(path)
    assert _refusal(read_document, path) == (
        "secret.pdf: the PDF is encrypted with a password; decrypt it first"
    )


def test_a_file_over_20_mb_is_refused_unread(tmp_path: Path):
    path = tmp_path / "enorme.txt"
    with path.open("wb") as file:
        file.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: nothing is written
    message = _refusal(read_document, path)
    assert message.startswith("enorme.txt: the file is 20,971,521 bytes, over the 20 MB limit")
    assert "20 MB" in _refusal(read_document_bytes, bytes(MAX_DOCUMENT_BYTES + 1), "gros.pdf")


def test_a_text_over_2_million_characters_is_refused():
    message = _refusal(document_from_text, "a" * (MAX_DOCUMENT_CHARS + 1), "long.txt")
    assert message == "long.txt: the text is over the limit of 2,000,000 characters"


def _damaged(samples: Samples) -> list[tuple[str, bytes]]:
    """Real documents cut short, bytes flipped at random, and noise, under each suffix."""
    noise = random.Random(7)
    damaged: list[tuple[str, bytes]] = []
    for path in (samples.thirty_pages_pdf, samples.word, samples.email):
        data = path.read_bytes()
        damaged += [(path.name, data[: len(data) // 2]), (path.name, data[:100])]
        flipped = bytearray(data)
        for _ in range(30):
            flipped[noise.randrange(len(flipped))] = noise.randrange(256)
        damaged.append((path.name, bytes(flipped)))
    for suffix in (".pdf", ".docx", ".eml", ".txt", ".md"):
        damaged.append((f"noise{suffix}", bytes(noise.randrange(256) for _ in range(2000))))
        damaged.append((f"zero{suffix}", b""))
    return damaged


def test_damaged_input_gives_a_document_or_a_document_error(samples: Samples):
    for name, data in _damaged(samples):
        try:
            read_document_bytes(data, name)
        except DocumentError as refusal:
            assert str(refusal).startswith(f"{name}: ")
            assert "\n" not in str(refusal)
