"""Per-gateway-key limits: allowed models, requests and tokens per minute, token budgets per
UTC day and calendar month. Counters live in the state store, so every gateway process
sharing it enforces one limit.

A request is admitted while its key's token counters are below their limits (the check
adds nothing); its real token count is added once the vendor has reported it. A budget can
therefore be overshot by the requests already in flight when it runs out, never by more.
The request counter (rpm) is added in the same atomic call as the token checks, and only
when they all pass, so a refused request costs no rpm.

A key made at runtime may belong to a team (freeapi/admin): the team's limits are counters
of their own (`t:TEAM_ID`), shared by all its keys and checked in the same atomic call as
the key's, and a model must be in both allowlists.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import logging
import math
import time
from fnmatch import fnmatchcase

from freeapi.errors import APIError
from freeapi.store import Hit, StoreError

log = logging.getLogger("freeapi.limits")

_LABELS = {"rpm": "requests-per-minute", "tpm": "tokens-per-minute",
           "daily_tokens": "daily token", "monthly_tokens": "monthly token"}


def _period_end(kind: str, now: float) -> float:
    t = time.gmtime(now)
    if kind == "daily_tokens":
        return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


class Limits:
    def __init__(self, store, on_reject=None):
        self.store = store
        self._rejected = on_reject or (lambda limit: None)  # (limit name), for metrics
        self._charges: set[asyncio.Task] = set()

    @staticmethod
    def counter_id(caller) -> str:
        # The key itself, hashed: stable when the operator renames or reorders keys, the
        # same in every process, and nothing secret in Redis.
        return "k:" + hashlib.sha256(caller.key.encode()).hexdigest()[:20]

    @staticmethod
    def _matches(patterns, names) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)

    @classmethod
    def _allowed(cls, caller, names) -> bool:
        # A key in a team (freeapi/admin) needs both its own and its team's allowlist.
        team = getattr(caller, "team", None)
        return (caller.models is None or cls._matches(caller.models, names)) and \
            (team is None or team.models is None or cls._matches(team.models, names))

    @classmethod
    def model_allowed(cls, caller, model: str, route) -> bool:
        team = getattr(caller, "team", None)
        if caller.models is None and (team is None or team.models is None):
            return True  # no allowlist anywhere: nothing to match (the common case)
        return cls._allowed(caller, (model, route.upstream_model,
                                     f"{route.provider.name}/{route.upstream_model}"))

    @classmethod
    def target_allowed(cls, caller, route) -> bool:
        """A fallback target, by its own names only: the requested name the caller may
        use says nothing about another provider's model."""
        names = (route.upstream_model, f"{route.provider.name}/{route.upstream_model}")
        if getattr(route, "via", None):  # a `free` target: allowed `free`, allowed each
            names += (route.via,)
        return cls._allowed(caller, names)

    def _holders(self, caller) -> list:
        """(counter id, whose limits, label) for the key, and for its team: a team's
        limits are one counter shared by all its keys."""
        out = [(self.counter_id(caller), caller, f"Gateway key {caller.name!r}")]
        team = getattr(caller, "team", None)
        if team is not None:
            out.append((team.counter_id, team, f"Gateway key {caller.name!r}'s team "
                                               f"{team.name!r}"))
        return out

    def _token_hits(self, caller, amount: int, now: float) -> list[tuple]:
        day = time.strftime("%Y%m%d", time.gmtime(now))
        out = []
        for cid, who, label in self._holders(caller):
            if who.tpm:
                out.append(("tpm", Hit(f"{cid}:tpm", amount, 60, who.tpm), label))
            if who.daily_tokens:
                out.append(("daily_tokens", Hit(f"{cid}:d{day}", amount, 86400,
                                                who.daily_tokens), label))
            if who.monthly_tokens:
                out.append(("monthly_tokens", Hit(f"{cid}:m{day[:6]}", amount, 31 * 86400,
                                                  who.monthly_tokens), label))
        return out

    async def admit(self, caller, model: str, route) -> None:
        """Raise the APIError the caller gets when a limit refuses this request."""
        if not self.model_allowed(caller, model, route):
            team = getattr(caller, "team", None)
            allowed = ", ".join(caller.models if caller.models is not None
                                else team.models) or "none"
            if caller.models is not None and team is not None and team.models is not None:
                allowed += f"; its team {team.name!r}: {', '.join(team.models) or 'none'}"
            self._rejected("models")
            raise APIError(403, f"Gateway key {caller.name!r} may not use the model "
                                f"{model!r} (allowed: {allowed}).", param="model",
                           code="model_not_allowed")
        await self.admit_call(caller)

    async def admit_call(self, caller) -> None:
        """The key's request and token counters alone, for a request that names no model
        (a file upload): it costs one rpm, and is refused while a token budget is spent."""
        now = time.time()
        checks = self._token_hits(caller, 0, now)
        for cid, who, label in self._holders(caller):
            if who.rpm:
                checks.append(("rpm", Hit(f"{cid}:rpm", 1, 60, who.rpm), label))
        if not checks:
            return
        try:
            ok, wait, failed = await self.store.hits([h for _, h, _ in checks])
        except StoreError as e:
            # Fail closed: a key with limits must not spend unmetered while the store is
            # down. Keys without limits never get here.
            log.error("limits: cannot check key %r: %s", caller.name, str(e))
            raise APIError(503, "The gateway cannot check this key's limits right now "
                                "(its state store is unavailable); retry shortly.",
                           code="state_unavailable", retry_after="1") from None
        if ok:
            return
        name, hit, label = checks[failed]
        self._rejected(name)
        if name in ("daily_tokens", "monthly_tokens"):
            wait = min(wait, _period_end(name, now) - now)
        seconds = max(1, math.ceil(wait))
        raise APIError(429, f"{label} is over its {_LABELS[name]} limit "
                            f"({name}: {hit.limit}); retry in {seconds}s.",
                       code=f"{name}_exceeded", retry_after=str(seconds))

    def charge(self, caller, tokens: int) -> None:
        """Add a finished request's real tokens to the key's counters, in the background."""
        hits = [Hit(h.key, tokens, h.window)
                for _, h, _ in self._token_hits(caller, tokens, time.time())]
        if not hits or tokens <= 0:
            return
        task = asyncio.get_running_loop().create_task(self._charge(caller.name, hits))
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def _charge(self, name: str, hits: list[Hit]):
        try:
            await self.store.hits(hits)
        except StoreError as e:
            log.error("limits: %d tokens of key %r were not counted: %s", hits[0].amount,
                      name, str(e))

    async def settle(self):
        """Wait for the charges in flight (tests, shutdown)."""
        if self._charges:
            await asyncio.gather(*self._charges, return_exceptions=True)
