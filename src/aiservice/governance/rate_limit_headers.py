"""OpenAI's x-ratelimit-* headers and the words of a rate-limit refusal."""

from __future__ import annotations

from collections.abc import Mapping

from aiservice.governance.rate_limit_store import RateLimits, WindowUsage

# Per kind of header: the limits it reports (minute, day) and what their windows count.
_KINDS = (("requests", ("rpm", "rpd")), ("tokens", ("tpm", "tpd")))

LIMIT_NAMES = {
    "rpm": "requests per minute",
    "rpd": "requests per day",
    "tpm": "tokens per minute",
    "tpd": "tokens per day",
    "burst": "burst",
}


def headers_for(
    checks: Mapping[str, RateLimits],
    usage: Mapping[str, tuple[WindowUsage, WindowUsage]],
    now: float,
) -> dict[str, str]:
    """The six headers for the tightest request limit and the tightest token limit."""
    headers: dict[str, str] = {}
    for kind, fields in _KINDS:
        tightest: tuple[int, float, int] | None = None  # (remaining, -resets_at, limit)
        for subject, limits in checks.items():
            for field, window in zip(fields, usage.get(subject, ()), strict=False):
                limit = getattr(limits, field)
                if limit is None:
                    continue
                used = window.requests if kind == "requests" else window.tokens
                candidate = (max(0, limit - used), -window.resets_at, limit)
                if tightest is None or candidate < tightest:
                    tightest = candidate
        if tightest is not None:
            remaining, minus_resets_at, limit = tightest
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = openai_duration(-minus_resets_at - now)
    return headers


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI writes it (Go's format): "20ms", "1s", "6m0s", "1h0m30.5s"."""
    millis = max(0, round(seconds * 1000))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def refusal_message(
    subject: str, field: str, limits: RateLimits, tokens: int, retry_after_s: float | None
) -> str:
    """What the client reads, modelled on OpenAI's rate-limit messages."""
    limit = getattr(limits, field)
    name = LIMIT_NAMES[field]
    if retry_after_s is None:
        if field.startswith("t"):
            return (
                f"Request too large for {subject} on {name}: limit {limit}, requested "
                f"{tokens}. Reduce the prompt or max_tokens."
            )
        return f"No requests are allowed for {subject}: its {name} limit is {limit}."
    described = f"{limit} requests at once" if field == "burst" else f"limit {limit}"
    return (
        f"Rate limit reached for {subject} on {name} ({described}). "
        f"Please try again in {openai_duration(retry_after_s)}."
    )


def queue_message(subject: str) -> str:
    return (
        f"Rate limit reached for {subject}: requests of the same or higher priority are "
        "waiting for its capacity. Please try again in 1s."
    )
