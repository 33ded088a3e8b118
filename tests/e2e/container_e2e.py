"""End to end: the repository's Dockerfile built and run, and compose.yaml brought up, with
Debian's podman on this machine (no registry, no Docker daemon). Run by .ci/run:

    python tests/e2e/container_e2e.py

What it needs it installs when missing (as root: `apt-get install podman runc
debootstrap`; podman-compose from PyPI into .venvs/podman-compose). No registry is
reachable, so `python:3.11-slim` and Redis are stood in for by images made from a Debian
bookworm root filesystem (debootstrap from the machine's own apt mirror), cached under
$FREEAPI_CONTAINER_CACHE (default /var/tmp/freeapi-container) so a second run skips it.
Recipe and its limits: docs (operating: containers) and shared notes, containers-2026-12.

Checks: the image answers /ping and /healthz and its HEALTHCHECK passes; PID 1 is freeapi
and runs as a non-root uid; an arbitrary uid (`--user 12345:0`) starts and writes /data; a
chat request goes through the container to a fake vendor on 127.0.0.1; SIGTERM
(`podman stop`) lets a stream in flight finish and the container exits 0 within
compose.yaml's stop_grace_period; compose.yaml comes up with podman-compose, Redis goes
healthy before freeapi starts, and two freeapi replicas share one key's limit through Redis.

Prints `container e2e: not run: REASON` and exits 0 when podman cannot be installed (no
root, no apt); any failed check exits 1. Not collected by pytest.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import openai  # noqa: E402
import yaml  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from tests.fakes.deepseek import ANSWER, GOOD  # noqa: E402
from tests.helpers import ThreadedFake, check_stream  # noqa: E402

TAG = "e2e"
CACHE = Path(os.environ.get("FREEAPI_CONTAINER_CACHE", "/var/tmp/freeapi-container"))
PODMAN_COMPOSE = "podman-compose==1.6.0"
# One root filesystem serves both stand-ins (measured: one debootstrap with redis-server
# included costs a few seconds more than the Python one alone, a second one a minute).
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,redis-server"
PYTHON_IMAGE = "docker.io/library/python:3.11-slim"  # the name the Dockerfile uses
REDIS_IMAGE = "localhost/freeapi-e2e-redis:bookworm"
IMAGE = f"localhost/freeapi:{TAG}"
GW_KEY = "gw-container-e2e-0001"
RUN = f"fa-e2e-{os.getpid()}"  # names of this run's containers, volumes, compose project
TEXT = "".join(ANSWER)

timings: list[tuple[str, float]] = []
results: list[tuple[str, str | None]] = []


class NotRun(Exception):
    """The tools could not be had here: reported and passed over, not a failure."""


def log(msg: str) -> None:
    print(f"container e2e: {msg}", flush=True)


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


def check(name: str, fn) -> bool:
    try:
        fn()
        results.append((name, None))
        return True
    except Exception as e:  # one line per failed check, then go on
        results.append((name, f"{type(e).__name__}: {e}"))
        return False


# -- tools -----------------------------------------------------------------------------------

def sh(cmd: list[str], timeout: float = 600, check: bool = True, env=None, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()[-1500:]}")
    return p


def ensure_tools() -> str:
    """podman, runc, debootstrap from Debian; podman-compose in a venv. Returns the path
    of podman-compose."""
    missing = [t for t in ("podman", "runc", "debootstrap")
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise NotRun(f"{', '.join(missing)} missing and apt-get cannot run as root here")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            sh(["apt-get", "update", "-q"], env=env)
            sh(["apt-get", "install", "-y", "-q", "podman", "runc", "debootstrap"], env=env)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise NotRun(f"podman could not be installed: {e}") from None
    compose = ROOT / ".venvs/podman-compose/bin/podman-compose"
    if not compose.exists():
        venv = ROOT / ".venvs/podman-compose"
        try:
            sh([sys.executable, "-m", "venv", "--clear", str(venv)])
            sh([str(venv / "bin/pip"), "install", "-q", PODMAN_COMPOSE])
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            shutil.rmtree(venv, ignore_errors=True)
            raise NotRun(f"podman-compose could not be installed: {e}") from None
    return str(compose)


class Podman:
    """podman with the settings this sandbox needs: runc (cgroup v1 makes crun fail), no
    default ulimits (the sandbox refuses some rlimits), cgroupfs (no systemd)."""

    def __init__(self, work: Path):
        conf = work / "containers.conf"
        runc = shutil.which("runc") or "/usr/sbin/runc"
        conf.write_text("[containers]\ndefault_ulimits = []\npids_limit = 0\n"
                        f'[engine]\ncgroup_manager = "cgroupfs"\nruntime = "{runc}"\n'
                        f'[engine.runtimes]\nrunc = ["{runc}"]\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        self.runc = runc

    def __call__(self, *args, timeout: float = 600, check: bool = True):
        return sh(["podman", "--runtime", self.runc, *args], timeout=timeout, check=check,
                  env=self.env)

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0


# -- images ----------------------------------------------------------------------------------

def rootfs_tar() -> Path:
    """A Debian bookworm root filesystem (Python 3.11 like python:3.11-slim, plus
    redis-server), with the host's CA bundle: package downloads inside the build go through
    a TLS-inspecting path only the host trusts. Cached by its package list."""
    tag = hashlib.sha256(PACKAGES.encode()).hexdigest()[:10]
    tar = CACHE / f"bookworm-{tag}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    mirror = "http://deb.debian.org/debian"
    for src in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                mirror = line.split()[1]
                break
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        try:
            sh(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                str(rootfs), mirror], timeout=900)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise NotRun(f"debootstrap could not build a base image: {e}") from None
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if ca.exists():
            shutil.copy(ca, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text(
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        partial = tar.with_suffix(".partial")
        sh(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
        partial.rename(tar)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tar


def base_images(pm: Podman) -> None:
    if pm.exists(PYTHON_IMAGE) and pm.exists(REDIS_IMAGE):
        return
    tar = rootfs_tar()
    if not pm.exists(PYTHON_IMAGE):
        pm("import", "--change", 'CMD ["python3"]', str(tar), PYTHON_IMAGE)
    if not pm.exists(REDIS_IMAGE):
        pm("import", "--change", "WORKDIR /data", "--change", 'CMD ["redis-server"]',
           str(tar), REDIS_IMAGE)


def build(pm: Podman) -> None:
    # --format docker: the OCI format has no HEALTHCHECK (podman drops it with a warning).
    pm("build", "--pull=never", "--network", "host", "--format", "docker", "-t", IMAGE,
       str(ROOT), timeout=900)


# -- one container ---------------------------------------------------------------------------

def write_config(work: Path, name: str, port: int, upstream: str, grace: float = 30,
                 extra: str = "") -> Path:
    cfg = work / f"{name}.yaml"
    cfg.write_text(f"""server: {{host: 127.0.0.1, port: {port}, shutdown_grace: {grace}}}
