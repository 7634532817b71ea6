"""What route handlers get injected: the caller's identity and the app's services."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from aiservice.errors import AuthenticationFailed, validation_error
from aiservice.governance.accounts import MASTER, Principal
from aiservice.governance.admission import PRIORITY_HEADER
from aiservice.metering.meter import current_meter
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.conversations import ConversationService
from aiservice.services.embedding_request import EmbeddingRequest
from aiservice.services.moderation_request import ModerationRequest
from aiservice.services.request_limits import check_array_sizes
from aiservice.services.response_request import ResponseRequest
from aiservice.services.responses import ResponseService
from aiservice.services.runtime import AppServices
from aiservice.services.stored_completions import StoredCompletions
from aiservice.services.text_completion_request import TextCompletionRequest

Body = TypeVar("Body", bound=BaseModel)
ModelBody = TypeVar(
    "ModelBody",
    ChatCompletionRequest,
    ResponseRequest,
    TextCompletionRequest,
    ModerationRequest,
    EmbeddingRequest,
)
Model = TypeVar("Model", bound=BaseModel)


def app_services(request: Request) -> AppServices:
    # A plain function for the handlers; the dependencies below are `async def` because
    # FastAPI runs a sync dependency in a worker thread: a thread hop per request.
    return request.app.state.services


async def stored_completions(request: Request) -> StoredCompletions:
    return app_services(request).stored_completions


async def responses(request: Request) -> ResponseService:
    return app_services(request).responses


async def conversations(request: Request) -> ConversationService:
    return app_services(request).conversations


async def registry(request: Request) -> ModelRegistry:
    return app_services(request).registry


async def authenticate(request: Request) -> Principal:
    """Bearer (the master key or a user's API key) or Basic (a user's e-mail and password)."""
    principal = await _principal(request)
    meter = current_meter()
    if meter is not None:
        meter.owner, meter.key_id = principal.owner, principal.key_id
        meter.zero_retention = principal.zero_retention
    return principal


# Handler parameters: the authenticated caller, and the stored completions service.
Caller = Annotated[Principal, Depends(authenticate)]
StoredService = Annotated[StoredCompletions, Depends(stored_completions)]


async def model_request(request: Request, shape: type[ModelBody]) -> tuple[Principal, ModelBody]:
    """The caller and body of a model route, past every check that comes before model work,
    in order: authentication, budgets, the body, rate limits. Called by the model routes'
    handlers themselves, not as a dependency: they are served before FastAPI's router
    (hot_routes)."""
    principal = await authenticate(request)
    await app_services(request).budgets.check(principal)
    body = await json_body(request, shape)
    await admit(request, principal, body.output_token_cap)
    return principal, body


async def admit(request: Request, principal: Principal, output_tokens: int | None) -> None:
    """Take the request's share of its rate limits (after its body is read: tokens are
    estimated from it), or raise the 429. The admission travels on the request's meter: its
    headers go on the response, its token charge is settled when the request ends."""
    admitted = await app_services(request).admission.admit(
        principal,
        len(await request.body()),
        output_tokens or 0,
        request.headers.get(PRIORITY_HEADER),
    )
    meter = current_meter()
    if admitted is None or meter is None:
        return
    meter.admission = admitted.admission
    meter.priority = admitted.priority.value
    meter.settles_tokens = admitted.counts_tokens
    if admitted.admission.waited_s:
        meter.wait_ms = admitted.admission.waited_s * 1000


async def _principal(request: Request) -> Principal:
    services = app_services(request)
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it in an Authorization header using Bearer "
            "auth (Authorization: Bearer YOUR_KEY), or log in with Basic auth.",
            code="missing_api_key",
        )
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        if services.master_key is not None and services.master_key.matches(credentials):
            return MASTER
        principal = await services.accounts.principal_for_key(credentials)
        if principal is not None:
            return principal
        raise AuthenticationFailed("Incorrect API key provided.")
    if scheme.lower() == "basic" and credentials:
        return await _basic_login(request, services, credentials)
    raise AuthenticationFailed("Incorrect API key provided.")


async def _basic_login(request: Request, services: AppServices, credentials: str) -> Principal:
    try:
        email, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise AuthenticationFailed("Malformed Basic credentials.") from None
    account = email.strip().lower()
    address = request.client.host if request.client else "unknown"
    await services.login_throttle.check(account, address)
    principal = await services.accounts.principal_for_password(account, password)
    if principal is None:
        await services.login_throttle.failed(account, address)
        raise AuthenticationFailed("Incorrect e-mail or password.", code="invalid_credentials")
    return principal


async def json_body(request: Request, model: type[Body]) -> Body:
    """Read and validate a JSON body inside the handler, after authentication.

    Declared as a FastAPI body parameter, it would be parsed before any dependency runs: an
    unauthenticated client could make us parse megabytes, and get a 400 instead of its 401.
    """
    body = await request.body()
    if len(body) <= _INLINE_BODY_BYTES:
        return _validated(model, body)
    # Off the event loop, and counted before validation (see services/request_limits.py).
    return await asyncio.to_thread(_counted_then_validated, model, body)


def _counted_then_validated(model: type[Body], body: bytes) -> Body:
    try:
        document = json.loads(body)
    except ValueError:
        document = None  # validation names the fault
    check_array_sizes(document)
    return _validated(model, body)


def _validated(model: type[Body], body: bytes) -> Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


_INLINE_BODY_BYTES = 64 * 1024  # below this, validation costs less than a thread hop
_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


def query_as(request: Request, shape: type[Model]) -> Any:
    """The request's query parameters as `shape` (see parse_query)."""
    return parse_query(request.query_params.multi_items(), shape)


def parse_query(items: Iterable[tuple[str, str]], shape: type[Model]) -> Any:
    """Query parameters as `shape`; `metadata[key]=value` pairs become the metadata filter;
    parameters `shape` does not know are ignored, as OpenAI does."""
    values: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for name, value in items:
        if match := _METADATA_PARAM.match(name):
            metadata[match.group(1)] = value
        elif name in shape.model_fields:
            values[name] = value
    if metadata:
        values["metadata"] = metadata
    try:
        return shape.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
