"""Splitting a text into chunks: each within its bound, all of the text in order, cut at
paragraphs first, then sentences (French ones too), lines, words, and inside a monster word."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from aiservice.documents import (
    Chunk,
    estimate_text_tokens,
    read_document,
    split_into_chunks,
)
from aiservice.documents.boundaries import sentences
from aiservice.documents.chunks import MIN_CHUNK_TOKENS
from document_samples import FRENCH_TEXT, Samples

WORDS = [
    "le",
    "la",
    "les",
    "un",
    "une",
    "des",
    "école",
    "été",
    "élève",
    "rapport",
    "réunion",
    "budget",
    "année",
    "travail",
]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _sentence(rng: random.Random, length: int) -> str:
    words = [rng.choice(WORDS) for _ in range(length)]
    return " ".join(words).capitalize() + rng.choice([".", " !", " ?", "."])


def _text(paragraphs: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(_sentence(rng, rng.randint(4, 25)) for _ in range(rng.randint(1, 8)))
        for _ in range(paragraphs)
    )


def _check_bounds(chunks: list[Chunk], max_tokens: int, count=estimate_text_tokens) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.tokens == count(chunk.text) <= max_tokens


def _check_nothing_lost(text: str, chunks: list[Chunk]) -> None:
    joined = "\n\n".join(chunk.text for chunk in chunks)
    assert re.sub(r"\s+", "", joined) == re.sub(r"\s+", "", text)


def test_an_empty_text_has_no_chunks():
    assert split_into_chunks("", 100) == []
    assert split_into_chunks(" \n\n \t\n", 100) == []


def test_a_bound_under_16_tokens_is_refused():
    with pytest.raises(ValueError, match="at least 16"):
        split_into_chunks("Un texte.", MIN_CHUNK_TOKENS - 1)
    assert split_into_chunks("Un texte.", MIN_CHUNK_TOKENS)[0].text == "Un texte."


def test_small_paragraphs_are_packed_into_one_chunk():
    text = "Premier.\n\n\n  Deuxième.\n \nTroisième."
    assert split_into_chunks(text, 1000) == [
        Chunk(index=0, text="Premier.\n\nDeuxième.\n\nTroisième.", tokens=8)
    ]


@pytest.mark.parametrize("max_tokens", [16, 40, 200, 1000, 5000])
def test_chunks_keep_their_bound_and_every_paragraph_in_order(max_tokens: int):
    text = _text(300)
    chunks = split_into_chunks(text, max_tokens)
    _check_bounds(chunks, max_tokens)
    _check_nothing_lost(text, chunks)
    joined = "\n\n".join(chunk.text for chunk in chunks)
    position = 0
    for paragraph in _paragraphs(text):
        if estimate_text_tokens(paragraph) <= max_tokens:
            # A paragraph that fits a chunk is never cut: it is whole in one of them.
            assert any(paragraph in chunk.text for chunk in chunks)
        position = joined.find(paragraph.split()[0], position)
        assert position >= 0


def test_paragraphs_that_fit_are_packed_greedily_and_never_cut():
    paragraphs = _paragraphs(_text(200, seed=3))
    fitting = [p for p in paragraphs if estimate_text_tokens(p) <= 300]
    chunks = split_into_chunks("\n\n".join(fitting), 300)
    _check_bounds(chunks, 300)
    assert [p for chunk in chunks for p in chunk.text.split("\n\n")] == fitting
    for chunk, following in itertools.pairwise(chunks):
        # Greedy: the next chunk's first paragraph would not have fitted in this one.
        first = following.text.split("\n\n")[0]
        assert estimate_text_tokens(chunk.text + "\n\n" + first) > 300


def test_the_pdf_sample_is_chunked_whole_and_in_order(samples: Samples):
    text = read_document(samples.thirty_pages_pdf).text
    chunks = split_into_chunks(text, 256)
    _check_bounds(chunks, 256)
    _check_nothing_lost(text, chunks)
    found = [p for chunk in chunks for p in chunk.text.split("\n\n")]
    assert found == _paragraphs(text)  # every paragraph of it fits 256 tokens


def test_a_long_french_paragraph_is_cut_between_sentences():
    paragraph = " ".join(_paragraphs(FRENCH_TEXT)[1:] * 3).replace("\n", " ")
    chunks = split_into_chunks(paragraph, 30)
    _check_bounds(chunks, 30)
    _check_nothing_lost(paragraph, chunks)
    assert len(chunks) > 3
    for chunk in chunks:
        # Each chunk ends a sentence ("?" and "!" after a space, « ... » kept together)...
        assert chunk.text.endswith((".", " !", " ?", ". »")), chunk.text
        # ...and none starts with what closes one.
        assert not chunk.text.startswith(("»", "?", "!", ":"))
    assert any(
        chunk.text.endswith("« Nous recommencerons l'année prochaine. »") for chunk in chunks
    )


def test_french_sentences_end_after_spaced_punctuation_and_closing_quotes():
    text = "Il a dit : « Non. » Puis il est parti ! Et alors ? Rien… Vraiment ?! Oui. Fin"
    assert [piece for _, piece in sentences(text)] == [
        "Il a dit : « Non. »",
        "Puis il est parti !",
        "Et alors ?",
        "Rien…",
        "Vraiment ?!",
        "Oui.",
        "Fin",
    ]
    # Not a sentence's end: a decimal point, a space before the punctuation French spaces.
    assert len(sentences("Le taux est de 3.5 % cette année ; vraiment ? non")) == 2


def test_a_long_table_is_cut_between_its_lines():
    rows = "\n".join(f"Ligne {n} | valeur {n * 7} | état validé" for n in range(200))
    chunks = split_into_chunks(rows, 50)
    _check_bounds(chunks, 50)
    assert [line for chunk in chunks for line in chunk.text.split("\n")] == rows.split("\n")


def test_a_monster_sentence_is_cut_between_words():
    rng = random.Random(5)
    sentence = " ".join(rng.choice(WORDS) for _ in range(3000))
    chunks = split_into_chunks(sentence, 64)
    _check_bounds(chunks, 64)
    assert [word for chunk in chunks for word in chunk.text.split()] == sentence.split()
    # Recounted when the parts' counts say full, chunks are filled close to their bound.
    assert all(chunk.tokens >= 60 for chunk in chunks[:-1])


def test_a_monster_word_is_cut_hard_and_nothing_lost():
    word = "anticonstitutionnellement" * 400
    text = f"Avant.\n\nUn mot : {word} suit.\n\nAprès."
    chunks = split_into_chunks(text, 16)
    _check_bounds(chunks, 16)
    _check_nothing_lost(text, chunks)
    assert "".join(chunk.text for chunk in chunks if " " not in chunk.text) in word
    assert chunks[0].text.startswith("Avant.") and chunks[-1].text.endswith("Après.")


def test_a_decomposed_accent_stays_with_its_letter():
    word = "e\u0301" * 500  # "é" as e + combining acute accent
    chunks = split_into_chunks(word, 16)
    assert all(not chunk.text.startswith("\u0301") for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == word


def test_any_token_counter_is_obeyed():
    def words_and_overhead(text: str) -> int:
        # A counter whose whole counts more than its parts (like a chat template's overhead).
        return len(text.split()) + 3

    text = _text(100, seed=9)
    chunks = split_into_chunks(text, 40, words_and_overhead)
    _check_bounds(chunks, 40, words_and_overhead)
    _check_nothing_lost(text, chunks)


def test_a_long_text_is_counted_piece_by_piece_not_whole_again_and_again():
    text = _text(5000, seed=11)  # about 200,000 words
    counted = 0

    def counting(piece: str) -> int:
        nonlocal counted
        counted += len(piece)
        return estimate_text_tokens(piece)

    chunks = split_into_chunks(text, 500, counting)
    _check_bounds(chunks, 500)
    # Each character is counted a handful of times, however long the text.
    assert counted < 10 * len(text)
    rng = random.Random(12)
    one_sentence = " ".join(rng.choice(WORDS) for _ in range(50_000))
    counted = 0
    assert split_into_chunks(one_sentence, 100, counting)
    assert counted < 15 * len(one_sentence)
