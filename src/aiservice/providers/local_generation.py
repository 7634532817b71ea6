"""One choice of a local generation, run token by token on the model's worker thread."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp._internals import LlamaSampler

from aiservice.providers.base import (
    ChoiceFinished,
    FinishReason,
    FunctionTool,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
    TopLogprob,
)
from aiservice.providers.stop_sequences import StopScanner
from aiservice.providers.tool_calls import TOOL_CALL_OPEN, parse_tool_calls


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """Everything the worker needs, checked and computed on the event loop beforehand."""

    request: GenerationRequest
    prompt_tokens: list[int]
    max_new_tokens: int
    grammar: str | None
    top_k: int
    min_p: float
    tools: list[FunctionTool]
    forced_tool_call: bool


class ChoiceRunner:
    """Generates choice `index` with its own seed; emits TextDelta events and a ChoiceFinished."""

    def __init__(
        self,
        llama: Llama,
        plan: SamplingPlan,
        index: int,
        seed: int,
        emit: Callable[[Any], None],
        cancelled: threading.Event,
    ):
        self._llama = llama
        self._plan = plan
        self._seed = seed
        self._cancelled = cancelled
        self._output = _ChoiceOutput(index, plan, emit)

    def run(self) -> int:
        """Generate until a stop, the token budget or cancellation; return tokens generated."""
        llama, plan = self._llama, self._plan
        vocab = llama._model.vocab
        n_ctx = llama.n_ctx()
        want_logprobs = plan.request.logprobs
        self._prime()
        sampler = self._sampler()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated = 0
        finish: FinishReason = "length"
        try:
            while generated < plan.max_new_tokens and llama.n_tokens < n_ctx:
                if self._cancelled.is_set():
                    return generated
                token = sampler.sample(llama._ctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated += 1
                logprob = self._logprob(token) if want_logprobs else None
                self._output.accept(decoder.decode(llama.detokenize([token])), logprob)
                if self._output.stopped:
                    finish = "stop"
                    break
                _decode_next(llama, token)
            self._output.finish(decoder.decode(b"", final=True), finish)
        finally:
            sampler.close()
        return generated

    def _prime(self) -> None:
        """Evaluate the prompt, reusing the longest prefix already in the KV cache.

        Seeded requests always evaluate from scratch: the same batch split gives bit-identical
        logits, which is what makes `seed` repeat exactly.
        """
        llama, tokens = self._llama, self._plan.prompt_tokens
        keep = 0
        if self._plan.request.seed is None and llama.n_tokens > 0:
            limit = min(llama.n_tokens, len(tokens) - 1)  # evaluate >= 1 token for fresh logits
            cached = llama.input_ids[:limit]
            differs = np.flatnonzero(cached != np.asarray(tokens[:limit], dtype=cached.dtype))
            keep = int(differs[0]) if differs.size else limit
        if keep:
            llama.n_tokens = keep  # eval() drops the KV cache past n_tokens first
        else:
            llama.reset()
        llama.eval(tokens[keep:])

    def _sampler(self) -> LlamaSampler:
        request, plan = self._plan.request, self._plan
        n_vocab = self._llama.n_vocab()
        sampler = LlamaSampler()
        if request.logit_bias:
            sampler.add_logit_bias(n_vocab, request.logit_bias)
        if request.frequency_penalty or request.presence_penalty:
            sampler.add_penalties(
                n_vocab,
                plan.max_new_tokens,
                1.0,
                request.frequency_penalty,
                request.presence_penalty,
            )
        if plan.grammar is not None:
            sampler.add_grammar(self._llama._model, _Grammar(plan.grammar))
        if request.temperature == 0:
            sampler.add_greedy()
            return sampler
        if plan.top_k > 0:
            sampler.add_top_k(plan.top_k)
        sampler.add_top_p(request.top_p, 1)
        if plan.min_p > 0:
            sampler.add_min_p(plan.min_p, 1)
        sampler.add_temp(request.temperature)
        sampler.add_dist(self._seed)
        return sampler

    def _logprob(self, token: int) -> TokenLogprob:
        """The model's own log-probability of `token` and its top alternatives (pre-sampling)."""
        llama = self._llama
        n_vocab = llama.n_vocab()
        logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        top_n = self._plan.request.top_logprobs
        top: list[TopLogprob] = []
        if top_n:
            best = np.argpartition(-logits, top_n)[:top_n]
            for candidate in best[np.argsort(-logits[best])]:
                text, raw = self._token_text(int(candidate))
                top.append(TopLogprob(text, float(logits[candidate]) - log_total, raw))
        text, raw = self._token_text(token)
        return TokenLogprob(text, float(logits[token]) - log_total, raw, top)

    def _token_text(self, token: int) -> tuple[str, list[int]]:
        raw = self._llama.detokenize([token], special=True)
        return raw.decode("utf-8", errors="replace"), list(raw)


