"""The Redis store's rollups and paged raw log (freeapi/rollups.py, Store's "rollups and the
paged raw log" section): a mixin of RedisStore, which supplies `client`, `prefix` and
`_append` (the ledger entries and their rollup increments in one script)."""

from __future__ import annotations

import json

from freeapi.store import PAGE_MAX
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

# Raw entries one GET /admin/requests page may examine on Redis (its log is one sorted set
# by time: filters are applied while reading newest first, so a rare filter over a long
# span returns a short page and a cursor rather than reading everything at once).
_SCAN_MAX = 20000


class RedisRollups:
    def _rollup_key(self, period, dim, start) -> str:
        return f"{self.prefix}r:{period}:{dim}:{start}"

    async def rollup_add(self, entries):
        await self._append(entries, log=False)

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
