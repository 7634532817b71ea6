"""Word (.docx) files through python-docx: the body's paragraphs and tables in their order,
each paragraph (a heading too) a paragraph of the text, each table cell a line."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from aiservice.documents.document import Document, DocumentError, failure, finished

# A .docx is a zip archive: bound what it unpacks to, or 20 MB could become gigabytes of XML.
_MAX_UNPACKED_BYTES = 256 * 1024 * 1024


def read_docx(data: bytes, name: str) -> Document:
    """The Document of a .docx file's bytes."""
    _check_archive(data, name)
    try:
        word = docx.Document(io.BytesIO(data))
        blocks = [_block_text(block) for block in word.iter_inner_content()]
        title = word.core_properties.title or _title_paragraph(word.paragraphs)
    except Exception as exc:  # python-docx and lxml raise anything on a damaged file
        raise DocumentError(f"{name}: not a readable DOCX file ({failure(exc)})") from None
    return finished(name, "docx", "\n\n".join(block for block in blocks if block), title)


def _check_archive(data: bytes, name: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except Exception:  # BadZipFile, EOFError, NotImplementedError (odd zip versions)...
        raise DocumentError(f"{name}: not a readable DOCX file (not a zip archive)") from None
    if unpacked > _MAX_UNPACKED_BYTES:
        raise DocumentError(
            f"{name}: the DOCX file unpacks to {unpacked:,} bytes, over the limit of "
            f"{_MAX_UNPACKED_BYTES:,}"
        )


def _block_text(block: Paragraph | Table) -> str:
    if isinstance(block, Paragraph):
        return block.text.strip()
    lines: list[str] = []
    # A merged cell is returned once for every grid cell it spans, across columns and rows;
    # its XML element is the same each time (held here, so identity is a safe test).
    seen: set[object] = set()
    for row in block.rows:
        for cell in row.cells:
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            if text := " ".join(cell.text.split()):
                lines.append(text)
    return "\n".join(lines)


def _title_paragraph(paragraphs: list[Paragraph]) -> str | None:
    # Without a core title, Word's "Title" style (add_heading(text, 0)) names the document.
    for paragraph in paragraphs:
        if paragraph.style is not None and paragraph.style.name == "Title" and paragraph.text:
            return paragraph.text
    return None
