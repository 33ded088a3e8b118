"""The admin console (/status) in a real headless browser (Debian's chromium driven by
Playwright) against a real gateway: a team made and edited, a key named like an HTML
injection made in the page with a budget, its secret read once and used with the openai
SDK, its spend seen in the page, the key revoked in the page and the next call refused;
the request log filtered to it, exported as CSV, and the audit log showing it all. No
JavaScript error, no request elsewhere, the name always text, the secret gone when
dismissed."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, wait_listening
from tests.test_status_page import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "gw-admin-console-0001"
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture
def gateway(tmp_path):
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"server: {{host: 127.0.0.1, port: {port}}}\n"
            f"auth:\n  keys:\n    - {{name: ops, key: {ADMIN}, role: admin}}\n"
            f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
            "prices:\n  deepseek-chat: {input: 1000, output: 2000, currency: USD}\n"
            f"providers:\n  deepseek: {{base_url: '{fake.url}', api_keys: ['{GOOD}']}}\n")
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def chat(base, secret):
    """One chat with the openai SDK; the request id it was answered with."""
    with openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0) as client:
        # max_tokens bounds the budget's reservation (output price x max_tokens): without
        # it the default 4096-token reservation would not fit the key's 1 USD a day.
        raw = client.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
            max_tokens=50)
        assert raw.parse().choices[0].message.content
        return raw.headers["x-request-id"]


def row_of(page, table, text):
    return page.locator(f"#{table} tbody tr", has_text=text)


def refresh_until(page, button, check, tries=40):
    """Click a view's Refresh until `check()` holds (the ledger is written in batches)."""
    for _ in range(tries):
        page.click(button)
        page.wait_for_timeout(250)
        if check():
            return
    raise AssertionError(f"{button}: never showed what was expected")


def test_console_makes_uses_and_revokes_a_key_in_chromium(gateway, tmp_path):
    base = gateway
    errors, elsewhere, dialogs = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900},
                                    accept_downloads=True)
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: not r.url.startswith((base, "blob:" + base))
                    and elsewhere.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(base + "/status")
            page.fill("#key", ADMIN)
            page.click("#login-form button")
            page.wait_for_selector("#recent tbody tr")

            # A team, made and edited in the page.
            page.click("#tabs button[data-tab=teams]")
            page.fill("#tf-name", "research")
            page.fill("#tf-rpm", "100")
            page.fill("#tf-budget-monthly", "5")
            page.click("#tf-submit")
            page.wait_for_selector("#team-table tbody tr:has-text('research')")
            row_of(page, "team-table", "research").locator("button[data-act=edit]").click()
            assert page.input_value("#tf-rpm") == "100"
            page.fill("#tf-rpm", "200")
            page.click("#tf-submit")
            page.wait_for_selector("#team-table tbody tr:has-text('200 requests/min')")
            assert "monthly: 0 / 5.00 USD" in row_of(page, "team-table", "research").inner_text()

            # A key named like markup, in the team, with a budget: its secret shown once.
            page.click("#tabs button[data-tab=keys]")
            page.fill("#kf-name", EVIL)
            page.select_option("#kf-team", label="research")
            page.fill("#kf-budget-daily", "1")
            page.fill("#kf-budget-monthly", "10")
            page.click("#kf-submit")
            page.wait_for_selector("#secret:not([hidden])")
            secret = page.inner_text("#secret-value").strip()
            assert re.fullmatch(r"fk-[A-Za-z0-9_-]{43}", secret), secret
            assert page.inner_text("#secret-name") == EVIL
            page.click("#secret-copy")
            page.wait_for_selector("#secret-copied:not(:empty)")
            page.click("#secret-done")
            assert secret not in page.content()
            assert secret not in page.evaluate("JSON.stringify(sessionStorage)")
            row = row_of(page, "gk-table", EVIL)
            assert row.count() == 1 and "research" in row.inner_text()

            # Used with the SDK: its spend appears in the page, against its budget.
            rid = chat(base, secret)
            refresh_until(page, "#keys-refresh",
                          lambda: "1 requests" in row_of(page, "gk-table", EVIL).inner_text())
            text = row_of(page, "gk-table", EVIL).inner_text()
            spent = re.search(r"daily: ([0-9.]+) / 1.00 USD", text)
            assert spent and float(spent.group(1)) > 0, text
            assert re.search(r"monthly: [0-9.]+ / 10.00 USD", text), text
            page.screenshot(path=str(tmp_path / "console-keys.png"), full_page=True)

            # Revoked in the page, after confirming: the next call is refused.
            row_of(page, "gk-table", EVIL).locator("button[data-act=revoke]").click()
            page.wait_for_selector("#confirm:not([hidden])")
            assert EVIL in page.inner_text("#confirm-text")
            page.click("#confirm-ok")
            page.wait_for_selector("#gk-table .badge.s-revoked")
            with pytest.raises(openai.AuthenticationError):
                chat(base, secret)

            # The request log, filtered to that key, and its CSV export.
            page.click("#tabs button[data-tab=requests]")
            page.wait_for_selector("#rq-table tbody tr")
            page.select_option("#rq-key", label=EVIL)
            page.click("#rq-apply")
            page.wait_for_selector(f"#rq-table tbody tr:has-text('{rid}')")
            assert page.locator("#rq-table tbody tr").count() == 1
            with page.expect_download() as got:
                page.click("#rq-csv")
            csv_text = Path(got.value.path()).read_text()
            assert got.value.suggested_filename.startswith("freeapi-requests-")
            assert rid in csv_text and len(csv_text.strip().splitlines()) == 2

            # Spend per key, charted.
            page.click("#tabs button[data-tab=spend]")
            page.select_option("#sp-by", "key")
            page.wait_for_selector(f"#spend-table tbody tr:has-text('{EVIL}')")
            assert page.locator("#spend-chart svg rect").count() >= 1
            page.screenshot(path=str(tmp_path / "console-spend.png"), full_page=True)

            # The audit log shows every change, the key's name as text.
            page.click("#tabs button[data-tab=audit]")
            page.wait_for_selector("#au-table tbody tr:has-text('key.revoke')")
            audit = page.inner_text("#au-table")
            for action in ("team.create", "team.update", "key.create", "key.revoke"):
                assert action in audit
            assert EVIL in audit and "rpm: 100 → 200" in audit

            # Nowhere did the name become markup.
            assert page.locator("img").count() == 0
            assert secret not in page.content()
            page.screenshot(path=str(tmp_path / "console-audit.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [], dialogs
    assert errors == [], errors
    assert elsewhere == [], elsewhere
    print(f"screenshots: {tmp_path}")
