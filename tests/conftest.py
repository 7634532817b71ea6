"""Session fixtures: one real aiservice server, the official SDK and a raw HTTP client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from support import MASTER_KEY, RunningServer, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("aiservice-home"))
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def client(server: RunningServer) -> OpenAI:
    """The official SDK, pointed at the running server. No retries: a failure must show."""
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """A raw HTTP client for what the SDK hides (bad bodies, headers, raw SSE)."""
    with httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=120,
    ) as raw:
        yield raw
