"""One line of a batch, run on this process's services as the batch's creator.

A line runs at the rate limiter's lowest priority, so the same key's interactive requests go
first: a line the limiter refuses is handed back with a time to try again, never failed. A
line past its creator's hard budget ends as an error line `budget_exceeded`, without running.
Its usage record is priced at the batch discount and written with its end.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiservice.errors import AIServiceError, BudgetExceeded, InternalError, as_service_error
from aiservice.governance.accounts import Principal
from aiservice.governance.admission import RequestAdmission
from aiservice.governance.budgets import Budgets
from aiservice.governance.rate_limits import RateLimitExceeded
from aiservice.metering.ledger import Record, UsageLedger
from aiservice.metering.meter import Meter, metering
from aiservice.services.batch_endpoints import BatchEndpoints
from aiservice.store.batch_status import LineState
from aiservice.store.batches import ClaimedLine, LineEnd
from aiservice.store.tables import StoredBatch

log = logging.getLogger(__name__)

BATCH_ROUTE = "/v1/batches"  # the route of a line's usage record
_RETRY_AT_LEAST_S = 0.2  # a refused line is not tried again sooner


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What every line of one batch shares."""

    id: str
    endpoint: str
    principal: Principal
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: StoredBatch) -> BatchContext:
        return cls(row.id, row.endpoint, Principal(**row.principal), dict(row.metadata_ or {}))


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """A line's end (with its usage record, not yet written), or a time to try again."""

    end: LineEnd | None = None
    usage: Record | None = None
    retry_at: float | None = None


class LineRunner:
    def __init__(
        self,
        endpoints: BatchEndpoints,
        admission: RequestAdmission,
        budgets: Budgets,
        ledger: UsageLedger | None,
    ):
        self._endpoints = endpoints
        self._admission = admission
        self._budgets = budgets
        self._ledger = ledger

    async def run(self, batch: BatchContext, line: ClaimedLine) -> LineOutcome:
        request_id = f"req_{secrets.token_hex(16)}"
        meter = Meter(BATCH_ROUTE, request_id, background=True, batch=True)
        meter.owner, meter.key_id = batch.principal.owner, batch.principal.key_id
        body = line.body
        meter.requested(
            str(body.get("model") or ""), None, body.get("safety_identifier") or body.get("user")
        )
        with metering(meter):
            try:
                answer = await self._answer(batch, line, meter)
            except RateLimitExceeded as refused:
                if refused.retry_after_s is None:  # larger than a limit: no wait admits it
                    meter.failed(refused)
                    ended = _answered(line, request_id, refused)
                    return self._ended(batch, meter, ended, refused.status_code)
                wait = max(refused.retry_after_s, _RETRY_AT_LEAST_S)
                return LineOutcome(retry_at=time.time() + wait)
            except BudgetExceeded as spent:
                meter.failed(spent)
                ended = _not_run(line, "budget_exceeded", spent.message)
                return self._ended(batch, meter, ended, spent.status_code)
            except AIServiceError as error:
                meter.failed(error)
                ended = _answered(line, request_id, error)
                return self._ended(batch, meter, ended, error.status_code)
            except Exception as exc:
                log.error("batch line failed", extra={"error_type": type(exc).__name__})
                error = InternalError()
                meter.failed(error)
                return self._ended(batch, meter, _answered(line, request_id, error), 500)
        result = _output_line(line, request_id, 200, answer)
        return self._ended(batch, meter, (LineState.SUCCEEDED, result), 200)

    async def _answer(self, batch: BatchContext, line: ClaimedLine, meter: Meter) -> Any:
        principal = batch.principal
        checked = self._endpoints.check(batch.endpoint, line.body)
        await self._budgets.check(principal)
        output_cap = getattr(checked.request, "output_token_cap", None)
        admitted = await self._admission.admit(
            principal, len(json.dumps(line.body)), output_cap or 0, "low", batch=True
        )
        if admitted is not None:
            meter.priority = admitted.priority.value
            if admitted.admission.waited_s:
                meter.wait_ms = admitted.admission.waited_s * 1000
        try:
            return await self._endpoints.run(batch.endpoint, checked.request, principal)
        finally:
            if admitted is not None and admitted.counts_tokens:
                used = meter.input_tokens + meter.output_tokens if meter.model_served else 0
                await admitted.admission.settle(used)

    def _ended(
        self,
        batch: BatchContext,
        meter: Meter,
        ended: tuple[LineState, dict[str, Any]],
        status_code: int,
    ) -> LineOutcome:
        """The line's end and its usage record: its own metadata, the batch's, and the
        batch's id, so that /v1/usage can group by either."""
        state, result = ended
        meter.metadata = {**meter.metadata, **batch.metadata, "batch_id": batch.id}
        usage = None
        if self._ledger is not None:
            usage = self._ledger.priced(meter, status_code)
        served = meter.model_served is not None
        return LineOutcome(
            end=LineEnd(
                state=state,
                result=result,
                input_tokens=meter.input_tokens if served else 0,
                output_tokens=meter.output_tokens if served else 0,
                cached_tokens=(meter.cached_tokens or 0) if served else 0,
            ),
            usage=usage,
        )


def _output_line(line: ClaimedLine, request_id: str, status_code: int, body: Any) -> dict[str, Any]:
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": line.custom_id,
        "response": {"status_code": status_code, "request_id": request_id, "body": body},
        "error": None,
    }


def _answered(
    line: ClaimedLine, request_id: str, error: AIServiceError
) -> tuple[LineState, dict[str, Any]]:
    error = as_service_error(error)
    return LineState.FAILED, _output_line(line, request_id, error.status_code, error.envelope())


def _not_run(line: ClaimedLine, code: str, message: str) -> tuple[LineState, dict[str, Any]]:
    return LineState.FAILED, not_run_line(line.custom_id, code, message)


def not_run_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    """The error file's line of a request that never ran (expired, cancelled, refused)."""
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
