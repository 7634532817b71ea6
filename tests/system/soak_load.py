"""The soak harness's load (tests/system/soak_harness.py): accounts with limits and budgets made
through the admin API, then threads driving a mix through nginx for a bounded time, each
request recorded as an Outcome (its x-request-id, times, status, the object it created).

Threads: plain chat, streamed chat, stored completions (and reading them back), background
responses (and polling them), conversations (turns through the Responses API), two keys with
an rpm limit, a key budget and a user budget (paced, so that they are crossed early in the run),
and batches submitted at fixed points of the run.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from soak_cluster import MODEL, PRICE_INPUT, PRICE_OUTPUT

from support import MASTER_KEY, bearer, new_email

CLIENT_TIMEOUT_S = 30.0
BUDGET_PROMPT = "budget check for soak"  # 4 words in; the fake answers "Fake reply to: …"
RPM = {"rpm-a": 30, "rpm-b": 20}
PACE = {"rpm-a": 3.0, "rpm-b": 2.0, "budget-key": 4.0, "budget-user": 4.0}  # requests/s
BUDGET_CROSSED_AT = 0.25  # of the run: the budgets are sized to be spent about then
THINK_S = 0.02  # between two requests of an unpaced thread


def fake_cost(prompt: str) -> float:
    """What one chat request with this prompt costs on the fake upstream (words as tokens)."""
    words = len(prompt.split())
    return (words * PRICE_INPUT + (3 + words) * PRICE_OUTPUT) / 1_000_000


@dataclass(frozen=True)
class Account:
    label: str
    user_id: str
    email: str
    key_id: str
    key: str


@dataclass
class Session:
    """One thread's connection pool to nginx and the account whose key it sends."""

    http: httpx.Client
    account: Account
    mine: list[str] = field(default_factory=list)  # ids this thread created, to read back


@dataclass
class Outcome:
    """One request as the client saw it. `status` None: no HTTP answer (a transport error)."""

    kind: str
    account: str
    request_id: str
    method: str
    started: float
    ended: float = 0.0
    status: int | None = None
    error: str | None = None  # a transport error's type, or "incomplete stream"
    object_id: str | None = None  # what it created: chatcmpl-…, resp_…, conv_…, batch_…
    model_route: bool = True  # a model request: one usage record per answered request

    @property
    def failed(self) -> bool:
        """Client-visible failure: a 5xx, no answer, or a stream cut short."""
        return self.error is not None or (self.status is not None and self.status >= 500)


@dataclass
class Created:
    """What the load created and was told was stored (a 200), to be read back at the end."""

    stored: dict[str, str] = field(default_factory=dict)  # chatcmpl id → its reply text
    background: dict[str, str] = field(default_factory=dict)  # resp id → request id
    # conv id → the output item ids of its answered turns; turns without an answer, by conv id
    conversations: dict[str, list[str]] = field(default_factory=dict)
    unanswered_turns: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)  # batch id → its lines
    acknowledged_at: dict[str, float] = field(default_factory=dict)  # object id → answer time


def make_accounts(url: str, duration_s: float) -> tuple[dict[str, Account], dict[str, float]]:
    """The run's users and keys (one key each), their rpm limits and budgets; returns the
    accounts by label and the budgets' amounts by label."""
    labels = ["free-a", "free-b", "batcher", *RPM, "budget-key", "budget-user"]
    amount = BUDGET_CROSSED_AT * duration_s * PACE["budget-key"] * fake_cost(BUDGET_PROMPT)
    amounts = {"budget-key": round(amount, 6), "budget-user": round(amount, 6)}
    accounts: dict[str, Account] = {}
    with httpx.Client(base_url=url, headers=bearer(MASTER_KEY), timeout=30) as admin:
        for label in labels:
            email = new_email(f"soak-{label}")
            body = {"email": email, "password": secrets.token_hex(8)}
            user = _created(admin.post("/v1/admin/users", json=body))
            key = _created(admin.post("/v1/admin/keys", json={"email": email, "name": label}))
            accounts[label] = Account(label, user["id"], email, key["id"], key["key"])
        for label, rpm in RPM.items():
            path = f"/v1/admin/keys/{accounts[label].key_id}/rate_limits"
            admin.put(path, json={"rpm": rpm}).raise_for_status()
        budgets = {"budget-key": {"key": accounts["budget-key"].key_id}}
        budgets["budget-user"] = {"user": accounts["budget-user"].email}
        for label, subject in budgets.items():
            body = {**subject, "amount_usd": amounts[label], "period": "total"}
            _created(admin.post("/v1/admin/budgets", json=body))
    return accounts, amounts


