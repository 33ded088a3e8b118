"""What the admin API (freeapi/handlers/admin.py) and `freeapi keys|teams` do: make, change,
revoke and rotate gateway keys; make, change and delete teams; every change stored with its
audit entry (who, what, when, before/after without hashes or secrets) in one step.

Records are read afresh from the store before each operation (Directory.refresh reads only
the version when nothing changed), so two gateways and the CLI work on the same data.
Each change is written only if no other came in since that read (the store compares the
admin version in the same atomic step); otherwise the operation starts over from a new
read. So its checks hold when it is written: two admins creating one key name at once
cannot both succeed, and a rotation cannot undo a revocation made meanwhile.
"""

from __future__ import annotations

import functools
import time


from freeapi.admin import records as R
from freeapi.errors import APIError

MAX_PAGE = 500
# Times an operation overtaken by other writes starts over before giving up (a 503).
ATTEMPTS = 10


def _not_found(kind: str, rid: str) -> APIError:
    return APIError(404, f"No {kind} {rid[:100]!r}.", code=f"{kind}_not_found")


class _Overtaken(Exception):
    """Another write came in between an operation's read and its write."""


def _serialized(op):
    """Run the write operation `op` again from a fresh read while other writes overtake
    it (see the module's docstring)."""
    @functools.wraps(op)
    async def run(self, *args, **kw):
        for _ in range(ATTEMPTS):
            try:
                return await op(self, *args, **kw)
            except _Overtaken:
                continue
        raise APIError(503, "The admin records are being changed by others right now; "
                            "retry.", code="admin_busy", retry_after="1")
    return run


