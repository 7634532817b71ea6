"""Test helpers that ship with aiservice: a fake OpenAI upstream that fails on demand.

`from aiservice.testing import FakeUpstream, Fault`; see docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiservice.testing.fake_upstream import FakeUpstream, Fault, RecordedRequest

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m aiservice.testing.fake_upstream` does not find
    # its own module already imported by this package.
    if name in __all__:
        from aiservice.testing import fake_upstream

        return getattr(fake_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
