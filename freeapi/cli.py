"""`freeapi`: run the gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import sys

from freeapi import __version__, fleet, logs, metrics, reload
from freeapi.app import Gateway, make_app
from freeapi.checkkeys import check_keys
from freeapi.config import ConfigError, load_config, plain_http_to_remote
from freeapi.housekeeping import prune_ledger
from freeapi.keys import public_url
from freeapi.log_redaction import RedactKeys, redact_keys
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.server import make_server, raise_fd_limit, tune_gc
from freeapi.store import StoreError
from freeapi.usage import usage_command

log = logging.getLogger("freeapi")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="freeapi",
        description="OpenAI-compatible gateway in front of DeepSeek and sibling vendors' "
                    "official APIs. Without --config it starts with defaults and uses the "
                    "vendor key each client sends (Authorization: Bearer sk-...).")
    p.add_argument("command", nargs="?", default="serve",
                   choices=["serve", "check-keys", "usage", "reload"],
                   help="serve (the default) runs the gateway; check-keys asks each vendor "
                        "whether every configured key is usable and prints a table; usage "
                        "prints the usage ledger's totals per UTC day, gateway key and model "
                        "(with cost when the config has prices); reload makes the running "
                        "gateway re-read its config (SIGHUP). `freeapi keys|teams ...` "
                        "manage runtime keys and teams (freeapi keys --help); `freeapi "
                        "rollups rebuild [--since DATE]` makes the usage rollups again "
                        "from the ledger")
    p.add_argument("--config", metavar="PATH", help="YAML config file (see config.yaml)")
    p.add_argument("--host", help="address to listen on (overrides server.host)")
    p.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="overrides server.log_level")
    p.add_argument("--log-format", choices=list(logs.FORMATS),
                   help="overrides server.log_format (text, the default, or json: one "
                        "object per line)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve with N processes on the same port (default 1; about one per "
                        "CPU core). Each worker binds its own SO_REUSEPORT socket and the "
                        "kernel spreads new connections across them; each keeps its own "
                        "upstream connections and key rotation. SIGTERM/SIGINT to the "
                        "parent stops them all; if one dies, the others are stopped too.")
    p.add_argument("--since", metavar="WHEN",
                   help="usage: from a date (2026-11-01), a UTC time (2026-11-01T12:00) or "
                        "a span back from now (30m, 24h, 7d, 2w); default: everything kept")
    p.add_argument("--until", metavar="WHEN", help="usage: up to (not including) WHEN")
    p.add_argument("--json", action="store_true", help="usage: print JSON instead of tables")
    p.add_argument("--pid-file", metavar="PATH",
                   help="serve: write the process id here; reload: signal the process it "
                        "names (default: freeapi-PORT.pid beside the state file, else "
                        "beside the config file)")
    p.add_argument("--pid", type=int, metavar="N", help="reload: signal this process")
    p.add_argument("--version", action="version", version=f"freeapi {__version__}")
    return p


def load(args) -> Gateway:
    """Plugins, then config (validated against the installed provider types), then state."""
    pm = make_plugin_manager()
    types = provider_types(pm)
    cfg = load_config(args.config, types)
    gateway_overrides = [name for name, given in (("host", args.host), ("port", args.port),
                                                  ("log_level", args.log_level),
                                                  ("log_format", getattr(args, "log_format",
                                                                         None)))
                         if given is not None]
    if args.host:
        cfg.host = args.host
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise ConfigError("--port", "must be between 1 and 65535")
        cfg.port = args.port
    if args.log_level:
        cfg.log_level = args.log_level
    if getattr(args, "log_format", None):
        cfg.log_format = args.log_format
    gateway = Gateway(cfg, pm, types)
    gateway.workers = max(1, getattr(args, "workers", 1) or 1)
    gateway.config_path = args.config  # re-read on SIGHUP (freeapi/reload.py)
    gateway.cli_overrides = gateway_overrides
    return gateway


def _log_request(handler):
    # Tornado's own line: a warning for a 5xx; at debug only while freeapi's access line
    # (freeapi/access_log.py, server.access_log) is off, which says more.
    status = handler.get_status()
    gateway = handler.settings.get("freeapi")
    if status >= 500 or (log.isEnabledFor(logging.DEBUG)
                         and not (gateway is not None and gateway.config.access_log)):
        # The request's log context (logs.begin) is what the line's fields are read from:
        # Tornado calls this from the request's own finish().
        ctx = logs.current.get()
        if ctx is not None:  # for the JSON format's fields
            ctx.status, ctx.latency_ms = status, round(1000 * handler.request.request_time())
        log.log(logging.WARNING if status >= 500 else logging.DEBUG, "%d %s %s %.1fms",
                status, handler.request.method, handler.request.path,
                1000.0 * handler.request.request_time())


async def serve(gateway: Gateway, reuse_port: bool = False, redactor=None):
    cfg = gateway.config
    app = make_app(gateway)
    app.settings["log_function"] = _log_request
    await gateway.store.ping()  # a state store that cannot be reached stops startup here
    await gateway.directory.refresh(force=True)  # runtime keys, before the first request
    raise_fd_limit()  # before the connection cap's default is read from it
    tune_gc()
    server = make_server(app, cfg)
    # A deeper accept queue than Tornado's 128: a burst of clients (2,000 streams opening
    # within two seconds in bench/) otherwise sees dropped SYNs and second-long retries.
    server.listen(cfg.port, cfg.host, reuse_port=reuse_port, backlog=2048)
    for name, p in gateway.providers.items():
        keys = f"{len(p.api_keys)} server-side key(s)" if p.api_keys else "pass-through keys"
        # public_url: a base_url may carry a proxy's credentials or a key in its query.
        log.info("provider %s (%s) at %s, %s: %s", name, p.type_name,
                 public_url(p.base_url), keys, ", ".join(p.model_ids()) or "no models listed")
        if plain_http_to_remote(p.base_url):
            log.warning("provider %s: %s is plain http:// to a host that is not local; keys "
                        "and prompts cross the network unencrypted (use https://)", name,
                        public_url(p.base_url))
    log.info("freeapi %s listening on http://%s:%d/v1 (gateway auth %s, up to %d "
             "connections)", __version__, cfg.host, cfg.port,
             "on" if gateway.auth.enabled else "off", server.cap.max_connections)
    log.info("state: %s", gateway.store.describe())
    # Which loop runs: uvloop where it installs, asyncio elsewhere (not visible from outside).
    log.info("event loop: %s", "uvloop" if type(asyncio.get_running_loop()).__module__
             .startswith("uvloop") else "asyncio")
    discovery = asyncio.ensure_future(gateway.discovery.loop())
    housekeeping = asyncio.ensure_future(
        prune_ledger(gateway.store, gateway.config.state.ledger_days))
    sweeping = asyncio.ensure_future(gateway.sweeper.run())
    gateway.health_sync.start()  # shared stores only; gateway.close() stops it
    gateway.directory.start()  # follows the runtime keys other gateways change
    metrics_fresh = (asyncio.ensure_future(gateway.metrics.keep_fresh(gateway))
                     if gateway.metrics.multiproc_dir else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reload.install(loop, gateway, getattr(gateway, "config_path", None),
                   lambda c: redact_keys(redactor, c) if redactor is not None else None)
    await stop.wait()
    discovery.cancel()
    housekeeping.cancel()
    sweeping.cancel()
    if metrics_fresh is not None:
        metrics_fresh.cancel()
    server.stop()
    log.info("shutting down: %d request(s) in flight get up to %gs to finish",
             len(gateway.active), cfg.shutdown_grace)
    await gateway.drain(cfg.shutdown_grace)
    try:
        await asyncio.wait_for(server.close_all_connections(), 5)
    except asyncio.TimeoutError:
        pass
    await gateway.store.aclose()  # the ledger entries still queued are written first
    gateway.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("keys", "teams"):
        from freeapi.admin.cli import main as admin_main
        return admin_main(argv[0], argv[1:])
    if argv and argv[0] == "rollups":  # `freeapi rollups rebuild` (freeapi/rollups_rebuild.py)
        from freeapi.rollups_rebuild import main as rollups_main
        return rollups_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO)
    redactor = RedactKeys()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    metrics_tmp = metrics.prepare_processes(args.workers if args.command == "serve" else 1)
    try:
        return _main(args, redactor)
    finally:
        if metrics_tmp:
            shutil.rmtree(metrics_tmp, ignore_errors=True)


def _main(args, redactor) -> int:
    try:
        gateway = load(args)
    except ConfigError as e:
        print(f"freeapi: {e}", file=sys.stderr)
        return 2
    cfg = gateway.config
    if args.command == "reload":
        code, message = reload.send(reload.pid_file(args.config, cfg, args.pid_file), args.pid)
        print(f"freeapi: {message}", file=sys.stderr if code else sys.stdout)
        return code
    redact_keys(redactor, cfg)
    logging.getLogger().setLevel(gateway.config.log_level.upper())
    logs.install(cfg.log_format, redactor)
    if args.command == "check-keys":
        return asyncio.run(check_keys(gateway))
    if args.command == "usage":
        return asyncio.run(usage_command(
            gateway, args.since, args.until, args.json,
            err=lambda line: print(line, file=sys.stderr)))
    if args.workers < 1:
        print("freeapi: --workers must be at least 1", file=sys.stderr)
        return 2
    # SIGHUP reloads the config (freeapi/reload.py); until a process's handler is in place
    # it waits blocked (neither fatal nor lost). The pid file lets `freeapi reload` find us.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    pid_path = reload.pid_file(args.config, cfg, args.pid_file)
    reload.write_pid(pid_path)
    try:
        if args.workers > 1:
            return _run_workers(args, gateway.config, redactor)
        return _run(gateway, redactor=redactor)
    finally:
        reload.remove_pid(pid_path)


def _event_loop_runner():
    """uvloop's loop (a dependency where it exists: not on Windows or PyPy): 12-15% fewer
    instructions per request on the event loop (bench/README.md, "Tornado's per-request
    costs"); without it, asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _run(gateway: Gateway, reuse_port: bool = False, redactor=None) -> int:
    try:
        _event_loop_runner()(serve(gateway, reuse_port, redactor))
    except OSError as e:
        print(f"freeapi: cannot listen on {gateway.config.host}:{gateway.config.port}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"freeapi: state store: {e}", file=sys.stderr)
        return 1
    return 0


def _reload_workers(args, children) -> None:
    """SIGHUP to the parent: check the file once here (one log line when it is invalid),
    then every worker re-reads it."""
    try:
        types = provider_types(make_plugin_manager())
        # The whole fleet, as each worker builds it (a `models:` target nobody serves):
        # an invalid file is one line here, not one per worker.
        fleet.build(load_config(args.config, types), types)
    except ConfigError as e:
        log.error(reload.FAILED, str(e))
        return
    for child in children:
        try:
            os.kill(child, signal.SIGHUP)
        except ProcessLookupError:
            pass


def _die_with_parent():
    """Linux: a worker gets SIGTERM if the parent is killed outright (kill -9, OOM)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def _run_workers(args, cfg, redactor=None) -> int:
    """Fork `args.workers` processes that each listen with SO_REUSEPORT; wait for them."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("freeapi: --workers needs SO_REUSEPORT (Linux, BSD)", file=sys.stderr)
        return 2
    # Fail once, here, if anything holds the port (a plain bind also refuses to join a
    # stale instance's SO_REUSEPORT group); binding without listening takes no traffic.
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(
                cfg.host or None, cfg.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(addr)
    except OSError as e:
        print(f"freeapi: cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    # Signals wait until the parent's handlers are in place; workers get the defaults back
    # and install their own in serve().
    sigs = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    children: set[int] = set()
    stopping = False

    def stop_all(*_):
        nonlocal stopping
        stopping = True
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # a worker builds its own state after the fork
            code = 1
            try:
                _die_with_parent()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
                code = _run(load(args), reuse_port=True, redactor=redactor)
            except ConfigError as e:
                print(f"freeapi: {e}", file=sys.stderr)
            finally:
                os._exit(code)
        children.add(pid)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGHUP, lambda *_: _reload_workers(args, children))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs | {signal.SIGHUP})
    log.info("%d workers on port %d (pids %s)", len(children), cfg.port,
             " ".join(map(str, sorted(children))))
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        metrics.worker_exited(pid)
        rc = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("worker %d exited (%d); stopping the others", pid, rc)
            code = rc if rc > 0 else 1
            stop_all()
    return code
