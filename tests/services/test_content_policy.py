"""The operator's modes for a caller: the key's own, else its user's, else the config's."""

from __future__ import annotations

import pytest

from aiservice.governance.accounts import Principal
from aiservice.services.content_policy import operator_modes
from aiservice.settings import ModerationConfig, PiiConfig, Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        home=tmp_path,
        moderation=ModerationConfig(mode="score"),
        pii=PiiConfig(mode="flag"),
    )


@pytest.mark.parametrize(
    ("key", "user", "expected"),
    [
        (None, None, ("score", "flag")),
        ({"moderation": "block"}, None, ("block", "flag")),
        (None, {"pii": "redact"}, ("score", "redact")),
        ({"moderation": "off"}, {"moderation": "block", "pii": "off"}, ("off", "off")),
        ({"pii": "redact"}, {"moderation": "block"}, ("block", "redact")),
    ],
)
def test_a_keys_values_win_over_its_users_and_both_over_the_config(
    settings: Settings, key, user, expected
) -> None:
    principal = Principal(owner="u", is_admin=False, key_safety=key, user_safety=user)
    assert operator_modes(principal, settings) == expected


def test_without_a_caller_the_config_decides(settings: Settings) -> None:
    assert operator_modes(None, settings) == ("score", "flag")
