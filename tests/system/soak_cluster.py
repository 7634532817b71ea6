"""The soak harness's processes (tests/system/soak_harness.py): a fresh PostgreSQL database, a
Redis database of its own, a fake OpenAI upstream, two `aiservice serve --no-worker`,
two `aiservice worker` and Debian's nginx in front of the two servers, on loopback only.

Every process has its own AISERVICE_HOME (so its own usage journal, replayed when it starts
again there) and one log file per start (`NAME.1.log`, `NAME.2.log` after a restart). nginx's
configuration is deploy/nginx.conf itself, with its upstream, port, logs and paths replaced:
its access log is JSON lines naming the upstream that served each request ($upstream_addr) and
the client's x-request-id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis

from support import MASTER_KEY, PostgresDatabases, free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = "/usr/sbin/nginx"
MODEL = "soak-model"
# USD per million tokens: a few words cost about $0.02, so budgets are crossed in seconds.
PRICE_INPUT, PRICE_OUTPUT = 1000.0, 2000.0
REDIS_LOCK = "soak:lock"  # held while a run uses its Redis database
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Timings:
    """The settings the invariants depend on (given to every aiservice process)."""

    ledger_flush_s: float = 0.2
    budget_refresh_s: float = 0.5
    job_lease_s: float = 3.0
    worker_poll_s: float = 0.2
    upstream_delay_s: float = 0.05  # the fake upstream's first-byte delay: a model's latency

    def environment(self) -> dict[str, str]:
        return {
            "AISERVICE_LEDGER_FLUSH_S": str(self.ledger_flush_s),
            "AISERVICE_BUDGET_REFRESH_S": str(self.budget_refresh_s),
            "AISERVICE_JOB_LEASE_S": str(self.job_lease_s),
            "AISERVICE_WORKER_POLL_S": str(self.worker_poll_s),
        }


@dataclass
class Process:
    """One long-running process, started again (same command, home and port) after a kill."""

    name: str
    command: list[str]
    env: dict[str, str]
    logs: Path
    port: int | None = None  # an HTTP server's; None for a worker
    starts: int = 0
    popen: subprocess.Popen[bytes] | None = None
    terminated: bool = False  # SIGTERM sent to the current start

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.{self.starts}.log"

    def launch(self) -> None:
        self.starts += 1
        self.terminated = False
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        if self.port is None:  # a worker: its "worker started" line (its models are loaded)
            return any(line.get("message") == "worker started" for line in self.log_lines())
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> float:
        """SIGKILL; returns the time (time.time()) just before the signal."""
        assert self.popen is not None
        killed_at = time.time()
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        return killed_at

    def terminate(self) -> None:
        """SIGTERM, once: a second one could end the process during its clean stop."""
        if self.popen is not None and self.popen.poll() is None and not self.terminated:
            self.popen.terminate()
            self.terminated = True

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (a clean stop writes the ledger's last records); SIGKILL if stuck.
        Returns the exit status (None: it had to be killed)."""
        if self.popen is None:
            return None
        self.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None

    def log_lines(self, start: int | None = None) -> list[dict]:
        path = self.logs / f"{self.name}.{start or self.starts}.log"
        lines = []
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"raw": raw})
        return lines

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-characters:]


def _dead(holder: str) -> bool:
    """Whether the lock's holder (`host:pid`) is a process of this machine that has ended."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_environment() -> dict[str, str]:
    """The test process's environment without any aiservice setting, database or upstream key."""
    dropped = {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY"}
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_") and k.upper() not in dropped
    }


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port} after {timeout}s")


def nginx_fail_timeout() -> float:
    """deploy/nginx.conf's `fail_timeout`: how long nginx leaves a failed server alone."""
    found = re.search(r"fail_timeout=(\d+)s", NGINX_CONF.read_text(encoding="utf-8"))
    return float(found.group(1)) if found else 10.0  # nginx's default


