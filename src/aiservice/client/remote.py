"""Remote mode: a running aiservice server, through the official `openai` SDK."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from aiservice.errors import AIServiceError, ServiceUnavailable

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionChunk

    from aiservice.services.email_requests import EmailOptions
    from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page

T = TypeVar("T")
Result = dict[str, Any]
_ANALYSES = "/api/ai/documents/analyses"


class RemoteService:
    """A running server, through the official SDK."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, max_retries: int):
        url = base_url.rstrip("/")
        self.base_url = url.removesuffix("/v1")
        self._api_key = api_key or os.environ.get("AISERVICE_API_KEY")
        if not self._api_key:
            raise ValueError("remote mode needs api_key= (or AISERVICE_API_KEY)")
        self._timeout = timeout
        self._max_retries = max_retries
        self._client: OpenAI | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f" {self.base_url}"

    @property
    def sdk(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                self._client = OpenAI(
                    base_url=self.base_url + "/v1",
                    api_key=self._api_key,
                    timeout=self._timeout,
                    max_retries=self._max_retries,
                )
            return self._client

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        completion = self._call(lambda: self.sdk.chat.completions.create(**_sdk_params(params)))
        return completion.model_dump(mode="json", exclude_unset=True)

    def stream(self, params: dict[str, Any]) -> Result:
        # The request is sent (and refused, if it is) here; chunks are read as iterated.
        stream = self._call(
            lambda: self.sdk.chat.completions.create(**_sdk_params(params), stream=True)
        )
        return {"success": True, "stream": self._chunks(stream)}

    def _chunks(self, stream: Any) -> Iterator[ChatCompletionChunk]:
        import openai

        try:
            for chunk in stream:
                if chunk.choices:
                    yield chunk
        except openai.APIError as exc:
            raise self._error(exc) from None
        finally:
            stream.close()  # closing the connection stops the server's generation

    def retrieve(self, completion_id: str) -> dict[str, Any]:
        completion = self._call(lambda: self.sdk.chat.completions.retrieve(completion_id))
        return completion.model_dump(mode="json", exclude_unset=True)

    def list(self, query: CompletionFilter) -> dict[str, Any]:
        params = _present(**query.model_dump())
        return _page(self._call(lambda: self.sdk.chat.completions.list(**params)))

    def update(self, completion_id: str, body: MetadataUpdate) -> dict[str, Any]:
        completion = self._call(
            lambda: self.sdk.chat.completions.update(completion_id, metadata=body.metadata)
        )
        return completion.model_dump(mode="json", exclude_unset=True)

    def delete(self, completion_id: str) -> dict[str, Any]:
        return self._call(lambda: self.sdk.chat.completions.delete(completion_id)).model_dump(
            mode="json"
        )

    def messages(self, completion_id: str, page: Page) -> dict[str, Any]:
        params = _present(**page.model_dump())
        return _page(
            self._call(lambda: self.sdk.chat.completions.messages.list(completion_id, **params))
        )

    def email(self, feature: str, request: EmailOptions) -> Result:
        """One feature of the e-mail assistant: its route under /api/ai/email, whose body is
        already the facade's dictionary."""
        from aiservice.services.email_requests import ROUTE_NAMES

        url = f"{self.base_url}/api/ai/email/{ROUTE_NAMES[feature]}"
        body = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self._call(lambda: self.sdk.post(url, cast_to=object, body=body))  # type: ignore[return-value]

    def create_analysis(self, source: Any, model: str, options: dict[str, Any]) -> dict[str, Any]:
        """Start a document analysis on the server: the document is read here (the same
        readers) and sent as text."""
        from aiservice.client.embedded import _document

        document = _document(source)
        body = {"text": document.text, "name": document.name, "model": model, **options}
        body = {key: value for key, value in body.items() if value is not None}
        url = f"{self.base_url}{_ANALYSES}"
        return self._call(lambda: self.sdk.post(url, cast_to=object, body=body))  # type: ignore[return-value]

    def get_analysis(self, analysis_id: str) -> dict[str, Any]:
        url = f"{self.base_url}{_ANALYSES}/{analysis_id}"
        return self._call(lambda: self.sdk.get(url, cast_to=object))  # type: ignore[return-value]

    def cancel_analysis(self, analysis_id: str) -> dict[str, Any]:
        url = f"{self.base_url}{_ANALYSES}/{analysis_id}"
        return self._call(lambda: self.sdk.delete(url, cast_to=object))  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, work: Callable[[], T]) -> T:
        import openai

        try:
            return work()
        except openai.APIError as exc:
            raise self._error(exc) from None

    def _error(self, exc: Any) -> AIServiceError:
        import openai

        if isinstance(exc, openai.APIConnectionError):  # timeouts included
            return ServiceUnavailable(f"Could not reach aiservice at {self.base_url}: {exc}")
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]  # an error event in a stream carries the whole envelope
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            error = AIServiceError(body["message"], param=body.get("param"), code=body.get("code"))
        elif (seed_message := _seed_error(exc)) is not None:
            error = AIServiceError(seed_message)
        else:
            error = AIServiceError(exc.message)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            error.status_code = status
        return error


def _seed_error(exc: Any) -> str | None:
    """The message of an /api/ai route's `{"success": false, "error": "…"}` (the SDK keeps
    only the "error" of a body, which is then a bare string)."""
    try:
        body = exc.response.json()
    except (AttributeError, ValueError):
        return None
    if isinstance(body, dict) and body.get("success") is False:
        message = body.get("error")
        return message if isinstance(message, str) else None
    return None


def _sdk_params(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create`: what the SDK names goes as is, the
    rest in `extra_body` (the server then accepts or refuses it, as it would any client's)."""
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    known = (
        CompletionCreateParamsBase.__required_keys__ | CompletionCreateParamsBase.__optional_keys__
    )
    kwargs = {name: value for name, value in params.items() if name in known}
    extra = {name: value for name, value in params.items() if name not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _present(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None and value != {}}


def _page(page: Any) -> dict[str, Any]:
    data = [item.model_dump(mode="json", exclude_unset=True) for item in page.data]
    return {
        "data": data,
        "has_more": bool(page.has_more),
        "last_id": data[-1]["id"] if data else "",
    }
