"""Every chat-completion parameter is honoured: non-streamed requests through the official SDK.

Each test asserts behaviour that would change if the server ignored the parameter; none relies on
a particular text from the model. Every response body is validated against OpenAI's schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from llama_cpp import Llama
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionTokenLogprob

from aiservice.providers.bundled_model import bundled_model_path
from support import assert_matches_schema

MODEL = "gpt-4o-mini"
SERVED = "smollm2-135m-instruct"
STORY = [{"role": "user", "content": "Write a short story about a cat."}]
LIST = [{"role": "user", "content": "List animals."}]

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "has_pet": {"type": "boolean"},
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "has_pet", "colour"],
    "additionalProperties": False,
}
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 12}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": TIME_PARAMETERS,
        },
    },
]
PARAMETERS_OF = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather in Paris?"}]
JSON_CAT = {"role": "user", "content": "Reply with a JSON object giving a cat's name and age."}


def create(client: OpenAI, **params: Any) -> ChatCompletion:
    """A non-streamed completion whose raw body must match OpenAI's response schema."""
    params.setdefault("model", MODEL)
    raw = client.chat.completions.with_raw_response.create(**params)
    assert_matches_schema(raw.http_response.json(), "CreateChatCompletionResponse")
    return raw.parse()


def text_of(completion: ChatCompletion) -> str:
    content = completion.choices[0].message.content
    assert isinstance(content, str), completion
    return content


def greedy(client: OpenAI, messages: list[dict[str, Any]], max_tokens: int, **params: Any) -> str:
    return text_of(
        create(client, messages=messages, temperature=0, max_tokens=max_tokens, **params)
    )


def prompt_tokens(client: OpenAI, messages: list[dict[str, Any]], **params: Any) -> int:
    completion = create(client, messages=messages, max_tokens=1, **params)
    assert completion.usage is not None
    return completion.usage.prompt_tokens


def token_logprobs(completion: ChatCompletion, index: int = 0) -> list[ChatCompletionTokenLogprob]:
    logprobs = completion.choices[index].logprobs
    assert logprobs is not None and logprobs.content is not None, completion
    return logprobs.content


@pytest.fixture(scope="module")
def vocab() -> Iterator[Llama]:
    """The served model's tokenizer (vocabulary only), to turn token texts into logit_bias ids."""
    tokenizer = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    yield tokenizer
    tokenizer.close()


def token_id(vocab: Llama, text: bytes) -> int:
    ids = vocab.tokenize(text, add_bos=False, special=False)
    assert len(ids) == 1 and vocab.detokenize(ids) == text, (text, ids)
    return ids[0]


# --- model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("asked", ["gpt-4o-mini", "gpt-4o", SERVED])
def test_response_model_names_the_model_that_really_answered(client, asked):
    completion = create(client, model=asked, messages=STORY, max_tokens=2)
    assert completion.model == SERVED


# --- roles and content ----------------------------------------------------------------------------


def conversation(role: str, content: str | list[dict[str, str]]) -> list[dict[str, Any]]:
    """A conversation in which the one message of `role` carries `content`."""
    if role in ("system", "developer"):
        return [{"role": role, "content": content}, {"role": "user", "content": "Name a colour."}]
    if role == "user":
        return [{"role": "user", "content": content}]
    if role == "assistant":
        return [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "Another one?"},
        ]
    assert role == "tool"
    return [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": content},
    ]


ROLES = ["system", "developer", "user", "assistant", "tool"]


@pytest.mark.parametrize("role", ROLES)
def test_message_text_of_every_role_reaches_the_prompt(client, role):
    short = prompt_tokens(client, conversation(role, "Sunny."))
    longer = prompt_tokens(
        client, conversation(role, "Sunny, with a light breeze from the west all afternoon.")
    )
    assert longer > short


@pytest.mark.parametrize("role", ROLES)
def test_list_of_text_parts_reads_like_the_same_string(client, role):
    text = "Be brief and name exactly one colour."
    parts = [{"type": "text", "text": "Be brief and "}, {"type": "text", "text": "name exactly"}]
    parts.append({"type": "text", "text": " one colour."})
    as_string = create(client, messages=conversation(role, text), temperature=0, max_tokens=12)
    as_parts = create(client, messages=conversation(role, parts), temperature=0, max_tokens=12)
    assert as_parts.usage.prompt_tokens == as_string.usage.prompt_tokens
    assert text_of(as_parts) == text_of(as_string)


