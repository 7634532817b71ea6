"""The `AIService` object: the seed's methods, their defaults and their result dictionaries.

Each method builds the typed request the server's routes build (services.queries), hands it to
the backend of its mode and turns the answer, or the error, into the seed's dictionary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiservice.client.embedded import EmbeddedService, Result
from aiservice.client.remote import RemoteService
from aiservice.errors import AIServiceError
from aiservice.services import seed_format


class AIService:
    """Chat completions and stored completions, as in the e-mail manager's guide (seed 000).

    `AIService()` runs aiservice in this process (embedded); `AIService(base_url=
    "http://host:5000", api_key="sk-...")` uses a running server. `config` names a TOML
    configuration file for embedded mode (default: `$AISERVICE_HOME/config.toml`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
    ):
        self._backend: EmbeddedService | RemoteService
        if base_url is None:
            if api_key is not None:
                raise ValueError("api_key is only used with base_url (remote mode)")
            self._backend = EmbeddedService(Path(config) if config is not None else None)
        else:
            if config is not None:
                raise ValueError("config is only used in embedded mode (no base_url)")
            self._backend = RemoteService(base_url, api_key, timeout, max_retries)

    @property
    def mode(self) -> str:
        """ "embedded" or "remote"."""
        return "embedded" if isinstance(self._backend, EmbeddedService) else "remote"

    def create_chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = "gpt-4o",
        temperature: float | None = 1.0,
        max_tokens: int | None = None,
        stream: bool = False,
        store: bool | None = False,
        metadata: dict[str, str] | None = None,
        top_p: float | None = 1.0,
        frequency_penalty: float | None = 0.0,
        presence_penalty: float | None = 0.0,
        stop: str | list[str] | None = None,
        n: int | None = 1,
        logprobs: bool | None = False,
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        seed: int | None = None,
        reasoning_effort: str | None = None,
        **other: Any,
    ) -> Result:
        """Create a chat completion. Parameters left None are not sent; `other` takes any
        further OpenAI parameter (`user`, `logit_bias`, `top_logprobs`, ...).

        Returns {'success': True, 'id', 'model', 'choices', 'usage', 'created'}; with
        `stream=True`, {'success': True, 'stream': <iterator of ChatCompletionChunk>}.
        """
        params: dict[str, Any] = {
            "messages": messages,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "store": store,
            "metadata": metadata or None,
            "top_p": top_p,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "stop": stop,
            "n": n,
            "logprobs": logprobs,
            "response_format": response_format,
            "tools": tools,
            "tool_choice": tool_choice,
            "seed": seed,
            "reasoning_effort": reasoning_effort,
            **other,
        }
        params = {name: value for name, value in params.items() if value is not None}
        if stream:
            return self._answer(lambda: self._backend.stream(params))
        return self._answer(lambda: seed_format.completion_result(self._backend.create(params)))

    def get_chat_completion(self, completion_id: str) -> Result:
        """A stored completion: the creation dict plus its 'metadata'."""
        return self._answer(
            lambda: seed_format.stored_result(self._backend.retrieve(completion_id))
        )

    def list_chat_completions(
        self,
        limit: int = 20,
        order: str = "asc",
        after: str | None = None,
        model_filter: str | None = None,
        metadata_filter: dict[str, str] | None = None,
    ) -> Result:
        """{'success', 'completions': [{id, model, created, usage, metadata}], 'has_more',
        'last_id'}; pass `after=result['last_id']` for the next page."""

        def list_page() -> Result:
            from aiservice.services.queries import CompletionFilter, parsed

            query = parsed(
                CompletionFilter,
                {
                    "limit": limit,
                    "order": order,
                    "after": after,
                    "model": model_filter,
                    "metadata": metadata_filter or {},
                },
            )
            return seed_format.list_result(self._backend.list(query))

        return self._answer(list_page)

    def update_chat_completion(self, completion_id: str, metadata: dict[str, str]) -> Result:
        """Replace a stored completion's metadata; returns it as get_chat_completion does."""

        def update() -> Result:
            from aiservice.services.queries import MetadataUpdate, parsed

            body = parsed(MetadataUpdate, {"metadata": metadata})
            return seed_format.stored_result(self._backend.update(completion_id, body))

        return self._answer(update)

    def delete_chat_completion(self, completion_id: str) -> Result:
        """{'success': True, 'id', 'deleted': True}."""
        return self._answer(lambda: seed_format.deleted_result(self._backend.delete(completion_id)))

    def get_chat_messages(
        self,
        completion_id: str,
        limit: int = 20,
        order: str = "asc",
        after: str | None = None,
    ) -> Result:
        """{'success', 'messages': [{id, role, content}], 'has_more', 'last_id'}."""

        def list_messages() -> Result:
            from aiservice.services.queries import Page, parsed

            page = parsed(Page, {"limit": limit, "order": order, "after": after})
            return seed_format.messages_result(self._backend.messages(completion_id, page))

        return self._answer(list_messages)

    # The e-mail assistant (seed 000, "Cas d'usage IAPosteManager"; docs/email.md). Each call is
    # one stored completion whose metadata.feature names the feature; every structured answer
    # is checked against its schema. Options: `model`, `temperature` and `max_tokens` (None:
    # the feature's default), `metadata` (the caller's pairs, stored with the feature's),
    # `language` ("auto": the e-mail's; else a language such as "fr" or "English").

    def generate_email_response(
        self,
        email_content: str,
        tone: str = "professional",
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """A reply to the e-mail: {'success': True, 'reply', 'truncated', 'id', 'model',
        'usage', 'cost'}; `truncated` when max_tokens cut it."""
        return self._email(
            "auto_reply",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            email_content=email_content,
            tone=tone,
        )

    def classify_email(
        self,
        subject: str,
        content: str,
        labels: list[str] | None = None,
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """{'success': True, 'category', 'reason', ...}: `category` is one of `labels`
        (default urgent, important, spam, marketing)."""
        return self._email(
            "classification",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            subject=subject,
            content=content,
            labels=labels,
        )

    def extract_meeting_info(
        self,
        email: str,
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """{'success': True, 'meeting': {'date': 'YYYY-MM-DD' | None, 'time': 'HH:MM' | None,
        'location', 'participants': [...], 'subject'}, ...}."""
        return self._email(
            "extraction",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            email=email,
        )

    def quick_reply_suggestions(
        self,
        email: str,
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """{'success': True, 'suggestions': [three replies of at most 50 words], ...}."""
        return self._email(
            "quick_replies",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            email=email,
        )

    def summarize_email_thread(
        self,
        thread: str | list[Any],
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """`thread`: one text, or its messages oldest first (texts, or dicts with 'body' and
        optionally 'from', 'date', 'subject'). {'success': True, 'summary', 'decisions',
        'open_questions', 'action_items': [{'task', 'owner'}], ...}."""
        return self._email(
            "summary",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            thread=thread,
        )

    def triage_email(
        self,
        email: str,
        *,
        model: str = "gpt-4o-mini",
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        language: str = "auto",
    ) -> Result:
        """{'success': True, 'needs_reply', 'is_newsletter', 'is_cold_outreach', 'priority'
        (1: can wait, 5: at once), ...}."""
        return self._email(
            "triage",
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            metadata=metadata,
            language=language,
            email=email,
        )

    def _email(self, feature: str, **arguments: Any) -> Result:
        """Run `feature`: its arguments, checked as its route checks its body, then the
        backend's call."""

        def answer() -> Result:
            from aiservice.services.email_requests import REQUEST_TYPES
            from aiservice.services.queries import parsed

            # None is "not given". Through JSON, as a route reads its body: both modes accept
            # exactly the same values.
            values = {name: value for name, value in arguments.items() if value is not None}
            request = parsed(REQUEST_TYPES[feature], json.dumps(values))
            return self._backend.email(feature, request)

        return self._answer(answer)

    def analyze_document(
        self,
        document: str | os.PathLike[str],
        model: str = "gpt-4o-mini",
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        chunk_tokens: int | None = None,
        metadata: dict[str, str] | None = None,
        poll_s: float = 1.0,
    ) -> Result:
        """Analyse a document (a path, or its text) and wait for its report.

        The analysis runs as background jobs (on the server, or on workers this process
        starts); `on_progress` gets the progress (`done`, `total`, `tokens`, `cost`) each time
        it changes. Returns `{"success": True, "id", "model", "report", "usage", "cost"}`, or
        `{"success": False, "error", …}`. A `str` naming an existing file is read as one.
        """
        source: Any = document
        if isinstance(document, os.PathLike) or _names_a_file(document):
            source = Path(document)
        options = {"chunk_tokens": chunk_tokens, "metadata": metadata}

        def analyse() -> Result:
            created = self._backend.create_analysis(source, model, options)
            analysis = _followed(self._backend, created, on_progress, poll_s)
            return _analysis_result(analysis)

        return self._answer(analyse)

    def close(self) -> None:
        """Release the models, the database and the loop (embedded) or the HTTP client
        (remote). The object stays usable: the next call starts again."""
        self._backend.close()

    def __enter__(self) -> AIService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AIService {self.mode}{self._backend.describe()}>"

    @staticmethod
    def _answer(work: Callable[[], Result]) -> Result:
        try:
            return work()
        except AIServiceError as error:
            return seed_format.error_result(error)


# --- embedded mode -------------------------------------------------------------------------


# --- document analysis ------------------------------------------------------------------------

_ANALYSIS_ENDS = ("completed", "failed", "cancelled")


def _names_a_file(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text and Path(text).expanduser().is_file()


def _followed(
    backend: EmbeddedService | RemoteService,
    analysis: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None,
    poll_s: float,
) -> dict[str, Any]:
    """Poll the analysis until it ends, telling `on_progress` of each change."""
    import time

    seen = None
    while True:
        progress = analysis["progress"]
        if on_progress is not None and progress != seen:
            on_progress(dict(progress))
            seen = progress
        if analysis["status"] in _ANALYSIS_ENDS:
            return analysis
        time.sleep(poll_s)
        analysis = backend.get_analysis(analysis["id"])


def _analysis_result(analysis: dict[str, Any]) -> Result:
    common = {
        "id": analysis["id"],
        "model": analysis["model"],
        "status": analysis["status"],
        "usage": analysis["usage"],
        "cost": analysis["cost"],
    }
    if analysis["status"] != "completed":
        error = analysis.get("error") or f"The analysis was {analysis['status']}."
        return {"success": False, "error": error, **common}
    return {"success": True, "report": analysis["report"], **common}
