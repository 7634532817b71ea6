"""The e-mail assistant's REST routes: `POST /api/ai/email/{reply,classify,extract-meeting,
quick-replies,summary,triage}`.

Each body is keyed by the facade's argument names (services.email_requests) and each answer is
the facade's dictionary, status 200 once the model was called, whether its answer was usable
(`success: true`) or not (`success: false` with the call's id and cost). Refusals before the
model (authentication, budget, body, rate limit, moderation) are the seed's error shape with
their status, as on the other `/api/ai` routes; Basic or Bearer auth as there.

Metered model routes, so served before FastAPI's router (hot_routes): each handler takes only
the request and reads its body itself, and the OpenAPI document gets the bodies from
`openapi_extra`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aiservice.api.deps import admit, app_services, authenticate, json_body
from aiservice.api.error_handlers import SEED_PREFIX
from aiservice.api.streaming import CLIENT_CLOSED_REQUEST, unless_client_leaves
from aiservice.services.email_assistant import FEATURES, EmailAssistant
from aiservice.services.email_requests import REQUEST_TYPES, ROUTE_NAMES

EMAIL_PREFIX = f"{SEED_PREFIX}/email"
# What the middleware meters and hot_routes serves: every feature's POST.
EMAIL_ROUTES = frozenset(("POST", f"{EMAIL_PREFIX}/{name}") for name in ROUTE_NAMES.values())

router = APIRouter(prefix=EMAIL_PREFIX, tags=["email"])


async def _answer(request: Request, feature: str) -> Response:
    # The checks of every model route, in their order (deps.model_request).
    principal = await authenticate(request)
    services = app_services(request)
    await services.budgets.check(principal)
    body = await json_body(request, REQUEST_TYPES[feature])
    await admit(request, principal, body.max_tokens or FEATURES[feature].max_tokens)
    assistant = EmailAssistant.of(services, request.app.state.settings)
    result = await unless_client_leaves(
        request, assistant.answer(feature, body, principal.owner, principal)
    )
    if result is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return JSONResponse(result)


# Only the request as parameter: hot_routes calls these very functions before FastAPI's router.
@router.post("/reply", summary="Reply to an e-mail")
async def generate_email_response(request: Request) -> Response:
    return await _answer(request, "auto_reply")


@router.post("/classify", summary="Classify an e-mail")
async def classify_email(request: Request) -> Response:
    return await _answer(request, "classification")


@router.post("/extract-meeting", summary="Extract a meeting from an e-mail")
async def extract_meeting_info(request: Request) -> Response:
    return await _answer(request, "extraction")


@router.post("/quick-replies", summary="Three short replies to an e-mail")
async def quick_reply_suggestions(request: Request) -> Response:
    return await _answer(request, "quick_replies")


@router.post("/summary", summary="Summarise an e-mail thread")
async def summarize_email_thread(request: Request) -> Response:
    return await _answer(request, "summary")


@router.post("/triage", summary="Triage an e-mail")
async def triage_email(request: Request) -> Response:
    return await _answer(request, "triage")
