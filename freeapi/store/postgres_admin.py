"""Gateway keys, teams and the admin audit log on PostgreSQL (the mixin of PostgresStore;
the same contract as freeapi/store/admin.py). The version counter is one row of
admin_meta, bumped in the same transaction as the record and its audit entry: its row
lock orders concurrent writers from every gateway."""

from __future__ import annotations

import json

from freeapi.store.admin import KINDS, records_of


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class _Raced(Exception):
    """A write's `expect`ed version was overtaken: its transaction is rolled back."""


_VERSION = "SELECT COALESCE((SELECT value FROM admin_meta WHERE name = 'version'), 0)"


class PostgresAdmin:
    """For PostgresStore (uses its _run)."""

    async def admin_version(self) -> int:
        return int(await self._run(lambda con: con.fetchval(_VERSION)))

    async def admin_load(self):
        return records_of(*await self.admin_changes(0))

    async def admin_changes(self, since):
        async def read(con):
            # One snapshot: the version and the rows agree.
            async with con.transaction(isolation="repeatable_read", readonly=True):
                version = await con.fetchval(_VERSION)
                rows = await con.fetch("SELECT kind, id, data FROM admin_records WHERE "
                                       "version > $1", int(since))
            return int(version), [(k, i, None if d is None else json.loads(d))
                                  for k, i, d in rows]
        return await self._run(read)

    async def admin_write(self, kind, rid, record, audit, expect=None):
        if kind not in KINDS:
            raise ValueError(kind)
        data = None if record is None else _dumps(record)

        async def write(con):
            async with con.transaction():
                # The upsert takes the version row's lock: a concurrent write waits here
                # and then sees the version this one made.
                version = await con.fetchval(
                    "INSERT INTO admin_meta VALUES ('version', 1) ON CONFLICT (name) DO "
                    "UPDATE SET value = admin_meta.value + 1 RETURNING value")
                if expect is not None and version != expect + 1:
                    raise _Raced  # rolls the bump back
                await con.execute("INSERT INTO admin_records VALUES ($1, $2, $3, $4) ON "
                                  "CONFLICT (kind, id) DO UPDATE SET data = excluded.data, "
                                  "version = excluded.version", kind, rid, data, version)
                await con.execute("INSERT INTO admin_audit (ts, data) VALUES ($1, $2)",
                                  float(audit["ts"]), _dumps(audit))
                return int(version)
        # Not retried on a stale connection: the write may have happened.
        try:
            return await self._run(write, retry=False)
        except _Raced:
            return None

    async def admin_audit(self, before, limit):
        rows = await self._run(lambda con: con.fetch(
            "SELECT seq, data FROM admin_audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            before if before is not None else 1 << 62, int(limit)))
        return [dict(json.loads(d), seq=s) for s, d in rows]
