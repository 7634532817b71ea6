"""Fixtures of the client-compatibility suite: `backend` runs a case on the embedded model (the
session's `server`) and on an upstream model served by the fake upstream (`upstream_server`).

The client libraries must not reach the internet: their tracing and telemetry are switched off
here, before any of them is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from compat_support import LOCAL_MODEL, UPSTREAM_MODEL, Backend, schema_reply

from aiservice.testing.fake_upstream import FakeUpstream
from support import RunningServer, start_server, stop_server

_OFFLINE = {
    "OPENAI_AGENTS_DISABLE_TRACING": "1",  # openai-agents would export traces to OpenAI
    "OPENAI_AGENTS_DONT_LOG_MODEL_DATA": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LOGFIRE_SEND_TO_LOGFIRE": "false",
    "DO_NOT_TRACK": "1",
}
for _name, _value in _OFFLINE.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def compat_fake() -> Iterator[FakeUpstream]:
    """The fake upstream behind `upstream_server`, answering JSON schemas with an instance."""
    with FakeUpstream(reply=schema_reply) as fake:
        yield fake


@pytest.fixture(scope="session")
def upstream_server(
    tmp_path_factory: pytest.TempPathFactory, compat_fake: FakeUpstream
) -> Iterator[RunningServer]:
    """A server whose only model is an upstream one, on the fake: no local model is loaded."""
    home = tmp_path_factory.mktemp("aiservice-compat-upstream")
    (home / "config.toml").write_text(
        "[aliases]\n\n"
        f'[[models]]\nname = "{UPSTREAM_MODEL}"\nprovider = "openai"\n'
        f'base_url = "{compat_fake.base_url}"\nmax_retries = 0\n',
        encoding="utf-8",
    )
    running = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield running
    stop_server(running)


@pytest.fixture(scope="session", params=["embedded", "upstream"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The embedded model on the session's `server`, or the upstream model behind the fake."""
    if request.param == "embedded":
        return Backend("embedded", request.getfixturevalue("server"), LOCAL_MODEL)
    fake = request.getfixturevalue("compat_fake")
    return Backend("upstream", request.getfixturevalue("upstream_server"), UPSTREAM_MODEL, fake)
