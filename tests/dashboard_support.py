"""Test support for the dashboard over plain HTTP: signing in through its form (the CSRF
token read off the page), and what a page shows."""

from __future__ import annotations

import re
from typing import Any

import httpx

from support import MASTER_KEY, RunningServer, bearer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ROW = re.compile(r'data-row="([^"]+)"')
_NEXT = re.compile(r'rel="next" href="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match is not None, page.text[:2000]
    return match.group(1)


def signed_in(server: RunningServer, **credentials: str) -> httpx.Client:
    """A client holding a dashboard session: `api_key=…`, or `email=…, password=…`."""
    client = httpx.Client(base_url=server.base_url, timeout=30)
    answer = sign_in(client, **credentials)
    assert answer.status_code == 303, answer.text[:2000]
    return client


def sign_in(client: httpx.Client, **credentials: str) -> httpx.Response:
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    return client.post("/dashboard/login", data={"csrf_token": csrf_of(form), **credentials})


def admin_client(server: RunningServer) -> httpx.Client:
    return signed_in(server, api_key=MASTER_KEY)


def row_ids(page: httpx.Response) -> list[str]:
    return _ROW.findall(page.text)


def next_link(page: httpx.Response) -> str | None:
    match = _NEXT.search(page.text)
    return match.group(1).replace("&amp;", "&") if match else None


def store_completion(
    server: RunningServer, key: str, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """A stored chat completion made through the API by the holder of `key`."""
    answer = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers=bearer(key),
        json={
            "model": "gpt-4o-mini",
            "store": True,
            "max_tokens": 4,
            "metadata": metadata or {},
            "messages": [{"role": "user", "content": "Say hello."}],
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()
