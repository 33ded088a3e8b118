"""The gateway inside the container, as clients see it, for tests/e2e/container_e2e.py:
its config, requests to it, and the record of checks."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.request
from pathlib import Path

import openai
import yaml

from tests.e2e.podman_sandbox import ROOT, Podman, running
from tests.fakes.deepseek import ANSWER, GOOD

GW_KEY = "gw-container-e2e-0001"
ADMIN_KEY = "gw-container-e2e-admin-0001"  # role admin: POST /admin/keys
RUN = f"fa-e2e-{os.getpid()}"  # names of this run's containers, volumes, compose project
TEXT = "".join(ANSWER)
results: list[tuple[str, str | None]] = []


def log(msg: str) -> None:
    print(f"container e2e: {msg}", flush=True)


def check(name: str, fn) -> bool:
    try:
        fn()
        results.append((name, None))
        return True
    except Exception as e:  # one line per failed check, then go on
        results.append((name, f"{type(e).__name__}: {e}"))
        return False


def write_config(work: Path, name: str, port: int, upstream: str, grace: float = 30,
                 extra: str = "", admin: bool = False) -> Path:
    cfg = work / f"{name}.yaml"
    root = f", {{name: root, key: {ADMIN_KEY}, role: admin}}" if admin else ""
    cfg.write_text(f"""server: {{host: 127.0.0.1, port: {port}, shutdown_grace: {grace}}}
state: {{path: /data/freeapi.db{extra}}}
auth: {{keys: [{{name: e2e, key: {GW_KEY}, rpm: 5}}{root}]}}
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


def start(pm: Podman, name: str, cfg: Path, port: int, *extra: str) -> str:
    pm("run", "-d", "--name", name, "--network", "host",
       "-v", f"{cfg}:/etc/freeapi/config.yaml:ro", "-v", f"{name}-data:/data", *extra)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 60, lambda: running(pm, name))
    except RuntimeError as e:
        logs = pm("logs", name, check=False)
        raise RuntimeError(f"{e}\n{(logs.stdout + logs.stderr)[-1500:]}") from None
    return name


def chat(port: int, content: str = "hi", key: str = GW_KEY) -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                           max_retries=0, timeout=20)
    r = client.chat.completions.create(model="deepseek/deepseek-flash",
                                       messages=[{"role": "user", "content": content}])
    return r.choices[0].message.content


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
