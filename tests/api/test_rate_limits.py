"""Rate limits through real servers: requests and tokens per minute and per day, burst, the
priority queue, OpenAI's headers and 429, the stats, and limits set by the admin API and the
CLI — on one process (counts in memory) and on two processes sharing Redis.

Windows are a minute or a day long, so no test waits for one to slide: capacity comes back
through the settle-up (a request charged its estimate gives back what it did not use) or the
burst bucket's refill. A request's token estimate is its body's bytes / 4 plus its output cap;
the tests pad bodies with JSON whitespace to charge an exact estimate that costs no real tokens.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from openai import OpenAI

from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    assert_error_envelope,
    basic_auth,
    bearer,
    new_email,
    server_cli,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import flushed_records_of

LOCAL = "smollm2-135m-instruct"
PASSWORD = "password-1234"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PREFIX = "aiservice:rl:"  # the limiter's keys in Redis
NO_END = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end tokens: it writes until max_tokens
# Whatever the test process's environment says, these servers choose their database and Redis.
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
NO_REDIS: dict[str, str | None] = {"REDIS_URL": None, "AISERVICE_REDIS_URL": None}
SIX_HEADERS = tuple(
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
)
# OpenAI's durations: "20ms", "1s", "59.5s", "6m0s", "23h59m59.1s".
DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")

# The defaults of the shared one-process server: every key, every user.
KEY_RPM, KEY_TPM, USER_TPM = 50, 10_000, 20_000
DEFAULTS = f"""
[rate_limits.key]
rpm = {KEY_RPM}
tpm = {KEY_TPM}

[rate_limits.user]
tpm = {USER_TPM}
"""
MAX_WAIT_S = 30  # the queueing server's; its waiters are admitted well before


# --- servers ---------------------------------------------------------------------------------


def _serve(home: Path, config: str, env: dict[str, str | None]) -> RunningServer:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config, encoding="utf-8")
    return start_server(home, env=env)


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One process, counts in memory, defaults for keys and users, no queueing (429 at once)."""
    server = _serve(tmp_path_factory.mktemp("rl-memory"), DEFAULTS, {**NO_DATABASE_URL, **NO_REDIS})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One process, no defaults, limited requests wait up to MAX_WAIT_S for their turn."""
    config = f"[rate_limits]\nmax_wait_s = {MAX_WAIT_S}\n"
    server = _serve(tmp_path_factory.mktemp("rl-queue"), config, {**NO_DATABASE_URL, **NO_REDIS})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def redis_subjects() -> Iterator[list[str]]:
    """The subjects a test counted in Redis; their keys are deleted when the module ends."""
    subjects: list[str] = []
    yield subjects
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for subject in subjects:
            client.delete(*(f"{REDIS_PREFIX}{kind}:{subject}" for kind in ("h", "m", "d")))
        if subjects:
            client.zrem(f"{REDIS_PREFIX}subjects", *subjects)
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_servers(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
    redis_subjects: list[str],
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two processes on one PostgreSQL database (the same keys) sharing one Redis."""
    env = {
        **NO_DATABASE_URL,
        **NO_REDIS,
        "DATABASE_URL": postgres_databases.create(),
        "REDIS_URL": REDIS_URL,
    }
    first = _serve(tmp_path_factory.mktemp("rl-redis-1"), "", env)
    try:
        second = _serve(tmp_path_factory.mktemp("rl-redis-2"), "", env)
    except BaseException:
        stop_server(first)
        raise
    yield first, second
    stop_server(first)
    stop_server(second)


# --- accounts and requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A user made for one test, with one API key."""

    user_id: str
    email: str
    key_id: str
    key: str

    @property
    def key_subject(self) -> str:
        return f"key:{self.key_id}"

    @property
    def user_subject(self) -> str:
        return f"user:{self.user_id}"


def admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30)


