"""The services behind the HTTP API and the embedded Python facade, and their start and stop.

`create_app` runs a ServiceRuntime in its lifespan; `aiservice.AIService` runs one on a private
event loop. Both build the same objects from the same settings, so they share one home, one
configuration and one database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aiservice.governance.accounts import Accounts
from aiservice.governance.admission import RequestAdmission
from aiservice.governance.audit import AuditLog
from aiservice.governance.budgets import Budgets, build_budgets
from aiservice.governance.dashboard_sessions import DashboardSessions
from aiservice.governance.login_throttle import LoginThrottle
from aiservice.governance.master_key import MasterKey, bootstrap_master_key
from aiservice.governance.rate_limits import RateLimiter
from aiservice.metering.ledger import UsageLedger
from aiservice.metering.pricing import PriceList
from aiservice.observability.metrics import ServiceMetrics
from aiservice.observability.tracing import RequestTracing, tracing_from_environment
from aiservice.providers.registry import ModelRegistry
from aiservice.services.analysis_driver import AnalysisDriver
from aiservice.services.background import BackgroundWorker, WorkerSettings
from aiservice.services.batch_endpoints import BatchEndpoints
from aiservice.services.batch_finish import BatchFinisher
from aiservice.services.batch_line_run import LineRunner
from aiservice.services.batch_upstream import UpstreamBatchFollower, upstream_batch_models
from aiservice.services.batch_worker import BatchWorker
from aiservice.services.batches import BatchService
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.content_guard import ContentGuard
from aiservice.services.conversations import ConversationService
from aiservice.services.document_analysis import AnalysisService
from aiservice.services.embeddings import EmbeddingService
from aiservice.services.files import FileService
from aiservice.services.moderations import ModerationService
from aiservice.services.privacy_erase import PrivacyErasures, build_erasures
from aiservice.services.responses import ResponseService
from aiservice.services.retention import RetentionPurge, retention_days
from aiservice.services.stored_completions import StoredCompletions
from aiservice.services.text_completions import TextCompletionService
from aiservice.settings import Settings
from aiservice.store.accounts import AccountStore
from aiservice.store.analyses import AnalysisStore
from aiservice.store.audit import AuditStore
from aiservice.store.batches import BatchStore
from aiservice.store.completions import CompletionStore
from aiservice.store.conversations import ConversationStore
from aiservice.store.dashboard_sessions import DashboardSessionStore
from aiservice.store.database import Database, database_url
from aiservice.store.files import FileStore
from aiservice.store.migrate import upgrade_database
from aiservice.store.responses import ResponseStore
from aiservice.store.usage import UsageStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AppServices:
    """Every service, built once per process: the routers find it on app.state, the embedded
    facade holds it directly."""

    registry: ModelRegistry
    database: Database
    chat_completions: ChatCompletionService
    text_completions: TextCompletionService
    stored_completions: StoredCompletions
    responses: ResponseService
    conversations: ConversationService
    response_store: ResponseStore
    accounts: Accounts
    login_throttle: LoginThrottle
    ledger: UsageLedger
    usage: UsageStore
    metrics: ServiceMetrics
    admission: RequestAdmission
    embeddings: EmbeddingService
    moderations: ModerationService
    files: FileService
    batches: BatchService
    analyses: AnalysisService
    budgets: Budgets = field(init=False)  # built on the ledger, below
    audit: AuditLog = field(init=False)
    erasures: PrivacyErasures = field(init=False)
    dashboard_sessions: DashboardSessions = field(init=False)
    master_key: MasterKey | None = None  # set in the lifespan
    tracing: RequestTracing | None = None  # with OTEL_EXPORTER_OTLP_ENDPOINT


def build_services(settings: Settings) -> AppServices:
    """Every service, built but not started: nothing is loaded or connected yet."""
    registry = ModelRegistry(settings)
    database = Database(database_url(settings))
    kept_days = retention_days(settings)
    stored = StoredCompletions(CompletionStore(database), kept_days["chat_completions"])
    response_store = ResponseStore(database)
    conversation_store = ConversationStore(database)
    usage = UsageStore(database)
    audit = AuditLog(AuditStore(database))
    metrics = ServiceMetrics()
    moderations = ModerationService(settings.moderation)
    guard = ContentGuard(moderations, settings, metrics if settings.metrics_enabled else None)
    conversations = ConversationService(conversation_store, response_store, guard)
    files = FileService(FileStore(database), settings.max_file_bytes, settings.batch_max_lines)
    responses = ResponseService(
        registry,
        response_store,
        conversations,
        conversation_store,
        guard,
        kept_days["responses"],
        poll_s=settings.worker_poll_s,
    )
    services = AppServices(
        registry=registry,
        database=database,
        chat_completions=ChatCompletionService(registry, stored, guard),
        text_completions=TextCompletionService(registry),
        embeddings=EmbeddingService(registry),
        stored_completions=stored,
        responses=responses,
        conversations=conversations,
        response_store=response_store,
        accounts=Accounts(AccountStore(database), audit),
        login_throttle=LoginThrottle(),
        ledger=_ledger(settings, usage),
        usage=usage,
        metrics=metrics,
        admission=_admission(settings),
        moderations=moderations,
        files=files,
        batches=BatchService(BatchStore(database), files),
        analyses=AnalysisService(
            AnalysisStore(database), responses, response_store, usage, registry, settings.models
        ),
    )
    services.budgets = build_budgets(settings, database, services.ledger, audit)
    services.audit = audit
    services.erasures = build_erasures(settings, database, services.audit)
    services.dashboard_sessions = _dashboard_sessions(settings, services)
    if settings.metrics_enabled:
        services.ledger.on_record.append(services.metrics.observe_record)
    services.tracing = tracing_from_environment()
    if services.tracing is not None:
        services.ledger.on_record.append(services.tracing.observe_record)
    return services


def _dashboard_sessions(settings: Settings, services: AppServices) -> DashboardSessions:
    return DashboardSessions(
        DashboardSessionStore(services.database),
        services.accounts,
        services.login_throttle,
        lambda: services.master_key,  # set in the lifespan, after this is built
        idle_timeout_s=settings.dashboard_idle_timeout_s,
        max_age_s=settings.dashboard_session_max_s,
    )


def _ledger(settings: Settings, usage: UsageStore) -> UsageLedger:
    return UsageLedger(
        usage,
        PriceList(settings),
        flush_s=settings.ledger_flush_s,
        batch_size=settings.ledger_batch_size,
    )


def _admission(settings: Settings) -> RequestAdmission:
    """Rate limits counted in this process's memory, or shared by every process in Redis."""
    if not settings.redis_url:
        return RequestAdmission(settings.rate_limits, RateLimiter())
    # Its own client, that gives up fast: the limiter is on every request's path and lets
    # requests through while Redis is unreachable (redis-py would retry with backoff).
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    # Settle-ups sent in batches every 50 ms: a Redis call each cost the next request ~0.8 ms.
    return RequestAdmission(settings.rate_limits, RateLimiter(redis, settle_batch_s=0.05), redis)


