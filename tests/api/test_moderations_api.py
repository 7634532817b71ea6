"""POST /v1/moderations through the official SDK against a real server on the embedded
classifier: the seed's loop verbatim, every input shape, the bounds, the wire schema."""

from __future__ import annotations

import contextlib
import io

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from aiservice.moderation.categories import CATEGORIES
from support import ERROR_KEYS, assert_matches_schema

THREAT = "I am going to kill you tomorrow, you worthless idiot."


def test_the_seed_moderation_loop_runs_unchanged(client: OpenAI) -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for text in ["Bonjour, comment vas-tu?", "Je déteste ce produit, c'est nul!"]:
            result = client.moderations.create(input=text).results[0]
            print(
                result.flagged,
                [cat for cat, flagged in result.categories.__dict__.items() if flagged],
            )
    assert printed.getvalue().splitlines() == ["False []", "False []"]


def test_a_threat_is_flagged_with_its_categories(client: OpenAI) -> None:
    result = client.moderations.create(input=THREAT).results[0]
    assert result.flagged
    assert result.categories.harassment or result.categories.violence
    assert max(result.category_scores.harassment, result.category_scores.violence) > 0.5
    assert not result.categories.sexual and result.category_scores.sexual < 0.5


def test_the_answer_has_every_category_and_matches_the_schema(http: httpx.Client) -> None:
    answer = http.post("/v1/moderations", json={"input": THREAT})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_matches_schema(body, "CreateModerationResponse")
    assert body["id"].startswith("modr-") and body["model"]
    (result,) = body["results"]
    for field in ("categories", "category_scores", "category_applied_input_types"):
        assert list(result[field]) == list(CATEGORIES), field
    assert all(0 <= score <= 1 for score in result["category_scores"].values())
    assert all(types == ["text"] for types in result["category_applied_input_types"].values())
    assert result["flagged"] == any(result["categories"].values())


def test_an_array_of_strings_gets_one_result_each_in_order(client: OpenAI) -> None:
    answer = client.moderations.create(
        input=["Could we meet on Tuesday at 10?", THREAT, "Merci pour votre retour."],
        model="text-moderation-latest",
    )
    assert [r.flagged for r in answer.results] == [False, True, False]


def test_text_parts_are_one_input(client: OpenAI) -> None:
    answer = client.moderations.create(
        input=[{"type": "text", "text": "Hello there."}, {"type": "text", "text": THREAT}],
        model="omni-moderation-latest",
    )
    assert len(answer.results) == 1 and answer.results[0].flagged


def test_an_image_part_is_refused_by_the_text_classifier(client: OpenAI) -> None:
    with pytest.raises(BadRequestError) as refused:
        client.moderations.create(
            input=[
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ]
        )
    error = refused.value.body
    assert error["param"] == "input[1]" and error["code"] == "unsupported_input"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": ""}, "input", None),
        ({"input": "   "}, "input", None),
        ({"input": []}, "input", None),
        ({"input": ["hello"] * 33}, "input", "array_above_max_length"),
        ({"input": "a" * 40_000}, "input", "string_above_max_length"),
        ({"input": ["b" * 30_000] * 5}, "input", "string_above_max_length"),
        ({"input": "hi", "temperature": 1}, "temperature", None),
        ({"input": [{"type": "audio", "audio": "x"}]}, "input[0]", None),
        ({}, "input", None),
    ],
)
def test_bad_input_is_a_clear_400(http: httpx.Client, body: dict, param: str, code: str) -> None:
    answer = http.post("/v1/moderations", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_an_unknown_moderation_model_is_a_404(client: OpenAI) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.moderations.create(input="hello", model="no-such-moderation-model")
    assert missing.value.body["code"] == "model_not_found"


def test_moderation_needs_a_key(server) -> None:
    answer = httpx.post(f"{server.api_url}/moderations", json={"input": "hello"}, timeout=10)
    assert answer.status_code == 401