def new_account(server: RunningServer, rate_limits: dict[str, Any] | None = None) -> Account:
    """A fresh user and key (fresh subjects: no count is shared with another test)."""
    email = new_email("limits")
    with admin(server) as http:
        user = http.post("/v1/admin/users", json={"email": email, "password": PASSWORD})
        assert user.status_code == 201, user.text
        body: dict[str, Any] = {"email": email}
        if rate_limits is not None:
            body["rate_limits"] = rate_limits
        key = http.post("/v1/admin/keys", json=body)
        assert key.status_code == 201, key.text
    assert key.json()["rate_limits"] == (rate_limits or {})
    return Account(user.json()["id"], email, key.json()["id"], key.json()["key"])


def add_key(server: RunningServer, email: str) -> str:
    with admin(server) as http:
        key = http.post("/v1/admin/keys", json={"email": email, "name": "second"})
    assert key.status_code == 201, key.text
    return key.json()["key"]


def chat_body(*, estimate: int | None = None, max_tokens: int = 1, **extra: Any) -> bytes:
    """A chat completion's body; with `estimate`, padded with whitespace so that the limiter
    charges exactly that many tokens up front (bytes / 4 rounded up, plus max_tokens)."""
    body = json.dumps(
        {
            "model": LOCAL,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": max_tokens,
            **extra,
        }
    ).encode()
    if estimate is None:
        return body
    size = 4 * (estimate - max_tokens)
    assert size >= len(body), f"an estimate of {estimate} is below the body's own size"
    padded = body + b" " * (size - len(body))
    assert math.ceil(len(padded) / 4) + max_tokens == estimate
    return padded


def post(
    server: RunningServer,
    credentials: dict[str, str] | str,
    body: bytes | None = None,
    *,
    path: str = "/v1/chat/completions",
    **headers: str,
) -> httpx.Response:
    """POST a model request; `credentials` is an API key or ready-made auth headers."""
    auth = bearer(credentials) if isinstance(credentials, str) else credentials
    return httpx.post(
        server.base_url + path,
        content=body if body is not None else chat_body(),
        headers={"content-type": "application/json", **auth, **headers},
        timeout=120,
    )


