"""PDF files through pypdf: the text layer of every page, lines reflowed into paragraphs, page
numbers dropped; encrypted files opened with the empty password or refused."""

from __future__ import annotations

import io
import re

from pypdf import PageObject, PasswordType, PdfReader

from aiservice.documents.document import (
    Document,
    DocumentError,
    check_length,
    failure,
    finished,
)

_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but the line break, NBSP included
# A line that is only a page number: "12", "- 12 -", "Page 12", "12 / 30", "Page 12 of 30".
_PAGE_NUMBER = re.compile(
    r"(?i)^[-\u2013\u2014]?\s*(?:page|p\.)?\s*\d{1,4}"  # "- Page 12" ...
    r"\s*(?:(?:/|of|sur|de|von)\s*\d{1,4})?\s*[-\u2013\u2014]?$"  # ... "of 30 -"
)
# A line this much shorter than the page's longest ends its paragraph (or is a heading):
# pypdf gives one line per printed line, and no mark between paragraphs.
_SHORT_LINE = 0.8


def read_pdf(data: bytes, name: str) -> Document:
    """The Document of a PDF file's bytes."""
    reader = _open(data, name)
    page_texts: list[str] = []
    characters = 0
    for number, page in enumerate(_pages(reader, name), start=1):
        try:
            raw = page.extract_text()
        except Exception as exc:  # pypdf raises all sorts on a damaged content stream
            raise DocumentError(
                f"{name}: not a readable PDF (page {number}: {failure(exc)})"
            ) from None
        text = _page_text(raw)
        characters += len(text) + 2
        check_length(name, characters)  # stop early: a 20 MB PDF may hold far more text
        page_texts.append(text)
    if not page_texts:
        raise DocumentError(f"{name}: the PDF has no pages")
    if not any(text.strip() for text in page_texts):
        raise DocumentError(f"{name}: the PDF has no text layer (a scanned image?); run OCR first")
    text = "\n\n".join(text for text in page_texts if text)
    return finished(name, "pdf", text, _title(reader), pages=len(page_texts))


def _open(data: bytes, name: str) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:  # PdfReadError, and plain ValueError/KeyError on garbage
        raise DocumentError(f"{name}: not a readable PDF ({failure(exc)})") from None
    if encrypted:
        try:
            # Many PDFs are encrypted only to set permissions, with an empty user password.
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception as exc:  # DependencyError (AES without `cryptography`), PdfReadError
            raise DocumentError(
                f"{name}: the PDF is encrypted and cannot be opened ({failure(exc)})"
            ) from None
        if not opened:
            raise DocumentError(f"{name}: the PDF is encrypted with a password; decrypt it first")
    return reader


def _pages(reader: PdfReader, name: str) -> list[PageObject]:
    try:
        return list(reader.pages)
    except Exception as exc:  # a broken page tree
        raise DocumentError(f"{name}: not a readable PDF ({failure(exc)})") from None


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        return str(metadata.title) if metadata and metadata.title else None
    except Exception:  # a damaged Info dictionary costs the title, not the document
        return None


def _page_text(raw: str) -> str:
    """One page's text: spaces collapsed, a lone page number first or last dropped, and the
    printed lines joined into paragraphs separated by blank lines."""
    lines = [line.strip() for line in _SPACES.sub(" ", raw.replace("\x00", "")).split("\n")]
    lines = [line for line in lines if line]
    if lines and _PAGE_NUMBER.match(lines[-1]):
        lines.pop()
    if lines and _PAGE_NUMBER.match(lines[0]):
        lines.pop(0)
    if not lines:
        return ""
    longest = max(len(line) for line in lines)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        current = _joined(current, line)
        if len(line) < _SHORT_LINE * longest:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


def _joined(paragraph: str, line: str) -> str:
    if not paragraph:
        return line
    # A line broken after a hyphen ("well-" / "known") is joined without a space.
    if paragraph.endswith("-") and paragraph[-2:-1].isalpha():
        return paragraph + line
    return f"{paragraph} {line}"
