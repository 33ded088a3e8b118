"""The status page in a real headless browser (Debian's chromium driven by Playwright): the
operator enters the admin key and sees the vendor keys and the traffic just sent, without
JavaScript errors, requests to anywhere else, or a raw key on the page."""

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import free_port
from tests.fakes.deepseek import BUSY, GOOD, GOOD2
from tests.helpers import ALL_KEYS, ThreadedFake, chat_body, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); never a download
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN, USER = "gw-admin-key-0001", "gw-user-key-0002"


def _post(port, body, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/v1/chat/completions", json.dumps(body),
                  {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status, r.headers["X-Request-Id"]
    finally:
        c.close()


@pytest.fixture
def gateway_with_traffic(tmp_path):
    port = free_port()
    with ThreadedFake() as fake:
        fake.state.retry_after = "120"  # the 429 key stays cooling down while we look
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"server: {{host: 127.0.0.1, port: {port}}}\n"
            f"auth:\n  keys:\n    - {{name: ops, key: {ADMIN}, role: admin}}\n"
            f"    - {{name: app, key: {USER}, rpm: 60, daily_tokens: 500}}\n"
            f"providers:\n  deepseek: {{base_url: '{fake.url}', "
            f"api_keys: ['{BUSY}', '{GOOD}', '{GOOD2}']}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port, proc)
            sent = [_post(port, chat_body(stream=i == 2), USER) for i in range(4)]
            sent.append(_post(port, chat_body("!status 400"), ADMIN))
            assert [s for s, _ in sent] == [200, 200, 200, 200, 400]
            yield port, [rid for _, rid in sent]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_the_status_page_shows_keys_and_traffic_in_chromium(gateway_with_traffic, tmp_path):
    port, request_ids = gateway_with_traffic
    base = f"http://127.0.0.1:{port}"
    errors, elsewhere = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: not r.url.startswith(base) and elsewhere.append(r.url))
            page.goto(base + "/status")
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#key", USER)  # a user key is refused, and told so
            page.click("#login-form button")
            page.wait_for_selector("#login-error:not([hidden])")
            assert "admin" in page.inner_text("#login-error")
            # Chromium reports the refused fetch itself as a console error; nothing else.
            assert all("status of 403" in e for e in errors), errors
            errors.clear()
            page.fill("#key", ADMIN)
            page.click("#login-form button")
            page.wait_for_selector("#recent tbody tr code")
            keys = page.inner_text("#keys")
            for masked in ("sk-...0429", "sk-...0001", "sk-...0002"):
                assert masked in keys
            assert "cooldown" in keys and "HTTP 429" in keys  # the 429 key met on the way
            recent = page.inner_text("#recent")
            for rid in request_ids:
                assert rid in recent
            models = page.inner_text("#models")
            assert "deepseek-chat" in models and "client 1" in models
            assert "app" in page.inner_text("#gwkeys")
            assert page.locator("#chart svg rect").count() >= 1
            assert page.locator("#tokens svg rect").count() >= 2
            html = page.content()
            for key in ALL_KEYS + (ADMIN, USER):
                assert key not in html
            page.screenshot(path=str(tmp_path / "status-desktop.png"), full_page=True)
            # The session keeps the key: a reload goes straight to the data.
            page.reload()
            page.wait_for_selector("#recent tbody tr code")
            # On a phone: no horizontal scrolling of the page itself (tables scroll inside).
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(200)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            page.screenshot(path=str(tmp_path / "status-phone.png"), full_page=True)
            page.click("#logout")
            page.wait_for_selector("#login:not([hidden])")
            assert page.evaluate("sessionStorage.length") == 0
        finally:
            browser.close()
    assert errors == [], errors
    assert elsewhere == [], elsewhere
    print(f"screenshots: {tmp_path}")