def test_developer_message_is_treated_as_a_system_message(client):
    instruction = "You answer in one word."
    question = {"role": "user", "content": "Name a colour."}
    as_system = create(
        client,
        messages=[{"role": "system", "content": instruction}, question],
        temperature=0,
        max_tokens=12,
    )
    as_developer = create(
        client,
        messages=[{"role": "developer", "content": instruction}, question],
        temperature=0,
        max_tokens=12,
    )
    without = create(client, messages=[question], temperature=0, max_tokens=12)
    assert as_developer.usage.prompt_tokens == as_system.usage.prompt_tokens
    assert as_developer.usage.prompt_tokens != without.usage.prompt_tokens
    assert text_of(as_developer) == text_of(as_system)


def test_assistant_tool_calls_and_tool_results_are_accepted_and_answered(client):
    def exchange(arguments: dict[str, str], result: str) -> list[dict[str, Any]]:
        return [
            *WEATHER_QUESTION,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc123", "content": result},
        ]

    messages = exchange({"city": "Paris", "unit": "celsius"}, "Sunny, 24 degrees.")
    answer = create(client, messages=messages, tools=TOOLS, max_tokens=24, seed=3)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls

    # Both the call the assistant made and the tool's result are part of what the model reads.
    fewer_arguments = exchange({"city": "Paris"}, "Sunny, 24 degrees.")
    longer_result = exchange({"city": "Paris", "unit": "celsius"}, "Sunny, 24 degrees, no wind.")
    baseline = answer.usage.prompt_tokens
    assert prompt_tokens(client, fewer_arguments, tools=TOOLS) < baseline
    assert prompt_tokens(client, longer_result, tools=TOOLS) > baseline


# --- sampling -------------------------------------------------------------------------------------


def test_temperature_zero_gives_the_same_output_every_time(client):
    first = greedy(client, STORY, 40)
    create(client, messages=LIST, temperature=0, max_tokens=4)  # something else in between
    assert greedy(client, STORY, 40) == first


def test_same_seed_at_temperature_one_repeats_the_output(client):
    outputs = {
        text_of(create(client, messages=STORY, temperature=1, seed=1234, max_tokens=30))
        for _ in range(3)
    }
    assert len(outputs) == 1, outputs


def test_different_seeds_at_temperature_one_give_different_outputs(client):
    outputs = {
        text_of(create(client, messages=STORY, temperature=1, seed=seed, max_tokens=20))
        for seed in (1, 2, 3, 4)
    }
    assert len(outputs) > 1, outputs


def test_tiny_top_p_samples_the_greedy_output(client):
    # Seeded: like the sampled requests below, the prompt is evaluated afresh. Greedy without a
    # seed may reuse a cached prefix, whose logits can differ in the last bits and flip a near
    # tie; that is not what this test is about.
    expected = greedy(client, STORY, 30, seed=1)
    for seed in (5, 6, 7):
        sampled = create(
            client, messages=STORY, temperature=1, top_p=0.0001, seed=seed, max_tokens=30
        )
        assert text_of(sampled) == expected


def repeated_fraction(tokens: list[str]) -> float:
    """The share of tokens that repeat an earlier token of the same output."""
    return 1 - len(set(tokens)) / len(tokens)


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
def test_penalty_changes_a_long_greedy_generation_and_repeats_less(client, penalty):
    plain = create(client, messages=LIST, temperature=0, max_tokens=60, logprobs=True)
    penalised = create(
        client, messages=LIST, temperature=0, max_tokens=60, logprobs=True, **{penalty: 2.0}
    )
    assert text_of(penalised) != text_of(plain)
    plain_tokens = [lp.token for lp in token_logprobs(plain)]
    penalised_tokens = [lp.token for lp in token_logprobs(penalised)]
    assert repeated_fraction(penalised_tokens) < repeated_fraction(plain_tokens)


# --- stop and length ------------------------------------------------------------------------------


