#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: an A/B figure for hot-path
changes that other load on the machine does not move (wrk's req/s and even CPU seconds
swing on a shared box; an instruction count repeats within about 1%).

The fake upstream (bench/upstream.js) runs natively; the server under test (freeapi with
bench.py's config, gateway key + ledger + metrics, or bench/bare_proxy.py) runs under
`valgrind --tool=callgrind --instr-atstart=no`. After a warm-up, counting is switched on
with `callgrind_control -i on`, N requests are sent one after the other on one keep-alive
connection by a small raw-socket client here, counting is switched off and the total is
divided by N. The server's startup, warm-up and shutdown are not counted.

  python bench/instructions.py [--n 200] [--cells ns,st,responses,messages] [--bare]
      [--bare-mode handler|lean|raw|protocol] [--http-core httptools|tornado]
  PYTHONPATH=/tmp/before python bench/instructions.py     # another checkout's freeapi

Cells: ns = chat non-stream, st = chat 20-chunk stream, responses / responses-st =
/v1/responses (store: false), messages / messages-st = /v1/messages translated to chat.
--access-log runs freeapi at log_level info (the access line on, written to a file).
--loop picks the event loop of both servers: asyncio (the default; uvloop is kept from
being imported even when installed, since freeapi's cli.py uses it when it is) or uvloop
(which must be importable, e.g. PYTHONPATH=<dir with uvloop>).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
# freeapi's __main__ through a wrapper that can hide uvloop (cli.py takes it when importable)
FREEAPI_MAIN = ["-c", "import sys, runpy\nif sys.argv[1] == 'asyncio': sys.modules['uvloop'] = None\n"
                "del sys.argv[1]\nrunpy.run_module('freeapi', run_name='__main__', alter_sys=True)"]

CELLS = {
    "ns": ("/v1/chat/completions", False, "chat"),
    "st": ("/v1/chat/completions", True, "chat"),
    "responses": ("/v1/responses", False, "responses"),
    "responses-st": ("/v1/responses", True, "responses"),
    "messages": ("/v1/messages", False, "anthropic"),
    "messages-st": ("/v1/messages", True, "anthropic"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_of(dialect: str, stream: bool) -> bytes:
    tail = ',"stream":true' if stream else ""
    if dialect == "responses":
        return ('{"model":"deepseek-chat","input":"Say hello.","store":false%s}' % tail).encode()
    extra = '"max_tokens":64,' if dialect == "anthropic" else ""
    return ('{"model":"deepseek-chat",%s"messages":[{"role":"user","content":"Say hello."}]%s}'
            % (extra, tail)).encode()


class Client:
    """Sequential keep-alive requests; reads a Content-Length or chunked answer whole."""

    def __init__(self, port: int, auth: str | None):
        self.port, self.auth = port, auth
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed")
        self.buf += data

    def request(self, path: str, body: bytes) -> tuple[int, bytes]:
        auth = f"Authorization: Bearer {self.auth}\r\n" if self.auth else ""
        self.sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                           f"Content-Type: application/json\r\n{auth}"
                           f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._more()
            out, self.buf = self.buf[:n], self.buf[n:]
            return status, out
        out = []
        while True:  # chunked
            while b"\r\n" not in self.buf:
                self._more()
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                self._more()
                rest = self.buf.split(b"\r\n", 1)[1]
            out.append(rest[:size])
            self.buf = rest[size + 2:]
            if size == 0:
                return status, b"".join(out)


def run_clients(clients: list[Client], path: str, body: bytes, cell: str, n: int):
    """n requests in all, each client sending its share one after the other; with more
    than one client they are in flight at once (one thread each), as under wrk -c."""
    errors: list[str] = []

    def share(c: Client, k: int):
        try:
            for _ in range(k):
                status, data = c.request(path, body)
                if status != 200:
                    errors.append(f"{cell}: HTTP {status}: {data[:200]!r}")
                    return
        except OSError as e:
            errors.append(f"{cell}: {e}")

    if len(clients) == 1:
        share(clients[0], n)
    else:
        k, extra = divmod(n, len(clients))
        threads = [threading.Thread(target=share, args=(c, k + (i < extra)))
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise SystemExit(errors[0])


def wait_port(port: int, proc, timeout=240.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not start")


def config(tmp: str, up_port: int, port: int, access_log: bool, http_core: str | None) -> str:
    path = os.path.join(tmp, "freeapi.yaml")
    core = f", http_core: {http_core}" if http_core else ""  # (older trees lack the key)
    with open(path, "w") as f:
        f.write(f"""server: {{host: 127.0.0.1, port: {port}, log_level: {"info" if access_log else "warning"}{core}}}
auth: {{keys: [bench-key]}}
providers:
  deepseek: {{enabled: false}}
  bench:
    type: openai
    base_url: "http://127.0.0.1:{up_port}/v1"
    anthropic_base_url: false
    api_keys: [sk-bench]
    models: [deepseek-chat, slow]
    discover: false
""")
    return path


def ctl(pid: int, *args: str):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def thread_ir(out_prefix: str) -> tuple[dict, dict]:
    """{event: count} of the main thread and of the other threads over the dumps
    (--separate-threads=yes: one file per thread and dump, `<prefix>[.<dump>]-<thread>`).
    Ir alone, or with --cache-sim also the cache events (D1mr, DLmr, ...)."""
    main: dict = {}
    other: dict = {}
    for path in glob.glob(out_prefix + "*"):
        m = re.search(r"-(\d+)$", path)
        if m is None:
            continue
        into = main if int(m.group(1)) == 1 else other
        names: list[str] = []
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("events:"):
                    names = line.split()[1:]
                elif line.startswith("totals:"):  # summary: is 0 with separate threads
                    for name, n in zip(names, line.split()[1:]):
                        into[name] = into.get(name, 0) + int(n)
    return main, other


def measure(args, cells: list[str], bare: bool) -> dict:
    tmp = tempfile.mkdtemp(prefix="instr-")
    up_port, port = free_port(), free_port()
    up = subprocess.Popen(["node", os.path.join(HERE, "upstream.js"), "--port", str(up_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        for cell in cells:
            path, stream, dialect = CELLS[cell]
            if bare and path != "/v1/chat/completions":
                continue
            out = os.path.join(tmp, f"cg-{cell}.out")
            if bare:
                argv = [PY, os.path.join(HERE, "bare_proxy.py"), "--port", str(port),
                        "--upstream", f"http://127.0.0.1:{up_port}"]
                argv += ["--uvloop"] if args.loop == "uvloop" else []
                argv += ["--mode", args.bare_mode]
            elif args.variant:
                if args.loop == "asyncio":
                    raise SystemExit("--variant runs freeapi on uvloop: add --loop uvloop")
                argv = [PY, os.path.join(HERE, "variant.py"), *args.variant.split(), "--",
                        "--config", config(tmp, up_port, port, args.access_log, args.http_core)]
            else:
                argv = [PY, *FREEAPI_MAIN, args.loop, "--config",
                        config(tmp, up_port, port, args.access_log, args.http_core)]
            env = dict(os.environ, PYTHONHASHSEED="0")
            log = open(os.path.join(tmp, f"server-{cell}.log"), "w")
            cache = ["--cache-sim=yes"] if args.cache_sim else []
            srv = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                    "--separate-threads=yes", *cache,
                                    f"--callgrind-out-file={out}", *argv],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
            try:
                wait_port(up_port, up)
                wait_port(port, srv)
                clients = [Client(port, None if bare else "bench-key")
                           for _ in range(args.concurrency)]
                body = body_of(dialect, stream)
                run_clients(clients, path, body, cell, args.warmup)
                time.sleep(0.5)  # the ledger's batch timer and other stragglers
                ctl(srv.pid, "-i", "on")
                run_clients(clients, path, body, cell, args.n)
                time.sleep(0.3)  # the ledger batch and access lines of the last ones
                ctl(srv.pid, "-i", "off")
                ctl(srv.pid, "-d")
                for c in clients:
                    c.sock.close()
            finally:
                srv.terminate()
                try:
                    srv.wait(60)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
            main_ev, other_ev = thread_ir(out)
            main_ir, other_ir = main_ev.get("Ir", 0), other_ev.get("Ir", 0)
            results[cell] = {"main": main_ir / args.n, "threads": other_ir / args.n}
            c = f", {args.concurrency} at once" if args.concurrency > 1 else ""
            who = "bare" if bare else "freeapi"
            print(f"{who} ({args.loop}{c}) {cell}: {main_ir / args.n / 1000:.0f}k "
                  f"instructions per request on the event loop's thread, "
                  f"{other_ir / args.n / 1000:.0f}k on other threads", flush=True)
            if args.cache_sim:
                both = {k: main_ev.get(k, 0) + other_ev.get(k, 0) for k in main_ev}
                results[cell]["cache"] = {k: v / args.n for k, v in both.items()}
                print("    per request, all threads: " + ", ".join(
                    f"{k} {v / args.n:,.0f}" for k, v in both.items() if k != "Ir"), flush=True)
    finally:
        up.terminate()
        up.wait()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="requests counted per cell")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--cells", default="ns,st")
    ap.add_argument("--bare", action="store_true", help="also the bare proxy (chat cells)")
    ap.add_argument("--bare-mode", choices=("handler", "lean", "raw", "protocol"),
                    default="handler",
                    help="the bare proxy's --mode (bench/bare_proxy.py)")
    ap.add_argument("--access-log", action="store_true", help="freeapi at log_level info")
    ap.add_argument("--http-core", choices=("httptools", "tornado"),
                    help="freeapi's server.http_core (default: the tree's own default)")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                    help="the servers' event loop")
    ap.add_argument("--variant", metavar="FLAGS",
                    help="run freeapi through bench/variant.py with these flags "
                         "(e.g. '--relay-only')")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="client connections sending at once (the counted n is split over them)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="callgrind's cache simulation: also D1/LL misses per request")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    cells = args.cells.split(",")
    out = {"freeapi": measure(args, cells, False)}
    if args.bare:
        out["bare"] = measure(args, cells, True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
