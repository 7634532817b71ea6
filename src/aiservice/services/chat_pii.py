"""PII redaction applied to a chat completion: its messages before they reach the model and
the store, its answer (whole, or chunk by chunk) before it reaches the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aiservice.privacy.redaction import Redactor
from aiservice.services.chat_request import ChatCompletionRequest, ChatMessage


def message_texts(request: ChatCompletionRequest) -> list[str]:
    texts = []
    for message in request.messages:
        if isinstance(message.content, str):
            texts.append(message.content)
        elif message.content:
            texts += [part.text for part in message.content if part.text]
    return texts


def redacted_request(request: ChatCompletionRequest, redactor: Redactor) -> ChatCompletionRequest:
    messages = [_redacted(message, redactor) for message in request.messages]
    return request.model_copy(update={"messages": messages})


def _redacted(message: ChatMessage, redactor: Redactor) -> ChatMessage:
    if isinstance(message.content, str):
        return message.model_copy(update={"content": redactor.redact(message.content)})
    if not message.content:
        return message
    parts = [
        part.model_copy(update={"text": redactor.redact(part.text)}) if part.text else part
        for part in message.content
    ]
    return message.model_copy(update={"content": parts})


def restored_completion(completion: ChatCompletion, redactor: Redactor) -> ChatCompletion:
    """A copy of `completion` with the originals back in its texts and tool arguments."""
    restored = completion.model_copy(deep=True)
    for choice in restored.choices:
        message = choice.message
        if message.content:
            message.content = redactor.restore(message.content)
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is not None:
                function.arguments = redactor.restore(function.arguments)
    return restored


async def restored_chunks(
    chunks: AsyncIterator[ChatCompletionChunk], redactor: Redactor
) -> AsyncIterator[ChatCompletionChunk]:
    """The chunks with the originals back; a placeholder cut across chunks is held back until
    it is whole, and what a choice still holds goes out with its finish chunk."""
    restorers = {}
    async for chunk in chunks:
        for choice in chunk.choices:
            restorer = restorers.setdefault(choice.index, redactor.stream_restorer())
            delta = choice.delta
            if delta.content:
                delta.content = restorer.feed(delta.content)
            if choice.finish_reason is not None and (rest := restorer.flush()):
                delta.content = (delta.content or "") + rest
            for call in delta.tool_calls or []:
                if call.function is not None and call.function.arguments:
                    call.function.arguments = redactor.restore(call.function.arguments)
        yield chunk
