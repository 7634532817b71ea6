"""Tokenizing a long prompt in pieces gives exactly the tokens of one call, on the bundled
model's real vocabulary; and the pieces put back together are the prompt."""

from __future__ import annotations

import re

import pytest
from llama_cpp import Llama

from aiservice.providers.base import PromptMessage
from aiservice.providers.bundled_model import bundled_model_path
from aiservice.providers.chat_template import ChatTemplate
from aiservice.providers.prompt_tokens import PIECE_CHARS, PromptTokenizer, pieces


@pytest.fixture(scope="module")
def llama() -> Llama:
    return Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)


def whole(llama: Llama, text: str) -> list[int]:
    return llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def chat_prompt(llama: Llama, messages: int) -> str:
    template = ChatTemplate(
        llama.metadata.get("tokenizer.chat_template"),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    turns = [
        PromptMessage("user" if i % 2 else "assistant", f"Message {i}: café, naïve — 東京 {i * 7}")
        for i in range(messages)
    ]
    return template.render([PromptMessage("system", "Be brief."), *turns], [])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("chat", id="a rendered 400-message chat"),
        pytest.param("<|im_start|>" * 3000, id="special tokens back to back"),
        pytest.param("x<|im_end|> y\n" * 2000, id="special tokens between spaces"),
        pytest.param("plain words without any special token " * 300, id="no special token"),
    ],
)
def test_pieces_give_the_tokens_of_one_call(llama: Llama, text: str):
    prompt = chat_prompt(llama, 400) if text == "chat" else text
    assert len(prompt) > 4 * PIECE_CHARS  # long enough to be cut
    assert PromptTokenizer(llama).tokenize(prompt) == whole(llama, prompt)


def test_a_prompt_is_cut_only_after_a_special_token_and_joins_back():
    cut_after = re.compile(re.escape("<E>"))
    text = "".join(f"turn {i} " * (i % 7) + "<E>" for i in range(500))
    parts = list(pieces(text, cut_after, 100))
    assert "".join(parts) == text
    assert len(parts) > 10
    assert all(part.endswith("<E>") and len(part) >= 100 for part in parts[:-1])


def test_the_bound_refuses_only_prompts_too_long_for_any_tokenization(llama: Llama):
    tokenizer = PromptTokenizer(llama)
    prompt = "<|im_start|>" * 1000  # 12,000 characters, 1,000 tokens
    assert len(whole(llama, prompt)) == 1000
    assert not tokenizer.surely_longer_than(prompt, 1000)
    assert tokenizer.surely_longer_than(prompt, 10)
