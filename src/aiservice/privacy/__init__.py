"""Personal data in the texts of a request: finding it (e-mail addresses, phone numbers, IBANs,
card numbers, IP addresses), replacing it with placeholders, and restoring it in the answer.

Pure, synchronous and without I/O. docs/pii.md says what is detected, what is not, and why.
"""

from aiservice.privacy.pii import Finding, PiiKind, canonical_value, find_pii
from aiservice.privacy.redaction import Redactor
from aiservice.privacy.streaming import StreamRestorer

__all__ = ["Finding", "PiiKind", "Redactor", "StreamRestorer", "canonical_value", "find_pii"]
