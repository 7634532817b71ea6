"""The retry policy of `aiservice chat`: transient API errors are tried again with exponential
backoff and jitter (tenacity); client errors are not."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import openai
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import WaitBaseT

T = TypeVar("T")

# Retries: 4 attempts in all, waiting 0.5 s, 1 s, then 2 s between them, each plus up to 0.5 s
# of random jitter (so that clients failed by one outage do not all come back at once).
RETRY_ATTEMPTS = 4
RETRY_WAIT: WaitBaseT = wait_exponential(multiplier=0.5, max=8) + wait_random(0, 0.5)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: no connection, a timeout (a connection error too), 429, or 5xx."""
    if isinstance(exc, openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    wait: WaitBaseT = RETRY_WAIT,
    may_retry: Callable[[], bool] = lambda: True,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """`call()`, tried again after a transient error while `may_retry()` says so; the last
    error is raised as it is. `on_retry(error, seconds)` is told before each wait."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            assert error is not None
            on_retry(error, state.next_action.sleep)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception(lambda exc: is_transient(exc) and may_retry()),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(call)
