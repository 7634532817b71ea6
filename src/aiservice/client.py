"""`AIService`: the e-mail manager's Python object (seed 000), in-process or against a server.

Embedded mode (no `base_url`) runs aiservice inside the calling process, with the same home,
configuration and database as `aiservice serve`: on first use it loads the settings, applies
the migrations and loads the models, all on a private event loop in a daemon thread. Its calls
act as the server's master key does (owner "admin"), so the server's master key sees what the
embedded service stores, and the other way round.

Remote mode (`base_url`, `api_key`) talks to a running server through the official `openai` SDK.

Both modes return the same dictionaries (built by `aiservice.services.seed_format`) and never
raise for an API error: they return `{'success': False, 'error': '<message>'}` instead.
Importing this module is cheap: the server's machinery is imported on first use only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiservice.errors import AIServiceError, InternalError, ServiceUnavailable, as_service_error
from aiservice.services import seed_format

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionChunk

    from aiservice.metering.meter import Meter
    from aiservice.services.chat_completions import PreparedChat
    from aiservice.services.runtime import AppServices, ServiceRuntime

log = logging.getLogger(__name__)
T = TypeVar("T")
Result = dict[str, Any]
_END = object()  # sentinel: the embedded stream has nothing more to give


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
        self._backend: _Embedded | _Remote
        if base_url is None:
            if api_key is not None:
                raise ValueError("api_key is only used with base_url (remote mode)")
            self._backend = _Embedded(Path(config) if config is not None else None)
        else:
            if config is not None:
                raise ValueError("config is only used in embedded mode (no base_url)")
            self._backend = _Remote(base_url, api_key, timeout, max_retries)

    @property
    def mode(self) -> str:
        """ "embedded" or "remote"."""
        return "embedded" if isinstance(self._backend, _Embedded) else "remote"

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
        return self._answer(
            lambda: seed_format.list_result(
                self._backend.list(limit, order, after, model_filter, metadata_filter or {})
            )
        )

    def update_chat_completion(self, completion_id: str, metadata: dict[str, str]) -> Result:
        """Replace a stored completion's metadata; returns it as get_chat_completion does."""
        return self._answer(
            lambda: seed_format.stored_result(self._backend.update(completion_id, metadata))
        )

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
        return self._answer(
            lambda: seed_format.messages_result(
                self._backend.messages(completion_id, limit, order, after)
            )
        )

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


