"""The served OpenAPI document: `GET /openapi.json`, and `app.openapi()`.

FastAPI's own document cannot see what the handlers read by hand (bodies and queries are
validated inside the handlers, after authentication: api/deps.py), and it promises a 422 that
is never sent. This one is assembled from the app's routes and what api/openapi_operations.py
says of each: the bodies from the pydantic models the handlers validate with (closed to the
names they refuse), the query, path and header parameters, the credentials (Bearer keys, Basic
e-mail and password), the error statuses with the error shape of the route (OpenAI's envelope,
or the seed's `{"success": false}` under /api/ai), and the answers.

Two documents, each built once: the public one, served to anyone, without /v1/admin; and the
admins' one, with it, served to a request with an admin's credentials (the master key, or an
admin user's key or password). Credentials that are not an admin's get the public document;
wrong ones get the 401 of every other route.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aiservice.api import openapi_schemas as s
from aiservice.api.deps import authenticate
from aiservice.api.error_handlers import is_seed_path
from aiservice.api.openapi_operations import (
    IGNORED_PARAMETERS,
    OPERATIONS,
    PATH_PARAMETERS,
    REFINEMENTS,
    Operation,
)

OPENAPI_PATH = "/openapi.json"
_COMPONENTS = "#/components/schemas/"
_PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
_SECURITY = [{"bearerAuth": []}, {"basicAuth": []}]
_SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "The master key (AISERVICE_MASTER_KEY) or a user's API key (`sk-…`).",
    },
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "A user's e-mail address and password.",
    },
}
_REQUEST_ID = {
    "description": "The request's id: the client's own `x-request-id` if it was sane.",
    "required": True,
    "schema": s.STRING,
}
_RETRY_AFTER = {"description": "Seconds until a retry may pass.", "schema": s.STRING}
_CHALLENGE = {"description": 'Basic realm="aiservice"', "required": True, "schema": s.STRING}
_ERRORS = {
    400: "Invalid request: a parameter (named by `param`), malformed JSON, an array over its "
    "limit, `context_length_exceeded`, `zero_data_retention`…",
    401: "No credentials, or unknown ones (`missing_api_key`, `invalid_api_key`, "
    "`invalid_credentials`, `api_key_expired`).",
    404: "No such object for this caller (the same for someone else's), no such model "
    "(`model_not_found`), or, on /v1/admin, a caller who is not an admin.",
    413: "The body is over the size limit (`request_too_large`).",
    429: "A rate limit (`rate_limit_exceeded`), a budget (`budget_exceeded`), or too many "
    "failed Basic logins (`too_many_failed_logins`).",
    502: "An upstream refused the request for a reason of ours (`upstream_error`).",
    503: "The model is still loading (`service_unavailable`), or its upstream did not answer "
    "(`upstream_unavailable`).",
}


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (the public document) and the route that serves both documents. The
    app must be made with `openapi_url=None`, so that FastAPI does not add its own route."""
    documents: dict[bool, dict[str, Any]] = {}

    def document(admin: bool = False) -> dict[str, Any]:
        if admin not in documents:
            documents[admin] = build_document(app, admin=admin)
        return documents[admin]

    async def openapi(request: Request) -> JSONResponse:
        admin = False
        if request.headers.get("authorization"):
            admin = (await authenticate(request)).is_admin
        return JSONResponse(document(admin))

    app.openapi = document  # type: ignore[method-assign]
    app.add_api_route(OPENAPI_PATH, openapi, methods=["GET"], include_in_schema=False)


