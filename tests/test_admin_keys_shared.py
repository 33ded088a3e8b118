"""Runtime keys across real `freeapi` processes sharing one state store: two gateways on one
Redis, and `--workers 2` on one SQLite file (with the `freeapi keys` CLI beside them). A key
made through one is served by the other within a second; revoked, it is refused by both
within a second; rotated with a grace period, the old secret stops when the grace ends."""

import json
import subprocess
import sys
import time
from pathlib import Path

import openai

from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, wait_listening
from tests.test_admin_keys_api import ADMIN
from tests.test_limits import redis_state  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
PROPAGATION = 1.0  # seconds a change may take to hold on every gateway (docs/admin.md)


def start(tmp_path, fake, state, *extra, port=None):
    port = port or free_port()
    cfg = tmp_path / f"config-{port}.yaml"
    cfg.write_text(json.dumps({
        "server": {"host": "127.0.0.1", "port": port},
        "auth": {"keys": [{"key": ADMIN, "name": "root", "role": "admin"}]},
        "providers": {"deepseek": {"base_url": fake.url, "api_keys": [GOOD]}},
        "state": state}))
    log = open(tmp_path / f"stderr-{port}.log", "wb")  # checked for secrets at the end
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg), *extra,
                             "--log-level", "debug"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    wait_listening(port, proc)
    return f"http://127.0.0.1:{port}", proc, cfg


def admin(base, method, path, body=None):
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    assert resp.status in (200, 201), (resp.status, data)
    return data


def served(base, key) -> bool:
    """One chat completion with the openai SDK on a fresh connection (so that with
    --workers, the kernel may hand each to another worker)."""
    with openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as client:
        try:
            client.chat.completions.create(model="deepseek-chat",
                                           messages=[{"role": "user", "content": "hi"}])
            return True
        except openai.AuthenticationError:
            return False


def within(seconds, check, what):
    """Poll `check` until it holds; it must within `seconds` of now."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def all_of(bases, key, want, times=1):
    return lambda: all(served(b, key) is want for b in bases for _ in range(times))


def no_secrets_logged(tmp_path, *secrets):
    logs = list(tmp_path.glob("stderr-*.log"))
    assert logs
    for path in logs:
        text = path.read_bytes()
        assert b"/admin/keys" in text  # debug access lines were written
        for secret in secrets:
            assert secret.encode() not in text, path


def stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(10)


def test_two_gateways_on_one_redis_share_keys(tmp_path, redis_state):  # noqa: F811
    with ThreadedFake() as fake:
        a, pa, _ = start(tmp_path, fake, redis_state)
        b, pb, _ = start(tmp_path, fake, redis_state)
        try:
            made = admin(a, "POST", "/admin/keys", {"name": "alice"})
            within(PROPAGATION, all_of([b], made["key"], True), "B never served A's key")
            assert served(a, made["key"])
            admin(b, "DELETE", f"/admin/keys/{made['id']}")
            within(PROPAGATION, all_of([a, b], made["key"], False),
                   "the revoked key was still served")

            other = admin(b, "POST", "/admin/keys", {"name": "bob"})
            within(PROPAGATION, all_of([a], other["key"], True), "A never served B's key")
            rotated = admin(a, "POST", f"/admin/keys/{other['id']}/rotate",
                            {"grace_seconds": 2})
            within(PROPAGATION, all_of([a, b], rotated["key"], True),
                   "the new secret was not served everywhere")
            assert served(a, other["key"]) and served(b, other["key"])  # within the grace
            within(2 + PROPAGATION, all_of([a, b], other["key"], False),
                   "the old secret outlived its grace period")
            assert served(a, rotated["key"]) and served(b, rotated["key"])
            keys = admin(b, "GET", "/admin/keys")["data"]
            assert {k["name"]: k["status"] for k in keys} == {
                "root": "active", "alice": "revoked", "bob": "active"}
        finally:
            stop(pa, pb)
        no_secrets_logged(tmp_path, made["key"], other["key"], rotated["key"])


def test_workers_on_one_sqlite_file_and_the_cli_share_keys(tmp_path):
    state = {"path": str(tmp_path / "state.db")}
    with ThreadedFake() as fake:
        base, proc, cfg = start(tmp_path, fake, state, "--workers", "2")
        try:
            made = admin(base, "POST", "/admin/keys", {"name": "carol"})
            # Ten fresh connections in a row: both workers serve it (the kernel spreads
            # connections; all ten on one worker has a chance of 1 in 512).
            within(PROPAGATION, all_of([base], made["key"], True, times=10),
                   "a worker never served the new key")
            out = subprocess.run([sys.executable, "-m", "freeapi", "keys", "revoke",
                                  made["id"], "--config", str(cfg)], cwd=ROOT,
                                 capture_output=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["status"] == "revoked"
            assert made["key"].encode() not in out.stdout + out.stderr
            within(PROPAGATION, all_of([base], made["key"], False, times=10),
                   "a worker still served the revoked key")
        finally:
            stop(proc)
        no_secrets_logged(tmp_path, made["key"])
        for path in tmp_path.glob("state.db*"):  # the file and its WAL
            assert made["key"].encode() not in path.read_bytes(), path
