"""The HTTP client an upstream model is called through: one aiohttp session (connection pool)
per upstream, kept for the life of the process.

aiohttp rather than httpx here because this call is most of what a gateway does per request:
against the same nginx upstream, a POST and its JSON answer cost about 0.2 ms of CPU through
aiohttp (C parser, no per-call anyio layer) and about 1.7 ms through httpx's default transport
(benchmarks/README.md). Everything else in the project (tests, the Python client, webhooks)
keeps httpx.

Failures of the connection come out as one exception, `TransportFailure`, whose `reason` is a
short stable name (`connect timeout`, `read timeout`, `connect error`, `connection dropped`),
used in logs and metrics.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi


class TransportFailure(Exception):
    """The upstream could not be reached, or the connection failed mid-answer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return "read timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect error"
    return "connection dropped"


# What a failing connection raises: aiohttp's errors, its timeouts (TimeoutError subclasses),
# and the OS's. A cancellation (the request's total timeout, a client gone) is not among them.
_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class UpstreamReply:
    """An upstream's answer whose headers have arrived; the body is read on demand."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.status_code = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _FAILURES as exc:
            raise TransportFailure(_reason(exc)) from None

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their line ends (LF or CRLF). Split here
        rather than with aiohttp's readline, which refuses lines over 128 KiB (a Responses
        `response.completed` event carries the whole response)."""
        pending = b""
        try:
            async for data in self._response.content.iter_any():
                pending += data
                if b"\n" not in data:
                    continue
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        except _FAILURES as exc:
            raise TransportFailure(_reason(exc)) from None
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    def close(self) -> None:
        """Give the connection back to the pool if the body was read whole, else drop it."""
        self._response.release()


class UpstreamHTTP:
    """A pooled HTTP client for one upstream base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_s: float,
        read_s: float,
        pool_s: float,
        api_key: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._headers = _headers(api_key)  # the same for every call, until use_api_key
        # connect: waiting for a pooled connection or a new one; sock_read: between two reads
        # of the answer (the first byte included). The total is the caller's.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=pool_s, sock_connect=connect_s, sock_read=read_s
        )
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY / NO_PROXY from the environment, looked up once rather than per call.
        self._proxy = _environment_proxy(self.base_url)

    def url(self, path: str) -> str:
        return self.base_url + path

    def use_api_key(self, api_key: str | None) -> bool:
        """Send `api_key` from the next call on (a configuration reload); whether it changed.
        One assignment: a call being made keeps the headers it took, the pool its connections."""
        headers = _headers(api_key)
        changed = headers != self._headers
        self._headers = headers
        return changed

    async def start(self) -> None:
        # The system's CA store (and SSL_CERT_FILE) plus certifi's, which httpx used alone.
        tls = ssl.create_default_context()
        tls.load_verify_locations(certifi.where())
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=0, keepalive_timeout=30, ssl=tls)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, url: str, body: dict[str, Any]) -> UpstreamReply:
        """POST `body` as JSON; the reply once its headers have arrived."""
        assert self._session is not None, "start() first"
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self._session.post(
                url,
                data=data,
                headers=self._headers,
                proxy=self._proxy,
            )
        except _FAILURES as exc:
            raise TransportFailure(_reason(exc)) from None
        return UpstreamReply(response)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _environment_proxy(base_url: str) -> str | None:
    parts = urlsplit(base_url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)
