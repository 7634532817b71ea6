"""The local provider: GGUF models run in-process through llama.cpp (llama-cpp-python).

Each model owns one worker thread. llama.cpp contexts are not thread-safe, and a single-thread
executor both serialises generations and queues them first-come first-served, so concurrent
requests wait their turn fairly while the event loop stays free. The worker hands events to the
loop as they are produced and checks a cancel flag between tokens: a request whose client went
away stops generating, and one cancelled while still queued never starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llama_cpp
from llama_cpp import Llama

from aiservice.errors import ContextLengthExceeded, InvalidRequest, ServiceUnavailable
from aiservice.providers.base import (
    ChatProvider,
    GenerationEvent,
    GenerationRequest,
    PreparedGeneration,
    Usage,
)
from aiservice.providers.bundled_model import bundled_model_path
from aiservice.providers.chat_template import ChatTemplate
from aiservice.providers.grammar import output_format_grammar, tool_call_grammar
from aiservice.providers.local_generation import ChoiceRunner, SamplingPlan
from aiservice.providers.prompt_tokens import PromptTokenizer
from aiservice.providers.text_options import refuse_insertion_and_ranking
from aiservice.settings import ModelConfig

log = logging.getLogger(__name__)

_END = object()  # sentinel: the worker has nothing more to say
# Prompts longer than this are rendered and tokenized on a thread of their own (from about
# 10 ms of work), not on the event loop nor on the model's worker, which may be busy
# generating; shorter ones are not worth the hop.
_OFF_LOOP_CHARS = 16_384
_TEMPLATE_CHARS_PER_MESSAGE = 32  # about what a chat template adds around each message


class LocalProvider(ChatProvider):
    """One GGUF model served from this process."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.model_id = config.name
        self._llama: Llama | None = None
        self._template: ChatTemplate | None = None
        self._tokenizer: PromptTokenizer | None = None
        self._checked_grammars: set[str] = set()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{config.name}"
        )

    @property
    def ready(self) -> bool:
        return self._llama is not None

    @property
    def context_window(self) -> int:
        return self._llama.n_ctx() if self._llama is not None else 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._load)
        eos_token = self._token_text(self._llama.token_eos())
        self._template = ChatTemplate(
            self._llama.metadata.get("tokenizer.chat_template"),
            bos_token=self._token_text(self._llama.token_bos()),
            eos_token=eos_token,
        )
        self._tokenizer = PromptTokenizer(self._llama)
        log.info(
            "local model loaded",
            extra={"model": self.model_id, "context_window": self._llama.n_ctx()},
        )

    def _load(self) -> Llama:
        path = self.config.path or bundled_model_path()
        return Llama(
            model_path=str(path),
            n_ctx=self.config.context_window or 0,  # 0: the model's training context
            n_threads=self.config.threads,
            verbose=False,
        )

    async def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llama.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _token_text(self, token: int) -> str:
        assert self._llama is not None
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    async def prepare_chat(self, request: GenerationRequest) -> PreparedGeneration:
        llama = self._llama
        if llama is None or self._template is None or self._tokenizer is None:
            raise ServiceUnavailable(f"The model `{self.model_id}` is not loaded.")
        forced_tools = _forced_tools(request)
        shown_tools = [] if request.tool_choice == "none" else forced_tools or request.tools
        if _prompt_size(request) > _OFF_LOOP_CHARS:
            prompt_tokens = await asyncio.to_thread(self._prompt_tokens, request, shown_tools)
        else:
            prompt_tokens = self._prompt_tokens(request, shown_tools)
        max_new_tokens = self._completion_budget(len(prompt_tokens), request.max_tokens)
        self._check_logit_bias(request)
        grammar = (
            tool_call_grammar(forced_tools, max_new_tokens, offered=request.tools)
            if forced_tools
            else output_format_grammar(request.output_format, max_new_tokens)
        )
        if grammar is not None:
            self._check_grammar(grammar)
        plan = SamplingPlan(
            request=request,
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new_tokens,
            grammar=grammar,
            top_k=self.config.sampling_top_k,
            min_p=self.config.sampling_min_p,
            tools=request.tools if request.tool_choice != "none" else [],
            forced_tool_call=bool(forced_tools),
        )
        return LocalGeneration(self, plan)

    async def prepare_text(self, request: GenerationRequest) -> PreparedGeneration:
        """A completion of the raw prompt: its own tokens, no chat template, no grammar."""
        if self._llama is None or self._tokenizer is None:
            raise ServiceUnavailable(f"The model `{self.model_id}` is not loaded.")
        refuse_insertion_and_ranking(request, self.model_id)
        prompt = request.prompt or ""
        if len(prompt) > _OFF_LOOP_CHARS:
            prompt_tokens = await asyncio.to_thread(self._text_tokens, prompt)
        else:
            prompt_tokens = self._text_tokens(prompt)
        max_new_tokens = self._completion_budget(
            len(prompt_tokens), request.max_tokens, prompt_name="prompt"
        )
        self._check_logit_bias(request)
        plan = SamplingPlan(
            request=request,
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new_tokens,
            grammar=None,
            top_k=self.config.sampling_top_k,
            min_p=self.config.sampling_min_p,
            tools=[],
            forced_tool_call=False,
        )
        return LocalGeneration(self, plan)

    def _text_tokens(self, prompt: str) -> list[int]:
        """A raw prompt's tokens, after the BOS token if the model wants one. An empty prompt
        is the BOS token alone: generation needs a token to start from."""
        assert self._llama is not None and self._tokenizer is not None
        window = self.context_window
        if self._tokenizer.surely_longer_than(prompt, window):
            raise _context_exceeded(
                window,
                f"However, your prompt is {len(prompt)} characters long, more than that many "
                "tokens can hold.",
                param="prompt",
            )
        tokens = self._tokenizer.tokenize(prompt)
        bos = self._llama.token_bos()
        if bos >= 0 and (not tokens or llama_cpp.llama_vocab_get_add_bos(self._llama._model.vocab)):
            tokens = [bos, *tokens]
        if not tokens:
            raise InvalidRequest(
                f"The model `{self.model_id}` cannot complete an empty prompt.", param="prompt"
            )
        return tokens

    def _check_logit_bias(self, request: GenerationRequest) -> None:
        assert self._llama is not None
        for token in request.logit_bias:
            if not 0 <= token < self._llama.n_vocab():
                raise InvalidRequest(
                    f"Invalid key in logit_bias: {token} is not a token of `{self.model_id}`.",
                    param="logit_bias",
                )

    def _prompt_tokens(self, request: GenerationRequest, tools: list[Any]) -> list[int]:
        """The rendered prompt's tokens; a prompt too long to fit is refused before its
        tokenization, the costliest step."""
        assert self._template is not None and self._tokenizer is not None
        prompt = self._template.render(request.messages, tools)
        window = self.context_window
        if self._tokenizer.surely_longer_than(prompt, window):
            raise _context_exceeded(
                window,
                f"However, your messages are {len(prompt)} characters long, more than that "
                "many tokens can hold.",
            )
        return self._tokenizer.tokenize(prompt)

    def _completion_budget(
        self, prompt_tokens: int, max_tokens: int | None, prompt_name: str = "messages"
    ) -> int:
        window = self.context_window
        if prompt_tokens >= window or (
            max_tokens is not None and prompt_tokens + max_tokens > window
        ):
            asked = f"{prompt_tokens} in the {prompt_name}" + (
                f", {max_tokens} in the completion" if max_tokens is not None else ""
            )
            error = _context_exceeded(
                window,
                f"However, you requested {prompt_tokens + (max_tokens or 0)} tokens ({asked}).",
                param=prompt_name,
            )
            error.prompt_tokens = prompt_tokens
            error.max_prompt_tokens = window - (max_tokens or 1)
            raise error
        return max_tokens if max_tokens is not None else window - prompt_tokens

    def _check_grammar(self, grammar: str) -> None:
        """Refuse a grammar llama.cpp cannot parse with a 400, rather than crash in the sampler."""
        if grammar in self._checked_grammars:
            return
        assert self._llama is not None
        sampler = llama_cpp.llama_sampler_init_grammar(
            self._llama._model.vocab, grammar.encode("utf-8"), b"root"
        )
        if not sampler:
            raise InvalidRequest(
                "The schema cannot be enforced on this model.", param="response_format"
            )
        llama_cpp.llama_sampler_free(sampler)
        self._checked_grammars.add(grammar)

    def run_on_worker(self, job: Callable[[], Any]) -> asyncio.Future[Any]:
        # Run in the caller's context so the worker's log lines carry the request id.
        context = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(self._executor, context.run, job)

    @property
    def llama(self) -> Llama:
        if self._llama is None:
            raise ServiceUnavailable(f"The model `{self.model_id}` is not loaded.")
        return self._llama


