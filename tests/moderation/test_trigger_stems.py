"""The words a cue cannot match without, read from its compiled pattern."""

from __future__ import annotations

import re

from aiservice.moderation.triggers import trigger_stems


def test_the_rarest_word_of_a_sequence_is_chosen() -> None:
    assert trigger_stems(r"(?:you|u) (?:[a-z0-9]+ ){0,3}(?:idiot|moron)s?") == {"idiot", "moron"}


def test_common_words_are_stepped_over() -> None:
    assert trigger_stems("(?:on purpose|deliberately)") == {"purpo", "delib"}


def test_each_branch_may_pick_its_own_word() -> None:
    # "strangle" beats "tend" (a longer stem); without the choice it would be "tend".
    assert trigger_stems("(?:tend to strangle|i hate) you") == {"stran", "hate"}


def test_a_pattern_that_can_start_anywhere_has_no_gate() -> None:
    assert trigger_stems(r"(?:[a-z]+ ){0,2}you") == {"you"}
    assert trigger_stems(r"\w+") is None


def test_a_match_always_contains_one_of_its_stems() -> None:
    pattern = r"(?:i ll|i will) (?:[a-z0-9]+ )?(?:kill|hurt|stab)(?:s|ed)? (?:you|him)(?! now)"
    stems = trigger_stems(pattern)
    assert stems is not None
    for text in ["i ll kill you", "i will really hurt him", "i will stabs you"]:
        assert re.search(pattern, text)
        assert any(word.startswith(tuple(stems)) for word in text.split()), text
