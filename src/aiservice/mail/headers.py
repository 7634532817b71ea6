"""A message's headers as plain values: encoded words (RFC 2047) and 8-bit bytes decoded,
addresses as "Name <address>", the date in ISO 8601. A header the standard library cannot parse
is read from its raw text instead; reading a header never raises."""

from __future__ import annotations

from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime

from aiservice.mail.charsets import clean_header

# What the standard library's header classes raise on some malformed values (an unclosed
# quote in an address list raises IndexError, for one).
_PARSE_ERRORS = (MessageError, ValueError, IndexError, TypeError, LookupError, AttributeError)


def header_text(message: EmailMessage, name: str) -> str:
    """The first `name` header, decoded; "" when there is none."""
    values = _parsed(message, name)
    return clean_header(str(values[0])) if values else ""


def header_addresses(message: EmailMessage, name: str) -> list[str]:
    """Every address of every `name` header, in order, as "Name <address>" or the address."""
    found: list[str] = []
    for value in _parsed(message, name):
        addresses = getattr(value, "addresses", None)
        if addresses is None:  # read from the raw text: split it the older way
            found += [format_address(display, spec) for display, spec in getaddresses([str(value)])]
            continue
        for address in addresses:
            if not address.domain and not address.display_name:
                found.append(address.username)  # "To: Claire" names someone without an address
            else:
                found.append(format_address(address.display_name, address.addr_spec))
    return [clean_header(text) for text in found if text.strip("<>@ \x00")]


def header_date(message: EmailMessage) -> str | None:
    """The Date header in ISO 8601, with its offset; None when missing or unreadable."""
    values = _parsed(message, "date")
    if not values:
        return None
    moment = getattr(values[0], "datetime", None)
    if moment is None:
        try:
            moment = parsedate_to_datetime(str(values[0]))
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return moment.isoformat()


def format_address(display_name: str, address: str) -> str:
    """The two as `Name <address>`, the name quoted when it holds a comma or another special;
    either alone when the other is empty."""
    display_name, address = display_name.strip(), address.strip()
    if not display_name:
        return address
    if not address:
        return display_name
    if any(char in display_name for char in ',;:<>@"()[]\\'):
        display_name = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{display_name} <{address}>"


def _parsed(message: EmailMessage, name: str) -> list[object]:
    """The `name` headers as the policy parses them, or as their decoded raw text."""
    try:
        return list(message.get_all(name) or [])
    except _PARSE_ERRORS:
        raw = [value for key, value in message.raw_items() if key.lower() == name.lower()]
        return [_decoded_raw(value) for value in raw]


def _decoded_raw(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (*_PARSE_ERRORS, UnicodeError):
        return value
