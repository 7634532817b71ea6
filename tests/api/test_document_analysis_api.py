"""Document analysis over HTTP (`/api/ai/documents/analyses`) on a model served by the fake
upstream, which answers each stage with valid JSON of its schema: a long text mapped piece by
piece and reduced to a report, progress from the jobs, a cost equal to the ledger's rows of
the analysis, cancel stopping every job, a restart mid-analysis, and the refusals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiservice.store.analyses import AnalysisStore
from aiservice.store.database import Database
from aiservice.testing import FakeUpstream, Fault
from analysis_support import long_text, stage_reply
from document_samples import Samples, write_samples
from support import (
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    basic_auth,
    bearer,
    new_email,
    run_in_thread,
    start_server,
    stop_server,
    wait_until,
)
from usage_support import table_rows

MODEL = "analyst"
PATH = "/api/ai/documents/analyses"
PRICE_IN, PRICE_OUT = 1.0, 4.0
NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}
ENDS = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(reply=stage_reply) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Path:
    home: Path = tmp_path_factory.mktemp("aiservice-analyses")
    (home / "config.toml").write_text(
        f"""
[[models]]
name = "smollm2-135m-instruct"

[[models]]
name = "{MODEL}"
provider = "openai"
base_url = "{fake.base_url}"
upstream_model = "gpt-4o-mini"
price_input_per_1m = {PRICE_IN}
price_output_per_1m = {PRICE_OUT}
context_window = 2048
max_retries = 0
""",
        encoding="utf-8",
    )
    return home


ENV = {**NO_DATABASE_URL, "AISERVICE_WORKER_POLL_S": "0.1", "AISERVICE_JOB_LEASE_S": "2"}


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[RunningServer]:
    running = start_server(home, env=ENV)
    yield running
    stop_server(running)


def call(server: RunningServer, method: str, path: str = PATH, **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", bearer(MASTER_KEY))
    return httpx.request(method, f"{server.base_url}{path}", timeout=60, **kwargs)


def finished(server: RunningServer, analysis_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body = call(server, "GET", f"{PATH}/{analysis_id}").json()
        return body if body["status"] in ENDS else None

    return wait_until(ended, timeout=timeout, what=f"analysis {analysis_id} to end")


def test_a_long_text_is_mapped_reduced_and_reported_at_its_ledger_cost(
    server: RunningServer, fake: FakeUpstream
):
    created = call(server, "POST", json={"text": long_text(30), "model": MODEL})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["id"].startswith("analysis_") and body["status"] in {"queued", "in_progress"}
    assert body["report"] is None and body["progress"]["chunks"] > 1
    analysis = finished(server, body["id"])
    assert analysis["status"] == "completed", analysis
    report = analysis["report"]
    assert set(report) == {"title", "summary", "key_points", "recommendations", "sections"}
    assert report["title"] == "Quarterly report"
    progress = analysis["progress"]
    assert progress["done"] == progress["total"] > progress["chunks"]
    rows = [r for r in table_rows(server) if r["metadata"].get("analysis_id") == body["id"]]
    assert len(rows) == progress["total"]  # one record per job, every stage
    assert {r["metadata"]["feature"] for r in rows} == {"document_analysis"}
    assert analysis["cost"] == pytest.approx(sum(r["cost_usd"] for r in rows))
    assert analysis["cost"] > 0
    stages = analysis["usage"]["stages"]
    assert stages["map"]["requests"] == progress["chunks"] and stages["report"]["requests"] == 1
    usage = call(server, "GET", "/v1/usage", params={"group_by": "metadata.analysis_id"}).json()[
        "data"
    ]
    [mine] = [row for row in usage if row.get("metadata.analysis_id") == body["id"]]
    assert mine["cost_usd"] == pytest.approx(analysis["cost"])


def test_a_short_text_goes_straight_to_the_report(server: RunningServer):
    body = call(server, "POST", json={"text": "A short memo about sales.", "model": MODEL}).json()
    analysis = finished(server, body["id"])
    assert analysis["status"] == "completed"
    assert analysis["progress"] == {**analysis["progress"], "done": 1, "total": 1, "chunks": 1}


def test_a_document_can_be_uploaded_as_a_file(server: RunningServer):
    files = {"file": ("memo.md", b"# Sales memo\n\nSales grew by 12 percent this quarter.\n")}
    created = call(server, "POST", files=files, data={"model": MODEL})
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "memo.md"
    assert finished(server, created.json()["id"])["status"] == "completed"


def test_cancel_stops_every_job(server: RunningServer, fake: FakeUpstream):
    fake.add_fault(Fault(path="/v1/chat/completions", first_byte_delay_s=1.0, times=None))
    try:
        body = call(server, "POST", json={"text": long_text(40), "model": MODEL}).json()
        wait_until(
            lambda: call(server, "GET", f"{PATH}/{body['id']}").json()["status"] == "in_progress",
            timeout=30,
            what="the analysis running",
        )
        cancelled = call(server, "DELETE", f"{PATH}/{body['id']}").json()
        assert cancelled["status"] == "cancelled"
        jobs = _jobs(server, body["id"])
        statuses = [call(server, "GET", f"/v1/responses/{job}").json()["status"] for job in jobs]
        assert "cancelled" in statuses and not {"queued", "in_progress"} & set(statuses)
        again = call(server, "GET", f"{PATH}/{body['id']}").json()
        assert again["status"] == "cancelled" and again["report"] is None
        assert _jobs(server, body["id"]) == jobs  # no stage starts after the cancel
    finally:
        fake.reset()


def _jobs(server: RunningServer, analysis_id: str) -> list[str]:
    """Every job of the analysis, as its row names them (records exist only for ended ones)."""

    async def read() -> list[str]:
        database = Database(f"sqlite+aiosqlite:///{server.home / 'aiservice.db'}")
        try:
            row = await AnalysisStore(database).get("admin", analysis_id)
            assert row is not None
            return [job["id"] for job in row.jobs]
        finally:
            await database.close()

    return run_in_thread(read)


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"json": {"text": "", "model": MODEL}}, 400),
        ({"json": {"text": "hello", "model": "no-such-model"}}, 404),
        ({"json": {"text": "hello", "model": MODEL, "surprise": 1}}, 400),
        ({"files": {"file": ("scan.pdf", b"%PDF-1.4 not really")}, "data": {"model": MODEL}}, 400),
        ({"files": {"file": ("photo.png", b"\x89PNG")}, "data": {"model": MODEL}}, 400),
        ({"files": {"file": ("empty.txt", b"")}, "data": {"model": MODEL}}, 400),
    ],
)
def test_a_document_that_cannot_be_analysed_is_refused_clearly(
    server: RunningServer, request_kwargs: dict, status: int
):
    response = call(server, "POST", **request_kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]  # the seed's error shape


def test_an_unknown_or_foreign_analysis_is_not_found(server: RunningServer):
    body = call(server, "POST", json={"text": "A memo.", "model": MODEL}).json()
    email = new_email("analyst")
    admin_add_user(server, email, "password-1234")
    other = basic_auth(email, "password-1234")
    assert call(server, "GET", f"{PATH}/{body['id']}", headers=other).status_code == 404
    assert call(server, "DELETE", f"{PATH}/{body['id']}", headers=other).status_code == 404
    assert call(server, "GET", f"{PATH}/analysis_nope").status_code == 404
    assert call(server, "GET", PATH.replace("analyses", "x")).status_code == 404


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return write_samples(tmp_path_factory.mktemp("analysis-samples"))


@pytest.mark.parametrize("kind", ["thirty_pages_pdf", "word", "french_txt", "email"])
def test_real_documents_are_analysed(server: RunningServer, samples: Samples, kind: str):
    path: Path = getattr(samples, kind)
    files = {"file": (path.name, path.read_bytes())}
    created = call(server, "POST", files=files, data={"model": MODEL})
    assert created.status_code == 200, created.text
    analysis = finished(server, created.json()["id"])
    assert analysis["status"] == "completed" and analysis["name"] == path.name
    if kind == "thirty_pages_pdf":  # about 9,000 words: several pieces, map then report
        assert analysis["progress"]["chunks"] > 1
        assert analysis["usage"]["stages"]["map"]["requests"] == analysis["progress"]["chunks"]


def test_an_image_only_pdf_is_refused_naming_the_file(server: RunningServer, samples: Samples):
    path = samples.image_only_pdf
    response = call(server, "POST", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 400
    assert path.name in response.json()["error"] and "text layer" in response.json()["error"]


def test_an_analysis_survives_a_kill_of_its_server(
    home: Path, server: RunningServer, fake: FakeUpstream
):
    """Last in the module: it stops the module's server and runs its own on the same home."""
    stop_server(server)
    second = start_server(home, env=ENV)
    fake.add_fault(Fault(path="/v1/chat/completions", first_byte_delay_s=0.5, times=None))
    try:
        body = call(second, "POST", json={"text": long_text(20), "model": MODEL}).json()
        wait_until(
            lambda: call(second, "GET", f"{PATH}/{body['id']}").json()["progress"]["done"] >= 1,
            timeout=60,
            what="a first job done",
        )
        second.process.kill()
        second.process.wait()
        fake.reset()
        second = start_server(home, env=ENV)
        assert finished(second, body["id"])["status"] == "completed"
    finally:
        stop_server(second)
