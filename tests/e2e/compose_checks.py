"""compose.yaml brought up with podman-compose, for tests/e2e/container_e2e.py."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import yaml

from tests.conftest import free_port
from tests.e2e.container_gateway import ADMIN_KEY, RUN, TEXT, chat, check, log, status, \
    wait_http, write_config
from tests.e2e.podman_sandbox import IMAGE, POSTGRES_IMAGE, REDIS_IMAGE, ROOT, \
    HealthTicker, Podman, inspect, podman_version, sh, started_at

SERVICES = ("freeapi", "freeapi-2", "redis", "postgres")


def compose_checks(pm: Podman, compose: str, work: Path, fake) -> None:
    """compose.yaml as users run it, with an override for what this machine lacks: no
    bridge network (host network, so the ports and the Redis and PostgreSQL addresses
    change) and no registry (the Redis and PostgreSQL images are the local stand-ins).
    Two freeapi replicas."""
    rport, pgport, p1, p2 = free_port(), free_port(), free_port(), free_port()
    password, pg_password = "e2e-redis-password", "e2e-postgres-password"
    redis_url = f"redis://:{password}@127.0.0.1:{rport}/0"
    database_url = f"postgresql://freeapi:{pg_password}@127.0.0.1:{pgport}/freeapi"
    # A mounted config replaces the image's: it keeps the image's redis_url and
    # database_url lines.
    cfgs = [write_config(work, f"replica{i}", p, fake.url, admin=True,
                         extra=', redis_url: "${FREEAPI_REDIS_URL:-}", '
                               'database_url: "${FREEAPI_DATABASE_URL:-}"')
            for i, p in ((1, p1), (2, p2))]
    # podman-compose on podman < 4.6 waits for a dependency to start, not to be healthy:
    # a replica started before PostgreSQL answers exits with one line and compose.yaml's
    # restart policy brings it back (the second replica, not in compose.yaml, gets it too).
    policy = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["freeapi"][
        "restart"]
    replica = {
        "image": IMAGE, "network_mode": "host", "restart": policy,
        "environment": {"FREEAPI_REDIS_URL": redis_url, "FREEAPI_DATABASE_URL": database_url},
        "depends_on": {"redis": {"condition": "service_healthy"},
                       "postgres": {"condition": "service_healthy"}},
    }
    override = {"services": {
        "freeapi": {**replica,
                    "volumes": [f"{cfgs[0]}:/etc/freeapi/config.yaml:ro"]},
        "freeapi-2": {**replica,
                      "volumes": [f"{cfgs[1]}:/etc/freeapi/config.yaml:ro",
                                  "freeapi-2-data:/data"]},
        "redis": {"image": REDIS_IMAGE, "network_mode": "host",
                  "command": ["redis-server", "--requirepass", password, "--appendonly",
                              "yes", "--bind", "127.0.0.1", "--port", str(rport)],
                  "environment": {"REDISCLI_AUTH": password}},
        # PGPORT: the port the stand-in's server listens on and pg_isready asks (a
        # PostgreSQL already has 5432 on this host).
        "postgres": {"image": POSTGRES_IMAGE, "network_mode": "host",
                     "environment": {"POSTGRES_USER": "freeapi", "POSTGRES_DB": "freeapi",
                                     "POSTGRES_PASSWORD": pg_password,
                                     "PGPORT": str(pgport)}},
    }, "volumes": {"freeapi-2-data": {}}}
    # redis-cli has no port variable: the healthcheck asks the port it was started on.
    override["services"]["redis"]["healthcheck"] = {
        "test": ["CMD", "redis-cli", "-p", str(rport), "ping"]}
    ov = work / "compose.e2e.yaml"
    ov.write_text(yaml.safe_dump(override))
    cmd = [compose, "-p", RUN, "-f", str(ROOT / "compose.yaml"), "-f", str(ov)]
    ticker = HealthTicker(pm, RUN)
    ticker.start()
    try:
        def up():
            p = sh([*cmd, "up", "-d", "--no-build"], timeout=240, env=pm.env, cwd=ROOT)
            for port in (p1, p2):
                wait_http(f"http://127.0.0.1:{port}/ping", 60)
            return p
        if not check("podman-compose up: redis, postgres and two freeapi replicas answer",
                     up):
            for svc in SERVICES:
                out = pm("logs", f"{RUN}_{svc}_1", check=False)
                log(f"{svc}: " + (out.stdout + out.stderr)[-1500:])
            return

        def ordered():
            for dep in ("redis", "postgres"):
                first_ok = ticker.first_healthy[f"{RUN}_{dep}_1"]
                for svc in ("freeapi", "freeapi-2"):
                    started = started_at(pm, f"{RUN}_{svc}_1")
                    assert started > first_ok, f"{svc} started {first_ok - started:.2f}s " \
                                               f"before {dep} was healthy"
        version = podman_version(pm)
        if version >= (4, 6):
            check("redis and postgres went healthy before freeapi started (depends_on "
                  "service_healthy)", ordered)
        else:  # podman-compose checks the condition with `podman wait --condition=healthy`
            log(f"not checked: depends_on service_healthy: podman-compose ignores it on "
                f"podman {'.'.join(map(str, version))} (needs 4.6); compose.yaml's restart policy "
                "covers a freeapi started before Redis or PostgreSQL (checked below with Redis)")

        def healthy():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = {s: inspect(pm, f"{RUN}_{s}_1")["State"]["Health"]["Status"]
                          for s in SERVICES}
                if set(states.values()) == {"healthy"}:
                    return
                time.sleep(1)
            raise AssertionError(states)
        check("compose healthchecks go healthy (postgres: pg_isready)", healthy)

        def shared():
            # One key, rpm 5: five requests spread over both replicas, then both refuse.
            codes = [status(p) for p in (p1, p2, p1, p2, p1)]
            assert codes == [200] * 5, codes
            assert status(p2) == 429 and status(p1) == 429
        check("two replicas share a key's limit through Redis", shared)

        def redis_keys() -> set[str]:
            out = pm("exec", f"{RUN}_redis_1", "redis-cli", "-p", str(rport), "--scan").stdout
            return set(out.split())

        keys = set()

        def hot():
            # With PostgreSQL beside it, Redis keeps the hot state (the limit counters),
            # not the ledger.
            keys.update(redis_keys())
            assert keys, "nothing in Redis"
            assert not any("ledger" in k for k in keys), sorted(keys)
        check("the hot state (limit counters) is in the compose Redis, the ledger is not",
              hot)
        postgres_checks(pm, cmd, p1, p2, pg_password)

        def restarted():
            # Redis's appendonly file on its volume keeps the state across its restart, and
            # freeapi reconnects by itself. The key's rpm budget is spent again first: the
            # checks since may have taken longer than its one-minute window.
            codes = [status(p1) for _ in range(7)]
            assert codes[-1] == 429, f"the key's rpm was never spent again: {codes}"
            before = redis_keys()
            pm("restart", "-t", "10", f"{RUN}_redis_1")
            deadline = time.monotonic() + 30
            while pm("exec", f"{RUN}_redis_1", "redis-cli", "-p", str(rport), "ping",
                     check=False).stdout.strip() != "PONG":
                assert time.monotonic() < deadline, "redis did not come back"
                time.sleep(0.5)
            # (Counter buckets expire with their window: some of them, not all, must be
            # there; the 429s below say the spent budget itself survived.)
            assert before & redis_keys(), "nothing in Redis survived its restart"
            # The key's spent rpm budget lives in Redis: both replicas, reconnected, still
            # refuse it (only the shared counter can say 429 here). A replica whose
            # connect failed while Redis was down fails fast (503) for half a second
            # (freeapi/store/resp.py _RETRY_GAP) before it tries again: reconnecting is
            # given a few seconds, not asked of the very first request.
            after = []
            for port in (p1, p2):
                deadline = time.monotonic() + 10
                code = status(port)
                while code == 503 and time.monotonic() < deadline:
                    time.sleep(0.25)
                    code = status(port)
                after.append(code)
            assert after == [429, 429], f"after the restart: {after}"
        check("Redis restarted: the state survives and both replicas reconnect", restarted)
        late_redis_check(pm, work, fake)
    finally:
        ticker.stop.set()
        down = sh([*cmd, "down", "-v", "-t", "40"], check=False, timeout=180, env=pm.env,
                  cwd=ROOT)
        if down.returncode:
            log(f"compose down: {down.stderr[-500:]}")


def postgres_checks(pm: Podman, cmd: list[str], a: int, b: int, pg_password: str) -> None:
    """The durable state in the compose PostgreSQL, shared by both replicas: a runtime key
    made through replica A serves through B, and a request through A is a ledger row in
    PostgreSQL (read with psql) that B's `freeapi usage` reports."""
    made: dict = {}

    def runtime_key():
        made.update(admin_post(a, "/admin/keys", {"name": "e2e-runtime"}))
        deadline = time.monotonic() + 5
        while True:
            try:
                assert chat(b, key=made["key"]) == TEXT
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    if not check("a runtime key made through replica A (POST /admin/keys) serves through B",
                 runtime_key):
        return

    rid = f"{RUN}-ledger"

    def psql(sql: str) -> str:
        return pm("exec", "-e", f"PGPASSWORD={pg_password}", f"{RUN}_postgres_1", "psql",
                  "-h", "127.0.0.1", "-U", "freeapi", "-d", "freeapi", "-tAc", sql).stdout

    def ledger():
        conn = http.client.HTTPConnection("127.0.0.1", a, timeout=20)
        conn.request("POST", "/v1/chat/completions", json.dumps(
            {"model": "deepseek/deepseek-flash", "messages": [{"role": "user",
                                                                "content": "hi"}]}),
            {"Authorization": f"Bearer {made['key']}", "Content-Type": "application/json",
             "X-Request-Id": rid})
        r = conn.getresponse()
        r.read()
        conn.close()
        assert r.status == 200, r.status
        deadline = time.monotonic() + 15  # the ledger is written in batches
        sql = f"SELECT key, key_id, status FROM ledger WHERE request_id = '{rid}'"
        while not (row := psql(sql).strip()):
            assert time.monotonic() < deadline, "no ledger row in PostgreSQL"
            time.sleep(0.5)
        assert row.split("|") == ["e2e-runtime", made["id"], "200"], (row, made["id"])
        out = pm("exec", f"{RUN}_freeapi-2_1", "freeapi", "--config",
                 "/etc/freeapi/config.yaml", "usage", "--json").stdout
        keys = {k["key"]: k["requests"] for k in json.loads(out)["by_key"]}
        assert keys.get(made["id"], 0) >= 1, (made["id"], keys)  # usage goes by key id
        for svc in ("freeapi", "freeapi-2"):
            logs = pm("logs", f"{RUN}_{svc}_1")
            text = logs.stdout + logs.stderr
            assert pg_password not in text and "Traceback" not in text, text[-800:]
    check("a request through A is a ledger row in PostgreSQL (psql) that B's `freeapi "
          "usage` reports; no password or traceback in the logs", ledger)


