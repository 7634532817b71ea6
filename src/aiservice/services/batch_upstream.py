"""Batches of a model whose upstream has a Batch API of its own (`batch = "upstream"`): the
lines go there whole, so the operator pays the vendor's batch price too.

A worker uploads the lines (the model renamed to the upstream's name), creates the upstream
batch, and then polls it every `poll_s` — the batch row stays leased between polls, so any
worker may take the next one. Once the upstream batch has ended, its output and error files
are read back line by line: each line gets its answer and a usage record at the batch price,
in one transaction, and the batch is closed like any other. A worker that died after creating
the upstream batch but before noting its id finds it again by its input file's id, so an
upstream batch is never created twice.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from aiservice.governance.accounts import Principal
from aiservice.metering.ledger import UsageLedger, table_row
from aiservice.metering.meter import Meter
from aiservice.providers.upstream_batches import UpstreamBatchClient
from aiservice.services.batch_finish import BatchFinisher
from aiservice.services.batch_line_run import BATCH_ROUTE, not_run_line
from aiservice.settings import ModelConfig
from aiservice.store.batch_status import BatchStatus, LineState
from aiservice.store.batches import BatchStore, LineEnd
from aiservice.store.tables import StoredBatch

log = logging.getLogger(__name__)

_PAGE = 1000
_ENDS = {
    "completed": BatchStatus.COMPLETED,
    "expired": BatchStatus.EXPIRED,
    "cancelled": BatchStatus.CANCELLED,
}


def upstream_batch_models(models: list[ModelConfig]) -> dict[str, ModelConfig]:
    """The configured models whose batches go to their upstream's Batch API, by name."""
    return {m.name: m for m in models if m.provider == "openai" and m.batch == "upstream"}


class UpstreamBatchFollower:
    def __init__(
        self,
        store: BatchStore,
        finisher: BatchFinisher,
        models: dict[str, ModelConfig],
        ledger: UsageLedger | None,
        poll_s: float = 5.0,
    ):
        self._store = store
        self._finisher = finisher
        self._models = models
        self._ledger = ledger
        self._poll_s = poll_s

    async def follow(self, row: StoredBatch, worker_id: str) -> None:
        """One step: submit the batch, or poll it (and read its results once it has ended)."""
        upstream = dict(row.upstream or {})
        client = UpstreamBatchClient(self._models[upstream["model"]])
        if "batch_id" not in upstream:
            upstream = await self._submit(row, client, upstream, worker_id)
        if row.status == BatchStatus.CANCELLING and not upstream.get("cancel_sent"):
            await client.cancel(upstream["batch_id"])
            upstream["cancel_sent"] = True
        remote = await client.retrieve(upstream["batch_id"])
        status = remote.get("status")
        if status in _ENDS or status == "failed":
            await self._collect(row, client, remote, worker_id)
            return
        counts = remote.get("request_counts") or {}
        await self._store.keep_held(
            row.id,
            worker_id,
            upstream={**upstream, "status": status},
            request_counts={
                "total": counts.get("total", (row.request_counts or {}).get("total", 0)),
                "completed": counts.get("completed", 0),
                "failed": counts.get("failed", 0),
            },
            lease_expires_at=time.time() + self._poll_s,  # the next poll, by any worker
        )

    async def _submit(
        self, row: StoredBatch, client: UpstreamBatchClient, upstream: dict, worker_id: str
    ) -> dict[str, Any]:
        if "file_id" not in upstream:
            content = await self._input(row, client.upstream_model)
            upstream["file_id"] = await client.upload(f"{row.id}.jsonl", content)
            await self._store.keep_held(row.id, worker_id, upstream=upstream)
        found = await self._find(client, upstream["file_id"])
        if found is None:
            found = await client.create(upstream["file_id"], row.endpoint, row.metadata_)
        upstream["batch_id"] = found["id"]
        await self._store.keep_held(row.id, worker_id, upstream=upstream)
        log.info("batch sent upstream", extra={"batch_id": row.id, "model": upstream["model"]})
        return upstream

    async def _find(self, client: UpstreamBatchClient, file_id: str) -> dict[str, Any] | None:
        """The upstream batch already made from this input file, if an earlier try made it."""
        listed = await client.list()
        return next((b for b in listed if b.get("input_file_id") == file_id), None)

    async def _input(self, row: StoredBatch, upstream_model: str) -> bytes:
        pieces: list[bytes] = []
        after = 0
        while page := await self._store.lines(row.seq, after, _PAGE):
            for line in page:
                body = {**line.body, "model": upstream_model}
                request = {"custom_id": line.custom_id, "method": "POST", "url": row.endpoint}
                pieces.append(json.dumps({**request, "body": body}).encode() + b"\n")
                after = line.line
        return b"".join(pieces)

    async def _collect(
        self, row: StoredBatch, client: UpstreamBatchClient, remote: dict, worker_id: str
    ) -> None:
        if remote.get("status") == "failed":
            errors = (remote.get("errors") or {}).get("data") or []
            await self._finisher.fail(row, worker_id, errors or [_upstream_failed()])
            return
        ends: dict[str, LineEnd] = {}
        records: dict[str, dict[str, Any]] = {}  # the usage records, as the ledger priced them
        for file_id in (remote.get("output_file_id"), remote.get("error_file_id")):
            if file_id:
                for raw in (await client.content(file_id)).splitlines():
                    if raw.strip():
                        line = json.loads(raw)
                        custom_id = line["custom_id"]
                        ends[custom_id], record = self._end(row, line)
                        if record is not None:
                            records[custom_id] = record
        written = await self._store.finish_upstream_lines(row.seq, ends)
        end = _ENDS[remote["status"]]
        if end == BatchStatus.COMPLETED:
            message = "The upstream batch returned no result for this request."
            await self._store.close_open_lines(
                row.seq, lambda custom_id: not_run_line(custom_id, "missing_result", message)
            )
        await self._finisher.finish(row, worker_id, end)
        if self._ledger is not None:
            for custom_id in written & records.keys():
                await self._ledger.written(records[custom_id])

    def _end(self, row: StoredBatch, line: dict[str, Any]) -> tuple[LineEnd, dict[str, Any] | None]:
        """A line of an upstream output or error file as this line's end, with its usage
        record at the batch price."""
        response = line.get("response") or {}
        status_code = int(response.get("status_code") or 0)
        ok = status_code == 200 and line.get("error") is None
        usage = (response.get("body") or {}).get("usage") or {} if ok else {}
        input_tokens = int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0)
        output_tokens = int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0)
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0)
        record = None
        if self._ledger is not None:
            principal = Principal(**row.principal)
            request_id = str(response.get("request_id") or f"req_{secrets.token_hex(16)}")
            meter = Meter(BATCH_ROUTE, request_id, background=True, batch=True)
            meter.owner, meter.key_id = principal.owner, principal.key_id
            meter.requested(row.model or "", {**(row.metadata_ or {}), "batch_id": row.id})
            meter.model_served = (row.upstream or {}).get("model") if ok else None
            meter.input_tokens, meter.output_tokens = input_tokens, output_tokens
            meter.cached_tokens = cached
            record = self._ledger.priced(meter, status_code or 500)
        end = LineEnd(
            state=LineState.SUCCEEDED if ok else LineState.FAILED,
            result=line,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            usage=table_row(record) if record is not None else None,
        )
        return end, record


def _upstream_failed() -> dict[str, Any]:
    return {
        "code": "upstream_failed",
        "message": "The upstream refused the batch.",
        "param": None,
        "line": None,
    }
