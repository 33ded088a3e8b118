"""The chat handler's accounting: gateway-key limits before a request is sent, one usage
ledger entry after it has ended (whatever way it ended).

The ledger entry is queued on the store and written in the background (see
Store.record), so the ledger adds no wait to any request; only a key with limits waits,
for one store call, before its request is sent.
"""

from __future__ import annotations

from freeapi.ledger import entry, tokens_spent, usage_from_body

CLIENT_GONE = 499  # nginx's status for "the client closed the connection first"


class AccountingMixin:
    """Mixed into the chat handler, which sets `_error` when a stream ends with an error
    event; ConversationMixin._watch_relay sets `_stream_relay`, failover `_served`."""

    _acct = None  # (requested model, stream) once the request is routed
    _accounted = False
    _answer = None  # a non-stream answer's body as sent, for its usage
    _stream_relay = None
    _served = None  # (route, masked vendor key, seconds until the answer began)
    _error = None

    async def _admit(self, model: str, stream: bool, route) -> None:
        """From here on the request is in the ledger; a key's limits may refuse it."""
        self._acct = (model, stream)
        caller = self.caller
        if caller is not None and caller.limited:
            await self.gateway.limits.admit(caller, model, route)

    def finish(self, chunk=None):
        if chunk is not None and self._acct is not None and not self._acct[1]:
            self._answer = chunk
        return super().finish(chunk)

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self._error = getattr(exc, "code", None) or f"http_{status_code}"
        super().write_error(status_code, **kwargs)

    def _account(self, gone: bool = False) -> None:
        if self._accounted or self._acct is None:
            return
        self._accounted = True
        model, stream = self._acct
        relay = self._stream_relay
        if stream:
            usage = relay.usage if relay is not None else None
        else:
            usage = usage_from_body(self._answer)
        status, error = self.get_status(), self._error
        if gone:
            status, error = CLIENT_GONE, error or "client_gone"
        elif stream and error is None and relay is not None and not relay.finished:
            error = "incomplete"
        route, key_id, began = self._served or (None, None, None)
        caller = self.caller
        e = entry(caller=caller.name if caller is not None else None, vendor_key=key_id,
                  provider=route.provider.name if route else None, model=model,
                  upstream_model=route.upstream_model if route else None, status=status,
                  error=error, stream=stream,
                  latency_ms=round(self.request.request_time() * 1000),
                  ttfb_ms=round(began * 1000) if began is not None else None, usage=usage,
                  request_id=self._rlog.request_id if self._rlog is not None else None)
        if self._rlog is not None:
            self._rlog.update_from_entry(e)
        gw = self.gateway
        gw.metrics.request_done(e)
        gw.store.record(e)
        if caller is not None and caller.limited and usage is not None:
            gw.limits.charge(caller, tokens_spent(e))
