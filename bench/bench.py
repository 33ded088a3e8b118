#!/usr/bin/env python3
"""freeapi's benchmark: one run, one table (see bench/README.md). Stdlib only.

Starts the fake upstream, freeapi, LiteLLM proxy and Portkey gateway on 127.0.0.1, drives
each with wrk and bench/client.py, and prints a markdown table with ratios plus the
issue-6 targets as met/missed. Every load is bounded (wrk -d, client -n/--max-seconds);
every process it starts is stopped by pid when it ends.

CPU layout on a 2-core box (BENCH_SERVER_CPU / BENCH_CLIENT_CPU, default 0 and 1): the
server under test gets the server core to itself; wrk, the asyncio client and the fake
upstream share the client core. For the `direct` row the upstream *is* the server under
test, so it is moved (taskset -p) to the server core while it is measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FREEAPI = os.environ.get("BENCH_FREEAPI", os.path.join(ROOT, ".venv", "bin", "freeapi"))
PY = os.path.join(ROOT, ".venv", "bin", "python")
LITELLM = os.path.join(HERE, ".venvs", "litellm", "bin", "litellm")
PORTKEY = os.path.join(HERE, "node_modules", "@portkey-ai", "gateway", "build",
                       "start-server.js")
PATH = "/v1/chat/completions"

PROCS: list[subprocess.Popen] = []


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus] + argv if cpus else argv


def start(name, argv, env=None, logdir=None) -> subprocess.Popen:
    out = open(os.path.join(logdir, f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})}, start_new_session=True)
    p.bench_name = name
    PROCS.append(p)
    return p


def start_upstream(logdir, cpus: str | None) -> tuple[subprocess.Popen, int]:
    """The fake OpenAI upstream (upstream.js) on a free port, answering; (process, port)."""
    port = free_port()
    p = start("upstream", pinned(cpus, ["node", os.path.join(HERE, "upstream.js"), "--port",
                                         str(port)]), logdir=logdir)
    wait_http(f"http://127.0.0.1:{port}/stats", p)
    return p, port


def stop(p: subprocess.Popen):
    """Stop one process we started (its own session: its children too) by id."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    if p in PROCS:
        PROCS.remove(p)


def stop_all(*_):
    for p in list(PROCS):
        stop(p)


def wait_http(url, proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.bench_name} exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.bench_name} not ready at {url} after {timeout:.0f}s")


def repin(p: subprocess.Popen, cpus: str | None):
    """Move a running process (all its threads, and its children) to `cpus`."""
    if not cpus:
        return
    pids = [p.pid]
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)],
                       stdout=subprocess.DEVNULL, check=False)


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for t in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(p: subprocess.Popen) -> float:
    """VmHWM (peak resident set) summed over the process tree, skipping taskset/wrappers."""
    return round(sum(status_kb(q, "VmHWM") for q in tree_pids(p.pid)) / 1024, 1)


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Target:
    def __init__(self, name, url, auth=None, headers=None, model="deepseek-chat",
                 dialect=""):
        self.name, self.url, self.auth = name, url, auth
        self.headers = headers or {}
        self.model = model
        self.dialect = dialect  # "anthropic": wrk posts a Messages body
        self.results = {}
        self.proc = None

    def env(self, stream: bool):
        return {"BENCH_MODEL": self.model, "BENCH_STREAM": "1" if stream else "0",
                "BENCH_DIALECT": self.dialect,
                "BENCH_AUTH": self.auth or "",
                "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in self.headers.items())}

    def client_headers(self):
        hs = [f"{k}: {v}" for k, v in self.headers.items()]
        if self.auth:
            hs.append(f"Authorization: Bearer {self.auth}")
        return [x for h in hs for x in ("-H", h)]


def parse_benchjson(text: str):
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    return None


def wrk(target: Target, conns: int, seconds: float, stream: bool, cpus) -> dict:
    argv = pinned(cpus, ["wrk", "-t1", f"-c{conns}", f"-d{max(1, int(seconds))}s", "--timeout", "10s",
                         "--latency", "-s", os.path.join(HERE, "wrk", "post.lua"),
                         target.url])
    r = subprocess.run(argv, env={**os.environ, **target.env(stream)}, capture_output=True,
                       text=True, timeout=seconds + 60)
    data = parse_benchjson(r.stdout)
    if data is None:
        raise RuntimeError(f"wrk failed for {target.name}: {r.stdout}\n{r.stderr}")
    secs = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                   "err_timeout"))
    data["rps"] = data["requests"] / secs
    data["ok_rps"] = max(0, data["requests"] - data["err_status"]) / secs
    data["errors"] = errors
    return data


def client(mode, target: Target, cpus, extra=(), timeout=600) -> dict:
    argv = pinned(cpus, [sys.executable, os.path.join(HERE, "client.py"), mode, target.url,
                         *target.client_headers(), *extra])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    data = parse_benchjson(r.stdout)
    if data is None:
        raise RuntimeError(f"client {mode} failed for {target.name}: {r.stdout}\n{r.stderr}")
    return data


def measure(t: Target, args, server_proc=None):
    d = args.duration
    log(f"{t.name}: warm-up")
    wrk(t, 8, 1, False, args.client_cpu)
    wrk(t, 8, 1, True, args.client_cpu)
    cpu0 = sum(cpu_seconds(q) for q in tree_pids(server_proc.pid)) if server_proc else None
    t0 = time.monotonic()
    for key, conns, stream in (("ns1", 1, False), ("ns32", 32, False),
                               ("st1", 1, True), ("st32", 32, True)):
        log(f"{t.name}: wrk {'stream' if stream else 'non-stream'} c={conns} {d}s")
        t.results[key] = wrk(t, conns, d, stream, args.client_cpu)
    if server_proc:
        used = sum(cpu_seconds(q) for q in tree_pids(server_proc.pid)) - cpu0
        t.results["server_cpu_share"] = used / (time.monotonic() - t0)
    log(f"{t.name}: time to first byte")
    t.results["ttfb"] = client("ttfb", t, args.client_cpu,
                               ["-n", "300", "--max-seconds", str(d)])
    if server_proc:
        t.results["peak_rss_mb"] = peak_rss_mb(server_proc)


