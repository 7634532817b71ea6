"""A document read from a path, from bytes, or from text: its kind told by its name's suffix,
its reader chosen by its kind, and every refusal a DocumentError naming it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePath

from aiservice.documents.document import (
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentError,
    check_size,
    display_name,
    failure,
    finished,
)
from aiservice.documents.plain_text import decode_text, markdown_title

_KIND_OF_SUFFIX = {
    "": "txt",  # "README", "stdin": taken as text, and refused if binary
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".docx": "docx",
    ".eml": "eml",
}


def read_document(path: Path) -> Document:
    """The document in the file at `path`, named by its file name."""
    path = Path(path)
    name = display_name(path.name)
    kind_of(name)  # an unsupported type is refused before the file is read
    try:
        with path.open("rb") as file:
            check_size(name, os.fstat(file.fileno()).st_size)
            # Read one byte past the bound: a file that grew since stat() is still caught.
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise DocumentError(f"{name}: no such file ({display_name(str(path))})") from None
    except IsADirectoryError:
        raise DocumentError(
            f"{name}: a directory, not a document ({display_name(str(path))})"
        ) from None
    except OSError as exc:
        raise DocumentError(
            f"{name}: cannot read the file ({exc.strerror or failure(exc)})"
        ) from None
    return read_document_bytes(data, name)


def read_document_bytes(data: bytes, name: str) -> Document:
    """The document of a file's bytes (an upload, say); its kind is told by `name`'s suffix."""
    name = display_name(name)
    kind = kind_of(name)
    check_size(name, len(data))
    data = bytes(data)
    if kind == "pdf":
        from aiservice.documents.pdf_text import read_pdf  # pypdf takes a while to import

        return read_pdf(data, name)
    if kind == "docx":
        from aiservice.documents.docx_text import read_docx

        return read_docx(data, name)
    if kind == "eml":
        from aiservice.documents.eml_text import read_eml

        return read_eml(data, name)
    return _text_document(decode_text(data, name), name, kind)


def document_from_text(text: str, name: str = "text") -> Document:
    """The document of a text already in hand: Markdown if `name` says so, else plain text."""
    name = display_name(name)
    kind = "md" if _suffix(name) in (".md", ".markdown") else "txt"
    return _text_document(text, name, kind)


def kind_of(name: str) -> str:
    """The kind of the document called `name`, told by its suffix; refused when unsupported."""
    suffix = _suffix(name)
    if suffix not in _KIND_OF_SUFFIX:
        raise DocumentError(
            f"{name}: unsupported document type {suffix} (use .txt, .md, .pdf, .docx or .eml)"
        )
    return _KIND_OF_SUFFIX[suffix]


def _suffix(name: str) -> str:
    # The name may come from another system ("C:\Users\me\report.PDF").
    return PurePath(name.replace("\\", "/")).suffix.lower()


def _text_document(text: str, name: str, kind: str) -> Document:
    document = finished(name, kind, text, None)
    if kind == "md":
        # The title is looked for in the cleaned text: line breaks are \n by then.
        return dataclasses.replace(document, title=markdown_title(document.text))
    return document
