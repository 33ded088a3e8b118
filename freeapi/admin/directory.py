"""The gateway keys made at runtime, as every gateway process sees them: an in-memory index
from the SHA-256 of a secret to the caller it stands for, rebuilt from the state store
whenever the store's admin version changes (polled every POLL_INTERVAL seconds: one small
read; the records are read only after a change). A request's auth check is one hash and
one dict lookup, never a store call; a change made through any gateway or the CLI holds
everywhere within one poll (plus reading the records that changed).

The lookup is by the hash of a 256-bit random secret, so how long it takes says nothing
that helps guess one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from freeapi.admin.records import LIMITS, key_status, secret_hash
from freeapi.store import StoreError

log = logging.getLogger("freeapi.admin")

POLL_INTERVAL = 0.5  # seconds between two reads of the admin version


def identity(key_id: str) -> str:
    """A runtime key's stable identity (StoredKey.key): what its counters, tallies,
    conversations and files are kept under, the same across rotations."""
    return "store-key:" + key_id


class TeamLimits:
    """A team's limits, shared by all its keys (one counter id for the whole team)."""

    def __init__(self, record: dict):
        self.id = record["id"]
        self.name = record["name"]
        self.counter_id = "t:" + record["id"]
        self.models = record.get("models")
        for field in LIMITS:
            setattr(self, field, record.get(field))
        # {daily, monthly, total} of billing.currency, shared by all its keys
        # (freeapi/budgets.py)
        self.budget = record.get("budget")

    @property
    def limited(self) -> bool:
        return self.models is not None or any(getattr(self, f) for f in LIMITS)


class StoredKey:
    """The caller a runtime key authenticates as: what freeapi.limits and the handlers read
    of a config.GatewayKey, plus its team. `key` is a stable identity, not the secret: the
    key's counters, conversations and files stay its own across rotations."""

    role = "user"  # runtime keys never administer (see Auth.is_admin)

    def __init__(self, record: dict, team: TeamLimits | None):
        self.id = record["id"]
        self.name = record["name"]
        self.key = identity(record["id"])
        self.team = team
        own = record.get("models")
        # The model list the handlers print and pre-check; Limits.model_allowed also
        # checks the team's, so a key in a team gets the stricter of both.
        self.models = own if own is not None else (team.models if team else None)
        for field in LIMITS:
            setattr(self, field, record.get(field))
        self.budget = record.get("budget")  # its own money budget (freeapi/budgets.py)
        # Its own or its team's budget: the one attribute a request checks (admission).
        self.budgeted = bool(self.budget) or bool(team is not None and team.budget)
        self.expires = record.get("expires_at")

    @property
    def limited(self) -> bool:
        return (self.models is not None or any(getattr(self, f) for f in LIMITS)
                or (self.team is not None and self.team.limited))


