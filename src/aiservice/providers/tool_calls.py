"""The tool-call text convention of local models, and parsing it back into tool calls."""

from __future__ import annotations

import json
import secrets
import string

from aiservice.providers.base import FunctionTool, ToolCall

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_ID_ALPHABET = string.ascii_letters + string.digits


def new_tool_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def parse_tool_calls(text: str, tools: list[FunctionTool], *, forced: bool) -> list[ToolCall]:
    """Tool calls found in `text`; [] when it holds none that name an offered tool.

    Forced output is one bare JSON object (the grammar guarantees its shape); free output wraps
    each call in tool-call tags.
    """
    known = {tool.name for tool in tools}
    chunks = [text] if forced else text.split(TOOL_CALL_OPEN)[1:]
    decoder = json.JSONDecoder()
    calls = []
    for chunk in chunks:
        body = chunk.split(TOOL_CALL_CLOSE, 1)[0].strip()
        try:
            call, _ = decoder.raw_decode(body)
        except ValueError:
            continue
        if not isinstance(call, dict) or call.get("name") not in known:
            continue
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                continue
        if not isinstance(arguments, dict):
            continue
        calls.append(ToolCall(new_tool_call_id(), call["name"], json.dumps(arguments)))
    return calls
