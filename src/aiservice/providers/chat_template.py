"""Turn chat messages into a local model's prompt with the chat template its GGUF carries."""

from __future__ import annotations

import json

from jinja2.sandbox import ImmutableSandboxedEnvironment

from aiservice.providers.base import FunctionTool, PromptMessage
from aiservice.providers.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

# Used when a GGUF carries no template: ChatML, which most small instruct models speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplate:
    """A compiled chat template; compiled once per model, rendered per request."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_template_error
        self._template = environment.from_string(source or CHATML_TEMPLATE)
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: list[PromptMessage], tools: list[FunctionTool]) -> str:
        rendered = [_as_template_message(m) for m in messages]
        if tools:
            rendered = _with_tool_instructions(rendered, tools)
        return self._template.render(
            messages=rendered,
            add_generation_prompt=True,
            bos_token=self._bos_token,
            eos_token=self._eos_token,
        )


def _raise_template_error(message: str) -> None:
    raise ValueError(message)


def _as_template_message(message: PromptMessage) -> dict[str, str]:
    content = message.content
    if message.tool_calls:
        calls = "\n".join(
            f"{TOOL_CALL_OPEN}{json.dumps({'name': c.name, 'arguments': _loads(c.arguments)})}"
            f"{TOOL_CALL_CLOSE}"
            for c in message.tool_calls
        )
        content = f"{content}\n{calls}" if content else calls
    return {"role": message.role, "content": content}


def _loads(arguments: str) -> object:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _with_tool_instructions(
    messages: list[dict[str, str]], tools: list[FunctionTool]
) -> list[dict[str, str]]:
    """Describe the tools in the system message, in the Hermes style small models are tuned on."""
    described = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description or "", "parameters": t.parameters or {}}
        )
        for t in tools
    )
    instructions = (
        "You may call functions to help with the user's request. Available functions:\n"
        f"{described}\n"
        f"To call a function, reply with {TOOL_CALL_OPEN}"
        '{"name": <function name>, "arguments": <arguments object>}'
        f"{TOOL_CALL_CLOSE} and nothing else."
    )
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instructions}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]
