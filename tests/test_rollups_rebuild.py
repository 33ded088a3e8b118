"""`freeapi rollups rebuild` makes from the raw ledger the very rollups that were kept
live for it (tests/test_rollups_match_ledger.py), on SQLite, Redis and PostgreSQL: from
nothing (a store upgraded from a release without rollups), again (idempotent), from a
--since day on, and while a gateway keeps writing (nothing counted twice); the CLI does
it on a config's store."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freeapi import rollups as R
from freeapi.config_state import parse_state
from freeapi.rollups_rebuild import DAY, rebuild
from freeapi.store import open_store
from tests.test_rollups_match_ledger import random_entries

ROOT = Path(__file__).resolve().parent.parent


async def snapshot(store, now) -> dict:
    """Every bucket still kept, per (period, dim, start)."""
    out = {}
    for period, (width, dims, keep) in R.PERIODS.items():
        span = [s for s in R.starts(period, now - 4 * DAY - width, now + 1)
                if s + width + keep > now + 5]
        for dim in dims:
            for start, bucket in zip(span, await store.rollup_read(period, dim, span)):
                if bucket:
                    out[(period, dim, start)] = bucket
    return out


def assert_same(got: dict, want: dict):
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


async def test_rebuilt_rollups_equal_the_live_ones(state_backend):
    store = open_store(parse_state(state_backend, None))
    now = time.time()
    entries = random_entries(700, now, 5)
    try:
        for i in range(0, len(entries), 50):
            await store.ledger_append(entries[i:i + 50])
        live = await snapshot(store, now)
        assert live  # the live path made buckets to compare with

        days, rows = await rebuild(store, now=now)  # over live rollups: the same again
        assert rows == len(entries) and days >= 100  # every day still kept, to today
        assert_same(await snapshot(store, now), live)
        await rebuild(store, now=now)  # idempotent
        assert_same(await snapshot(store, now), live)

        # From a day on only: the days before keep what they had.
        await rebuild(store, since=now - 2 * DAY, now=now)
        assert_same(await snapshot(store, now), live)
    finally:
        store.close()


async def test_a_rebuild_from_an_empty_rollup_table_and_since_a_day(state_backend, tmp_path):
    # The ledger written without rollups (rollups never kept), then rebuilt from --since.
    store = open_store(parse_state(state_backend, None))
    now = time.time()
    entries = random_entries(400, now, 6)
    reference = open_store(parse_state({"path": str(tmp_path / "ref.db")}, None))
    try:
        await reference.ledger_append(entries)
        want = await snapshot(reference, now)
        await store.ledger_append(entries)
        # Rebuilt as of a time when every bucket has expired: none is written, so these
        # days' rollups are cleared, as a store from before rollups has none.
        await store.rollup_rebuild(int(now // DAY) * DAY - 10 * DAY,
                                   int(now // DAY) * DAY + DAY, now + 10 ** 9)
        assert await snapshot(store, now) == {}
        since = now - DAY  # yesterday's day onwards: older days stay empty
        await rebuild(store, since=since, now=now)
        first = int(since // DAY) * DAY
        assert_same(await snapshot(store, now),
                    {k: v for k, v in want.items() if k[2] >= first})
    finally:
        store.close()
        reference.close()


async def test_entries_written_while_a_rebuild_runs_are_counted_once(state_backend, tmp_path):
    store = open_store(parse_state(state_backend, None))
    writer = open_store(parse_state(state_backend, None))  # another gateway on the store
    now = time.time()
    entries = random_entries(1200, now, 7)
    for e in entries:
        e["ts"] = now - (now - e["ts"]) / 3  # all within the last day: the busy day
    first, later = entries[:800], entries[800:]
    try:
        await store.ledger_append(first)

        today = int(now // DAY) * DAY
        reaching_today = asyncio.Event()

        def progress(day, _):
            if day == today - DAY:  # the rebuild turns to the busy day now
                reaching_today.set()

        async def keep_writing():  # a batch every 10 ms, as a busy gateway writes them
            await reaching_today.wait()
            for i in range(0, len(later), 10):
                await writer.ledger_append(later[i:i + 10])
                await asyncio.sleep(0.01)
        await asyncio.gather(keep_writing(), rebuild(store, since=now - 2 * DAY, now=now,
                                                     progress=progress))
        reference = open_store(parse_state({"path": str(tmp_path / "ref.db")}, None))
        try:
            await reference.ledger_append(entries)
            assert_same(await snapshot(store, now), await snapshot(reference, now))
        finally:
            reference.close()
    finally:
        store.close()
        writer.close()


def test_the_cli_rebuilds_a_configs_store(tmp_path):
    import sqlite3
    db = tmp_path / "state.db"
    now = time.time()
    entries = random_entries(50, now, 8)
    store = open_store(parse_state({"path": str(db)}, None))
    asyncio.run(store.ledger_append(entries))
    store.close()
    with sqlite3.connect(db) as con:  # as a release before rollups left the file
        con.execute("DELETE FROM rollups")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state: {{path: '{db}'}}\n")
    out = subprocess.run([sys.executable, "-m", "freeapi", "rollups", "rebuild", "--config",
                          str(cfg), "--since", "7d"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "from 50 ledger row(s)" in out.stdout
    with sqlite3.connect(db) as con:
        n = con.execute("SELECT SUM(amount) FROM rollups WHERE period = 'd' AND dim = 'all' "
                        "AND field = ?", (R.SEP + "n",)).fetchone()[0]
    assert n == 50
    bad = subprocess.run([sys.executable, "-m", "freeapi", "rollups", "rebuild", "--config",
                          str(cfg), "--since", "yesterday"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_a_since_in_the_future_is_an_error_not_an_empty_rebuild(tmp_path, capsys):
    from freeapi.rollups_rebuild import main
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state: {{path: '{tmp_path / 'state.db'}'}}\n")
    assert main(["rebuild", "--config", str(cfg), "--since", "2999-01-01"]) == 2
    err = capsys.readouterr().err
    assert "--since" in err and "future" in err