class Admin:
    def __init__(self, store, directory, config_keys):
        self.store = store
        self.directory = directory
        self._config_keys = config_keys  # () -> the config's GatewayKeys (they reload)

    # -- reading --------------------------------------------------------------------------

    async def _fresh(self):
        await self.directory.refresh()
        return self.directory.keys, self.directory.teams

    async def _snapshot(self):
        """(keys, teams, the version they are of) for a write's checks: taken together,
        with no await in between, so a concurrent refresh cannot mix two versions."""
        await self.directory.refresh()
        d = self.directory
        return d.keys, d.teams, d.version

    async def list_keys(self) -> list[dict]:
        keys, teams = await self._fresh()
        out = [R.config_key_view(k) for k in self._config_keys()]
        out += [R.key_view(k, teams) for k in sorted(keys.values(),
                                                      key=lambda k: k["created_at"])]
        return out

    async def get_key(self, rid: str) -> dict:
        if rid.startswith("config:"):
            for k in self._config_keys():
                if f"config:{k.name}" == rid:
                    return R.config_key_view(k)
            raise _not_found("key", rid)
        keys, teams = await self._fresh()
        return R.key_view(self._key(keys, rid), teams)

    async def list_teams(self) -> list[dict]:
        _, teams = await self._fresh()
        return [R.team_view(t) for t in sorted(teams.values(), key=lambda t: t["created_at"])]

    async def get_team(self, ref: str) -> dict:
        _, teams = await self._fresh()
        return R.team_view(teams[self._team_id(teams, ref, None)])

    async def audit(self, before: int | None, limit: int) -> list[dict]:
        rows = await self.store.admin_audit(before, max(1, min(limit, MAX_PAGE)))
        for row in rows:
            row["ts"] = R.format_time(row["ts"])
        return rows

    @staticmethod
    def _key(keys: dict, rid: str) -> dict:
        if rid.startswith("config:"):
            raise APIError(409, f"The key {rid[:100]!r} comes from config.yaml (auth.keys) "
                                "and is read-only here; change it in the file and reload.",
                           code="read_only")
        if rid not in keys:
            raise _not_found("key", rid)
        return keys[rid]

    @staticmethod
    def _team_id(teams: dict, ref: str, field: str | None) -> str:
        """A team by id or by name; unknown: 400 naming `field`, or 404 without one."""
        if ref in teams:
            return ref
        for tid, team in teams.items():
            if team["name"] == ref:
                return tid
        if field is None:
            raise _not_found("team", ref)
        raise R.FieldError(field, f"names no team ({ref[:100]!r}); create it first "
                                  "(POST /admin/teams, `freeapi teams create`)",
                           code="unknown_team")

    def _check_name(self, keys: dict, name: str, rid: str | None):
        taken = any(k.name == name for k in self._config_keys()) or any(
            k["name"] == name and k["id"] != rid and R.key_status(k, 0) != "revoked"
            for k in keys.values())
        if taken:  # the ledger and `freeapi usage` tell keys apart by name
            raise APIError(409, f"A gateway key named {name[:100]!r} exists already.",
                           param="name", code="name_taken")

    async def _write(self, kind, rid, before, after, action, actor, read_at: int):
        audit = {"ts": time.time(), "actor": actor, "action": action, "kind": kind,
                 "target": rid, "before": R.audit_safe(before), "after": R.audit_safe(after)}
        if await self.store.admin_write(kind, rid, after, audit, expect=read_at) is None:
            raise _Overtaken
        await self.directory.refresh()

    # -- keys -----------------------------------------------------------------------------

    @_serialized
    async def create_key(self, body, actor: str) -> tuple[dict, str]:
        fields = R.validate(body, "key", partial=False)
        keys, teams, read_at = await self._snapshot()
        self._check_name(keys, fields["name"], None)
        if fields.get("team") is not None:
            fields["team"] = self._team_id(teams, fields["team"], "team")
        secret, now = R.new_secret(), time.time()
        record = dict(R.blank("key"), **fields, id=R.new_id("key"), hint=R.hint(secret),
                      hashes=[{"hash": R.secret_hash(secret), "until": None}],
                      created_at=now, updated_at=now, revoked_at=None)
        await self._write("key", record["id"], None, record, "key.create", actor, read_at)
        return R.key_view(record, teams), secret

    @_serialized
    async def update_key(self, rid: str, body, actor: str) -> dict:
        fields = R.validate(body, "key", partial=True)
        keys, teams, read_at = await self._snapshot()
        before = self._key(keys, rid)
        if R.key_status(before, 0) == "revoked":
            raise APIError(409, f"The key {rid!r} is revoked.", code="key_revoked")
        if "name" in fields:
            self._check_name(keys, fields["name"], rid)
        if fields.get("team") is not None:
            fields["team"] = self._team_id(teams, fields["team"], "team")
        after = dict(before, **fields, updated_at=time.time())
        await self._write("key", rid, before, after, "key.update", actor, read_at)
        return R.key_view(after, teams)

    @_serialized
    async def revoke_key(self, rid: str, actor: str) -> dict:
        keys, teams, read_at = await self._snapshot()
        before = self._key(keys, rid)
        if R.key_status(before, 0) == "revoked":
            return R.key_view(before, teams)
        now = time.time()
        after = dict(before, hashes=[], revoked_at=now, updated_at=now)
        await self._write("key", rid, before, after, "key.revoke", actor, read_at)
        return R.key_view(after, teams)

    @_serialized
    async def rotate_key(self, rid: str, body, actor: str) -> tuple[dict, str]:
        grace = R.grace_seconds(body)
        keys, teams, read_at = await self._snapshot()
        before = self._key(keys, rid)
        if R.key_status(before, 0) == "revoked":
            raise APIError(409, f"The key {rid!r} is revoked.", code="key_revoked")
        secret, now = R.new_secret(), time.time()
        hashes = [{"hash": R.secret_hash(secret), "until": None}]
        if grace > 0:  # the old secrets keep working until now + grace, not longer
            for h in before.get("hashes", ()):
                until = now + grace if h.get("until") is None else min(h["until"], now + grace)
                if until > now:
                    hashes.append({"hash": h["hash"], "until": until})
        after = dict(before, hashes=hashes, hint=R.hint(secret), updated_at=now)
        await self._write("key", rid, before, after, "key.rotate", actor, read_at)
        view = R.key_view(after, teams)
        view["previous_valid_until"] = R.format_time(now + grace) if grace > 0 else None
        return view, secret

    # -- teams ----------------------------------------------------------------------------

    @_serialized
    async def create_team(self, body, actor: str) -> dict:
        fields = R.validate(body, "team", partial=False)
        _, teams, read_at = await self._snapshot()
        self._check_team_name(teams, fields["name"], None)
        now = time.time()
        record = dict(R.blank("team"), **fields, id=R.new_id("team"), created_at=now,
                      updated_at=now)
        await self._write("team", record["id"], None, record, "team.create", actor, read_at)
        return R.team_view(record)

    @_serialized
    async def update_team(self, ref: str, body, actor: str) -> dict:
        fields = R.validate(body, "team", partial=True)
        _, teams, read_at = await self._snapshot()
        tid = self._team_id(teams, ref, None)
        if "name" in fields:
            self._check_team_name(teams, fields["name"], tid)
        before = teams[tid]
        after = dict(before, **fields, updated_at=time.time())
        await self._write("team", tid, before, after, "team.update", actor, read_at)
        return R.team_view(after)

    @_serialized
    async def delete_team(self, ref: str, actor: str) -> dict:
        keys, teams, read_at = await self._snapshot()
        tid = self._team_id(teams, ref, None)
        members = [k["name"] for k in keys.values()
                   if k.get("team") == tid and R.key_status(k, 0) != "revoked"]
        if members:
            raise APIError(409, f"The team {teams[tid]['name']!r} still has keys ("
                                f"{', '.join(members[:10])}); move or revoke them first.",
                           code="team_in_use")
        await self._write("team", tid, teams[tid], None, "team.delete", actor, read_at)
        return dict(R.team_view(teams[tid]), deleted=True)

    @staticmethod
    def _check_team_name(teams: dict, name: str, tid: str | None):
        if any(t["name"] == name and t["id"] != tid for t in teams.values()):
            raise APIError(409, f"A team named {name[:100]!r} exists already.",
                           param="name", code="name_taken")
