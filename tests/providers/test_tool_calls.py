import json

from aiservice.providers.base import FunctionTool
from aiservice.providers.tool_calls import parse_tool_calls

TOOLS = [FunctionTool("send_email", None, {"type": "object"}), FunctionTool("noop")]


def test_forced_output_is_one_bare_json_call():
    calls = parse_tool_calls(
        '{"name": "send_email", "arguments": {"to": "a@b.c"}}', TOOLS, forced=True
    )
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("send_email", {"to": "a@b.c"})]
    assert calls[0].id.startswith("call_") and len(calls[0].id) == 29


def test_free_output_may_hold_several_tagged_calls():
    text = (
        '<tool_call>{"name": "noop", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "send_email", "arguments": "{\\"to\\": \\"x\\"}"}</tool_call>'
    )
    calls = parse_tool_calls(text, TOOLS, forced=False)
    assert [c.name for c in calls] == ["noop", "send_email"]
    assert json.loads(calls[1].arguments) == {"to": "x"}
    assert len({c.id for c in calls}) == 2


def test_calls_of_unknown_functions_or_broken_json_are_not_tool_calls():
    assert (
        parse_tool_calls('<tool_call>{"name": "rm_rf", "arguments": {}}', TOOLS, forced=False) == []
    )
    assert parse_tool_calls("<tool_call>{not json</tool_call>", TOOLS, forced=False) == []
    assert parse_tool_calls("just text", TOOLS, forced=False) == []
