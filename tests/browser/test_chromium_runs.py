"""The browser-test support itself: a real Chromium opens a page from a real local HTTP server,
fills in and submits its form, and shows the server's answer; the window size holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from browser_support import chromium, cookie, screenshot, wait_for

FORM_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Form</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><form id="greet" method="post" action="/submit">
<input id="name" name="name"> <button id="send" type="submit">Send</button>
</form></body></html>"""


@dataclass
class PageServer:
    base_url: str
    received: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    """http.server on 127.0.0.1, a free port, in a thread: the form, and what is posted to it."""
    state = PageServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._send(FORM_PAGE, {"Set-Cookie": "probe=seen; Path=/; HttpOnly; SameSite=Lax"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            fields = parse_qs(self.rfile.read(length).decode())
            state.received.append(fields)
            name = escape(fields.get("name", [""])[0])
            self._send(f'<!doctype html><h1 id="result">Hello, {name}</h1>'.encode())

        def _send(self, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_form_filled_in_chromium_reaches_the_server_and_its_answer_is_shown(
    page_server: PageServer, tmp_path
):
    with chromium() as driver:
        driver.get(page_server.base_url + "/")
        wait_for(driver, "#name").send_keys("Ada Lovelace")
        assert cookie(driver, "probe")["value"] == "seen"
        assert cookie(driver, "probe")["httpOnly"] is True
        assert cookie(driver, "absent") is None
        wait_for(driver, "#send").click()

        assert wait_for(driver, "#result").text == "Hello, Ada Lovelace"
        assert driver.current_url == page_server.base_url + "/submit"
        assert page_server.received == [{"name": ["Ada Lovelace"]}]
        shot = screenshot(driver, tmp_path / "shots" / "result.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_phone_sized_window_gives_the_page_a_390_px_wide_viewport(page_server: PageServer):
    with chromium(width=390, height=844) as driver:
        driver.get(page_server.base_url + "/")
        wait_for(driver, "#greet")
        assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == [390, 844]
