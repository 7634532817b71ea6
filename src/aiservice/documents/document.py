"""What reading a document gives (a `Document`), the one error raised for a document that cannot
be analysed, the bounds on what is read, and the finishing every reader's text goes through."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # "20 MB" in messages; api/documents.py has the same bound
MAX_DOCUMENT_CHARS = 2_000_000
KINDS = ("txt", "md", "pdf", "docx", "eml")

# Control characters but tab and line feed: NULs and the like come from broken extractions and
# from binary data, and a model gains nothing from them. (Line breaks are made \n before.)
_CONTROLS = dict.fromkeys([*range(9), 11, 12, *range(14, 32), 127])
_LINE_BREAKS = re.compile(r"\r\n?|[\v\x85\u2028\u2029]")
_PAGE_BREAK = "\f"  # between the pages of a text file: a paragraph break
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)


class DocumentError(Exception):
    """The document cannot be analysed; str(error) is a one-line message naming the file."""


@dataclass(frozen=True, slots=True)
class Document:
    """A document's text, read from a file or given as text, with what its format says of it."""

    name: str  # the file name given ("report.pdf"), or "stdin" / "text"
    kind: str  # one of KINDS
    text: str  # the whole text, paragraphs separated by blank lines
    title: str | None  # PDF/DOCX metadata title, first Markdown heading, e-mail subject
    pages: int | None  # PDF pages; None otherwise


def display_name(name: str) -> str:
    """`name` as one line, for messages: an uploaded file's name may hold anything."""
    return " ".join(str(name).split())[:200] or "document"


def check_size(name: str, size: int) -> None:
    """Refuse input over MAX_DOCUMENT_BYTES, before anything is parsed."""
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentError(
            f"{name}: the file is {size:,} bytes, over the 20 MB limit "
            f"({MAX_DOCUMENT_BYTES:,} bytes)"
        )


def check_length(name: str, characters: int) -> None:
    """Refuse text over MAX_DOCUMENT_CHARS (readers call it as they go, to stop early)."""
    if characters > MAX_DOCUMENT_CHARS:
        raise DocumentError(
            f"{name}: the text is over the limit of {MAX_DOCUMENT_CHARS:,} characters"
        )


def clean_text(text: str) -> str:
    """`text` with \\n line breaks, no control characters, no trailing spaces, and paragraphs
    separated by exactly one blank line."""
    text = _LINE_BREAKS.sub("\n", text.replace(_PAGE_BREAK, "\n\n"))
    text = text.translate(_CONTROLS).lstrip("\ufeff")
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


def finished(
    name: str, kind: str, text: str, title: str | None, pages: int | None = None
) -> Document:
    """The Document of a reader's text, cleaned; refused when empty or too long."""
    text = clean_text(text)
    check_length(name, len(text))
    if not text.strip():
        raise DocumentError(f"{name}: the document is empty (no text in it)")
    title = " ".join((title or "").split()) or None
    return Document(name=name, kind=kind, text=text, title=title, pages=pages)


def failure(exc: BaseException) -> str:
    """A library exception as a short phrase for a DocumentError's message."""
    reason = " ".join(str(exc).split())[:160]
    return reason or type(exc).__name__