def burst(server: RunningServer, key: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, each on its own connection."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: post(server, key), range(count)))


def used_tokens(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["usage"]["total_tokens"]


def stats(server: RunningServer) -> dict[str, dict[str, Any]]:
    """GET /v1/admin/ratelimits, by subject."""
    with admin(server) as http:
        answer = http.get("/v1/admin/ratelimits")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list", body
    return {row["subject"]: row for row in body["data"]}


def stats_of(server: RunningServer, subject: str) -> dict[str, Any]:
    row = stats(server).get(subject)
    assert row is not None, f"no stats for {subject}"
    assert row["object"] == "rate_limit.stats", row
    return row


def wait_for_tokens(server: RunningServer, subject: str, tokens: int) -> dict[str, Any]:
    """The subject's stats once its minute holds exactly `tokens` (the settle-ups are in)."""
    return wait_until(
        lambda: (row := stats_of(server, subject))["tokens_last_minute"] == tokens and row,
        timeout=15,
        what=f"{subject} to hold {tokens} tokens this minute",
    )


BOTH = ("requests", "tokens")


def assert_six_headers(response: httpx.Response, kinds: tuple[str, ...] = BOTH) -> dict[str, str]:
    """The x-ratelimit-* headers, well formed: all six when the request counts against a
    request limit and a token limit; none of a kind it has no limit of. Returns them."""
    found = {name: response.headers[name] for name in SIX_HEADERS if name in response.headers}
    expected = {name for name in SIX_HEADERS if name.rsplit("-", 1)[1] in kinds}
    assert set(found) == expected, (response.status_code, found)
    for kind in kinds:
        limit = int(found[f"x-ratelimit-limit-{kind}"])
        remaining = int(found[f"x-ratelimit-remaining-{kind}"])
        assert 0 <= remaining <= limit, found
        assert DURATION.match(found[f"x-ratelimit-reset-{kind}"]), found
    return found


def assert_rate_limited(
    response: httpx.Response,
    kind: str,
    *,
    retry_after: tuple[int, int] | None,
    headers: tuple[str, ...] = BOTH,
) -> dict[str, Any]:
    """A 429 in OpenAI's envelope for `kind` ("requests" or "tokens"), with the x-ratelimit-*
    headers of `headers` and a Retry-After within `retry_after` (None: the request can never
    fit, no Retry-After)."""
    error = assert_error_envelope(response, 429, type=kind, code="rate_limit_exceeded", param=None)
    assert_six_headers(response, headers)
    if retry_after is None:
        assert "retry-after" not in response.headers, response.headers
    else:
        seconds = int(response.headers["retry-after"])
        millis = int(response.headers["retry-after-ms"])
        assert retry_after[0] <= seconds <= retry_after[1], (seconds, error)
        assert seconds == max(1, math.ceil(millis / 1000)), (seconds, millis)
    return error


def outcomes(responses: list[httpx.Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


# --- requests and tokens per minute and per day ----------------------------------------------


def test_a_concurrent_burst_gets_exactly_rpm_successes_on_one_process(
    memory_server: RunningServer,
) -> None:
    account = new_account(memory_server, {"rpm": 5})
    responses = burst(memory_server, account.key, 12)
    assert outcomes(responses) == [200] * 5 + [429] * 7
    for response in responses:
        if response.status_code == 429:
            error = assert_rate_limited(response, "requests", retry_after=(1, 61))
            assert f"{account.key_subject} on requests per minute" in error["message"], error
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
        else:
            assert response.headers["x-ratelimit-limit-requests"] == "5"
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == [0, 1, 2, 3, 4]  # each success saw its own charge


def test_two_processes_sharing_redis_admit_exactly_rpm_between_them(
    redis_servers: tuple[RunningServer, RunningServer], redis_subjects: list[str]
) -> None:
    first, second = redis_servers
    # A token limit far above the load: the charges are settled, so the shared token counts
    # can be checked too (without one, nothing is settled: the counts keep the estimates).
    account = new_account(first, {"rpm": 6, "tpm": 1_000_000})
    redis_subjects.append(account.key_subject)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(post, server, account.key) for server in (first, second) * 8]
        responses = [future.result() for future in futures]
    assert outcomes(responses) == [200] * 6 + [429] * 10
    for response in responses:
        if response.status_code == 429:
            assert_rate_limited(response, "requests", retry_after=(1, 61))
        else:
            assert_six_headers(response)
    # The counts are one: each process reports them all, the settle-ups of both included.
    tokens = sum(used_tokens(r) for r in responses if r.status_code == 200)
    for server in (first, second):
        row = wait_for_tokens(server, account.key_subject, tokens)
        assert (row["requests_last_minute"], row["requests_last_day"]) == (6, 6), row
        assert (row["rejected"], row["queued"], row["waiting_now"]) == (10, 0, 0), row


def test_rpd_is_enforced_with_a_retry_after_of_a_day(memory_server: RunningServer) -> None:
    account = new_account(memory_server, {"rpd": 2})
    assert [post(memory_server, account.key).status_code for _ in range(2)] == [200, 200]
    refused = post(memory_server, account.key)
    error = assert_rate_limited(refused, "requests", retry_after=(86_340, 86_461))
    assert "requests per day (limit 2)" in error["message"], error
    # The day's limit is the tightest: it is the one the headers report.
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "h" in refused.headers["x-ratelimit-reset-requests"]


def test_tpm_charges_the_estimate_up_front_and_settles_on_real_usage(
    memory_server: RunningServer,
) -> None:
    tpm = 1000
    account = new_account(memory_server, {"tpm": tpm})
    first = post(memory_server, account.key, chat_body(estimate=900))
    assert first.headers["x-ratelimit-limit-tokens"] == str(tpm)
    assert first.headers["x-ratelimit-remaining-tokens"] == str(tpm - 900)
    used = used_tokens(first)
    assert used < 100  # the padding is whitespace: it cost no real tokens
    # Just after the response, the charge is settled down to what the request used.
    wait_for_tokens(memory_server, account.key_subject, used)

    # So another request estimated at 900 fits (900 + 900 would not have).
    second = post(memory_server, account.key, chat_body(estimate=900))
    assert second.headers["x-ratelimit-remaining-tokens"] == str(tpm - used - 900)
    used += used_tokens(second)
    wait_for_tokens(memory_server, account.key_subject, used)

    # The remaining tokens rose back: a request one token above them waits for the window.
    too_many = post(memory_server, account.key, chat_body(estimate=tpm - used + 1))
    error = assert_rate_limited(too_many, "tokens", retry_after=(1, 61))
    assert "tokens per minute" in error["message"], error
    assert too_many.headers["x-ratelimit-remaining-tokens"] == str(tpm - used)
    exactly = post(memory_server, account.key, chat_body(estimate=tpm - used))
    assert exactly.status_code == 200, exactly.text
    assert exactly.headers["x-ratelimit-remaining-tokens"] == "0"

    # A request larger than the limit itself can never fit: no Retry-After.
    never = post(memory_server, account.key, chat_body(estimate=tpm + 1))
    error = assert_rate_limited(never, "tokens", retry_after=None)
    assert "Request too large" in error["message"], error


def test_tpd_is_enforced_after_the_settle_up(memory_server: RunningServer) -> None:
    tpd = 1000
    account = new_account(memory_server, {"tpd": tpd})
    first = post(memory_server, account.key, chat_body(estimate=900))
    # The day's limit is tighter than the default tpm: the headers report it.
    assert first.headers["x-ratelimit-limit-tokens"] == str(tpd)
    assert first.headers["x-ratelimit-remaining-tokens"] == str(tpd - 900)
    used = used_tokens(first)
    row = wait_for_tokens(memory_server, account.key_subject, used)
    assert row["tokens_last_day"] == used

    refused = post(memory_server, account.key, chat_body(estimate=tpd - used + 1))
    error = assert_rate_limited(refused, "tokens", retry_after=(86_340, 86_461))
    assert "tokens per day" in error["message"], error
    fits = post(memory_server, account.key, chat_body(estimate=tpd - used))
    assert fits.status_code == 200, fits.text


def test_burst_admits_n_at_once_then_throttles_to_the_rpm_pace(
    memory_server: RunningServer,
) -> None:
    # A burst of 3 refilled at 30 a minute: one request every 2 s after the first three.
    account = new_account(memory_server, {"burst": 3, "rpm": 30})
    responses = burst(memory_server, account.key, 6)
    assert outcomes(responses) == [200] * 3 + [429] * 3
    for response in responses:
        if response.status_code == 429:
            error = assert_rate_limited(response, "requests", retry_after=(1, 2))
            assert "burst (3 requests at once)" in error["message"], error
            assert int(response.headers["retry-after-ms"]) <= 2000
        else:
            # The headers speak of rpm (burst is never in them): 27 more this minute, in time.
            assert response.headers["x-ratelimit-limit-requests"] == "30"
    assert (
        min(
            int(r.headers["x-ratelimit-remaining-requests"])
            for r in responses
            if r.status_code == 200
        )
        == 27
    )

    # The bucket refills: within Retry-After one more goes through, and then the next waits.
    refill_started = time.monotonic()
    wait_until(
        lambda: post(memory_server, account.key).status_code == 200,
        timeout=10,
        what="the burst bucket to refill",
    )
    assert time.monotonic() - refill_started < 4
    assert_rate_limited(post(memory_server, account.key), "requests", retry_after=(1, 2))


# --- priorities and the queue ----------------------------------------------------------------


@contextmanager
def holding_tokens(server: RunningServer, key: str, estimate: int) -> Iterator[httpx.Response]:
    """A streaming request charged `estimate` tokens, generating until the block ends; then the
    test hangs up, and the server stops it and gives back the tokens it did not use."""
    holder = chat_body(estimate=estimate, max_tokens=1500, stream=True, logit_bias=NO_END)
    with (
        httpx.Client(base_url=server.base_url, timeout=120) as streaming,
        streaming.stream(
            "POST",
            "/v1/chat/completions",
            content=holder,
            headers={"content-type": "application/json", **bearer(key)},
        ) as held,
    ):
        assert held.status_code == 200
        # Kept until the block ends: a line iterator dropped early closes the connection.
        lines = held.iter_lines()
        assert next(lines).startswith("data: ")  # it is generating
        yield held


def queue_request(
    pool: ThreadPoolExecutor, server: RunningServer, account: Account, body: bytes, priority: str
) -> Future[tuple[httpx.Response, float]]:
    """Send a request in the background; once it is waiting in the queue, return its future
    (its response and when it came back). Its request id is PRIORITY-KEY_ID."""
    waiting = stats_of(server, account.key_subject)["waiting_now"]
    headers = {"x-priority": priority, "x-request-id": f"{priority}-{account.key_id}"}

    def send() -> tuple[httpx.Response, float]:
        response = post(server, account.key, body, **headers)
        return response, time.monotonic()

    future = pool.submit(send)
    wait_until(
        lambda: stats_of(server, account.key_subject)["waiting_now"] == waiting + 1,
        what=f"the {priority}-priority request to queue",
    )
    return future


def test_queued_requests_are_admitted_high_before_low(queue_server: RunningServer) -> None:
    tpm = 2000
    account = new_account(queue_server, {"tpm": tpm})
    subject = account.key_subject
    waiter = chat_body(estimate=1100)  # fits once the holder has given back, but not twice
    with ThreadPoolExecutor(max_workers=2) as pool:
        with holding_tokens(queue_server, account.key, 1900) as held:
            assert assert_six_headers(held, ("tokens",)) == {
                "x-ratelimit-limit-tokens": str(tpm),
                "x-ratelimit-remaining-tokens": str(tpm - 1900),
                "x-ratelimit-reset-tokens": held.headers["x-ratelimit-reset-tokens"],
            }
            low = queue_request(pool, queue_server, account, waiter, "low")
            high = queue_request(pool, queue_server, account, waiter, "high")
            hanging_up_at = time.time()  # wall clock, as the usage records' times
        # Only one waiter fits now: the high one, though it came second; the low one fits
        # once the high one has given its unused tokens back.
        (high_response, high_done), (low_response, low_done) = high.result(), low.result()
    assert high_response.status_code == 200, high_response.text
    assert low_response.status_code == 200, low_response.text
    assert high_done < low_done

    high_record = flushed_records_of(queue_server, f"high-{account.key_id}")[0]
    low_record = flushed_records_of(queue_server, f"low-{account.key_id}")[0]
    assert (high_record["priority"], low_record["priority"]) == ("high", "low")
    assert low_record["created_at"] < high_record["created_at"]  # the low one came first

    def admitted_at(record: dict[str, Any]) -> float:
        return record["created_at"] + record["wait_ms"] / 1000

    assert admitted_at(high_record) < admitted_at(low_record)  # and went in second
    # Neither went in while the holder held the tokens (the times are taken a few ms apart).
    assert admitted_at(high_record) > hanging_up_at - 0.05
    assert low_record["wait_ms"] > high_record["wait_ms"]

    # Stats: two requests queued, their average wait as they waited, none refused.
    row = stats_of(queue_server, subject)
    assert (row["requests_last_minute"], row["requests_last_day"]) == (3, 3), row
    assert (row["queued"], row["rejected"], row["waiting_now"]) == (2, 0, 0), row
    average = (high_record["wait_ms"] + low_record["wait_ms"]) / 2
    assert row["average_wait_ms"] == pytest.approx(average, abs=50), (row, average)
    printed = _cli_ok(
        queue_server, "limits", "stats", "--server", queue_server.base_url,
        "--api-key", MASTER_KEY,
    )  # fmt: skip
    cells = _table_row(printed, subject)
    assert cells[1:3] + cells[5:] == ["3", "3", "0", "2", f"{row['average_wait_ms']:.1f}", "0"]


def test_a_request_that_can_never_fit_is_refused_without_waiting(
    queue_server: RunningServer,
) -> None:
    account = new_account(queue_server, {"tpm": 500})
    started = time.monotonic()
    refused = post(queue_server, account.key, chat_body(estimate=501))
    assert_rate_limited(refused, "tokens", retry_after=None, headers=("tokens",))
    assert time.monotonic() - started < MAX_WAIT_S / 2
    row = stats_of(queue_server, account.key_subject)
    assert (row["rejected"], row["queued"], row["requests_last_minute"]) == (1, 0, 0), row


def recorded_priorities(
    server: RunningServer, credentials: dict[str, str] | str, sent: dict[str, str | None]
) -> dict[str, str]:
    """Send one request per label, with that x-priority (None: none); the priority each one's
    usage record shows."""
    request_ids = {label: f"{label}-{secrets.token_hex(6)}" for label in sent}
    for label, priority in sent.items():
        headers = {"x-request-id": request_ids[label]}
        if priority is not None:
            headers["x-priority"] = priority
        assert post(server, credentials, **headers).status_code == 200
    return {
        label: flushed_records_of(server, request_id)[0]["priority"]
        for label, request_id in request_ids.items()
    }


def test_x_priority_above_the_maximum_is_clamped_and_an_invalid_one_is_400(
    memory_server: RunningServer,
) -> None:
    account = new_account(memory_server, {"priority": "low", "max_priority": "medium"})
    sent = {"default": None, "asked-high": "high", "asked-low": "LOW"}
    priorities = recorded_priorities(memory_server, account.key, sent)
    assert priorities == {"default": "low", "asked-high": "medium", "asked-low": "low"}

    invalid = post(memory_server, account.key, **{"x-priority": "urgent"})
    error = assert_error_envelope(invalid, 400, param="x-priority")
    assert "urgent" in error["message"], error
    row = stats_of(memory_server, account.key_subject)
    assert (row["requests_last_minute"], row["rejected"]) == (3, 0), row  # nothing charged

    # A user's maximum holds for every one of their keys, and for their password logins.
    with admin(memory_server) as http:
        path = f"/v1/admin/users/{account.email}/rate_limits"
        assert http.put(path, json={"max_priority": "low"}).status_code == 200
    for caller in (account.key, basic_auth(account.email, PASSWORD)):
        sent = {"default": None, "asked-high": "high"}
        assert recorded_priorities(memory_server, caller, sent) == {
            "default": "low",
            "asked-high": "low",
        }


# --- headers and the 429 ---------------------------------------------------------------------


def test_every_answer_carries_the_six_headers_and_the_429_is_openais(
    memory_server: RunningServer,
) -> None:
    account = new_account(memory_server, {"rpm": 2})
    sdk = OpenAI(base_url=memory_server.api_url, api_key=account.key, max_retries=0, timeout=120)
    ask = {"model": LOCAL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    raw = sdk.chat.completions.with_raw_response.create(**ask)
    completion = raw.parse()
    headers = assert_six_headers(raw.http_response)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == (
        "2",
        "1",
    )
    assert headers["x-ratelimit-limit-tokens"] == str(KEY_TPM)  # the key's default tpm
    assert completion.choices[0].message.role == "assistant"

    second = post(memory_server, account.key)
    assert assert_six_headers(second)["x-ratelimit-remaining-requests"] == "0"

    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(**ask)
    assert refused.value.status_code == 429
    assert (refused.value.code, refused.value.type) == ("rate_limit_exceeded", "requests")
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 61
    assert_six_headers(refused.value.response)

    raw_refusal = post(memory_server, account.key)
    assert_rate_limited(raw_refusal, "requests", retry_after=(1, 61))


def test_every_model_route_counts_against_the_same_limits(memory_server: RunningServer) -> None:
    account = new_account(memory_server, {"rpm": 3})
    responses_body = json.dumps(
        {"model": LOCAL, "input": "hi", "max_output_tokens": 16, "store": False}
    ).encode()
    answers = [
        post(memory_server, account.key),
        post(memory_server, account.key, responses_body, path="/v1/responses"),
        post(memory_server, account.key, path="/api/ai/chat/completions"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert_six_headers(answer)
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    assert_rate_limited(
        post(memory_server, account.key, responses_body, path="/v1/responses"),
        "requests",
        retry_after=(1, 61),
    )
    seed = post(memory_server, account.key, path="/api/ai/chat/completions")
    assert seed.status_code == 429 and "retry-after" in seed.headers
    assert seed.json()["success"] is False


# --- who is limited, and how limits are set --------------------------------------------------


def test_the_master_key_is_never_limited(memory_server: RunningServer) -> None:
    # Larger than every default tpm: any key's request like it can never fit.
    huge = chat_body(estimate=USER_TPM + KEY_TPM)
    account = new_account(memory_server)
    assert_rate_limited(post(memory_server, account.key, huge), "tokens", retry_after=None)
    for _ in range(3):
        answer = post(memory_server, MASTER_KEY, huge)
        assert answer.status_code == 200, answer.text
        assert not [name for name in answer.headers if name.startswith("x-ratelimit")]


def test_a_key_limit_set_by_the_admin_api_overrides_one_default_and_clears(
    memory_server: RunningServer,
) -> None:
    account = new_account(memory_server, {"tpm": 500})

    def limits_seen() -> tuple[str, str]:
        answer = post(memory_server, account.key)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-ratelimit-limit-requests"], answer.headers[
            "x-ratelimit-limit-tokens"
        ]

    # Its own tpm; the default rpm.
    assert limits_seen() == (str(KEY_RPM), "500")
    with admin(memory_server) as http:
        path = f"/v1/admin/keys/{account.key_id}/rate_limits"
        changed = http.put(path, json={"rpm": 7})
        assert changed.status_code == 200, changed.text
        assert changed.json()["rate_limits"] == {"rpm": 7}  # replaces its earlier own values
        assert limits_seen() == ("7", str(KEY_TPM))
        cleared = http.put(path, json={})
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["rate_limits"] == {}
        assert limits_seen() == (str(KEY_RPM), str(KEY_TPM))

        assert_error_envelope(http.put(path, json={"rpm": 0}), 400, param="rpm")
        assert_error_envelope(http.put(path, json={"rpn": 5}), 400, param="rpn")
        assert_error_envelope(http.put(path, json={"priority": "urgent"}), 400, param="priority")
        assert_error_envelope(http.put("/v1/admin/keys/key_nope/rate_limits", json={}), 404)
        listed = http.get("/v1/admin/keys", params={"email": account.email}).json()["data"]
        assert [key["rate_limits"] for key in listed] == [{}]
    # A key cannot set its own limits: the admin routes do not exist for it.
    own = httpx.put(
        f"{memory_server.base_url}/v1/admin/keys/{account.key_id}/rate_limits",
        json={},
        headers=bearer(account.key),
        timeout=30,
    )
    assert_error_envelope(own, 404)


def test_a_user_limit_counts_all_of_their_keys_together(memory_server: RunningServer) -> None:
    account = new_account(memory_server)
    second_key = add_key(memory_server, account.email)
    with admin(memory_server) as http:
        path = f"/v1/admin/users/{account.email}/rate_limits"
        changed = http.put(path, json={"rpm": 3})
        assert changed.status_code == 200, changed.text
        assert changed.json()["rate_limits"] == {"rpm": 3}
        callers = [account.key, second_key, basic_auth(account.email, PASSWORD)]
        answers = [post(memory_server, caller) for caller in callers]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        # The user's rpm is the tightest request limit: the headers count it down across keys.
        assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
        for caller in callers:
            refused = post(memory_server, caller)
            error = assert_rate_limited(refused, "requests", retry_after=(1, 61))
            assert f"{account.user_subject} on requests per minute" in error["message"]
        # Back on the defaults (no request limit for users): the next request goes through.
        assert http.put(path, json={}).json()["rate_limits"] == {}
        assert post(memory_server, second_key).status_code == 200
        assert_error_envelope(
            http.put("/v1/admin/users/nobody@example.com/rate_limits", json={}), 404
        )


def _cli_ok(server: RunningServer, *args: str) -> str:
    result = server_cli(server, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_cli_creates_keys_with_limits_and_sets_and_clears_them(
    memory_server: RunningServer,
) -> None:
    email = new_email("cli-limits")
    _cli_ok(memory_server, "users", "add", email, "--password", PASSWORD)
    created = server_cli(
        memory_server, "keys", "create", email, "--rpm", "2", "--tpm", "4000",
        "--burst", "10", "--priority", "low", "--max-priority", "medium",
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.strip()
    found = re.search(r"Created (key_\w+)", created.stderr)
    assert found, created.stderr
    key_id = found[1]

    shown = _cli_ok(memory_server, "keys", "limits", key_id)
    assert shown.strip() == (
        f"{key_id}: rpm=2, tpm=4000, burst=10, priority=low, max_priority=medium"
    )
    answers = [post(memory_server, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-tokens"] == "4000"

    # New values replace its own; the rest follow the defaults.
    assert _cli_ok(memory_server, "keys", "limits", key_id, "--rpm", "9").strip() == (
        f"{key_id}: rpm=9"
    )
    answer = post(memory_server, key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "9"
    assert answer.headers["x-ratelimit-limit-tokens"] == str(KEY_TPM)
    assert _cli_ok(memory_server, "keys", "limits", key_id, "--clear").strip() == (
        f"{key_id}: defaults"
    )
    assert post(memory_server, key).headers["x-ratelimit-limit-requests"] == str(KEY_RPM)

    # A user's limits: every key of theirs together.
    assert _cli_ok(memory_server, "users", "limits", email, "--rpm", "1").strip() == (
        f"{email}: rpm=1"
    )
    assert_rate_limited(post(memory_server, key), "requests", retry_after=(1, 61))
    assert _cli_ok(memory_server, "users", "limits", email).strip() == f"{email}: rpm=1"
    assert _cli_ok(memory_server, "users", "limits", email, "--clear").strip() == (
        f"{email}: defaults"
    )
    assert post(memory_server, key).status_code == 200

    # Bad values are refused before anything is stored.
    bad = server_cli(memory_server, "keys", "limits", key_id, "--priority", "urgent")
    assert bad.returncode == 2 and "--priority" in bad.stderr, bad.stderr
    missing = server_cli(memory_server, "keys", "limits", "key_nope", "--rpm", "1")
    assert missing.returncode != 0 and "key_nope" in missing.stdout + missing.stderr
    assert _cli_ok(memory_server, "keys", "limits", key_id).strip() == f"{key_id}: defaults"


def test_stats_match_what_was_sent_through_the_api_and_the_cli(
    memory_server: RunningServer,
) -> None:
    account = new_account(memory_server, {"rpm": 3})
    answers = [post(memory_server, account.key) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    tokens = sum(used_tokens(a) for a in answers if a.status_code == 200)
    row = wait_for_tokens(memory_server, account.key_subject, tokens)
    assert row == {
        "object": "rate_limit.stats",
        "subject": account.key_subject,
        "requests_last_minute": 3,
        "requests_last_day": 3,
        "tokens_last_minute": tokens,
        "tokens_last_day": tokens,
        "rejected": 2,
        "queued": 0,
        "average_wait_ms": None,
        "waiting_now": 0,
    }
    # The user (limited by the default tpm) saw the same requests.
    user_row = stats_of(memory_server, account.user_subject)
    assert (user_row["requests_last_minute"], user_row["rejected"]) == (3, 2), user_row

    printed = _cli_ok(
        memory_server, "limits", "stats", "--server", memory_server.base_url,
        "--api-key", MASTER_KEY,
    )  # fmt: skip
    cells = _table_row(printed, account.key_subject)
    assert cells == [account.key_subject, "3", "3", str(tokens), str(tokens), "2", "0", "", "0"]
    # The counts live in the server: the CLI asks it, as an admin.
    refused = server_cli(memory_server, "limits", "stats", "--server", memory_server.base_url)
    assert refused.returncode == 2 and "admin key" in refused.stderr, refused.stderr


def _table_row(printed: str, subject: str) -> list[str]:
    """The cells of the Rich table's row that starts with `subject`."""
    for line in printed.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == subject:
            return cells
    raise AssertionError(f"no row for {subject} in:\n{printed}")
