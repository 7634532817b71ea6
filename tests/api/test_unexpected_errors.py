"""A fault of ours is a bare 500 in the route's own error shape, on every route family.

No running route can be made to fail on purpose, so this builds the app in-process (without
its lifespan: nothing is loaded) and adds one route per family that raises.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aiservice.app import create_app
from aiservice.settings import Settings

SECRET_DETAIL = "password=hunter2 in an exception message"


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = create_app(Settings(home=Path(tmp_path_factory.mktemp("home"))))

    async def boom() -> None:
        raise RuntimeError(SECRET_DETAIL)

    app.add_api_route("/v1/boom", boom)
    app.add_api_route("/api/ai/boom", boom)
    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_error_on_an_openai_route_is_a_500_envelope(failing_app: TestClient) -> None:
    response = failing_app.get("/v1/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert response.headers["x-request-id"]


def test_an_unexpected_error_on_a_seed_route_is_a_500_in_the_seed_shape(
    failing_app: TestClient,
) -> None:
    response = failing_app.get("/api/ai/boom")
    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "error": "The server had an error while processing your request.",
    }
    assert SECRET_DETAIL not in response.text
    assert response.headers["x-request-id"]
