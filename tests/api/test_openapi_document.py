"""The served OpenAPI document (api/openapi.py) is the contract: a valid OpenAPI 3.1 document
that lists every route with the bodies, parameters, credentials and statuses it really has,
serves the admin API to admins only, and whose request schemas accept the requests real
clients send (never stricter than the server).

The structural checks build the documents in-process; the behaviour they describe (which
routes read JSON, which ones authenticate, who gets which document) is checked on the
session's real server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from jsonschema import Draft202012Validator
from openai import OpenAI
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis.specs.openapi.definitions import OPENAPI_31

from aiservice.api.openapi_operations import OPERATIONS
from aiservice.app import create_app
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.embedding_request import EmbeddingRequest
from aiservice.services.response_request import ResponseRequest
from aiservice.services.text_completion_request import TextCompletionRequest
from aiservice.settings import Settings
from support import MASTER_KEY, RunningServer, admin_add_user, basic_auth, bearer, new_email
from usage_support import new_account

METHODS = ("get", "put", "post", "delete", "patch")
NOT_IN_DOCUMENT = ("/dashboard", "/openapi.json")  # web pages, and the document itself


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(home=Path(tmp_path_factory.mktemp("openapi"))), worker=False)


@pytest.fixture(scope="module")
def public(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture(scope="module")
def admin(app: FastAPI) -> dict[str, Any]:
    return app.openapi(admin=True)  # type: ignore[call-arg]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in the document: components, bodies, parameters, answers."""
    if isinstance(node, dict):
        if isinstance(node.get("schema"), dict):
            yield node["schema"]
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("which", ["public", "admin"])
def test_the_documents_are_valid_openapi_3_1(which: str, request: pytest.FixtureRequest) -> None:
    document = request.getfixturevalue(which)
    assert document["openapi"] == "3.1.0"
    errors = list(Draft202012Validator(OPENAPI_31).iter_errors(document))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]
    # OPENAPI_31 leaves schema objects alone: each must be a JSON Schema 2020-12 schema.
    for schema in [*document["components"]["schemas"].values(), *_schemas(document["paths"])]:
        Draft202012Validator.check_schema(schema)
    names = set(document["components"]["schemas"])
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in names, ref
    operation_ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_route_is_in_the_document_and_admin_routes_only_in_the_admins(
    app: FastAPI, public: dict[str, Any], admin: dict[str, Any]
) -> None:
    routes = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and not context.path.startswith(
            NOT_IN_DOCUMENT
        ):
            routes |= {(method, context.path_format) for method in context.methods or ()}
    in_public = {(method, path) for method, path, _ in _operations(public)}
    in_admin = {(method, path) for method, path, _ in _operations(admin)}
    admin_routes = {(m, p) for m, p in routes if p.startswith("/v1/admin/")}
    assert len(admin_routes) > 20
    assert in_admin == routes
    assert in_public == routes - admin_routes
    assert not [path for path in public["paths"] if path.startswith("/v1/admin")]
    assert ("GET", "/metrics") in in_public and ("POST", "/v1/chat/completions") in in_public


def test_every_table_entry_is_a_route(app: FastAPI) -> None:
    routes = {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        for method in context.methods or ()
    }
    assert set(OPERATIONS) <= routes