# -- the targets -------------------------------------------------------------------------


def freeapi_types() -> list[str]:
    r = subprocess.run([PY, "-c", "from freeapi.plugins import make_plugin_manager, "
                        "provider_types; print(' '.join(provider_types(make_plugin_manager())))"],
                       capture_output=True, text=True)
    return r.stdout.split()


def freeapi_config(tmp, up_port, port, anthropic=None):
    """The generic `type: openai` provider when installed, else `deepseek` re-pointed.
    `anthropic`: its anthropic_base_url (the /v1/messages door's native endpoint, or
    false to translate)."""
    path = os.path.join(tmp, f"freeapi-{port}.yaml")
    base = f"http://127.0.0.1:{up_port}/v1"
    if "openai" in freeapi_types():
        providers = f"""providers:
  deepseek: {{enabled: false}}
  bench:
    type: openai
    base_url: "{base}"
    api_keys: [sk-bench]
    models: [deepseek-chat, slow]
    discover: false
"""
        if anthropic is not None:
            providers += f"    anthropic_base_url: {anthropic}\n"
    else:
        providers = f"""providers:
  deepseek: {{base_url: "{base}", api_keys: [sk-bench]}}
models:
  slow: deepseek/slow
"""
    with open(path, "w") as f:
        # BENCH_HTTP_CORE=tornado|httptools: freeapi's server.http_core (unset: the tree's
        # default; a tree from before the key rejects it)
        core = os.environ.get("BENCH_HTTP_CORE")
        core = f", http_core: {core}" if core else ""
        f.write(f"""# generated by bench/bench.py
server: {{host: 127.0.0.1, port: {port}, log_level: warning{core}}}
auth: {{keys: [bench-key]}}
{providers}""")
    return path


def start_freeapi(tmp, up_port, args, workers=1, cpus=None, variant=(), anthropic=None):
    port = free_port()
    cfg = freeapi_config(tmp, up_port, port, anthropic)
    argv = [FREEAPI, "--config", cfg]
    if variant:
        argv = [PY, os.path.join(HERE, "variant.py"), *variant, "--", "--config", cfg]
    if workers != 1:
        argv += ["--workers", str(workers)]
    p = start(f"freeapi-w{workers}{''.join(variant)}", pinned(cpus, argv), logdir=tmp)
    wait_http(f"http://127.0.0.1:{port}/ping", p)
    # taskset execs freeapi in place, so p.pid is freeapi's own pid.
    return p, Target("freeapi", f"http://127.0.0.1:{port}{PATH}", auth="bench-key")


def start_litellm(tmp, up_port, args):
    port = free_port()
    cfg = os.path.join(tmp, "litellm.yaml")
    base = f"http://127.0.0.1:{up_port}/v1"
    with open(cfg, "w") as f:
        f.write(f"""# generated by bench/bench.py
model_list:
  - model_name: deepseek-chat
    litellm_params: {{model: openai/deepseek-chat, api_base: "{base}", api_key: sk-bench}}
  - model_name: slow
    litellm_params: {{model: openai/slow, api_base: "{base}", api_key: sk-bench}}
general_settings: {{master_key: sk-bench-master}}
""")
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOG": "ERROR"}
    p = start("litellm", pinned(args.server_cpu, [LITELLM, "--config", cfg, "--host",
                                                  "127.0.0.1", "--port", str(port),
                                                  "--num_workers", "1"]), env=env, logdir=tmp)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", p, timeout=180)
    return p, Target("LiteLLM", f"http://127.0.0.1:{port}{PATH}", auth="sk-bench-master")


def start_portkey(tmp, up_port, args):
    port = free_port()
    p = start("portkey", pinned(args.server_cpu, ["node", PORTKEY, f"--port={port}",
                                                  "--headless"]),
              env={"NODE_ENV": "production"}, logdir=tmp)
    wait_http(f"http://127.0.0.1:{port}/", p)
    return p, Target("Portkey", f"http://127.0.0.1:{port}{PATH}", auth="sk-bench",
                     headers={"x-portkey-provider": "openai",
                              "x-portkey-custom-host": f"http://127.0.0.1:{up_port}/v1"})


# -- the run -----------------------------------------------------------------------------


