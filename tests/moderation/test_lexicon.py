"""The lexicon's data and engine: the gate never changes an answer, the data files are
consistent, and a mistake in them fails at load with the cue named."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from itertools import islice

import pytest

from aiservice.moderation.categories import CATEGORIES
from aiservice.moderation.lexicon import CUE_FILES, WORDS_FILE, Cue, Lexicon, LexiconError
from aiservice.moderation.normalise import normalise

DATA = resources.files("aiservice.moderation") / "data"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.from_package()


def labelled(file_name: str) -> list[dict]:
    lines = (DATA / file_name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def every_text() -> list[str]:
    texts = [
        row["text"]
        for name in ("moderation_eval.jsonl", "moderation_holdout.jsonl")
        for row in labelled(name)
    ]
    # Long mixed texts too: many sentences, some flagged, in both languages.
    return texts + [" ".join(islice(texts[start:], 25)) for start in range(0, len(texts), 25)]


def test_the_gate_finds_exactly_what_trying_every_cue_everywhere_finds(lexicon: Lexicon) -> None:
    for text in every_text():
        normalised = normalise(text)
        assert lexicon.matches(normalised) == lexicon.matches(normalised, gated=False), text


def test_every_category_has_cues_in_english_and_in_french() -> None:
    for file_name in CUE_FILES:
        table = tomllib.loads((DATA / file_name).read_text(encoding="utf-8"))
        assert set(table) == set(CATEGORIES), file_name


def test_no_single_word_counts_twice_in_one_category(lexicon: Lexicon) -> None:
    """A word that both language files list (e.g. "massacre") must not add two weak cues up
    to a flag: every literal word of the lists, alone, scores what its strongest cue says."""
    words = tomllib.loads((DATA / WORDS_FILE).read_text(encoding="utf-8"))
    literals = {
        entry
        for value in words.values()
        for entry in ([value] if isinstance(value, str) else value)
        if re.fullmatch(r"[a-z ]+", entry)
    }
    for literal in sorted(literals):
        for category, cues in lexicon.matches(f" {literal} . ").items():
            if len(cues) > 1:
                assert (
                    max(cue.weight for cue in cues) >= 0.5
                    or lexicon.scores(f" {literal} . ")[category] < 0.5
                ), (literal, category, cues)


def test_every_negative_lookahead_ends_on_a_word_boundary() -> None:
    """`(?! out)` would also refuse "outside": each one must be `(?! (?:...)(?![a-z0-9]))`."""
    for file_name in (*CUE_FILES, WORDS_FILE):
        text = (DATA / file_name).read_text(encoding="utf-8")
        for start in [found.start() for found in re.finditer(r"\(\?! ", text)]:
            depth, end = 0, start
            while True:
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            assert text[start : end + 1].endswith("(?![a-z0-9]))"), (file_name, text[start:end])


def test_weights_outside_the_unit_interval_are_refused() -> None:
    with pytest.raises(LexiconError, match="weight"):
        Lexicon([Cue("violence", 1.5, "kill")], {})


def test_an_unknown_list_is_named_at_load() -> None:
    with pytest.raises(LexiconError, match="no_such_list"):
        Lexicon([Cue("violence", 0.5, "{no_such_list} you")], {})


def test_a_capturing_group_is_refused() -> None:
    with pytest.raises(LexiconError, match="capturing"):
        Lexicon([Cue("violence", 0.5, "(kill|stab) you")], {})


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(LexiconError, match="category"):
        Lexicon([Cue("rudeness", 0.5, "rude")], {})


def test_a_list_that_names_itself_is_a_loop() -> None:
    with pytest.raises(LexiconError, match="loop"):
        Lexicon([Cue("violence", 0.5, "{again}")], {"again": ["{again}"]})


def test_scores_combine_cues_as_independent_evidence() -> None:
    lexicon = Lexicon(
        [Cue("violence", 0.4, "punch {who}"), Cue("violence", 0.5, "in the face")],
        {"who": ["him", "her"]},
    )
    assert lexicon.scores(normalise("I'd punch him."))["violence"] == pytest.approx(0.4)
    assert lexicon.scores(normalise("Punch her in the face"))["violence"] == pytest.approx(0.7)
    assert lexicon.scores(normalise("punched him"))["violence"] == 0.0  # whole words only


@pytest.mark.parametrize("file_name", ["moderation_eval.jsonl", "moderation_holdout.jsonl"])
def test_a_labelled_set_is_well_formed(file_name: str) -> None:
    rows = labelled(file_name)
    for row in rows:
        assert set(row) == {"text", "lang", "labels"} and row["lang"] in {"en", "fr"}
        assert set(row["labels"]) <= set(CATEGORIES)


def test_the_labelled_set_has_what_the_benchmark_needs() -> None:
    rows = labelled("moderation_eval.jsonl")
    assert len(rows) >= 200
    english = sum(row["lang"] == "en" for row in rows)
    assert 0.4 <= english / len(rows) <= 0.6
    for category in CATEGORIES:
        assert sum(category in row["labels"] for row in rows) >= 8, category
    assert sum(not row["labels"] for row in rows) >= len(rows) // 3  # plenty of benign
    assert len({row["text"] for row in rows}) == len(rows)
