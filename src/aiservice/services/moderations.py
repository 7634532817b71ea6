"""Moderation: texts classified by the embedded classifier or the configured upstream, for
POST /v1/moderations and for moderated completions."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiservice.errors import InvalidRequest, ModelNotFound, UpstreamRefused
from aiservice.metering.meter import Meter, current_meter
from aiservice.moderation.categories import CATEGORIES, Verdict
from aiservice.moderation.local import LocalModerator
from aiservice.moderation.upstream import UpstreamModerator
from aiservice.services.moderation_request import DEFAULT_MODEL, ModerationRequest
from aiservice.settings import ModerationConfig
from aiservice.tokens import estimate_tokens

# The names OpenAI's moderation models go by; each is answered by the classifier in use.
MODERATION_MODELS = frozenset(
    {
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
    }
)
# Below this many characters a batch is classified on the event loop: the embedded
# classifier takes about a millisecond for it, less than a hop to a worker thread and back.
_INLINE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Scored:
    """The verdicts of some texts, in their order, and the model that gave them."""

    model: str
    verdicts: list[Verdict]


class ModerationService:
    """The one classifier of the process: the embedded one unless an upstream is configured."""

    def __init__(self, config: ModerationConfig, local: LocalModerator | None = None):
        self._local = local or LocalModerator()
        self._upstream = UpstreamModerator(config) if config.upstream_base_url else None
        self._loading = asyncio.Lock()

    @property
    def model(self) -> str:
        return self._upstream.model if self._upstream is not None else self._local.name

    async def start(self) -> None:
        """Load the embedded classifier now rather than on its first use (a second or two)."""
        if self._upstream is None:
            await self._ready_local()

    async def close(self) -> None:
        if self._upstream is not None:
            await self._upstream.close()

    async def create(self, request: ModerationRequest) -> dict[str, Any]:
        """The `CreateModerationResponse` of one request, metered on the current meter (the
        route's, a batch line's): the name asked for, the classifier that answered, and the
        texts' tokens as estimated (no classifier reports any); priced at 0 unless the
        classifier's name is given a price."""
        name = request.model or DEFAULT_MODEL
        meter = current_meter()
        if meter is not None:
            meter.model_requested = name
        if self._upstream is not None:
            answer = await self._upstream.moderate(request.wire_input(), name)
            self._metered(meter, request)
            return answer
        if name not in MODERATION_MODELS and name != self._local.name:
            raise ModelNotFound(name)
        images = request.images()
        if images:
            raise InvalidRequest(
                "The embedded moderation classifier reads text only; configure an upstream "
                "moderation model ([moderation] upstream_base_url) to classify images.",
                param=f"input[{images[0]}]",
                code="unsupported_input",
            )
        scored = await self.classify(request.texts())
        self._metered(meter, request)
        return {
            "id": "modr-" + secrets.token_hex(12),
            "model": scored.model,
            "results": [verdict.result_fields() for verdict in scored.verdicts],
        }

    def _metered(self, meter: Meter | None, request: ModerationRequest) -> None:
        if meter is not None:
            # The configured classifier's name, not the upstream's answer: a bounded set.
            meter.model_served = self.model
            meter.input_tokens = estimate_tokens(sum(len(text) for text in request.texts()))

    def check_model(self, name: str, param: str) -> None:
        """Refuse a moderation model name the embedded classifier does not answer to (an
        upstream is asked whatever name it is given)."""
        if self._upstream is None and name not in MODERATION_MODELS and name != self._local.name:
            raise InvalidRequest(
                f"The moderation model '{name}' does not exist.",
                param=param,
                code="model_not_found",
            )

    async def classify(self, texts: Sequence[str], model: str | None = None) -> Scored:
        """Verdicts for `texts`; raises an AIServiceError if the upstream cannot give them."""
        if self._upstream is not None:
            answer = await self._upstream.moderate(list(texts), model)
            return Scored(answer.get("model") or self.model, _upstream_verdicts(answer, texts))
        await self._ready_local()
        if sum(len(text) for text in texts) <= _INLINE_CHARS:
            return Scored(self._local.name, self._local.verdicts(list(texts)))
        verdicts = await asyncio.to_thread(self._local.verdicts, list(texts))
        return Scored(self._local.name, verdicts)

    async def _ready_local(self) -> None:
        if self._local.ready:
            return
        async with self._loading:
            if not self._local.ready:
                await asyncio.to_thread(self._local.load)


def _upstream_verdicts(answer: dict[str, Any], texts: Sequence[str]) -> list[Verdict]:
    try:
        results = answer["results"]
        verdicts = [
            Verdict(
                scores={
                    name: float(result["category_scores"].get(name, 0.0)) for name in CATEGORIES
                },
                categories={name: bool(result["categories"].get(name)) for name in CATEGORIES},
            )
            for result in results
        ]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise UpstreamRefused("The moderation upstream's answer has no usable results.") from None
    if len(verdicts) != len(texts):
        raise UpstreamRefused("The moderation upstream answered for another number of inputs.")
    return verdicts
