"""compose.yaml brought up with podman-compose, for tests/e2e/container_e2e.py."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tests.conftest import free_port
from tests.e2e.container_gateway import RUN, TEXT, chat, check, log, status, wait_http, \
    write_config
from tests.e2e.podman_sandbox import IMAGE, REDIS_IMAGE, ROOT, HealthTicker, Podman, \
    inspect, podman_version, sh, started_at


def compose_checks(pm: Podman, compose: str, work: Path, fake) -> None:
    """compose.yaml as users run it, with an override for what this machine lacks: no
    bridge network (host network, so the ports and Redis's address change) and no
    registry (the Redis image is the local stand-in). Two freeapi replicas."""
    rport, p1, p2 = free_port(), free_port(), free_port()
    password = "e2e-redis-password"
    redis_url = f"redis://:{password}@127.0.0.1:{rport}/0"
    # A mounted config replaces the image's: it keeps the image's redis_url line.
    cfgs = [write_config(work, f"replica{i}", p, fake.url,
                         extra=', redis_url: "${FREEAPI_REDIS_URL:-}"')
            for i, p in ((1, p1), (2, p2))]
    replica = {
        "image": IMAGE, "network_mode": "host",
        "environment": {"FREEAPI_REDIS_URL": redis_url},
        "depends_on": {"redis": {"condition": "service_healthy"}},
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
        if not check("podman-compose up: redis and two freeapi replicas answer", up):
            out = sh([*cmd, "logs"], check=False, env=pm.env, cwd=ROOT)
            log((out.stdout + out.stderr)[-2000:])
            return

        def ordered():
            first_ok = ticker.first_healthy[f"{RUN}_redis_1"]
            for svc in ("freeapi", "freeapi-2"):
                started = started_at(pm, f"{RUN}_{svc}_1")
                assert started > first_ok, f"{svc} started {first_ok - started:.2f}s " \
                                           "before redis was healthy"
        version = podman_version(pm)
        if version >= (4, 6):
            check("redis went healthy before freeapi started (depends_on service_healthy)",
                  ordered)
        else:  # podman-compose checks the condition with `podman wait --condition=healthy`
            log(f"not checked: depends_on service_healthy: podman-compose ignores it on "
                f"podman {'.'.join(map(str, version))} (needs 4.6); the restart check below "
                "covers a freeapi started before Redis")

        def healthy():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = {s: inspect(pm, f"{RUN}_{s}_1")["State"]["Health"]["Status"]
                          for s in ("freeapi", "freeapi-2", "redis")}
                if set(states.values()) == {"healthy"}:
                    return
                time.sleep(1)
            raise AssertionError(states)
        check("compose healthchecks go healthy", healthy)

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

        def persisted():
            keys.update(k for k in redis_keys() if "ledger" in k)
            assert keys, "no usage ledger in Redis"
        check("freeapi's state (the usage ledger) is in the compose Redis", persisted)

        def restarted():
            # Redis's appendonly file on its volume keeps the state across its restart, and
            # freeapi reconnects by itself.
            pm("restart", "-t", "10", f"{RUN}_redis_1")
            deadline = time.monotonic() + 30
            while pm("exec", f"{RUN}_redis_1", "redis-cli", "-p", str(rport), "ping",
                     check=False).stdout.strip() != "PONG":
                assert time.monotonic() < deadline, "redis did not come back"
                time.sleep(0.5)
            assert keys and keys <= redis_keys(), "the ledger did not survive a restart"
            # The key's spent rpm budget lives in Redis: both replicas, reconnected, still
            # refuse it (only the shared counter can say 429 here).
            assert [status(p1), status(p2)] == [429, 429]
        check("Redis restarted: the state survives and both replicas reconnect", restarted)
        late_redis_check(pm, work, fake)
    finally:
        ticker.stop.set()
        down = sh([*cmd, "down", "-v", "-t", "40"], check=False, timeout=180, env=pm.env,
                  cwd=ROOT)
        if down.returncode:
            log(f"compose down: {down.stderr[-500:]}")


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