def nginx_config(root: Path, port: int, upstream_ports: list[int]) -> str:
    """deploy/nginx.conf with this run's upstream, port, logs, pid and temporary paths. Each
    replaced line must be found exactly once: a changed deploy file fails here, loudly."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    servers = "\n        ".join(
        f"server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;" for p in upstream_ports
    )
    temp = "".join(
        f"    {kind}_temp_path {root}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    access = (
        'log_format soak escape=json \'{"t":$msec,"rid":"$http_x_request_id",'
        '"m":"$request_method","uri":"$uri","st":$status,"up":"$upstream_addr",'
        '"ust":"$upstream_status","rt":$request_time}\';\n'
        f"    access_log {root}/access.log soak;\n{temp}"
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would be `nobody`
    replacements = {
        "worker_processes auto;": f"{user}worker_processes auto;\npid {root}/nginx.pid;",
        "error_log stderr warn;": f"error_log {root}/error.log warn;",
        "access_log /dev/stdout;": access,
        "server api:5000 max_fails=3 fail_timeout=10s;": servers,
        "listen 80;": f"listen 127.0.0.1:{port};",
    }
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise RuntimeError(f"deploy/nginx.conf: expected {old!r} exactly once")
        text = text.replace(old, new)
    return text


@dataclass
class Cluster:
    """Everything a soak run talks to; `start()` brings it up, `close()` takes it all down."""

    root: Path
    timings: Timings = field(default_factory=Timings)
    redis_db: int = 9
    worker_concurrency: int = 4
    databases: PostgresDatabases = field(default_factory=PostgresDatabases)
    database_url: str = ""
    fake: subprocess.Popen[bytes] | None = None
    fake_port: int = 0
    servers: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    nginx_port: int = 0
    _redis_locked: bool = False

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:6379/{self.redis_db}"

    @property
    def url(self) -> str:
        """nginx: where every client request goes."""
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def nginx_root(self) -> Path:
        return self.root / "nginx"

    @property
    def postgres_dsn(self) -> str:
        """The database for asyncpg (the servers' URL without SQLAlchemy's driver name)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_redis()
        self.database_url = self.databases.create()
        self._start_fake()
        config = self._write_config()
        env = {
            **clean_environment(),
            **self.timings.environment(),
            "AISERVICE_MASTER_KEY": MASTER_KEY,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "AISERVICE_TRUSTED_PROXIES": '["127.0.0.1"]',
        }
        self.servers = [self._server(f"server-{i}", config, env) for i in (1, 2)]
        self.workers = [self._worker(f"worker-{i}", config, env) for i in (1, 2)]
        # All at once: the start-up migrations take an advisory lock, so they run once.
        for process in self.processes:
            process.launch()
        for process in self.processes:
            process.wait_ready()
        self._start_nginx()

    @property
    def processes(self) -> list[Process]:
        return [*self.servers, *self.workers]

    def journal_leftovers(self) -> dict[str, int]:
        """Files left in each process's usage journal (a clean stop deletes them all)."""
        journals = {
            process.name: Path(process.env["AISERVICE_HOME"]) / "usage-journal"
            for process in self.processes
        }
        return {
            name: len(list(journal.iterdir())) if journal.is_dir() else 0
            for name, journal in journals.items()
        }

    def _take_redis(self) -> None:
        """Hold the Redis database for this run (a lock naming this process; one whose holder
        is dead is taken over), then empty it of what an earlier run left."""
        redis = Redis.from_url(self.redis_url)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        try:
            if not redis.set(REDIS_LOCK, owner, nx=True, ex=3600):
                holder = (redis.get(REDIS_LOCK) or b"").decode()
                if not _dead(holder) or not redis.set(REDIS_LOCK, owner, xx=True, ex=3600):
                    raise RuntimeError(f"{self.redis_url} is in use by another soak run: {holder}")
            self._redis_locked = True
            for key in redis.scan_iter(count=1000):
                if key != REDIS_LOCK.encode():
                    redis.delete(key)
        finally:
            redis.close()

    def _start_fake(self) -> None:
        self.fake_port = free_port()
        command = [sys.executable, "-m", "aiservice.testing.fake_upstream"]
        command += ["--port", str(self.fake_port), "--no-record"]
        with (self.root / "fake-upstream.log").open("wb") as log:
            self.fake = subprocess.Popen(
                command, env=clean_environment(), stdout=log, stderr=subprocess.STDOUT
            )
        wait_port(self.fake_port, self.fake, "the fake upstream")
        delay = {"first_byte_delay_s": self.timings.upstream_delay_s, "times": None}
        answer = httpx.post(f"http://127.0.0.1:{self.fake_port}/_fake/faults", json=delay)
        answer.raise_for_status()

    def _write_config(self) -> Path:
        config = self.root / "config.toml"
        config.write_text(
            f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\n'
            f'base_url = "http://127.0.0.1:{self.fake_port}/v1"\n'
            f"price_input_per_1m = {PRICE_INPUT}\nprice_output_per_1m = {PRICE_OUTPUT}\n"
            "max_retries = 1\ntimeout_s = 30\n"
            "\n[aliases]\n",  # no alias points at the local model, which is not configured
            encoding="utf-8",
        )
        return config

    def _server(self, name: str, config: Path, env: dict[str, str]) -> Process:
        port = free_port()
        command = [sys.executable, "-m", "aiservice", "serve", "--no-worker"]
        command += ["--port", str(port), "--config", str(config)]
        return Process(name, command, self._home(name, env), self.root, port)

    def _worker(self, name: str, config: Path, env: dict[str, str]) -> Process:
        command = [sys.executable, "-m", "aiservice", "worker", "--config", str(config)]
        command += ["--concurrency", str(self.worker_concurrency)]
        return Process(name, command, self._home(name, env), self.root)

    def _home(self, name: str, env: dict[str, str]) -> dict[str, str]:
        home = self.root / f"home-{name}"
        home.mkdir(exist_ok=True)
        return {**env, "AISERVICE_HOME": str(home)}

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or NGINX
        if not Path(nginx).is_file():
            raise RuntimeError(f"{NGINX} missing: `make browser` installs Debian's nginx")
        self.nginx_root.mkdir(exist_ok=True)
        self.nginx_port = free_port()
        ports = [server.port for server in self.servers if server.port is not None]
        conf = self.nginx_root / "nginx.conf"
        conf.write_text(nginx_config(self.nginx_root, self.nginx_port, ports), encoding="utf-8")
        command = [nginx, "-p", f"{self.nginx_root}/", "-c", str(conf)]
        command += ["-e", str(self.nginx_root / "error.log"), "-g", "daemon off;"]
        with (self.nginx_root / "stdout.log").open("wb") as log:
            self.nginx = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.nginx_port, self.nginx, "nginx")

    def nginx_log(self) -> list[dict]:
        path = self.nginx_root / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def stop_aiservice(self) -> dict[str, int | None]:
        """A clean stop of the servers and workers (their last records written); exit codes."""
        for process in self.processes:  # all at once, then each waited for
            process.terminate()
        return {process.name: process.stop() for process in self.processes}

    def close(self) -> None:
        """Stop everything started, drop the database, empty the Redis database. Idempotent."""
        self.stop_aiservice()
        for popen in (self.nginx, self.fake):
            if popen is not None and popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
        self.nginx = self.fake = None
        self.databases.drop_all()
        if self._redis_locked:
            redis = Redis.from_url(self.redis_url)
            try:
                redis.flushdb()
            finally:
                redis.close()
            self._redis_locked = False
