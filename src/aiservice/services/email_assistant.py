"""The e-mail assistant (seed 000, "Cas d'usage IAPosteManager"): replies, classification,
meeting extraction, quick replies, thread summaries and triage, each one stored chat
completion.

Each call goes through services.chat_completions as any client's does, so the operator's
moderation and PII policy, the budgets and the usage ledger apply; it is stored (store=True)
with `metadata.feature` naming the feature, so the cost per feature shows in `/v1/usage?
group_by=metadata.feature` and in the stored completions' list. Structured answers are held to
a JSON schema (services.email_schemas) and checked against it: a model that still fails gives
`{"success": False, "error": …}` with the call's id, model, usage and cost, never a half-read
answer. Nothing here raises for a model's answer; a refused request raises AIServiceError as
chat completions do, and the doors turn it into their error shape.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiservice.errors import AIServiceError
from aiservice.services import email_prompts
from aiservice.services.chat_request import ChatCompletionRequest
from aiservice.services.email_requests import (
    REQUEST_TYPES,
    ClassifyRequest,
    EmailOptions,
    EmailRequest,
    ReplyRequest,
    SummaryRequest,
)
from aiservice.services.email_schemas import AnswerRejected, answer_schema, parse_answer
from aiservice.services.queries import parsed

if TYPE_CHECKING:
    from aiservice.governance.accounts import Principal
    from aiservice.metering.pricing import PriceList
    from aiservice.services.chat_completions import ChatCompletionService
    from aiservice.services.email_prompts import PromptTemplate
    from aiservice.services.runtime import AppServices
    from aiservice.settings import Settings

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Feature:
    """A feature's defaults. `max_tokens` holds the longest answer its schema allows (see
    email_schemas); the penalties keep a small model from looping inside a free string."""

    name: str  # metadata.feature, and the template's file name
    max_tokens: int
    temperature: float
    structured: bool = True
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


# A frequency penalty of 0.5 ends the loops the bundled model falls into inside a free string
# ("1.2.3.4.5…", the same participant six times); triage has no free string.
FEATURES: dict[str, Feature] = {
    feature.name: feature
    for feature in (
        Feature("auto_reply", 300, 0.7, structured=False, frequency_penalty=0.3),  # seed: 300, 0.7
        Feature("classification", 200, 0.2, frequency_penalty=0.5),
        Feature("extraction", 400, 0.1, frequency_penalty=0.5),
        Feature("quick_replies", 400, 0.9, frequency_penalty=0.5),
        Feature("summary", 800, 0.3, frequency_penalty=0.5),
        Feature("triage", 100, 0.1),
    )
}


class EmailAssistant:
    """The six features, on the chat completion service."""

    def __init__(
        self,
        chat: ChatCompletionService,
        prices: PriceList,
        templates_dir: Path | None = None,
    ):
        self._chat = chat
        self._prices = prices
        self._templates_dir = templates_dir

    @classmethod
    def of(cls, services: AppServices, settings: Settings) -> EmailAssistant:
        directory = settings.email.templates_dir
        if directory is not None and not directory.is_absolute():
            directory = settings.home / directory
        return cls(services.chat_completions, services.ledger.prices, directory)

    async def answer(
        self,
        feature_name: str,
        request: EmailOptions,
        owner: str,
        principal: Principal | None = None,
    ) -> Result:
        """Run `feature_name` on `request` (its REQUEST_TYPES type) for `owner`."""
        feature = FEATURES[feature_name]
        if not isinstance(request, REQUEST_TYPES[feature_name]):
            raise TypeError(f"{feature_name} takes a {REQUEST_TYPES[feature_name].__name__}")
        labels = request.label_set if isinstance(request, ClassifyRequest) else ()
        chat_request = self._chat_request(feature, request, labels)
        chat = await self._chat.prepare(chat_request, owner, principal)
        completion = await self._chat.complete(chat)
        return self._result(
            feature, completion.model_dump(mode="json", exclude_unset=True), labels, chat_request
        )

    def _chat_request(
        self, feature: Feature, request: EmailOptions, labels: tuple[str, ...]
    ) -> ChatCompletionRequest:
        email_text, values = _prompt_inputs(request)
        messages = email_prompts.render(
            self._template(feature.name),
            email_text,
            language=request.language,
            structured=feature.structured,
            **values,
        )
        temperature = feature.temperature if request.temperature is None else request.temperature
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": request.max_tokens or feature.max_tokens,
            "store": True,
            # The feature's name wins over a caller's `feature`: the cost per feature must add up.
            "metadata": {**(request.metadata or {}), "feature": feature.name},
        }
        if feature.frequency_penalty:
            body["frequency_penalty"] = feature.frequency_penalty
        if feature.presence_penalty:
            body["presence_penalty"] = feature.presence_penalty
        if feature.structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": feature.name,
                    "strict": True,
                    "schema": answer_schema(feature.name, labels),
                },
            }
        return parsed(ChatCompletionRequest, body)

    def _template(self, feature: str) -> PromptTemplate:
        if self._templates_dir is not None:
            path = self._templates_dir / f"{feature}.txt"
            if path.is_file():
                return _operator_template(path, path.stat().st_mtime_ns)
        return email_prompts.bundled_template(feature)

    def _result(
        self,
        feature: Feature,
        completion: dict[str, Any],
        labels: tuple[str, ...],
        request: ChatCompletionRequest,
    ) -> Result:
        usage = completion.get("usage") or {}
        call = {
            "id": completion["id"],
            "model": completion["model"],
            "usage": usage,
            "cost": self._prices.cost(
                completion["model"],
                usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0),
            ),
        }
        choice = completion["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        finish = choice.get("finish_reason")
        if message.get("refusal"):
            return _failed(f"The model refused to answer: {message['refusal']}", call)
        if finish == "content_filter":
            return _failed("The answer was withheld by the moderation policy.", call)
        if not feature.structured:
            if not text.strip():
                return _failed("The model gave an empty answer.", call)
            return {"success": True, "reply": text.strip(), "truncated": finish == "length", **call}
        try:
            answer = parse_answer(feature.name, text, labels)
        except AnswerRejected as rejected:
            if finish == "length":
                cap = request.max_tokens
                return _failed(
                    f"The answer was cut at max_tokens ({cap}) before it was complete.", call
                )
            return _failed(str(rejected), call)
        fields = answer.model_dump(mode="json")
        if feature.name == "extraction":
            fields = {"meeting": fields}
        return {"success": True, **fields, **call}


def _prompt_inputs(request: EmailOptions) -> tuple[str, dict[str, str]]:
    """The text to fence and the template's own placeholders."""
    if isinstance(request, ReplyRequest):
        return request.email_content, {"tone": email_prompts.tone_words(request.tone)}
    if isinstance(request, ClassifyRequest):
        text = email_prompts.classified_text(request.subject, request.content)
        return text, {"labels": email_prompts.labels_text(request.label_set)}
    if isinstance(request, SummaryRequest):
        return email_prompts.thread_text(request.thread), {}
    assert isinstance(request, EmailRequest)
    return request.email, {}


def _failed(error: str, call: dict[str, Any]) -> Result:
    return {"success": False, "error": error, **call}


@functools.lru_cache(maxsize=32)
def _operator_template(path: Path, modified_ns: int) -> PromptTemplate:
    # Keyed by the file's modification time: an edited template is read again, without a
    # restart; a broken one is the operator's configuration error, for every call to see.
    try:
        return email_prompts.template_from_file(path)
    except (OSError, UnicodeDecodeError, email_prompts.TemplateError) as exc:
        raise AIServiceError(
            f"aiservice configuration error: [email] templates_dir: {exc}"
        ) from None
