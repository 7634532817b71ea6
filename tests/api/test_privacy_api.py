"""Privacy export and erasure through a running server, on SQLite and PostgreSQL: an export
holds exactly the subject's rows (never another subject's), an erasure deletes them all, keeps
the ledger's counts and costs under a pseudonym, and a later export, list or usage query shows
nothing of the subject; an account's erasure takes its keys with it.

Requests go to a model served by the project's fake upstream (fast and deterministic); the
server runs its workers (batches, erasures) in-process.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from aiservice.testing import FakeUpstream
from batch_support import chat_line, submit, wait_for
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    assert_error_envelope,
    bearer,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import Account, new_account, table_rows

REMOTE = "remote-mini"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeUpstream,
    postgres_databases: PostgresDatabases,
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp(f"aiservice-privacy-{request.param}")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "smollm2-135m-instruct"\n\n[[models]]\nname = "{REMOTE}"\n'
        f'provider = "openai"\nbase_url = "{fake.base_url}"\nupstream_model = "gpt-4o-mini"\n'
        "price_input_per_1m = 1.0\nprice_output_per_1m = 2.0\nmax_retries = 0\n",
        encoding="utf-8",
    )
    database = postgres_databases.create() if request.param == "postgres" else None
    running = start_server(
        home,
        env={
            "DATABASE_URL": database,
            "AISERVICE_DATABASE_URL": None,
            "AISERVICE_WORKER_POLL_S": "0.1",
            "AISERVICE_LEDGER_FLUSH_S": "0.1",
            "AISERVICE_PRIVACY_SUBJECT_KEYS": '["user_id", "customer"]',
        },
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def ann(server: RunningServer) -> Account:
    return new_account(server, "privacy-ann")


def sdk(server: RunningServer, key: str) -> OpenAI:
    return OpenAI(base_url=server.api_url, api_key=key, max_retries=0)


def admin_post(
    server: RunningServer, path: str, body: Any, key: str = MASTER_KEY
) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, headers=bearer(key), timeout=60)


def export(server: RunningServer, subject: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    response = admin_post(server, "/v1/admin/privacy/export", {"subject": subject, **extra})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert (
        lines[0]["object"] == "privacy.export" and lines[-1]["object"] == "privacy.export.summary"
    )
    body = lines[1:-1]
    counted: dict[str, int] = {}
    for line in body:
        counted[line["object"]] = counted.get(line["object"], 0) + 1
    assert lines[-1]["counts"] == counted  # the summary counts what came before it
    return body


def of_kind(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["object"] == kind]


def erase(server: RunningServer, subject: dict[str, Any], **extra: Any) -> dict[str, Any]:
    started = admin_post(server, "/v1/admin/privacy/erase", {"subject": subject, **extra})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["object"] == "privacy.erasure" and body["id"].startswith("erasure_")
    assert body["status"] in {"in_progress", "completed"}

    def done() -> dict[str, Any] | None:
        got = httpx.get(
            f"{server.base_url}/v1/admin/privacy/erasures/{body['id']}",
            headers=bearer(MASTER_KEY),
            timeout=30,
        )
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] == "completed" else None

    return wait_until(done, timeout=60, what="the erasure completed")


def seed(server: RunningServer, account: Account, person: str) -> None:
    """What the e-mail manager stores about one of its end users, `person`: two stored chat
    completions, a stored response, a conversation with items, a batch of two lines."""
    client = sdk(server, account.key)
    labels = {"user_id": person, "feature": "triage"}
    for question in ("first", "second"):
        client.chat.completions.create(
            model=REMOTE,
            messages=[{"role": "user", "content": f"{question} question of {person}"}],
            store=True,
            metadata=labels,
            user=f"end-{person}",
        )
    client.responses.create(
        model=REMOTE, input=f"a response for {person}", store=True, metadata=labels,
        user=f"end-{person}",
    )  # fmt: skip
    conversation = client.conversations.create(
        metadata={"user_id": person},
        items=[{"type": "message", "role": "user", "content": f"hello from {person}"}],
    )
    client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "and again"}]
    )
    lines = [chat_line(f"{person}-{i}", REMOTE, f"line {i} of {person}") for i in range(2)]
    batch = submit(client, lines, metadata={"user_id": person})
    assert wait_for(client, batch.id).status == "completed"


def ledger_totals(server: RunningServer) -> tuple[int, int, int, float]:
    rows = table_rows(server)
    return (
        len(rows),
        sum(row["input_tokens"] for row in rows),
        sum(row["output_tokens"] for row in rows),
        round(sum(row["cost_usd"] for row in rows), 9),
    )


def test_an_export_holds_exactly_the_subjects_rows(server: RunningServer, ann: Account) -> None:
    person, other = f"p-{secrets.token_hex(3)}", f"q-{secrets.token_hex(3)}"
    seed(server, ann, person)
    seed(server, ann, other)
    lines = export(server, {"metadata": {"user_id": person}})
    assert other not in json.dumps(lines)  # another subject's rows never
    completions = of_kind(lines, "chat.completion")
    assert len(completions) == 2
    assert all(line["metadata"]["user_id"] == person for line in completions)
    assert all(line["request"]["messages"] for line in completions)
    assert [line["metadata"]["user_id"] for line in of_kind(lines, "response")] == [person]
    assert len(of_kind(lines, "conversation")) == 1
    assert len(of_kind(lines, "conversation.item")) == 2
    assert len(of_kind(lines, "batch")) == 1 and len(of_kind(lines, "batch.request")) == 2
    files = {line["id"] for line in of_kind(lines, "file")}
    assert len(files) == 2  # the batch's input and output
    assert {line["file_id"] for line in of_kind(lines, "file.content")} == files
    usage = of_kind(lines, "usage.record")
    assert len(usage) == 5  # two chats, a response, two batch lines
    assert all(line["metadata"]["user_id"] == person for line in usage)
    # By the end user's `user` field: what carries it.
    by_user = export(server, {"user": f"end-{person}"})
    assert len(of_kind(by_user, "chat.completion")) == 2
    assert len(of_kind(by_user, "response")) == 1
    assert len(of_kind(by_user, "usage.record")) == 3
    assert of_kind(by_user, "conversation") == [] and of_kind(by_user, "batch") == []


def test_an_erasure_deletes_the_subject_and_keeps_the_ledgers_totals(
    server: RunningServer, ann: Account
) -> None:
    person, other = f"e-{secrets.token_hex(3)}", f"k-{secrets.token_hex(3)}"
    seed(server, ann, person)
    seed(server, ann, other)
    wait_until(
        lambda: len(of_kind(export(server, {"metadata": {"user_id": other}}), "usage.record")) == 5,
        what="every usage record of the seeding written",
    )
    kept = export(server, {"metadata": {"user_id": other}})
    before = ledger_totals(server)

    erasure = erase(server, {"metadata": {"user_id": person}})
    assert erasure["deleted"] == {
        "chat.completion": 2,
        "response": 1,
        "conversation": 1,
        "conversation.item": 2,
        "batch": 1,
        "file": 2,
    }
    assert erasure["pseudonymized"] == {"usage.record": 5}
    assert export(server, {"metadata": {"user_id": person}}) == []
    assert ledger_totals(server) == before  # billing totals stay right
    assert export(server, {"metadata": {"user_id": other}}) == kept
    # Nothing of the subject in what the owner can list either.
    client = sdk(server, ann.key)
    listed = client.chat.completions.list(metadata={"user_id": person})
    assert listed.data == []
    assert person not in json.dumps(table_rows(server), default=str)
    # Erasing again: a new erasure that finds nothing.
    again = erase(server, {"metadata": {"user_id": person}})
    assert again["id"] != erasure["id"] and again["deleted"] == {}


def test_an_accounts_erasure_takes_its_content_keys_and_login(server: RunningServer) -> None:
    bob = new_account(server, "privacy-bob")
    client = sdk(server, bob.key)
    client.files.create(file=("notes.txt", b"bob's notes"), purpose="user_data")
    client.chat.completions.create(
        model=REMOTE, messages=[{"role": "user", "content": "hi"}], store=True
    )
    lines = export(server, {"account": bob.email})
    assert [line["email"] for line in of_kind(lines, "user")] == [bob.email]
    assert [line["id"] for line in of_kind(lines, "api_key")] == [bob.key_id]
    assert all("key" not in line for line in of_kind(lines, "api_key"))  # never a secret
    assert len(of_kind(lines, "file")) == 1 and len(of_kind(lines, "chat.completion")) == 1
    wait_until(
        lambda: [row for row in table_rows(server) if row["owner"] == bob.user_id],
        what="the chat's usage record written",
    )
    before = ledger_totals(server)

    erasure = erase(server, {"account": bob.user_id})
    assert erasure["deleted"]["file"] == 1 and erasure["deleted"]["chat.completion"] == 1
    assert erasure["deleted"]["api_key"] == 1 and erasure["deleted"]["user"] == 1
    assert erasure["pseudonymized"]["usage.record"] >= 1
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    gone = admin_post(server, "/v1/admin/privacy/export", {"subject": {"account": bob.email}})
    assert_error_envelope(gone, 404)
    assert ledger_totals(server) == before
    assert not [row for row in table_rows(server) if row["owner"] == bob.user_id]


def test_within_narrows_a_subject_to_one_account(server: RunningServer, ann: Account) -> None:
    carl = new_account(server, "privacy-carl")
    person = f"w-{secrets.token_hex(3)}"
    for account in (ann, carl):
        sdk(server, account.key).chat.completions.create(
            model=REMOTE,
            messages=[{"role": "user", "content": "hi"}],
            store=True,
            metadata={"customer": person},
        )
    both = export(server, {"metadata": {"customer": person}})
    assert len(of_kind(both, "chat.completion")) == 2
    only = export(server, {"metadata": {"customer": person}}, within=carl.email)
    assert len(of_kind(only, "chat.completion")) == 1
    erase(server, {"metadata": {"customer": person}}, within=carl.email)
    left = export(server, {"metadata": {"customer": person}})
    assert [line["metadata"]["customer"] for line in of_kind(left, "chat.completion")] == [person]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"subject": {}}, 400, None),
        ({"subject": {"account": "a@example.com", "user": "u"}}, 400, None),
        ({"subject": {"metadata": {"user_id": "1", "customer": "2"}}}, 400, None),
        ({"subject": {"metadata": {"feature": "triage"}}}, 400, "unknown_subject_key"),
        ({"subject": {"account": "nobody@example.com"}}, 404, None),
        ({"subject": {"user": "u"}, "within": "nobody@example.com"}, 404, None),
        ({"subject": {"user": "u"}, "confirm": True}, 400, None),
    ],
)
def test_a_bad_subject_is_a_clear_error(
    server: RunningServer, body: dict[str, Any], status: int, code: str | None
) -> None:
    for route in ("export", "erase"):
        response = admin_post(server, f"/v1/admin/privacy/{route}", body)
        assert_error_envelope(response, status)
        if code is not None:
            assert response.json()["error"]["code"] == code


def test_the_privacy_routes_are_for_admins_only(server: RunningServer, ann: Account) -> None:
    body = {"subject": {"user": "anyone"}}
    for route in ("export", "erase"):
        assert_error_envelope(admin_post(server, f"/v1/admin/privacy/{route}", body, ann.key), 404)
    unknown = httpx.get(
        f"{server.base_url}/v1/admin/privacy/erasures/erasure_nope",
        headers=bearer(MASTER_KEY),
        timeout=30,
    )
    assert_error_envelope(unknown, 404)


def test_exports_and_erasures_are_audited_without_the_subjects_value(
    server: RunningServer,
) -> None:
    person = f"a-{secrets.token_hex(3)}"
    body = {"subject": {"metadata": {"user_id": person}}}
    exported = admin_post(server, "/v1/admin/privacy/export", body)
    export_id = json.loads(exported.text.splitlines()[0])["id"]
    erased = admin_post(server, "/v1/admin/privacy/erase", body)
    for action, target, response in (
        ("privacy.export", export_id, exported),
        ("privacy.erase", erased.json()["id"], erased),
    ):
        listed = httpx.get(
            f"{server.base_url}/v1/admin/audit",
            params={"action": action, "target": target},
            headers=bearer(MASTER_KEY),
            timeout=30,
        ).json()
        [entry] = listed["data"]
        assert entry["actor"] == "admin"  # the master key
        assert entry["request_id"] == response.headers["x-request-id"]
        assert entry["details"] == {"subject": "metadata.user_id"}
        assert person not in json.dumps(entry)
