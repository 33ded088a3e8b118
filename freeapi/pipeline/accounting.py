"""The pipeline's accounting: gateway-key limits before a request is sent, one usage
ledger entry after it has ended (whatever way it ended).

The ledger entry is queued on the store and written in the background (see
Store.record), so the ledger adds no wait to any request; only a key with limits waits,
for one store call, before its request is sent.
"""

from __future__ import annotations

import json

from freeapi.ledger import StreamSizes, entry, estimate_usage, tokens_spent, usage_from_body

CLIENT_GONE = 499  # nginx's status for "the client closed the connection first"


class AccountingMixin:
    """Part of the Pipeline, which sets `_error` when a stream ends with an error event
    (or the door answered with one); `_watch_relay` sets `_stream_relay`, failover
    `_served`, a non-stream answer `_answer` (its body) or `_usage`."""

    _acct = None  # (requested model, stream) once the request is admitted by its limits
    _admitted = False  # credentials were found for a target (failover sets it)
    _routed = None  # (provider, requested model, stream) once routed: metrics count it
    _accounted = False
    _answer = None  # a non-stream answer's body as sent, for its usage
    _usage = None  # or its usage object, when the answer was parsed anyway
    _stream_relay = None
    _served = None  # (route, masked vendor key, seconds until the answer began)
    _error = None
    _sent_body = None  # the chat body as sent (history included)
    _sizes = None  # StreamSizes of the relayed stream

    @property
    def _streamed(self) -> StreamSizes:
        if self._sizes is None:
            self._sizes = StreamSizes()
        return self._sizes

    async def _admit(self, model: str, stream: bool, route) -> None:
        """A key's limits may refuse the request. Only a request they admit, and that has
        credentials for some target, gets a ledger entry: refusals write nothing, so
        nobody can grow the ledger with requests that were never going to be served."""
        self._routed = (route.provider.name, model, stream)
        caller = self.caller
        if caller is not None and caller.limited:
            await self.gateway.limits.admit(caller, model, route)
        self._acct = (model, stream)

    def _estimate(self) -> dict:
        messages = (self._sent_body or {}).get("messages")
        try:
            chars = len(json.dumps(messages, ensure_ascii=False)) if messages else 0
        except (TypeError, ValueError, RecursionError):
            chars = 0
        return estimate_usage(chars, self._sizes)

    def failed(self, exc, status_code: int) -> None:
        """The door answered with an error (its write_error ran)."""
        self._error = getattr(exc, "code", None) or f"http_{status_code}"

    def _account(self, gone: bool = False) -> None:
        if self._accounted or self._acct is None or not self._admitted:
            if not self._accounted and self._routed is not None:
                self._accounted = True
                self._count_unrecorded(gone)
            return
        self._accounted = True
        model, stream = self._acct
        relay = self._stream_relay
        if stream:
            usage = relay.usage if relay is not None else None
        else:
            usage = self._usage or usage_from_body(self._answer)
        h = self.handler
        status, error = h.get_status(), self._error
        if gone:
            status, error = CLIENT_GONE, error or "client_gone"
        elif stream and error is None and relay is not None and not relay.finished:
            error = "incomplete"
        route, key_id, began = self._served or (None, None, None)
        estimated = False
        if usage is None and stream and route is not None and self._sizes is not None:
            # Served, but the vendor's usage never came (the client left, the stream was
            # cut, or the vendor reports none): charge an estimate, not nothing.
            usage, estimated = self._estimate(), True
        caller = self.caller
        e = entry(caller=caller.name if caller is not None else None, vendor_key=key_id,
                  provider=route.provider.name if route else None, model=model,
                  upstream_model=route.upstream_model if route else None, status=status,
                  error=error, stream=stream,
                  latency_ms=round(h.request.request_time() * 1000),
                  ttfb_ms=round(began * 1000) if began is not None else None, usage=usage,
                  endpoint=self.endpoint, estimated=estimated,
                  request_id=h._rlog.request_id if h._rlog is not None else None)
        gw = self.gateway
        e.update(gw.pricing.charge(e, usage), **_who(caller))  # freeapi/pricing.py
        if h._rlog is not None:
            h._rlog.update_from_entry(e)
        if self._served is not None:
            opened = self._opened
            gw.metrics.request_done(e, self._upstream_s + (opened.waited if opened else 0.0))
        else:
            gw.metrics.request_done(e, routed=self._routed[0])
        gw.store.record(e)
        if caller is not None and caller.limited and usage is not None:
            gw.limits.charge(caller, tokens_spent(e))

    def _count_unrecorded(self, gone: bool) -> None:
        """A routed request the ledger leaves out (a limit refused it, or no target had
        credentials): the metrics still count it, as every request that reached routing."""
        provider, model, stream = self._routed
        h = self.handler
        self.gateway.metrics.request_done(entry(
            caller=None, vendor_key=None, provider=None, model=model, upstream_model=None,
            status=CLIENT_GONE if gone else h.get_status(), error=self._error, stream=stream,
            latency_ms=round(h.request.request_time() * 1000), ttfb_ms=None, usage=None,
            endpoint=self.endpoint), routed=provider)


def _who(caller) -> dict:
    """The ledger's stable key id (a runtime key's id; `config:NAME` for auth.keys) and
    team id, which rollups and GET /admin/requests filter by."""
    if caller is None:
        return {"key_id": None, "team": None}
    team = getattr(caller, "team", None)
    rid = getattr(caller, "id", None)
    return {"key_id": rid if rid is not None else f"config:{caller.name}",
            "team": team.id if team is not None else None}
