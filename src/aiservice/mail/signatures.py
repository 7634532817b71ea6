"""The signature at the end of a message's new text. Cut only where it is unmistakable: after
the "-- " delimiter, a "Sent from my phone" line, and the contact block below a sign-off and
the name under it. Anything less certain stays: a kept signature costs a few tokens, a lost
sentence changes the message."""

from __future__ import annotations

import re

_DELIMITER = "--"  # RFC 3676's "-- "; many clients drop its trailing space
_LONGEST_SIGNATURE = 20  # non-blank lines after a delimiter; more is not a signature
_MOBILE_FOOTER = re.compile(
    r"(?:sent from my|envoyé de mon|envoyé depuis mon|get outlook for|télécharger outlook pour"
    r"|enviado desde mi)\s.{1,40}|von meinem\s.{1,40}\sgesendet",
    re.IGNORECASE,
)
_SIGN_OFFS = {
    "regards", "best regards", "kind regards", "warm regards", "best wishes", "best",
    "thanks", "thank you", "many thanks", "cheers", "sincerely", "yours sincerely",
    "cordialement", "bien cordialement", "très cordialement", "bien à vous", "merci",
    "merci beaucoup", "salutations", "sincères salutations", "bonne journée", "à bientôt",
    "mit freundlichen grüßen", "viele grüße", "saludos", "atentamente", "un saludo",
}  # fmt: skip
_CONTACT_BLOCK_LINES = 6  # below the name: title, company, phone, address...
_CONTACT_LINE_CHARS = 80
_CONTACT_DETAIL = re.compile(
    r"\+?\d[\d .()\-]{7,}\d|\S+@\S+\.\w+|https?://|www\.|\s\|\s", re.IGNORECASE
)
# A line of a contact block is a label, not a sentence: a sentence or a postscript down there
# is part of the message.
_SENTENCE = re.compile(r"(?:p\.?\s?s\b.*|.*[.!?:])", re.IGNORECASE)


def without_signature(text: str) -> str:
    """`text` without the signature lines that can be told apart from the message."""
    lines = text.split("\n")
    lines = _before_delimiter(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and _MOBILE_FOOTER.fullmatch(lines[-1].strip()):
        lines.pop()
    lines = _without_contact_block(lines)
    return "\n".join(lines).strip("\n")


def _before_delimiter(lines: list[str]) -> list[str]:
    """The lines above the first delimiter that is followed by no more than a signature."""
    non_blank_after = sum(1 for line in lines if line.strip())
    for index, line in enumerate(lines):
        non_blank_after -= bool(line.strip())
        if line.rstrip() == _DELIMITER and non_blank_after <= _LONGEST_SIGNATURE:
            return lines[:index]
    return lines


def _without_contact_block(lines: list[str]) -> list[str]:
    """Drop the lines under the name that follows the last sign-off, when they are a short
    block with a phone number, an address or a link in it, and nothing else follows."""
    sign_off = _last_sign_off(lines)
    if sign_off is None:
        return lines
    below = [index for index in range(sign_off + 1, len(lines)) if lines[index].strip()]
    if not below:
        return lines
    name, contact = below[0], below[1:]
    if (
        contact
        and len(contact) <= _CONTACT_BLOCK_LINES
        and all(_is_contact_line(lines[index]) for index in contact)
        and any(_CONTACT_DETAIL.search(lines[index]) for index in contact)
    ):
        return lines[: name + 1]
    return lines


def _is_contact_line(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) <= _CONTACT_LINE_CHARS and not _SENTENCE.fullmatch(stripped)


def _last_sign_off(lines: list[str]) -> int | None:
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].strip().rstrip(",.!").strip().lower() in _SIGN_OFFS:
            return index
    return None
