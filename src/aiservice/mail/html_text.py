"""HTML bodies as the text a reader sees: paragraphs and line breaks kept, scripts and styles
dropped, entities decoded, a link's text kept (its address is not), and quoted blocks marked
with "> " so that the history is found the same way as in a plain-text message."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose content is never shown.
_HIDDEN = {"script", "style", "title", "template"}
# Elements that stand apart from the text around them by a blank line.
_PARAGRAPHS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "dl", "pre",
    "hr", "address", "figure",
}  # fmt: skip
# Elements that start on a line of their own.
_LINES = {
    "div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "main", "nav",
    "aside", "center", "form", "fieldset", "caption", "tbody", "thead", "tfoot",
}  # fmt: skip
_CELLS = {"td", "th"}
_SPACES = re.compile(r"\s+")
# Python 3.11's parser raises on a "<![" not followed by a keyword it knows (Outlook's
# "<![if !mso]>" is one it knows; a stray "<![" is not). Such a "<![" is text, so it is escaped.
_STRAY_MARKED_SECTION = re.compile(
    r"<!\[(?!(?:temp|cdata|ignore|include|rcdata|if|else|endif)(?![-_.a-z0-9]))", re.IGNORECASE
)


class _TextCollector(HTMLParser):
    """Collects the visible text of a document, line by line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []  # finished lines, quote marks included
        self._line = ""  # the text of the line being written
        self._line_depth = 0  # blockquotes open when the current line began
        self._quote_depth = 0
        self._hidden_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden_depth += 1
        elif tag == "br":
            self.end_line(keep_empty=True)
        elif tag in _CELLS and self._line:
            self._line += " "
        self._open_or_close(tag)
        if tag == "blockquote":
            self._quote_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
        elif tag == "li":
            self._line = "- "

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        if tag == "blockquote":
            # The quote's last line is finished inside it; the break after it is outside.
            self.end_line()
            self._quote_depth = max(0, self._quote_depth - 1)
        self._open_or_close(tag)
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._hidden_depth:
            return
        if self._pre_depth:
            first, *others = data.split("\n")
            self._add(first)
            for line in others:
                self.end_line(keep_empty=True)
                self._add(line)
            return
        text = _SPACES.sub(" ", data)
        if self._line in ("", "- "):
            text = text.lstrip()
        self._add(text)

    def _add(self, text: str) -> None:
        if text and not self._line:
            self._line_depth = self._quote_depth
        self._line += text

    def _open_or_close(self, tag: str) -> None:
        if tag in _PARAGRAPHS:
            self.end_line()
            blank = self._quote_prefix().rstrip()
            if self.lines and self.lines[-1].strip("> "):
                self.lines.append(blank)
            elif self.lines and len(blank) < len(self.lines[-1]):
                # After a deeper quote's blank line, the break belongs to the outer level.
                self.lines[-1] = blank
        elif tag in _LINES:
            self.end_line()

    def end_line(self, *, keep_empty: bool = False) -> None:
        """Finish the current line (an empty one only for an explicit <br>)."""
        text = self._line.rstrip() if not self._pre_depth else self._line
        if text.strip() and text.strip() != "-":
            self.lines.append("> " * self._line_depth + text)
        elif keep_empty:
            self.lines.append(self._quote_prefix().rstrip())
        self._line = ""
        self._line_depth = self._quote_depth

    def _quote_prefix(self) -> str:
        return "> " * self._quote_depth


def html_to_text(html: str) -> str:
    """The readable text of an HTML document or fragment."""
    collector = _TextCollector()
    collector.feed(_STRAY_MARKED_SECTION.sub("&lt;![", html))
    collector.close()
    collector.end_line()
    text = "\n".join(
        line.rstrip() if line.strip("> ") else line.strip() for line in collector.lines
    )
    # Nested blocks and <br> runs pile up blank lines; one blank line is a paragraph break.
    return re.sub(r"\n(?:[ \t>]*\n){2,}", "\n\n", text).strip("\n")
