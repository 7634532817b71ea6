"""Durations as an operator writes them (`90d`, `24h`, `30m`, `3600s`, or plain seconds): a
key's lifetime (`expires_in`) and a rotation's grace. One parser, so that the admin API and the
CLI accept and refuse the same values with the same words."""

from __future__ import annotations

import re

from aiservice.errors import InvalidRequest

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Ten years: far enough for any key policy, near enough that a typo (90000d) is refused.
MAX_DURATION_S = 10 * 365 * 86400
# How long a rotated key keeps working beside its successor unless told: a day for every
# client holding it to be given the new one.
DEFAULT_GRACE = "24h"


def parse_duration(value: str | int, *, param: str, allow_zero: bool = False) -> int:
    """Seconds in `value`: an integer of seconds, or digits and a unit (s, m, h, d)."""
    if isinstance(value, bool):  # a bool is an int to Python, never a duration to a person
        raise _bad(value, param, allow_zero)
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value)
        if match is None:
            raise _bad(value, param, allow_zero)
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise _bad(value, param, allow_zero)
    if seconds > MAX_DURATION_S:
        raise InvalidRequest(
            f"{param} of {value!r} is too long: at most {MAX_DURATION_S // 86400}d.", param=param
        )
    return seconds


def _bad(value: object, param: str, allow_zero: bool) -> InvalidRequest:
    least = "0 or more" if allow_zero else "more than 0"
    return InvalidRequest(
        f"{param} must be a duration of {least} seconds, such as 90d, 24h, 30m or 3600s "
        f"(s, m, h, d; digits alone are seconds), not {value!r}.",
        param=param,
    )
