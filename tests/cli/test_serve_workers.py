"""`aiservice serve --workers N` and `aiservice worker --concurrency N`, as real processes.

Which child answered a connection is read from the kernel, not from the server: the child whose
file descriptors hold the server end of that TCP connection (/proc/net/tcp, /proc/<pid>/fd).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    run_cli,
    start_server,
    stop_server,
    wait_for_log_line,
    wait_until,
)

KEY_ANNOUNCEMENT = "generated an admin API key"


def child_pids(parent: int) -> set[int]:
    """The server processes uvicorn spawned under `parent` (not its resource tracker)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"
        if ppid == parent and b"spawn_main" in command:
            children.add(int(entry.name))
    return children


def two_children(parent: int) -> set[int] | None:
    pids = child_pids(parent)
    return pids if len(pids) == 2 else None


def socket_owner(server_port: int, client_port: int, candidates: set[int]) -> int | None:
    """The process among `candidates` holding the server end of 127.0.0.1:client_port's
    connection to `server_port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            inodes.add(f"socket:[{inode}]")
    for pid in candidates:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return None


def port_of(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def get(
    connection: http.client.HTTPConnection, path: str, key: str
) -> tuple[int, bytes, int | None]:
    """GET `path` on a kept-alive connection: status, body, and the child that answered."""
    connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    body = response.read()
    assert connection.sock is not None
    return response.status, body, connection.sock.getsockname()[1]


class Children:
    """Requests to a `--workers` server, each on a new connection, counted per child."""

    def __init__(self, server: RunningServer, key: str):
        self.server, self.key = server, key
        self.pids = wait_until(
            lambda: two_children(server.process.pid), timeout=60, what="two child processes"
        )
        self.served: Counter[int] = Counter()

    def request(self, path: str) -> tuple[int, bytes, int]:
        connection = http.client.HTTPConnection("127.0.0.1", port_of(self.server), timeout=60)
        try:
            status, body, client_port = get(connection, path, self.key)
            owner = socket_owner(port_of(self.server), client_port, self.pids)
            assert owner is not None, "no child holds the connection"
            return status, body, owner
        finally:
            connection.close()

    def spread(self, path: str, *, minimum: int = 3) -> int:
        """Send `path` until every child has answered at least `minimum` times; how many."""
        deadline = time.monotonic() + 90
        while min(self.served[pid] for pid in self.pids) < minimum:
            assert time.monotonic() < deadline, f"not spread over both children: {self.served}"
            status, _, owner = self.request(path)
            assert status == 200
            self.served[owner] += 1
        return sum(self.served.values())

    def scrape_from(self, pid: int) -> str:
        """/metrics as the child `pid` answers it."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body, owner = self.request("/metrics")
            if owner == pid:
                assert status == 200
                return body.decode()
        raise AssertionError(f"child {pid} never answered /metrics")


def samples(text: str, name: str, **labels: str) -> list[float]:
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found.append(sample.value)
    return found


def announced_key(server: RunningServer) -> str:
    text = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert text.count(KEY_ANNOUNCEMENT) == 1, text
    keys = [line.strip() for line in text.splitlines() if line.strip().startswith("sk-admin-")]
    assert len(keys) == 1, text
    return keys[0]