def versions():
    def cmd(argv, pattern=r"(\S+)"):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            m = re.search(pattern, out.stdout + out.stderr)
            return m.group(1) if m else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "missing"

    def pkg_json(path):
        try:
            with open(path) as f:
                return json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return "missing"

    v = {
        "freeapi": cmd([PY, "-c", "import freeapi; print(freeapi.__version__)"]),
        "freeapi_commit": cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "python": cmd([PY, "-c", "import platform; print(platform.python_version())"]),
        "tornado": cmd([PY, "-c", "import tornado; print(tornado.version)"]),
        "node": cmd(["node", "--version"]),
        "wrk": cmd(["wrk", "--version"], r"wrk (\S+)"),
        "litellm": cmd([os.path.join(HERE, ".venvs", "litellm", "bin", "python"), "-c",
                        "import importlib.metadata as m; print(m.version('litellm'))"]),
        "portkey": pkg_json(os.path.join(HERE, "node_modules", "@portkey-ai", "gateway",
                                         "package.json")),
    }
    if os.environ.get("BENCH_LABEL"):  # measuring another checkout (PYTHONPATH=...)
        v["freeapi_commit"] = os.environ["BENCH_LABEL"]
        return v
    try:
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "freeapi",
                                "providers"], capture_output=True, text=True).stdout.strip()
        if dirty:
            v["freeapi_commit"] += "+local changes"
    except OSError:
        pass
    return v


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds used by this harness and every process it started and reaped."""
    import resource
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = m.group(1).strip() if m else "?"
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": mem,
            "kernel": platform.release(), "load_start": os.getloadavg()}


def run(args):
    tmp = tempfile.mkdtemp(prefix="freeapi-bench-")
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "versions": versions(), "duration_s": args.duration,
              "cpus": {"server": args.server_cpu, "client": args.client_cpu}, "logs": tmp}
    log(f"logs in {tmp}; load average {report['machine']['load_start']}")
    busy0, own0, wall0 = machine_busy_seconds(), own_seconds(), time.monotonic()
    targets = {}

    up, up_port = start_upstream(tmp, args.client_cpu)

    # 1. direct: the upstream gets the server core while it is the server under test.
    direct = Target("direct", f"http://127.0.0.1:{up_port}{PATH}")
    repin(up, args.server_cpu)
    measure(direct, args, up)
    repin(up, args.client_cpu)
    targets["direct"] = direct
    # The upstream as it runs behind the gateways (sharing the client core with wrk):
    # its c=32 rate must stay far above any gateway's, or it would be the bottleneck.
    log("direct (upstream on the client core, as behind the gateways): wrk c=32")
    direct.results["ns32_shared"] = wrk(direct, 32, args.duration, False, args.client_cpu)
    direct.results["st32_shared"] = wrk(direct, 32, args.duration, True, args.client_cpu)

    if "slow" not in args.skip and "slow-direct" not in args.skip:
        log(f"direct: {args.slow_n} concurrent slow streams (30 s each), the baseline")
        direct.results["slow"] = client("slow", Target("direct", direct.url, model="slow"),
                                        args.client_cpu, ["-n", str(args.slow_n), "--ramp",
                                                          "2", "--pid", str(up.pid)],
                                        timeout=180)

    # 2. freeapi, one process
    fa, t = start_freeapi(tmp, up_port, args, cpus=args.server_cpu)
    rss_idle = round(status_kb(fa.pid, "VmRSS") / 1024, 1)
    measure(t, args, fa)
    t.results["rss_idle_mb"] = rss_idle
    targets["freeapi"] = t
    if "slow" not in args.skip:
        log(f"freeapi: {args.slow_n} concurrent slow streams (30 s each)")
        slow_t = Target("freeapi", t.url, auth=t.auth, model="slow")
        c0, w0 = cpu_seconds(fa.pid), time.monotonic()
        t.results["slow"] = client("slow", slow_t, args.client_cpu,
                                   ["-n", str(args.slow_n), "--ramp", "2", "--pid",
                                    str(fa.pid)], timeout=180)
        t.results["slow"]["gateway_cpu_share"] = round(
            (cpu_seconds(fa.pid) - c0) / (time.monotonic() - w0), 2)
        t.results["peak_rss_mb"] = peak_rss_mb(fa)
    stop(fa)

    # issue 18: freeapi against a bare Tornado proxy, interleaved in one stretch of time.
    if "bare" not in args.skip:
        report["bare"] = bare_test(tmp, up_port, args)

    # Front doors at c=1, side by side: chat completions, then /v1/messages passed through
    # to the upstream's native Anthropic endpoint (same process), then translated to chat
    # completions (a process whose provider has no native endpoint).
    if "doors" not in args.skip:
        report["doors"] = doors_test(tmp, up_port, args)

    # Context: a Tornado app with no upstream call, same core, same wrk.
    if "floor" not in args.skip:
        port = free_port()
        fl = start("tornado-floor", pinned(args.server_cpu, [PY, os.path.join(HERE, "floor.py"),
                                                             "--port", str(port)]), logdir=tmp)
        wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", fl)
        floor = Target("floor", f"http://127.0.0.1:{port}{PATH}")
        wrk(floor, 8, 1, False, args.client_cpu)
        log("Tornado floor: wrk non-stream c=1, c=32")
        floor.results = {"ns1": wrk(floor, 1, args.duration, False, args.client_cpu),
                         "ns32": wrk(floor, 32, args.duration, False, args.client_cpu)}
        report["floor"] = floor.results
        stop(fl)

    # 3. LiteLLM proxy, one worker
    if "litellm" not in args.skip:
        log("LiteLLM: starting (takes a while)")
        p, t = start_litellm(tmp, up_port, args)
        measure(t, args, p)
        targets["litellm"] = t
        stop(p)

    # 4. Portkey gateway
    if "portkey" not in args.skip:
        p, t = start_portkey(tmp, up_port, args)
        measure(t, args, p)
        targets["portkey"] = t
        stop(p)

    # 5. --workers 1 vs 2
    if "workers" not in args.skip:
        report["workers"] = workers_test(tmp, up, up_port, args)

    stop(up)
    report["machine"]["load_end"] = os.getloadavg()
    wall = time.monotonic() - wall0
    other = max(0.0, (machine_busy_seconds() - busy0) - (own_seconds() - own0))
    report["machine"]["other_cpu"] = {"seconds": round(other, 1), "wall": round(wall, 1),
                                      "share": round(other / (wall * (os.cpu_count() or 1)), 3)}
    report["targets"] = {k: v.results for k, v in targets.items()}
    return report


def doors_test(tmp, up_port, args):
    out = {}
    fa, chat = start_freeapi(tmp, up_port, args, cpus=args.server_cpu,
                             anthropic='"/anthropic"')
    messages = chat.url.replace(PATH, "/v1/messages")
    cells = [("chat", fa, chat),
             ("messages_native", fa, Target("messages", messages, auth=chat.auth,
                                            dialect="anthropic"))]
    cells.append(("responses", fa, Target("responses", chat.url.replace(PATH, "/v1/responses"),
                                          auth=chat.auth, dialect="responses")))
    fb, tr = start_freeapi(tmp, up_port, args, cpus=args.server_cpu, anthropic="false")
    cells.append(("messages_translated", fb, Target(
        "messages", tr.url.replace(PATH, "/v1/messages"), auth=tr.auth, dialect="anthropic")))
    for key, _, t in cells:
        wrk(t, 8, 1, False, args.client_cpu)
        wrk(t, 8, 1, True, args.client_cpu)
    # Round robin, three rounds, the median round per cell: a machine whose load drifts
    # during the run then weighs on every door alike.
    runs = {key: {"ns1": [], "st1": []} for key, _, _ in cells}
    each = max(1, round(args.duration / 3))
    for n in range(3):
        for key, _, t in cells:
            for cell, stream in (("ns1", False), ("st1", True)):
                log(f"doors: round {n + 1}/3 {key} {'stream' if stream else 'non-stream'} "
                    f"c=1 {each}s")
                runs[key][cell].append(wrk(t, 1, each, stream, args.client_cpu))
    for key, cells_ in runs.items():
        out[key] = {cell: sorted(rs, key=lambda r: r["p50_us"])[1]
                    for cell, rs in cells_.items()}
    stop(fa)
    stop(fb)
    return out


BARE_CELLS = (("ns1", 1, False), ("ns32", 32, False), ("st32", 32, True))


def bare_test(tmp, up_port, args):
    """freeapi (gateway key, ledger, metrics: its bench config) against bench/bare_proxy.py,
    both on the server core, cells interleaved (freeapi, bare, freeapi, bare ...) for
    BENCH_BARE_ROUNDS rounds; each cell's median round. The ratios are what issue 18's
    targets are about; machine load that drifts during the run weighs on both alike."""
    rounds = int(os.environ.get("BENCH_BARE_ROUNDS", 3))
    fa, t = start_freeapi(tmp, up_port, args, cpus=args.server_cpu)
    port = free_port()
    # BENCH_BARE_UVLOOP=1: the bare proxy on uvloop (freeapi takes uvloop when importable),
    # for the ratio of both on uvloop.
    uv = ["--uvloop"] if os.environ.get("BENCH_BARE_UVLOOP") else []
    bp = start("bare-proxy", pinned(args.server_cpu, [
        PY, os.path.join(HERE, "bare_proxy.py"), "--port", str(port), "--upstream",
        f"http://127.0.0.1:{up_port}", *uv]), logdir=tmp)
    wait_http(f"http://127.0.0.1:{port}{PATH}", bp)
    bare = Target("bare", f"http://127.0.0.1:{port}{PATH}")
    pair = (("freeapi", t), ("bare", bare))
    for _, x in pair:
        wrk(x, 8, 1, False, args.client_cpu)
        wrk(x, 8, 1, True, args.client_cpu)
    runs = {name: {cell: [] for cell, _, _ in BARE_CELLS} for name, _ in pair}
    procs = {"freeapi": fa, "bare": bp}
    for n in range(rounds):
        for cell, conns, stream in BARE_CELLS:
            for name, x in (pair if n % 2 == 0 else pair[::-1]):
                log(f"bare: round {n + 1}/{rounds} {name} {cell} {args.duration}s")
                # CPU time per request: what other load on the machine changes least
                pids = tree_pids(procs[name].pid)
                c0 = sum(cpu_seconds(q) for q in pids)
                r = wrk(x, conns, args.duration, stream, args.client_cpu)
                used = sum(cpu_seconds(q) for q in pids) - c0
                r["cpu_us"] = 1e6 * used / max(1, r["requests"])
                runs[name][cell].append(r)
    stop(fa)
    stop(bp)
    out = {"rounds": rounds}
    for name, cells in runs.items():
        out[name] = {}
        for cell, rs in cells.items():
            key = "p50_us" if cell == "ns1" else "ok_rps"
            rs = sorted(rs, key=lambda r: r[key])
            out[name][cell] = dict(rs[len(rs) // 2], all=[r[key] for r in rs])
    # per-round ratios, to show how steady they are
    out["cpu_us"] = {name: {cell: sorted(r["cpu_us"] for r in rs)[len(rs) // 2]
                            for cell, rs in cells.items()} for name, cells in runs.items()}
    out["ratios"] = {
        "ns32": [f["ok_rps"] / b["ok_rps"] for f, b in zip(runs["freeapi"]["ns32"],
                                                            runs["bare"]["ns32"])],
        "ns1": [f["p50_us"] / b["p50_us"] for f, b in zip(runs["freeapi"]["ns1"],
                                                          runs["bare"]["ns1"])],
        "st32": [f["ok_rps"] / b["ok_rps"] for f, b in zip(runs["freeapi"]["st32"],
                                                            runs["bare"]["st32"])]}
    return out


def workers_test(tmp, up, up_port, args):
    """1 worker pinned to the server core (wrk + upstream on the client core), then 2
    workers on both cores, sharing them with wrk and the upstream: a 2-core box has no
    third core for the load generator, so the per-core rate is reported too."""
    out = {}
    both = f"{args.server_cpu},{args.client_cpu}" if args.server_cpu else None
    for n, cpus, client_cpus in ((1, args.server_cpu, args.client_cpu), (2, both, both)):
        repin(up, client_cpus)
        fa, t = start_freeapi(tmp, up_port, args, workers=n, cpus=cpus)
        wrk(t, 32, 1, False, client_cpus)
        pids = tree_pids(fa.pid)
        workers = [q for q in pids if q != fa.pid] if n > 1 else [fa.pid]
        c0 = {q: cpu_seconds(q) for q in workers}
        up0 = sum(cpu_seconds(q) for q in tree_pids(up.pid))
        t0 = time.monotonic()
        log(f"freeapi --workers {n}: wrk non-stream c=32 {args.duration}s")
        r = wrk(t, 32, args.duration, False, client_cpus)
        wall = time.monotonic() - t0
        per = [round((cpu_seconds(q) - c0[q]) / wall, 2) for q in workers]
        out[str(n)] = {"rps": r["ok_rps"], "errors": r["errors"], "p50_us": r["p50_us"],
                  "worker_cpu_cores": per, "gateway_cores": round(sum(per), 2),
                  "upstream_cores": round((sum(cpu_seconds(q) for q in tree_pids(up.pid))
                                           - up0) / wall, 2)}
        out[str(n)]["rps_per_gateway_core"] = r["ok_rps"] / max(sum(per), 0.01)
        stop(fa)
    repin(up, args.client_cpu)
    return out


def profile(args):
    """py-spy under wrk load: one profile for non-stream c=32, one for stream c=32."""
    spy = os.path.join(HERE, ".venvs", "extras", "bin", "py-spy")
    if not os.path.exists(spy):
        spy = shutil.which("py-spy")
    if not spy:
        print("bench: py-spy missing (bench/setup.sh installs it)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="freeapi-profile-")
    outdir = os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    up_port = free_port()
    up = start("upstream", pinned(args.client_cpu, ["node", os.path.join(HERE, "upstream.js"),
                                                    "--port", str(up_port)]), logdir=tmp)
    wait_http(f"http://127.0.0.1:{up_port}/stats", up)
    fa, t = start_freeapi(tmp, up_port, args, cpus=args.server_cpu)
    report = []
    for name, stream in (("nonstream", False), ("stream", True)):
        wrk(t, 32, 1, stream, args.client_cpu)
        raw = os.path.join(outdir, f"profile-{name}.txt")
        svg = os.path.join(outdir, f"profile-{name}.svg")
        secs = max(args.duration, 10) + 1
        spies = [subprocess.Popen(pinned(args.client_cpu, [
            spy, "record", "-p", str(fa.pid), "-d", str(secs), "-r", "100",
            "-f", fmt, "-o", out]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for fmt, out in (("raw", raw), ("flamegraph", svg))]
        time.sleep(0.5)
        r = wrk(t, 32, secs - 1, stream, args.client_cpu)
        for sp in spies:
            sp.wait(secs + 30)
        report.append(f"\n## freeapi profile, {name} c=32 ({r['ok_rps']:,.0f} req/s under "
                      f"py-spy; flamegraph {os.path.relpath(svg, ROOT)})\n")
        report += top_frames(raw, args.top)
    stop(fa)
    stop(up)
    text = "\n".join(report)
    with open(os.path.join(outdir, "profile.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


def variants(args):
    """freeapi as is, then with variant.py's switches (--orjson, --relay-only, ...), then
    the bare proxy (bench/bare_proxy.py, asyncio) as the ceiling, one after the other."""
    tmp = tempfile.mkdtemp(prefix="freeapi-variants-")
    up_port = free_port()
    up = start("upstream", pinned(args.client_cpu, ["node", os.path.join(HERE, "upstream.js"),
                                                    "--port", str(up_port)]), logdir=tmp)
    wait_http(f"http://127.0.0.1:{up_port}/stats", up)
    rows = ["| freeapi variant | c=1 p50 | c=32 req/s | 20-chunk stream c=1 p50 | stream c=32 "
            "req/s | first streamed byte p50 |", "|---|---|---|---|---|---|"]
    # the issue 18 bare proxy last, as the ceiling of the same run
    for variant in [*args.variant_list, None]:
        if variant is None:
            port = free_port()
            fa = start("bare-proxy", pinned(args.server_cpu, [
                PY, os.path.join(HERE, "bare_proxy.py"), "--port", str(port), "--upstream",
                f"http://127.0.0.1:{up_port}"]), logdir=tmp)
            wait_http(f"http://127.0.0.1:{port}{PATH}", fa)
            t, name = Target("bare", f"http://127.0.0.1:{port}{PATH}"), "the bare proxy"
        else:
            fa, t = start_freeapi(tmp, up_port, args, cpus=args.server_cpu, variant=variant)
            name = " ".join(variant) or "as is"
        wrk(t, 8, 1, False, args.client_cpu)
        wrk(t, 8, 1, True, args.client_cpu)
        log(f"variant {name}")
        r = {k: wrk(t, c, args.duration, st, args.client_cpu)
             for k, c, st in (("ns1", 1, False), ("ns32", 32, False), ("st1", 1, True),
                              ("st32", 32, True))}
        errs = sum(x["errors"] for x in r.values())
        ttfb = client("ttfb", t, args.client_cpu, ["-n", "300", "--max-seconds", "5"])
        rows.append(f"| {name}{f' ({errs} errors)' if errs else ''} | "
                    f"{fmt_ms(r['ns1']['p50_us'])} | {fmt_rps(r['ns32']['ok_rps'])} | "
                    f"{fmt_ms(r['st1']['p50_us'])} | {fmt_rps(r['st32']['ok_rps'])} | "
                    f"{ttfb['first_p50_ms']:.2f} ms |")
        stop(fa)
    stop(up)
    print("\n".join(rows))
    return 0


def top_frames(raw_path, n):
    """Self and inclusive sample shares per function, and self share per file, from
    py-spy's collapsed stacks of the main thread (an idle thread pool's waits dropped)."""
    self_, incl, files, total, other = {}, {}, {}, 0, 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            count = int(count)
            if stack.startswith("Thread._bootstrap"):
                other += count
                continue
            total += count
            frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")]
            frames = [re.sub(r"\(/.*?/(site-packages|lib/python3\.\d+|work/main)/", "(", fr)
                      for fr in frames]
            self_[frames[-1]] = self_.get(frames[-1], 0) + count
            for fr in set(frames):
                incl[fr] = incl.get(fr, 0) + count
            m = re.search(r"\(([^)]*)\)$", frames[-1])
            path = m.group(1) if m else "?"
            group = path if path.startswith("freeapi") else path.split("/")[0]
            files[group] = files.get(group, 0) + count
    total = max(total, 1)
    out = [f"{total} main-thread samples ({other} from other threads dropped)", "",
           "| self % | file or package |", "|---|---|"]
    for fr, c in sorted(files.items(), key=lambda x: -x[1])[:12]:
        out.append(f"| {100 * c / total:.1f} | `{fr}` |")
    out += ["", "| self % | function (file) |", "|---|---|"]
    for fr, c in sorted(self_.items(), key=lambda x: -x[1])[:n]:
        out.append(f"| {100 * c / total:.1f} | `{fr}` |")
    out += ["", "| inclusive % | function (file) |", "|---|---|"]
    skip = ("<module>", "main (", "_run (", "run (", "Runner.run", "BaseEventLoop.run_")
    for fr, c in sorted(incl.items(), key=lambda x: -x[1]):
        if fr.startswith(skip):
            continue
        out.append(f"| {100 * c / total:.1f} | `{fr}` |")
        if len(out) > 12 + 2 * n + 12:
            break
    return out


# -- the table ---------------------------------------------------------------------------


def fmt_ms(us):
    return "-" if us is None else f"{us / 1000:.2f} ms"


def fmt_rps(x):
    return "-" if x is None else f"{x:,.0f}"


def render(rep) -> str:
    T = rep["targets"]
    v, m = rep["versions"], rep["machine"]
    names = {"direct": "direct to upstream", "freeapi": "freeapi (1 process)",
             "litellm": "LiteLLM proxy 1 worker", "portkey": "Portkey gateway (npm)"}
    lines = [
        f"Run {rep['date']} on {m['cores']} x {m['cpu']}, {m['mem_gb']} GiB, Linux "
        f"{m['kernel']}; load average at start {m['load_start'][0]:.2f}, at end "
        f"{m.get('load_end', [0])[0]:.2f}; processes outside the harness used "
        f"{m.get('other_cpu', {}).get('seconds', '?')} CPU-s in {m.get('other_cpu', {}).get('wall', '?')}"
        f" s ({m.get('other_cpu', {}).get('share', 0):.1%} of the machine).",
        f"freeapi {v['freeapi']} ({v['freeapi_commit']}), Python {v['python']}, Tornado "
        f"{v['tornado']}; LiteLLM {v['litellm']}; Portkey gateway {v['portkey']} on Node "
        f"{v['node']}; wrk {v['wrk']}. wrk -t1, {rep['duration_s']} s per cell; server "
        f"under test on CPU {rep['cpus']['server']}, wrk + client + fake upstream on CPU "
        f"{rep['cpus']['client']}.",
        "",
        "| path | c=1 p50 | c=1 req/s | c=32 req/s | 20-chunk stream c=1 p50 | stream c=32 "
        "req/s | first streamed byte p50 | errors | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("direct", "freeapi", "litellm", "portkey"):
        if key not in T:
            continue
        r = T[key]
        errs = []
        for cell, label in (("ns1", "c1"), ("ns32", "c32"), ("st1", "stream c1"),
                            ("st32", "stream c32")):
            e = r[cell]["errors"]
            if e:
                errs.append(f"{label}: {e}/{r[cell]['requests']}")
        if r["ttfb"]["errors"]:
            errs.append(f"ttfb: {r['ttfb']['errors']}")
        ttfb = r["ttfb"]["first_p50_ms"]
        stream_p50 = fmt_ms(r["st1"]["p50_us"])
        if r["st1"]["err_status"] >= r["st1"]["requests"] > 0:
            stream_p50 = f"failed ({stream_p50} to an error)"
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            names[key], fmt_ms(r["ns1"]["p50_us"]), fmt_rps(r["ns1"]["ok_rps"]),
            fmt_rps(r["ns32"]["ok_rps"]), stream_p50, fmt_rps(r["st32"]["ok_rps"]),
            "-" if ttfb is None else f"{ttfb:.2f} ms", "; ".join(errs) or "0",
            f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else "-"))
    fl = rep.get("floor")
    if fl:
        lines.append(f"| (context) Tornado alone, no upstream call | {fmt_ms(fl['ns1']['p50_us'])} "
                     f"| {fmt_rps(fl['ns1']['ok_rps'])} | {fmt_rps(fl['ns32']['ok_rps'])} "
                     f"| - | - | - | {fl['ns1']['errors'] + fl['ns32']['errors']} | - |")
    d = T["direct"]
    lines.append("")
    lines.append(f"Fake upstream while sharing the client core with wrk (as it runs behind "
                 f"the gateways): {fmt_rps(d['ns32_shared']['ok_rps'])} req/s non-stream, "
                 f"{fmt_rps(d['st32_shared']['ok_rps'])} streams/s at c=32.")
    lines += bare_table(rep)
    lines += doors_table(rep)
    lines.append("")
    lines += targets_table(rep)
    return "\n".join(lines)


def bare_table(rep):
    b = rep.get("bare")
    if not b:
        return []
    lines = ["", f"freeapi against a bare Tornado proxy (bench/bare_proxy.py), cells interleaved, "
                 f"median of {b['rounds']} rounds (all rounds in brackets):", "",
             "| server | non-stream c=1 p50 | non-stream c=32 req/s | 20-chunk stream c=32 "
             "req/s | server CPU per request (c=1 / c=32 / stream c=32) | errors |",
             "|---|---|---|---|---|---|"]
    for name, label in (("bare", "bare Tornado proxy, no auth/routing/ledger"),
                        ("freeapi", "freeapi (gateway key, ledger, metrics)")):
        r = b[name]
        errs = sum(r[c]["errors"] for c in ("ns1", "ns32", "st32"))
        cpu = b.get("cpu_us", {}).get(name)
        cpu = " / ".join(f"{cpu[c]:.0f} us" for c in ("ns1", "ns32", "st32")) if cpu else "-"
        lines.append("| {} | {} ({}) | {} ({}) | {} ({}) | {} | {} |".format(
            label, fmt_ms(r["ns1"]["p50_us"]), ", ".join(fmt_ms(x) for x in r["ns1"]["all"]),
            fmt_rps(r["ns32"]["ok_rps"]), ", ".join(fmt_rps(x) for x in r["ns32"]["all"]),
            fmt_rps(r["st32"]["ok_rps"]), ", ".join(fmt_rps(x) for x in r["st32"]["all"]),
            cpu, errs))
    return lines


DOORS = (("chat", "POST /v1/chat/completions"),
         ("messages_native", "POST /v1/messages, native pass-through"),
         ("messages_translated", "POST /v1/messages, translated to chat completions"),
         ("responses", "POST /v1/responses, translated to chat completions"))


def doors_table(rep):
    doors = rep.get("doors")
    if not doors:
        return []
    base = doors["chat"]
    lines = ["", "Front doors at c=1 (same upstream answer; one run, side by side):", "",
             "| door | non-stream p50 | vs chat | 20-chunk stream p50 | vs chat | errors |",
             "|---|---|---|---|---|---|"]
    for key, label in DOORS:
        if key not in doors:
            continue
        r = doors[key]
        errs = r["ns1"]["errors"] + r["st1"]["errors"]
        lines.append("| {} | {} | {} | {} | {} | {} |".format(
            label, fmt_ms(r["ns1"]["p50_us"]),
            f"{(r['ns1']['p50_us'] - base['ns1']['p50_us']) / 1000:+.2f} ms",
            fmt_ms(r["st1"]["p50_us"]),
            f"{(r['st1']['p50_us'] - base['st1']['p50_us']) / 1000:+.2f} ms", errs))
    return lines


def targets_table(rep):
    T = rep["targets"]
    d, f = T["direct"], T.get("freeapi")
    ll, pk = T.get("litellm"), T.get("portkey")
    rows = ["| target | measured | goal | |", "|---|---|---|---|"]

    def row(name, measured, goal, ok):
        rows.append(f"| {name} | {measured} | {goal} | "
                    f"{'n/a' if ok is None else ('MET' if ok else 'MISSED')} |")

    doors = rep.get("doors")
    if doors:  # issue 11: what each door costs over chat completions at c=1
        base = doors["chat"]
        for key, goal, limit in (("messages_translated", "<= +0.3 ms", 0.3),
                                 ("messages_native", "<= +0.3 ms", 0.3),
                                 ("responses", "<= +0.3 ms", 0.3)):
            if key not in doors:
                continue
            for cell, label in (("ns1", "non-stream"), ("st1", "20-chunk stream")):
                added = (doors[key][cell]["p50_us"] - base[cell]["p50_us"]) / 1000
                ok = doors[key][cell]["errors"] == 0 and added <= limit
                door = ("/v1/responses" if key == "responses"
                        else f"/v1/messages {key.split('_')[1]}")
                row(f"{door} over chat, {label}, c=1",
                    f"{added:+.2f} ms", goal, ok)

    b = rep.get("bare")
    if b:  # issue 18: freeapi held to a bare Tornado proxy, same run, interleaved
        fb, bb = b["freeapi"], b["bare"]
        ratio = fb["ns32"]["ok_rps"] / bb["ns32"]["ok_rps"]
        row("non-stream c=32 req/s: freeapi / bare proxy",
            f"{fmt_rps(fb['ns32']['ok_rps'])} / {fmt_rps(bb['ns32']['ok_rps'])} = {ratio:.2f} "
            f"(rounds {', '.join(f'{x:.2f}' for x in b['ratios']['ns32'])})", ">= 0.8",
            ratio >= 0.8)
        ratio = fb["ns1"]["p50_us"] / bb["ns1"]["p50_us"]
        row("non-stream c=1 p50: freeapi / bare proxy",
            f"{fmt_ms(fb['ns1']['p50_us'])} / {fmt_ms(bb['ns1']['p50_us'])} = {ratio:.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in b['ratios']['ns1'])})", "<= 1.4x",
            ratio <= 1.4)
        rs = b["ratios"]["st32"]
        ratio = fb["st32"]["ok_rps"] / bb["st32"]["ok_rps"]
        row("20-chunk stream c=32 req/s: freeapi / bare proxy",
            f"{fmt_rps(fb['st32']['ok_rps'])} / {fmt_rps(bb['st32']['ok_rps'])} = {ratio:.2f} "
            f"(rounds {', '.join(f'{x:.2f}' for x in rs)})", ">= 0.95 every round",
            min(rs) >= 0.95)

    def p50(t, cell):
        return t[cell]["p50_us"] / 1000

    def ok_cell(t, cell):
        return t is not None and t[cell]["errors"] == 0

    for cell, label in (("ns1", "non-stream"), ("st1", "20-chunk stream")):
        added = p50(f, cell) - p50(d, cell)
        row(f"added latency, {label}, c=1", f"{added:.2f} ms", "<= 0.5 ms", added <= 0.5)
        if ok_cell(pk, cell):
            pk_added = p50(pk, cell) - p50(d, cell)
            row(f"added latency, {label}: freeapi / Portkey",
                f"{added:.2f} / {pk_added:.2f} ms = {added / pk_added:.2f}", "<= 0.25",
                added <= 0.25 * pk_added)
        elif pk is not None:
            row(f"added latency, {label}: freeapi / Portkey",
                f"Portkey failed {pk[cell]['errors']}/{pk[cell]['requests']}", "<= 0.25",
                None)
    fr = f["ns32"]["ok_rps"]
    row("c=32 req/s: freeapi / direct", f"{fr:,.0f} / {d['ns32']['ok_rps']:,.0f} = "
        f"{fr / d['ns32']['ok_rps']:.2f}", ">= 0.33", fr >= d["ns32"]["ok_rps"] / 3)
    for t, name, goal in ((ll, "LiteLLM", 30), (pk, "Portkey", 3)):
        if t is None:
            continue
        other = t["ns32"]["ok_rps"]
        ratio = fr / other if other else float("inf")
        note = f" ({t['ns32']['errors']} errors)" if t["ns32"]["errors"] else ""
        row(f"c=32 req/s: freeapi / {name}", f"{fr:,.0f} / {other:,.0f}{note} = {ratio:.1f}x",
            f">= {goal}x", ratio >= goal)
    ft, dt = f["ttfb"]["first_p50_ms"], d["ttfb"]["first_p50_ms"]
    row("first streamed byte: freeapi - direct (p50)", f"{ft - dt:.2f} ms", "<= 1 ms",
        ft - dt <= 1.0)
    s = f.get("slow")
    if s:
        peak = max(s["rss_peak_mb"].values()) if s["rss_peak_mb"] else 0
        row(f"{s['n']} concurrent slow streams (250 ms x 120)",
            f"{s['ok']} complete and in order, {s['errors']} errors; chunk lag p50 "
            f"{s.get('chunk_lag_p50_ms')} / p99 {s.get('chunk_lag_p99_ms')} / max "
            f"{s.get('chunk_lag_max_ms')} ms; open p50 {s.get('open_p50_ms')} / max "
            f"{s.get('open_max_ms')} ms; gateway CPU {s.get('gateway_cpu_share', 0):.0%} of "
            f"its core", "all, 0 errors", s["errors"] == 0 and s["ok"] == s["n"])
        row(f"{s['n']} slow streams: gateway CPU", f"{s.get('gateway_cpu_share', 0):.0%} of "
            f"its core", "<= 40%", s.get("gateway_cpu_share", 1) <= 0.40)
        b = d.get("slow")
        if b and b.get("open_p50_ms") and s.get("open_p50_ms") is not None:
            row(f"{s['n']} slow streams: open p50, freeapi / direct",
                f"{s['open_p50_ms']} / {b['open_p50_ms']} ms = "
                f"{s['open_p50_ms'] / b['open_p50_ms']:.2f}x", "<= 2x",
                s["open_p50_ms"] <= 2 * b["open_p50_ms"])
        if b:
            row("the same streams direct to the upstream (baseline)",
                f"{b['ok']} complete, {b['errors']} errors; chunk lag p50 "
                f"{b.get('chunk_lag_p50_ms')} / p99 {b.get('chunk_lag_p99_ms')} / max "
                f"{b.get('chunk_lag_max_ms')} ms; open p50 {b.get('open_p50_ms')} / max "
                f"{b.get('open_max_ms')} ms", "(context)", None)
        row("peak RSS during the slow streams", f"{peak:.0f} MB (idle "
            f"{f.get('rss_idle_mb', 0):.0f} MB, whole run VmHWM {f['peak_rss_mb']:.0f} MB)",
            "< 300 MB", peak < 300)
    w = rep.get("workers")
    if w:
        r1, r2 = w["1"], w["2"]
        scale = r2["rps"] / r1["rps"]
        eff = r2["rps_per_gateway_core"] / r1["rps_per_gateway_core"]
        row("--workers 2 vs 1, c=32 req/s (this box)",
            f"{r2['rps']:,.0f} / {r1['rps']:,.0f} = {scale:.2f}x; workers used "
            f"{r2['worker_cpu_cores']} cores vs {r1['worker_cpu_cores']}", ">= 1.6x",
            scale >= 1.6)
        row("--workers: req/s per gateway core, 2 vs 1",
            f"{r2['rps_per_gateway_core']:,.0f} / {r1['rps_per_gateway_core']:,.0f} = "
            f"{eff:.2f} (projected scaling with 2 free cores: {2 * eff:.2f}x)",
            "(context)", None)
    return rows


def main():
    p = argparse.ArgumentParser(description="freeapi benchmark (bench/README.md)")
    p.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 5)))
    p.add_argument("--slow-n", type=int, default=int(os.environ.get("BENCH_SLOW_N", 2000)))
    p.add_argument("--skip", default=os.environ.get("BENCH_SKIP", ""),
                   help="comma list of: litellm,portkey,slow,slow-direct,floor,workers,doors,bare")
    p.add_argument("--server-cpu", default=os.environ.get("BENCH_SERVER_CPU", "0"))
    p.add_argument("--client-cpu", default=os.environ.get("BENCH_CLIENT_CPU", "1"))
    p.add_argument("--json", help="write the raw results here (default "
                                  "bench/results/latest.json)")
    p.add_argument("--render", metavar="JSON", help="only print the table of a saved run")
    p.add_argument("--profile", action="store_true",
                   help="instead of the table: py-spy profiles of freeapi under wrk load "
                        "(bench/results/profile-*.svg, profile.md)")
    p.add_argument("--variants", action="store_true",
                   help="instead of the table: freeapi as is vs with uvloop / orjson "
                        "switched on from outside (bench/variant.py; needs both installed)")
    p.add_argument("--variant", action="append", default=[], metavar="FLAGS",
                   help="--variants: a variant.py flag set such as '--uvloop --nodelay' "
                        "(repeatable; written --variant='--relay-only'; default: as is, "
                        "--uvloop, --orjson, --nodelay, all)")
    p.add_argument("--top", type=int, default=25, help="--profile: functions listed")
    args = p.parse_args()
    if args.render:
        with open(args.render) as f:
            print(render(json.load(f)))
        return 0
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        args.server_cpu = args.client_cpu = None
    missing = [x for x, ok in (("wrk", shutil.which("wrk")), ("node", shutil.which("node")),
                               (FREEAPI, os.path.exists(FREEAPI)))
               if not ok]
    if "litellm" not in args.skip and not os.path.exists(LITELLM):
        missing.append(LITELLM)
    if "portkey" not in args.skip and not os.path.exists(PORTKEY):
        missing.append(PORTKEY)
    if missing:
        print(f"bench: missing {', '.join(missing)}; run bench/setup.sh", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.variant_list = [tuple(v.split()) for v in args.variant] or [
        (), ("--uvloop",), ("--orjson",), ("--nodelay",), ("--uvloop", "--orjson", "--nodelay")]
    if args.variant:
        args.variant_list.insert(0, ())
    if args.profile or args.variants:
        try:
            return profile(args) if args.profile else variants(args)
        finally:
            stop_all()
    try:
        rep = run(args)
    finally:
        stop_all()
    table = render(rep)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(args.json or os.path.join(HERE, "results", "latest.json"), "w") as f:
        json.dump(rep, f, indent=1)
    with open(os.path.join(HERE, "results", "latest.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
