"""What route handlers get injected: the caller's identity and the app's services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from aiservice.api.error_handlers import validation_error
from aiservice.errors import AuthenticationFailed
from aiservice.governance.master_key import MasterKey
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.stored_completions import StoredCompletions
from aiservice.store.database import Database

Body = TypeVar("Body", bound=BaseModel)


@dataclass(slots=True)
class AppServices:
    """Everything the routers use, built once by create_app and kept on app.state."""

    registry: ModelRegistry
    database: Database
    chat_completions: ChatCompletionService
    stored_completions: StoredCompletions
    master_key: MasterKey | None = None  # set in the lifespan


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. Only the master key exists until users arrive."""

    owner: str
    is_admin: bool


def app_services(request: Request) -> AppServices:
    return request.app.state.services


def chat_completions(request: Request) -> ChatCompletionService:
    return app_services(request).chat_completions


def stored_completions(request: Request) -> StoredCompletions:
    return app_services(request).stored_completions


def registry(request: Request) -> ModelRegistry:
    return app_services(request).registry


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it in an Authorization header using Bearer "
            "auth (Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    scheme, _, key = header.partition(" ")
    master_key = app_services(request).master_key
    if (
        scheme.lower() != "bearer"
        or not key
        or master_key is None
        or not master_key.matches(key.strip())
    ):
        raise AuthenticationFailed("Incorrect API key provided.")
    return Principal(owner="admin", is_admin=True)


async def json_body(request: Request, model: type[Body]) -> Body:
    """Read and validate a JSON body inside the handler, after authentication.

    Declared as a FastAPI body parameter, it would be parsed before any dependency runs: an
    unauthenticated client could make us parse megabytes, and get a 400 instead of its 401.
    """
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
