"""A generation whose output is moderated as it is produced, and the report of a moderated
request (its input's verdict, each choice's output verdict) in both APIs' shapes.

In `block` mode a choice's text is held back from the last checkpoint that passed until the
next one (a sentence end, or `_CHECK_EVERY` characters): a client only ever receives text
that has passed, and a flagged choice ends with `content_filter` instead of its next piece.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiservice.errors import AIServiceError
from aiservice.moderation.categories import CATEGORIES, Verdict
from aiservice.providers.base import (
    ChoiceFinished,
    GenerationEvent,
    PreparedGeneration,
    TextDelta,
    TokenLogprob,
    Usage,
)

_SENTENCE_END = re.compile(r"[.!?;:\n]")
_CHECK_EVERY = 160  # characters held back at most between two checkpoints
_CONTEXT = 320  # characters of released text judged again with the next piece

Judge = Callable[[str], Awaitable[Verdict]]


@dataclass(frozen=True, slots=True)
class ModerationFailure:
    """Moderation itself could not run (an upstream classifier down)."""

    code: str
    message: str

    @classmethod
    def of(cls, error: AIServiceError) -> ModerationFailure:
        return cls(error.code or "moderation_error", error.message)

    def body(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message}


Outcome = Verdict | ModerationFailure


@dataclass(slots=True)
class ModerationReport:
    """What moderation found for one request; filled as the request runs."""

    model: str
    input: Outcome | None = None
    output: dict[int, Outcome] = field(default_factory=dict)  # by choice index

    def chat_body(self) -> dict[str, Any]:
        """`ChatCompletionModeration`: results lists (one input result over the user
        messages, one output result per choice) or error objects."""
        return {"input": self._results([self.input]), "output": self._results(self._outputs())}

    def response_body(self) -> dict[str, Any]:
        """The Responses API's `Moderation`: one result (or error) per side."""
        outputs = self._outputs()
        return {"input": self._result(self.input), "output": self._result(outputs[0])}

    def _outputs(self) -> list[Outcome | None]:
        return [self.output[i] for i in sorted(self.output)] or [None]

    def _results(self, outcomes: Sequence[Outcome | None]) -> dict[str, Any]:
        for outcome in outcomes:
            if isinstance(outcome, ModerationFailure):
                return outcome.body()
        return {
            "type": "moderation_results",
            "model": self.model,
            "results": [self._result(outcome) for outcome in outcomes],
        }

    def _result(self, outcome: Outcome | None) -> dict[str, Any]:
        if isinstance(outcome, ModerationFailure):
            return outcome.body()
        verdict = outcome if outcome is not None else _NOTHING
        return {"type": "moderation_result", "model": self.model, **verdict.result_fields()}


class ModeratedGeneration(PreparedGeneration):
    """Wraps a provider's generation; with `block`, withholds flagged text (see above)."""

    def __init__(
        self,
        inner: PreparedGeneration,
        judge: Judge,
        report: ModerationReport,
        *,
        block: bool,
        on_flagged: Callable[[Verdict, bool], None],
    ):
        self._inner = inner
        self._judge = judge
        self._block = block
        self._on_flagged = on_flagged
        self.report = report
        self.model = inner.model
        self.prompt_tokens = inner.prompt_tokens

    @property
    def attempts(self) -> Sequence[Any]:  # type: ignore[override]
        return self._inner.attempts

    async def events(self) -> AsyncIterator[GenerationEvent]:
        choices: dict[int, _Choice] = {}
        async for event in self._inner.events():
            if isinstance(event, Usage):
                yield event
                continue
            choice = choices.setdefault(event.index, _Choice())
            if choice.closed:
                continue  # a blocked choice: the rest of its text is dropped
            if isinstance(event, TextDelta) and not self._block:
                choice.released.append(event.text)  # scored once the choice has ended
                yield event
            elif isinstance(event, TextDelta):
                choice.add(event)
                if choice.at_checkpoint():
                    for out in await self._checked(event.index, choice, final=False):
                        yield out
            else:
                for out in await self._checked(event.index, choice, final=True):
                    yield out
                if not choice.closed:
                    choice.closed = True
                    yield event

    async def _checked(self, index: int, choice: _Choice, *, final: bool) -> list[GenerationEvent]:
        """The held-back text if the choice's text so far passes, else its end. A checkpoint
        judges the held-back text with the end of what was released before it (the context a
        sentence needs), not everything again; the end of the choice judges it whole, once."""
        whole = final or not choice.released
        if final and not choice.pending and choice.whole_verdict is not None:
            outcome: Outcome = choice.whole_verdict  # nothing new since it was judged whole
        else:
            try:
                outcome = await self._judge(choice.text() if whole else choice.window())
            except AIServiceError as exc:
                outcome = ModerationFailure.of(exc)
            # Kept only while it covers all the text: the next piece makes it stale.
            choice.whole_verdict = outcome if whole and isinstance(outcome, Verdict) else None
        flagged = isinstance(outcome, Verdict) and outcome.flagged
        # Block mode fails closed: text moderation could not check is not released.
        withheld = self._block and (flagged or isinstance(outcome, ModerationFailure))
        if final or withheld:
            self.report.output[index] = outcome
            if flagged:
                self._on_flagged(outcome, self._block)  # type: ignore[arg-type]
        if withheld:
            choice.closed = True
            return [ChoiceFinished(index, "content_filter")]
        pending = choice.release(index)
        return [pending] if pending.text else []


@dataclass(slots=True)
class _Choice:
    released: list[str] = field(default_factory=list)
    pending: list[TextDelta] = field(default_factory=list)
    pending_chars: int = 0
    closed: bool = False
    whole_verdict: Verdict | None = None  # of all the text so far, when it was judged whole

    def add(self, delta: TextDelta) -> None:
        self.pending.append(delta)
        self.pending_chars += len(delta.text)

    def at_checkpoint(self) -> bool:
        last = self.pending[-1].text if self.pending else ""
        return self.pending_chars >= _CHECK_EVERY or bool(_SENTENCE_END.search(last))

    def text(self) -> str:
        return "".join(self.released) + "".join(d.text for d in self.pending)

    def window(self) -> str:
        """The held-back text after the last `_CONTEXT` characters released before it."""
        before = "".join(self.released)[-_CONTEXT:]
        return before + "".join(d.text for d in self.pending)

    def release(self, index: int) -> TextDelta:
        """The held-back deltas as one (their logprobs kept, in order)."""
        pending, self.pending, self.pending_chars = self.pending, [], 0
        text = "".join(d.text for d in pending)
        self.released.append(text)
        logprobs: list[TokenLogprob] | None = None
        if any(d.logprobs is not None for d in pending):
            logprobs = [lp for d in pending for lp in d.logprobs or []]
        return TextDelta(index, text, logprobs)


# A choice that produced no text at all (its generation failed before any).
_NOTHING = Verdict(
    scores=dict.fromkeys(CATEGORIES, 0.0), categories=dict.fromkeys(CATEGORIES, False)
)
