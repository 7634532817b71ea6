"""The dashboard's routers, and its stylesheet and script (shipped in the package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from aiservice.api.dashboard import accounts, auth, operations, requests, usage

ROUTERS = (auth.router, requests.router, usage.router, accounts.router, operations.router)
STATIC_PATH = "/dashboard/static"


def include_dashboard(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=Path(__file__).parent / "static"), "static")
