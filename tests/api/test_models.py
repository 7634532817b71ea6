"""GET /v1/models and /v1/models/{id} through the official SDK."""

from __future__ import annotations

import openai
import pytest

from support import assert_matches_schema

SERVED_NAMES = {"smollm2-135m-instruct", "gpt-4o-mini", "gpt-4o"}


def test_models_list_names_the_local_model_and_its_aliases(client):
    ids = {model.id for model in client.models.list()}
    assert ids >= SERVED_NAMES


def test_models_list_body_matches_the_spec(client):
    raw = client.models.with_raw_response.list()
    body = raw.http_response.json()
    assert_matches_schema(body, "ListModelsResponse")
    assert len({model["id"] for model in body["data"]}) == len(body["data"])


@pytest.mark.parametrize("model_id", sorted(SERVED_NAMES))
def test_retrieve_returns_the_named_model_matching_the_spec(client, model_id):
    raw = client.models.with_raw_response.retrieve(model_id)
    assert_matches_schema(raw.http_response.json(), "Model")
    model = raw.parse()
    assert model.id == model_id
    assert model.object == "model"


def test_retrieve_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


def test_chat_completion_with_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        )
    assert missing.value.code == "model_not_found"
