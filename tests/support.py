"""Test support: start real servers, validate bodies against the OpenAI spec, read SSE."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def _spec_dir() -> Path:
    """The shared wire-format references: beside the checkout, or at the workplace's fixed path."""
    candidates = [
        os.environ.get("AISERVICE_SPEC_DIR"),
        ROOT.parent / "shared" / "spec",
        "/work/shared/spec",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "openai-openapi-subset.json").is_file():
            return Path(candidate)
    raise FileNotFoundError("openai-openapi-subset.json not found; set AISERVICE_SPEC_DIR")


SPEC_DIR = _spec_dir()
MASTER_KEY = "sk-test-master-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    database_url: str | None = None  # the server's DATABASE_URL; None: the SQLite file in home

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def log_lines(self) -> list[dict]:
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"raw": raw})
        return lines


def start_server(
    home: Path,
    *,
    env: dict[str, str | None] | None = None,
    args: list[str] | None = None,
    log_path: Path | None = None,
) -> RunningServer:
    """Start `aiservice serve` on a free port and wait until /ready says the model is loaded.

    `env` is laid over the test process's environment; a None value removes that variable
    (e.g. {"AISERVICE_MASTER_KEY": None} for the key bootstrap). The server's stdout and stderr
    go to `log_path`, by default `home/server.log`.
    """
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = log_path or home / "server.log"
    merged_env: dict[str, str | None] = {
        **os.environ,
        "AISERVICE_HOME": str(home),
        "AISERVICE_MASTER_KEY": MASTER_KEY,
        # A key in the developer's environment would send gpt-4o* to OpenAI.
        "OPENAI_API_KEY": None,
        **(env or {}),
    }
    process_env = {name: value for name, value in merged_env.items() if value is not None}
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice", "serve", "--port", str(port), *(args or [])],
        env=process_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    database_url = process_env.get("AISERVICE_DATABASE_URL") or process_env.get("DATABASE_URL")
    server = RunningServer(f"http://127.0.0.1:{port}", home, process, log_path, database_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server not ready in time:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@cache
def _openai_spec() -> dict:
    return json.loads((SPEC_DIR / "openai-openapi-subset.json").read_text(encoding="utf-8"))


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    spec = _openai_spec()
    registry = Registry().with_resource("urn:openai-spec", DRAFT202012.create_resource(spec))
    return Draft202012Validator(
        {"$ref": f"urn:openai-spec#/components/schemas/{schema_name}"}, registry=registry
    )


def assert_matches_schema(body: object, schema_name: str) -> None:
    """Fail with every violation if `body` does not validate against the named OpenAI schema."""
    errors = sorted(_validator(schema_name).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name} violations:\n" + "\n".join(
        f"- {list(e.path)}: {e.message[:300]}" for e in errors
    )


def assert_message_list_matches_schema(body: dict) -> None:
    """Validate a stored completion's message list against ChatCompletionMessageList, roles aside.

    The spec builds each item on ChatCompletionResponseMessage, whose `role` is pinned to
    "assistant"; OpenAI's API (and aiservice) return each stored message's real role (system,
    user, assistant, tool...). So a copy with every role set to "assistant" is validated and
    the caller asserts the real roles itself.
    """
    relabelled = copy.deepcopy(body)
    for item in relabelled.get("data", []):
        item["role"] = "assistant"
    assert_matches_schema(relabelled, "ChatCompletionMessageList")


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def run_cli(
    *args: str, home: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run `aiservice ARGS` to completion with a clean AISERVICE_* environment (no database
    URL either, so the SQLite file in `home` is used unless `env` names one).

    With `input`, it is the command's stdin and the command runs without a controlling
    terminal, so that password prompts (getpass) read it instead of /dev/tty."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_") and k.upper() != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, "-m", "aiservice", *args],
        env={**clean, "AISERVICE_HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        input=input,
        start_new_session=input is not None,
        timeout=60,  # a config that is wrongly accepted starts a server: fail, do not hang
    )


def run_in_thread(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own in another thread, leaving the test
    thread's event loop (pytest-asyncio's) untouched."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


# The test PostgreSQL: a server with trust auth, reached through its maintenance database.
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class PostgresDatabases:
    """Fresh, uniquely named databases on the test PostgreSQL; drop_all() removes them."""

    admin_url: str = POSTGRES_ADMIN_URL
    names: list[str] = field(default_factory=list)

    def create(self) -> str:
        """A new empty database; returns its SQLAlchemy async URL."""
        name = f"aiservice_test_{secrets.token_hex(6)}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        url = make_url(self.admin_url).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        while self.names:
            # WITH (FORCE) (PostgreSQL 13+) terminates connections a server left behind.
            self._execute(f'DROP DATABASE IF EXISTS "{self.names.pop()}" WITH (FORCE)')

    def _execute(self, statement: str) -> None:
        async def execute() -> None:
            connection = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        run_in_thread(execute)


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


ERROR_KEYS = {"message", "type", "param", "code"}
_NOT_CHECKED = object()


def assert_error_envelope(
    response: httpx.Response,
    status: int,
    *,
    type: str = "invalid_request_error",
    param: object = _NOT_CHECKED,
    code: object = _NOT_CHECKED,
) -> dict:
    """Assert OpenAI's error envelope: the status, exactly the four keys, a real message and no
    traceback; `param` and `code` are compared when given. Returns the `error` object."""
    text = response.text
    assert response.status_code == status, text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert "Traceback" not in text and 'File "' not in text, text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert error["type"] == type, error
    if param is not _NOT_CHECKED:
        assert error["param"] == param, error
    if code is not _NOT_CHECKED:
        assert error["code"] == code, error
    return error


