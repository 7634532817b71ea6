"""Restoring a streamed answer: whatever the cuts between deltas, the pieces joined are the
whole answer restored, and only a possible placeholder start is ever held back.

hypothesis is not installed here, so the property is checked exhaustively on short answers
(every one- and two-cut split) and on seeded random answers and splits.
"""

from __future__ import annotations

import itertools
import random

import pytest

from aiservice.privacy import Redactor, StreamRestorer

# Twelve addresses, so that <EMAIL_1> is a prefix of <EMAIL_12> and holding back must wait.
ADDRESSES = [f"user{number}@exemple.fr" for number in range(1, 13)]
PIECES = [
    *(f"<EMAIL_{number}>" for number in (1, 2, 9, 12, 13)),
    "<PHONE_1>", "<PHONE_", "<EMAIL_", "<EMAIL_1", "<EM", "<", ">", "<<", "_1>", "EMAIL",
    "1", "2", " ", "a", "é", "\n", "<email_1>", "<IP_1>",
]  # fmt: skip


@pytest.fixture
def redactor() -> Redactor:
    redactor = Redactor()
    redactor.redact(" ".join(ADDRESSES) + " tél 06 12 34 56 78")
    return redactor


def streamed(redactor: Redactor, deltas: list[str]) -> str:
    restorer = redactor.stream_restorer()
    return "".join(restorer.feed(delta) for delta in deltas) + restorer.flush()


def split_at(text: str, cuts: tuple[int, ...]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def random_answer(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 25)))


def test_a_placeholder_cut_in_two_is_restored(redactor):
    assert streamed(redactor, ["Écrivez à <EM", "AIL_1> !"]) == "Écrivez à user1@exemple.fr !"


def test_the_start_of_a_placeholder_waits_for_the_next_delta(redactor):
    restorer = redactor.stream_restorer()
    assert restorer.feed("Bonjour <EMAIL_1") == "Bonjour "
    assert restorer.feed("2>, ") == "user12@exemple.fr, "
    assert restorer.feed("<PHONE") == ""
    assert restorer.feed("_1>") == "06 12 34 56 78"
    assert restorer.flush() == ""


def test_text_that_cannot_become_a_placeholder_is_not_held(redactor):
    restorer = redactor.stream_restorer()
    assert restorer.feed("a < b") == "a < b"
    assert restorer.feed("<EMX") == "<EMX"
    assert restorer.feed("<EMAIL_99") == "<EMAIL_99"  # no placeholder of ours starts so
    assert restorer.feed("<email_") == "<email_"


def test_flush_gives_back_an_unfinished_placeholder_as_written(redactor):
    restorer = redactor.stream_restorer()
    assert restorer.feed("fin <EMAIL_") == "fin "
    assert restorer.flush() == "<EMAIL_"
    assert restorer.flush() == ""


def test_a_request_with_nothing_redacted_streams_through_untouched():
    restorer = Redactor().stream_restorer()
    assert [restorer.feed(delta) for delta in ["<EM", "AIL_1>", " <"]] == ["<EM", "AIL_1>", " <"]
    assert restorer.flush() == ""


@pytest.mark.parametrize(
    "answer",
    [
        "Votre adresse <EMAIL_1> et <EMAIL_12>, tél <PHONE_1>.",
        "<EMAIL_1><EMAIL_2><<EMAIL_12>>",
        "<EMAIL_13> <EMAIL_1 <EMAIL_> <PHONE_1",
    ],
)
def test_every_split_in_two_and_three_gives_the_whole_restore(redactor, answer):
    whole = redactor.restore(answer)
    positions = range(len(answer) + 1)
    for cuts in itertools.chain(
        itertools.combinations(positions, 1), itertools.combinations(positions, 2)
    ):
        assert streamed(redactor, split_at(answer, cuts)) == whole, cuts


def test_one_character_deltas_give_the_whole_restore(redactor):
    answer = "Écrivez à <EMAIL_1>, <EMAIL_12> ou <PHONE_1> (pas <EMAIL_9>)."
    assert streamed(redactor, list(answer)) == redactor.restore(answer)


def test_random_answers_split_at_random_give_the_whole_restore(redactor):
    rng = random.Random(16)
    for _ in range(3000):
        answer = random_answer(rng)
        # Drawn with replacement: a repeated cut is an empty delta, which streams also have.
        cuts = tuple(sorted(rng.choices(range(len(answer) + 1), k=rng.randint(0, len(answer)))))
        assert streamed(redactor, split_at(answer, cuts)) == redactor.restore(answer), answer


def test_no_more_than_a_placeholder_less_one_character_is_ever_held():
    # With every placeholder standing for itself, what is held back is what was fed and not
    # yet given out.
    known = {f"<EMAIL_{number}>": f"<EMAIL_{number}>" for number in range(1, 13)}
    longest = max(map(len, known))
    rng = random.Random(5)
    for _ in range(500):
        restorer, fed, given = StreamRestorer(known), 0, 0
        answer = random_answer(rng)
        for delta in split_at(answer, tuple(sorted(rng.choices(range(len(answer) + 1), k=8)))):
            fed += len(delta)
            given += len(restorer.feed(delta))
            assert fed - given <= longest - 1
        assert given + len(restorer.flush()) == len(answer)
