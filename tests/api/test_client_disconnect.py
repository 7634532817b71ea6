"""unless_client_leaves: the work runs in the caller's task, and a disconnect cancels only it.

Driven with a fake ASGI receive, so each ordering of "work done" and "client gone" is exact.
"""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from aiservice.api.streaming import unless_client_leaves


def _request(client_leaves: asyncio.Event) -> Request:
    async def receive() -> dict[str, object]:
        await client_leaves.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def test_the_work_result_comes_back_while_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await unless_client_leaves(_request(asyncio.Event()), work()) == "done"


async def test_a_disconnect_cancels_the_work_and_not_the_caller() -> None:
    gone = asyncio.Event()
    cancelled = False

    async def work() -> str:
        nonlocal cancelled
        gone.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise
        return "too late"

    assert await unless_client_leaves(_request(gone), work()) is None
    assert cancelled
    caller = asyncio.current_task()
    assert caller is not None and caller.cancelling() == 0
    await asyncio.sleep(0)  # the caller goes on undisturbed


async def test_a_failure_of_the_work_is_raised() -> None:
    async def work() -> str:
        raise ValueError("upstream said no")

    with pytest.raises(ValueError, match="upstream said no"):
        await unless_client_leaves(_request(asyncio.Event()), work())


async def test_cancelling_the_caller_still_cancels_it() -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    caller = asyncio.ensure_future(unless_client_leaves(_request(asyncio.Event()), work()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
