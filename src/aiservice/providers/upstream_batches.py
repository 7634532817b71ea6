"""An upstream's own Files and Batch API (OpenAI's), for batches sent there whole.

Not on any request's path: a worker calls it every few seconds while it follows a batch, so a
plain httpx client per call is enough. Failures come out as UpstreamUnavailable (to try again
later) or UpstreamRefused (the upstream will not take it), never with the key in the message.
"""

from __future__ import annotations

from typing import Any

import httpx

from aiservice.errors import UpstreamRefused, UpstreamUnavailable
from aiservice.providers.upstream_model import read_api_key
from aiservice.settings import ModelConfig

_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class UpstreamBatchClient:
    """The Files and Batch routes of one model's upstream."""

    def __init__(self, model: ModelConfig):
        self._base_url = model.upstream_url.rstrip("/")
        self._model = model
        self.upstream_model = model.upstream_name

    async def upload(self, filename: str, content: bytes) -> str:
        """Upload a batch input file; its upstream id."""
        answer = await self._call(
            "POST", "/files", files={"file": (filename, content)}, data={"purpose": "batch"}
        )
        return str(answer.json()["id"])

    async def create(
        self, file_id: str, endpoint: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
        }
        if metadata:
            body["metadata"] = metadata
        return (await self._call("POST", "/batches", json=body)).json()

    async def list(self) -> list[dict[str, Any]]:
        """The upstream's most recent batches (one page of 100)."""
        return (await self._call("GET", "/batches", params={"limit": 100})).json()["data"]

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return (await self._call("GET", f"/batches/{batch_id}")).json()

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return (await self._call("POST", f"/batches/{batch_id}/cancel")).json()

    async def content(self, file_id: str) -> bytes:
        return (await self._call("GET", f"/files/{file_id}/content")).content

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # Read on every call (a few a minute): a changed key file counts without a reload.
        try:
            key = read_api_key(self._model)
        except OSError:
            raise UpstreamUnavailable("The upstream's key file could not be read.") from None
        headers = {"authorization": f"Bearer {key}"} if key else {}
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
                answer = await client.request(
                    method, f"{self._base_url}{path}", headers=headers, **kwargs
                )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"The upstream's Batch API could not be reached ({type(exc).__name__})."
            ) from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise UpstreamUnavailable(
                f"The upstream's Batch API answered {answer.status_code} on {method} {path}."
            )
        if answer.status_code >= 400:
            raise UpstreamRefused(
                f"The upstream's Batch API refused {method} {path} ({answer.status_code}): "
                f"{_message(answer)}"
            )
        return answer


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return "no error message"
