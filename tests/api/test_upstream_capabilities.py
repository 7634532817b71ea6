"""A client never gets fewer choices, or less than the logprobs, it asked for as if that were
the whole answer: an upstream that drops `n` or `logprobs` (as llama.cpp's server does) gives an
error, and one declared not to support them is refused up front with a 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from aiservice.testing.fake_upstream import FakeUpstream
from support import MASTER_KEY, RunningServer, start_server, stop_server

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream() as whole, FakeUpstream(ignores=("n", "logprobs")) as dropping:
        yield whole, dropping


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> Iterator[OpenAI]:
    whole, dropping = upstreams
    home: Path = tmp_path_factory.mktemp("capabilities")
    entries = [
        ("whole", whole.base_url, ""),
        ("drops", dropping.base_url, ""),
        ("declared", dropping.base_url, "supports_n = false\nsupports_logprobs = false\n"),
    ]
    (home / "config.toml").write_text(
        "\n".join(
            f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{url}"\n'
            f"max_retries = 0\n{extra}"
            for name, url, extra in entries
        ),
        encoding="utf-8",
    )
    server: RunningServer = start_server(
        home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
    )
    yield OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0)
    stop_server(server)


def test_an_upstream_that_serves_n_gives_every_choice(client: OpenAI) -> None:
    answer = client.chat.completions.create(model="whole", messages=HELLO, n=2, logprobs=True)
    assert [choice.index for choice in answer.choices] == [0, 1]
    assert all(choice.logprobs and choice.logprobs.content for choice in answer.choices)


def test_an_upstream_that_drops_n_gives_an_error_not_one_choice(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="drops", messages=HELLO, n=2)
    assert refused.value.status_code == 502
    assert "1 of the 2 choices" in refused.value.message
    stream = client.chat.completions.create(model="drops", messages=HELLO, n=2, stream=True)
    with pytest.raises(openai.APIError) as cut:
        for _ in stream:
            pass
    assert "1 of the 2 choices" in str(cut.value)


def test_an_upstream_that_drops_logprobs_gives_an_error(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="drops", messages=HELLO, logprobs=True)
    assert refused.value.status_code == 502 and "logprobs" in refused.value.message
    plain = client.chat.completions.create(model="drops", messages=HELLO)
    assert len(plain.choices) == 1  # asked for nothing it drops: answered as usual


def test_an_upstream_declared_without_n_or_logprobs_is_refused_up_front(client: OpenAI) -> None:
    for fields, param in (({"n": 3}, "n"), ({"logprobs": True, "top_logprobs": 2}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="declared", messages=HELLO, **fields)
        assert refused.value.body["param"] == param
