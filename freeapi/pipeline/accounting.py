"""Accounting: one usage ledger entry after a request has ended (whatever way it ended),
the metrics, the tokens charged to a gateway key's limits, and its money budgets' reservation
settled to the entry's cost, or released when there is no entry (freeapi/budgets.py).

The ledger entry is queued on the store and written in the background (see
Store.record), so the ledger adds no wait to any request.
"""

from __future__ import annotations

import json

from freeapi.ledger import StreamSizes, entry, estimate_usage, tokens_spent, usage_from_body
from freeapi.pipeline.exchange import Exchange

CLIENT_GONE = 499  # nginx's status for "the client closed the connection first"


def stream_sizes(ex: Exchange) -> StreamSizes:
    """The relayed stream's sizes, for a usage estimate should no usage come."""
    if ex.sizes is None:
        ex.sizes = StreamSizes()
    return ex.sizes


def estimate(ex: Exchange, sizes: StreamSizes) -> dict:
    messages = (ex.sent_body or {}).get("messages")
    try:
        chars = len(json.dumps(messages, ensure_ascii=False)) if messages else 0
    except (TypeError, ValueError, RecursionError):
        chars = 0
    return estimate_usage(chars, sizes)


class Accounting:
    """Reads the exchange the other steps filled: `admitted` and `credentialed` (only
    then is there a ledger entry), `served`, the stream's `relay` or a non-stream
    `answer`/`usage`, `error`; writes `accounted`, and settles `budget`."""

    def __init__(self, metrics, store, limits, pricing, budgets):
        self.metrics, self.store, self.limits, self.budgets = metrics, store, limits, budgets
        # () -> freeapi.pricing.Pricing: the prices as the config was last (re)loaded.
        self.pricing = pricing

    def account(self, ex: Exchange, gone: bool = False) -> None:
        if ex.accounted or ex.admitted is None or not ex.credentialed:
            if not ex.accounted and ex.routed is not None:
                ex.accounted = True
                self._count_unrecorded(ex, ex.routed, gone)
            if ex.budget is not None:  # refused after its reservation: give it back
                self.budgets.settle(ex, None)
            return
        ex.accounted = True
        model, stream = ex.admitted
        relay = ex.relay
        if stream:
            # No relay: the stream never began, though earlier vendor calls may have been
            # billed (a `-search` model's rounds before the one that failed).
            usage = relay.usage if relay is not None else ex.usage
        else:
            usage = ex.usage or usage_from_body(ex.answer)
        door = ex.door
        status, error = door.get_status(), ex.error
        if gone:
            status, error = CLIENT_GONE, error or "client_gone"
        elif stream and error is None and relay is not None and not relay.finished:
            error = "incomplete"
        route, key_id, began = ex.served or (None, None, None)
        estimated = False
        if usage is None and stream and route is not None and ex.sizes is not None:
            # Served, but the vendor's usage never came (the client left, the stream was
            # cut, or the vendor reports none): charge an estimate, not nothing.
            usage, estimated = estimate(ex, ex.sizes), True
        caller = door.caller
        e = entry(caller=caller.name if caller is not None else None, vendor_key=key_id,
                  provider=route.provider.name if route else None, model=model,
                  upstream_model=route.upstream_model if route else None, status=status,
                  error=error, stream=stream, latency_ms=round(door.elapsed() * 1000),
                  ttfb_ms=round(began * 1000) if began is not None else None, usage=usage,
                  endpoint=door.endpoint, estimated=estimated, request_id=door.request_id())
        e.update(self.pricing().charge(e, usage), **_who(caller))  # freeapi/pricing.py
        door.logged(e)
        ex.entry = e
        if ex.served is not None:
            opened = ex.opened
            self.metrics.request_done(e, ex.upstream_s + (opened.waited if opened else 0.0))
        else:
            assert ex.routed is not None, "admission routes a request before admitting it"
            self.metrics.request_done(e, routed=ex.routed[0])
        self.store.record(e)
        if ex.budget is not None:
            self.budgets.settle(ex, e)
        if caller is not None and caller.limited and usage is not None:
            self.limits.charge(caller, tokens_spent(e))

    def _count_unrecorded(self, ex: Exchange, routed: tuple, gone: bool) -> None:
        """A routed request the ledger leaves out (a limit refused it, or no target had
        credentials): the metrics still count it, as every request that reached routing."""
        provider, model, stream = routed
        door = ex.door
        ex.entry = e = entry(
            caller=None, vendor_key=None, provider=None, model=model, upstream_model=None,
            status=CLIENT_GONE if gone else door.get_status(), error=ex.error, stream=stream,
            latency_ms=round(door.elapsed() * 1000), ttfb_ms=None, usage=None,
            endpoint=door.endpoint)
        self.metrics.request_done(e, routed=provider)


def _who(caller) -> dict:
    """The ledger's stable key id (a runtime key's id; `config:NAME` for auth.keys) and
    team id, which rollups and GET /admin/requests filter by."""
    if caller is None:
        return {"key_id": None, "team": None}
    team = getattr(caller, "team", None)
    rid = getattr(caller, "id", None)
    return {"key_id": rid if rid is not None else f"config:{caller.name}",
            "team": team.id if team is not None else None}
