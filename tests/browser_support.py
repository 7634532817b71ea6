"""Browser tests in a real Chromium: Debian's chromium, driven through its chromedriver by Selenium.

`make test` installs both first (`make browser`, scripts/ensure-system-packages.sh). Selenium is
always given both paths, so Selenium Manager (which would look for, or download, a driver) never
runs.

    with chromium(width=390, height=844) as driver:
        driver.get(base_url + "/dashboard")
        wait_for(driver, "form#login").submit()
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, as root (no sandbox), on a machine whose network is closed: nothing is fetched in
# the background (component updates, sync, QUIC probes), and /dev/shm is not relied upon.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# Read by selenium-manager only: should anything still call it, it must not go online.
os.environ.setdefault("SE_OFFLINE", "true")


def require_chromium() -> None:
    """Fails the test (never skips it) when Debian's chromium or chromium-driver is missing."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: the browser tests need Debian's packages chromium "
            "and chromium-driver. `make test` installs them (`make browser`, as root), or: "
            "apt-get install -y chromium chromium-driver",
            pytrace=False,
        )


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile whose pages see a `width` x `height` viewport
    (CSS pixels); quit, and the profile removed, on exit."""
    require_chromium()
    scratch = Path(tempfile.mkdtemp(prefix="aiservice-chromium-"))
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={scratch / 'profile'}")
        options.add_argument(f"--window-size={width},{height}")
        # The window alone is not the viewport: headless Chromium keeps a window at least 500 px
        # wide and takes about 140 px of its height for the browser's own frame. These metrics
        # make the page's viewport (innerWidth x innerHeight, screenshots) exactly the size
        # asked for, in every tab; a desktop viewport (no touch, no mobile viewport rules).
        metrics = {
            "width": width,
            "height": height,
            "pixelRatio": 1,
            "mobile": False,
            "touch": False,
        }
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
        log = scratch / "chromedriver.log"
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except WebDriverException as error:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"Chromium did not start: {error.msg}\n{tail}") from error
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def screenshot(driver: webdriver.Chrome, path: str | os.PathLike[str]) -> Path:
    """Saves what the window shows as a PNG file (the parent folder is made if needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(target)):
        raise RuntimeError(f"the screenshot could not be written to {target}")
    return target


def wait_for(
    driver: webdriver.Chrome, css: str, timeout: float = 10, *, visible: bool = True
) -> WebElement:
    """The first element matching `css` once it is visible (or only in the DOM, with
    visible=False: a hidden input); an AssertionError after `timeout` seconds."""
    condition = (
        expected_conditions.visibility_of_element_located
        if visible
        else expected_conditions.presence_of_element_located
    )
    try:
        return WebDriverWait(driver, timeout).until(condition((By.CSS_SELECTOR, css)))
    except TimeoutException:
        state = "visible" if visible else "present"
        raise AssertionError(
            f"no {state} {css!r} after {timeout} s on {driver.current_url}"
        ) from None


def cookie(driver: webdriver.Chrome, name: str) -> dict | None:
    """The cookie `name` the browser holds for the current page, or None: a dict with its
    "value", "httpOnly", "secure", "sameSite", "path", "expiry" (absent for a session cookie)."""
    return driver.get_cookie(name)
