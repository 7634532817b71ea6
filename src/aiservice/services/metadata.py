"""OpenAI's metadata rules, shared by every object that carries metadata."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

MAX_PAIRS, MAX_KEY_LENGTH, MAX_VALUE_LENGTH = 16, 64, 512


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """At most 16 pairs, keys up to 64 characters, string values up to 512."""
    if len(metadata) > MAX_PAIRS:
        raise ValueError(f"at most {MAX_PAIRS} key-value pairs are allowed")
    for key, value in metadata.items():
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"keys are at most {MAX_KEY_LENGTH} characters")
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"values are at most {MAX_VALUE_LENGTH} characters")
    return metadata


Metadata = Annotated[dict[str, str], AfterValidator(check_metadata)]
