"""The schemas the OpenAPI document (api/openapi.py) is made of: the error shapes, the answers
that have no pydantic type of their own, and the query and form parameters of the routes that
read them by hand.

An answer's schema here is permissive on purpose: it names what every answer of that kind
holds (and the fuzzer, tests/api/test_openapi_fuzz.py, checks that every answer does), and
lets the rest through. Where the official SDK has the type (ChatCompletion, Model, Batch…),
the document takes that type's own schema instead (api/openapi_operations.py).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
ANY_OBJECT: Schema = {"type": "object"}

# OpenAI's error envelope, which every route outside /api/ai answers an error with.
ERROR_ENVELOPE: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": STRING,
                "type": STRING,
                "param": NULLABLE_STRING,
                "code": NULLABLE_STRING,
            },
        }
    },
}
# The e-mail manager's shape, which every route under /api/ai answers an error with.
SEED_ERROR: Schema = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {"success": {"const": False}, "error": STRING},
}


def obj(object_name: str | None = None, *required: str, **properties: Any) -> Schema:
    """An object holding at least `required` (and `object`: `object_name` when given)."""
    props = dict(properties)
    names = list(required)
    if object_name is not None:
        props["object"] = {"const": object_name}
        names.insert(0, "object")
    for name in names:
        props.setdefault(name, {})
    schema: Schema = {"type": "object", "required": names}
    if props:
        schema["properties"] = props
    return schema


def page_of(item: Any, cursor: Schema = NULLABLE_STRING) -> Schema:
    """OpenAI's cursor page: `data`, `first_id`, `last_id`, `has_more`."""
    return obj(
        "list",
        "data",
        "first_id",
        "last_id",
        "has_more",
        data={"type": "array", "items": item},
        first_id=cursor,
        last_id=cursor,
        has_more={"type": "boolean"},
    )


def list_of(item: Any) -> Schema:
    return obj("list", "data", data={"type": "array", "items": item})


def deleted(object_name: str) -> Schema:
    return obj(object_name, "id", "deleted", id=STRING, deleted={"const": True})


RESPONSE: Schema = obj(
    "response",
    "id",
    "created_at",
    "status",
    "model",
    "output",
    id=STRING,
    created_at=INTEGER,
    status={"enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]},
    model=STRING,
    output={"type": "array", "items": obj(None, "type", type=STRING)},
)
INPUT_TOKENS: Schema = obj("response.input_tokens", "input_tokens", input_tokens=INTEGER)
ITEM: Schema = obj(None, "type", type=STRING)
ITEM_PAGE: Schema = page_of(ITEM)
CONVERSATION_ITEM_PAGE: Schema = page_of(ITEM)
STORED_MESSAGE_PAGE: Schema = page_of(obj(None, "id", "role", id=STRING, role=STRING))
STORED_COMPLETION_PAGE: Schema = page_of(obj("chat.completion", "id"), cursor=STRING)
USAGE: Schema = list_of(ANY_OBJECT)
USER: Schema = obj("user", "id", "email", id=STRING, email=STRING)
API_KEY: Schema = obj("api_key", "id", "user_id", id=STRING, user_id=STRING)
NEW_API_KEY: Schema = obj("api_key", "id", "user_id", "key", id=STRING, key=STRING)
BUDGET: Schema = obj("budget", "id", "amount_usd", id=STRING, amount_usd={"type": "number"})
RATE_LIMIT_STATS: Schema = obj("rate_limit.stats", "subject", subject=STRING)
ALERT: Schema = obj("budget.alert", "id", id=STRING)
ERASURE: Schema = obj("privacy.erasure", "id", "status", id=STRING, status=STRING)
AUDIT_PAGE: Schema = page_of(obj("audit.entry", "id", "action", id=STRING, action=STRING))
NDJSON: Schema = STRING
ANALYSIS: Schema = obj(
    "document.analysis",
    "id",
    "status",
    "progress",
    id=STRING,
    status=STRING,
    progress=ANY_OBJECT,
)
SEED_COMPLETION: Schema = obj(
    None, "success", "id", "model", "choices", success={"const": True}, choices={"type": "array"}
)
SEED_LIST: Schema = obj(
    None,
    "success",
    "completions",
    "has_more",
    "last_id",
    success={"const": True},
    completions={"type": "array", "items": obj(None, "id", "model", id=STRING)},
    has_more={"type": "boolean"},
    last_id=NULLABLE_STRING,
)
SEED_MESSAGES: Schema = obj(
    None,
    "success",
    "messages",
    "has_more",
    "last_id",
    success={"const": True},
    messages={"type": "array", "items": obj(None, "id", "role", id=STRING, role=STRING)},
    has_more={"type": "boolean"},
    last_id=NULLABLE_STRING,
)
SEED_DELETED: Schema = obj(
    None, "success", "id", "deleted", success={"const": True}, id=STRING, deleted={"const": True}
)
# One server-sent event (OpenAPI 3.1 describes a stream by its events): its `data` is a
# chunk's JSON (or `[DONE]`), `event` the Responses API's event type.
SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": STRING, "event": STRING, "id": STRING, "retry": INTEGER},
}
HEALTH: Schema = obj(None, "status", status={"const": "ok"})
READY: Schema = obj(None, "status", status={"const": "ready"})
LOADING: Schema = obj(None, "status", status={"const": "loading"})

# Multipart bodies, read by hand from the form (api/files.py, api/documents.py).
_FILE: Schema = {"type": "string", "format": "binary"}
FILE_UPLOAD: Schema = {
    "type": "object",
    "required": ["file", "purpose"],
    "properties": {
        "file": _FILE,
        "purpose": {"enum": ["batch", "user_data"]},
        "expires_after[anchor]": {"const": "created_at"},
        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2_592_000},
    },
}
DOCUMENT_UPLOAD: Schema = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": _FILE,
        "model": {"type": "string", "minLength": 1},
        "chunk_tokens": {"type": "integer", "minimum": 256, "maximum": 100_000},
    },
}


def query(name: str, schema: Schema, description: str | None = None, **extra: Any) -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter | extra


def metadata_filter(name: str = "metadata") -> Schema:
    """`metadata[key]=value` pairs (all must match): a deepObject parameter."""
    return query(
        name,
        {"type": "object", "additionalProperties": STRING},
        "Only the objects whose metadata has every pair given as `metadata[key]=value`.",
        style="deepObject",
        explode=True,
    )


USAGE_QUERY: tuple[Schema, ...] = (
    query("since", STRING, "Unix seconds, an ISO date or time, or a span back from now (`7d`)."),
    query("until", STRING, "As `since`; the end of the period."),
    query(
        "group_by",
        {"type": "array", "items": STRING},
        "`day`, `model`, `key`, `user`, `route`, `endpoint` or `metadata.<key>`; repeated or "
        "comma-separated.",
        style="form",
        explode=True,
    ),
    query("user", STRING, "Admins only: one user's usage (a user id)."),
)
KEYS_QUERY: tuple[Schema, ...] = (query("email", STRING, "Only this user's keys."),)
SEED_LIST_QUERY: tuple[Schema, ...] = (
    query("model_filter", STRING, "The seed's name for `model`."),
    metadata_filter("metadata_filter"),
)
PRIORITY_HEADER: Schema = {
    "name": "x-priority",
    "in": "header",
    "required": False,
    "description": "The request's place in the rate limits' queue (any case).",
    "schema": {"enum": ["high", "medium", "low", "HIGH", "MEDIUM", "LOW"]},
}
