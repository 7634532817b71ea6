"""Gateway overhead: aiservice in front of a canned upstream vs a bare ASGI proxy vs direct.

One run starts, each on a free loopback port:

* nginx (Debian's `nginx-light`) with its own temporary prefix and config, answering
  `POST /v1/chat/completions` with one fixed chat completion (JSON, with usage) — what
  aiservice asks an upstream for when its client does not stream;
* a bare ASGI pass-through proxy (this file, `--serve-proxy`): one pooled
  `httpx.AsyncClient`, the request body forwarded as is, the upstream's bytes returned; and
  the same proxy on one aiohttp session (the client aiservice calls upstreams with);
* aiservice (`python -m aiservice serve`) with a temporary AISERVICE_HOME, auth on
  (AISERVICE_MASTER_KEY) and one upstream model `bench` pointing at nginx, `max_retries = 0`.

The Python servers run in uvicorn the same way: one worker, no access log, and uvloop and
httptools (what aiservice's `uvicorn[standard]` installs, picked by uvicorn's "auto").

Rows, all fetching the same canned bytes from nginx:
  direct     wrk -> nginx, posting exactly the body aiservice sends upstream (stream: false)
  proxy      wrk -> bare ASGI proxy -> nginx (the targets are judged against this row)
  proxy-aiohttp  the same on aiohttp: what isolates aiservice's own work (a report line)
  aiservice  wrk -> aiservice -> nginx, a client's non-streamed request
             `{"model": "bench", "messages": [{"role": "user", "content": "hi"}]}` with the
             Bearer key; it answers a `chat.completion` JSON built from the upstream's

Each row is loaded with wrk (-t2, keep-alive connections, a Lua script for the POST body and
headers) at concurrency 10 and 50 for --duration seconds, after a short warm-up; --rounds
rounds, the order of the rows rotated every round. The table gives the median over rounds of
requests/s, p50 and p99 (wrk's latency distribution of each run), and the added p50 latency
against direct. Targets: aiservice requests/s at least 50 % of the proxy's, and its p50 at
most 1 ms above the proxy's, at each concurrency; exit status 1 if one is missed.

The machine has 2 cores, shared by wrk, nginx and the server under test: a Python server
saturates one core, wrk and nginx take the rest. Absolute numbers are the machine's; the
ratios are what the targets judge.

--baseline REF adds a fourth row, "baseline": aiservice as of git REF (its `src/` exported to
the temp directory and put first on PYTHONPATH, same configuration), so that a change's cost
is measured before and after in one run; the report then gives aiservice's req/s and CPU per
request as a ratio of the baseline's.

--limits adds two rows on one more aiservice (this tree) whose rate limits are counted in Redis
(REDIS_URL, 127.0.0.1:6379 by default: --redis-url): "keyed", a user's API key without limits,
and "limited", another key of that user with limits far above the load (so every request is
checked and charged, none refused). The report then gives what the limits add per request:
CPU ms and p50, limited against keyed (both pay the API key's lookup, which the master key of
the other rows does not).

--profile runs one extra, unmeasured c=10 load on aiservice with py-spy attached (sampling,
`--format raw`, i.e. collapsed stacks that speedscope also opens) and prints the functions with
the most own time and own time by package.

Without wrk (`make bench-deps` installs nginx-light and wrk), --loadgen httpx uses an asyncio
httpx client in this process instead: it is far slower than wrk and competes for the same two
cores, so the numbers then say less about the servers.

    make bench-deps    # once: nginx-light and wrk from Debian's packages
    .venv/bin/python benchmarks/gateway_overhead.py --duration 10 --rounds 3 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

MASTER_KEY = "sk-bench"
MODEL = "bench"
CANNED_TEXT = "Hello! This is a canned answer from the benchmark's upstream."
RPS_FLOOR = 0.5  # target: aiservice requests/s at least this fraction of the proxy's
P50_SLACK_MS = 1.0  # target: aiservice p50 at most this much above the proxy's
CONCURRENCIES = (10, 50)  # the issue's; --concurrency measures others
ROWS = ("direct", "proxy", "proxy-aiohttp", "aiservice")

# What a client sends aiservice (and the proxy) ...
CLIENT_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
# ... and what aiservice sends its upstream for it (providers/upstream.py `_chat_body`, with
# the request's default temperature and top_p): the direct row posts exactly this.
UPSTREAM_BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "temperature": 1.0,
    "top_p": 1.0,
}

SERVER_COMMAND = [sys.executable, "-m", "aiservice"]
console = Console(width=None if sys.stdout.isatty() else 160)


def canned_completion() -> str:
    """The upstream's answer to a non-streamed request (what aiservice asks for when its client
    does not stream): one chat completion with usage, as OpenAI sends it."""
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CANNED_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": len(CANNED_TEXT.split(" ")),
            "total_tokens": 9 + len(CANNED_TEXT.split(" ")),
        },
    }
    return json.dumps(completion, separators=(",", ":"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: exited early:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{log.name}: nothing listening on {port} after {timeout}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and its live children (nginx's
    worker is the master's child)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    total = 0.0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def find_tool(name: str) -> str | None:
    # nginx lives in /usr/sbin, which a normal user's PATH may not hold.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


# --- the three servers --------------------------------------------------------------------


class Nginx:
    """nginx on a free port, its prefix, config, pid and logs in `root`, daemon off."""

    def __init__(self, binary: str, root: Path, body: str):
        self.root = root / "nginx"
        self.root.mkdir()
        self.port = free_port()
        escaped = body.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        # Run as whoever runs the script (as root, nginx would switch workers to `nobody`).
        user = "user root;" if os.geteuid() == 0 else ""
        (self.root / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.root}/client_body;
    proxy_temp_path {self.root}/proxy;
    fastcgi_temp_path {self.root}/fastcgi;
    uwsgi_temp_path {self.root}/uwsgi;
    scgi_temp_path {self.root}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{self.port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{escaped}';
        }}
    }}
}}
""",
            encoding="utf-8",
        )
        self.log_path = self.root / "stdout.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "-p", f"{self.root}/", "-c", f"{self.root}/nginx.conf",
                 "-e", f"{self.root}/error.log", "-g", "daemon off;"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_port(self.port, self.process, self.log_path)
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"


