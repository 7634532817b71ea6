"""One loaded embedded moderator for the moderation tests (loading takes about 2.5 s)."""

from __future__ import annotations

import pytest

from aiservice.moderation.local import LocalModerator


@pytest.fixture(scope="session")
def moderator() -> LocalModerator:
    loaded = LocalModerator()
    loaded.load()
    return loaded
