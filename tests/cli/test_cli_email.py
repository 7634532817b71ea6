"""`aiservice email …` on the project's sample messages, against a real server (--server)
whose gpt-4o-mini is the fake upstream: one .eml, a whole mbox (table, JSON, CSV), and files
that are not messages."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiservice.testing.fake_upstream import FakeUpstream
from support import MASTER_KEY, RunningServer, run_cli, start_server, stop_server

MESSAGES = Path(__file__).resolve().parents[1] / "mail" / "messages"


def _reply(body: dict) -> str:
    """A valid answer for the schema the request asks for (the fake knows no schema)."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") or {}
    if "category" in properties:
        return json.dumps({"category": "urgent", "reason": "It asks for an answer today."})
    if "priority" in properties:
        return json.dumps(
            {"needs_reply": True, "is_newsletter": False, "is_cold_outreach": False, "priority": 4}
        )
    return "Merci pour votre message, je reviens vers vous demain."


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(reply=_reply) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("aiservice-email-cli")
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        '[[models]]\nname = "gpt-4o-mini"\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\n',
        encoding="utf-8",
    )
    server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
    yield server
    stop_server(server)


def email_cli(gateway: RunningServer, tmp_path: Path, *args: str):
    return run_cli(
        "email", *args, "--server", gateway.base_url, "--api-key", MASTER_KEY, home=tmp_path
    )


def test_classify_one_message_as_json(gateway: RunningServer, tmp_path: Path) -> None:
    done = email_cli(gateway, tmp_path, "classify", str(MESSAGES / "latin1_qp_fr.eml"), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["success"] is True and answer["category"] == "urgent"


def test_reply_to_one_message(
    gateway: RunningServer, tmp_path: Path, upstream: FakeUpstream
) -> None:
    done = email_cli(gateway, tmp_path, "reply", str(MESSAGES / "reply_thread_fr.eml"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reply"].startswith("Merci")
    sent = json.dumps([r.json for r in upstream.requests if r.path == "/v1/chat/completions"][-1])
    assert "Livraison du lot 2" in sent  # the message's subject reached the model


def test_every_message_of_an_mbox(gateway: RunningServer, tmp_path: Path) -> None:
    mbox = str(MESSAGES / "five.mbox")
    as_json = email_cli(gateway, tmp_path, "triage", mbox, "--json")
    assert as_json.returncode == 0, as_json.stderr
    answers = json.loads(as_json.stdout)
    assert len(answers) == 5 and all(a["success"] and a["priority"] == 4 for a in answers)
    as_csv = email_cli(gateway, tmp_path, "triage", mbox, "--csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0][:3] == ["subject", "success", "priority"] and len(rows) == 6
    table = email_cli(gateway, tmp_path, "triage", mbox)
    assert table.returncode == 0 and "5 messages" in table.stdout


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary", b"just some words, no headers"])
def test_a_file_that_is_not_a_message_exits_2_naming_it(
    gateway: RunningServer, tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "not-a-message.eml"
    bad.write_bytes(content)
    done = email_cli(gateway, tmp_path, "classify", str(bad))
    assert done.returncode == 2
    assert "not-a-message.eml" in done.stderr


def test_a_missing_file_exits_2(gateway: RunningServer, tmp_path: Path) -> None:
    done = email_cli(gateway, tmp_path, "summary", str(tmp_path / "nowhere.eml"))
    assert done.returncode == 2 and "nowhere.eml" in done.stderr
