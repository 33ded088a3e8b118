"""The shared backend: one Redis server for several gateway processes or machines.

Everything that decides (counter check-and-add, conversation ownership) is one Lua script,
so it is atomic across every gateway sharing the server, and counters use the server's
clock (TIME), so gateways whose clocks disagree still share one window. Keys are
`PREFIX` + a name; counters and conversations expire by themselves (PEXPIRE), the ledger
is pruned by the gateways (ledger_days).

Layout: `{prefix}c:{name}` hash bucket -> amount; `{prefix}ledger` sorted set of JSON
entries scored by time; `{prefix}co:{id}` a conversation's owner and `{prefix}ct:{id}` the
list of its turns (two namespaces, so no id can name another id's key);
`{prefix}kv:{ns}:{name}` the small expiring JSON records of Store.kv_put (ns `kh`: a vendor
key's health record); `{prefix}kg:{ns}:{group}` a group's index for Store.kv_group, a
sorted set of names scored by when each record expires (server time, ms);
`{prefix}r:{period}:{dim}:{start}` a rollup bucket (freeapi/rollups.py), a hash of
value SEP field -> amount expiring `keep` after its end; `{prefix}b:...` a money tally
(redis_tallies.py); `{prefix}kb:{ns}:{name}` the raw bytes of Store.blob_put (a file's
content), written by SET and APPEND and read by GETRANGE in pieces, so no one reply or
command on the shared connection is bigger than BLOB_PIECE.
"""

from __future__ import annotations

import asyncio
import json
import os

from freeapi.rollups import PERIODS, increments
from freeapi.store import BIG_JSON, BLOB_PIECE, BUCKETS, Store, StoreError
from freeapi.store.admin import RedisAdmin
from freeapi.store.redis_rollups import ADD_ROLLUPS, RedisRollups
from freeapi.store.redis_tallies import RedisTallies
from freeapi.store.resp import RespClient, Script

_HITS = Script(f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local NB = {BUCKETS}
local wait, failed, widths = 0, 0, {{}}
for i, key in ipairs(KEYS) do
  local amount, win, limit = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local w = math.max(1, math.floor(win / NB))
  widths[i] = w
  local first = math.floor(now / w) - NB + 1
  local h = redis.call('HGETALL', key)
  local live, total = {{}}, 0
  for j = 1, #h, 2 do
    local b = tonumber(h[j])
    if b < first then
      redis.call('HDEL', key, h[j])
    else
      local v = tonumber(h[j + 1])
      total = total + v
      live[#live + 1] = {{b, v}}
    end
  end
  if limit >= 0 then
    local need = total - limit + 1
    if amount > 0 then need = total + amount - limit end
    if need > 0 then
      if failed == 0 then failed = i end
      table.sort(live, function(a, c) return a[1] < c[1] end)
      local freed, until_ms = 0, win
      for _, bv in ipairs(live) do
        freed = freed + bv[2]
        if freed >= need then
          until_ms = (bv[1] + NB) * w - now
          break
        end
      end
      if until_ms < 1 then until_ms = 1 end
      if until_ms > wait then wait = until_ms end
    end
  end
end
if failed > 0 then return {{0, wait, failed - 1}} end
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[3*i-2])
  if amount > 0 then
    local w = widths[i]
    local b = math.floor(now / w)
    redis.call('HINCRBY', key, string.format('%d', b), amount)
    redis.call('PEXPIREAT', key, string.format('%d', (b + NB) * w))
  end
end
return {{1, 0, -1}}
""")

_CONV_GET = Script("""
local owner = redis.call('GET', KEYS[1])
if not owner or owner ~= ARGV[1] then return false end
return redis.call('LRANGE', KEYS[2], 0, -1)
""")

_CONV_APPEND = Script("""
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
if not owner then redis.call('DEL', KEYS[2]) end
local ttl, max_turns, max_bytes = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 5, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local n, keep, total = #items, 0, 0
for i = n, 1, -1 do
  local size = string.len(items[i])
  if keep > 0 and (keep >= max_turns or total + size > max_bytes) then break end
  keep, total = keep + 1, total + size
end
if keep < n then redis.call('LTRIM', KEYS[2], n - keep, -1) end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
""")

_CONV_DELETE = Script("""
local owner = redis.call('GET', KEYS[1])
if not owner or owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
""")

# A record and its group's index entry in one step (no racing writer loses an entry); the
# index lives as long as its longest-lived record and drops the entries that expired.
_KV_PUT_GROUP = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
""")