def wait_for_log_line(
    server: RunningServer,
    matches: Callable[[dict], bool],
    *,
    after: int = 0,
    timeout: float = 30.0,
    what: str,
) -> dict:
    """The first JSON log line from index `after` on that `matches`, polling until it is written."""

    def find() -> dict | None:
        return next((line for line in server.log_lines()[after:] if matches(line)), None)

    return wait_until(find, timeout=timeout, what=what)


def wait_for_access_line(server: RunningServer, request_id: str, timeout: float = 30.0) -> dict:
    """The access line the server logged for the request with this id."""
    return wait_for_log_line(
        server,
        lambda line: (
            line.get("logger") == "aiservice.access" and line.get("request_id") == request_id
        ),
        timeout=timeout,
        what=f"the access line of request {request_id}",
    )


def new_email(label: str = "user") -> str:
    """An e-mail address no other test uses, for accounts made on a shared server."""
    return f"{label}-{secrets.token_hex(4)}@example.com"


def basic_auth(email: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_add_user(
    server: RunningServer, email: str, password: str, *, is_admin: bool = False
) -> dict:
    """Add a user through the admin API with the master key; returns the user object."""
    response = httpx.post(
        f"{server.base_url}/v1/admin/users",
        json={"email": email, "password": password, "is_admin": is_admin},
        headers=bearer(MASTER_KEY),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def admin_create_key(server: RunningServer, email: str, name: str = "default") -> str:
    """Create an API key for `email` through the admin API; returns the key itself."""
    response = httpx.post(
        f"{server.base_url}/v1/admin/keys",
        json={"email": email, "name": name},
        headers=bearer(MASTER_KEY),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def server_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess:
    """Run `aiservice ARGS` on a running server's home and database (e.g. `users add`)."""
    env = {"DATABASE_URL": server.database_url} if server.database_url else None
    return run_cli(*args, home=server.home, env=env)


def cli_add_user(server: RunningServer, email: str, password: str) -> None:
    """Add a user to a running server with the real CLI: `aiservice users add`."""
    result = server_cli(server, "users", "add", email, "--password", password)
    assert result.returncode == 0, result.stdout + result.stderr


def cli_create_key(server: RunningServer, email: str) -> str:
    """Create an API key for `email` with the real CLI; returns the key (its stdout)."""
    result = server_cli(server, "keys", "create", email)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@cache
def _openresponses_spec() -> dict:
    return json.loads((SPEC_DIR / "openresponses-openapi.json").read_text(encoding="utf-8"))


@cache
def _openresponses_validator(schema_name: str) -> Draft202012Validator:
    spec = _openresponses_spec()
    assert schema_name in spec["components"]["schemas"], f"no Open Responses schema {schema_name}"
    registry = Registry().with_resource("urn:openresponses-spec", DRAFT202012.create_resource(spec))
    return Draft202012Validator(
        {"$ref": f"urn:openresponses-spec#/components/schemas/{schema_name}"}, registry=registry
    )


def assert_matches_openresponses_schema(body: object, schema_name: str) -> None:
    """Fail with every violation if `body` does not validate against the named schema of the
    Open Responses specification (openresponses-openapi.json), e.g. `ResponseResource`."""
    validator = _openresponses_validator(schema_name)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"Open Responses {schema_name} violations:\n" + "\n".join(
        f"- {list(e.path)}: {e.message[:300]}" for e in errors
    )


def responses_sse_events(response: httpx.Response) -> list[dict]:
    """The events of a Responses API stream, in order: each block's `data:` parsed as JSON.

    Blocks are `event: <type>` and `data: <json>` lines ended by a blank line; the `event:`
    name must equal the data's `type`. Comments (`: ping`), `id:` and `retry:` are skipped.
    A block without an `event:` line, or whose data is not a JSON object (such as `[DONE]`),
    fails."""
    events: list[dict] = []
    name: str | None = None
    data: list[str] = []

    def flush() -> None:
        nonlocal name, data
        if name is None and not data:
            return
        assert name is not None, f"SSE block without an event: line: {data}"
        assert data, f"SSE block {name!r} without data"
        payload = "\n".join(data)
        try:
            event = json.loads(payload)
        except ValueError as error:
            raise AssertionError(f"SSE data of {name!r} is not JSON: {payload!r}") from error
        assert isinstance(event, dict), f"SSE data of {name!r} is not an object: {payload!r}"
        assert event.get("type") == name, f"event: {name!r} but data type {event.get('type')!r}"
        events.append(event)
        name, data = None, []

    for line in response.iter_lines():
        if not line:
            flush()
        elif line.startswith((":", "id:", "retry:")):
            continue  # comments (keep-alive pings) and SSE fields that carry no event
        elif line.startswith("event:"):
            assert name is None, f"two event: lines in one SSE block: {name!r}, {line!r}"
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))
        else:
            raise AssertionError(f"unexpected SSE line: {line!r}")
    flush()
    return events


def assert_text_completion_chunk_matches_schema(chunk: dict) -> None:
    """Validate a streamed text completion chunk against CreateCompletionResponse.

    The spec says the streamed and whole objects share one shape, and gives `finish_reason`
    as a string and `usage` as an object; OpenAI's streams (and aiservice's) send `null` for
    the first until a choice ends, and for the second on every chunk but the last with
    `include_usage`. So a copy with each null finish_reason set to "stop" and a null usage
    left out is validated; the caller asserts the real values itself."""
    relabelled = copy.deepcopy(chunk)
    if "usage" in relabelled and relabelled["usage"] is None:
        del relabelled["usage"]
    for choice in relabelled.get("choices", []):
        if choice.get("finish_reason") is None:
            choice["finish_reason"] = "stop"
    assert_matches_schema(relabelled, "CreateCompletionResponse")
