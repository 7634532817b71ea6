"""Test support: start real servers, validate bodies against the OpenAI spec, read SSE."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

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
        **(env or {}),
    }
    process_env = {name: value for name, value in merged_env.items() if value is not None}
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice", "serve", "--port", str(port), *(args or [])],
        env=process_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(f"http://127.0.0.1:{port}", home, process, log_path)
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


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


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