class ServiceRuntime:
    """Builds the services from the settings; `start()` and `close()` run on one event loop."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.services = build_services(settings)
        self._background: list[asyncio.Task[None]] = []
        self.worker: BackgroundWorker | None = None

    async def start(
        self,
        *,
        master_key: bool = True,
        wait_for_models: bool = False,
        worker: bool = False,
        freeze_heap: bool = False,
        migrate: bool = True,
    ) -> str | None:
        """Apply migrations (with `migrate`; `serve --workers N` runs them once, in the parent),
        set up the master key (with `master_key`), load the models,
        and (with `worker`) the workers: background responses, batches, document analyses,
        erasures and the retention purge.
        With `freeze_heap` (a process of our own: the server, the worker), what start-up
        allocated is frozen once the models are loaded (`freeze_startup_heap`).

        The server loads models in the background (`/ready` tells when done) and logs a failure;
        with `wait_for_models` they are loaded before this returns and a failure is raised.
        Returns the master key's text if one was just generated (shown once by the caller).
        """
        settings, services = self.settings, self.services
        settings.home.mkdir(parents=True, exist_ok=True)
        if migrate:  # Alembic runs its own event loop, so it gets a thread of its own.
            await asyncio.to_thread(upgrade_database, services.database.url)
        new_key = None
        if master_key:
            services.master_key, new_key = bootstrap_master_key(settings)
        await services.ledger.start(
            (settings.ledger_journal_dir or settings.home / "usage-journal")
            if settings.ledger_journal
            else None
        )
        if wait_for_models:
            await services.registry.start()
            if freeze_heap:
                freeze_startup_heap()
        else:
            loading = _load_models(services.registry, freeze_heap)
            self._background.append(asyncio.create_task(loading))
        if settings.moderation.mode != "off":  # every request is moderated: load it now
            self._background.append(asyncio.create_task(_load_classifier(services)))
        if worker:
            self.worker = self._start_worker(after_models=not wait_for_models)
        return new_key

    def start_worker(self) -> BackgroundWorker:
        """Run the workers in this process from now on, if they do not run yet (the embedded
        facade, for a document analysis)."""
        if self.worker is None:
            self.worker = self._start_worker(after_models=True)
        return self.worker

    def _start_worker(self, *, after_models: bool) -> BackgroundWorker:
        settings, services = self.settings, self.services
        worker = BackgroundWorker(
            services.response_store,
            services.responses,
            WorkerSettings(
                concurrency=settings.worker_concurrency,
                lease_s=settings.job_lease_s,
                poll_s=settings.worker_poll_s,
                max_attempts=settings.job_max_attempts,
            ),
            services.ledger,
        )
        services.responses.on_enqueued = worker.wake
        services.responses.on_cancelled = worker.cancelled
        batches = self._batch_worker()
        services.batches.on_enqueued = batches.wake
        analyses = AnalysisDriver(
            services.analyses,
            services.responses,
            services.response_store,
            WorkerSettings(lease_s=settings.job_lease_s, poll_s=settings.worker_poll_s),
        )
        services.analyses.on_enqueued = analyses.wake

        async def run_when_ready(run: Callable[[], Awaitable[None]]) -> None:
            # Jobs need the model: a worker that claimed one before it loaded would fail it.
            while after_models and not services.registry.ready:
                await asyncio.sleep(0.1)
            await run()

        self._background.append(asyncio.create_task(run_when_ready(worker.run)))
        self._background.append(asyncio.create_task(run_when_ready(batches.run)))
        self._background.append(asyncio.create_task(run_when_ready(analyses.run)))
        self._background.append(asyncio.create_task(services.erasures.run()))
        # Retention is the workers' job too: a server without them leaves it to theirs.
        metrics = services.metrics if settings.metrics_enabled else None
        purge = RetentionPurge(services.database, settings, metrics)
        self._background.append(asyncio.create_task(purge.run_periodically()))
        return worker

    def _batch_worker(self) -> BatchWorker:
        settings, services = self.settings, self.services
        endpoints = BatchEndpoints(
            services.registry,
            services.chat_completions,
            services.responses,
            services.moderations,
            services.embeddings,
        )
        upstream_models = upstream_batch_models(settings.models)
        follower = UpstreamBatchFollower(
            services.batches.store,
            BatchFinisher(services.batches.store, services.files),
            upstream_models,
            services.ledger,
            poll_s=settings.upstream_batch_poll_s,
        )
        return BatchWorker(
            services.batches.store,
            services.files,
            endpoints,
            LineRunner(endpoints, services.admission, services.budgets, services.ledger),
            WorkerSettings(
                concurrency=settings.worker_concurrency,
                lease_s=settings.job_lease_s,
                poll_s=settings.worker_poll_s,
                max_attempts=settings.job_max_attempts,
            ),
            services.ledger,
            upstream=follower.follow,
            upstream_models=upstream_models,
        )

    async def close(self) -> None:
        """Stop the background tasks, unload the models and close the database."""
        background, self._background = self._background, []
        for task in background:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.gather(*background)
        # After the worker has handed its jobs back, before the database goes.
        await self.services.ledger.close()
        await self.services.budgets.close()  # the last batch's alerts, delivered
        await self.services.admission.close()  # the queue's timers; its Redis connection
        if self.services.tracing is not None:
            await self.services.tracing.close()  # after the ledger's last records
        await self.services.registry.close()
        await self.services.moderations.close()
        await self.services.database.close()


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, the app, the loaded models) out of the garbage
    collector's reach: they live as long as the process. Otherwise each full collection under
    load walks them all again (130 to 150 ms with the event loop stopped, every few seconds),
    which was the p99 of a gateway request (benchmarks/README.md)."""
    gc.collect()
    gc.freeze()


async def _load_models(registry: ModelRegistry, freeze_heap: bool) -> None:
    try:
        await registry.start()
        if freeze_heap:
            freeze_startup_heap()
        log.info("ready")
    except Exception as exc:
        log.error(
            "model loading failed", extra={"error_type": type(exc).__name__, "error": str(exc)}
        )


async def _load_classifier(services: AppServices) -> None:
    try:
        await services.moderations.start()
    except Exception as exc:  # loaded again on first use; that attempt reports its error
        log.error("moderation classifier loading failed", extra={"error_type": type(exc).__name__})
