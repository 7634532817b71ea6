"""Documents for analysis: a .txt, .md, .pdf, .docx or .eml file (or a text) read into a
`Document`, and a text split into `Chunk`s that fit a model's context.

Pure and synchronous (callers run them in a thread); bounded (20 MB of input, 2,000,000
characters of text); every refusal is a `DocumentError` whose message names the file.
"""

from aiservice.documents.chunks import (
    MIN_CHUNK_TOKENS,
    Chunk,
    estimate_text_tokens,
    split_into_chunks,
)
from aiservice.documents.document import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_CHARS,
    Document,
    DocumentError,
)
from aiservice.documents.reader import document_from_text, read_document, read_document_bytes

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_CHARS",
    "MIN_CHUNK_TOKENS",
    "Chunk",
    "Document",
    "DocumentError",
    "document_from_text",
    "estimate_text_tokens",
    "read_document",
    "read_document_bytes",
    "split_into_chunks",
]
