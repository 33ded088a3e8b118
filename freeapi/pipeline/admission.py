"""Admission: a gateway key's limits (freeapi/limits.py) and money budgets
(freeapi/budgets.py) may refuse a request before anything is sent. Only a request they
admit, and that has credentials for some target, gets a ledger entry
(pipeline/accounting.py): refusals write nothing, so nobody can grow the ledger with
requests that were never going to be served."""

from __future__ import annotations

from freeapi.pipeline.exchange import Exchange


class Admission:
    def __init__(self, limits, budgets):
        self.limits, self.budgets = limits, budgets

    async def admit(self, ex: Exchange, model: str, stream: bool, route, body: dict) -> None:
        """Writes `ex.routed` (the metrics count every routed request), then `ex.admitted`
        once the caller's limits let it through and its budgets hold the first target's
        estimated cost (`body`: the chat body, or the operation's); only a key with limits
        or a budget waits, for one store call each."""
        ex.routed = (route.provider.name, model, stream)
        caller = ex.door.caller
        if caller is not None:
            if caller.limited:
                await self.limits.admit(caller, model, route)
            if caller.budgeted:
                await self.budgets.admit(ex, route, body)
        ex.admitted = (model, stream)
