"""What route handlers get injected: the caller's identity and the app's services."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from aiservice.api.error_handlers import validation_error
from aiservice.errors import AuthenticationFailed
from aiservice.governance.accounts import MASTER, Principal
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.conversations import ConversationService
from aiservice.services.responses import ResponseService
from aiservice.services.runtime import AppServices
from aiservice.services.stored_completions import StoredCompletions

Body = TypeVar("Body", bound=BaseModel)
Model = TypeVar("Model", bound=BaseModel)


def app_services(request: Request) -> AppServices:
    return request.app.state.services


def chat_completions(request: Request) -> ChatCompletionService:
    return app_services(request).chat_completions


def stored_completions(request: Request) -> StoredCompletions:
    return app_services(request).stored_completions


def responses(request: Request) -> ResponseService:
    return app_services(request).responses


def conversations(request: Request) -> ConversationService:
    return app_services(request).conversations


def registry(request: Request) -> ModelRegistry:
    return app_services(request).registry


async def authenticate(request: Request) -> Principal:
    """Bearer (the master key or a user's API key) or Basic (a user's e-mail and password)."""
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
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


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
