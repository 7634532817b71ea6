"""The fake upstream's ASGI application: OpenAI's routes, the request log, faults, and the
`/_fake/` routes that control it over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from aiservice.testing.chat_replies import chat_chunks, chat_completion, plan_chat
from aiservice.testing.completion_replies import (
    completion_chunks,
    completion_object,
    plan_completions,
)
from aiservice.testing.delivery import (
    Answer,
    Receive,
    Send,
    data_event,
    error_answer,
    json_answer,
    named_event,
    send_answer,
    send_faulty,
)
from aiservice.testing.embedding_replies import embedding_items, embedding_list
from aiservice.testing.fake_batches import BATCHES_PATH, BatchStore, parse_batch_path
from aiservice.testing.fake_files import FILES_PATH, FileStore, parse_file_path
from aiservice.testing.faults import Fault, FaultQueue
from aiservice.testing.moderation_replies import moderation_answer
from aiservice.testing.recording import RequestLog
from aiservice.testing.response_replies import plan_response, response_events, response_object
from aiservice.testing.wire import Body, ReplySource

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
MODEL_CREATED = 1_700_000_000
REPLY_HEADER = "x-fake-reply"
_DONE = b"data: [DONE]\n\n"
_NOT_JSON = object()


@dataclass(slots=True)
class Incoming:
    """A request the fake serves: its path, headers (lower-cased names), JSON body (empty
    when it had none) and raw bytes (what a multipart upload is read from)."""

    path: str
    headers: dict[str, str]
    body: Body
    raw: bytes = b""


Route = Callable[[Incoming], Answer]


@dataclass(slots=True)
class Behaviour:
    """How the fake answers when no fault applies; may be changed while it runs."""

    reply: ReplySource = None  # None: "Fake reply to: <last user message>"
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    api_key: str | None = None  # None: any key (or none) is accepted
    # How long a batch takes to complete, from its creation; it still shows in_progress at
    # its first retrieve, so with 0 it completes at the second. Read when a batch is created.
    batch_latency_s: float = 0.0
    # Request fields answered as if absent, as some OpenAI-compatible servers do (llama.cpp's
    # server: `n`, `logprobs`): the answer then has one choice, or no logprobs.
    ignores: frozenset[str] = frozenset()


class FakeUpstreamApp:
    """An ASGI app speaking OpenAI's protocol, deterministic unless a queued fault applies."""

    def __init__(self, behaviour: Behaviour, requests: RequestLog) -> None:
        self.behaviour = behaviour
        self.requests = requests
        self.faults = FaultQueue()
        self._stopping: asyncio.Event | None = None
        self._serials = itertools.count(1)
        self.files = FileStore()
        self.batches = BatchStore(
            self.files, self._batch_line, lambda: self.behaviour.batch_latency_s
        )
        self._routes: dict[tuple[str, str], Route] = {
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/moderations"): self._moderations,
            ("POST", FILES_PATH): lambda i: self.files.upload(i.headers, i.raw),
            ("GET", FILES_PATH): lambda _: self.files.list_answer(),
            ("POST", BATCHES_PATH): lambda i: self.batches.create(i.body),
            ("GET", BATCHES_PATH): lambda _: self.batches.list_answer(),
        }

    def serving(self) -> None:
        """Called in the server's event loop as it starts: a fresh shutdown signal."""
        self._stopping = asyncio.Event()

    def stopping(self) -> None:
        """Called in the server's event loop as it stops: stalled answers drop at once."""
        if self._stopping is not None:
            self._stopping.set()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan work, no websockets
        method, path = scope["method"], scope["path"]
        raw = await _read_body(receive)
        if path.startswith("/_fake/"):
            return await send_answer(send, self._control(method, path, raw))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = _parse(raw)
        self.requests.record(method, path, headers, None if body is _NOT_JSON else body)
        refusal = self._refusal(method, path, headers, body)
        if refusal is not None:
            return await send_answer(send, refusal)
        incoming = Incoming(path, headers, body if isinstance(body, dict) else {}, raw)
        route = self._route(method, path)
        assert route is not None  # _refusal answered unknown routes
        fault = self.faults.take(path, incoming.body.get("stream") is True)
        if fault is None:
            return await send_answer(send, route(incoming))
        if self._stopping is None:
            self.serving()  # run by another server than FakeUpstream's
        assert self._stopping is not None
        await send_faulty(send, receive, fault, lambda: route(incoming), self._stopping)

    def _route(self, method: str, path: str) -> Route | None:
        route = self._routes.get((method, path))
        if route is not None:  # first: the generation routes, on every benchmark request
            return route
        if path.startswith("/v1/models/"):
            return self._model if method == "GET" else None
        by_id = self.files.route(method, path) or self.batches.route(method, path)
        return None if by_id is None else lambda _: by_id()

    def _known_path(self, path: str) -> bool:
        """Whether some method is served on `path` (so another one is a 405, not a 404)."""
        if any(known == path for _, known in self._routes) or path.startswith("/v1/models/"):
            return True
        return parse_file_path(path) is not None or parse_batch_path(path) is not None

    def _refusal(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer | None:
        """The error answer for a request the fake will not serve; None when it will."""
        api_key = self.behaviour.api_key
        if api_key is not None and headers.get("authorization") != f"Bearer {api_key}":
            return error_answer(401, "Incorrect API key provided.")
        if self._route(method, path) is None:
            if self._known_path(path):
                return error_answer(405, f"Method {method} not allowed on {path}.")
            return error_answer(404, f"Unknown URL: {method} {path}.", code="unknown_url")
        if method != "POST" or path == FILES_PATH or parse_batch_path(path) is not None:
            return None  # an upload is multipart, checked by its route; a cancel has no body
        if not isinstance(body, dict):
            return error_answer(400, "The body of the request is not a JSON object.")
        if path == BATCHES_PATH:
            return None  # no model: the batch checks its own fields
        return self._body_refusal(path, body)

    def _body_refusal(self, path: str, body: Body) -> Answer | None:
        """The 400 for a generation body the fake will not answer; None when it will."""
        if not isinstance(body.get("model"), str):
            return error_answer(400, "you must provide a model parameter", param="model")
        if path == "/v1/chat/completions" and not isinstance(body.get("messages"), list):
            return error_answer(400, "messages must be a list", param="messages")
        if path == "/v1/completions" and not _is_prompt(body.get("prompt")):
            return error_answer(400, "prompt must be a string or a list", param="prompt")
        if path == "/v1/embeddings" and embedding_items(body.get("input")) is None:
            return error_answer(400, "input must be a non-empty string or list", param="input")
        return None

    def _batch_line(self, url: str, body: Body) -> tuple[int, Body]:
        """One batch line answered as its route answers it: the status and the JSON body."""
        route = self._routes[("POST", url)]  # the batch checked that url is a served endpoint
        if body.get("stream") is True:
            answer = error_answer(400, "stream is not supported in a batch.", param="stream")
        else:
            answer = self._body_refusal(url, body) or route(Incoming(url, {}, body))
        return answer.status, json.loads(answer.body)

    def _chat_completions(self, incoming: Incoming) -> Answer:
        body = {k: v for k, v in incoming.body.items() if k not in self.behaviour.ignores}
        reply = plan_chat(body, self.behaviour.reply, incoming.headers.get(REPLY_HEADER))
        serial, created = next(self._serials), int(time.time())
        if body.get("stream") is True:
            chunks = chat_chunks(body, reply, serial, created)
            return Answer(events=[*map(data_event, chunks), _DONE])
        return json_answer(chat_completion(body, reply, serial, created))

    def _completions(self, incoming: Incoming) -> Answer:
        body = incoming.body
        replies = plan_completions(body, self.behaviour.reply, incoming.headers.get(REPLY_HEADER))
        serial, created = next(self._serials), int(time.time())
        if body.get("stream") is True:
            chunks = completion_chunks(body, replies, serial, created)
            return Answer(events=[*map(data_event, chunks), _DONE])
        return json_answer(completion_object(body, replies, serial, created))

    def _responses(self, incoming: Incoming) -> Answer:
        body = incoming.body
        reply = plan_response(body, self.behaviour.reply, incoming.headers.get(REPLY_HEADER))
        serial, created = next(self._serials), int(time.time())
        if body.get("stream") is True:
            return Answer(events=[*map(named_event, response_events(body, reply, serial, created))])
        return json_answer(response_object(body, reply, serial, created))

    def _embeddings(self, incoming: Incoming) -> Answer:
        return json_answer(embedding_list(incoming.body))

    def _moderations(self, incoming: Incoming) -> Answer:
        return json_answer(moderation_answer(incoming.body, next(self._serials)))

    def _models(self, incoming: Incoming) -> Answer:
        return json_answer({"object": "list", "data": [_model(m) for m in self.behaviour.models]})

    def _model(self, incoming: Incoming) -> Answer:
        model_id = incoming.path.removeprefix("/v1/models/")
        if model_id not in self.behaviour.models:
            message = f"The model `{model_id}` does not exist or you do not have access to it."
            return error_answer(404, message, param="model", code="model_not_found")
        return json_answer(_model(model_id))

    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        """`/_fake/faults` (POST a Fault, GET, DELETE) and `/_fake/requests` (GET, DELETE)."""
        if (method, path) == ("POST", "/_fake/faults"):
            try:
                fault = Fault.model_validate_json(raw or b"{}")
            except ValidationError as error:
                return error_answer(400, str(error))
            self.faults.add(fault)
            return json_answer({"fault": fault.model_dump()}, 201)
        if (method, path) == ("GET", "/_fake/faults"):
            pending = [
                {**p.fault.model_dump(), "remaining": p.remaining} for p in self.faults.pending()
            ]
            return json_answer({"faults": pending})
        if (method, path) == ("DELETE", "/_fake/faults"):
            return json_answer({"cleared": self.faults.clear()})
        if (method, path) == ("GET", "/_fake/requests"):
            records = [record.as_json() for record in self.requests.records()]
            return json_answer({"requests": records, "counts": self.requests.counts()})
        if (method, path) == ("DELETE", "/_fake/requests"):
            return json_answer({"cleared": self.requests.clear()})
        return error_answer(404, f"Unknown URL: {method} {path}.", code="unknown_url")


def _model(model_id: str) -> Body:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "fake"}


def _is_prompt(prompt: Any) -> bool:
    return prompt is None or isinstance(prompt, str | list)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_JSON


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