def _prompt_size(request: GenerationRequest) -> int:
    """About how many characters the rendered prompt will have."""
    return sum(len(m.content) + _TEMPLATE_CHARS_PER_MESSAGE for m in request.messages)


def _context_exceeded(
    window: int, what_was_asked: str, param: str = "messages"
) -> ContextLengthExceeded:
    error = ContextLengthExceeded(
        f"This model's maximum context length is {window} tokens. {what_was_asked} Please "
        f"reduce the length of the {param} or completion.",
        param=param,
    )
    error.max_prompt_tokens = window - 1  # room for one token of answer
    return error


def _forced_tools(request: GenerationRequest) -> list[Any]:
    """The tools the output must call: all of them for `required`, one for a named choice."""
    if not request.tools or request.tool_choice in ("none", "auto"):
        return []
    if request.tool_choice == "required":
        return list(request.tools)
    return [t for t in request.tools if t.name == request.tool_choice]


class LocalGeneration(PreparedGeneration):
    """A checked local request; `events()` queues it on the model's worker thread."""

    def __init__(self, provider: LocalProvider, plan: SamplingPlan):
        self._provider = provider
        self._plan = plan
        self.model = provider.model_id
        self.prompt_tokens = len(plan.prompt_tokens)

    async def events(self) -> AsyncIterator[GenerationEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us (shutdown): nobody is listening
                cancelled.set()

        self._provider.run_on_worker(lambda: self._work(emit, cancelled))
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def _work(self, emit: Callable[[Any], None], cancelled: threading.Event) -> None:
        """Runs on the worker thread: every choice in turn, then the usage."""
        try:
            if cancelled.is_set():
                return
            plan = self._plan
            completion_tokens = 0
            for index in range(plan.request.n):
                seed = (
                    plan.request.seed + index
                    if plan.request.seed is not None
                    else random.randrange(2**31)
                )
                runner = ChoiceRunner(self._provider.llama, plan, index, seed, emit, cancelled)
                completion_tokens += runner.run()
                if cancelled.is_set():
                    log.info(
                        "generation cancelled",
                        extra={
                            "model": self.model,
                            "completion_tokens": completion_tokens,
                            "max_tokens": plan.max_new_tokens,
                        },
                    )
                    return
            emit(Usage(prompt_tokens=len(plan.prompt_tokens), completion_tokens=completion_tokens))
        except Exception as exc:  # surfaced to the request as a 500 without its text
            log.error("local generation failed", extra={"error_type": type(exc).__name__})
            emit(exc)
        finally:
            emit(_END)
