"""Hot reload: SIGHUP (or `freeapi reload`, which sends it) re-reads config.yaml in the
running process, and with --workers the parent passes it on to every worker.

What a reload applies: the gateway keys of `auth.keys` with their roles, model
allowlists and limits, `auth.allow_anonymous`, `prices`, `billing`, `metrics.public`, and
`providers`, `models`, `fallbacks` and `free` (freeapi/fleet.py builds those; the gateway
swaps them in with `apply_fleet`). Requests in flight keep the caller they were admitted
as and the provider, route and key pool they resolved; new requests use the new ones at
once. Unchanged providers keep their objects and key pools. The other sections (server,
state, failover, discovery, ...) are compared and, when they differ, one warning says a
restart applies them. An invalid file changes nothing and logs one line naming the error.

The running process is found by a pid file, `freeapi-PORT.pid`, beside the state file
(state.path), else beside the config file; `--pid-file` names another.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal

from freeapi import fleet
from freeapi.config import Config, ConfigError, load_config
from freeapi.keys import GatewayAuth
from freeapi.plugins import provider_types

log = logging.getLogger("freeapi.reload")

# Config fields a reload applies (Config attribute names), and those that need a restart.
# Every other field needs a restart: derived from Config itself, so a section added later
# is reported as "takes effect at the next restart" rather than silently ignored.
APPLIED = ("gateway_keys", "allow_anonymous", "prices", "billing", "metrics_public")
# Applied through the fleet (freeapi/fleet.py): what the gateway builds from them.
FLEET = ("providers", "models", "fallbacks", "free")
RESTART = tuple(f.name for f in dataclasses.fields(Config)
                if f.name not in APPLIED and f.name not in FLEET)
FAILED = "config reload failed, keeping the running config: %s"


def pid_file(config_path: str | None, cfg, explicit: str | None = None) -> str | None:
    if explicit:
        return explicit
    name = f"freeapi-{cfg.port}.pid"
    if cfg.state.path != ":memory:" and not (cfg.state.redis_url or cfg.state.database_url):
        return os.path.join(os.path.dirname(os.path.abspath(cfg.state.path)), name)
    if config_path:
        return os.path.join(os.path.dirname(os.path.abspath(config_path)), name)
    return None


def write_pid(path: str | None) -> None:
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        log.warning("cannot write the pid file %s (%s); `freeapi reload` needs --pid",
                    path, e.strerror or e)


def remove_pid(path: str | None) -> None:
    """Remove the pid file if it is still ours (a newer instance may have replaced it)."""
    if not path:
        return
    try:
        with open(path) as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def reload_config(gateway, path: str | None, on_keys=None) -> bool:
    """Re-read `path` into the running `gateway`; whether it was applied. `on_keys(cfg)`
    lets the caller refresh what else holds the keys (the log redactor)."""
    if not path:
        log.warning("config reload: the gateway runs without --config; nothing to re-read")
        return False
    if gateway.draining:
        # Shutting down: a reload would start what close() is stopping (a discovery round,
        # key-health sharing) for requests that will never come.
        log.warning("config reload ignored: the gateway is shutting down")
        return False
    try:
        new = load_config(path, provider_types(gateway.pm))
        # Everything built before anything is applied: a section that does not hold
        # together (a `models:` target nobody serves) changes nothing either.
        built = fleet.build(new, gateway.provider_types, gateway.providers)
    except ConfigError as e:
        log.error(FAILED, str(e))
        return False
    cfg = gateway.config
    later = [f for f in RESTART if _differs(getattr(cfg, f), getattr(new, f))
             and not _overridden(gateway, f)]
    gateway.auth.replace_config(GatewayAuth(new.gateway_keys))
    for field in APPLIED:
        setattr(cfg, field, getattr(new, field))
    swapped = built.added or built.changed or built.removed or any(
        _differs(getattr(cfg, f), getattr(new, f)) for f in FLEET)
    if swapped:
        gateway.apply_fleet(new, built)
    if on_keys is not None:
        on_keys(cfg)
    log.info("config reloaded from %s: %d gateway key(s)%s", path, len(cfg.gateway_keys),
             "".join(f"; providers {what}: {', '.join(names)}" for what, names in (
                 ("added", built.added), ("changed", built.changed),
                 ("removed", built.removed)) if names))
    if later:
        log.warning("config reload: changes to %s take effect at the next restart",
                    ", ".join(later))
    return True


def _differs(a, b) -> bool:
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return dataclasses.asdict(a) != dataclasses.asdict(b)
    return a != b


def _overridden(gateway, field: str) -> bool:
    # --host/--port/--log-level/--log-format on the command line win over the file.
    return field in getattr(gateway, "cli_overrides", ())


def install(loop, gateway, path: str | None, on_keys=None) -> None:
    """Reload on SIGHUP, in the event loop (reading a YAML file takes milliseconds)."""
    loop.add_signal_handler(signal.SIGHUP, reload_config, gateway, path, on_keys)
    # Blocked until now (cli.py): a SIGHUP sent during startup is handled here, not lost.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def send(pid_path: str | None, pid: int | None) -> tuple[int, str]:
    """`freeapi reload`: SIGHUP to the running gateway; (exit code, message)."""
    if pid is None:
        if not pid_path:
            return 2, "no pid file to read: give --config, --pid-file or --pid"
        try:
            with open(pid_path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            return 1, f"cannot read the pid file {pid_path}: {getattr(e, 'strerror', e) or e}" \
                      " (is the gateway running with this config and port?)"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return 1, f"no process {pid} (a stale pid file?)"
    except PermissionError:
        return 1, f"not allowed to signal process {pid}"
    return 0, f"sent SIGHUP to freeapi (pid {pid})"
