"""Embedded mode: the services of `aiservice serve`, on a private event loop in a daemon thread.

The calls act as the master key does (owner "admin"); each is the same service call, with the
same typed request, as the server's route makes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiservice.errors import (
    AIServiceError,
    InternalError,
    InvalidRequest,
    ServiceUnavailable,
    as_service_error,
)

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk

    from aiservice.metering.meter import Meter
    from aiservice.services.chat_completions import PreparedChat
    from aiservice.services.email_requests import EmailOptions
    from aiservice.services.queries import CompletionFilter, MetadataUpdate, Page
    from aiservice.services.runtime import AppServices, ServiceRuntime

log = logging.getLogger(__name__)
T = TypeVar("T")
Result = dict[str, Any]
_END = object()  # sentinel: the embedded stream has nothing more to give


class EmbeddedService:
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
        async def create(services: AppServices) -> dict[str, Any]:
            service = services.chat_completions

            async def complete() -> dict[str, Any]:
                completion = await service.complete(await service.prepare(request, _owner()))
                return completion.model_dump(mode="json", exclude_unset=True)

            return await _metered(services, EMBEDDED_CHAT_ROUTE, complete)

        request = self._chat_request(params)
        return self._run(create)

    def email(self, feature: str, request: EmailOptions) -> Result:
        """One feature of the e-mail assistant, metered as its REST route would be."""
        from aiservice.services.email_assistant import EmailAssistant
        from aiservice.services.email_requests import ROUTE_NAMES

        settings = self._started()[1].settings

        async def answer(services: AppServices) -> Result:
            assistant = EmailAssistant.of(services, settings)
            route = f"{EMBEDDED_EMAIL_ROUTE}/{ROUTE_NAMES[feature]}"
            return await _metered(
                services, route, lambda: assistant.answer(feature, request, _owner())
            )

        return self._run(answer)

    def create_analysis(self, source: Any, model: str, options: dict[str, Any]) -> dict[str, Any]:
        """Start a document analysis (`source`: a path or a text) on this process's workers,
        which start with it."""
        from aiservice.governance.accounts import Principal

        runtime = self._started()[1]

        async def create(services: AppServices) -> dict[str, Any]:
            runtime.start_worker()
            document = await asyncio.to_thread(_document, source)
            principal = Principal(owner=_owner(), is_admin=True)
            return await services.analyses.create(document, model, principal, **options)

        return self._run(create)

    def get_analysis(self, analysis_id: str) -> dict[str, Any]:
        return self._run(lambda services: services.analyses.retrieve(_owner(), analysis_id))

    def cancel_analysis(self, analysis_id: str) -> dict[str, Any]:
        return self._run(lambda services: services.analyses.cancel(_owner(), analysis_id))

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

    def list(self, query: CompletionFilter) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.list(_owner(), query))

    def update(self, completion_id: str, body: MetadataUpdate) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.update(_owner(), completion_id, body))

    def delete(self, completion_id: str) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.delete(_owner(), completion_id))

    def messages(self, completion_id: str, page: Page) -> dict[str, Any]:
        return self._run(lambda s: s.stored_completions.messages(_owner(), completion_id, page))

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
        from aiservice.services.queries import parsed

        # Through JSON, as the server reads it: both modes accept exactly the same values.
        return parsed(ChatCompletionRequest, json.dumps(params))


def _document(source: Any) -> Any:
    """The document of a path, or of a text; a DocumentError as a 400."""
    from aiservice.documents import DocumentError, document_from_text, read_document

    try:
        return read_document(source) if isinstance(source, Path) else document_from_text(source)
    except DocumentError as exc:
        raise InvalidRequest(str(exc), param="document", code="unreadable_document") from None


def _owner() -> str:
    from aiservice.governance.accounts import MASTER

    return MASTER.owner


# The usage ledger's route for the facade's chat completions: what the server's route would
# be, marked as called in-process (no HTTP request, no key).
EMBEDDED_CHAT_ROUTE = "embedded:/v1/chat/completions"
EMBEDDED_EMAIL_ROUTE = "embedded:/api/ai/email"  # then the feature's path: .../reply


def _new_meter(route: str = EMBEDDED_CHAT_ROUTE) -> Meter:
    from aiservice.metering.meter import Meter

    meter = Meter(route, f"req_{uuid.uuid4().hex}")
    meter.owner = _owner()
    return meter


async def _metered(services: AppServices, route: str, work: Callable[[], Awaitable[T]]) -> T:
    """`work` under a new meter of `route`, whose record reaches the ledger however it ends."""
    from aiservice.metering.meter import metering

    meter = _new_meter(route)
    ended: BaseException | None = None
    try:
        with metering(meter):
            return await work()
    except BaseException as exc:
        ended = exc
        raise
    finally:
        _record(services, meter, ended)


def _record(services: AppServices, meter: Meter, ended: BaseException | None) -> None:
    """Hand the call's meter to the ledger: `ended` is what stopped it early, if anything."""
    if isinstance(ended, Exception):
        if meter.error is None:  # a refusal before the generation (which notes its own)
            meter.failed(ended)
    elif ended is not None:
        meter.interrupted = True  # cancelled: the stream was closed, or the call abandoned
    services.ledger.record(meter, 200)


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
_open_services: list[EmbeddedService] = []


def _register_shutdown(service: EmbeddedService) -> None:
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
