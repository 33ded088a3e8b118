"""Podman on this machine, for tests/e2e/container_e2e.py: the tools (installed when
missing), the settings this sandbox needs, the stand-in base images and the build.

No registry is reachable and there is no Docker daemon. Debian's podman works with runc
(cgroup v1 makes crun fail), without default ulimits (the sandbox refuses some rlimits),
with the cgroupfs manager (no systemd), on the host network, with `--pull=never`.
`python:3.11-slim`, Redis and PostgreSQL are stood in for by one Debian bookworm root
filesystem (Python 3.11, redis-server, postgresql-15) made with debootstrap from the
machine's apt mirror, cached as a tarball under $FREEAPI_CONTAINER_CACHE (default
/var/tmp/freeapi-container).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FREEAPI_CONTAINER_CACHE", "/var/tmp/freeapi-container"))
PODMAN_COMPOSE = "podman-compose==1.6.0"
# One root filesystem serves all three stand-ins (measured: one debootstrap with
# redis-server included costs ~10 s more than the Python one alone; a second one, ~3
# minutes). The list is the cache key: changing it rebuilds the root filesystem once.
PACKAGES = ("python3,python3-venv,python3-pip,ca-certificates,redis-server,"
            "postgresql-15")
ROOTFS_TAG = hashlib.sha256(PACKAGES.encode()).hexdigest()[:10]
PYTHON_IMAGE = "docker.io/library/python:3.11-slim"  # the name the Dockerfile uses
REDIS_IMAGE = "localhost/freeapi-e2e-redis:bookworm"
POSTGRES_IMAGE = "localhost/freeapi-e2e-postgres:bookworm"
# The stand-in for postgres:15's entrypoint, as far as compose.yaml uses it: on an empty
# PGDATA, a cluster whose superuser is POSTGRES_USER with POSTGRES_PASSWORD (scram over
# TCP) and a database POSTGRES_DB; then the server, as the postgres user, on localhost (the
# e2e runs on the host network) and on $PGPORT, which pg_isready reads too. setpriv execs
# (runuser would stay as PID 1 and keep SIGTERM from the server).
POSTGRES_ENTRYPOINT = r'''set -eu
bin=/usr/lib/postgresql/15/bin
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
as_pg="setpriv --reuid=postgres --regid=postgres --init-groups"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s
' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pw"
  chown postgres "$pw"
  $as_pg $bin/initdb -U "$user" --pwfile="$pw" --auth-local=trust     --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE "$db"" | $as_pg $bin/postgres --single -j postgres >/dev/null
  fi
fi
exec $as_pg $bin/postgres -c listen_addresses=127.0.0.1
'''
POSTGRES_TAG = ROOTFS_TAG + "-" + hashlib.sha256(POSTGRES_ENTRYPOINT.encode()).hexdigest()[:6]
IMAGE = "localhost/freeapi:e2e"


class NotRun(Exception):
    """The tools could not be had here: reported and passed over, not a failure."""


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


def inspect(pm: Podman, name: str) -> dict:
    return json.loads(pm("inspect", name).stdout)[0]


def running(pm: Podman, name: str) -> bool:
    p = pm("inspect", "--format", "{{.State.Running}}", name, check=False)
    return p.stdout.strip() == "true"


def started_at(pm: Podman, name: str) -> float:
    text = inspect(pm, name)["State"]["StartedAt"]  # 2026-12-06T10:02:13.649638746Z
    day, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() + \
        float("0." + (frac or "0"))


def podman_version(pm: Podman) -> tuple[int, ...]:
    out = pm("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(x) for x in out.split("-")[0].split(".")[:2])


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


# -- images ----------------------------------------------------------------------------------

def rootfs_tar() -> Path:
    """A Debian bookworm root filesystem (Python 3.11 like python:3.11-slim, plus
    redis-server and postgresql-15), with the host's CA bundle: package downloads inside
    the build go through a TLS-inspecting path only the host trusts. Cached by its package list."""
    tar = CACHE / f"bookworm-{ROOTFS_TAG}.tar"
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
    """Imported once per machine; again when PACKAGES change (the label says which)."""
    tags = {PYTHON_IMAGE: ROOTFS_TAG, REDIS_IMAGE: ROOTFS_TAG, POSTGRES_IMAGE: POSTGRES_TAG}

    def current(image):
        p = pm("image", "inspect", "--format", "{{index .Labels \"freeapi.e2e.rootfs\"}}",
               image, check=False)
        return p.returncode == 0 and p.stdout.strip() == tags[image]

    stale = [i for i in tags if not current(i)]
    if not stale:
        return
    tar = str(rootfs_tar())
    label = f"LABEL freeapi.e2e.rootfs={ROOTFS_TAG}"
    if PYTHON_IMAGE in stale:
        pm("import", "--change", label, "--change", 'CMD ["python3"]', tar, PYTHON_IMAGE)
    if REDIS_IMAGE in stale:
        pm("import", "--change", label, "--change", "WORKDIR /data", "--change",
           'CMD ["redis-server"]', tar, REDIS_IMAGE)
    if POSTGRES_IMAGE in stale:
        entry = json.dumps(["/bin/sh", "-c", POSTGRES_ENTRYPOINT, "postgres-entrypoint"])
        pm("import", "--change", f"LABEL freeapi.e2e.rootfs={POSTGRES_TAG}", "--change",
           f"ENTRYPOINT {entry}", "--change", "STOPSIGNAL SIGINT", tar, POSTGRES_IMAGE)


def build(pm: Podman) -> None:
    # --format docker: the OCI format has no HEALTHCHECK (podman drops it with a warning).
    pm("build", "--pull=never", "--network", "host", "--format", "docker", "-t", IMAGE,
       str(ROOT), timeout=900)
