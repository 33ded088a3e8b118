"""The Redis store's money tallies (tallies.py): a mixin of RedisStore, which supplies
`client` and `prefix`. One Lua script checks and adds (INCRBY, PEXPIREAT), so it is one
step for every gateway sharing the server. Layout: `{prefix}{key}` a plain integer (the
keys budgets.py makes start with `b:`)."""

from __future__ import annotations

from freeapi.store.resp import Script

# ARGV: check (1/0), then per key: amount, limit (-1: none), expires at (unix ms, 0: never).
# Values are compared as Lua numbers: exact up to 2^53 nano-units (9 million of a
# currency), far above any budget; INCRBY itself is exact.
_TALLY = Script("""
local check = ARGV[1] == '1'
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = tonumber(redis.call('GET', key) or '0')
end
if check then
  for i = 1, #KEYS do
    local amount, limit = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
    if limit >= 0 and values[i] + amount > limit then
      return {0, i - 1, values}
    end
  end
end
for i, key in ipairs(KEYS) do
  values[i] = redis.call('INCRBY', key, ARGV[3*i-1])
  local expires = ARGV[3*i+1]
  if expires ~= '0' then redis.call('PEXPIREAT', key, expires) end
end
return {1, -1, values}
""")


class RedisTallies:
    async def _tally(self, items, check: bool):
        keys, args = [self.prefix + t.key for t in items], ["1" if check else "0"]
        for t in items:
            args += [int(t.amount), -1 if t.limit is None else int(t.limit),
                     int(t.expires_at_ms or 0)]
        ok, failed, values = await self.client.run(_TALLY, keys, args)
        return bool(ok), int(failed), [int(v) for v in values]

    async def tally_reserve(self, items):
        return await self._tally(list(items), True)

    async def tally_add(self, items):
        return (await self._tally(list(items), False))[2]

    async def tally_read(self, keys):
        if not keys:
            return []
        got = await self.client.execute("MGET", *(self.prefix + k for k in keys))
        return [int(v) if v is not None else 0 for v in got]