state: {{path: /data/freeapi.db{extra}}}
auth: {{keys: [{{name: e2e, key: {GW_KEY}, rpm: 5}}]}}
providers:
  deepseek: {{base_url: "{upstream}", api_keys: ["{GOOD}"]}}
""")
    cfg.chmod(0o644)  # read by whatever uid the container runs as
    return cfg


def wait_http(url: str, seconds: float, alive=lambda: True) -> bytes:
    deadline = time.monotonic() + seconds
    err = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError as e:
            err = e
            if not alive():
                break
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:g}s: {err}")


def running(pm: Podman, name: str) -> bool:
    p = pm("inspect", "--format", "{{.State.Running}}", name, check=False)
    return p.stdout.strip() == "true"


def start(pm: Podman, name: str, cfg: Path, port: int, *extra: str) -> str:
    pm("run", "-d", "--name", name, "--network", "host",
       "-v", f"{cfg}:/etc/freeapi/config.yaml:ro", "-v", f"{name}-data:/data", *extra)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 60, lambda: running(pm, name))
    except RuntimeError as e:
        logs = pm("logs", name, check=False)
        raise RuntimeError(f"{e}\n{(logs.stdout + logs.stderr)[-1500:]}") from None
    return name


def chat(port: int, content: str = "hi") -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=GW_KEY,
                           max_retries=0, timeout=20)
    r = client.chat.completions.create(model="deepseek/deepseek-flash",
                                       messages=[{"role": "user", "content": content}])
    return r.choices[0].message.content


def proc1(pm: Podman, name: str) -> dict:
    """PID 1's uid, gid and command line, read from /proc inside the container."""
    p = pm("exec", name, "python3", "-c",
           "import json; s = open('/proc/1/status').read().splitlines();"
           "f = dict(l.split(':', 1) for l in s);"
           "print(json.dumps({'uid': f['Uid'].split()[0], 'gid': f['Gid'].split()[0],"
           "'cmd': open('/proc/1/cmdline').read().replace(chr(0), ' ')}))")
    return json.loads(p.stdout)


