"""The model routes, served before FastAPI's router.

A model request is the gateway's hot path, and FastAPI's machinery around a handler — the
exception middleware, routing through every route, dependency solving — cost about as much
CPU as the handler's own work on a proxied request. The handlers of these routes take only the
request and do their own authentication, so this middleware calls the very same function the
FastAPI route holds, and answers its errors through the same handlers (error_handlers). It
sits inside RequestContextMiddleware and BodySizeLimitMiddleware, so request ids, access
lines, metering and the size limit are unchanged. Any other method or path (a GET on these
paths: 405) goes on to FastAPI.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from aiservice.api.error_handlers import handler_for

RouteKey = tuple[str, str]  # (method, path)


class HotRoutes:
    """Pure ASGI middleware: `routes` by exact method and path, everything else to `app`."""

    def __init__(self, app: ASGIApp, routes: dict[RouteKey, APIRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        # What the router would leave in the scope (the metrics' route label reads it).
        scope["route"], scope["endpoint"] = route, route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = handler_for(exc)
            if handler is None:
                raise  # a fault of ours: RequestContextMiddleware answers the 500
            response = await handler(request, exc)
        await response(scope, receive, send)


def hot_routes(app: FastAPI, keys: frozenset[RouteKey]) -> dict[RouteKey, APIRoute]:
    """The app's routes for `keys`, each checked to be callable without FastAPI: an endpoint
    of one `request` parameter, no dependencies, no response model, no body limit of its own."""
    found: dict[RouteKey, APIRoute] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for method in context.methods or ():
            if (method, context.path) not in keys:
                continue
            parameters = list(inspect.signature(context.endpoint).parameters)
            if (
                parameters != ["request"]
                or context.dependencies
                or context.response_model
                or context.max_body_size is not None
            ):
                raise TypeError(
                    f"{method} {context.path} cannot be served before FastAPI: its endpoint must "
                    "take only the request, with no dependencies, response model or body limit."
                )
            found[(method, context.path)] = route
    missing = keys - found.keys()
    if missing:
        raise LookupError(f"No route for {sorted(missing)}")
    return found