def test_stop_sequence_ends_the_content_before_it(client):
    full = greedy(client, STORY, 30)
    middle = len(full) // 2
    stop = full[middle - 3 : middle + 3]  # likely straddles a token boundary
    assert stop.strip() and full.index(stop) > 0, full
    completion = create(
        client, messages=STORY, temperature=0, max_tokens=30, stop=["\u2603 never", stop]
    )
    assert text_of(completion) == full[: full.index(stop)]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens < 30


def test_stop_sequence_given_as_a_string_also_stops(client):
    full = greedy(client, STORY, 30)
    stop = full.split()[len(full.split()) // 2]
    assert full.index(stop) > 0, full
    completion = create(client, messages=STORY, temperature=0, max_tokens=30, stop=stop)
    assert text_of(completion) == full[: full.index(stop)]
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_bounds_completion_tokens_and_finishes_with_length(client, limit):
    completion = create(client, messages=STORY, temperature=0, **{limit: 5})
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5
    assert completion.choices[0].finish_reason == "length"


def test_max_completion_tokens_takes_precedence_over_max_tokens(client):
    completion = create(client, messages=STORY, max_tokens=9, max_completion_tokens=4)
    assert completion.usage.completion_tokens == 4
    assert completion.choices[0].finish_reason == "length"


# --- n ------------------------------------------------------------------------------------------


def test_n_returns_that_many_choices_and_sums_their_tokens(client):
    completion = create(client, messages=STORY, n=3, seed=11, max_tokens=6, logprobs=True)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    tokens_per_choice = [len(token_logprobs(completion, i)) for i in range(3)]
    assert all(1 <= count <= 6 for count in tokens_per_choice), tokens_per_choice
    assert completion.usage.completion_tokens == sum(tokens_per_choice)
    assert completion.usage.prompt_tokens == prompt_tokens(client, STORY)
    assert len({choice.message.content for choice in completion.choices}) > 1


# --- logprobs -----------------------------------------------------------------------------------


def test_no_logprobs_unless_asked(client):
    completion = create(client, messages=STORY, max_tokens=3)
    assert completion.choices[0].logprobs is None


@pytest.mark.parametrize("top", [None, 1, 5])
def test_logprobs_describe_every_generated_token(client, top):
    extra = {} if top is None else {"top_logprobs": top}
    completion = create(
        client, messages=STORY, temperature=0, max_tokens=12, logprobs=True, **extra
    )
    entries = token_logprobs(completion)
    assert completion.choices[0].finish_reason == "length"  # no stop: every token is reported
    assert len(entries) == completion.usage.completion_tokens == 12
    for entry in entries:
        assert entry.logprob <= 0
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        assert len(entry.top_logprobs) == (top or 0)
        alternatives = [alt.logprob for alt in entry.top_logprobs]
        assert alternatives == sorted(alternatives, reverse=True)
        assert all(logprob <= 0 for logprob in alternatives)
        if entry.top_logprobs:  # greedy: the chosen token is the most likely one
            assert entry.top_logprobs[0].token == entry.token
            assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
    assert b"".join(bytes(e.bytes) for e in entries).decode("utf-8") == text_of(completion)


# --- logit_bias ---------------------------------------------------------------------------------


def test_logit_bias_of_plus_100_forces_that_token(client, vocab):
    banana = token_id(vocab, b" banana")
    completion = create(client, messages=STORY, max_tokens=5, seed=2, logit_bias={str(banana): 100})
    assert text_of(completion) == " banana" * 5


def test_logit_bias_of_minus_100_bans_the_greedy_first_token(client, vocab):
    plain = create(client, messages=STORY, temperature=0, max_tokens=8, logprobs=True)
    first = token_logprobs(plain)[0]
    banned = token_id(vocab, bytes(first.bytes))
    biased = create(
        client,
        messages=STORY,
        temperature=0,
        max_tokens=8,
        logprobs=True,
        logit_bias={str(banned): -100},
    )
    tokens = [entry.token for entry in token_logprobs(biased)]
    assert tokens[0] != first.token
    assert first.token not in tokens


def test_logit_bias_key_outside_the_vocabulary_is_refused(client, vocab):
    with pytest.raises(openai.BadRequestError) as refused:
        create(client, messages=STORY, max_tokens=1, logit_bias={str(vocab.n_vocab()): 5})
    assert refused.value.param == "logit_bias"


# --- response_format ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_json_object_format_returns_a_json_object(client, seed):
    completion = create(
        client,
        messages=[JSON_CAT],
        response_format={"type": "json_object"},
        seed=seed,
        max_tokens=100,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(text_of(completion)), dict)


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA},
        },
    ],
    ids=["json_object", "json_schema"],
)
def test_json_strings_never_hold_raw_control_characters(client, vocab, response_format):
    # Push a newline as hard as logit_bias can: JSON forbids it raw inside a string, so the
    # format must keep it out (json.loads refuses "Invalid control character").
    newline = token_id(vocab, b"\n")
    completion = create(
        client,
        messages=[JSON_CAT],
        response_format=response_format,
        temperature=0,
        max_tokens=100,
        logit_bias={str(newline): 100},
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(text_of(completion)), dict)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_json_schema_format_output_validates_against_the_schema(client, seed):
    completion = create(
        client,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA},
        },
        seed=seed,
        max_tokens=120,
    )
    assert completion.choices[0].finish_reason == "stop"
    document = json.loads(text_of(completion))
    jsonschema.validate(document, PERSON_SCHEMA)
    # Structured outputs keep the schema's property order.
    assert list(document) == list(PERSON_SCHEMA["properties"])


