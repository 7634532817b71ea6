"""JavaScript clients against a real server: the official openai TypeScript SDK and the Vercel AI
SDK (`ai` with `@ai-sdk/openai`), as installed by `npm ci` from tests/compat/js/package-lock.json.
Each script in tests/compat/js/ prints one JSON object (one entry per step, `{"error": ...}` for
a step that threw), asserted here; on the embedded model and behind the fake upstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from compat_support import FAKE_TEXT, Backend, Segment

JS_DIR = Path(__file__).resolve().parent / "js"


def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


NODE_MAJOR = _node_major()


def test_node_18_or_later_is_on_the_path():
    # CI and this machine have node 20: a missing node fails here, it is not skipped.
    assert NODE_MAJOR is not None and NODE_MAJOR >= 18, f"needs node >= 18 (found {NODE_MAJOR})"


def _installed_matches_lock() -> bool:
    """node_modules holds exactly the lock's packages (npm's own record of what it installed)."""
    installed = JS_DIR / "node_modules" / ".package-lock.json"
    if not installed.is_file():
        return False
    locked = json.loads((JS_DIR / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    present = json.loads(installed.read_text(encoding="utf-8")).get("packages")
    return present == {path: entry for path, entry in locked.items() if path}


@pytest.fixture(scope="session")
def npm_installed() -> None:
    """`npm ci` once per session, from the committed lock; skipped when node_modules already
    holds exactly that lock, so a second test session on the same tree does not delete the
    packages under a first one's running scripts."""
    if _installed_matches_lock():
        return
    npm = shutil.which("npm")
    assert npm is not None, "node is installed without npm"
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


_results: dict[tuple[str, str], dict[str, Any]] = {}


def run_script(backend: Backend, script: str) -> dict[str, Any]:
    """The JSON a script printed against `backend` (each script runs once per backend)."""
    key = (backend.name, script)
    if key not in _results:
        env = {
            **os.environ,
            "AISERVICE_BASE_URL": backend.api_url,
            "AISERVICE_API_KEY": backend.api_key,
            "AISERVICE_MODEL": backend.model,
        }
        result = subprocess.run(
            ["node", script], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        _results[key] = json.loads(result.stdout.strip().splitlines()[-1])
    return _results[key]


def step(backend: Backend, script: str, name: str) -> dict[str, Any]:
    """One step's result; a step that threw fails the test with the error it reported."""
    result = run_script(backend, script)[name]
    assert "error" not in result, result["error"]
    return result


@pytest.fixture
def js(npm_installed: None, backend: Backend) -> Backend:
    return backend


def test_sdk_chat_completion(js: Backend):
    chat = step(js, "openai_sdk.mjs", "chat")
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    assert chat["finish_reason"] in ("stop", "length") and isinstance(chat["content"], str)
    usage = chat["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 32
    if not js.embedded:
        assert chat["content"] == FAKE_TEXT


def test_sdk_response(js: Backend):
    response = step(js, "openai_sdk.mjs", "responses")
    assert response["object"] == "response" and response["id"].startswith("resp")
    assert response["status"] in ("completed", "incomplete")
    assert response["output_types"] == ["message"] and isinstance(response["output_text"], str)
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 0 < usage["output_tokens"] <= 32
    if not js.embedded:
        assert response["output_text"] == FAKE_TEXT


def test_sdk_legacy_completion(js: Backend):
    completion = step(js, "openai_sdk.mjs", "completions")
    assert completion["object"] == "text_completion"
    assert completion["finish_reason"] in ("stop", "length") and isinstance(completion["text"], str)
    assert 0 < completion["usage"]["completion_tokens"] <= 16


def test_generate_text_over_two_turns(js: Backend):
    first = step(js, "vercel_text.mjs", "first")
    second = step(js, "vercel_text.mjs", "second")
    for turn in (first, second):
        assert turn["finishReason"] in ("stop", "length")
        assert turn["responseId"].startswith("resp") and isinstance(turn["text"], str)
        assert turn["usage"]["inputTokens"] > 0 and turn["usage"]["outputTokens"] > 0
    assert second["responseId"] != first["responseId"]
    # The provider refers to the stored first answer instead of sending it again.
    references = [i for i in second["requestBody"]["input"] if i.get("type") == "item_reference"]
    assert len(references) == 1
    if not js.embedded:
        assert first["text"] == second["text"] == FAKE_TEXT
        messages = js.last_upstream_body()["messages"]
        texts = [m["content"] for m in messages if m["role"] in ("user", "assistant")]
        assert texts == ["My name is Ada.", FAKE_TEXT, "What is my name?"]


def test_generate_object_with_a_nested_schema(js: Backend):
    result = step(js, "vercel_object.mjs", "object")
    assert result["finishReason"] == "stop"
    assert isinstance(Segment.model_validate(result["object"]), Segment)
    assert result["usage"]["outputTokens"] > 0
    js.assert_upstream_got_segment_schema()
