import json

from aiservice.providers.base import FunctionTool, PromptMessage, ToolCall
from aiservice.providers.chat_template import ChatTemplate


def test_messages_render_in_order_with_a_generation_prompt():
    prompt = ChatTemplate(None).render(
        [PromptMessage("system", "Be brief."), PromptMessage("user", "Hi")], []
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_offered_tools_are_described_in_the_system_message():
    tool = FunctionTool("send_email", "Send an e-mail", {"type": "object"})
    prompt = ChatTemplate(None).render([PromptMessage("user", "Mail Bob")], [tool])
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\n")
    assert '"name": "send_email"' in system and "<tool_call>" in system


def test_earlier_tool_calls_are_shown_to_the_model_as_tagged_json():
    call = ToolCall("call_1", "send_email", '{"to": "bob"}')
    prompt = ChatTemplate(None).render(
        [
            PromptMessage("assistant", "", tool_calls=(call,)),
            PromptMessage("tool", "sent", tool_call_id="call_1"),
        ],
        [],
    )
    tagged = prompt.split("<tool_call>")[1].split("</tool_call>")[0]
    assert json.loads(tagged) == {"name": "send_email", "arguments": {"to": "bob"}}
    assert "<|im_start|>tool\nsent<|im_end|>" in prompt
