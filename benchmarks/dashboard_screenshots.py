"""Screenshots of every dashboard view, for docs/dashboard.md (a script, not a test).

Starts `aiservice serve` on a fresh home (a temporary directory, SQLite) with two priced
models: the embedded SmolLM2 and `gpt-4o-mini` answered by the fake upstream
(`aiservice.testing.fake_upstream`, so nothing goes online). Through the HTTP API it then
creates three users with keys (one of them revoked), stored chat completions with metadata
(features summarize, reply and triage), one background response and two budgets, signs in
as admin with the master key in a headless Chromium (tests/browser_support.py) and saves

    docs/images/dashboard-{login,requests,request,usage,budgets,keys,jobs,health}.png
    docs/images/dashboard-requests-phone.png      (the request log at 390 px)

at 1280 x 800 CSS pixels (the phone one at 390 x 844). Needs Debian's chromium and
chromium-driver (`make browser`).

    .venv/bin/python benchmarks/dashboard_screenshots.py
    .venv/bin/python benchmarks/dashboard_screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers: real servers, Chromium

from aiservice.testing.fake_upstream import FakeUpstream  # noqa: E402
from browser_support import chromium, screenshot, wait_for  # noqa: E402
from support import (  # noqa: E402
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    bearer,
    start_server,
    stop_server,
)

LOCAL = "smollm2-135m-instruct"
REMOTE = "gpt-4o-mini"
PASSWORD = "password-1234"
USERS = ("ann@example.com", "bob@example.com", "cara@example.com")
PROMPTS = {
    "summarize": [
        "Summarize: the quarterly report shows revenue up 4 % and costs flat.",
        "Summarize this ticket: the printer on floor 3 jams on duplex jobs.",
    ],
    "reply": [
        "Write a short, polite reply to a customer asking when their order ships.",
        "Reply to: can I change the delivery address of order 1042?",
    ],
    "triage": [
        "Classify as bug, question or feature request: the export button does nothing.",
        "Classify as bug, question or feature request: please add a dark mode.",
    ],
}


def admin(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, headers=bearer(MASTER_KEY), timeout=60)


def create_key(server: RunningServer, email: str, name: str) -> dict:
    with admin(server) as client:
        answer = client.post("/admin/keys", json={"email": email, "name": name})
    answer.raise_for_status()
    return answer.json()


def complete(server: RunningServer, key: str, model: str, text: str, metadata: dict) -> str:
    answer = httpx.post(
        f"{server.api_url}/chat/completions",
        headers=bearer(key),
        json={
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 48,
            "temperature": 0,
            "store": True,
            "metadata": metadata,
        },
        timeout=120,
    )
    answer.raise_for_status()
    return answer.json()["id"]


def populate(server: RunningServer) -> dict:
    """Users, keys, completions, a background response and budgets; returns what the shots need."""
    for email in USERS:
        admin_add_user(server, email, PASSWORD)
    keys = {email: create_key(server, email, "default") for email in USERS}
    ann_dev = create_key(server, USERS[0], "dev")
    retired = create_key(server, USERS[2], "old laptop")
    with admin(server) as client:
        client.delete(f"/admin/keys/{retired['id']}").raise_for_status()

    shown_id = None
    for round_ in range(2):
        for feature, prompts in PROMPTS.items():
            for index, prompt in enumerate(prompts):
                for email in USERS:
                    model = LOCAL if (index + round_) % 2 == 0 and email == USERS[0] else REMOTE
                    key = ann_dev if email == USERS[0] and round_ == 1 else keys[email]
                    metadata = {"feature": feature, "customer": ("acme", "globex")[index]}
                    made = complete(server, key["key"], model, prompt, metadata)
                    if model == LOCAL and feature == "reply" and shown_id is None:
                        shown_id = made

    background = httpx.post(
        f"{server.api_url}/responses",
        headers=bearer(keys[USERS[1]]["key"]),
        json={
            "model": LOCAL,
            "input": "List three things to check before a product launch.",
            "background": True,
            "store": True,
            "max_output_tokens": 200,
            "metadata": {"feature": "summarize"},
        },
        timeout=60,
    )
    background.raise_for_status()

    # GET /v1/usage flushes the ledger; Ann's budget is set to show about 60 % spent.
    for email in USERS:
        httpx.get(f"{server.api_url}/usage", headers=bearer(keys[email]["key"])).raise_for_status()
    usage = httpx.get(f"{server.api_url}/usage", headers=bearer(keys[USERS[0]]["key"]))
    spent = sum(row["cost_usd"] for row in usage.json()["data"])
    amount = round(max(spent / 0.6, 0.0001), 6)
    with admin(server) as client:
        client.post(
            "/admin/budgets", json={"user": USERS[0], "amount_usd": amount, "period": "month"}
        ).raise_for_status()
        client.post(
            "/admin/budgets",
            json={"key": keys[USERS[1]]["id"], "amount_usd": 5.0, "period": "day", "soft": True},
        ).raise_for_status()
    return {
        "request_id": shown_id,
        "background_id": background.json()["id"],
        "background_key": keys[USERS[1]]["key"],
    }


def wait_until_done(server: RunningServer, key: str, response_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.api_url}/responses/{response_id}", headers=bearer(key))
        if status.json().get("status") not in ("queued", "in_progress"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the background response {response_id} did not finish")


def sign_in_as_admin(driver, base_url: str) -> None:
    driver.get(f"{base_url}/dashboard/login")
    wait_for(driver, "#api_key").send_keys(MASTER_KEY)
    wait_for(driver, "#login-key button[type=submit]").click()
    wait_for(driver, "header.top .who")


def shoot(server: RunningServer, made: dict, out: Path) -> list[Path]:
    base = server.base_url
    saved = []
    with chromium(1280, 800) as driver:
        driver.get(f"{base}/dashboard/login")
        wait_for(driver, "#login-password")
        saved.append(screenshot(driver, out / "dashboard-login.png"))
        sign_in_as_admin(driver, base)
        views = {
            "requests": ("/dashboard/requests", "table.log"),
            "request": (f"/dashboard/requests/{made['request_id']}", "form.relabel"),
            "usage": ("/dashboard/usage?group=feature&measure=cost_usd", "figure.chart svg"),
            "budgets": ("/dashboard/budgets", "tr[data-budget]"),
            "keys": ("/dashboard/keys", "tr[data-key]"),
            "jobs": ("/dashboard/jobs", f'tr[data-job="{made["background_id"]}"]'),
            "health": ("/dashboard/health", "tr[data-model]"),
        }
        for name, (path, ready) in views.items():
            driver.get(base + path)
            wait_for(driver, ready)
            saved.append(screenshot(driver, out / f"dashboard-{name}.png"))
    with chromium(390, 844) as driver:
        sign_in_as_admin(driver, base)
        driver.get(f"{base}/dashboard/requests")
        wait_for(driver, "table.log")
        saved.append(screenshot(driver, out / "dashboard-requests-phone.png"))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--keep-home", action="store_true", help="leave the server's home behind")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aiservice-screenshots-"))
    try:
        with FakeUpstream() as upstream:
            (home / "config.toml").write_text(
                f'[[models]]\nname = "{LOCAL}"\nprice_input_per_1m = 0.05\n'
                "price_output_per_1m = 0.10\n\n"
                f'[[models]]\nname = "{REMOTE}"\nprovider = "openai"\n'
                f'base_url = "{upstream.base_url}"\nprice_input_per_1m = 0.15\n'
                "price_output_per_1m = 0.60\nmax_retries = 0\n",
                encoding="utf-8",
            )
            server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
            try:
                made = populate(server)
                wait_until_done(server, made["background_key"], made["background_id"])
                for path in shoot(server, made, args.out):
                    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            finally:
                stop_server(server)
    finally:
        if args.keep_home:
            print(f"home: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
