"""The admin API key: from AISERVICE_MASTER_KEY, or generated once and kept only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from aiservice.settings import Settings

MASTER_KEY_FILE = "master_key.sha256"


def _digest(key: str) -> bytes:
    # API keys are long random strings, so a fast hash suffices (unlike passwords).
    return hashlib.sha256(key.encode("utf-8")).digest()


class MasterKey:
    """Checks a presented Bearer key against the master key's hash, in constant time."""

    def __init__(self, digest: bytes):
        self._digest = digest

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(_digest(presented), self._digest)

    def matches_digest(self, hex_digest: str | None) -> bool:
        """Whether a key whose SHA-256 (hex) is `hex_digest` is the master key."""
        return hex_digest is not None and hmac.compare_digest(hex_digest, self._digest.hex())


def bootstrap_master_key(settings: Settings) -> tuple[MasterKey, str | None]:
    """Return the master key checker, and the new key's text if one was just generated."""
    if settings.master_key is not None:
        return MasterKey(_digest(settings.master_key.get_secret_value())), None
    path: Path = settings.home / MASTER_KEY_FILE
    if path.is_file():
        return MasterKey(_read_digest(path)), None
    key = "sk-admin-" + secrets.token_urlsafe(32)
    settings.home.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(_digest(key).hex() + "\n")
    return MasterKey(_digest(key)), key


def _read_digest(path: Path) -> bytes:
    # A damaged file used to stop startup with a bare "non-hexadecimal number found in fromhex()";
    # name the file and the way out instead.
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(
            f"{path} does not hold a SHA-256 hex digest; delete it to generate a new master key "
            "or set AISERVICE_MASTER_KEY"
        )
    return bytes.fromhex(text)
