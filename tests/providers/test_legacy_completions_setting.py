"""`legacy_completions`: which upstreams get text completions passed through to their own
`/v1/completions`, and which have them emulated through chat."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiservice.settings import ModelConfig


def upstream(**fields: object) -> ModelConfig:
    return ModelConfig(name="m", provider="openai", **fields)  # type: ignore[arg-type]


def test_a_server_of_ones_own_serves_them_by_default():
    assert upstream(base_url="http://127.0.0.1:11434/v1").serves_legacy_completions


@pytest.mark.parametrize(
    ("model", "served"),
    [("gpt-4o-mini", False), ("gpt-3.5-turbo-instruct", True), ("davinci-002", True)],
)
def test_openai_serves_them_only_for_its_completion_models(model, served):
    assert upstream(upstream_model=model).serves_legacy_completions is served
    explicit = upstream(base_url="https://api.openai.com/v1", upstream_model=model)
    assert explicit.serves_legacy_completions is served


@pytest.mark.parametrize("value", [True, False])
def test_the_setting_wins_over_the_default(value):
    assert upstream(legacy_completions=value).serves_legacy_completions is value
    own = upstream(base_url="http://127.0.0.1:8000/v1", legacy_completions=value)
    assert own.serves_legacy_completions is value


def test_it_does_not_apply_to_a_local_model():
    with pytest.raises(ValidationError, match="'legacy_completions' does not apply"):
        ModelConfig(name="m", provider="local", legacy_completions=True)
