"""Zero data retention (OpenAI's ZDR): a key or a user flagged so has nothing of its requests
stored but their usage counts. `store` is treated as false on every request; what cannot be
answered without storing (background responses, batches, files, conversations, document
analyses) is refused with `zero_data_retention`; the usage record keeps its counts and cost,
without the request's metadata or end user (metering/ledger.py drops them).
"""

from __future__ import annotations

from aiservice.errors import InvalidRequest
from aiservice.governance.accounts import Principal

ZERO_RETENTION_CODE = "zero_data_retention"


def keeps_nothing(principal: Principal | None) -> bool:
    return principal is not None and principal.zero_retention


def refuse_storage(principal: Principal | None, what: str, param: str | None = None) -> None:
    """Raise the 400 of a request that would store content, for a zero-retention caller.
    `what` names it, to start the message: "Background responses", "File uploads"."""
    if keeps_nothing(principal):
        raise InvalidRequest(
            f"{what} need stored data, and this API key (or its user) has zero data "
            "retention: nothing of its requests is stored. Use a key without zero data "
            "retention for this.",
            param=param,
            code=ZERO_RETENTION_CODE,
        )