def admin_post(port: int, path: str, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, json.dumps(body),
                     {"Authorization": f"Bearer {ADMIN_KEY}",
                      "Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read())
        assert r.status in (200, 201), (r.status, data)
        return data
    finally:
        conn.close()


def late_redis_check(pm: Podman, work: Path, fake) -> None:
    """podman-compose makes freeapi wait for Redis's container to start, not to be ready
    (and not healthy on podman < 4.6), so freeapi can start first: it exits with one clear
    line and compose.yaml's restart policy retries until Redis answers."""
    policy = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["freeapi"][
        "restart"]
    rport, port = free_port(), free_port()
    password = "e2e-late-redis"
    name, rname = f"{RUN}-late", f"{RUN}-late-redis"
    cfg = write_config(work, "late", port, fake.url,
                       extra=', redis_url: "${FREEAPI_REDIS_URL:-}"')

    def late():
        try:
            pm("run", "-d", "--name", name, "--network", "host", "--restart", policy,
               "-e", f"FREEAPI_REDIS_URL=redis://:{password}@127.0.0.1:{rport}/0",
               "-v", f"{cfg}:/etc/freeapi/config.yaml:ro", "-v", f"{name}-data:/data", IMAGE)
            deadline = time.monotonic() + 30
            while inspect(pm, name)["RestartCount"] < 1:
                assert time.monotonic() < deadline, "freeapi was not restarted"
                time.sleep(0.5)
            pm("run", "-d", "--name", rname, "--network", "host", REDIS_IMAGE, "redis-server",
               "--requirepass", password, "--bind", "127.0.0.1", "--port", str(rport))
            wait_http(f"http://127.0.0.1:{port}/ping", 60)
            assert chat(port) == TEXT
            out = pm("logs", name)
            text = out.stdout + out.stderr
            assert "state store: cannot reach redis://" in text, text[-800:]
            assert "Traceback" not in text and password not in text, text[-800:]
        finally:
            for n in (name, rname):
                pm("rm", "-f", "-t", "0", n, check=False)
            pm("volume", "rm", "-f", f"{name}-data", check=False)
    check(f"freeapi started before Redis exits cleanly; restart: {policy} brings it up",
          late)