def proxy_app(upstream: str, client: str = "httpx"):
    """A bare ASGI pass-through proxy: no framework, one pooled client (httpx's AsyncClient,
    or an aiohttp session: what aiservice calls upstreams with), bytes in, bytes out."""
    state: dict = {}

    async def forward(body: bytes) -> tuple[int, str, bytes]:
        headers = {"content-type": "application/json"}
        if client == "aiohttp":
            async with state["client"].post(upstream, data=body, headers=headers) as response:
                content = await response.read()
                return response.status, response.headers.get("content-type", ""), content
        response = await state["client"].post(upstream, content=body, headers=headers)
        return response.status_code, response.headers.get("content-type", ""), response.content

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if client == "aiohttp":
                        import aiohttp

                        state["client"] = aiohttp.ClientSession(
                            connector=aiohttp.TCPConnector(limit=200)
                        )
                    else:
                        state["client"] = httpx.AsyncClient(
                            timeout=60,
                            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                        )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    closing = state["client"]
                    await (closing.close() if client == "aiohttp" else closing.aclose())
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, content_type, content = await forward(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    return app


def serve_proxy(port: int, upstream: str, client: str) -> None:
    import uvicorn

    # The same uvicorn settings as `aiservice serve` (cli/server.py): one worker, loop and http
    # "auto" (uvloop, httptools), no access log, no server header.
    uvicorn.run(
        proxy_app(upstream, client),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


class PythonServer:
    def __init__(self, name: str, root: Path, command: list[str], env: dict[str, str], port: int):
        self.name = name
        self.port = port
        self.log_path = root / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def wait_ready(self, path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_path.read_text()}")


def start_proxy(root: Path, upstream: str, client: str = "httpx") -> PythonServer:
    port = free_port()
    command = [sys.executable, __file__, "--serve-proxy", str(port), "--upstream", upstream]
    command += ["--proxy-client", client]
    name = "proxy" if client == "httpx" else f"proxy-{client}"
    server = PythonServer(name, root, command, dict(os.environ), port)
    wait_port(port, server.process, server.log_path)
    return server


def export_source(root: Path, ref: str) -> Path:
    """`src/` of git `ref` in `root/baseline-src`; returns that directory."""
    target = root / "baseline-src"
    target.mkdir()
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def start_aiservice(
    root: Path,
    nginx_port: int,
    name: str = "aiservice",
    source: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> PythonServer:
    home = root / f"home-{name}"
    home.mkdir()
    config = home / "config.toml"
    config.write_text(
        f'[[models]]\nname = "{MODEL}"\nprovider = "openai"\n'
        f'base_url = "http://127.0.0.1:{nginx_port}/v1"\nmax_retries = 0\n'
        "\n[aliases]\n",  # no aliases to the local model, which is not configured
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AISERVICE_")
        and k.upper() not in ("DATABASE_URL", "OPENAI_API_KEY")
    }
    env |= {"AISERVICE_HOME": str(home), "AISERVICE_MASTER_KEY": MASTER_KEY}
    env |= extra_env or {}
    if source is not None:  # ahead of the installed (editable) package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    port = free_port()
    command = [*SERVER_COMMAND, "serve", "--port", str(port), "--config", str(config)]
    server = PythonServer(name, root, command, env, port)
    server.wait_ready("/ready")
    return server


def check_by_hand(targets: dict[str, str], sse: str) -> None:
    """One request per row, checked before any load: the canned bytes, the canned text."""
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    direct = httpx.post(targets["direct"], json=UPSTREAM_BODY, headers=headers, timeout=10)
    if direct.status_code != 200 or direct.text != sse:
        raise RuntimeError(f"direct: HTTP {direct.status_code}, not the canned answer")
    for proxy in ("proxy", "proxy-aiohttp"):
        proxied = httpx.post(targets[proxy], json=CLIENT_BODY, headers=headers, timeout=10)
        if proxied.status_code != 200 or proxied.text != sse:
            raise RuntimeError(f"{proxy}: HTTP {proxied.status_code}, not the canned answer")
    answer = httpx.post(targets["aiservice"], json=CLIENT_BODY, headers=headers, timeout=10)
    if answer.status_code != 200:
        raise RuntimeError(f"aiservice: HTTP {answer.status_code}: {answer.text}")
    content = answer.json()["choices"][0]["message"]["content"]
    if content != CANNED_TEXT:
        raise RuntimeError(f"aiservice: answered {content!r}, not the canned text")
    unauthorized = httpx.post(targets["aiservice"], json=CLIENT_BODY, timeout=10)
    if unauthorized.status_code != 401:
        raise RuntimeError(f"aiservice: no key gave HTTP {unauthorized.status_code}, not 401")
    console.print(
        f"checked by hand: direct and proxy return the canned answer ({len(sse)} bytes), "
        f"aiservice answers {content!r} (and 401 without the key)",
        highlight=False,
    )


# --- load generation ----------------------------------------------------------------------


@dataclass
class Run:
    row: str
    concurrency: int
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx responses and socket errors
    server_cpu: float  # CPU time of the row's server / wall time (1.0: one core)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, " ..
    "\\"p99_us\\": %d, \\"errors\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


# The bearer key each row sends (the master key unless set: the user keys of --limits).
ROW_KEYS: dict[str, str] = {}
LIMITS = {"rpm": 10**9, "rpd": 10**12, "tpm": 10**12, "tpd": 10**15}  # never reached


def start_limited(root: Path, nginx_port: int, redis_url: str) -> PythonServer:
    """aiservice counting rate limits in Redis, and two user keys: without limits and with."""
    server = start_aiservice(root, nginx_port, "limited", extra_env={"REDIS_URL": redis_url})
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    base = f"http://127.0.0.1:{server.port}/v1/admin"
    email = f"bench-{os.getpid()}@example.com"
    httpx.post(
        f"{base}/users", json={"email": email, "password": "bench-password"}, headers=admin
    ).raise_for_status()
    for row, limits in (("keyed", None), ("limited", LIMITS)):
        key = httpx.post(
            f"{base}/keys", json={"email": email, "rate_limits": limits}, headers=admin
        )
        key.raise_for_status()
        ROW_KEYS[row] = key.json()["key"]
        check = httpx.post(server.url, json=CLIENT_BODY, headers=_auth(row), timeout=10)
        limited = "x-ratelimit-limit-requests" in check.headers
        if check.status_code != 200 or limited != (limits is not None):
            raise RuntimeError(f"{row}: HTTP {check.status_code}, rate-limit headers {limited}")
    return server


def _auth(row: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ROW_KEYS.get(row, MASTER_KEY)}"}


def wrk_scripts(root: Path, rows: tuple[str, ...]) -> dict[str, Path]:
    scripts = {}
    for row in rows:
        body = json.dumps(UPSTREAM_BODY if row == "direct" else CLIENT_BODY)
        path = root / f"{row}.lua"
        key = ROW_KEYS.get(row, MASTER_KEY)
        path.write_text(WRK_SCRIPT.format(body=body, key=key), encoding="utf-8")
        scripts[row] = path
    return scripts


def run_wrk(wrk: str, script: Path, url: str, concurrency: int, seconds: float) -> dict:
    threads = min(2, concurrency)
    result = subprocess.run(
        [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--latency",
         "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"^BENCH_JSON (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return json.loads(match.group(1))


async def _httpx_load(
    url: str, body: dict, concurrency: int, seconds: float, headers: dict[str, str]
) -> dict:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - sent)
                errors += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "p50_us": pick(0.50) * 1e6,
        "p99_us": pick(0.99) * 1e6,
        "errors": errors,
    }


def load(args, scripts, targets, row, concurrency, seconds) -> dict:
    if args.loadgen == "wrk":
        return run_wrk(args.wrk, scripts[row], targets[row], concurrency, seconds)
    body = UPSTREAM_BODY if row == "direct" else CLIENT_BODY
    return asyncio.run(_httpx_load(targets[row], body, concurrency, seconds, _auth(row)))


# --- profile ------------------------------------------------------------------------------

ENTRY_POINTS = ("aiservice.cli", "aiservice.__main__")  # on every stack
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def area(path: str) -> str:
    """A readable package for a frame's file as py-spy names it (relative to its sys.path
    entry): `aiservice/api/chat.py` -> `aiservice.api`, `httpcore/_async/http11.py` ->
    `httpcore`, `asyncio/tasks.py` -> `stdlib asyncio`."""
    parts = path.split("/")
    top = parts[0].removesuffix(".py")
    if top == "aiservice" and len(parts) > 1:
        return "aiservice." + parts[1].removesuffix(".py")
    if top in sys.stdlib_module_names or top.startswith("<frozen"):
        return f"stdlib {top.strip('<>').removeprefix('frozen ')}"
    return top or "?"


def summarize_profile(raw: Path, seconds: float, rate: int, top: int = 15) -> None:
    """Own time (leaf frames) on the event loop thread, by function and by package; the
    aiservice functions with the most inclusive time; what the other threads did."""
    loop_own: collections.Counter[str] = collections.Counter()
    loop_area: collections.Counter[str] = collections.Counter()
    loop_area_incl: collections.Counter[str] = collections.Counter()
    ours_incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    loop_total = other_total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [m for m in map(FRAME.match, stack.split(";")) if m is not None]
        if not frames:
            continue
        leaf = frames[-1]
        name = f"{leaf['func']}  ({leaf['file']})"
        if frames[0]["func"].startswith("Thread._bootstrap"):  # not the event loop thread
            other_total += samples
            threads[name] += samples
            continue
        loop_total += samples
        loop_own[name] += samples
        loop_area[area(leaf["file"])] += samples
        for where in {area(f["file"]) for f in frames}:
            loop_area_incl[where] += samples
        ours = {
            f"{f['func']}  ({f['file']})"
            for f in frames
            if f["file"].startswith("aiservice/") and area(f["file"]) not in ENTRY_POINTS
        }
        for func in ours:
            ours_incl[func] += samples
    if loop_total == 0:
        console.print("profile: no samples on the event loop thread (py-spy needs ptrace)")
        return
    possible = seconds * rate
    console.print(
        f"event loop thread: {loop_total} samples of {possible:.0f} possible in "
        f"{seconds:g} s at {rate} Hz: busy ~{100 * loop_total / possible:.0f} % of the time "
        f"(py-spy leaves out idle waits); other threads: {other_total} samples",
        highlight=False,
    )

    def pct(n: int) -> str:
        return f"{100 * n / loop_total:.1f}"

    table = Table(title="event loop thread: own time by function (% of its samples)")
    table.add_column("own %", justify="right")
    table.add_column("function (file)")
    for name, samples in loop_own.most_common(top):
        table.add_row(pct(samples), name)
    console.print(table)
    table = Table(title="event loop thread by package: own, and inclusive (package on the stack)")
    table.add_column("package")
    table.add_column("own %", justify="right")
    table.add_column("inclusive %", justify="right")
    for where, samples in loop_area.most_common(top):
        table.add_row(where, pct(samples), pct(loop_area_incl[where]))
    console.print(table)
    table = Table(title="aiservice functions on the event loop thread, inclusive time")
    table.add_column("incl. %", justify="right")
    table.add_column("function (file)")
    for name, samples in ours_incl.most_common(top):
        table.add_row(pct(samples), name)
    console.print(table)
    if other_total:
        console.print(
            "other threads (top leaf frames, samples): "
            + "; ".join(f"{name} {n}" for name, n in threads.most_common(4)),
            highlight=False,
        )


def profile(args, scripts, targets, server: PythonServer, root: Path) -> None:
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        console.print("--profile: no py-spy next to this python (pip install -e '.[dev]')")
        return
    raw = (args.profile_out or root / "profile.txt").resolve()
    seconds = max(2, round(args.duration))  # py-spy's -d takes whole seconds
    rate = 100
    # py-spy pauses the process for each sample, which slows it somewhat; --nonblocking
    # does not, but then many stacks come out torn, which spoils the inclusive times.
    spy = subprocess.Popen(
        [str(py_spy), "record", "--format", "raw", "-o", str(raw), "-p",
         str(server.process.pid), "-d", str(seconds), "-r", str(rate)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # Start the load once py-spy samples ("Sampling process 100 times a second ..."), and
    # keep it going a second longer than py-spy records.
    started = []
    assert spy.stdout is not None
    for line in spy.stdout:
        started.append(line)
        if "Sampling process" in line or spy.poll() is not None:
            break
    result = load(args, scripts, targets, args.profile_row, 10, seconds + 1)
    output = "".join(started) + spy.communicate(timeout=60)[0]
    console.print(
        f"profile run (not in the table): {result['requests'] / result['duration_us'] * 1e6:.0f}"
        f" requests/s under py-spy; collapsed stacks in {raw}",
        highlight=False,
    )
    if spy.returncode != 0 or not raw.exists():
        console.print(f"py-spy failed ({spy.returncode}):\n{output}")
        return
    summarize_profile(raw, seconds, rate)


# --- report -------------------------------------------------------------------------------


def report(runs: list[Run], args, load_avg: tuple[tuple, tuple], rows: tuple[str, ...]) -> bool:
    def med(row: str, c: int, attr: str) -> float:
        return statistics.median(
            getattr(r, attr) for r in runs if r.row == row and r.concurrency == c
        )

    def cpu_ms(row: str, c: int) -> float:
        """The row's server CPU per request, in ms (medians)."""
        return 1000 * med(row, c, "server_cpu") / med(row, c, "rps")

    table = Table(
        title=(
            f"gateway overhead vs a canned nginx upstream: {args.loadgen}, {args.duration:g} s "
            f"per run, {args.rounds} round(s), median over rounds"
        )
    )
    table.add_column("c", justify="right")
    table.add_column("row")
    for column in (
        "req/s", "p50 ms", "p99 ms", "+p50 vs direct", "+p99 vs direct", "server CPU", "CPU ms/req",
        "errors"
    ):  # fmt: skip
        table.add_column(column, justify="right")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")
    labels = {
        "direct": "direct (nginx)",
        "proxy": "bare ASGI proxy",
        "proxy-aiohttp": "… on aiohttp",
        "baseline": f"aiservice @ {args.baseline}",
        "aiservice": "aiservice",
        "keyed": "aiservice, a user key",
        "limited": "… + rate limits (Redis)",
    }

    all_ok = True
    for c in args.concurrency:
        for row in rows:
            rps, p50, p99 = (med(row, c, a) for a in ("rps", "p50_ms", "p99_ms"))
            errors = sum(r.errors for r in runs if r.row == row and r.concurrency == c)
            added50 = p50 - med("direct", c, "p50_ms")
            added99 = p99 - med("direct", c, "p99_ms")
            cells = [str(c), labels[row], f"{rps:,.0f}", f"{p50:.2f}", f"{p99:.2f}"]
            cells += ["", ""] if row == "direct" else [f"{added50:+.2f}", f"{added99:+.2f}"]
            cpu = med(row, c, "server_cpu")
            cells += [f"{cpu:.0%}", f"{cpu_ms(row, c):.2f}", str(errors)]
            if row != "aiservice":
                table.add_row(*cells, "", "")
                continue
            ratio = rps / med("proxy", c, "rps")
            over = p50 - med("proxy", c, "p50_ms")
            for i, (text, ok) in enumerate(
                (
                    (f"req/s {ratio:.0%} of proxy (≥ {RPS_FLOOR:.0%})", ratio >= RPS_FLOOR),
                    (f"p50 {over:+.2f} ms vs proxy (≤ +{P50_SLACK_MS:g})", over <= P50_SLACK_MS),
                )
            ):
                ok &= errors == 0
                all_ok &= ok
                verdict = "[green]PASS[/green]" if ok else "[red]FAIL[/red]"
                table.add_row(*(cells if i == 0 else [""] * len(cells)), text, verdict)
        if c != args.concurrency[-1]:
            table.add_section()
    console.print(table)
    for c in args.concurrency:
        # The targets are judged against the bare proxy as built for Order 6 (httpx, the usual
        # Python choice); aiservice calls upstreams through aiohttp, so the same proxy on
        # aiohttp is what isolates aiservice's own work.
        ratio = med("aiservice", c, "rps") / med("proxy-aiohttp", c, "rps")
        over = med("aiservice", c, "p50_ms") - med("proxy-aiohttp", c, "p50_ms")
        own = cpu_ms("aiservice", c) - cpu_ms("proxy-aiohttp", c)
        console.print(
            f"c={c}: against the bare proxy on aiohttp (same upstream client as aiservice): "
            f"req/s {ratio:.0%}, p50 {over:+.2f} ms, aiservice's own CPU {own:.2f} ms a request",
            highlight=False,
        )
    if "limited" in rows:
        for c in args.concurrency:
            added_cpu = cpu_ms("limited", c) - cpu_ms("keyed", c)
            added_p50 = med("limited", c, "p50_ms") - med("keyed", c, "p50_ms")
            console.print(
                f"c={c}: rate limits (Redis) add {added_cpu:+.3f} ms of server CPU per request "
                f"and {added_p50:+.2f} ms to p50 (queueing included)",
                highlight=False,
            )
    if "baseline" in rows:
        for c in args.concurrency:
            rps = med("aiservice", c, "rps") / med("baseline", c, "rps")
            cpu = cpu_ms("aiservice", c) / cpu_ms("baseline", c)
            console.print(
                f"c={c}: aiservice vs aiservice @ {args.baseline}: req/s x{rps:.3f}, "
                f"CPU per request x{cpu:.3f}",
                highlight=False,
            )
    console.print(
        "added latency: the row's median p50/p99 minus direct's at the same concurrency. "
        "direct posts the body aiservice sends upstream (stream: false); proxy and aiservice get "
        "a client's non-streamed request; all three rows fetch the same canned bytes. "
        "server CPU: the row's server process (nginx: master + worker) CPU time / wall time, "
        "100 % = one core; CPU ms/req: that / req/s.",
        highlight=False,
    )
    before, after = load_avg
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs shared by the load "
        f"generator, nginx and the server under test; load average (1/5/15 min) "
        f"{before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} before, "
        f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after (this run adds ~2)",
        highlight=False,
    )
    if before[0] > 0.5:
        console.print(
            "note: other processes were using the CPU before the run; with 2 cores every row "
            "is slowed by them, the Python servers most",
            highlight=False,
        )
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each row per concurrency (0: only --profile)"
    )
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per row")
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "httpx"),
        help="load generator (default wrk if installed, else httpx: slower, less meaningful)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy aiservice at c=10 after")
    parser.add_argument(
        "--baseline", metavar="REF", help="also measure aiservice as of this git ref (a 4th row)"
    )
    parser.add_argument(
        "--limits", action="store_true", help="also measure aiservice with rate limits in Redis"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(CONCURRENCIES),
        help="connections per run (default 10 50; 1 gives latency without queueing)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument(
        "--profile-row",
        default="aiservice",
        help="the row --profile loads (its server is profiled)",
    )
    parser.add_argument("--json", type=Path, help="also write every run to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--serve-proxy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--proxy-client", default="httpx", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_proxy:
        serve_proxy(args.serve_proxy, args.upstream, args.proxy_client)
        return 0

    nginx_binary = find_tool("nginx")
    args.wrk = find_tool("wrk")
    if nginx_binary is None:
        console.print("nginx is not installed: run `make bench-deps` (nginx-light and wrk)")
        return 2
    if args.loadgen is None:
        args.loadgen = "wrk" if args.wrk else "httpx"
    if args.loadgen == "wrk" and args.wrk is None:
        console.print("wrk is not installed: run `make bench-deps`, or use --loadgen httpx")
        return 2
    if args.loadgen == "httpx":
        console.print(
            "[yellow]load generator: httpx in this process — much slower than wrk and on the "
            "same 2 cores, so the servers' numbers mean less; `make bench-deps` installs wrk"
            "[/yellow]"
        )

    load_start = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="aiservice-bench-gw-"))
    sse = canned_completion()
    servers: list[subprocess.Popen] = []
    runs: list[Run] = []
    try:
        nginx = Nginx(nginx_binary, root, sse)
        servers.append(nginx.process)
        proxy = start_proxy(root, nginx.url)
        servers.append(proxy.process)
        proxy_aiohttp = start_proxy(root, nginx.url, "aiohttp")
        servers.append(proxy_aiohttp.process)
        aiservice = start_aiservice(root, nginx.port)
        servers.append(aiservice.process)
        targets = {
            "direct": nginx.url,
            "proxy": proxy.url,
            "proxy-aiohttp": proxy_aiohttp.url,
            "aiservice": aiservice.url,
        }
        pids = {name: server.process.pid for name, server in
                (("direct", nginx), ("proxy", proxy), ("proxy-aiohttp", proxy_aiohttp),
                 ("aiservice", aiservice))}  # fmt: skip
        rows = ROWS
        if args.baseline:
            source = export_source(root, args.baseline)
            baseline = start_aiservice(root, nginx.port, "baseline", source)
            servers.append(baseline.process)
            targets["baseline"], pids["baseline"] = baseline.url, baseline.process.pid
            rows = ("direct", "proxy", "proxy-aiohttp", "baseline", "aiservice")
        if args.limits:
            limited = start_limited(root, nginx.port, args.redis_url)
            servers.append(limited.process)
            for row in ("keyed", "limited"):
                targets[row], pids[row] = limited.url, limited.process.pid
            rows = (*rows, "keyed", "limited")
        console.print(
            f"nginx :{nginx.port}, proxy :{proxy.port}, aiservice :{aiservice.port} "
            f"(pid {aiservice.process.pid}); temp dir {root}",
            highlight=False,
        )
        check_by_hand(targets, sse)
        scripts = wrk_scripts(root, rows)

        for row in rows:
            load(args, scripts, targets, row, 10, args.warmup)
        for rnd in range(args.rounds):
            order = rows[rnd % len(rows) :] + rows[: rnd % len(rows)]
            for c in args.concurrency:
                for row in order:
                    cpu_before, wall_before = cpu_seconds(pids[row]), time.monotonic()
                    out = load(args, scripts, targets, row, c, args.duration)
                    cpu = (cpu_seconds(pids[row]) - cpu_before) / (time.monotonic() - wall_before)
                    run = Run(
                        row, c, rnd, out["requests"], out["duration_us"] / 1e6,
                        out["p50_us"] / 1000, out["p99_us"] / 1000, out["errors"], cpu,
                    )  # fmt: skip
                    runs.append(run)
                    console.print(
                        f"  round {rnd + 1}/{args.rounds} c={c:<3} {row:10} {run.rps:8,.0f} req/s"
                        f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                        f"  server CPU {run.server_cpu:4.0%}  errors {run.errors}",
                        highlight=False,
                    )
        load_end = os.getloadavg()
        ok = report(runs, args, (load_start, load_end), rows) if runs else True
        if args.profile:
            profiled = limited if args.profile_row in ("keyed", "limited") else aiservice
            profile(args, scripts, targets, profiled, root)
    finally:
        for process in reversed(servers):
            stop(process)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(
            json.dumps([asdict(r) | {"rps": r.rps} for r in runs], indent=2), encoding="utf-8"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
