"""The normalisation every pattern relies on, and where the offensive model is read."""

from __future__ import annotations

from aiservice.moderation.normalise import normalise, sentences
from aiservice.moderation.targeted_offence import looks_english


def test_case_accents_apostrophes_and_hyphens_are_folded() -> None:
    assert normalise("J\u2019VAIS t'égorger, ÇA VA") == " j vais t egorger ca va "
    assert normalise("Sous-hommes, cœur, naïve") == " sous hommes coeur naive "
    assert normalise("I'm sure you're done") == " i m sure you re done "


def test_sentence_punctuation_becomes_one_break() -> None:
    assert normalise("Stop!!! Now?") == " stop . now . "
    assert sentences(normalise("Stop!!! Now? ok")) == ["stop", "now", "ok"]


def test_elongated_letters_shrink_but_double_letters_stay() -> None:
    assert normalise("stupiiiid killl sooo connard") == " stupid kil so connard "


def test_other_scripts_and_symbols_are_spaces() -> None:
    assert normalise("prix: 3€ — ok #42 ✓ Москва") == " prix . 3 ok 42 "


def test_english_and_french_are_told_apart_by_function_words() -> None:
    assert looks_english(normalise("You are the worst, and this is not fine."))
    assert not looks_english(normalise("Tu es le pire, et ce n'est pas bien."))
    assert not looks_english(normalise("12345"))
