"""The `free` model: the best model this gateway can call at no cost, in an order the
config can change, and the next one when it is rate-limited, its free quota is used up or
its vendor is down.

Names: `free` (chat), `free-vision` (chat models that take images), `free-embedding`,
`free-image`, each only where such free models exist; `-fold` / `-silent` on the chat
names. `PROVIDER/free` (and its variants) keeps to one vendor's free models: the form for
callers who pass their own vendor key (a plain `free` never sends a caller's key to a
vendor it may not be for, so it uses only the gateway's own keys and keyless servers).

Resolving a name gives the first candidate that can serve now, carrying the rest as its
failover chain (Route.chain): the pipeline's failover (freeapi/pipeline/failover.py) moves
along it before the first byte, as along any `fallbacks:` chain. A refusal that says a
free quota is used up (Provider.free_refusals) is remembered per (provider, model, vendor
key) in the state store, shared by every gateway on it, until the vendor's reset
(freeapi/free_tier.py), so no request is spent on it meanwhile. A paid model serves only
as `free.paid_fallback`, only when the operator set one, and only a caller with a money
budget (its key's or its team's: freeapi/budgets.py), within that budget.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from datetime import datetime, timezone

from freeapi.errors import APIError
from freeapi.free_choice import Candidate, Chosen, choose, kinds as _kinds
from freeapi.free_tier import reset_at
from freeapi.healthsync import key_hash
from freeapi.keypool import COOLDOWN, retry_after_seconds
from freeapi.routing import DISPLAY_SUFFIXES, Route
from freeapi.store import StoreError

log = logging.getLogger("freeapi.free")

NAME = "free"
KINDS = {"": "chat", "-vision": "vision", "-embedding": "embedding", "-image": "image"}
_NS = "fq"  # the state store's namespace of used-up free quotas


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class QuotaMemory:
    """Used-up free quotas: in this process at once, and in the state store (written in
    the background; read at most once per `interval` seconds for a set of names, as key
    health is: freeapi/healthsync.py) so every gateway on it knows within that time."""

    def __init__(self, store, interval: float = 1.0):
        self.store, self.interval = store, interval
        self._local: dict[str, tuple[float, str]] = {}  # name -> (until, reason)
        self._read: dict[tuple, tuple[float, dict]] = {}  # names -> (read at, records)

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # server-side keys only: a bounded, fixed set
    def name(provider: str, model: str, key) -> str:
        return f"{provider}:{model}:{key_hash(key) if key else '-'}"

    def mark(self, name: str, until: float, reason: str) -> None:
        self._local[name] = (until, reason)
        ttl = max(1.0, until - time.time())
        self.store.spawn(self.store.kv_put(_NS, name, {"until": until, "reason": reason}, ttl),
                         "free: remembering a used-up quota failed")

    async def spent(self, names: list[str]) -> dict[str, tuple[float, str]]:
        """{name: (until, reason)} for the quotas among `names` known to be used up now."""
        now = time.time()
        out = {n: v for n, v in ((n, self._local.get(n)) for n in names)
               if v is not None and v[0] > now}
        if not names:
            return out
        asked = tuple(names)
        read = self._read.get(asked)
        if read is not None and time.monotonic() - read[0] < self.interval:
            records = read[1]
        else:
            try:
                records = await self.store.kv_get(_NS, names)
            except StoreError as e:  # this process's own memory still holds
                log.warning("free: cannot read used-up quotas: %s", str(e))
                return out
            if len(self._read) >= 64:  # one entry per free name and caller scope
                self._read.clear()
            self._read[asked] = (time.monotonic(), records)
        for name, rec in records.items():
            try:
                until, reason = float(rec["until"]), str(rec.get("reason") or "")
            except (KeyError, TypeError, ValueError):
                continue  # a record this version cannot read
            if until > now and until > out.get(name, (0.0, ""))[0]:
                out[name] = (until, reason)
        return out


class FreeRouter:
    def __init__(self, gateway, chosen: Chosen | None = None,
                 memory: QuotaMemory | None = None):
        """`chosen`: the candidates as `choose` made them (a reload builds them before it
        swaps anything in); `memory`: the used-up quotas known so far (kept by a reload)."""
        self.gw = gateway
        self.config = gateway.config.free
        self.memory = memory or QuotaMemory(gateway.store, gateway.config.state.sync_interval)
        if chosen is None:
            chosen = choose(self.config, gateway.providers, gateway.catalog)
        self.candidates, self.paid = chosen.candidates, chosen.paid
        self._ids = {c.id for c in self.candidates}

    # -- names -------------------------------------------------------------------------

    def parse(self, model: str):
        """(kind, display, provider or None) when `model` is one of the free names."""
        if not self.candidates or model in self.gw.config.models:
            return None  # a `models:` entry of that name wins
        scope, sep, rest = model.partition("/")
        if sep:
            if scope not in self.gw.providers:
                return None
            model = rest
        else:
            scope = None
        display = None
        for suffix, mode in DISPLAY_SUFFIXES.items():
            if model.endswith(suffix):
                model, display = model[: -len(suffix)], mode
                break
        if not model.startswith(NAME):
            return None
        kind = KINDS.get(model[len(NAME):])
        if kind is None or (display and kind not in ("chat", "vision")):
            return None
        return kind, display, scope

    def names(self) -> list[str]:
        """The free names this gateway offers (those with candidates)."""
        out = []
        for suffix, kind in KINDS.items():
            found = self._of(kind, None)
            if not found:
                continue
            out.append(NAME + suffix)
            if kind in ("chat", "vision") and any(
                    c.route.provider.is_reasoning(c.route.upstream_model) for c in found):
                out += [NAME + suffix + d for d in DISPLAY_SUFFIXES]
        return out

    def _of(self, kind: str, scope: str | None, callable_only: bool = True) -> list[Candidate]:
        out = []
        for c in self.candidates:
            p = c.route.provider
            if kind not in c.kinds or (scope is not None and p.name != scope):
                continue
            # A plain `free` uses the gateway's keys or a keyless server, never a caller's
            # key (it cannot tell which vendor that key is for).
            if callable_only and scope is None and not (p.api_keys or not p.key_required):
                continue
            out.append(c)
        return out

    # -- routing -------------------------------------------------------------------------

    def static_route(self, model: str) -> Route:
        """The first candidate, whatever its state (for lookups that send nothing)."""
        kind, display, scope = self.parse(model)
        found = self._of(kind, scope)
        if not found:
            raise self._none(model, kind, scope)
        return self._target(found[0], model, display)

    def _target(self, c: Candidate, model: str, display, skip=frozenset()) -> Route:
        r = c.route
        return Route(r.provider, r.upstream_model, display, r.defaults, via=model,
                     shown_as=r.upstream_model, skip_keys=frozenset(skip))

    async def route(self, model: str) -> Route:
        """The first candidate that can serve now, with the others (and the paid
        fallback, if any) as its chain; the 429 naming the earliest reset when none can."""
        kind, display, scope = self.parse(model)
        found = self._of(kind, scope)
        if not found:
            raise self._none(model, kind, scope)
        states = await self.states(found)
        ready = [self._target(c, model, display, st["skip"])
                 for c, st in zip(found, states) if st["available"]]
        if self.paid is not None and kind in _kinds(self.paid):
            ready.append(dataclasses.replace(self.paid, display=display, via=model,
                                             shown_as=self.paid.upstream_model, paid=True))
        if not ready:
            raise self._exhausted(model, found, states)
        return dataclasses.replace(ready[0], chain=tuple(ready[1:]))

    async def states(self, found: list[Candidate]) -> list[dict]:
        """Whether each candidate can serve now: a key whose quota is not used up and
        whose health lets it take requests (a rate limit cools it down; a host down)."""
        plan = []
        for c in found:
            p = c.route.provider
            keys = list(p.api_keys) or ([None] if not p.key_required else [])
            plan.append((c, keys, {k: QuotaMemory.name(p.name, c.route.upstream_model, k)
                                   for k in keys}))
        spent = await self.memory.spent([n for _, _, names in plan for n in names.values()])
        now, mono = time.time(), time.monotonic()
        out = []
        for c, keys, names in plan:
            p = c.route.provider
            if not keys:  # the caller's own key (PROVIDER/free): nothing known here
                out.append({"available": True, "skip": (), "reason": None, "until": None})
                continue
            used = {k: spent[names[k]] for k in keys if names[k] in spent}
            health = self.gw.health
            usable = [k for k in keys if k not in used
                      and health.get(p.name, k).usable(mono)]
            st = {"available": bool(usable), "skip": tuple(used), "reason": None,
                  "until": None}
            if not usable:
                cooling = [health.get(p.name, k).until - mono for k in keys if k not in used
                           and health.get(p.name, k).state == COOLDOWN]
                if used and len(used) == len(keys):
                    until, reason = min(used.values())
                    st.update(reason=f"free quota used up ({reason})", until=until)
                elif cooling:
                    st.update(reason="rate-limited or down: cooling down",
                              until=now + max(0.0, min(cooling)))
                else:
                    st.update(reason="no usable key (invalid or out of balance)")
            out.append(st)
        return out

    def _none(self, model: str, kind: str, scope: str | None) -> APIError:
        where = f"{scope}'s" if scope else "the gateway's"
        if scope is None and self._of(kind, None, callable_only=False):
            hint = (" The free models need the gateway's own vendor keys "
                    "(providers.NAME.api_keys); with your own vendor key, ask for "
                    "PROVIDER/" + model + " (e.g. glm/" + model + ").")
        else:
            hint = " The operator lists them under `free:` (docs: the free model)."
        return APIError(404, f"The model {model!r}: none of {where} free models is of "
                             f"that kind or callable here.{hint}", param="model",
                        code="model_not_found")

    def _exhausted(self, model: str, found: list[Candidate], states: list[dict]) -> APIError:
        now = time.time()
        parts = [f"{c.id}: {st['reason']}" + (f" until {_iso(st['until'])}"
                                             if st["until"] else "")
                 for c, st in zip(found, states)]
        ends = [st["until"] for st in states if st["until"]]
        earliest = min(ends) if ends else None
        quota = any((st["reason"] or "").startswith("free quota") for st in states)
        text = (f"The model {model!r}: no free model can serve now ({'; '.join(parts)})."
                + (f" The earliest reset is at {_iso(earliest)}." if earliest else "")
                + " No paid model is used unless the operator sets free.paid_fallback, "
                  "and then only for a caller with a money budget.")
        retry = str(max(1, math.ceil(earliest - now))) if earliest else None
        if quota or earliest:
            return APIError(429, text, type="insufficient_quota" if quota else None,
                            code="free_quota_exhausted" if quota else "free_rate_limited",
                            retry_after=retry)
        return APIError(503, text, code="free_unavailable")

    # -- what failover saw ---------------------------------------------------------------

    async def unserved(self, model: str, last: APIError | None,
                       paid: bool = True) -> APIError | None:
        """The error for a `free` request no target served: the 429 naming the earliest
        reset when every free model is now known to be out (this request found out),
        else the last vendor's own error. `paid`: whether the paid fallback was among
        this request's targets (a caller with a money budget that can count its price):
        then that fallback's error stands."""
        parsed = self.parse(model)
        if parsed is None or (self.paid is not None and paid and last is not None):
            return last
        found = self._of(parsed[0], parsed[2])
        states = await self.states(found)
        if not found or any(st["available"] for st in states):
            return last
        return self._exhausted(model, found, states)

    def observe(self, route: Route, key, err: APIError) -> None:
        """A vendor refusal of one attempt: a used-up free quota of a candidate is
        remembered until it comes back (the gateway's own keys and keyless servers only;
        callers' keys are theirs, and anyone can send any number of them)."""
        p = route.provider
        rule = p.free_refusals.get(err.code or "")
        if rule is None or f"{p.name}/{route.upstream_model}" not in self._ids:
            return
        if key is not None and key not in p.api_keys:
            return
        now = time.time()
        until = reset_at(rule, now, retry_after_seconds(err.retry_after),
                         self.config.quota_recheck)
        self.memory.mark(QuotaMemory.name(p.name, route.upstream_model, key), until,
                         f"{err.code}, {rule}")
        log.info("free: %s/%s used up its free quota (%s); skipped until %s", p.name,
                 route.upstream_model, err.code, _iso(until))

    # -- GET /v1/models ------------------------------------------------------------------

    async def listing(self, created: int, allowed=None) -> list[dict]:
        """The free names as model objects, each with the models behind it in order and
        whether each can serve now (`allowed(name)`: the caller may use that name)."""
        out = []
        for name in self.names():
            if allowed is not None and not allowed(name, self.static_route(name)):
                continue
            kind, display, _ = self.parse(name)
            found = self._of(kind, None)
            states = await self.states(found)
            models = []
            for c, st in zip(found, states):
                offer = c.offer
                models.append({
                    "id": c.id, "available": st["available"], "reason": st["reason"],
                    "until": _iso(st["until"]) if st["until"] else None,
                    "quota": offer.quota if offer else "operator",
                    "source": offer.source if offer else "config free:",
                    "read": offer.read if offer else None})
            paid = self.paid
            out.append({"id": name, "object": "model", "created": created,
                        "owned_by": "freeapi",
                        "capabilities": ["embeddings"] if kind == "embedding" else
                        ["images"] if kind == "image" else
                        ["chat", "vision"] if kind == "vision" else ["chat"],
                        "free": {"models": models, "paid_fallback":
                                 f"{paid.provider.name}/{paid.upstream_model}"
                                 if paid is not None and kind in _kinds(paid) else None}})
        return out
