"""The web dashboard (/dashboard) in a real headless Chromium, against one real server.

One server for the module, on SQLite, with two priced models: the embedded SmolLM2 and
`remote-mini` served by the fake upstream (so that the thirty-odd rows pagination needs are
made in a moment, and so that usage has a cost to compare). Every row is created through the
HTTP API with `store: true` and metadata, as a client would, before any test runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from aiservice.testing.fake_upstream import FakeUpstream, Fault
from browser_support import chromium, cookie, wait_for
from support import (
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    admin_create_key,
    bearer,
    new_email,
    start_server,
    stop_server,
    wait_until,
)

LOCAL = "smollm2-135m-instruct"
REMOTE = "remote-mini"
PASSWORD = "password-1234"
PAGE_SIZE = 25  # aiservice.services.request_log.PAGE_SIZE
REMOTE_ROWS = 28  # more than a page: 25 + 3
COST_TOLERANCE = 1e-9


@dataclass(frozen=True)
class World:
    server: RunningServer
    upstream: FakeUpstream
    ann_email: str
    ann_key: str
    remote_ids: list[str]  # Ann's completions on remote-mini, oldest first
    triage_ids: list[str]  # Ann's completions on the local model, feature=triage
    relabel_id: str  # one of Ann's, re-labelled by one test only
    bob_key: str
    bob_completion_id: str
    bob_spare_key: str
    bob_spare_key_id: str

    @property
    def base_url(self) -> str:
        return self.server.base_url


def complete(server: RunningServer, key: str, model: str, feature: str, text: str) -> str:
    response = httpx.post(
        f"{server.api_url}/chat/completions",
        headers=bearer(key),
        json={
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 8,
            "store": True,
            "metadata": {"feature": feature},
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FakeUpstream() as upstream:
        home = tmp_path_factory.mktemp("aiservice-dashboard-browser")
        (home / "config.toml").write_text(
            f'[[models]]\nname = "{LOCAL}"\nprice_input_per_1m = 0.5\nprice_output_per_1m = 1.5\n'
            f'\n[[models]]\nname = "{REMOTE}"\nprovider = "openai"\n'
            f'base_url = "{upstream.base_url}"\nupstream_model = "gpt-4o-mini"\n'
            "price_input_per_1m = 1.0\nprice_output_per_1m = 2.0\nmax_retries = 0\n",
            encoding="utf-8",
        )
        server = start_server(home, env={"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None})
        try:
            yield _populate(server, upstream)
        finally:
            stop_server(server)


def _populate(server: RunningServer, upstream: FakeUpstream) -> World:
    ann, bob = new_email("ann"), new_email("bob")
    admin_add_user(server, ann, PASSWORD)
    admin_add_user(server, bob, PASSWORD)
    ann_key, bob_key = admin_create_key(server, ann), admin_create_key(server, bob)
    spare = httpx.post(
        f"{server.api_url}/admin/keys",
        json={"email": bob, "name": "spare"},
        headers=bearer(MASTER_KEY),
        timeout=30,
    )
    assert spare.status_code == 201, spare.text
    # One at a time for the order (the log is newest first); the fake upstream is instant.
    remote_ids = [
        complete(server, ann_key, REMOTE, ("summarize", "reply")[n % 2], f"note {n}")
        for n in range(REMOTE_ROWS)
    ]
    triage_ids = [
        complete(server, ann_key, LOCAL, "triage", f"Triage ticket {n}.") for n in range(3)
    ]
    bob_completion_id = complete(server, bob_key, LOCAL, "reply", "Hello from Bob.")
    relabel_id = complete(server, ann_key, REMOTE, "reply", "Please re-label me.")
    for key in (ann_key, bob_key):  # flush each process ledger's records to the table
        assert httpx.get(f"{server.api_url}/usage", headers=bearer(key)).status_code == 200
    return World(
        server=server,
        upstream=upstream,
        ann_email=ann,
        ann_key=ann_key,
        remote_ids=remote_ids,
        triage_ids=triage_ids,
        relabel_id=relabel_id,
        bob_key=bob_key,
        bob_completion_id=bob_completion_id,
        bob_spare_key=spare.json()["key"],
        bob_spare_key_id=spare.json()["id"],
    )


# Helpers: signing in through the forms, reading the log.


def sign_in_with_password(driver: WebDriver, base_url: str, email: str, password: str) -> None:
    driver.get(f"{base_url}/dashboard/login")
    wait_for(driver, "#email").send_keys(email)
    wait_for(driver, "#password").send_keys(password)
    wait_for(driver, "#login-password button[type=submit]").click()
    wait_for(driver, "header.top .who")


def sign_in_with_key(driver: WebDriver, base_url: str, key: str) -> None:
    driver.get(f"{base_url}/dashboard/login")
    wait_for(driver, "#api_key").send_keys(key)
    wait_for(driver, "#login-key button[type=submit]").click()
    wait_for(driver, "header.top .who")


def wait_for_url(driver: WebDriver, predicate, what: str, timeout: float = 10) -> str:
    WebDriverWait(driver, timeout).until(
        lambda d: predicate(d.current_url), message=f"{what}; at {driver.current_url}"
    )
    return driver.current_url


def row_ids(driver: WebDriver) -> list[str]:
    return [
        row.get_attribute("data-row")
        for row in driver.find_elements(By.CSS_SELECTOR, "table.log tbody tr[data-row]")
    ]


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# Signing in.


def test_signing_in_with_email_and_password_lands_on_the_log_with_an_httponly_lax_cookie(
    world: World,
):
    with chromium() as driver:
        driver.get(f"{world.base_url}/dashboard")
        wait_for_url(driver, lambda url: "/dashboard/login" in url, "signed out: the form")
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)

        assert urlsplit(driver.current_url).path == "/dashboard/requests"
        assert wait_for(driver, "header.top .who").text == world.ann_email
        session = cookie(driver, "aiservice_session")
        assert session is not None and session["value"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Lax"
        assert session["path"] == "/dashboard"
        assert session["secure"] is False  # plain http here; Secure is set over TLS
        assert "expiry" not in session  # a browser-session cookie
        assert driver.execute_script("return document.cookie") == ""  # unreadable to scripts
        newest_first = [world.relabel_id, *reversed(world.triage_ids), *reversed(world.remote_ids)]
        assert row_ids(driver) == newest_first[:PAGE_SIZE]  # Ann's own, never Bob's


def test_the_sign_in_form_is_filled_and_submitted_with_the_keyboard_alone(world: World):
    with chromium() as driver:
        driver.get(f"{world.base_url}/dashboard/login")
        wait_for(driver, "#login-password")
        keys = ActionChains(driver)

        def focused() -> str:
            return driver.execute_script(
                "const e = document.activeElement; return e.id || e.className || e.tagName"
            )

        # Tab order: the skip link, the key form (field, button), then e-mail and password.
        keys.send_keys(Keys.TAB).perform()
        assert focused() == "skip"
        keys.send_keys(Keys.TAB).perform()
        assert focused() == "api_key"
        keys.send_keys(Keys.TAB, Keys.TAB).perform()
        assert focused() == "email"
        keys.send_keys(world.ann_email, Keys.TAB).perform()
        assert focused() == "password"
        keys.send_keys(PASSWORD, Keys.ENTER).perform()

        wait_for_url(driver, lambda url: url.endswith("/dashboard/requests"), "signed in")
        assert wait_for(driver, "header.top .who").text == world.ann_email


# The request log.


def test_filtering_the_log_by_feature_shows_only_matching_rows_and_keeps_the_filter(
    world: World,
):
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        field = wait_for(driver, "#f-feature")
        field.send_keys("triage")
        wait_for(driver, "form.filters button[type=submit]").click()
        wait_for_url(driver, lambda url: "feature=triage" in url, "the filter in the URL")
        wait_for(driver, "table.log")

        assert query_of(driver.current_url)["feature"] == ["triage"]
        assert wait_for(driver, "#f-feature").get_attribute("value") == "triage"
        assert row_ids(driver) == list(reversed(world.triage_ids))  # newest first
        for row in driver.find_elements(By.CSS_SELECTOR, "table.log tbody tr[data-row]"):
            assert "feature=triage" in row.text and LOCAL in row.text
        assert driver.find_elements(By.CSS_SELECTOR, "a[rel=next]") == []


def test_following_rel_next_shows_the_next_page_with_the_model_filter_and_no_row_repeated(
    world: World,
):
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        wait_for(driver, "#f-model").send_keys(REMOTE)
        wait_for(driver, "form.filters button[type=submit]").click()
        wait_for_url(driver, lambda url: f"model={REMOTE}" in url, "the filter in the URL")
        wait_for(driver, "table.log")
        first = row_ids(driver)
        assert len(first) == PAGE_SIZE

        wait_for(driver, "a[rel=next]").click()
        wait_for_url(driver, lambda url: "after=" in url, "the next page")
        wait_for(driver, "table.log")
        second = row_ids(driver)

        assert query_of(driver.current_url)["model"] == [REMOTE]
        assert wait_for(driver, "#f-model").get_attribute("value") == REMOTE
        assert not set(first) & set(second)
        everything = [world.relabel_id, *reversed(world.remote_ids)]  # newest first
        assert first + second == everything
        assert driver.find_elements(By.CSS_SELECTOR, "a[rel=next]") == []


def test_a_request_opened_from_the_log_is_relabelled_and_the_api_returns_the_new_metadata(
    world: World,
):
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        wait_for(driver, f'tr[data-row="{world.relabel_id}"] a').click()
        wait_for_url(driver, lambda url: url.endswith(world.relabel_id), "the request's page")
        assert wait_for(driver, "main h1").text == world.relabel_id
        assert wait_for(driver, "#key_0").get_attribute("value") == "feature"
        value = wait_for(driver, "#value_0")
        assert value.get_attribute("value") == "reply"
        value.clear()
        value.send_keys("escalated")
        wait_for(driver, "#key_1").send_keys("reviewed")
        wait_for(driver, "#value_1").send_keys("yes")
        driver.find_element(By.XPATH, "//form[@class='relabel']//button[.='Save metadata']").click()

        assert wait_for(driver, "p.notice").text == "Metadata saved."
        pairs = {
            driver.find_element(By.ID, f"key_{n}").get_attribute("value"): driver.find_element(
                By.ID, f"value_{n}"
            ).get_attribute("value")
            for n in range(2)
        }
        assert pairs == {"feature": "escalated", "reviewed": "yes"}

    stored = httpx.get(
        f"{world.server.api_url}/chat/completions/{world.relabel_id}",
        headers=bearer(world.ann_key),
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["metadata"] == {"feature": "escalated", "reviewed": "yes"}


# Usage.


def api_usage(world: World, since: str, until: str, group_by: str) -> list[dict]:
    response = httpx.get(
        f"{world.server.api_url}/usage",
        params={"since": since, "until": until, "group_by": group_by},
        headers=bearer(world.ann_key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize(
    ("group", "group_by", "measure"),
    [("model", "model", "cost_usd"), ("feature", "metadata.feature", "requests")],
)
def test_the_usage_chart_and_table_equal_the_usage_api(
    world: World, group: str, group_by: str, measure: str
):
    today = datetime.now(UTC).date()
    since, until = today - timedelta(days=1), today  # the page's until is inclusive
    expected = api_usage(
        world, since.isoformat(), (until + timedelta(days=1)).isoformat(), group_by
    )
    assert sum(row["requests"] for row in expected) >= REMOTE_ROWS + 4
    assert sum(row["cost_usd"] for row in expected) > 0
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        driver.get(
            f"{world.base_url}/dashboard/usage?group={group}&measure={measure}"
            f"&since={since.isoformat()}&until={until.isoformat()}"
        )
        wait_for(driver, "figure.chart svg")
        rows = {
            row.get_attribute("data-group"): (
                int(row.get_attribute("data-requests")),
                float(row.get_attribute("data-cost")),
            )
            for row in driver.find_elements(By.CSS_SELECTOR, "table.usage tbody tr[data-group]")
        }
        foot = wait_for(driver, "table.usage tfoot tr")
        total_requests = int(foot.get_attribute("data-total-requests"))
        total_cost = float(foot.get_attribute("data-total-cost"))
        bars: dict[str, float] = {}
        for bar in driver.find_elements(By.CSS_SELECTOR, "figure.chart rect[data-value]"):
            name = bar.get_attribute("data-series")
            bars[name] = bars.get(name, 0.0) + float(bar.get_attribute("data-value"))
        chart_total = float(wait_for(driver, "text.chart-total").get_attribute("data-total"))
        # Drawn 720 units wide; not stretched to the page (its text would grow with it).
        drawn = driver.execute_script(
            "return document.querySelector('figure.chart svg').getBoundingClientRect().width"
        )
        assert drawn <= 720.5, drawn

    def name(row: dict) -> str:
        return "" if row[group_by] is None else str(row[group_by])

    assert set(rows) == {name(row) for row in expected}
    for row in expected:
        requests, cost = rows[name(row)]
        assert requests == row["requests"], row
        assert math.isclose(cost, row["cost_usd"], rel_tol=0, abs_tol=COST_TOLERANCE), row
        shown = bars[name(row) or "(none)"]
        assert math.isclose(shown, row[measure], rel_tol=0, abs_tol=COST_TOLERANCE), row
    assert total_requests == sum(row["requests"] for row in expected)
    assert math.isclose(
        total_cost, sum(row["cost_usd"] for row in expected), rel_tol=0, abs_tol=COST_TOLERANCE
    )
    expected_total = sum(row[measure] for row in expected)
    assert math.isclose(chart_total, expected_total, rel_tol=0, abs_tol=COST_TOLERANCE)


# Keys, as admin.


def test_an_admin_revokes_a_key_on_the_keys_page_and_the_api_then_refuses_it(world: World):
    api = f"{world.server.api_url}/models"
    assert httpx.get(api, headers=bearer(world.bob_spare_key)).status_code == 200
    row = f'tr[data-key="{world.bob_spare_key_id}"]'
    with chromium() as driver:
        sign_in_with_key(driver, world.base_url, MASTER_KEY)
        assert "(admin)" in wait_for(driver, "header.top .who").text
        driver.get(f"{world.base_url}/dashboard/keys")
        assert wait_for(driver, row).get_attribute("data-state") == "active"
        wait_for(driver, f"{row} form[action$='/revoke'] button").click()
        wait_for(driver, f'{row}[data-state="revoked"]')
        assert urlsplit(driver.current_url).path == "/dashboard/keys"
        assert driver.find_elements(By.CSS_SELECTOR, f"{row} form[action$='/revoke']") == []
        assert "revoked" in wait_for(driver, row).text
        active = driver.find_elements(By.CSS_SELECTOR, 'tr[data-key][data-state="active"]')
        assert active  # the other keys stay active

    refused = httpx.get(api, headers=bearer(world.bob_spare_key))
    assert refused.status_code == 401, refused.text
    assert httpx.get(api, headers=bearer(world.bob_key)).status_code == 200


# What is refused.


def test_a_user_opening_another_user_s_request_gets_the_404_page(world: World):
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        driver.get(f"{world.base_url}/dashboard/requests/{world.bob_completion_id}")
        error = wait_for(driver, 'p.error[data-status="404"]')
        assert world.bob_completion_id in error.text
        assert "Hello from Bob" not in driver.page_source
        session = cookie(driver, "aiservice_session")["value"]
    # The same answer as for an id that does not exist, with the HTTP status to match.
    for request_id in (world.bob_completion_id, "chatcmpl-doesnotexist"):
        answer = httpx.get(
            f"{world.base_url}/dashboard/requests/{request_id}",
            cookies={"aiservice_session": session},
        )
        assert answer.status_code == 404
        assert 'data-status="404"' in answer.text


def test_the_relabel_form_posted_without_its_csrf_token_is_refused_with_403(world: World):
    target = world.triage_ids[0]
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        driver.get(f"{world.base_url}/dashboard/requests/{target}")
        wait_for(driver, "form.relabel")
        wait_for(driver, "#key_1").send_keys("forged")
        wait_for(driver, "#value_1").send_keys("yes")
        driver.execute_script(
            "document.querySelector('form.relabel input[name=csrf_token]').remove()"
        )
        driver.find_element(By.CSS_SELECTOR, "form.relabel button[type=submit]").click()

        error = wait_for(driver, 'p.error[data-status="403"]')
        assert error.get_attribute("data-error-code") == "csrf_token_invalid"

    stored = httpx.get(
        f"{world.server.api_url}/chat/completions/{target}", headers=bearer(world.ann_key)
    )
    assert stored.json()["metadata"] == {"feature": "triage"}


# Phone width.


def test_at_390_px_the_request_log_does_not_overflow_and_its_table_scrolls_inside(world: World):
    with chromium(width=390, height=844) as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        wait_for(driver, "table.log tbody tr[data-row]")
        widths = driver.execute_script(
            "const wrap = document.querySelector('.table-wrap');"
            "return {page: document.documentElement.scrollWidth, view: window.innerWidth,"
            " wrap: wrap.clientWidth, table: wrap.scrollWidth,"
            " overflow: getComputedStyle(wrap).overflowX};"
        )
        assert widths["view"] == 390
        assert widths["page"] <= widths["view"] + 1, widths
        assert widths["wrap"] <= widths["view"], widths
        assert widths["overflow"] == "auto", widths
        assert widths["table"] > widths["wrap"], widths  # wider than the phone: it scrolls


# Known bugs: these state the right behaviour, and fail until the dashboard is fixed.


def test_a_filtered_log_s_address_does_not_carry_the_csrf_token(world: World):
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, world.ann_email, PASSWORD)
        wait_for(driver, "#f-feature").send_keys("triage")
        wait_for(driver, "form.filters button[type=submit]").click()
        wait_for_url(driver, lambda url: "feature=triage" in url, "the filter in the URL")
        assert "csrf_token" not in query_of(driver.current_url)


def test_every_stored_completion_shows_on_some_page_of_the_log_even_a_slow_one(world: World):
    email = new_email("dora")
    admin_add_user(world.server, email, PASSWORD)
    key = admin_create_key(world.server, email)
    world.upstream.add_fault(Fault(first_byte_delay_s=2.5, times=1))
    slow: dict[str, str] = {}
    started = time.time()
    thread = threading.Thread(
        target=lambda: slow.setdefault("id", complete(world.server, key, REMOTE, "x", "slow"))
    )
    thread.start()
    # `created` is in whole seconds: the fast ones start in a later second than the slow one.
    wait_until(lambda: time.time() >= math.floor(started) + 1.05, timeout=3, what="a new second")
    fast = [complete(world.server, key, REMOTE, "x", f"fast {n}") for n in range(PAGE_SIZE)]
    thread.join()
    last = complete(world.server, key, REMOTE, "x", "last")
    stored = {slow["id"], *fast, last}
    with chromium() as driver:
        sign_in_with_password(driver, world.base_url, email, PASSWORD)
        shown = row_ids(driver)
        while driver.find_elements(By.CSS_SELECTOR, "a[rel=next]"):
            driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
            WebDriverWait(driver, 10).until(lambda d: "after=" in d.current_url)
            wait_for(driver, "table.log")
            shown += row_ids(driver)
    assert len(shown) == len(set(shown))
    assert set(shown) == stored, f"never shown: {stored - set(shown)}"
