"""ModeratedGeneration on a scripted generation: what a client receives in score and block
mode, where the text is cut, and the report it leaves; and how the content policy of a request
is resolved from the client's parameter and the operator's mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiservice.errors import UpstreamUnavailable
from aiservice.moderation.categories import CATEGORIES, Verdict
from aiservice.providers.base import ChoiceFinished, PreparedGeneration, TextDelta, Usage
from aiservice.services.content_policy import content_policy
from aiservice.services.moderated_generation import (
    ModeratedGeneration,
    ModerationFailure,
    ModerationReport,
)
from aiservice.services.moderation_param import ModerationParam

BAD_WORD = "BAD"


class Scripted(PreparedGeneration):
    model = "scripted"
    prompt_tokens = 3

    def __init__(self, pieces: list[str], choices: int = 1):
        self._pieces, self._choices = pieces, choices

    async def events(self) -> AsyncIterator:
        for piece in self._pieces:
            for index in range(self._choices):
                yield TextDelta(index, piece)
        for index in range(self._choices):
            yield ChoiceFinished(index, "stop")
        yield Usage(3, len(self._pieces))


def verdict_of(text: str) -> Verdict:
    """Flags violence exactly when the text holds BAD_WORD (a judge the test can predict)."""
    flagged = BAD_WORD in text
    return Verdict(
        scores={name: 0.9 if flagged and name == "violence" else 0.0 for name in CATEGORIES},
        categories={name: flagged and name == "violence" for name in CATEGORIES},
    )


async def judge(text: str) -> Verdict:
    return verdict_of(text)


async def run(generation: PreparedGeneration) -> list:
    return [event async for event in generation.events()]


def moderated(pieces: list[str], block: bool, choices: int = 1, judge=judge):
    flags: list[tuple[list[str], bool]] = []
    generation = ModeratedGeneration(
        Scripted(pieces, choices),
        judge,
        ModerationReport("judge"),
        block=block,
        on_flagged=lambda verdict, blocked: flags.append((verdict.flagged_categories, blocked)),
    )
    return generation, flags


def text_of(events: list, index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == index)


async def test_score_mode_passes_everything_through_and_reports() -> None:
    pieces = ["Fine. ", "Then ", BAD_WORD, " things."]
    generation, flags = moderated(pieces, block=False)
    events = await run(generation)
    assert text_of(events) == "".join(pieces)
    assert [e.finish_reason for e in events if isinstance(e, ChoiceFinished)] == ["stop"]
    assert generation.report.output[0].flagged
    assert flags == [(["violence"], False)]


async def test_block_mode_cuts_at_the_last_checkpoint_that_passed() -> None:
    generation, flags = moderated(["Fine so far. ", "Then ", BAD_WORD, " things."], block=True)
    events = await run(generation)
    assert text_of(events) == "Fine so far. "
    assert [e.finish_reason for e in events if isinstance(e, ChoiceFinished)] == ["content_filter"]
    assert isinstance(events[-1], Usage)
    assert flags == [(["violence"], True)]


async def test_block_mode_releases_clean_text_whole_and_in_order() -> None:
    pieces = ["One. ", "Two", " three", " four. ", "Five"]
    generation, flags = moderated(pieces, block=True)
    events = await run(generation)
    assert text_of(events) == "".join(pieces)
    assert [e.finish_reason for e in events if isinstance(e, ChoiceFinished)] == ["stop"]
    assert not generation.report.output[0].flagged and flags == []


async def test_text_held_back_never_exceeds_a_checkpoint() -> None:
    pieces = ["word "] * 100  # no sentence end at all
    generation, _ = moderated(pieces, block=True)
    released = [e.text for e in await run(generation) if isinstance(e, TextDelta)]
    assert "".join(released) == "".join(pieces)
    assert max(len(text) for text in released) < 200  # released every ~160 characters


async def test_each_choice_is_judged_on_its_own() -> None:
    class TwoWays(Scripted):
        async def events(self) -> AsyncIterator:
            yield TextDelta(0, "All good. ")
            yield TextDelta(1, f"{BAD_WORD}. ")
            yield ChoiceFinished(0, "stop")
            yield ChoiceFinished(1, "stop")
            yield Usage(3, 4)

    generation = ModeratedGeneration(
        TwoWays([]), judge, ModerationReport("judge"), block=True, on_flagged=lambda *_: None
    )
    events = await run(generation)
    finishes = {e.index: e.finish_reason for e in events if isinstance(e, ChoiceFinished)}
    assert finishes == {0: "stop", 1: "content_filter"}
    assert text_of(events, 0) == "All good. " and text_of(events, 1) == ""
    body = generation.report.chat_body()
    assert [r["flagged"] for r in body["output"]["results"]] == [False, True]


async def test_a_failing_judge_blocks_in_block_mode_and_is_reported_in_score_mode() -> None:
    async def down(text: str) -> Verdict:
        raise UpstreamUnavailable("moderation upstream down")

    blocked, _ = moderated(["Hello. ", "World."], block=True, judge=down)
    events = await run(blocked)
    assert text_of(events) == ""
    assert isinstance(blocked.report.output[0], ModerationFailure)
    scored, _ = moderated(["Hello. ", "World."], block=False, judge=down)
    events = await run(scored)
    assert text_of(events) == "Hello. World."
    assert scored.report.chat_body()["output"]["type"] == "error"


@pytest.mark.parametrize(
    ("client", "operator", "expected"),
    [
        (None, "off", ("off", "off")),
        (None, "block", ("block", "block")),
        ({"model": "m"}, "off", ("score", "score")),
        ({"model": "m", "policy": {"output": {"mode": "block"}}}, "off", ("score", "block")),
        ({"model": "m", "policy": {"input": {"mode": "score"}}}, "block", ("block", "block")),
        ({"model": "m", "policy": {"input": {"mode": "block"}}}, "score", ("block", "score")),
    ],
)
def test_the_client_may_strengthen_the_operators_policy_never_weaken_it(
    client, operator, expected
) -> None:
    param = ModerationParam.model_validate(client) if client else None
    policy = content_policy(param, operator, "off")
    assert (policy.input, policy.output) == expected


async def test_a_whole_answer_is_judged_once_and_a_long_stream_in_windows() -> None:
    judged: list[int] = []

    async def counting(text: str) -> Verdict:
        judged.append(len(text))
        return verdict_of(text)

    whole = "One sentence. " * 100
    generation, _ = moderated([whole], block=True, judge=counting)
    assert text_of(await run(generation)) == whole
    assert judged == [len(whole)]  # the checkpoint judged it whole: the end reuses that

    judged.clear()
    generation, _ = moderated(["One sentence. "] * 100, block=True, judge=counting)
    assert text_of(await run(generation)) == whole
    *windows, last = judged
    assert last == len(whole) and len(windows) == 100
    assert max(windows) <= 320 + len("One sentence. ")


async def test_a_flagged_sentence_is_caught_in_its_window_late_in_a_long_answer() -> None:
    pieces = ["Fine. "] * 80 + [f"Then {BAD_WORD}. ", "More. "]
    generation, _ = moderated(pieces, block=True)
    events = await run(generation)
    assert text_of(events) == "Fine. " * 80
    assert [e.finish_reason for e in events if isinstance(e, ChoiceFinished)] == ["content_filter"]
