"""`freeapi rollups rebuild [--since DATE]`: the usage rollups (freeapi/rollups.py) made
again from the raw ledger, on the config's state store, without a gateway.

For a store upgraded from a release that had the ledger but no rollups (the status page
and GET /admin/keys read only rollups, so they show nothing of older traffic), or after
rollups were lost. A day at a time, oldest first: each day's buckets are cleared and
rebuilt from that day's ledger rows in one step the store makes atomic against ledger
writes (freeapi.store.Store.rollup_rebuild), so a gateway may keep serving meanwhile and
no request is counted twice; rows are read a page at a time, never all at once. Running
it again gives the same buckets (clear, then add). Days whose buckets have all expired
(PERIODS' `keep`: 100 days for day buckets) are skipped.

Not run by itself at startup: several gateways and workers open one store, and a rebuild
reads up to 100 days of ledger; the operator runs it once after the upgrade
(docs/operating.md, Upgrading).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from freeapi.rollups import PERIODS

DAY = 86400


def first_day(since: float | None, now: float) -> int:
    """The first day to rebuild: the one holding `since`, but none whose day bucket has
    already expired (it would be swept at once)."""
    width, _, keep = PERIODS["d"]
    oldest = now - width - keep
    start = oldest if since is None else max(since, oldest)
    return int(start // DAY) * DAY


async def rebuild(store, since: float | None = None, now: float | None = None,
                  progress=None) -> tuple[int, int]:
    """Rebuild the rollups of every day from the one holding `since` (default: the oldest
    still kept) to today; (days, ledger rows read). `progress(day_start, rows)` is told
    after each day."""
    now = time.time() if now is None else now
    days = rows = 0
    day = first_day(since, now)
    while day <= now:
        n = await store.rollup_rebuild(day, day + DAY, now)
        days, rows = days + 1, rows + n
        if progress is not None:
            progress(day, n)
        day += DAY
    return days, rows


def main(argv: list[str]) -> int:
    from freeapi.config import ConfigError, load_config
    from freeapi.plugins import make_plugin_manager, provider_types
    from freeapi.store import StoreError, open_store
    from freeapi.usage import parse_time

    p = argparse.ArgumentParser(
        prog="freeapi rollups", description="Rebuild the usage rollups from the ledger, "
        "on the state store of --config (a gateway may keep running).")
    p.add_argument("action", choices=["rebuild"])
    p.add_argument("--config", metavar="PATH", default=None,
                   help="YAML config file (its state: section)")
    p.add_argument("--since", metavar="DATE", default=None,
                   help="from the day holding DATE (2026-11-01, or a span back: 30d); "
                        "default: every day whose rollups are still kept (100 days)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, provider_types(make_plugin_manager()))
        since = parse_time(args.since) if args.since else None
    except ConfigError as e:
        print(f"freeapi: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"freeapi: --since: {e}", file=sys.stderr)
        return 2
    if since is not None and since > time.time():
        print(f"freeapi: --since: {args.since!r} is in the future: no ledger to rebuild "
              "from", file=sys.stderr)
        return 2
    if cfg.state.path == ":memory:" and not (cfg.state.redis_url or cfg.state.database_url):
        print("freeapi: `freeapi rollups rebuild` needs the state store the gateway uses: "
              "give --config with its config file", file=sys.stderr)
        return 2
    store = open_store(cfg.state)

    def told(day: int, n: int) -> None:
        if n:
            print(f"{time.strftime('%Y-%m-%d', time.gmtime(day))}: {n} ledger row(s)")

    async def run():
        try:
            return await rebuild(store, since, progress=told)
        finally:
            await store.aclose()
    try:
        days, rows = asyncio.run(run())
    except StoreError as e:
        print(f"freeapi: state store: {e}", file=sys.stderr)
        return 1
    print(f"rebuilt the rollups of {days} day(s) from {rows} ledger row(s) "
          f"({store.describe()})")
    return 0
