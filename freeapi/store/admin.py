"""Gateway keys, teams and the admin audit log in the state store (freeapi/admin), as
mixins of the two backends.

Records are JSON documents by (kind, id), kind "key" or "team". Every write bumps one
version counter in the same atomic step as the record and its audit entry, so a gateway
learns that anything changed from one cheap read (freeapi/admin/directory.py polls it) and
reloads the records only then.

SQLite: tables admin_records, admin_audit, admin_meta (made on first use). Redis:
`{prefix}ad:key` / `{prefix}ad:team` hashes id -> JSON, `{prefix}ad:ver` the version,
`{prefix}ad:audit` a sorted set of `seq:JSON` scored by seq (`{prefix}ad:seq`).
"""

from __future__ import annotations

import json

from freeapi.store.resp import Script

KINDS = ("key", "team")

_SQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS admin_records (kind TEXT NOT NULL, id TEXT NOT NULL, "
    "data TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS admin_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "ts REAL NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admin_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


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
        def load(db):
            self._admin_tables(db)

            def tx():
                out = {k: {} for k in KINDS}
                for kind, rid, data in db.execute("SELECT kind, id, data FROM admin_records"):
                    if kind in out:
                        out[kind][rid] = json.loads(data)
                return self._admin_ver(db), out["key"], out["team"]
            return self._tx(db, tx)
        return await self._run(load)

    async def admin_write(self, kind: str, rid: str, record: dict | None,
                          audit: dict) -> int:
        """Store (or, None, delete) one record and append `audit`, atomically; returns
        the new version."""
        data = None if record is None else _dumps(record)
        entry = _dumps(audit)

        def write(db):
            self._admin_tables(db)

            def tx():
                if data is None:
                    db.execute("DELETE FROM admin_records WHERE kind = ? AND id = ?",
                               (kind, rid))
                else:
                    db.execute("INSERT OR REPLACE INTO admin_records VALUES (?, ?, ?)",
                               (kind, rid, data))
                db.execute("INSERT INTO admin_audit (ts, data) VALUES (?, ?)",
                           (audit["ts"], entry))
                db.execute("INSERT INTO admin_meta VALUES ('version', 1) ON CONFLICT (name) "
                           "DO UPDATE SET value = value + 1")
                return self._admin_ver(db)
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
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], seq, seq .. ':' .. ARGV[3])
return redis.call('INCR', KEYS[2])
""")

_LOAD = Script("""
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2]),
        redis.call('HGETALL', KEYS[3])}
""")


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisAdmin:
    """For RedisStore (uses its client and prefix)."""

    def _ad(self, name: str) -> str:
        return f"{self.prefix}ad:{name}"

    async def admin_version(self) -> int:
        return int(await self.client.execute("GET", self._ad("ver")) or 0)

    async def admin_load(self):
        ver, keys, teams = await self.client.run(
            _LOAD, [self._ad("ver"), self._ad("key"), self._ad("team")], [])

        def records(flat):
            return {_text(flat[i]): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return int(ver), records(keys), records(teams)

    async def admin_write(self, kind, rid, record, audit):
        if kind not in KINDS:
            raise ValueError(kind)
        return int(await self.client.run(
            _WRITE, [self._ad(kind), self._ad("ver"), self._ad("audit"), self._ad("seq")],
            [rid, "" if record is None else _dumps(record), _dumps(audit)]))

    async def admin_audit(self, before, limit):
        hi = "+inf" if before is None else f"({int(before)}"
        rows = await self.client.execute("ZREVRANGEBYSCORE", self._ad("audit"), hi, "-inf",
                                         "LIMIT", 0, int(limit))
        out = []
        for raw in rows:
            seq, _, data = _text(raw).partition(":")
            out.append(dict(json.loads(data), seq=int(seq)))
        return out