class _Embedded:
    """The services of `aiservice serve`, run on a private event loop in a daemon thread."""

    def __init__(self, config: Path | None):
        self._config = config
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runtime: ServiceRuntime | None = None

    def describe(self) -> str:
        return "" if self._runtime is None else f" home={self._runtime.settings.home}"

    # The calls. Each runs on the private loop; errors become AIServiceError.

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        from aiservice.metering.meter import metering

        async def create(services: AppServices) -> dict[str, Any]:
            service = services.chat_completions
            meter = _new_meter()
            ended: BaseException | None = None
            try:
                with metering(meter):
                    completion = await service.complete(await service.prepare(request, _owner()))
                return completion.model_dump(mode="json", exclude_unset=True)
            except BaseException as exc:
                ended = exc
                raise
            finally:
                _record(services, meter, ended)

        request = self._chat_request(params)
        return self._run(create)

    def stream(self, params: dict[str, Any]) -> Result:
        from aiservice.metering.meter import metering

        async def prepare(services: AppServices) -> PreparedChat:
            try:
                with metering(meter):
                    return await services.chat_completions.prepare(request, _owner())
            except BaseException as exc:
                _record(services, meter, exc)
                raise

        meter = _new_meter()
        request = self._chat_request({**params, "stream": True})
        chat = self._run(prepare)  # every refusal is raised here, before any chunk
        return {"success": True, "stream": self._chunks(chat, meter)}

    def retrieve(self, completion_id: str) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.retrieve(_owner(), completion_id))

    def list(
        self,
        limit: int,
        order: str,
        after: str | None,
        model: str | None,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        from aiservice.services.stored_completions import CompletionFilter

        query = _validated(
            CompletionFilter,
            {"limit": limit, "order": order, "after": after, "model": model, "metadata": metadata},
        )
        return self._run(
            lambda s: s.stored_completions.list(
                _owner(),
                limit=query.limit,
                order=query.order,
                after=query.after,
                model=query.model,
                metadata=query.metadata,
            )
        )

    def update(self, completion_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        from aiservice.services.stored_completions import MetadataUpdate

        body = _validated(MetadataUpdate, {"metadata": metadata})
        return self._run(
            lambda s: s.stored_completions.update(_owner(), completion_id, body.metadata or {})
        )

    def delete(self, completion_id: str) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.delete(_owner(), completion_id))

    def messages(
        self, completion_id: str, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        from aiservice.services.stored_completions import Page

        page = _validated(Page, {"limit": limit, "order": order, "after": after})
        return self._run(
            lambda s: s.stored_completions.messages(
                _owner(), completion_id, limit=page.limit, order=page.order, after=page.after
            )
        )

    # Streaming: a task on the loop feeds a thread-safe queue; the caller's iterator reads it.

    def _chunks(self, chat: PreparedChat, meter: Meter) -> Iterator[ChatCompletionChunk]:
        """Nothing runs until the first `next()`; closing the iterator (or dropping it) cancels
        the generation, as a client leaving a server's stream does. The usage record is
        written when the generation ends: a stream never read generated nothing, and has none."""
        loop, runtime = self._started()
        chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def produce() -> None:
            ended: BaseException | None = None
            try:
                async for chunk in runtime.services.chat_completions.stream(chat):
                    if chunk.choices:  # every chunk given out has a choice (seed 000's loop)
                        chunks.put(chunk)
            except Exception as exc:
                ended = exc
                chunks.put(_embedded_error(exc))
            except BaseException as exc:
                ended = exc
                raise
            finally:
                _record(runtime.services, meter, ended)
                chunks.put(_END)

        future = asyncio.run_coroutine_threadsafe(produce(), loop)
        try:
            while (item := chunks.get()) is not _END:
                if isinstance(item, AIServiceError):
                    raise item  # the stream had begun: no result dict can carry this any more
                yield item
        finally:
            future.cancel()

    # The loop and the services.

    def _run(self, work: Callable[[AppServices], Coroutine[Any, Any, T]]) -> T:
        loop, runtime = self._started()
        future = asyncio.run_coroutine_threadsafe(work(runtime.services), loop)
        try:
            return future.result()
        except (KeyboardInterrupt, SystemExit):
            future.cancel()  # e.g. Ctrl-C while a completion is generated: stop generating
            raise
        except Exception as exc:
            raise _embedded_error(exc) from None

    def _started(self) -> tuple[asyncio.AbstractEventLoop, ServiceRuntime]:
        with self._lock:
            if self._runtime is None or self._loop is None:
                self._start()
            assert self._loop is not None and self._runtime is not None
            return self._loop, self._runtime

    def _start(self) -> None:
        """Settings, migrations and models, on first use (the caller holds the lock)."""
        from aiservice.services.runtime import ServiceRuntime
        from aiservice.settings import ConfigError, load_settings

        try:
            settings = load_settings(self._config)
        except ConfigError as exc:
            raise AIServiceError(f"aiservice configuration error: {exc}") from None

        async def start() -> ServiceRuntime:
            runtime = ServiceRuntime(settings)
            try:
                await runtime.start(master_key=False, wait_for_models=True)
            except BaseException:
                await runtime.close()
                raise
            return runtime

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="aiservice-embedded", daemon=True)
        thread.start()
        try:
            runtime = asyncio.run_coroutine_threadsafe(start(), loop).result()
        except Exception as exc:
            _stop_loop(loop, thread)
            log.error("embedded aiservice failed to start", exc_info=True)
            raise ServiceUnavailable(
                f"aiservice could not start in this process: {type(exc).__name__}: {exc}"
            ) from None
        except BaseException:
            _stop_loop(loop, thread)
            raise
        self._loop, self._thread, self._runtime = loop, thread, runtime
        _register_shutdown(self)

    def close(self) -> None:
        with self._lock:
            loop, thread, runtime = self._loop, self._thread, self._runtime
            self._loop = self._thread = self._runtime = None
        with _shutdown_lock:
            if self in _open_services:
                _open_services.remove(self)
        if loop is None or thread is None or runtime is None:
            return

        async def shut_down() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # open streams, calls from other threads
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await runtime.close()

        try:
            asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=60)
        finally:
            _stop_loop(loop, thread)

    @staticmethod
    def _chat_request(params: dict[str, Any]) -> Any:
        from aiservice.services.chat_request import ChatCompletionRequest

        # Through JSON, as the server reads it: both modes accept exactly the same values.
        return _validated(ChatCompletionRequest, json.dumps(params))


