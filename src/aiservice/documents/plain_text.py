"""Plain text and Markdown files: bytes decoded (UTF-8, else windows-1252, else Latin-1), and a
Markdown document's title found in its first heading."""

from __future__ import annotations

import codecs
import re

from aiservice.documents.document import DocumentError

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),  # Windows' "Unicode" text: the BOM says which order
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY_SAMPLE = 8192
# Control bytes but tab, the line breaks and form feed: text has nearly none, binaries plenty.
_CONTROL_BYTES = bytes(set(range(32)) - {9, 10, 12, 13})
_MOST_CONTROL_SHARE = 0.05
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)")
# YAML front matter (Jekyll, Hugo, Obsidian): its title, when it has one, is the document's.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def decode_text(data: bytes, name: str) -> str:
    """The text of a text file's bytes; binary data (an image, an archive) is refused."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    sample = data[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if b"\x00" in sample or controls > _MOST_CONTROL_SHARE * len(sample):
        raise DocumentError(f"{name}: binary data, not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # Most non-UTF-8 text is Windows' Western encoding (curly quotes, the euro sign).
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # cp1252 leaves five bytes undefined; Latin-1 none


def markdown_title(text: str) -> str | None:
    """The front matter's title, else the text of the first heading (`# Title`, or a line
    underlined with === or ---)."""
    if front_matter := _FRONT_MATTER.match(text):
        if title := _FRONT_MATTER_TITLE.search(front_matter.group(1)):
            return title.group(1).strip("'\"") or None
        text = text[front_matter.end() :]
    lines = text.split("\n")
    in_code = False
    for number, line in enumerate(lines):
        if _FENCE.match(line):
            in_code = not in_code
        if in_code:
            continue
        if heading := _ATX_HEADING.match(line):
            return heading.group(1).strip() or None
        following = lines[number + 1] if number + 1 < len(lines) else ""
        # A --- under nothing is a rule, and under a list item or quote is not a heading.
        if (
            line.strip()
            and not line.startswith((" " * 4, "\t", "-", "*", ">"))
            and _SETEXT_UNDERLINE.match(following)
        ):
            return line.strip()
    return None