def _decode_next(llama: Llama, token: int) -> None:
    """`llama.eval([token])` for the token just sampled, without eval()'s KV-cache trim.

    Nothing lies past `n_tokens` while generating, so the trim is a no-op; but as a ctypes call it
    releases the GIL just after the token went to the event loop, which then runs its per-token
    work (chunk, JSON, socket write) before this thread may start decoding. Calling decode
    directly lets that work overlap the decode (benchmarks/local_throughput.py, under load).
    """
    n_past = llama.n_tokens
    llama._batch.set_batch(batch=[token], n_past=n_past, logits_all=False)
    llama._ctx.decode(llama._batch)
    llama.input_ids[n_past] = token
    llama.n_tokens = n_past + 1


class _Grammar:
    """The two attributes LlamaSampler.add_grammar reads, without LlamaGrammar's parsing."""

    def __init__(self, gbnf: str):
        self._grammar = gbnf
        self._root = "root"


class _ChoiceOutput:
    """Decides what the client sees of one choice: streamed text, or tool calls at the end.

    With tools offered and the choice left to the model, output that opens with a tool-call tag
    is held back and parsed at the end; anything else streams as text as soon as it diverges.
    """

    def __init__(self, index: int, plan: SamplingPlan, emit: Callable[[Any], None]):
        self._index = index
        self._emit = emit
        self._tools = plan.tools
        self._parallel = plan.request.parallel_tool_calls
        self._scanner = StopScanner(plan.request.stop)
        self._mode = "forced" if plan.forced_tool_call else ("sniff" if plan.tools else "text")
        self._held = ""
        self._logprobs: list[TokenLogprob] = []

    @property
    def stopped(self) -> bool:
        return self._scanner.stopped

    def accept(self, piece: str, logprob: TokenLogprob | None) -> None:
        if logprob is not None:
            self._logprobs.append(logprob)
        text = self._scanner.feed(piece)
        if self._mode in ("forced", "tool"):
            self._held += text
            return
        if self._mode == "sniff":
            self._held += text
            opening = self._held.lstrip()
            if opening.startswith(TOOL_CALL_OPEN):
                self._mode = "tool"
                return
            if TOOL_CALL_OPEN.startswith(opening):
                return  # still undecided
            self._mode, text, self._held = "text", self._held, ""
        self._send(text)

    def finish(self, tail: str, finish_reason: FinishReason) -> None:
        text = self._held + self._scanner.feed(tail) + self._scanner.flush()
        self._held = ""
        if self._mode in ("forced", "tool"):
            calls = parse_tool_calls(text, self._tools, forced=self._mode == "forced")
            if calls:
                calls = calls if self._parallel else calls[:1]
                self._logprobs.clear()  # OpenAI reports no logprobs for tool calls
                self._emit(ChoiceFinished(self._index, "tool_calls", calls))
                return
        self._send(text, final=True)
        self._emit(ChoiceFinished(self._index, finish_reason))

    def _send(self, text: str, *, final: bool = False) -> None:
        if not text and not (final and self._logprobs):
            return
        logprobs, self._logprobs = (self._logprobs or None), []
        self._emit(TextDelta(self._index, text, logprobs))