def _owner() -> str:
    from aiservice.governance.accounts import MASTER

    return MASTER.owner


# The usage ledger's route for the facade's chat completions: what the server's route would
# be, marked as called in-process (no HTTP request, no key).
EMBEDDED_CHAT_ROUTE = "embedded:/v1/chat/completions"


def _new_meter() -> Meter:
    from aiservice.metering.meter import Meter

    meter = Meter(EMBEDDED_CHAT_ROUTE, f"req_{uuid.uuid4().hex}")
    meter.owner = _owner()
    return meter


def _record(services: AppServices, meter: Meter, ended: BaseException | None) -> None:
    """Hand the call's meter to the ledger: `ended` is what stopped it early, if anything."""
    if isinstance(ended, Exception):
        if meter.error is None:  # a refusal before the generation (which notes its own)
            meter.failed(ended)
    elif ended is not None:
        meter.interrupted = True  # cancelled: the stream was closed, or the call abandoned
    services.ledger.record(meter, 200)


def _validated(shape: Any, values: Any) -> Any:
    from pydantic import ValidationError

    from aiservice.api.error_handlers import validation_error

    try:
        if isinstance(values, str):
            return shape.model_validate_json(values)
        return shape.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def _embedded_error(exc: Exception) -> AIServiceError:
    error = as_service_error(exc)
    if isinstance(error, InternalError):
        log.error("embedded aiservice call failed", exc_info=exc)
    return error


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    if not thread.is_alive():
        loop.close()


_shutdown_lock = threading.Lock()
_open_services: list[_Embedded] = []


def _register_shutdown(service: _Embedded) -> None:
    """Close started embedded services when the interpreter exits.

    Registered with threading's exit hooks, which run before the thread pools (the model's
    worker among them) are shut down: plain `atexit` would run too late to unload the model.
    """
    with _shutdown_lock:
        if not _open_services:
            threading._register_atexit(_close_open_services)  # type: ignore[attr-defined]
        if service not in _open_services:
            _open_services.append(service)


def _close_open_services() -> None:
    with _shutdown_lock:
        services = list(_open_services)
    for service in services:
        try:
            service.close()
        except Exception:
            log.warning("embedded aiservice did not close cleanly", exc_info=True)


# --- remote mode ---------------------------------------------------------------------------


class _Remote:
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

    def list(
        self,
        limit: int,
        order: str,
        after: str | None,
        model: str | None,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        query = _present(limit=limit, order=order, after=after, model=model, metadata=metadata)
        return _page(self._call(lambda: self.sdk.chat.completions.list(**query)))

    def update(self, completion_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        completion = self._call(
            lambda: self.sdk.chat.completions.update(completion_id, metadata=metadata)
        )
        return completion.model_dump(mode="json", exclude_unset=True)

    def delete(self, completion_id: str) -> dict[str, Any]:
        return self._call(lambda: self.sdk.chat.completions.delete(completion_id)).model_dump(
            mode="json"
        )

    def messages(
        self, completion_id: str, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        query = _present(limit=limit, order=order, after=after)
        return _page(
            self._call(lambda: self.sdk.chat.completions.messages.list(completion_id, **query))
        )

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
        else:
            error = AIServiceError(exc.message)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            error.status_code = status
        return error


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
