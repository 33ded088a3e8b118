"""`freeapi keys ...` and `freeapi teams ...`: the admin API on the config's state store,
with no gateway running (a running one sees the change within a second). Prints the same
JSON the API answers; audit entries name the actor `cli`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from freeapi.admin.directory import Directory
from freeapi.admin.service import Admin
from freeapi.config import ConfigError, load_config
from freeapi.errors import APIError
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.store import StoreError, open_store

ACTOR = "cli"
_ACTIONS = {"keys": ("create", "list", "show", "update", "revoke", "rotate"),
            "teams": ("create", "list", "show", "update", "delete")}


def _limit(text: str):
    return None if text.lower() in ("none", "null") else int(text)


def _amount(text: str):
    return None if text.lower() in ("none", "null") else float(text)


def _models(text: str):
    if text.lower() in ("none", "null", "all"):
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def _json(text: str):
    return json.loads(text)


def build_parser(what: str) -> argparse.ArgumentParser:
    # Fields not given stay absent (SUPPRESS), so `update` changes only what is named and
    # 'none' clears a field.
    p = argparse.ArgumentParser(
        prog=f"freeapi {what}", argument_default=argparse.SUPPRESS,
        description=f"Manage gateway {what} in the state store of --config "
                    "(docs/admin.md). Prints JSON; a new key's secret is printed once.")
    p.add_argument("action", choices=_ACTIONS[what])
    p.add_argument("id", nargs="?", default=None,
                   help="the key's id (key_...) or the team's id or name")
    p.add_argument("--config", metavar="PATH", default=None,
                   help="YAML config file (its state: section)")
    p.add_argument("--name")
    if what == "keys":
        p.add_argument("--team", help="team id or name ('none': no team)")
        p.add_argument("--expires-at", metavar="WHEN",
                       help="RFC 3339 time, e.g. 2027-01-31T00:00:00Z ('none': never)")
        p.add_argument("--grace", type=float, metavar="SECONDS", default=0.0,
                       help="rotate: how long the old secret keeps working (default 0)")
    p.add_argument("--models", type=_models, help="comma-separated names or patterns "
                                                  "('all': every model)")
    for limit in ("rpm", "tpm", "daily-tokens", "monthly-tokens"):
        p.add_argument(f"--{limit}", type=_limit, metavar="N", help="'none' removes it")
    for period in ("daily", "monthly", "total"):
        p.add_argument(f"--budget-{period}", type=_amount, metavar="AMOUNT",
                       help="money; stored, not enforced yet")
    p.add_argument("--metadata", type=_json, metavar="JSON", help="a JSON object")
    return p


def _body(args, what: str) -> dict:
    body = {}
    names = ["name", "models", "rpm", "tpm", "daily_tokens", "monthly_tokens", "metadata"]
    if what == "keys":
        names += ["team", "expires_at"]
    for name in names:
        if hasattr(args, name):
            body[name] = getattr(args, name)
    for name in ("team", "expires_at"):
        if isinstance(body.get(name), str) and body[name].lower() == "none":
            body[name] = None
    budget = {p: getattr(args, f"budget_{p}") for p in ("daily", "monthly", "total")
              if hasattr(args, f"budget_{p}")}
    if budget:
        body["budget"] = budget
    return body


async def _run(admin: Admin, what: str, args) -> object:
    a, rid = args.action, args.id
    if a not in ("create", "list") and not rid:
        raise APIError(400, f"`freeapi {what} {a}` needs the id.", param="id")
    body = _body(args, what)
    if what == "keys":
        if a == "create":
            view, secret = await admin.create_key(body, ACTOR)
            return dict(view, key=secret)
        if a == "list":
            return await admin.list_keys()
        if a == "show":
            return await admin.get_key(rid)
        if a == "update":
            return await admin.update_key(rid, body, ACTOR)
        if a == "revoke":
            return await admin.revoke_key(rid, ACTOR)
        view, secret = await admin.rotate_key(
            rid, {"grace_seconds": args.grace}, ACTOR)
        return dict(view, key=secret)
    if a == "create":
        return await admin.create_team(body, ACTOR)
    if a == "list":
        return await admin.list_teams()
    if a == "show":
        return await admin.get_team(rid)
    if a == "update":
        return await admin.update_team(rid, body, ACTOR)
    return await admin.delete_team(rid, ACTOR)


def main(what: str, argv: list[str]) -> int:
    args = build_parser(what).parse_args(argv)
    try:
        cfg = load_config(args.config, provider_types(make_plugin_manager()))
    except ConfigError as e:
        print(f"freeapi: {e}", file=sys.stderr)
        return 2
    if cfg.state.path == ":memory:" and not cfg.state.redis_url:
        print(f"freeapi: `freeapi {what}` needs a state store a gateway can share: give "
              "--config with a config file (its state: section)", file=sys.stderr)
        return 2
    store = open_store(cfg.state)

    async def run():
        try:
            return await _run(Admin(store, Directory(store), lambda: cfg.gateway_keys),
                              what, args)
        finally:
            await store.aclose()
    try:
        out = asyncio.run(run())
    except APIError as e:
        where = f" ({e.param})" if e.param else ""
        print(f"freeapi: {e.message}{where}", file=sys.stderr)
        return 2 if e.status < 500 else 1
    except StoreError as e:
        print(f"freeapi: state store: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0
