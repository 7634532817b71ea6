"""Bytes to text whatever a message claims about them: a declared charset is trusted but never
allowed to raise, and undeclared or unknown ones are guessed between UTF-8 and windows-1252."""

from __future__ import annotations

import codecs
from email.message import EmailMessage

# ASCII and Latin-1 labels are often wrong: mailers put them on UTF-8 text, and on windows-1252
# text (curly quotes, the euro sign). So they get the same guess as no label; windows-1252 agrees
# with Latin-1 on every printable character (browsers read Latin-1 HTML this way too).
_WEAK_LABELS = {"ascii", "iso8859-1"}
_FALLBACK = "cp1252"


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """`raw` as text in `charset`; bad bytes become U+FFFD, nothing raises."""
    codec = _codec_name(charset)
    if codec is None or codec in _WEAK_LABELS:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode(_FALLBACK, errors="replace")
    try:
        return raw.decode(codec, errors="replace")
    except (LookupError, UnicodeError):
        # A label Python knows but not as a text encoding ("base64", "idna"...).
        return raw.decode(_FALLBACK, errors="replace")


def _codec_name(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"').lower()).name
    except (LookupError, ValueError):
        return None


def part_text(part: EmailMessage) -> str:
    """The text of a leaf part: transfer encoding undone, charset decoded, lines ending in \\n."""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    text = decode_bytes(raw, part.get_content_charset())
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").lstrip("\ufeff")


def clean_header(text: str) -> str:
    """A header value without the raw bytes the parser kept as surrogates (8-bit headers)."""
    if any("\udc80" <= char <= "\udcff" for char in text):
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    # Folded headers keep their line breaks in a few malformed cases; a header is one line.
    return " ".join(text.split())
