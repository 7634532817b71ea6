"""The model routes are served before FastAPI's router (api/hot_routes.py), and answer exactly
as FastAPI would: the same handler, the same error translation, the same fall-through.

Built in-process on a small app, once with the shortcut and once without, so each case
compares the two answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from aiservice.api.error_handlers import install_error_handlers
from aiservice.api.hot_routes import HotRoutes, hot_routes
from aiservice.api.middleware import METERED_ROUTES
from aiservice.app import create_app
from aiservice.errors import InvalidRequest
from aiservice.settings import Settings

HOT = frozenset({("POST", "/v1/hot"), ("POST", "/api/ai/hot")})


async def _answer(request: Request) -> Response:
    outcome = request.query_params.get("outcome")
    if outcome == "invalid":
        raise InvalidRequest("Nope.", param="model")
    if outcome == "too-large":
        raise HTTPException(413, "Too large.")
    if outcome == "fault":
        raise RuntimeError("a fault of ours")
    return Response(f"{request.method} {request.url.path} {await request.body()!r}")


def _app(*, shortcut: bool) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()
    router.add_api_route("/v1/hot", _answer, methods=["POST"])
    router.add_api_route("/api/ai/hot", _answer, methods=["POST"])
    app.include_router(router)
    if shortcut:
        app.add_middleware(HotRoutes, routes=hot_routes(app, HOT))
    return app


@pytest.fixture(scope="module")
def both() -> tuple[TestClient, TestClient]:
    return (
        TestClient(_app(shortcut=False), raise_server_exceptions=False),
        TestClient(_app(shortcut=True), raise_server_exceptions=False),
    )


@pytest.mark.parametrize("path", ["/v1/hot", "/api/ai/hot"])
@pytest.mark.parametrize("outcome", ["ok", "invalid", "too-large", "fault"])
def test_a_hot_route_answers_as_fastapi_does(
    both: tuple[TestClient, TestClient], path: str, outcome: str
) -> None:
    plain, hot = (client.post(path, params={"outcome": outcome}, content=b"{}") for client in both)
    assert (hot.status_code, hot.content) == (plain.status_code, plain.content)
    assert hot.headers.get("content-type") == plain.headers.get("content-type")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_a_hot_path_go_on_to_fastapi(
    both: tuple[TestClient, TestClient], method: str
) -> None:
    plain, hot = (client.request(method, "/v1/hot") for client in both)
    assert hot.status_code == plain.status_code == 405
    assert hot.json() == plain.json()


def test_a_route_with_dependencies_cannot_be_made_hot() -> None:
    async def caller() -> str:
        return "someone"

    async def endpoint(request: Request, who: str = Depends(caller)) -> Response:
        return Response(who)

    app = FastAPI()
    app.add_api_route("/v1/hot", endpoint, methods=["POST"])
    with pytest.raises(TypeError, match="cannot be served before FastAPI"):
        hot_routes(app, frozenset({("POST", "/v1/hot")}))


def test_the_model_routes_of_the_app_are_hot(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path))
    (shortcut,) = [m for m in app.user_middleware if m.cls is HotRoutes]
    assert set(shortcut.kwargs["routes"]) == METERED_ROUTES
