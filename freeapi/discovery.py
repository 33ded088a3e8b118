"""Model discovery: the providers that list their models (GET /models: local servers,
vendors with `discover`) are asked for them after startup, every discovery.interval
seconds, and when a request names a model nobody serves (at most once per
discovery.on_miss seconds, all callers sharing one round). A provider whose answer fails
keeps the models known so far; a change makes the gateway build a new Catalog."""

from __future__ import annotations

import asyncio
import logging
import time

from freeapi.errors import UpstreamError

log = logging.getLogger("freeapi.discovery")


class Discovery:
    def __init__(self, providers: dict, config, http, changed):
        # config: the `discovery` section; changed(): the gateway rebuilds its catalog
        self.providers, self.config, self.http, self.changed = providers, config, http, changed
        #: monotonic time of the last round a miss started (discovery.on_miss spaces them)
        self.last_miss_round = float("-inf")
        self._round: asyncio.Future | None = None  # the round in flight
        self._failing: set[str] = set()  # providers whose last round failed
        self._soon: asyncio.Task | None = None  # a round a reload asked for (kept referenced)

    def may_rerun(self) -> bool:
        """Whether a miss may ask the providers again now (or join the round in flight)."""
        every = self.config.on_miss
        if not every or not any(p.discover_enabled for p in self.providers.values()):
            return False
        if self._round is not None:
            return True  # join the round in flight
        return time.monotonic() - self.last_miss_round >= every

    async def rerun(self, timeout: float = 5.0) -> None:
        """One discovery round shared by every caller that asks meanwhile."""
        if self._round is None:
            self.last_miss_round = time.monotonic()
            self._round = asyncio.ensure_future(self.run(timeout))
            self._round.add_done_callback(self._round_done)
        await asyncio.shield(self._round)

    def soon(self) -> None:
        """A round now, in the background (a reload added providers that list their
        models). A round already in flight asks the providers it began with, not the
        reload's: this one follows it."""
        try:
            self._soon = asyncio.get_running_loop().create_task(
                self._quiet_round(self._round))
        except RuntimeError:  # no loop (a check outside the server): the next round will
            pass

    async def _quiet_round(self, stale) -> None:
        if stale is not None:
            try:
                await asyncio.shield(stale)
            except Exception:  # noqa: BLE001 - _round_done logged it
                pass
        try:
            await self.rerun()
        except Exception:  # noqa: BLE001 - _round_done logged it
            pass

    def _round_done(self, fut):
        self._round = None
        if not fut.cancelled() and fut.exception() is not None:
            log.error("model discovery failed: %s", fut.exception())

    async def loop(self) -> None:
        """Discovery after startup, then every discovery.interval seconds."""
        while True:
            try:
                await self.rerun(10.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a round must never end the loop
                log.exception("model discovery failed")
            if not self.config.interval:
                return
            await asyncio.sleep(self.config.interval)

    async def run(self, timeout: float = 10.0) -> None:
        """Ask each provider that lists its models (GET /models) for them, then have the
        gateway swap in a Catalog that includes them. Run after the server listens, so a
        slow or dead vendor never delays startup."""
        changed = await asyncio.gather(*(self._ask(p, timeout) for p in
                                         self.providers.values() if p.discover_enabled))
        if any(changed):
            self.changed()

    async def _ask(self, p, timeout: float) -> bool:
        """Whether the provider's list changed. A failure is logged once per streak (the
        round repeats every discovery.interval)."""
        key = p.api_keys[0] if p.api_keys else None
        if key is None and p.key_required:
            return False  # pass-through keys: nothing to ask with until a client calls
        req = p.models_request(key)
        call = self.http.start(req.url)
        try:
            resp = await self.http.send(call, req.method, req.url, req.headers, req.body,
                                        min(p.timeouts.connect, timeout), timeout)
            raw = await resp.read(timeout, 8 << 20, time.monotonic() + timeout)
        except UpstreamError as e:
            self._failed(p, f"failed: {e}")
            return False
        ids = p.parse_models(resp.status, raw)
        if ids is None:
            self._failed(p, f"got HTTP {resp.status}")
            return False
        self._failing.discard(p.name)
        if tuple(ids) == p.discovered:
            return False
        p.set_discovered(ids)
        log.info("%s: discovered %d model(s): %s", p.name, len(ids), ", ".join(ids[:20]) +
                 (" ..." if len(ids) > 20 else ""))
        return True

    def _failed(self, p, what: str):
        level = logging.DEBUG if p.name in self._failing else logging.WARNING
        self._failing.add(p.name)
        log.log(level, "%s: model discovery %s; using the models known so far", p.name, what)
