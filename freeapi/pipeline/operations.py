"""The pipeline's part in non-chat requests (embeddings, images, speech): the same
admission, routing, key pool, failover, timeouts, ledger and shutdown as chat, with the
vendor request built by the operation's provider hook (freeapi/modalities/).

After the attempt that served, an operation may need more calls to the same vendor (a
poll of an asynchronous image task, with the key that submitted it) or to a download URL
the vendor gave: `fetch` makes them within the request's deadline (the provider's
`timeouts.total`), cancellable by the client leaving and by shutdown, and never fails
over (the vendor already has the work). `VendorCalls` makes them (documents use it too);
an operation reaches it through its `OperationContext`.
"""

from __future__ import annotations

import asyncio
import time

from freeapi.errors import APIError, ClientGone, UpstreamError, upstream_failure
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import shutdown_error


class VendorCalls:
    """The vendor calls of a request outside its attempts, and what makes every call
    cancellable: `start` keeps the call in flight (`ex.call`) and `pause` the future it
    waits on (`ex.queued`), so the client leaving or shutdown ends them
    (Pipeline.client_left, Pipeline.shutdown)."""

    def __init__(self, http, is_shutting_down):
        self.http = http
        self._shutting_down = is_shutting_down  # () -> bool: the gateway's, read each time

    def start(self, ex: Exchange, req):
        """A call about to be sent (Pool.start); kept for the client leaving to abort."""
        ex.call = call = self.http.start(req.url)
        return call

    @staticmethod
    def remaining(ex: Exchange) -> float:
        return (ex.deadline or time.monotonic()) - time.monotonic()

    async def fetch(self, ex: Exchange, provider, req, limit: int, what: str):
        """One more call after the attempt that served: (status, headers, body). A request
        past its deadline is a 504 naming `what` was still pending."""
        if ex.client_gone:  # it left while nothing could be aborted (a store call)
            raise ClientGone()
        remaining = self.remaining(ex)
        if remaining <= 0:
            raise self.timed_out(provider, what)
        t, http = provider.timeouts, self.http
        call = self.start(ex, req)
        try:
            resp = await http.send(call, req.method, req.url, req.headers, req.body,
                                   min(t.connect, remaining), min(t.first_byte, remaining))
            raw = await resp.read(t.idle, limit, ex.deadline)
        except UpstreamError as e:
            if ex.client_gone:
                raise ClientGone() from None
            if e.kind == "aborted" and self._shutting_down():
                raise shutdown_error() from None
            if e.kind == "timeout" and self.remaining(ex) <= 0:
                raise self.timed_out(provider, what) from None
            raise upstream_failure(provider.name, e) from None
        return resp.status, resp.headers, raw

    @staticmethod
    def timed_out(provider, what: str) -> APIError:
        return APIError(504, f"{provider.name}: {what} did not finish within "
                             f"{provider.timeouts.total:g}s (providers.{provider.name}."
                             "timeouts.total).", type="timeout_error",
                        code="upstream_timeout")

    async def pause(self, ex: Exchange, seconds: float, provider, what: str):
        """Wait between polls; the client leaving or shutdown ends the wait at once."""
        if ex.client_gone:
            raise ClientGone()
        if seconds >= self.remaining(ex):
            raise self.timed_out(provider, what)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        ex.wait_on(fut)  # Pipeline.client_left / shutdown fail it
        handle = loop.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
            ex.queued = None
        if self._shutting_down():
            raise shutdown_error()


class OperationContext:
    """What an operation's `finish` may use (freeapi/modalities/): the door to write its
    answer to, the key that served, more calls to the vendor, and what the ledger needs
    of its answer. It is not the pipeline: an operation sets nothing else."""

    def __init__(self, ex: Exchange, calls: VendorCalls):
        self._ex, self._calls, self.door = ex, calls, ex.door

    async def fetch(self, provider, req, limit: int, what: str):
        """One more call to the vendor (a poll, a download): (status, headers, body)."""
        return await self._calls.fetch(self._ex, provider, req, limit, what)

    async def pause(self, seconds: float, provider, what: str):
        """Wait between polls (the client leaving or shutdown ends the wait)."""
        await self._calls.pause(self._ex, seconds, provider, what)

    @property
    def key(self) -> str | None:
        """The vendor key that served (polls of a task must use the key that made it)."""
        lease = self._ex.lease
        return lease.key if lease is not None else None

    @property
    def deadline(self) -> float | None:
        """Monotonic time the request's time (the provider's timeouts.total) runs out."""
        return self._ex.deadline

    @property
    def client_gone(self) -> bool:
        return self._ex.client_gone

    def report_usage(self, usage: dict | None) -> None:
        """The answer's usage, for the ledger."""
        self._ex.usage = usage

    def relaying(self, mark) -> None:
        """A body relayed as it arrives: the ledger reads its usage and end from `mark`
        (a relay.StreamMark)."""
        self._ex.relay = mark

    def failed(self, code: str) -> None:
        """The answer failed after its first byte: the ledger notes `code`."""
        self._ex.error = code
