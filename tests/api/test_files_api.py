"""The Files API through the official SDK against a running server: upload, retrieve, list
(purpose, order, limit, after), content and delete, OpenAI's shapes checked against the spec,
expiry, the size and line limits, and another tenant's ids.

The server runs with small limits (4 KiB files, 3-line batch files) so they can be reached.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from support import (
    MASTER_KEY,
    RunningServer,
    assert_error_envelope,
    assert_matches_schema,
    bearer,
    start_server,
    stop_server,
)
from usage_support import new_account

MAX_BYTES = 4096
MAX_LINES = 3
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("aiservice-files")
    running = start_server(
        home,
        env={
            **NO_DATABASE_URL,
            "AISERVICE_MAX_FILE_BYTES": str(MAX_BYTES),
            "AISERVICE_BATCH_MAX_LINES": str(MAX_LINES),
        },
    )
    yield running
    stop_server(running)


@pytest.fixture
def account_client(server: RunningServer) -> OpenAI:
    """A client of a fresh user: their file list starts empty."""
    account = new_account(server, "files")
    return OpenAI(base_url=server.api_url, api_key=account.key, max_retries=0)


def upload(server: RunningServer, key: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/files", headers=bearer(key), timeout=30, **kwargs)


def test_a_file_goes_up_and_comes_back_byte_for_byte(server: RunningServer, account_client):
    content = "é".encode() * 100 + b"\n\x00\xff"
    created = account_client.files.create(file=("notes.bin", content), purpose="user_data")
    assert (created.bytes, created.filename, created.purpose) == (
        len(content),
        "notes.bin",
        "user_data",
    )
    assert created.id.startswith("file-") and created.status == "processed"
    assert created.expires_at is None  # user_data files are kept until deleted
    body = httpx.get(
        f"{server.base_url}/v1/files/{created.id}",
        headers=bearer(account_client.api_key),
        timeout=30,
    ).json()
    assert_matches_schema(body, "OpenAIFile")
    assert account_client.files.retrieve(created.id) == created
    assert account_client.files.content(created.id).content == content
    deleted = account_client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    assert_matches_schema(deleted.model_dump(), "DeleteFileResponse")
    with pytest.raises(openai.NotFoundError):
        account_client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        account_client.files.delete(created.id)


def test_batch_files_expire_after_30_days_unless_told_otherwise(account_client: OpenAI):
    default = account_client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert default.expires_at == default.created_at + 30 * 86400
    chosen = account_client.files.create(
        file=("b.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert chosen.expires_at == chosen.created_at + 3600
    assert abs(chosen.created_at - time.time()) < 60


def test_files_are_listed_newest_first_with_filters_and_pages(
    server: RunningServer, account_client: OpenAI
):
    ids = [
        account_client.files.create(file=(f"{i}.txt", b"x"), purpose="user_data").id
        for i in range(3)
    ]
    batch_file = account_client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch").id
    body = httpx.get(
        f"{server.base_url}/v1/files",
        headers=bearer(account_client.api_key),
        timeout=30,
    ).json()
    assert_matches_schema(body, "ListFilesResponse")
    assert [f["id"] for f in body["data"]] == [batch_file, *ids[::-1]]
    assert [f.id for f in account_client.files.list(purpose="user_data")] == ids[::-1]
    ascending = account_client.files.list(purpose="user_data", order="asc", limit=2)
    assert [f.id for f in ascending.data] == ids[:2] and ascending.has_more is True
    rest = account_client.files.list(purpose="user_data", order="asc", after=ids[1])
    assert [f.id for f in rest.data] == ids[2:] and rest.has_more is False


@pytest.mark.parametrize(
    ("files", "data", "status", "param", "code"),
    [
        (
            {"file": ("big.bin", b"x" * (MAX_BYTES + 1))},
            {"purpose": "user_data"},
            413,
            "file",
            "file_too_large",
        ),
        (
            {"file": ("many.jsonl", b"{}\n" * (MAX_LINES + 1))},
            {"purpose": "batch"},
            400,
            "file",
            "too_many_lines",
        ),
        (
            {"file": ("many.jsonl", b"{}\n" * MAX_LINES + b"{}")},
            {"purpose": "batch"},
            400,
            "file",
            "too_many_lines",
        ),
        ({"file": ("empty.txt", b"")}, {"purpose": "user_data"}, 400, "file", "empty_file"),
        ({"file": ("x.txt", b"x")}, {"purpose": "fine-tune"}, 400, "purpose", None),
        ({"file": ("x.txt", b"x")}, {}, 400, "purpose", None),
        (None, {"purpose": "user_data"}, 400, "file", None),
        (
            {"file": ("x.txt", b"x")},
            {
                "purpose": "batch",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": "60",
            },
            400,
            "expires_after.seconds",
            None,
        ),
    ],
)
def test_an_upload_the_api_cannot_take_is_refused_clearly(
    server: RunningServer, files, data, status, param, code
):
    kwargs = {"data": data, **({"files": files} if files else {"files": {"other": ("o", b"o")}})}
    response = upload(server, MASTER_KEY, **kwargs)
    assert_error_envelope(response, status, param=param, **({"code": code} if code else {}))


def test_a_body_over_the_upload_limit_is_refused_before_it_is_read(server: RunningServer):
    response = upload(
        server,
        MASTER_KEY,
        files={"file": ("huge.bin", b"x" * (MAX_BYTES + 128 * 1024))},
        data={"purpose": "user_data"},
    )
    assert_error_envelope(response, 413)


def test_a_refused_upload_leaves_nothing_behind(server: RunningServer, account_client: OpenAI):
    response = upload(
        server,
        account_client.api_key,
        files={"file": ("big.bin", b"x" * (MAX_BYTES + 1))},
        data={"purpose": "user_data"},
    )
    assert response.status_code == 413
    assert list(account_client.files.list()) == []


def test_another_tenant_cannot_see_read_or_delete_a_file(
    server: RunningServer, account_client: OpenAI
):
    mine = account_client.files.create(file=("mine.txt", b"secret"), purpose="user_data")
    other = new_account(server, "files-other")
    theirs = OpenAI(base_url=server.api_url, api_key=other.key, max_retries=0)
    assert list(theirs.files.list()) == []
    for call in (theirs.files.retrieve, theirs.files.content, theirs.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert account_client.files.content(mine.id).content == b"secret"


def test_the_files_api_needs_a_key(server: RunningServer):
    response = httpx.get(f"{server.base_url}/v1/files", timeout=30)
    assert_error_envelope(response, 401)