def data_owners(pm: Podman, name: str) -> dict:
    p = pm("exec", name, "python3", "-c",
           "import os, json; print(json.dumps({f: os.stat('/data/' + f).st_uid "
           "for f in os.listdir('/data')}))")
    return json.loads(p.stdout)


class StreamReader(threading.Thread):
    """A client reading one stream from the container as it arrives."""

    def __init__(self, port: int, content: str):
        super().__init__(daemon=True)
        self.port, self.content = port, content
        self.first = threading.Event()
        self.raw, self.status, self.error = b"", None, None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(
                {"model": "deepseek/deepseek-flash", "stream": True,
                 "messages": [{"role": "user", "content": self.content}]}),
                {"Authorization": f"Bearer {GW_KEY}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            self.status = resp.status
            while piece := resp.read1(65536):
                self.raw += piece
                self.first.set()
        except Exception as e:
            self.error = e
        finally:
            conn.close()
            self.first.set()


def grace_period() -> float:
    """compose.yaml's stop_grace_period for freeapi, in seconds ("40s", "1m30s")."""
    text = str(yaml.safe_load((ROOT / "compose.yaml").read_text())
               ["services"]["freeapi"]["stop_grace_period"])
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    return total + (float(num) if num else 0)


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
        assert "freeapi.healthcheck" in health, f"no HEALTHCHECK in the image: {health}"
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


# -- compose ---------------------------------------------------------------------------------

class HealthTicker(threading.Thread):
    """Runs the health checks of this project's containers every second. podman schedules
    them with systemd timers; this sandbox has no systemd, so nothing else would. Notes
    when each container was first seen healthy (wall clock, like podman's StartedAt)."""

    def __init__(self, pm: Podman, project: str):
        super().__init__(daemon=True)
        self.pm, self.project, self.stop = pm, project, threading.Event()
        self.first_healthy: dict[str, float] = {}

    def run(self):
        while not self.stop.wait(1):
            names = self.pm("ps", "--format", "{{.Names}}", "--filter",
                            f"label=io.podman.compose.project={self.project}",
                            check=False).stdout.split()
            for name in names:
                ok = self.pm("healthcheck", "run", name, check=False, timeout=30)
                if ok.returncode == 0:
                    self.first_healthy.setdefault(name, time.time())


def started_at(pm: Podman, name: str) -> float:
    text = inspect(pm, name)["State"]["StartedAt"]  # 2026-12-06T10:02:13.649638746Z
    day, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() + \
        float("0." + (frac or "0"))


def podman_version(pm: Podman) -> tuple[int, ...]:
    out = pm("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(x) for x in out.split("-")[0].split(".")[:2])


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


def inspect(pm: Podman, name: str) -> dict:
    return json.loads(pm("inspect", name).stdout)[0]


def status(port: int) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("POST", "/v1/chat/completions", json.dumps(
            {"model": "deepseek/deepseek-flash", "messages": [{"role": "user", "content": "hi"}]}),
            {"Authorization": f"Bearer {GW_KEY}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


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
    pm("image", "prune", "-f", check=False)  # each changed build leaves a ~340 MB layer set
    failed = [(n, e) for n, e in results if e]
    for name, err in results:
        log(f"{name}: {'ok' if not err else 'FAILED: ' + err}")
    log("timings: " + ", ".join(f"{n} {s:.0f}s" for n, s in timings)
        + f", total {time.monotonic() - t0:.0f}s")
    print(f"container e2e: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