def test_no_operation_declares_a_422_and_every_error_has_the_routes_error_shape(
    admin: dict[str, Any],
) -> None:
    for method, path, operation in _operations(admin):
        assert "422" not in operation["responses"], (method, path)
        assert "default" not in operation["responses"], (method, path)
        shape = "SeedError" if path.startswith("/api/ai/") else "Error"
        for status, answer in operation["responses"].items():
            assert "x-request-id" in answer["headers"], (method, path, status)
            if status.startswith(("4", "5")) and not (path == "/ready" and status == "503"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{shape}"}, (method, path)
    assert "HTTPValidationError" not in admin["components"]["schemas"]


def test_the_security_schemes_are_bearer_keys_and_basic_passwords(
    admin: dict[str, Any],
) -> None:
    schemes = admin["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http" and schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["basicAuth"]["type"] == "http" and schemes["basicAuth"]["scheme"] == "basic"
    for method, path, operation in _operations(admin):
        if path in ("/health", "/ready", "/metrics"):
            assert operation["security"] == [], path
        else:
            assert operation["security"] == [{"bearerAuth": []}, {"basicAuth": []}], (method, path)


def test_list_routes_declare_their_query_parameters(public: dict[str, Any]) -> None:
    def names(path: str) -> dict[str, dict[str, Any]]:
        parameters = public["paths"][path]["get"].get("parameters", [])
        return {p["name"]: p for p in parameters if p["in"] == "query"}

    stored = names("/v1/chat/completions")
    assert {"limit", "order", "after", "model", "metadata"} <= set(stored)
    assert stored["limit"]["schema"] | {} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert stored["order"]["schema"]["enum"] == ["asc", "desc"]
    assert stored["metadata"]["style"] == "deepObject" and stored["metadata"]["explode"]
    assert {"model_filter", "metadata_filter", "limit"} <= set(names("/api/ai/chat/completions"))
    assert {"limit", "order", "after"} <= set(names("/v1/responses/{response_id}/input_items"))
    assert {"stream", "starting_after"} <= set(names("/v1/responses/{response_id}"))
    assert {"purpose", "limit", "order", "after"} <= set(names("/v1/files"))
    assert {"since", "until", "group_by", "user"} <= set(names("/v1/usage"))


def test_uploads_are_multipart(public: dict[str, Any]) -> None:
    upload = public["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    schema = upload["multipart/form-data"]["schema"]
    assert schema["required"] == ["file", "purpose"]
    assert schema["properties"]["file"]["format"] == "binary"
    analyses = public["paths"]["/api/ai/documents/analyses"]["post"]["requestBody"]["content"]
    assert set(analyses) == {"application/json", "multipart/form-data"}


# What the server does, checked against what the document says of it.


@pytest.fixture(scope="module")
def served(server: RunningServer) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/openapi.json", headers=bearer(MASTER_KEY))
    assert response.status_code == 200
    return response.json()


def _filled(path: str) -> str:
    return path.replace("{email}", "nobody@example.com").replace("{", "x").replace("}", "")


def test_every_operation_that_reads_a_json_body_declares_it(
    server: RunningServer, served: dict[str, Any]
) -> None:
    """Malformed JSON sent to every operation: those that parse it say so, and those must
    declare a JSON body; every declared JSON body is parsed."""
    with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30) as http:
        for method, path, operation in _operations(served):
            if method == "GET":
                continue
            response = http.request(
                method, _filled(path), content=b"{", headers={"content-type": "application/json"}
            )
            parsed = "could not parse the JSON body" in response.text
            declared = "application/json" in operation.get("requestBody", {}).get("content", {})
            assert parsed == declared, (method, path, response.status_code, response.text)
            if parsed:
                assert str(response.status_code) in operation["responses"], (method, path)


def test_every_operation_that_authenticates_declares_its_401(
    server: RunningServer, served: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for method, path, operation in _operations(served):
            response = http.request(method, _filled(path))
            if operation["security"]:
                assert response.status_code == 401, (method, path, response.text)
                assert "401" in operation["responses"], (method, path)
            else:
                assert response.status_code in (200, 503), (method, path)


def test_the_admin_part_is_served_to_admins_only(server: RunningServer) -> None:
    def document(headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{server.base_url}/openapi.json", headers=headers, timeout=30)

    def has_admin(response: httpx.Response) -> bool:
        assert response.status_code == 200, response.text
        return any(path.startswith("/v1/admin/") for path in response.json()["paths"])

    user = new_account(server, "openapi")
    admin_email = new_email("openapi-admin")
    admin_add_user(server, admin_email, "password-1234", is_admin=True)
    assert not has_admin(document({}))
    assert not has_admin(document(bearer(user.key)))
    assert not has_admin(document(basic_auth(user.email, "password-1234")))
    assert has_admin(document(bearer(MASTER_KEY)))
    assert has_admin(document(basic_auth(admin_email, "password-1234")))
    refused = document(bearer("sk-not-a-key"))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"


# The request schemas accept what real clients send.


def _sdk_body(call: Callable[[OpenAI], object]) -> dict[str, Any]:
    """The JSON body the official SDK sends for `call` (answered with a 400 it raises)."""
    sent: list[dict[str, Any]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        return httpx2.Response(400, json={"error": {"message": "captured", "type": "x"}})

    transport = httpx2.MockTransport(answer)
    client = OpenAI(
        api_key="sk-x",
        base_url="http://sdk.invalid/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )
    with contextlib.suppress(openai.APIError):
        call(client)
    return sent[0]


_PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look up", "parameters": _PERSON},
}
_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


def _sdk_requests() -> list[tuple[str, type, dict[str, Any]]]:
    chat = _sdk_body(
        lambda c: c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You are a professional e-mail assistant."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
                {"role": "assistant", "content": None, "tool_calls": [_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
            ],
            temperature=0.7,
            max_tokens=200,
            tools=[_TOOL],
            tool_choice={"type": "function", "function": {"name": "lookup"}},
            stream=True,
            stream_options={"include_usage": True},
            logprobs=True,
            top_logprobs=2,
            logit_bias={"50256": -100},
            stop=["\n\n"],
            seed=1,
            metadata={"user_id": "42"},
            store=True,
            reasoning_effort="low",
        )
    )
    structured = _sdk_body(
        lambda c: c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "developer", "content": "JSON"}, {"role": "user", "content": "x"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": _PERSON, "strict": True},
            },
        )
    )
    response = _sdk_body(
        lambda c: c.responses.create(
            model="gpt-4o-mini",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "{}"},
                {"type": "item_reference", "id": "msg_1"},
            ],
            instructions="Be brief.",
            tools=[{"type": "function", "name": "lookup", "parameters": _PERSON, "strict": True}],
            text={"format": {"type": "json_schema", "name": "person", "schema": _PERSON}},
            max_output_tokens=64,
            background=True,
            include=["message.output_text.logprobs"],
        )
    )
    chained = _sdk_body(
        lambda c: c.responses.create(model="gpt-4o-mini", previous_response_id="resp_1")
    )
    completion = _sdk_body(
        lambda c: c.completions.create(
            model="gpt-4o-mini", prompt=["a", "b"], n=2, echo=True, max_tokens=5, stop="."
        )
    )
    embedding = _sdk_body(
        lambda c: c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    )
    return [
        ("/v1/chat/completions", ChatCompletionRequest, chat),
        ("/v1/chat/completions", ChatCompletionRequest, structured),
        ("/api/ai/chat/completions", ChatCompletionRequest, chat),
        ("/v1/responses", ResponseRequest, response),
        ("/v1/responses", ResponseRequest, chained),
        ("/v1/completions", TextCompletionRequest, completion),
        ("/v1/embeddings", EmbeddingRequest, embedding),
    ]


_HANDWRITTEN: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/moderations", {"input": ["some text"], "model": "omni-moderation-latest"}),
    ("POST", "/v1/conversations", {"items": [{"role": "user", "content": "Hi"}]}),
    ("POST", "/v1/conversations/{conversation_id}/items", {"items": [{"type": "message",
        "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}]}),
    ("POST", "/v1/batches", {"input_file_id": "file_1", "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "metadata": {"a": "b"}}),
    ("POST", "/v1/chat/completions/{completion_id}", {"metadata": None}),
    ("POST", "/v1/admin/users", {"email": "Ann@Example.com", "password": "password-1234"}),
    ("POST", "/v1/admin/keys", {"email": "ann@example.com", "name": "laptop",
        "rate_limits": {"rpm": 60, "priority": "low"}, "safety": {"moderation": "block"},
        "expires_in": "90d"}),
    ("POST", "/v1/admin/keys/{key_id}/rotate", {"grace": 0}),
    ("POST", "/v1/admin/budgets", {"user": "ann@example.com", "amount_usd": 5, "period": "day"}),
    ("POST", "/v1/admin/budgets", {"key": "key_1", "amount_usd": 0.5, "soft": True}),
    ("POST", "/v1/admin/privacy/erase", {"subject": {"metadata": {"user_id": "42"}}}),
    ("POST", "/api/ai/documents/analyses", {"text": "A report.", "chunk_tokens": 300}),
]  # fmt: skip


def _body_validator(document: dict[str, Any], method: str, path: str) -> Draft202012Validator:
    """A validator of the operation's JSON body, its references resolved in the document."""
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("paths", path, method.lower(), "requestBody", "content", "application/json")
    )
    registry = Registry().with_resource("urn:aiservice", DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"urn:aiservice#/{pointer}/schema"}, registry=registry)


def test_the_request_schemas_accept_what_the_official_sdk_sends(admin: dict[str, Any]) -> None:
    for path, model, body in _sdk_requests():
        model.model_validate(body)  # the server takes it
        errors = list(_body_validator(admin, "POST", path).iter_errors(body))
        assert not errors, (path, [f"{list(e.path)}: {e.message[:200]}" for e in errors])


@pytest.mark.parametrize(("method", "path", "body"), _HANDWRITTEN)
def test_the_request_schemas_accept_real_requests(
    admin: dict[str, Any], method: str, path: str, body: dict[str, Any]
) -> None:
    errors = list(_body_validator(admin, method, path).iter_errors(body))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors]


def test_the_request_schemas_refuse_what_the_server_refuses(admin: dict[str, Any]) -> None:
    chat = _body_validator(admin, "POST", "/v1/chat/completions")
    ok = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    assert chat.is_valid(ok)
    assert not chat.is_valid(ok | {"frobnicate": 1})  # an unknown parameter: 400
    assert not chat.is_valid(ok | {"messages": [{"role": "user"}]})  # no content: 400
    assert not chat.is_valid(ok | {"temperature": 3})
    responses = _body_validator(admin, "POST", "/v1/responses")
    assert not responses.is_valid({"model": "m"})  # neither input nor previous_response_id
