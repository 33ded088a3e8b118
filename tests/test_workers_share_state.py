"""`--workers N` runs N real processes on one SQLite file: a key's limits hold across them,
and the ledger is kept to `state.ledger_days` by the running gateway itself."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from freeapi.store.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, chat_body, wait_listening
from tests.test_store import entry

ROOT = Path(__file__).resolve().parent.parent
ALICE = "gw-alice-0000000001"


def post_chat(port: int, key: str = ALICE, body: dict | None = None) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection each
    try:  # time, so the kernel spreads them over the workers
        c.request("POST", "/v1/chat/completions", json.dumps(body or chat_body()),
                  {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def serve(tmp_path, fake, extra: str = "", workers: int = 2):
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\n"
                   f"auth: {{keys: [{{name: alice, key: {ALICE}, rpm: 12}}]}}\n"
                   f"providers:\n  deepseek: {{base_url: '{fake.url}', api_keys: ['{GOOD}']}}\n"
                   f"state: {{path: state.db{extra}}}\n")
    env = dict(os.environ, TMPDIR=str(tmp_path))  # where the workers' metrics dir is made
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg),
                             "--workers", str(workers)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(port, proc)
    return port, proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert proc.returncode == 0


def workers_that_served(tmp_path) -> set[str]:
    # Each worker writes its own metrics file once it has counted a request.
    return {f.name.rsplit("_", 1)[1] for d in tmp_path.glob("freeapi-metrics-*")
            for f in d.glob("counter_*.db")}


def spread_over_workers(tmp_path, send) -> list[int]:
    """The status codes of 30 calls of `send()`, and more until both workers have taken
    some of the traffic (a test of shared state means nothing if one worker took all)."""
    codes = [send() for _ in range(30)]
    for _ in range(60):
        if len(workers_that_served(tmp_path)) == 2:
            break
        codes.append(send())
    assert len(workers_that_served(tmp_path)) == 2, "one worker took everything"
    return codes


def test_a_keys_rpm_holds_across_two_worker_processes(tmp_path):
    with ThreadedFake() as fake:
        port, proc = serve(tmp_path, fake)
        try:
            codes = spread_over_workers(tmp_path, lambda: post_chat(port))
        finally:
            stop(proc)
    # One rpm budget for both processes: twelve served, whichever worker took them.
    assert codes.count(200) == 12
    assert codes.count(429) == len(codes) - 12


def test_the_running_gateway_prunes_ledger_rows_older_than_ledger_days(tmp_path, io_loop):
    now = time.time()
    seed = SQLiteStore(str(tmp_path / "state.db"))
    io_loop.run_sync(lambda: seed.ledger_append([
        entry(now - 3 * 86400, request_id="old-1"), entry(now - 2.5 * 86400,
                                                          request_id="old-2"),
        entry(now - 0.5 * 86400, request_id="recent")]))
    seed.close()
    with ThreadedFake() as fake:
        port, proc = serve(tmp_path, fake, extra=", ledger_days: 2", workers=1)
        try:
            assert post_chat(port) == 200
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with sqlite3.connect(tmp_path / "state.db") as db:
                    ids = {r[0] for r in db.execute("SELECT request_id FROM ledger")}
                if "old-1" not in ids and "old-2" not in ids and len(ids) >= 2:
                    break
                time.sleep(0.05)
        finally:
            stop(proc)
    assert "old-1" not in ids and "old-2" not in ids
    assert "recent" in ids and len(ids) == 2  # the recent row and the new request's
