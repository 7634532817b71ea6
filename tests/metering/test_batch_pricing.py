"""What a batch line costs: (1 - batch_discount) of its model's prices, the model's own
discount over the top-level one, and nothing changed for requests outside a batch."""

from __future__ import annotations

import pytest

from aiservice.metering.pricing import PriceList
from aiservice.settings import ConfigError, load_settings


def prices(tmp_path, text: str) -> PriceList:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return PriceList(load_settings(config))


MODELS = """
[[models]]
name = "plain"
price_input_per_1m = 2.0
price_output_per_1m = 4.0

[[models]]
name = "own-discount"
price_input_per_1m = 2.0
price_output_per_1m = 4.0
batch_discount = 0.25
"""


def test_a_batch_line_costs_half_by_default(tmp_path):
    listed = prices(tmp_path, MODELS)
    full = listed.cost("plain", 1_000_000, 1_000_000)
    assert full == pytest.approx(6.0)
    assert listed.cost("plain", 1_000_000, 1_000_000, batch=True) == pytest.approx(3.0)


def test_a_model_s_own_discount_wins(tmp_path):
    listed = prices(tmp_path, f"batch_discount = 0.9\n{MODELS}")
    assert listed.cost("own-discount", 1_000_000, 0, batch=True) == pytest.approx(1.5)
    assert listed.cost("plain", 1_000_000, 0, batch=True) == pytest.approx(0.2)
    assert listed.cost("own-discount", 1_000_000, 0) == pytest.approx(2.0)


def test_the_discount_comes_from_the_environment_too(tmp_path, monkeypatch):
    monkeypatch.setenv("AISERVICE_BATCH_DISCOUNT", "0")
    listed = prices(tmp_path, MODELS)
    assert listed.cost("plain", 1_000_000, 0, batch=True) == pytest.approx(2.0)


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_a_discount_outside_0_to_1_stops_start_up(tmp_path, value):
    with pytest.raises(ConfigError):
        prices(tmp_path, f"batch_discount = {value}\n{MODELS}")


def test_batch_upstream_is_refused_on_a_local_model(tmp_path):
    with pytest.raises(ConfigError, match="batch"):
        prices(tmp_path, '[[models]]\nname = "local-one"\nbatch = "upstream"\n')
