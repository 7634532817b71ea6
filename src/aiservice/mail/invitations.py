"""The events of a text/calendar part (RFC 5545), read by hand: the few VEVENT properties a
meeting needs are single content lines, "NAME;PARAM=value:value", folded at 75 octets."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiservice.mail.headers import format_address
from aiservice.mail.message import CalendarEvent

_DATE_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?(Z)?)?")
_DURATION = re.compile(r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_TEXT_ESCAPES = {"n": "\n", "N": "\n", ",": ",", ";": ";", "\\": "\\"}


def read_events(calendar_text: str) -> list[CalendarEvent]:
    """Each VEVENT of an iCalendar text, in order; properties it lacks are None."""
    events: list[CalendarEvent] = []
    method: str | None = None
    properties: list[tuple[str, dict[str, str], str]] | None = None  # the open VEVENT's
    nested = 0  # components open inside it (VALARM...), whose properties are not the event's
    for line in _unfolded(calendar_text):
        name, params, value = _content_line(line)
        component = value.strip().upper() if name in ("BEGIN", "END") else ""
        if name == "BEGIN" and component == "VEVENT":
            properties, nested = [], 0
        elif properties is None:
            method = value.strip().upper() if name == "METHOD" else method
        elif name == "BEGIN":
            nested += 1
        elif name == "END" and nested:
            nested -= 1
        elif name == "END" and component == "VEVENT":
            events.append(_event(properties, cancelled=method == "CANCEL"))
            properties = None
        elif not nested:
            properties.append((name, params, value))
    return events


def _unfolded(text: str) -> list[str]:
    # A line that starts with a space or a tab continues the one before (RFC 5545, 3.1).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [line for line in re.sub(r"\n[ \t]", "", text).split("\n") if line.strip()]


def _content_line(line: str) -> tuple[str, dict[str, str], str]:
    """(NAME, {PARAM: value}, value). A colon or semicolon inside a quoted parameter value
    ("Martin; Claire", a TZID with a colon) does not end it."""
    parts: list[str] = []
    current, quoted, rest = "", False, ""
    for position, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in ";:" and not quoted:
            parts.append(current)
            current = ""
            if char == ":":
                rest = line[position + 1 :]
                break
            continue
        current += char
    else:
        parts.append(current)
    name, *param_texts = parts
    params = {}
    for param in param_texts:
        key, _, param_value = param.partition("=")
        params[key.strip().upper()] = param_value.strip().strip('"')
    return name.strip().upper(), params, rest


def _event(properties: list[tuple[str, dict[str, str], str]], *, cancelled: bool) -> CalendarEvent:
    first: dict[str, tuple[dict[str, str], str]] = {}
    for name, params, value in properties:
        first.setdefault(name, (params, value))
    start_params, start_value = first.get("DTSTART", ({}, ""))
    start = _moment(start_value, start_params)
    end_params, end_value = first.get("DTEND", ({}, ""))
    end = _moment(end_value, end_params)
    if end is None and start is not None and "DURATION" in first:
        end = _after(start, first["DURATION"][1])
    status = first.get("STATUS", ({}, ""))[1].strip().upper()
    return CalendarEvent(
        summary=_text(first, "SUMMARY"),
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        timezone=start_params.get("TZID") or None,
        location=_text(first, "LOCATION"),
        organizer=_person(*first["ORGANIZER"]) if "ORGANIZER" in first else None,
        attendees=[
            _person(params, value) for name, params, value in properties if name == "ATTENDEE"
        ],
        cancelled=cancelled or status == "CANCELLED",
    )


def _text(first: dict[str, tuple[dict[str, str], str]], name: str) -> str | None:
    if name not in first:
        return None
    value = re.sub(r"\\(.)", lambda m: _TEXT_ESCAPES.get(m.group(1), m.group(0)), first[name][1])
    return value.strip() or None


def _moment(value: str, params: dict[str, str]) -> date | datetime | None:
    """A DATE or DATE-TIME value: in UTC with a Z, in its TZID's zone when that zone is
    known, else floating (local to whoever reads it, as RFC 5545 says)."""
    found = _DATE_TIME.fullmatch(value.strip())
    if not found:
        return None
    year, month, day, hour, minute, second, utc = found.groups()
    try:
        if hour is None:
            return date(int(year), int(month), int(day))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        return None
    if utc:
        return moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=_zone(params.get("TZID")))


def _zone(tzid: str | None) -> ZoneInfo | None:
    # Outlook's TZIDs ("Romance Standard Time") are not IANA names: those stay floating.
    if not tzid:
        return None
    try:
        return ZoneInfo(tzid.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _after(start: date | datetime, duration: str) -> date | datetime | None:
    """`start` moved by an RFC 5545 DURATION ("PT1H30M", "P1D"); None when unreadable."""
    found = _DURATION.fullmatch(duration.strip())
    if not found or not any(found.groups()[1:]):
        return None
    sign, weeks, days, hours, minutes, seconds = found.groups()
    try:
        length = timedelta(
            weeks=int(weeks or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=int(seconds or 0),
        )
        return start - length if sign == "-" else start + length
    except OverflowError:  # past the year 9999
        return None


def _person(params: dict[str, str], value: str) -> str:
    """The person as "Name <address>" (CN parameter, mailto: value), or whichever is there."""
    address = re.sub(r"^mailto:", "", value.strip(), flags=re.IGNORECASE)
    return format_address(params.get("CN", ""), address)
