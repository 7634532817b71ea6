"""Usage and cost over time (/dashboard/usage): the numbers of `GET /v1/usage`, by day and
by model, feature, user, key or endpoint, as a chart and a table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, ValidationError

from aiservice.api.dashboard.charts import bar_chart
from aiservice.api.dashboard.render import page, redirect
from aiservice.api.dashboard.session import SignedIn, posted_form
from aiservice.api.deps import app_services
from aiservice.errors import validation_error
from aiservice.services.request_log import FormFields
from aiservice.services.usage import UsageReports

router = APIRouter(prefix="/dashboard/usage", include_in_schema=False)

# The page's choices and what /v1/usage calls them.
GROUPS = {
    "model": "model",
    "feature": "metadata.feature",
    "endpoint": "endpoint",
    "user": "user",
    "key": "key",
}
MEASURES = {"cost_usd": "Cost (USD)", "requests": "Requests", "total_tokens": "Tokens"}
_UNITS = {"cost_usd": "$", "requests": "", "total_tokens": ""}
_MAX_DAYS = 366


class UsageFilter(FormFields):
    since: date | None = None
    until: date | None = None  # inclusive
    group: str = Field(default="model", pattern=f"^({'|'.join(GROUPS)})$")
    measure: str = Field(default="cost_usd", pattern=f"^({'|'.join(MEASURES)})$")
    user: str | None = Field(default=None, max_length=128)  # admins only

    def days(self) -> list[date]:
        until = self.until or datetime.now(UTC).date()
        since = self.since or until - timedelta(days=29)
        since = max(since, until - timedelta(days=_MAX_DAYS - 1))
        return [since + timedelta(days=offset) for offset in range((until - since).days + 1)]


@router.post("")
async def choose(request: Request, signed_in: SignedIn) -> Response:
    """The period form: posted with its CSRF token, then the page at the address holding
    the choice (the token stays out of the address)."""
    chosen = _parsed(await posted_form(request, signed_in.csrf_token))
    params = {k: str(v) for k, v in chosen.model_dump().items() if v is not None}
    return redirect(f"/dashboard/usage?{urlencode(params)}")


@router.get("")
async def usage_page(request: Request, signed_in: SignedIn) -> Response:
    usage_filter = _parsed(dict(request.query_params))
    services = app_services(request)
    reports = UsageReports(services.usage, services.ledger)
    days = usage_filter.days()
    group = GROUPS[usage_filter.group]
    window = {
        "since": days[0].isoformat() if days else None,
        "until": (days[-1] + timedelta(days=1)).isoformat() if days else None,
        "user": usage_filter.user,
    }
    by_day = await reports.totals(signed_in.principal, group_by=["day", group], **window)
    by_group = await reports.totals(signed_in.principal, group_by=[group], **window)
    categories = [day.isoformat() for day in days]
    chart = bar_chart(
        categories,
        _series(by_day, categories, group, usage_filter.measure),
        title=f"{MEASURES[usage_filter.measure]} by day and {usage_filter.group}",
        unit=_UNITS[usage_filter.measure],
    )
    context = {
        "viewer": signed_in,
        "filter": usage_filter,
        "groups": GROUPS,
        "measures": MEASURES,
        "group_key": group,
        "rows": by_group,
        "totals": _sum(by_group),
        "chart": chart,
        "since": days[0] if days else None,
        "until": days[-1] if days else None,
    }
    return page(request, "usage.html", context)


def _parsed(values: dict[str, str]) -> UsageFilter:
    try:
        return UsageFilter.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def _series(
    rows: list[dict[str, Any]], categories: list[str], group: str, measure: str
) -> dict[str, list[float]]:
    position = {day: index for index, day in enumerate(categories)}
    series: dict[str, list[float]] = {}
    for row in rows:
        name = "(none)" if row[group] is None else str(row[group])
        values = series.setdefault(name, [0.0] * len(categories))
        if row["day"] in position:
            values[position[row["day"]]] += float(row[measure])
    return series


def _sum(rows: list[dict[str, Any]]) -> dict[str, float]:
    fields = ("requests", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "errors")
    return {name: sum(row[name] for row in rows) for name in fields}