# --- tools --------------------------------------------------------------------------------------


def assert_valid_tool_call(completion: ChatCompletion, expected_names: set[str]) -> None:
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    assert choice.message.tool_calls, choice
    for call in choice.message.tool_calls:
        assert call.type == "function"
        assert call.id.startswith("call_")
        assert call.function.name in expected_names
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS_OF[call.function.name])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_tool_choice_always_calls_an_offered_tool(client, seed):
    completion = create(
        client,
        messages=WEATHER_QUESTION,
        tools=TOOLS,
        tool_choice="required",
        seed=seed,
        max_tokens=80,
    )
    assert_valid_tool_call(completion, {"get_weather", "get_time"})


@pytest.mark.parametrize("seed", [0, 1])
def test_named_tool_choice_calls_that_function(client, seed):
    # The question is about the weather; the named function is the other one.
    completion = create(
        client,
        messages=WEATHER_QUESTION,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        seed=seed,
        max_tokens=80,
    )
    assert_valid_tool_call(completion, {"get_time"})


def weather_call(call_id: str, city: str) -> dict[str, Any]:
    arguments = json.dumps({"city": city, "unit": "celsius"})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": arguments},
            }
        ],
    }


def test_tool_choice_none_produces_no_tool_call_where_auto_makes_one(client):
    # After two weather look-ups this model makes a third call on its own under `auto`.
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        weather_call("call_1", "Paris"),
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "user", "content": "Weather in Rome?"},
        weather_call("call_2", "Rome"),
        {"role": "tool", "tool_call_id": "call_2", "content": "Rainy"},
        {"role": "user", "content": "Weather in London?"},
    ]
    params = {"messages": messages, "tools": TOOLS, "temperature": 0, "max_tokens": 40}
    auto = create(client, tool_choice="auto", **params)
    assert_valid_tool_call(auto, {"get_weather"})

    none = create(client, tool_choice="none", **params)
    choice = none.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.tool_calls is None
    assert isinstance(choice.message.content, str)


# --- accepted, not acted on -----------------------------------------------------------------------


def test_bookkeeping_and_unused_openai_parameters_are_accepted_and_change_nothing(client):
    expected = greedy(client, STORY, 10)
    completion = create(
        client,
        messages=STORY,
        temperature=0,
        max_tokens=10,
        user="user-1234",
        metadata={"purpose": "contract-test", "team": "qa"},
        store=True,
        service_tier="auto",
        reasoning_effort="low",
        prompt_cache_key="cache-key-1",
        safety_identifier="hashed-user-1",
        verbosity="low",
        parallel_tool_calls=False,
    )
    assert text_of(completion) == expected


def test_unknown_parameter_is_refused_not_silently_dropped(client):
    with pytest.raises(openai.BadRequestError) as refused:
        create(client, messages=STORY, max_tokens=1, extra_body={"temprature": 0})
    assert "temprature" in str(refused.value)


def test_metadata_is_checked_against_openai_limits(client):
    with pytest.raises(openai.BadRequestError):
        create(
            client,
            messages=STORY,
            max_tokens=1,
            metadata={f"key{i}": "value" for i in range(17)},
        )
