"""A data subject, resolved: what the store matches rows by (services/privacy_subject.py
says how one is named and checked)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Subject:
    """A subject, resolved: `owner` is an account's user id (the subject itself, or `within`)."""

    kind: str  # "account", "user" or "metadata"
    owner: str | None = None
    user: str | None = None
    key: str | None = None  # metadata
    value: str | None = None

    @property
    def label(self) -> str:
        """What the subject is, without who: safe for logs and the audit log."""
        return f"metadata.{self.key}" if self.kind == "metadata" else self.kind

    def as_json(self) -> dict[str, Any]:
        fields = {
            "kind": self.kind, "owner": self.owner, "user": self.user, "key": self.key,
            "value": self.value,
        }  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Subject:
        return cls(**stored)

    @property
    def digest(self) -> str:
        """Names one subject for as long as its erasure runs (dropped when it completes)."""
        canonical = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
