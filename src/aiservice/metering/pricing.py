"""What a model call costs: USD per million input and output tokens, per served model.

Configured prices win. A model served by OpenAI itself with no price configured uses OpenAI's
list price for its upstream name (seed 000's table); anything else costs 0 until priced. A line
of a batch costs (1 - batch_discount) of that: the model's own discount, else the top-level one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiservice.providers.embedding_models import served_configs
from aiservice.settings import OPENAI_BASE_URL, ModelConfig, Settings

# USD per 1M tokens (input, output), as seed 000 lists them.
OPENAI_LIST_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    # Embedding models: input only (OpenAI's price list).
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}


@dataclass(frozen=True, slots=True)
class Price:
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


FREE = Price()


class PriceList:
    """Prices and provider kinds of the configured models, looked up by served model name."""

    def __init__(self, settings: Settings):
        models = served_configs(settings)  # with the bundled embedding model
        self._prices = {model.name: _price(model) for model in models}
        self._providers = {model.name: model.provider for model in models}
        self._batch_factors = {
            model.name: 1.0
            - (settings.batch_discount if model.batch_discount is None else model.batch_discount)
            for model in models
        }
        self._default_batch_factor = 1.0 - settings.batch_discount

    def price(self, model: str | None) -> Price:
        return self._prices.get(model or "", FREE)

    def provider(self, model: str | None) -> str | None:
        return self._providers.get(model or "")

    def cost(
        self, model: str | None, input_tokens: int, output_tokens: int, *, batch: bool = False
    ) -> float:
        cost = self.price(model).cost(input_tokens, output_tokens)
        if batch:
            cost *= self._batch_factors.get(model or "", self._default_batch_factor)
        return cost


def _price(model: ModelConfig) -> Price:
    listed = FREE
    if model.provider == "openai" and model.upstream_url == OPENAI_BASE_URL:
        listed = Price(*_list_price(model.upstream_name))
    return Price(
        listed.input_per_1m if model.price_input_per_1m is None else model.price_input_per_1m,
        listed.output_per_1m if model.price_output_per_1m is None else model.price_output_per_1m,
    )


def _list_price(upstream_name: str) -> tuple[float, float]:
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs; the longest
    # matching family wins, so gpt-4o-mini is not priced as gpt-4o.
    families = [name for name in OPENAI_LIST_PRICES if upstream_name.startswith(name)]
    if not families:
        return (0.0, 0.0)
    return OPENAI_LIST_PRICES[max(families, key=len)]
