"""Admission: a gateway key's limits (freeapi/limits.py) may refuse a request before
anything is sent. Only a request they admit, and that has credentials for some target,
gets a ledger entry (pipeline/accounting.py): refusals write nothing, so nobody can grow
the ledger with requests that were never going to be served."""

from __future__ import annotations

from freeapi.pipeline.exchange import Exchange


class Admission:
    def __init__(self, limits):
        self.limits = limits

    async def admit(self, ex: Exchange, model: str, stream: bool, route) -> None:
        """Writes `ex.routed` (the metrics count every routed request), then `ex.admitted`
        once the caller's limits let it through (only a key with limits waits, for one
        store call)."""
        ex.routed = (route.provider.name, model, stream)
        caller = ex.door.caller
        if caller is not None and caller.limited:
            await self.limits.admit(caller, model, route)
        ex.admitted = (model, stream)
