"""alt-profanity-check's model, evaluated from its fitted numbers, must say what the wheel's
own `predict_prob` says."""

from __future__ import annotations

import pytest
from profanity_check import predict_prob

from aiservice.moderation.offensive import OffensiveLanguageModel

TEXTS = [
    "",
    "!!",
    "you are a complete idiot",
    "this product is shit",
    "thanks for the invoice, see you on Monday",
    "Je déteste ce produit, c'est nul!",
    "F*** off and die, you worthless piece of garbage",
    "The quarterly report is attached. " * 60,
]


@pytest.fixture(scope="module")
def model() -> OffensiveLanguageModel:
    loaded = OffensiveLanguageModel()
    loaded.load()
    return loaded


def test_probabilities_match_the_wheels_own_prediction(model: OffensiveLanguageModel) -> None:
    expected = predict_prob(TEXTS)
    for text, probability in zip(TEXTS, expected, strict=True):
        assert model.probability(text) == pytest.approx(float(probability), abs=1e-9), text


def test_words_already_split_give_the_same_probability(model: OffensiveLanguageModel) -> None:
    assert model.probability_of_words(["you", "are", "an", "idiot"]) == pytest.approx(
        model.probability("You are an IDIOT!")
    )


def test_the_numbers_are_read_from_the_wheel_not_scikit_learn_at_each_call(
    model: OffensiveLanguageModel,
) -> None:
    assert model._fallback is None  # the plain pipeline was recognised
