"""`python3 -m freeapi.healthcheck [PID]`: the container image's HEALTHCHECK. Exits 0 when the
gateway in this container answers /ping with `pong`, 1 otherwise.

It asks the address the server was started on, not a fixed :8000: a container run with
`--port 9000`, or with a mounted config whose server.port is 9000, was reported unhealthy
by a fixed port although it served. The port comes from the server's command line (PID 1,
also behind `--init`), then the `server.port` of the config file it was given, then 8000.
Kept light (no tornado, no plugins): it runs every 15 s in every container.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request

import yaml

DEFAULT_CONFIG = "/etc/freeapi/config.yaml"  # where the image puts its config
WILDCARD = ("", "0.0.0.0", "::", "[::]")


def server_argv(pid: int = 1) -> list[str]:
    """The arguments after `freeapi` in the process's command line ([] if it is not one)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "freeapi":
            return argv[i + 1:]
    return []


def address(argv: list[str]) -> tuple[str, int]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    args, _ = p.parse_known_args(argv)
    server = {}
    try:
        with open(args.config or DEFAULT_CONFIG, encoding="utf-8") as f:
            server = (yaml.safe_load(f) or {}).get("server") or {}
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        pass  # the server would not have started on it either; ask the default
    port = args.port or server.get("port")
    host = args.host or server.get("host")
    if not isinstance(port, int) or isinstance(port, bool):
        port = 8000
    if not isinstance(host, str) or host in WILDCARD or "$" in host:
        host = "127.0.0.1"
    return (f"[{host}]" if ":" in host else host), port


def main(argv: list[str]) -> int:
    """argv: [PID] of the server process, 1 (the container's first process) by default."""
    host, port = address(server_argv(int(argv[0]) if argv else 1))
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=4) as r:
            return 0 if r.read() == b"pong" else 1
    except OSError as e:
        print(f"unhealthy: http://{host}:{port}/ping: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