@pytest.fixture(scope="module")
def workers_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
) -> Iterator[RunningServer]:
    """`serve --workers 2` on a fresh PostgreSQL database, generating its master key."""
    home = tmp_path_factory.mktemp("workers-home")
    running = start_server(
        home,
        env={
            "DATABASE_URL": postgres_databases.create(),
            "AISERVICE_DATABASE_URL": None,
            "AISERVICE_MASTER_KEY": None,
            "TMPDIR": str(tmp_path_factory.mktemp("workers-tmp")),
        },
        args=["--workers", "2"],
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def children(workers_server: RunningServer) -> Children:
    return Children(workers_server, announced_key(workers_server))


def test_both_children_answer_and_the_metrics_are_their_sum(children: Children) -> None:
    requests = children.spread("/v1/models")
    assert len(children.served) == 2 and requests >= 6
    for pid in children.pids:  # whichever child is scraped, it answers the same totals
        text = children.scrape_from(pid)
        assert sum(
            samples(text, "aiservice_request_duration_seconds_count", route="/v1/models")
        ) == (requests)
        assert samples(text, "aiservice_in_flight_requests") == [1.0]  # this scrape alone
        assert samples(text, "aiservice_background_queue_depth") == [0.0]
        assert "pid=" not in text


def test_the_master_key_is_announced_once_and_works_in_every_child(
    children: Children, workers_server: RunningServer
) -> None:
    announced_key(workers_server)  # still once, after both children started
    answered_by: set[int] = set()
    deadline = time.monotonic() + 60
    while answered_by != children.pids:
        assert time.monotonic() < deadline, f"only {answered_by} answered"
        status, _, owner = children.request("/v1/admin/users")
        assert status == 200
        answered_by.add(owner)
    wrong = httpx.get(
        f"{workers_server.base_url}/v1/admin/users",
        headers={"Authorization": "Bearer sk-admin-wrong"},
        timeout=30,
    )
    assert wrong.status_code == 401


def test_chat_completions_through_the_sdk(children: Children, workers_server: RunningServer):
    client = OpenAI(base_url=workers_server.api_url, api_key=children.key, max_retries=0)
    for _ in range(2):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert reply.model == "smollm2-135m-instruct"
        assert reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=8,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_sighup_replaces_the_children_without_a_gap_and_sigterm_ends_them_all(
    tmp_path: Path,
) -> None:
    """On SQLite: the parent migrated once; a rolling restart keeps answering and keeps the
    totals; SIGTERM stops everything cleanly and removes the metrics directory."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = start_server(
        tmp_path / "home",
        env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None, "TMPDIR": str(scratch)},
        args=["--workers", "2"],
    )
    try:
        log = server.log_path.read_text()
        assert log.count("Running upgrade  -> 0001") == 1, log
        assert len(list(scratch.glob("aiservice-metrics-*"))) == 1
        children = Children(server, MASTER_KEY)
        before = children.pids
        sent = children.spread("/v1/models", minimum=1)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 180
        while not replaced(child_pids(server.process.pid), before):
            assert time.monotonic() < deadline, "the children were not replaced"
            with httpx.Client(timeout=60) as fresh:  # a new connection: any child
                response = fresh.get(
                    f"{server.base_url}/v1/models",
                    headers={"Authorization": f"Bearer {MASTER_KEY}"},
                )
            assert response.status_code == 200
            sent += 1
        children = Children(server, MASTER_KEY)
        assert children.pids.isdisjoint(before)
        text = children.scrape_from(next(iter(children.pids)))
        assert sum(
            samples(text, "aiservice_request_duration_seconds_count", route="/v1/models")
        ) == (sent)
        stop_in_time(server, children.pids)
        assert list(scratch.iterdir()) == []
    finally:
        if server.process.poll() is None:
            stop_server(server)


def replaced(now: set[int], before: set[int]) -> bool:
    return len(now) == 2 and now.isdisjoint(before)


def stop_in_time(server: RunningServer, children: set[int]) -> None:
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0
    assert time.monotonic() - started < 20
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    wait_for_log_line(
        server,
        lambda line: line.get("message", "").startswith("Stopping parent process"),
        timeout=5,
        what="the parent's last line",
    )


def test_zero_workers_is_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "0", home=tmp_path)
    assert result.returncode == 2
    assert "--workers" in result.stdout + result.stderr


def test_worker_concurrency_flag_sets_the_concurrency(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_") and k.upper() != "DATABASE_URL"
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice", "worker", "--concurrency", "3"],
        env={**environment, "AISERVICE_HOME": str(tmp_path / "home")},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = RunningServer("", tmp_path / "home", process, log_path)
    try:
        started = wait_for_log_line(
            worker,
            lambda line: line.get("message") == "worker started",
            timeout=120,
            what="the worker's start-up line",
        )
        assert started["concurrency"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
