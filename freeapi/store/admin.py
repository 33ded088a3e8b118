"""Gateway keys, teams and the admin audit log in the state store (freeapi/admin), as
mixins of the two backends.

Records are JSON documents by (kind, id), kind "key" or "team". Every write bumps one
version counter in the same atomic step as the record, its audit entry and the record's
"changed at version" mark, so a gateway learns that anything changed from one cheap read
(freeapi/admin/directory.py polls it) and then reads only the records changed since the
version it has (a full read only at startup).

A write may name the version its checks were made against (`expect`): it then happens
only if no other write came in between, in the same atomic step, else it returns None
and the caller reads again and re-checks. So two admins creating one key name at once
cannot both succeed (freeapi/admin/service.py retries the loser, who then sees the name
taken).

SQLite: tables admin_records (with the version each row last changed at; a deleted record
stays as a row without data), admin_audit, admin_meta (made on first use). Redis:
`{prefix}ad:key` / `{prefix}ad:team` hashes id -> JSON, `{prefix}ad:ver` the version,
`{prefix}ad:changes` a sorted set of `kind:id` scored by the version it last changed at,
`{prefix}ad:audit` a sorted set of `seq:JSON` scored by seq (`{prefix}ad:seq`). The full
read at startup goes by HSCAN pages: one huge reply would stall the event loop.
"""

from __future__ import annotations

import json

from freeapi.store.resp import Script

KINDS = ("key", "team")

_SQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS admin_records (kind TEXT NOT NULL, id TEXT NOT NULL, "
    "data TEXT, version INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS admin_records_version ON admin_records (version)",
    "CREATE TABLE IF NOT EXISTS admin_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "ts REAL NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admin_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def records_of(version: int, changes) -> tuple[int, dict, dict]:
    """(version, {id: key record}, {id: team record}) from admin_changes(0)'s rows (a
    revoked or deleted record is None and left out)."""
    out: dict = {k: {} for k in KINDS}
    for kind, rid, record in changes:
        if record is not None and kind in out:
            out[kind][rid] = record
    return version, out["key"], out["team"]


class SQLiteAdmin:
    """For SQLiteStore (uses its _run and _tx)."""

    _admin_schema = False

    def _admin_tables(self, db):
        # Runs on the store's one thread, so the flag needs no lock.
        if not self._admin_schema:
            self._tx(db, lambda: [db.execute(s) for s in _SQL_SCHEMA])
            self._admin_schema = True

    @staticmethod
    def _admin_ver(db) -> int:
        row = db.execute("SELECT value FROM admin_meta WHERE name = 'version'").fetchone()
        return row[0] if row else 0

    async def admin_version(self) -> int:
        def get(db):
            self._admin_tables(db)
            return self._admin_ver(db)
        return await self._run(get)

    async def admin_load(self) -> tuple[int, dict, dict]:
        """(version, {id: key record}, {id: team record}), read in one transaction."""
        return records_of(*await self.admin_changes(0))

    async def admin_changes(self, since: int) -> tuple[int, list]:
        """(version, [(kind, id, record or None when deleted)]) for the records changed
        after version `since`."""
        def changes(db):
            self._admin_tables(db)

            def tx():
                rows = db.execute("SELECT kind, id, data FROM admin_records WHERE version > ?",
                                  (since,)).fetchall()
                return self._admin_ver(db), [(k, i, None if d is None else json.loads(d))
                                             for k, i, d in rows]
            return self._tx(db, tx)
        return await self._run(changes)

    async def admin_write(self, kind: str, rid: str, record: dict | None,
                          audit: dict, expect: int | None = None) -> int | None:
        """Store (or, None, delete) one record and append `audit`, atomically; returns
        the new version. With `expect`: only if the version is still that (else None,
        nothing written)."""
        data = None if record is None else _dumps(record)
        entry = _dumps(audit)

        def write(db):
            self._admin_tables(db)

            def tx():
                if expect is not None and self._admin_ver(db) != expect:
                    return None  # (BEGIN IMMEDIATE: no other write runs in between)
                db.execute("INSERT INTO admin_meta VALUES ('version', 1) ON CONFLICT (name) "
                           "DO UPDATE SET value = value + 1")
                version = self._admin_ver(db)
                db.execute("INSERT OR REPLACE INTO admin_records VALUES (?, ?, ?, ?)",
                           (kind, rid, data, version))
                db.execute("INSERT INTO admin_audit (ts, data) VALUES (?, ?)",
                           (audit["ts"], entry))
                return version
            return self._tx(db, tx)
        return await self._run(write)

    async def admin_audit(self, before: int | None, limit: int) -> list[dict]:
        """Audit entries newest first, each with its `seq`; only those with seq < before."""
        def page(db):
            self._admin_tables(db)
            rows = db.execute("SELECT seq, data FROM admin_audit WHERE seq < ? ORDER BY seq "
                              "DESC LIMIT ?", (before if before is not None else 1 << 62,
                                               limit)).fetchall()
            return [dict(json.loads(d), seq=s) for s, d in rows]
        return await self._run(page)


_WRITE = Script("""
if ARGV[5] ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= ARGV[5] then
  return -1
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], seq, seq .. ':' .. ARGV[3])
local version = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[5], version, ARGV[4] .. ':' .. ARGV[1])
return version
""")

# The records changed after ARGV[1], with the version, in one atomic read: each as kind,
# id, JSON ('' when deleted). KEYS: ver, changes, the key hash, the team hash.
_CHANGES = Script("""
local out = {redis.call('GET', KEYS[1]) or '0'}
local names = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
for _, name in ipairs(names) do
  local kind, id = string.match(name, '^([^:]+):(.*)$')
  local hash = KEYS[3]
  if kind == 'team' then hash = KEYS[4] end
  out[#out + 1] = kind
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', hash, id) or ''
end
return out
""")
_PAGE = 200


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisAdmin:
    """For RedisStore (uses its client and prefix)."""

    def _ad(self, name: str) -> str:
        return f"{self.prefix}ad:{name}"

    async def admin_version(self) -> int:
        return int(await self.client.execute("GET", self._ad("ver")) or 0)

    async def admin_load(self):
        # The version first, then the records page by page, then whatever changed while
        # paging: the result is the state at the final version.
        since = await self.admin_version()
        out = {}
        for kind in KINDS:
            out[kind], cursor = {}, b"0"
            while True:
                cursor, flat = await self.client.execute("HSCAN", self._ad(kind), cursor,
                                                         "COUNT", _PAGE)
                for i in range(0, len(flat), 2):
                    out[kind][_text(flat[i])] = json.loads(flat[i + 1])
                if cursor in (b"0", 0, "0"):
                    break
        version, changes = await self.admin_changes(since)
        for kind, rid, record in changes:
            if record is None:
                out[kind].pop(rid, None)
            else:
                out[kind][rid] = record
        return version, out["key"], out["team"]

    async def admin_changes(self, since):
        flat = await self.client.run(_CHANGES, [self._ad("ver"), self._ad("changes"),
                                                self._ad("key"), self._ad("team")],
                                     [int(since)])
        changes = []
        for i in range(1, len(flat), 3):
            data = _text(flat[i + 2])
            changes.append((_text(flat[i]), _text(flat[i + 1]),
                            json.loads(data) if data else None))
        return int(flat[0]), changes

    async def admin_write(self, kind, rid, record, audit, expect=None):
        if kind not in KINDS:
            raise ValueError(kind)
        version = int(await self.client.run(
            _WRITE, [self._ad(kind), self._ad("ver"), self._ad("audit"), self._ad("seq"),
                     self._ad("changes")],
            [rid, "" if record is None else _dumps(record), _dumps(audit), kind,
             "" if expect is None else str(int(expect))]))
        return None if version < 0 else version

    async def admin_audit(self, before, limit):
        hi = "+inf" if before is None else f"({int(before)}"
        rows = await self.client.execute("ZREVRANGEBYSCORE", self._ad("audit"), hi, "-inf",
                                         "LIMIT", 0, int(limit))
        out = []
        for raw in rows:
            seq, _, data = _text(raw).partition(":")
            out.append(dict(json.loads(data), seq=int(seq)))
        return out