_KV_GROUP = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")

# The ledger entries (ZADD) and their rollup increments in one step: the aggregates never
# disagree with the raw log. ARGV: n, n score/member pairs, then per rollup key (KEYS[2..])
# its expiry (unix ms) and field count and its field/amount pairs.
_APPEND = Script("""
local n = tonumber(ARGV[1])
local i = 2
local at = 0
while at < n do
  local z, c = {}, math.min(500, n - at)
  for j = 1, 2 * c do z[j] = ARGV[i + 2 * at + j - 1] end
  redis.call('ZADD', KEYS[1], unpack(z))
  at = at + c
end
i = i + 2 * n
for k = 2, #KEYS do
""" + ADD_ROLLUPS + """return 1
""")

_PAGE = 5000


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def _loads(raw: bytes):
    # A big record (a stored response) is decoded on a worker thread rather than inline
    # on the event loop.
    if len(raw) < BIG_JSON:
        return json.loads(raw)
    return await asyncio.get_running_loop().run_in_executor(None, json.loads, raw)


class RedisStore(RedisRollups, RedisAdmin, RedisTallies, Store):
    kind = "redis"

    def __init__(self, url: str, prefix: str = "freeapi:", timeout: float = 5.0):
        super().__init__()
        self.client = RespClient(url, timeout)
        self.prefix = prefix

    def describe(self) -> str:
        return f"Redis {self.client.describe()} (keys {self.prefix}*)"

    async def hits(self, hits):
        keys = [f"{self.prefix}c:{h.key}" for h in hits]
        args = []
        for h in hits:
            args += [max(0, int(h.amount)), max(1, int(h.window * 1000)),
                     -1 if h.limit is None else int(h.limit)]
        reply = await self.client.run(_HITS, keys, args)
        return bool(reply[0]), reply[1] / 1000, int(reply[2])

    # -- ledger -------------------------------------------------------------------------

    async def _append(self, entries, log: bool = True):
        args = [len(entries) if log else 0]
        for e in entries if log else ():
            # A random tail keeps two identical entries (same time, same numbers) apart in
            # the set; readers drop it.
            member = dict(e, _n=os.urandom(4).hex())
            args += [float(e["ts"]), _dumps(member)]
        keys = [f"{self.prefix}ledger"]
        for (period, dim, start), fields in increments(entries).items():
            keys.append(self._rollup_key(period, dim, start))
            width, _, keep = PERIODS[period]
            args += [(start + width + keep) * 1000, len(fields)]
            for f, v in fields.items():
                args += [f, repr(v) if isinstance(v, float) else v]
        if entries:
            await self.client.run(_APPEND, keys, args)

    async def ledger(self, since=None, until=None):
        lo = "-inf" if since is None else repr(float(since))
        hi = "+inf" if until is None else f"({float(until)!r}"
        out, offset = [], 0
        while True:
            page = await self.client.execute("ZRANGEBYSCORE", f"{self.prefix}ledger", lo, hi,
                                             "LIMIT", offset, _PAGE)
            for raw in page:
                entry = json.loads(raw)
                entry.pop("_n", None)
                out.append(entry)
            if len(page) < _PAGE:
                return out
            offset += len(page)

    async def prune_ledger(self, before):
        return await self.client.execute("ZREMRANGEBYSCORE", f"{self.prefix}ledger", "-inf",
                                         f"({float(before)!r}")

    # -- conversations ------------------------------------------------------------------

    def _conv_keys(self, cid: str) -> list[str]:
        return [f"{self.prefix}co:{cid}", f"{self.prefix}ct:{cid}"]

    async def conversation_get(self, cid, owner):
        turns = await self.client.run(_CONV_GET, self._conv_keys(cid), [owner])
        return None if turns is None else [json.loads(t) for t in turns]

    async def conversation_append(self, cid, owner, turns, ttl_s, max_turns, max_bytes):
        args = [owner, max(1, int(ttl_s * 1000)), int(max_turns), int(max_bytes)]
        args += [_dumps(t) for t in turns]
        return bool(await self.client.run(_CONV_APPEND, self._conv_keys(cid), args))

    async def conversation_delete(self, cid, owner):
        return bool(await self.client.run(_CONV_DELETE, self._conv_keys(cid), [owner]))

    # -- small expiring records (key health, reasoning memory, responses, files) ---------

    shared = True

    async def kv_put(self, ns, name, value, ttl_s, group=None):
        ttl = max(1, int(ttl_s * 1000))
        if group is None:
            await self.client.execute("SET", f"{self.prefix}kv:{ns}:{name}", _dumps(value),
                                      "PX", ttl)
            return
        await self.client.run(_KV_PUT_GROUP, [f"{self.prefix}kv:{ns}:{name}",
                                              f"{self.prefix}kg:{ns}:{group}"],
                              [_dumps(value), ttl, name])

    async def kv_group(self, ns, group):
        # A deleted record's entry stays in the index until the record would have expired;
        # the MGET below leaves it out.
        names = await self.client.run(_KV_GROUP, [f"{self.prefix}kg:{ns}:{group}"], [])
        if not names:
            return {}
        names = [n.decode() if isinstance(n, bytes) else n for n in names]
        return await self.kv_get(ns, names)

    async def kv_get(self, ns, names):
        if not names:
            return {}
        raws = await self.client.execute("MGET", *(f"{self.prefix}kv:{ns}:{n}" for n in names))
        out = {}
        for n, r in zip(names, raws):
            if r is not None:
                out[n] = await _loads(r)
        return out

    async def kv_delete(self, ns, name):
        return bool(await self.client.execute("DEL", f"{self.prefix}kv:{ns}:{name}"))

    # -- file contents ------------------------------------------------------------------

    async def blob_put(self, ns, name, data, ttl_s):
        key, ttl = f"{self.prefix}kb:{ns}:{name}", max(1, int(ttl_s * 1000))
        view = memoryview(data)
        # One piece per command: other callers' commands get the connection in between.
        await self.client.execute("SET", key, bytes(view[:BLOB_PIECE]), "PX", ttl)
        for at in range(BLOB_PIECE, len(data), BLOB_PIECE):
            await self.client.execute("APPEND", key, bytes(view[at:at + BLOB_PIECE]))

    async def blob_read(self, ns, name, offset, size):
        size = min(size, BLOB_PIECE)
        if size <= 0:
            return b""
        got = await self.client.execute("GETRANGE", f"{self.prefix}kb:{ns}:{name}",
                                        offset, offset + size - 1)
        return got or b""

    async def blob_delete(self, ns, name):
        # UNLINK: the server frees a big value in the background.
        return bool(await self.client.execute("UNLINK", f"{self.prefix}kb:{ns}:{name}"))

    # -- lifecycle ----------------------------------------------------------------------

    async def ping(self):
        reply = await self.client.execute("PING")
        if reply != "PONG":
            raise StoreError(f"{self.client.describe()}: unexpected PING reply {reply!r}")

    async def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests, `--reset`-style tooling)."""
        cursor, n = b"0", 0
        while True:
            cursor, keys = await self.client.execute("SCAN", cursor, "MATCH",
                                                     self.prefix + "*", "COUNT", 1000)
            if keys:
                n += await self.client.execute("DEL", *keys)
            if cursor in (b"0", 0):
                return n

    def close(self):
        self._stop_flusher()
        self.client.close()
