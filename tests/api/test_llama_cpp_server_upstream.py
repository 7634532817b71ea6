"""llama-cpp-python's own OpenAI-compatible server, on the bundled GGUF, as a second real
upstream: answers pass through, and what it drops (`n`: one choice whatever is asked;
`logprobs`) gives the client an error or, declared, a 400 — never a shorter answer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.providers.bundled_model import bundled_model_path
from support import MASTER_KEY, free_port, start_server, stop_server

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"]
    command += ["--model_alias", "smol", "--n_threads", "1"]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, llama_server: str) -> Iterator[OpenAI]:
    home: Path = tmp_path_factory.mktemp("llama-cpp-upstream")
    entries = [
        ("llama", ""),
        ("llama-declared", "supports_n = false\nsupports_logprobs = false\n"),
    ]
    (home / "config.toml").write_text(
        "\n".join(
            f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{llama_server}"\n'
            f'upstream_model = "smol"\nmax_retries = 0\ntimeout_s = 120\n{extra}'
            for name, extra in entries
        ),
        encoding="utf-8",
    )
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=180)
    stop_server(server)


def test_a_chat_completion_passes_through_a_llama_cpp_server(client: OpenAI) -> None:
    answer = client.chat.completions.create(model="llama", messages=HELLO, max_tokens=8)
    assert answer.model == "llama" and len(answer.choices) == 1
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.completion_tokens >= 1


def test_n_the_server_drops_is_an_error_and_declared_a_400(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as short:
        client.chat.completions.create(model="llama", messages=HELLO, max_tokens=4, n=2)
    assert short.value.status_code == 502 and "of the 2 choices" in short.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="llama-declared", messages=HELLO, n=2)
    assert refused.value.body["param"] == "n"