def _created(answer: httpx.Response) -> dict[str, Any]:
    if answer.status_code != 201:
        raise RuntimeError(f"admin call failed: {answer.status_code} {answer.text}")
    return answer.json()


class Load:
    """Threads sending requests through nginx until `deadline` (time.monotonic())."""

    def __init__(self, url: str, accounts: dict[str, Account], deadline: float) -> None:
        self.url = url
        self.accounts = accounts
        self.deadline = deadline
        self.outcomes: list[Outcome] = []
        self.created = Created()
        self._threads: list[threading.Thread] = []

    # --- running -------------------------------------------------------------------------

    def start(self, batch_times: list[float]) -> None:
        """Start every thread; batches are submitted at `batch_times` (time.monotonic())."""
        loops: list[tuple[str, Callable[[Session], None], float | None]] = [
            ("free-a", self.plain_chat, None),
            ("free-b", self.streamed_chat, None),
            ("free-a", self.stored_completion, None),
            ("free-b", self.background_response, None),
            ("free-a", self.conversation, None),
            ("rpm-a", self.plain_chat, PACE["rpm-a"]),
            ("rpm-b", self.stream_or_background, PACE["rpm-b"]),
            ("budget-key", self.budget_chat, PACE["budget-key"]),
            ("budget-user", self.budget_chat, PACE["budget-user"]),
        ]
        for label, step, rate in loops:
            self._spawn(f"{step.__name__}:{label}", self._loop, label, step, rate)
        self._spawn("batches", self._batches, batch_times)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(max(0.0, timeout))
            if thread.is_alive():
                raise RuntimeError(f"load thread {thread.name} still running")

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _loop(self, label: str, step: Callable[[Session], None], rate: float | None) -> None:
        with self.session(label) as session:
            next_at = time.monotonic()
            while time.monotonic() < self.deadline:
                step(session)
                if rate is None:
                    time.sleep(THINK_S)
                    continue
                next_at = max(next_at + 1 / rate, time.monotonic() - 1 / rate)
                time.sleep(max(0.0, next_at - time.monotonic()))

    @contextlib.contextmanager
    def session(self, label: str) -> Iterator[Session]:
        account = self.accounts[label]
        headers = bearer(account.key)
        with httpx.Client(base_url=self.url, headers=headers, timeout=CLIENT_TIMEOUT_S) as http:
            yield Session(http, account)

    # --- one request ---------------------------------------------------------------------

    def call(
        self,
        session: Session,
        kind: str,
        method: str,
        path: str,
        *,
        model_route: bool = True,
        **request: Any,
    ) -> tuple[Outcome, httpx.Response | None]:
        outcome = self._outcome(session, kind, method)
        outcome.model_route = model_route
        headers = {"x-request-id": outcome.request_id}
        answer = None
        try:
            answer = session.http.request(method, path, headers=headers, **request)
            outcome.status = answer.status_code
        except httpx.HTTPError as error:
            outcome.error = type(error).__name__
        outcome.ended = time.time()
        self.outcomes.append(outcome)
        return outcome, answer

    def _outcome(self, session: Session, kind: str, method: str) -> Outcome:
        request_id = f"soak-{session.account.label}-{kind}-{secrets.token_hex(8)}"
        return Outcome(kind, session.account.label, request_id, method, time.time())

    def stream(self, session: Session, kind: str, body: dict[str, Any]) -> Outcome:
        """A streamed chat completion: complete only once `data: [DONE]` has arrived."""
        outcome = self._outcome(session, kind, "POST")
        headers = {"x-request-id": outcome.request_id}
        path = "/v1/chat/completions"
        try:
            with session.http.stream("POST", path, json=body, headers=headers) as answer:
                outcome.status = answer.status_code
                lines = list(answer.iter_lines())
            if outcome.status == 200 and "data: [DONE]" not in lines:
                outcome.error = "incomplete stream"
        except httpx.HTTPError as error:
            outcome.error = type(error).__name__
        outcome.ended = time.time()
        self.outcomes.append(outcome)
        return outcome

    # --- the steps -----------------------------------------------------------------------

    def plain_chat(self, session: Session) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "plain soak request"}]}
        self.call(session, "chat", "POST", "/v1/chat/completions", json=body)

    def streamed_chat(self, session: Session) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "streamed soak request"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self.stream(session, "stream", body)

    def budget_chat(self, session: Session) -> None:
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": BUDGET_PROMPT}],
        }
        if secrets.randbelow(2):
            body |= {"stream": True, "stream_options": {"include_usage": True}}
            self.stream(session, "stream", body)
        else:
            self.call(session, "chat", "POST", "/v1/chat/completions", json=body)

    def stream_or_background(self, session: Session) -> None:
        if secrets.randbelow(2):
            self.streamed_chat(session)
        else:
            self.background_response(session, poll=False)

    def stored_completion(self, session: Session) -> None:
        """A stored completion; every few, one stored earlier by this thread is read back."""
        text = f"store soak {secrets.token_hex(3)}"
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "store": True}
        outcome, answer = self.call(session, "stored", "POST", "/v1/chat/completions", json=body)
        if answer is None or answer.status_code != 200:
            return
        completion = answer.json()
        self._acknowledge(outcome, completion["id"])
        self.created.stored[completion["id"]] = completion["choices"][0]["message"]["content"]
        session.mine.append(completion["id"])
        if len(session.mine) % 2 == 0 and len(session.mine) > 4:
            path = f"/v1/chat/completions/{session.mine[-5]}"
            self.call(session, "read", "GET", path, model_route=False)

    def background_response(self, session: Session, poll: bool = True) -> None:
        """A background response; with `poll`, one this thread queued earlier is polled."""
        body = {"model": MODEL, "input": "background soak job", "background": True}
        outcome, answer = self.call(session, "background", "POST", "/v1/responses", json=body)
        if answer is None or answer.status_code != 200:
            return
        response_id = answer.json()["id"]
        self._acknowledge(outcome, response_id)
        self.created.background[response_id] = outcome.request_id
        session.mine.append(response_id)
        if poll and len(session.mine) > 3:
            path = f"/v1/responses/{session.mine[-4]}"
            self.call(session, "poll", "GET", path, model_route=False)

    def conversation(self, session: Session) -> None:
        """A conversation with three turns (foreground responses); a failed turn ends it."""
        outcome, answer = self.call(
            session, "conversation", "POST", "/v1/conversations", model_route=False, json={}
        )
        if answer is None or answer.status_code != 200:
            return
        conversation_id = answer.json()["id"]
        self._acknowledge(outcome, conversation_id)
        self.created.conversations[conversation_id] = []
        for turn in range(3):
            text = f"turn {turn} of the soak"
            body = {"model": MODEL, "input": text, "conversation": conversation_id}
            outcome, answer = self.call(session, "turn", "POST", "/v1/responses", json=body)
            if answer is None or answer.status_code != 200:
                unanswered = self.created.unanswered_turns
                unanswered[conversation_id] = unanswered.get(conversation_id, 0) + 1
                return
            response = answer.json()
            self.created.conversations[conversation_id].extend(i["id"] for i in response["output"])
            self._acknowledge(outcome, response["id"])
            if time.monotonic() >= self.deadline:
                return

    def _acknowledge(self, outcome: Outcome, object_id: str) -> None:
        outcome.object_id = object_id
        self.created.acknowledged_at[object_id] = outcome.ended

    # --- batches -------------------------------------------------------------------------

    def _batches(self, batch_times: list[float]) -> None:
        with self.session("batcher") as session:
            for at in batch_times:
                time.sleep(max(0.0, at - time.monotonic()))
                if time.monotonic() >= self.deadline:
                    return
                self.submit_batch(session, lines=40)

    def batch_now(self, lines: int) -> None:
        """Submit a batch from the calling thread (the harness, before a worker kill)."""
        with self.session("batcher") as session:
            self.submit_batch(session, lines)

    def submit_batch(self, session: Session, lines: int) -> None:
        content = b"".join(json.dumps(line).encode() + b"\n" for line in batch_lines(lines))
        files = {"file": ("soak.jsonl", content, "application/jsonl")}
        outcome, answer = self.call(
            session, "file", "POST", "/v1/files", model_route=False, files=files,
            data={"purpose": "batch"},
        )  # fmt: skip
        if answer is None or answer.status_code != 200:
            return
        self._acknowledge(outcome, answer.json()["id"])
        body = {
            "input_file_id": answer.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        outcome, answer = self.call(
            session, "batch", "POST", "/v1/batches", model_route=False, json=body
        )
        if answer is not None and answer.status_code == 200:
            self._acknowledge(outcome, answer.json()["id"])
            self.created.batches[answer.json()["id"]] = lines


def batch_lines(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        text = f"batch line {index}"
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        yield {"custom_id": f"line-{index}", "method": "POST", "url": "/v1/chat/completions",
               "body": body}  # fmt: skip
