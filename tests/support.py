"""Test support: start real servers, validate bodies against the OpenAI spec, read SSE."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]


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
    home: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> RunningServer:
    """Start `aiservice serve` on a free port and wait until /ready says the model is loaded."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    process_env = {
        **os.environ,
        "AISERVICE_HOME": str(home),
        "AISERVICE_MASTER_KEY": MASTER_KEY,
        **(env or {}),
    }
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