def build_document(app: FastAPI, *, admin: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`'s routes (with the admin API when `admin`)."""
    routes = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        for method in sorted(context.methods or ()):
            key = (method, context.path)
            if key not in OPERATIONS:
                raise LookupError(f"{method} {context.path} has no entry in OPERATIONS")
            if OPERATIONS[key].auth != "admin" or admin:
                routes.append((method, context, OPERATIONS[key]))
    components = _Components([operation for _, _, operation in routes])
    paths: dict[str, dict[str, Any]] = {}
    for method, context, operation in routes:
        paths.setdefault(context.path_format, {})[method.lower()] = _operation(
            method, context, operation, components
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": app.title,
            "version": app.version,
            "description": "A self-hosted, OpenAI-compatible AI service (see docs/api.md)."
            + (" This document includes the admin API." if admin else ""),
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": copy.deepcopy(_SECURITY_SCHEMES),
        },
    }


class _Components:
    """The schemas of every pydantic model the operations name, generated together (so that
    two models of one name get distinct component names), referenced from the operations."""

    def __init__(self, operations: list[Operation]):
        models: list[type[BaseModel]] = []
        for operation in operations:
            for model in (operation.body, operation.query, *_models_in(operation.answer)):
                if model is not None and model not in models:
                    models.append(model)
        # Named too, so that their components are known (they are nested in the bodies).
        models += [model for model in REFINEMENTS if model not in models]
        refs, definitions = models_json_schema(
            [(model, "validation") for model in models], ref_template=_COMPONENTS + "{model}"
        )
        self.refs = {model: refs[(model, "validation")] for model in models}
        self.schemas: dict[str, Any] = definitions.get("$defs", {})
        for model, refinement in REFINEMENTS.items():
            _merge(self.schemas[self.refs[model]["$ref"].removeprefix(_COMPONENTS)], refinement)
        self.schemas["Error"] = s.ERROR_ENVELOPE
        self.schemas["SeedError"] = s.SEED_ERROR

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        return dict(self.refs[model])

    def definition(self, model: type[BaseModel]) -> dict[str, Any]:
        """The model's own schema (inline: a body's top level, a query's fields)."""
        return copy.deepcopy(self.schemas[self.refs[model]["$ref"].removeprefix(_COMPONENTS)])

    def resolve(self, answer: Any) -> Any:
        """A schema with each model in it replaced by its reference; a tuple: any of them."""
        if isinstance(answer, type) and issubclass(answer, BaseModel):
            return self.ref(answer)
        if isinstance(answer, tuple):
            return {"anyOf": [self.resolve(item) for item in answer]}
        if isinstance(answer, dict):
            return {key: self.resolve(value) for key, value in answer.items()}
        if isinstance(answer, list):
            return [self.resolve(item) for item in answer]
        return answer


def _merge(schema: dict[str, Any], refinement: dict[str, Any]) -> None:
    for key, value in copy.deepcopy(refinement).items():
        if key == "properties":
            for name, keywords in value.items():
                schema.setdefault("properties", {}).setdefault(name, {}).update(keywords)
        else:
            schema[key] = value


def _models_in(answer: Any) -> list[type[BaseModel]]:
    if isinstance(answer, type) and issubclass(answer, BaseModel):
        return [answer]
    if isinstance(answer, dict):
        answer = list(answer.values())
    if isinstance(answer, list | tuple):
        return [model for item in answer for model in _models_in(item)]
    return []


def _operation(
    method: str, context: Any, operation: Operation, components: _Components
) -> dict[str, Any]:
    path_parameters = _PATH_PARAMETER.findall(context.path)
    document: dict[str, Any] = {
        "tags": list(context.tags or ()),
        "summary": context.summary or context.name.replace("_", " ").capitalize(),
        "operationId": context.unique_id,
    }
    if context.description:
        document["description"] = context.description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(PATH_PARAMETERS.get(name, s.STRING)),
        }
        for name in path_parameters
    ]
    if operation.query is not None:
        parameters += _query_parameters(components.definition(operation.query))
    parameters += [copy.deepcopy(parameter) for parameter in operation.parameters]
    if operation.model:
        parameters.append(copy.deepcopy(s.PRIORITY_HEADER))
    if parameters:
        document["parameters"] = parameters
    body = _request_body(operation, components)
    if body is not None:
        document["requestBody"] = body
    document["responses"] = _responses(context.path, operation, bool(path_parameters), components)
    document["security"] = [] if operation.auth == "none" else copy.deepcopy(_SECURITY)
    return document


def _request_body(operation: Operation, components: _Components) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if operation.body is not None:
        schema = components.definition(operation.body)
        ignored = IGNORED_PARAMETERS.get(operation.body)
        if ignored is not None:  # every other name is refused: the body is closed
            properties = schema.setdefault("properties", {})
            for name in sorted(ignored - properties.keys()):
                properties[name] = {"description": "Accepted, and has no effect here."}
            schema["additionalProperties"] = False
        content["application/json"] = {"schema": schema}
    if operation.form is not None:
        content["multipart/form-data"] = {"schema": copy.deepcopy(operation.form)}
    if not content:
        return None
    return {"required": operation.body_required, "content": content}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A query model's fields as parameters (`metadata` as `metadata[key]=value` pairs)."""
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema.get("properties", {}).items():
        if name == "metadata":
            parameters.append(s.metadata_filter())
            continue
        parameter = s.query(name, _not_null(field), field.get("description"))
        parameter["required"] = name in required
        parameters.append(parameter)
    return parameters


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its `null` branch (a query value is never null) or title."""
    field = {key: value for key, value in field.items() if key not in ("title", "description")}
    branches = [b for b in field.pop("anyOf", ()) if b != {"type": "null"}]
    if len(branches) == 1:
        field |= branches[0]
    elif branches:
        field["anyOf"] = branches
    if field.get("default", ...) is None:
        del field["default"]
    return field


def _responses(
    path: str, operation: Operation, has_ids: bool, components: _Components
) -> dict[str, Any]:
    success: dict[str, Any] = {operation.media: {"schema": components.resolve(operation.answer)}}
    if operation.stream:
        success["text/event-stream"] = {"schema": s.SSE_EVENT}
    responses: dict[str, Any] = {
        str(operation.status): {
            "description": "Server-sent events with `stream: true`, else the object."
            if operation.stream
            else "Success.",
            "headers": {"x-request-id": dict(_REQUEST_ID)},
            "content": success,
        }
    }
    for status, schema, description in operation.answers:
        responses[str(status)] = {
            "description": description,
            "headers": {"x-request-id": dict(_REQUEST_ID)},
            "content": {"application/json": {"schema": copy.deepcopy(schema)}},
        }
    for status in sorted(_error_statuses(operation, has_ids)):
        responses[str(status)] = _error(path, status)
    return responses


def _error_statuses(operation: Operation, has_ids: bool) -> set[int]:
    statuses = set(operation.refusals)
    if operation.auth != "none":
        statuses |= {401, 429}  # 429: too many failed Basic logins
    if operation.auth == "admin" or has_ids:
        statuses.add(404)
    if operation.body or operation.form or operation.query or operation.parameters:
        statuses.add(400)
    if operation.body or operation.form:
        statuses.add(413)
    if operation.model:
        statuses |= {400, 404, 429, 502, 503}
    return statuses


def _error(path: str, status: int) -> dict[str, Any]:
    seed = is_seed_path(path)
    headers: dict[str, Any] = {"x-request-id": dict(_REQUEST_ID)}
    if status == 401 and seed:
        headers["WWW-Authenticate"] = dict(_CHALLENGE)
    if status in (429, 503):
        headers["Retry-After"] = dict(_RETRY_AFTER)
    schema = {"$ref": _COMPONENTS + ("SeedError" if seed else "Error")}
    return {
        "description": _ERRORS[status],
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }
