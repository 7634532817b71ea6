"""Moderation asked of an OpenAI-compatible upstream's POST /v1/moderations."""

from __future__ import annotations

import os
from typing import Any

import httpx

from aiservice.errors import UpstreamRefused, UpstreamUnavailable
from aiservice.settings import ModerationConfig


class UpstreamModerator:
    """Forwards moderation inputs as they are (text and image parts) and returns the upstream's
    answer; its key comes from the environment variable the config names."""

    def __init__(self, config: ModerationConfig):
        assert config.upstream_base_url is not None
        self.model = config.upstream_model
        key = os.environ.get(config.upstream_api_key_env, "")
        self._client = httpx.AsyncClient(
            base_url=config.upstream_base_url.rstrip("/"),
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeout=config.timeout_s,
        )

    async def moderate(self, inputs: Any, model: str | None) -> dict[str, Any]:
        """The upstream's `CreateModerationResponse` as a dictionary."""
        try:
            answer = await self._client.post(
                "/moderations", json={"input": inputs, "model": model or self.model}
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"The moderation upstream could not be reached ({type(exc).__name__})."
            ) from None
        if answer.status_code != 200:
            raise UpstreamRefused(
                f"The moderation upstream answered {answer.status_code}.",
                code="upstream_error",
            )
        try:
            return answer.json()
        except ValueError:
            raise UpstreamRefused("The moderation upstream's answer is not JSON.") from None

    async def close(self) -> None:
        await self._client.aclose()
