"""Session fixtures: real aiservice servers, the official SDK and a raw HTTP client.

`server`/`client`/`http` are one server on its default SQLite file. The `stored_*` fixtures
are parametrised over both storage backends (test ids `[sqlite]` and `[postgres]`): a server
on its own SQLite home, and one on a fresh PostgreSQL database made for this run.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from support import MASTER_KEY, PostgresDatabases, RunningServer, start_server, stop_server

# Whatever the test process's environment says, these servers choose their database here.
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("aiservice-home"))
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def client(server: RunningServer) -> OpenAI:
    """The official SDK, pointed at the running server. No retries: a failure must show."""
    return sdk_client(server)


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """A raw HTTP client for what the SDK hides (bad bodies, headers, raw SSE)."""
    with raw_client(server) as raw:
        yield raw


def sdk_client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


def raw_client(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=120,
    )


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Makes fresh databases on the test PostgreSQL; every one is dropped at the end."""
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """A fresh database, `aiservice_test_<random hex>`, for this test run (dropped at its end)."""
    return postgres_databases.create()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on the default SQLite file of its own AISERVICE_HOME."""
    running = start_server(tmp_path_factory.mktemp("aiservice-sqlite"), env=NO_DATABASE_URL)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[RunningServer]:
    """A server on the run's PostgreSQL database, given as DATABASE_URL."""
    running = start_server(
        tmp_path_factory.mktemp("aiservice-postgres"),
        env={**NO_DATABASE_URL, "DATABASE_URL": postgres_url},
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def stored_server(request: pytest.FixtureRequest) -> RunningServer:
    """The server of one storage backend; both servers live until the session ends."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def stored_client(stored_server: RunningServer) -> OpenAI:
    return sdk_client(stored_server)


@pytest.fixture(scope="session")
def stored_http(stored_server: RunningServer) -> Iterator[httpx.Client]:
    with raw_client(stored_server) as raw:
        yield raw
