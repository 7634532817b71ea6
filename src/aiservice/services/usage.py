"""Reading the usage ledger: totals over a time window, grouped as the caller asks, for
`GET /v1/usage` and `aiservice usage`. Users see their own records, admins everyone's."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime

from aiservice.errors import InvalidRequest
from aiservice.governance.accounts import Principal
from aiservice.metering.ledger import UsageLedger
from aiservice.services.metadata import MAX_KEY_LENGTH
from aiservice.store.usage import GROUP_COLUMNS, METADATA_PREFIX, UsageQuery, UsageStore

# "7d", "24h", "30m": that long before now.
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
GROUP_NAMES = (*GROUP_COLUMNS, METADATA_PREFIX + "<key>")
# Metadata keys that group alike on every backend: SQLite's JSON paths miss keys holding a
# quote, a backslash or non-ASCII text (they are stored escaped), so those are refused.
_GROUPABLE_KEY = re.compile(rf"^[ !#-\[\]-~]{{1,{MAX_KEY_LENGTH}}}$")


def parse_time(value: str, param: str, now: float | None = None) -> float:
    """Unix seconds from unix seconds, an ISO-8601 date or date-time (UTC unless it says
    otherwise), or a span before now ("7d", "24h", "30m", "90s", "2w")."""
    text = value.strip()
    if _NUMBER.match(text):
        return float(text)
    if match := _RELATIVE.match(text.lower()):
        span = float(match.group(1)) * _UNIT_S[match.group(2)]
        return (time.time() if now is None else now) - span
    try:
        if len(text) == 10:  # a date alone: its midnight, UTC
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"Invalid value for '{param}': {value!r} is not unix seconds, an ISO-8601 date or "
            "date-time, nor a span such as 7d, 24h or 30m.",
            param=param,
        ) from None


def parse_group_by(values: Iterable[str], param: str = "group_by") -> tuple[str, ...]:
    """Group names, given repeated or comma-separated, each once, in the order first given."""
    names: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            valid = name in GROUP_COLUMNS or (
                name.startswith(METADATA_PREFIX)
                and _GROUPABLE_KEY.match(name.removeprefix(METADATA_PREFIX)) is not None
            )
            if not valid:
                raise InvalidRequest(
                    f"Invalid value for '{param}': {name!r}; expected one of "
                    f"{', '.join(GROUP_NAMES)}.",
                    param=param,
                )
            if name not in names:
                names.append(name)
    return tuple(names)


def usage_query(
    *,
    since: str | None = None,
    until: str | None = None,
    group_by: Iterable[str] = (),
    owner: str | None = None,
) -> UsageQuery:
    """The query for these parameters as a client gives them (see parse_time)."""
    now = time.time()
    return UsageQuery(
        since=parse_time(since, "since", now) if since else 0.0,
        until=parse_time(until, "until", now) if until else None,
        owner=owner,
        group_by=parse_group_by(group_by),
    )


class UsageReports:
    """Totals for a caller: their own records, or (admins) everyone's or one user's."""

    def __init__(self, store: UsageStore, ledger: UsageLedger | None = None):
        self._store = store
        self._ledger = ledger

    async def totals(
        self,
        principal: Principal,
        *,
        since: str | None = None,
        until: str | None = None,
        group_by: Iterable[str] = (),
        user: str | None = None,
    ) -> list[dict[str, object]]:
        owner = user if principal.is_admin else principal.owner
        query = usage_query(since=since, until=until, group_by=group_by, owner=owner)
        if not principal.is_admin and user is not None and user != principal.owner:
            return []  # another user's usage: as if they had none, never a 403
        if self._ledger is not None:
            # This process's records still in memory: a caller sees their last request at
            # once. Other processes' records arrive with their next flush (ledger_flush_s).
            await self._ledger.flush()
        return await self._store.totals(query)
