"""The quoted history of a reply or a forward, found in its text so that what the sender wrote
this time can be read on its own: "> " lines, the attribution line that introduces a quote
("On … wrote:", "Le … a écrit :") and everything after it, and the header blocks that Outlook
and the forwarding commands put above a copied message."""

from __future__ import annotations

import re

_TEXT = r".{1,300}"
# "On Mon, 10 Mar 2025 at 09:12, Claire <claire@exemple.fr> wrote:" and its translations.
# Clients wrap long attributions, so they are matched on up to three lines joined.
_ATTRIBUTIONS = [
    re.compile(rf"On\s{_TEXT}\swrote\s*:", re.IGNORECASE),
    re.compile(rf"Le\s{_TEXT}\sa\s+écrit\s*:", re.IGNORECASE),
    re.compile(rf"Am\s{_TEXT}\sschrieb(?:\s.{{0,300}})?:", re.IGNORECASE),
    re.compile(rf"El\s{_TEXT}\sescribió\s*:", re.IGNORECASE),
]
_ATTRIBUTION_LINES = 3
# "-----Original Message-----", Gmail's "---------- Forwarded message ---------" and theirs.
_SEPARATOR = re.compile(
    r"-{2,}\s*(?:original message|message d'origine|message original|forwarded message"
    r"|message transféré|ursprüngliche nachricht|weitergeleitete nachricht|mensaje original"
    r"|mensaje reenviado)\s*-{2,}|(?:begin forwarded message|début du message réexpédié)\s*:",
    re.IGNORECASE,
)
# Outlook copies the previous message's headers without a separator line: "From: … / Sent: …
# / To: … / Subject: …", "De : … / Envoyé : … / À : … / Objet : …". A From line alone is
# ordinary text, and so is "From: / To: / Date:" (a journey); with a Sent or Date line and a
# Subject line under it, it is such a block.
_BLOCK_FROM = re.compile(r"\*?(?:from|de|von)\s*:\*?\s*\S", re.IGNORECASE)
_BLOCK_SENT = re.compile(r"\*?(?:sent|date|envoyé|gesendet|enviado)\s*:\*?\s*\S", re.IGNORECASE)
_BLOCK_SUBJECT = re.compile(r"\*?(?:subject|objet|betreff|asunto)\s*:", re.IGNORECASE)
_BLOCK_REACH = 6  # lines under the From line: Sent, To, Cc, Subject and one wrapped
_RULE = re.compile(r"[_\-=]{8,}")  # the line Outlook draws above such a block


def without_history(text: str) -> str:
    """`text` without its quoted history; inline answers between quoted lines are kept."""
    lines = text.split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line, stripped = lines[index], lines[index].strip()
        if _is_quoted(line):
            index += 1
            continue
        if stripped and _SEPARATOR.fullmatch(stripped):
            break
        if _BLOCK_FROM.match(stripped) and _header_block_follows(lines, index):
            del kept[_above_rule(kept) :]
            break
        if attribution := _attribution_length(lines, index):
            if not _answers_between_quotes(lines[index + attribution :]):
                break
            # Answered inline: the quotes go, the answers and everything after them stay.
            index += attribution
            continue
        kept.append(line)
        index += 1
    return _tidy(kept)


def _attribution_length(lines: list[str], index: int) -> int:
    """How many lines the attribution starting at `index` spans; 0 when it is not one."""
    if not re.match(r"(?:on|le|am|el)\s", lines[index].strip(), re.IGNORECASE):
        return 0
    for count in range(1, min(_ATTRIBUTION_LINES, len(lines) - index) + 1):
        if count > 1 and lines[index + count - 2].rstrip().endswith((".", "!", "?")):
            return 0  # a sentence ended: the next line starts another, not a wrapped header
        joined = " ".join(line.strip() for line in lines[index : index + count])
        if any(pattern.fullmatch(joined) for pattern in _ATTRIBUTIONS):
            return count
    return 0


def _answers_between_quotes(after: list[str]) -> bool:
    """Whether the lines after an attribution answer the quote inline: quoted, then the
    sender's text, then quoted again. Cutting there would lose the answers."""
    kinds = [_is_quoted(line) for line in after if line.strip()]
    first_quote = kinds.index(True) if True in kinds else len(kinds)
    rest = kinds[first_quote:]
    return False in rest and True in rest[rest.index(False) :]


def _header_block_follows(lines: list[str], index: int) -> bool:
    following = [line.strip() for line in lines[index + 1 : index + 1 + _BLOCK_REACH]]
    return any(_BLOCK_SENT.match(line) for line in following) and any(
        _BLOCK_SUBJECT.match(line) for line in following
    )


def _above_rule(kept: list[str]) -> int:
    """Where the history starts in the lines kept so far: at the rule drawn above the
    block (blank lines between allowed), or after them all when there is none."""
    above = len(kept) - 1
    while above >= 0 and not kept[above].strip():
        above -= 1
    return above if above >= 0 and _RULE.fullmatch(kept[above].strip()) else len(kept)


def _is_quoted(line: str) -> bool:
    return line.startswith(">")


def _tidy(lines: list[str]) -> str:
    """Lines joined, with runs of blank lines (left where quotes were) made one."""
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
