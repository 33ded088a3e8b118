"""Real Redis servers and sentinels of a test's own (Debian's `redis-server`; a sentinel
is `redis-server CONF --sentinel`, which is what Debian's `redis-sentinel` runs), each on
a free port with its config and data in a temporary directory, stopped by its pid. Never
the shared Redis on 6379."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"  # CI starts one: it is there


def _ping(port: int, tls_args=()) -> bool:
    try:
        out = subprocess.run(["redis-cli", "-p", str(port), *tls_args, "PING"],
                             capture_output=True, timeout=2, text=True).stdout
    except subprocess.TimeoutExpired:
        return False
    return out.strip() == "PONG"


def cli(port: int, *args, tls_args=()) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *tls_args, *args],
                          capture_output=True, timeout=5, text=True).stdout.strip()


class RedisProc:
    """One redis-server (or sentinel) process."""

    def __init__(self, tmp: Path, name: str, lines: list[str], sentinel: bool = False,
                 port: int | None = None, tls_args=()):
        self.port = port or free_port()
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "redis.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "save \"\"",
            "appendonly no", f"logfile {self.dir / 'log'}", "protected-mode no",
            *lines]) + "\n")
        args = [REDIS_SERVER, str(self.conf)] + (["--sentinel"] if sentinel else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.tls_args = tls_args
        self.wait_up()

    def wait_up(self, seconds: float = 10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
            if _ping(self.port, self.tls_args):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {self.port}: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")
        except OSError:
            return ""

    def cli(self, *args) -> str:
        return cli(self.port, *args, tls_args=self.tls_args)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_for(check, seconds: float, what: str, step: float = 0.1):
    """Poll `check()` until it is truthy; a bound so a broken setup fails rather than
    hangs (not a timing assertion: the failover's own time is Sentinel's)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"gave up waiting for {what}")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False
