"""The pipeline's part in non-chat requests (embeddings, images, speech): the same
admission, routing, key pool, failover, timeouts, ledger and shutdown as chat, with the
vendor request built by the operation's provider hook (freeapi/modalities/).

After the attempt that served, an operation may need more calls to the same vendor (a
poll of an asynchronous image task, with the key that submitted it) or to a download URL
the vendor gave: `fetch` makes them within the request's deadline (the provider's
`timeouts.total`), cancellable by the client leaving and by shutdown, and never fails
over (the vendor already has the work).
"""

from __future__ import annotations

import asyncio
import time

from freeapi.errors import APIError, UpstreamError, upstream_failure
from freeapi.handlers.base import ClientGone
from freeapi.pipeline.failover import shutdown_error


class StreamMark:
    """What the ledger needs of a relayed (audio) stream: its usage and whether it ended."""

    usage = None
    finished = False


class OperationMixin:
    """Part of the Pipeline: `call(op, model=..., token=...)` for a non-chat request."""

    _op = None
    _deadline = None

    async def call(self, op, *, model: str, token: str | None):
        """Serve `op` (a freeapi.modalities.Operation); returns what its `finish` returns
        (a dict for the door to write, or None when it wrote the response itself)."""
        route = self.gateway.resolve(model)
        op.check(route)
        self._op = op
        await self._admit(model, op.stream is not False, route)
        result, route = await self._attempt(route, model, op.body, token, stream=op.stream)
        return await op.finish(self, result, route)

    @property
    def key(self) -> str | None:
        """The vendor key that served (polls of a task must use the key that made it)."""
        return self._lease.key if self._lease is not None else None

    def remaining(self) -> float:
        return (self._deadline or time.monotonic()) - time.monotonic()

    async def fetch(self, provider, req, limit: int, what: str):
        """One more call after the attempt that served: (status, headers, body). A request
        past its deadline is a 504 naming `what` was still pending."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self.timed_out(provider, what)
        t, gw = provider.timeouts, self.gateway
        self._call = call = gw.http.start(req.url)
        try:
            resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                      min(t.connect, remaining), min(t.first_byte, remaining))
            raw = await resp.read(t.idle, limit, self._deadline)
        except UpstreamError as e:
            if self._client_gone:
                raise ClientGone() from None
            if e.kind == "aborted" and gw.shutting_down:
                raise shutdown_error() from None
            if e.kind == "timeout" and self.remaining() <= 0:
                raise self.timed_out(provider, what) from None
            raise upstream_failure(provider.name, e) from None
        return resp.status, resp.headers, raw

    @staticmethod
    def timed_out(provider, what: str) -> APIError:
        return APIError(504, f"{provider.name}: {what} did not finish within "
                             f"{provider.timeouts.total:g}s (providers.{provider.name}."
                             "timeouts.total).", type="timeout_error",
                        code="upstream_timeout")

    async def pause(self, seconds: float, provider, what: str):
        """Wait between polls; the client leaving or shutdown ends the wait at once."""
        if seconds >= self.remaining():
            raise self.timed_out(provider, what)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued = fut  # _stop_waiting (client gone, shutdown) fails it
        handle = loop.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
            self._queued = None
        if self.gateway.shutting_down:
            raise shutdown_error()
