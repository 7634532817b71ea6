"""A budget's periods, in UTC: a calendar day, a calendar month, or all time (`total`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["day", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "month", "total")


def period_start(period: str, now: float) -> int:
    """Unix seconds when the period holding `now` began (0 for `total`)."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        return 0
    return int(start.timestamp())


def resets_at(period: str, now: float) -> int | None:
    """Unix seconds when the period holding `now` ends; None for `total`, which never does."""
    if period == "total":
        return None
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == "day":
        return int((start + timedelta(days=1)).timestamp())
    next_month = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
    next_month = next_month or start.replace(month=start.month + 1)
    return int(next_month.timestamp())


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
