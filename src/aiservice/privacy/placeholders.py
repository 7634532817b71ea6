"""The typed, numbered stand-ins that take the place of personal data ("<EMAIL_1>"), and the
one pass that puts the originals back."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiservice.privacy.pii import PiiKind

# Any word of the placeholders' shape, ours or not: restoring looks each one up exactly, so an
# unknown number, a lower-case kind or a space inside stays as the model wrote it.
PLACEHOLDER = re.compile(rf"<(?:{'|'.join(PiiKind)})_[0-9]+>")


def placeholder(kind: PiiKind, number: int) -> str:
    """The stand-in for the `number`th distinct value of `kind`: "<EMAIL_1>"."""
    return f"<{kind}_{number}>"


def restore_placeholders(text: str, originals: Mapping[str, str]) -> str:
    """`text` with each placeholder of `originals` replaced by its original. One pass: an
    original that itself looks like a placeholder is not replaced again."""
    if not originals or "<" not in text:
        return text
    return PLACEHOLDER.sub(lambda match: originals.get(match.group(), match.group()), text)
