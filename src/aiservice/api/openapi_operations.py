"""What the OpenAPI document says of each route: its body, its parameters, its answer, who may
call it and how it refuses. The handlers read their bodies and queries themselves, after
authentication (api/deps.py), so FastAPI cannot see them: they are declared here, from the
very pydantic models the handlers validate with, and api/openapi.py assembles the document.

A route with no entry here is an error when the document is built (tests/api/
test_openapi_document.py builds it): a new route must say what it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from openai.types import (
    Batch,
    Completion,
    CreateEmbeddingResponse,
    Embedding,
    FileObject,
    Model,
    ModerationCreateResponse,
)
from openai.types.chat import ChatCompletion
from openai.types.conversations import Conversation
from pydantic import BaseModel

from aiservice.api import openapi_schemas as s
from aiservice.api.admin import _NewKey, _NewUser, _Rotation, _Switch
from aiservice.api.audit import _AuditFilter
from aiservice.api.budgets import _AlertQuery, _NewBudget
from aiservice.api.documents import TextAnalysis
from aiservice.api.files import FileListQuery
from aiservice.api.responses import StreamQuery
from aiservice.governance.budget_periods import PERIODS
from aiservice.services import chat_request, embedding_request, response_request
from aiservice.services import text_completion_request as text_request
from aiservice.services.batch_request import BatchPage, CreateBatchRequest
from aiservice.services.conversations import ConversationUpdate, NewConversation, NewItems
from aiservice.services.conversations import ItemPage as ConversationItemPage
from aiservice.services.email_requests import REQUEST_TYPES, ROUTE_NAMES
from aiservice.services.email_schemas import RESULTS, FailedAnswer
from aiservice.services.moderation_request import ModerationRequest
from aiservice.services.privacy_subject import PrivacyRequest
from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page
from aiservice.services.response_request import ITEM_TYPES, InputItem
from aiservice.services.responses import ItemPage as ResponseItemPage
from aiservice.settings import LimitValues, SafetyValues

# An answer: a schema, a pydantic model (its schema goes to the components), or a tuple of
# them (any of them). A model may also stand for a schema inside a schema (`list_of(Model)`).
Answer = s.Schema | type[BaseModel] | tuple[Any, ...]
Auth = Literal["none", "caller", "admin"]


@dataclass(frozen=True)
class Operation:
    answer: Answer
    status: int = 200  # the status of a success
    media: str = "application/json"  # the success's content type
    stream: bool = False  # the success may also be an SSE stream (`stream: true`)
    auth: Auth = "caller"
    body: type[BaseModel] | None = None  # the JSON body, as the handler validates it
    body_required: bool = True
    form: s.Schema | None = None  # a multipart/form-data body
    query: type[BaseModel] | None = None  # the query, as the handler validates it
    parameters: tuple[s.Schema, ...] = ()  # other query (or header) parameters
    model: bool = False  # calls a model: rate limits, budgets, model lookup, loading
    refusals: tuple[int, ...] = ()  # other error statuses the route answers
    answers: tuple[tuple[int, s.Schema, str], ...] = ()  # other non-error answers


# Parameters the official SDK may send that a model ignores: accepted whatever their value.
# Every other name is refused (400), so the bodies are closed to other properties.
IGNORED_PARAMETERS: dict[type[BaseModel], frozenset[str]] = {
    chat_request.ChatCompletionRequest: chat_request.KNOWN_PARAMETERS,
    response_request.ResponseRequest: response_request.KNOWN_PARAMETERS,
    response_request.InputTokensRequest: response_request.KNOWN_COUNT_PARAMETERS,
    text_request.TextCompletionRequest: text_request.KNOWN_PARAMETERS,
    embedding_request.EmbeddingRequest: embedding_request.KNOWN_PARAMETERS,
}

_CHAT = Operation(ChatCompletion, stream=True, body=chat_request.ChatCompletionRequest, model=True)

_TEXT_OR_PARTS: s.Schema = {"type": ["string", "array"]}  # content that is not null
_ITEM_FIELDS = {
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
    "item_reference": ("id",),
}
_AN_EMAIL: s.Schema = {"pattern": "@"}  # what the server checks first; the rest is its 400

# What the handlers' validators (and the services behind them) check beyond the fields'
# types, where JSON Schema can say it: merged into each model's schema (`properties` field by
# field), so that the document is as strict as the server, never stricter, and generated
# requests get past the first refusal.
REFINEMENTS: dict[type[BaseModel], s.Schema] = {
    chat_request.ChatMessage: {
        "anyOf": [
            {
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "function"]},
                    "content": _TEXT_OR_PARTS,
                },
                "required": ["content"],
            },
            {
                "properties": {
                    "role": {"const": "tool"},
                    "content": _TEXT_OR_PARTS,
                    "tool_call_id": {"type": "string", "minLength": 1},
                },
                "required": ["content", "tool_call_id"],
            },
            {
                "properties": {"role": {"const": "assistant"}, "content": _TEXT_OR_PARTS},
                "required": ["content"],
            },
            {
                "properties": {
                    "role": {"const": "assistant"},
                    "tool_calls": {"type": "array", "minItems": 1},
                },
                "required": ["tool_calls"],
            },
        ]
    },
    InputItem: {
        "properties": {"type": {"enum": list(ITEM_TYPES)}},
        "anyOf": [
            {
                "properties": {
                    "type": {"const": "message"},
                    "role": {"type": "string"},
                    "content": _TEXT_OR_PARTS,
                },
                "required": ["role", "content"],
            },
            *(
                {
                    "properties": {"type": {"const": kind}}
                    | {name: {"not": {"type": "null"}} for name in fields},
                    "required": ["type", *fields],
                }
                for kind, fields in _ITEM_FIELDS.items()
            ),
        ],
    },
    # Without `input`, a response continues `previous_response_id`.
    response_request.ResponseRequest: {
        "anyOf": [{"required": ["input"]}, {"required": ["previous_response_id"]}]
    },
    response_request.InputTokensRequest: {
        "anyOf": [{"required": ["input"]}, {"required": ["previous_response_id"]}]
    },
    CreateBatchRequest: {
        "properties": {"completion_window": {"pattern": "^[1-9][0-9]{0,5}[smh]$"}}
    },
    # With `encoding_format: "base64"`, a vector is the base64 of its float32 values.
    Embedding: {"properties": {"embedding": {"type": ["array", "string"]}}},
    _NewUser: {"properties": {"email": _AN_EMAIL, "password": {"minLength": 8}}},
    _NewKey: {"properties": {"email": _AN_EMAIL}},
    _NewBudget: {
        "properties": {
            "amount_usd": {"exclusiveMinimum": 0},
            "period": {"enum": list(PERIODS)},
        },
        "anyOf": [{"required": ["user"]}, {"required": ["key"]}],
    },
}
# Path parameters with a rule of their own (else any string).
PATH_PARAMETERS: dict[str, s.Schema] = {"email": {"type": "string"} | _AN_EMAIL}


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation(s.HEALTH, auth="none"),
    ("GET", "/ready"): Operation(
        s.READY, auth="none", answers=((503, s.LOADING, "The models are still loading."),)
    ),
    ("GET", "/metrics"): Operation(
        s.STRING, auth="none", media="text/plain"
    ),  # Prometheus' text exposition
    ("GET", "/v1/models"): Operation(s.list_of(Model)),
    ("GET", "/v1/models/{model_id:path}"): Operation(Model),
    ("POST", "/v1/chat/completions"): _CHAT,
    ("GET", "/v1/chat/completions"): Operation(s.STORED_COMPLETION_PAGE, query=CompletionFilter),
    ("GET", "/v1/chat/completions/{completion_id}"): Operation(ChatCompletion),
    ("POST", "/v1/chat/completions/{completion_id}"): Operation(
        ChatCompletion, body=MetadataUpdate
    ),
    ("DELETE", "/v1/chat/completions/{completion_id}"): Operation(
        s.deleted("chat.completion.deleted")
    ),
    ("GET", "/v1/chat/completions/{completion_id}/messages"): Operation(
        s.STORED_MESSAGE_PAGE, query=Page
    ),
    ("POST", "/v1/completions"): Operation(
        Completion, stream=True, body=text_request.TextCompletionRequest, model=True
    ),
    ("POST", "/v1/embeddings"): Operation(
        CreateEmbeddingResponse, body=embedding_request.EmbeddingRequest, model=True
    ),
    ("POST", "/v1/moderations"): Operation(
        ModerationCreateResponse, body=ModerationRequest, model=True
    ),
    ("POST", "/v1/responses"): Operation(
        s.RESPONSE, stream=True, body=response_request.ResponseRequest, model=True
    ),
    ("POST", "/v1/responses/input_tokens"): Operation(
        s.INPUT_TOKENS, body=response_request.InputTokensRequest, refusals=(404, 503)
    ),
    ("GET", "/v1/responses/{response_id}"): Operation(
        s.RESPONSE, stream=True, query=StreamQuery, refusals=(400,)
    ),
    ("DELETE", "/v1/responses/{response_id}"): Operation(s.deleted("response")),
    ("POST", "/v1/responses/{response_id}/cancel"): Operation(s.RESPONSE, refusals=(400,)),
    ("GET", "/v1/responses/{response_id}/input_items"): Operation(
        s.ITEM_PAGE, query=ResponseItemPage
    ),
    # 404: an `item_reference` to no stored item.
    ("POST", "/v1/conversations"): Operation(Conversation, body=NewConversation, refusals=(404,)),
    ("GET", "/v1/conversations/{conversation_id}"): Operation(Conversation),
    ("POST", "/v1/conversations/{conversation_id}"): Operation(
        Conversation, body=ConversationUpdate
    ),
    ("DELETE", "/v1/conversations/{conversation_id}"): Operation(s.deleted("conversation.deleted")),
    ("POST", "/v1/conversations/{conversation_id}/items"): Operation(
        s.list_of(s.ITEM), body=NewItems
    ),
    ("GET", "/v1/conversations/{conversation_id}/items"): Operation(
        s.CONVERSATION_ITEM_PAGE, query=ConversationItemPage
    ),
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}"): Operation(s.ITEM),
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}"): Operation(Conversation),
    ("POST", "/v1/files"): Operation(FileObject, form=s.FILE_UPLOAD),
    ("GET", "/v1/files"): Operation(s.page_of(FileObject), query=FileListQuery),
    ("GET", "/v1/files/{file_id}"): Operation(FileObject),
    ("DELETE", "/v1/files/{file_id}"): Operation(s.deleted("file")),
    ("GET", "/v1/files/{file_id}/content"): Operation(s.STRING, media="application/octet-stream"),
    ("POST", "/v1/batches"): Operation(Batch, body=CreateBatchRequest),
    ("GET", "/v1/batches"): Operation(s.page_of(Batch), query=BatchPage),
    ("GET", "/v1/batches/{batch_id}"): Operation(Batch),
    ("POST", "/v1/batches/{batch_id}/cancel"): Operation(Batch, refusals=(400,)),
    ("GET", "/v1/usage"): Operation(s.USAGE, parameters=s.USAGE_QUERY, refusals=(400,)),
    # The e-mail manager's routes: its shapes, its error shape.
    ("POST", "/api/ai/chat/completions"): Operation(
        s.SEED_COMPLETION, stream=True, body=chat_request.ChatCompletionRequest, model=True
    ),
    ("GET", "/api/ai/chat/completions"): Operation(
        s.SEED_LIST, query=CompletionFilter, parameters=s.SEED_LIST_QUERY
    ),
    ("GET", "/api/ai/chat/completions/{completion_id}"): Operation(s.SEED_COMPLETION),
    ("POST", "/api/ai/chat/completions/{completion_id}"): Operation(
        s.SEED_COMPLETION, body=MetadataUpdate
    ),
    ("DELETE", "/api/ai/chat/completions/{completion_id}"): Operation(s.SEED_DELETED),
    ("GET", "/api/ai/chat/completions/{completion_id}/messages"): Operation(
        s.SEED_MESSAGES, query=Page
    ),
    ("POST", "/api/ai/documents/analyses"): Operation(
        s.ANALYSIS, body=TextAnalysis, form=s.DOCUMENT_UPLOAD, refusals=(404, 429)
    ),
    ("GET", "/api/ai/documents/analyses/{analysis_id}"): Operation(s.ANALYSIS),
    ("DELETE", "/api/ai/documents/analyses/{analysis_id}"): Operation(s.ANALYSIS),
    **{
        ("POST", f"/api/ai/email/{name}"): Operation(
            (RESULTS[feature], FailedAnswer), body=REQUEST_TYPES[feature], model=True
        )
        for feature, name in ROUTE_NAMES.items()
    },
    # The admin API: only in the admins' document.
    ("POST", "/v1/admin/users"): Operation(s.USER, status=201, auth="admin", body=_NewUser),
    ("GET", "/v1/admin/users"): Operation(s.list_of(s.USER), auth="admin"),
    # A path's {email} that is not an e-mail address is a 400.
    ("POST", "/v1/admin/users/{email}/disable"): Operation(s.USER, auth="admin", refusals=(400,)),
    ("PUT", "/v1/admin/users/{email}/zero_retention"): Operation(
        s.USER, auth="admin", body=_Switch
    ),
    ("PUT", "/v1/admin/users/{email}/rate_limits"): Operation(
        s.USER, auth="admin", body=LimitValues
    ),
    ("PUT", "/v1/admin/users/{email}/safety"): Operation(s.USER, auth="admin", body=SafetyValues),
    ("POST", "/v1/admin/keys"): Operation(s.NEW_API_KEY, status=201, auth="admin", body=_NewKey),
    ("GET", "/v1/admin/keys"): Operation(
        s.list_of(s.API_KEY), auth="admin", parameters=s.KEYS_QUERY
    ),
    ("DELETE", "/v1/admin/keys/{key_id}"): Operation(s.API_KEY, auth="admin"),
    ("POST", "/v1/admin/keys/{key_id}/rotate"): Operation(
        s.NEW_API_KEY, status=201, auth="admin", body=_Rotation, body_required=False
    ),
    ("PUT", "/v1/admin/keys/{key_id}/zero_retention"): Operation(
        s.API_KEY, auth="admin", body=_Switch
    ),
    ("PUT", "/v1/admin/keys/{key_id}/rate_limits"): Operation(
        s.API_KEY, auth="admin", body=LimitValues
    ),
    ("PUT", "/v1/admin/keys/{key_id}/safety"): Operation(
        s.API_KEY, auth="admin", body=SafetyValues
    ),
    ("GET", "/v1/admin/ratelimits"): Operation(s.list_of(s.RATE_LIMIT_STATS), auth="admin"),
    ("POST", "/v1/admin/budgets"): Operation(s.BUDGET, status=201, auth="admin", body=_NewBudget),
    ("GET", "/v1/admin/budgets"): Operation(s.list_of(s.BUDGET), auth="admin"),
    ("DELETE", "/v1/admin/budgets/{budget_id}"): Operation(
        s.deleted("budget.deleted"), auth="admin"
    ),
    ("GET", "/v1/admin/alerts"): Operation(s.list_of(s.ALERT), auth="admin", query=_AlertQuery),
    ("POST", "/v1/admin/privacy/export"): Operation(
        s.NDJSON, auth="admin", body=PrivacyRequest, media="application/x-ndjson"
    ),
    ("POST", "/v1/admin/privacy/erase"): Operation(s.ERASURE, auth="admin", body=PrivacyRequest),
    ("GET", "/v1/admin/privacy/erasures/{erasure_id}"): Operation(s.ERASURE, auth="admin"),
    ("GET", "/v1/admin/audit"): Operation(s.AUDIT_PAGE, auth="admin", query=_AuditFilter),
}