class Directory:
    def __init__(self, store, interval: float = POLL_INTERVAL):
        self.store = store
        self.interval = interval
        self.version = -1
        self.keys: dict[str, dict] = {}  # id -> stored record (for the admin API)
        self.teams: dict[str, dict] = {}
        self._by_hash: dict[str, tuple[StoredKey, float | None]] = {}
        self._limits: dict[str, TeamLimits] = {}
        self._task: asyncio.Task | None = None
        self._failing = False

    # -- the hot path ---------------------------------------------------------------------

    def identify(self, token: str | None) -> StoredKey | None:
        if not token or not self._by_hash:
            return None
        found = self._by_hash.get(secret_hash(token))
        if found is None:
            return None
        caller, until = found
        now = time.time()
        if until is not None and now >= until:  # a rotated secret past its grace
            return None
        if caller.expires is not None and now >= caller.expires:
            return None
        return caller

    # -- keeping up with the store --------------------------------------------------------

    def install(self, version: int, keys: dict, teams: dict) -> None:
        """Swap in a whole new set of records (one assignment: requests see old or new)."""
        if version < self.version:
            return  # an older read that finished after a newer one (see apply)
        self._limits = {tid: TeamLimits(t) for tid, t in teams.items()}
        index = {}
        for record in keys.values():
            self._index(index, record)
        self.keys, self.teams, self._by_hash = keys, teams, index
        self.version = version

    def _index(self, index: dict, record: dict) -> None:
        if key_status(record, 0) == "revoked":
            return
        caller = StoredKey(record, self._limits.get(record.get("team")))
        for h in record.get("hashes", ()):
            index[h["hash"]] = (caller, h.get("until"))

    def apply(self, version: int, changes: list) -> None:
        """Apply the records changed since the version held: only the changed keys (and
        the keys of changed teams) are indexed again, so one change among thousands of
        keys costs little. Copies are swapped in, as install() does."""
        if version < self.version:
            # The poll and an admin write of this process can read concurrently: an older
            # read must not undo a newer one (a revoked key served again).
            return
        keys, teams, index = dict(self.keys), dict(self.teams), dict(self._by_hash)
        limits = dict(self._limits)
        self._limits = limits
        redo = set()
        for kind, rid, record in changes:
            if kind == "team":
                if record is None:
                    teams.pop(rid, None)
                    limits.pop(rid, None)
                else:
                    teams[rid] = record
                    limits[rid] = TeamLimits(record)
                redo |= {k for k, r in keys.items() if r.get("team") == rid}
                continue
            old = keys.get(rid)
            for h in (old or {}).get("hashes", ()):
                index.pop(h["hash"], None)
            if record is None:
                keys.pop(rid, None)
            else:
                keys[rid] = record
                redo.add(rid)
        for rid in redo:
            if rid in keys:
                self._index(index, keys[rid])
        self.keys, self.teams, self._by_hash = keys, teams, index
        self.version = version

    async def refresh(self, force: bool = False) -> bool:
        """Catch up when the store's version moved (or `force`); whether it did. Only the
        records changed since the version held are read (all of them the first time)."""
        if self.version < 0 or force:
            self.install(*await self.store.admin_load())
            return True
        if await self.store.admin_version() == self.version:
            return False
        self.apply(*await self.store.admin_changes(self.version))
        return True

    async def _loop(self):
        while True:
            try:
                changed = await self.refresh()
                if self._failing:
                    log.info("admin records: the state store answers again")
                    self._failing = False
                elif changed:
                    log.debug("admin records: reloaded (version %d)", self.version)
            except asyncio.CancelledError:
                raise
            except (StoreError, ValueError) as e:
                if not self._failing:
                    log.warning("admin records: cannot read the state store (%s); keeping "
                                "the keys and teams read last", str(e))
                self._failing = True
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            try:
                self._task = asyncio.get_running_loop().create_task(self._loop())
            except RuntimeError:  # no loop running (a CLI): nothing to keep up with
                pass

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class Auth:
    """The gateway's auth: config.yaml `auth.keys` (freeapi.keys.GatewayAuth) first, then
    the runtime keys. Runtime keys count once gateway auth is on (at least one key in
    auth.keys: the admin's). `replace_config` swaps the config part on a reload."""

    def __init__(self, config_auth, directory: Directory):
        self.config_auth = config_auth
        self.directory = directory

    def replace_config(self, config_auth) -> None:
        self.config_auth = config_auth

    @property
    def enabled(self) -> bool:
        return self.config_auth.enabled

    @property
    def has_roles(self) -> bool:
        return self.config_auth.has_roles

    def identify(self, token: str | None):
        found = self.config_auth.identify(token)
        return found if found is not None else self.directory.identify(token)

    def is_admin(self, caller) -> bool:
        """The rule of GET /v1/keys (with roles in use, role admin), for config keys only:
        a key made at runtime never makes more keys."""
        if caller is None or isinstance(caller, StoredKey):
            return False
        return not self.has_roles or caller.role == "admin"
