from support import assert_matches_schema


def test_chat_completion_answers_and_matches_the_openai_schema(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
    )
    body = raw.http_response.json()
    assert_matches_schema(body, "CreateChatCompletionResponse")
    assert body["model"] == "smollm2-135m-instruct"
    assert body["usage"]["completion_tokens"] <= 8
