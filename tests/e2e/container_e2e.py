"""End to end: the repository's Dockerfile built and run, and compose.yaml brought up, with
Debian's podman on this machine (no registry, no Docker daemon). Run by .ci/run:

    python tests/e2e/container_e2e.py

What it needs it installs when missing (as root: `apt-get install podman runc
debootstrap`; podman-compose from PyPI into .venvs/podman-compose). No registry is
reachable, so `python:3.11-slim`, Redis and PostgreSQL are stood in for by images made
from a Debian bookworm root filesystem (debootstrap from the machine's own apt mirror),
cached under
$FREEAPI_CONTAINER_CACHE (default /var/tmp/freeapi-container) so a second run skips it.
Recipe and its limits: docs (operating: containers) and shared notes, containers-2026-12.

Checks: the image answers /ping and /healthz and its HEALTHCHECK passes; PID 1 is freeapi
and runs as a non-root uid; an arbitrary uid (`--user 12345:0`) starts and writes /data; a
chat request goes through the container to a fake vendor on 127.0.0.1; SIGTERM
(`podman stop`) lets a stream in flight finish and the container exits 0 within
compose.yaml's stop_grace_period; compose.yaml comes up with podman-compose, Redis and
PostgreSQL go healthy before freeapi starts, two freeapi replicas share one key's limit
through Redis, and a runtime key and the usage ledger through PostgreSQL.

Prints `container e2e: not run: REASON` and exits 0 when podman cannot be installed (no
root, no apt); any failed check exits 1. Not collected by pytest.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import free_port  # noqa: E402
from tests.e2e.compose_checks import compose_checks  # noqa: E402
from tests.e2e.container_gateway import RUN, TEXT, StreamReader, chat, check, \
    data_owners, grace_period, log, proc1, results, start, wait_http, \
    write_config  # noqa: E402
from tests.e2e.podman_sandbox import IMAGE, NotRun, Podman, base_images, build, \
    ensure_tools  # noqa: E402
from tests.helpers import ThreadedFake, check_stream  # noqa: E402

timings: list[tuple[str, float]] = []


class Step:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        took = time.monotonic() - self.start
        timings.append((self.name, took))
        log(f"{self.name}: {took:.1f}s")


# -- one container ---------------------------------------------------------------------------

def single_container_checks(pm: Podman, work: Path, fake) -> None:
    port = free_port()
    name = f"{RUN}-one"
    cfg = write_config(work, "one", port, fake.url)
    if not check("container starts and answers /ping",
                 lambda: start(pm, name, cfg, port, IMAGE)):
        return

    def ping_healthz():
        assert wait_http(f"http://127.0.0.1:{port}/ping", 5) == b"pong"
        body = json.loads(wait_http(f"http://127.0.0.1:{port}/healthz", 5))
        assert body.get("status") in ("ok", "degraded"), body
    check("/ping and /healthz", ping_healthz)

    def healthcheck():
        health = pm("inspect", "--format", "{{json .Config.Healthcheck}}", name).stdout
        assert (json.loads(health) or {}).get("Test"), f"no HEALTHCHECK in the image: {health}"
        pm("healthcheck", "run", name)  # exits non-zero when unhealthy
    check("the image's HEALTHCHECK passes (port from the mounted config)", healthcheck)

    def non_root():
        p = proc1(pm, name)
        assert p["uid"] == "10001" and p["gid"] == "0", p
        assert "freeapi" in p["cmd"], f"PID 1 is not freeapi: {p['cmd']}"
    check("PID 1 is freeapi, as uid 10001 (non-root)", non_root)

    def through():
        before = len(fake.state.requests)
        assert chat(port) == TEXT
        assert len(fake.state.requests) == before + 1
        owners = data_owners(pm, name)
        assert owners.get("freeapi.db") == 10001, owners
    check("chat through the container to a fake vendor; state in /data", through)

    def drain():
        grace = grace_period()
        reader = StreamReader(port, "!stall 3")  # pauses 3 s mid-stream, then finishes
        reader.start()
        assert reader.first.wait(15) and reader.raw, reader.error
        t0 = time.monotonic()
        # podman stop: STOPSIGNAL (SIGTERM), then SIGKILL after the grace, as compose does.
        pm("stop", "-t", str(int(grace)), name, timeout=grace + 30)
        took = time.monotonic() - t0
        reader.join(10)
        assert reader.status == 200 and reader.error is None, (reader.status, reader.error)
        text, err = check_stream(reader.raw, TEXT)
        assert err is None and text == TEXT, (text, err)
        code = pm("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", f"exit code {code}"
        assert took < grace, f"stopped after {took:.1f}s, grace {grace:g}s"
        logs = pm("logs", name)
        out = logs.stdout + logs.stderr
        assert "Traceback" not in out and "shutting down" in out, out[-800:]
        log(f"SIGTERM drained a stream and exited 0 in {took:.1f}s (grace {grace:g}s)")
    check("SIGTERM drains a stream in flight, exit 0 within stop_grace_period", drain)


def arbitrary_uid_checks(pm: Podman, work: Path, fake) -> None:
    port = free_port()
    name = f"{RUN}-uid"
    cfg = write_config(work, "uid", free_port(), fake.url)  # overridden by --port below

    def arbitrary():
        start(pm, name, cfg, port, "--user", "12345:0", IMAGE,
              "--config", "/etc/freeapi/config.yaml", "--port", str(port))
        assert proc1(pm, name)["uid"] == "12345"
        pm("healthcheck", "run", name)  # asks the --port the server was started with
        assert chat(port) == TEXT
        owners = data_owners(pm, name)
        assert owners.get("freeapi.db") == 12345, owners
    check("an arbitrary uid (--user 12345:0) starts, writes /data; HEALTHCHECK follows "
          "--port", arbitrary)


# -- main ------------------------------------------------------------------------------------

def cleanup(pm: Podman) -> None:
    for suffix in ("one", "uid"):
        pm("rm", "-f", "-t", "0", f"{RUN}-{suffix}", check=False)
        pm("volume", "rm", "-f", f"{RUN}-{suffix}-data", check=False)


def main() -> int:
    t0 = time.monotonic()
    try:
        with Step("tools"):
            compose = ensure_tools()
        work = Path(tempfile.mkdtemp(prefix="freeapi-container-e2e-"))
        pm = Podman(work)
        with Step("base images"):
            base_images(pm)
    except NotRun as e:
        log(f"not run: {e}")
        return 0
    with Step("image build"):
        built = check("the Dockerfile builds", lambda: build(pm))
    if built:
        with ThreadedFake() as fake:
            try:
                with Step("one container"):
                    single_container_checks(pm, work, fake)
                with Step("arbitrary uid"):
                    arbitrary_uid_checks(pm, work, fake)
            finally:
                cleanup(pm)
            with Step("compose"):
                compose_checks(pm, compose, work, fake)
    shutil.rmtree(work, ignore_errors=True)
    # Each changed build leaves a ~340 MB layer set; a day old, they go (newer ones are
    # the build cache that keeps a warm run fast).
    pm("image", "prune", "-f", "--filter", "until=24h", check=False)
    failed = [(n, e) for n, e in results if e]
    for name, err in results:
        log(f"{name}: {'ok' if not err else 'FAILED: ' + err}")
    log("timings: " + ", ".join(f"{n} {s:.0f}s" for n, s in timings)
        + f", total {time.monotonic() - t0:.0f}s")
    print(f"container e2e: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
