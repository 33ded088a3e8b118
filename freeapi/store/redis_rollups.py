"""The Redis store's rollups and paged raw log (freeapi/rollups.py, Store's "rollups and the
paged raw log" section): a mixin of RedisStore, which supplies `client`, `prefix` and
`_append` (the ledger entries and their rollup increments in one script)."""

from __future__ import annotations

import asyncio
import json

from freeapi.rollups import PERIODS, fold
from freeapi.store import PAGE_MAX, StoreError
from freeapi.store.resp import Script

_HGETALLS = Script("""
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGETALL', k) end
return out
""")

_HSUM = Script("""
local sum, order = {}, {}
for _, k in ipairs(KEYS) do
  local h = redis.call('HGETALL', k)
  for j = 1, #h, 2 do
    local f = h[j]
    if sum[f] == nil then sum[f] = 0; order[#order + 1] = f end
    sum[f] = sum[f] + tonumber(h[j + 1])
  end
end
local out = {}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = tostring(sum[f])
end
return out
""")

# The rollup increments of a script's KEYS[k] for k from the loop around it: per key its
# expiry (unix ms) and field count, then its field/amount pairs, read from ARGV[i...]
# (shared by the ledger append, RedisStore's _APPEND, and a rebuild's _REPLACE).
ADD_ROLLUPS = """  local expires, m = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  for j = 1, m do
    redis.call('HINCRBYFLOAT', KEYS[k], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('PEXPIREAT', KEYS[k], expires)
end
"""

# A rebuilt day swapped in if the ledger still holds as many entries in that day as were
# read (ZCOUNT: a Redis script runs alone, so no write comes between the check and the
# swap; entries are only ever added, or pruned from the oldest end). KEYS: the ledger,
# ARGV[4] bucket keys to delete, then the buckets to write as _APPEND writes them. ARGV:
# since, "(until", the count read, the number of keys to delete, then per bucket its
# expiry (unix ms), field count and field/amount pairs.
_REPLACE = Script("""
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[2]) ~= tonumber(ARGV[3]) then return 0 end
local gone = tonumber(ARGV[4])
for k = 2, gone + 1 do redis.call('DEL', KEYS[k]) end
local i = 5
for k = gone + 2, #KEYS do
""" + ADD_ROLLUPS + """return 1
""")
REBUILD_PAGE = 5000  # ledger entries a rebuild holds at once
# Reads of one day before giving up while entries keep arriving in it (the current day
# under steady traffic: a read of it must fit between two ledger batches), with a pause
# between them that doubles up to a second.
REBUILD_TRIES = 12

# Raw entries one GET /admin/requests page may examine on Redis (its log is one sorted set
# by time: filters are applied while reading newest first, so a rare filter over a long
# span returns a short page and a cursor rather than reading everything at once).
_SCAN_MAX = 20000


class RedisRollups:
    def _rollup_key(self, period, dim, start) -> str:
        return f"{self.prefix}r:{period}:{dim}:{start}"

    async def rollup_add(self, entries):
        await self._append(entries, log=False)

    async def rollup_rebuild(self, since, until, now):
        for attempt in range(REBUILD_TRIES):
            if attempt:
                await asyncio.sleep(min(1.0, 0.05 * 2 ** attempt))
            total, rows = await self._read_day(since, until, now)
            gone = [self._rollup_key(period, dim, start)
                    for period, (width, dims, _) in PERIODS.items()
                    for start in range(int(since), int(until), width) for dim in dims]
            keys, args = [f"{self.prefix}ledger", *gone], [repr(float(since)),
                                                          f"({float(until)!r}", rows,
                                                          len(gone)]
            for (period, dim, start), fields in total.items():
                keys.append(self._rollup_key(period, dim, start))
                width, _, keep = PERIODS[period]
                args += [(start + width + keep) * 1000, len(fields)]
                for f, v in fields.items():
                    args += [f, repr(v) if isinstance(v, float) else v]
            if await self.client.run(_REPLACE, keys, args):
                return rows
        raise StoreError(f"entries kept arriving in the day being rebuilt ({REBUILD_TRIES} "
                         "reads of it); run the rebuild again when traffic is lower")

    async def _read_day(self, since, until, now) -> tuple[dict, int]:
        """The day's increments, reading its entries a page at a time in score order (a
        page goes on after the last score read, skipping the entries of that score it
        already has)."""
        total: dict = {}
        rows, lo, skip, hi = 0, repr(float(since)), 0, f"({float(until)!r}"
        while True:
            page = await self.client.execute("ZRANGEBYSCORE", f"{self.prefix}ledger", lo,
                                             hi, "WITHSCORES", "LIMIT", skip,
                                             REBUILD_PAGE)
            entries = []
            for j in range(0, len(page), 2):
                score = repr(float(page[j + 1]))
                skip = skip + 1 if score == lo else 1
                lo = score
                entries.append(json.loads(page[j]))
            fold(total, entries, now)
            rows += len(entries)
            if len(entries) < REBUILD_PAGE:
                return total, rows

    async def rollup_read(self, period, dim, starts):
        if not starts:
            return []
        got = await self.client.run(_HGETALLS, [self._rollup_key(period, dim, s)
                                                for s in starts], [])
        out = []
        for flat in got:
            bucket = {}
            for j in range(0, len(flat), 2):
                f = flat[j].decode() if isinstance(flat[j], bytes) else flat[j]
                bucket[f] = float(flat[j + 1])
            out.append(bucket)
        return out

    async def rollup_sum(self, period, dim, starts):
        if not starts:
            return {}
        flat = await self.client.run(_HSUM, [self._rollup_key(period, dim, s)
                                             for s in starts], [])
        return {(flat[j].decode() if isinstance(flat[j], bytes) else flat[j]):
                float(flat[j + 1]) for j in range(0, len(flat), 2)}

    async def ledger_page(self, *, since=None, until=None, key=None, team=None, model=None,
                          status=None, request_id=None, cursor=None, limit=100):
        """Newest first from the time-ordered set, filtered while read; examines at most
        _SCAN_MAX entries per call (a page may then be short, with a cursor to go on)."""
        limit = max(1, min(int(limit), PAGE_MAX))
        want = {f: v for f, v in (("key_id", key), ("team", team), ("model", model),
                                  ("status", status), ("request_id", request_id))
                if v is not None}
        hi, skip = "+inf" if until is None else f"({float(until)!r}", 0
        if cursor:
            ts, _, n = cursor.partition(":")
            hi, skip = repr(float(ts)), int(n)
        lo = "-inf" if since is None else repr(float(since))
        out, examined = [], 0
        while examined < _SCAN_MAX:
            page = await self.client.execute("ZREVRANGEBYSCORE", f"{self.prefix}ledger", hi,
                                             lo, "WITHSCORES", "LIMIT", skip, 500)
            if not page:
                return out, None
            for j in range(0, len(page), 2):
                score = float(page[j + 1])
                if repr(score) == hi:
                    skip += 1
                else:
                    hi, skip = repr(score), 1
                examined += 1
                e = json.loads(page[j])
                e.pop("_n", None)
                if all(e.get(f) == v for f, v in want.items()):
                    out.append(e)
                    if len(out) == limit:
                        return out, f"{hi}:{skip}"
            if len(page) < 1000:
                return out, None
        return out, f"{hi}:{skip}"
