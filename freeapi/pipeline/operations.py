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
import logging
import time

from freeapi.download_policy import Refused
from freeapi.errors import APIError, ClientGone, UpstreamError, upstream_failure, vendor_error
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.failover import shutdown_error

log = logging.getLogger("freeapi.downloads")


class VendorCalls:
    """The vendor calls of a request outside its attempts, and what makes every call
    cancellable: `start` keeps the call in flight (`ex.call`) and `pause` the future it
    waits on (`ex.queued`), so the client leaving or shutdown ends them
    (Pipeline.client_left, Pipeline.shutdown)."""

    def __init__(self, http, downloads, is_shutting_down):
        self.http, self.downloads = http, downloads  # downloads: freeapi/downloads.py
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
            raise self._failed(ex, e, provider, what) from None
        return resp.status, resp.headers, raw

    async def download(self, ex: Exchange, provider, url, limit: int, what: str) -> bytes:
        """The body of a URL the vendor's answer named (an image, an audio file), fetched
        as `fetch` makes its calls but by the gateway's Downloads: no key, never an
        internal address unless exempt (freeapi/download_policy.py), the provider's proxy.
        A URL refused, or anything but a 200 with a body, is the vendor's 502."""
        if ex.client_gone:
            raise ClientGone()
        remaining = self.remaining(ex)
        if remaining <= 0:
            raise self.timed_out(provider, what)
        t, downloads = provider.timeouts, self.downloads
        try:
            ex.call = call = downloads.start(provider, url)
            resp = await downloads.send(call, min(t.connect, remaining),
                                        min(t.first_byte, remaining))
            raw = await resp.read(t.idle, limit, ex.deadline)
        except Refused as e:
            log.warning("%s: %s refused: %s", provider.name, what, str(e))
            raise vendor_error(provider.name, 502, f"{what} was refused: {e}",
                               code="download_refused") from None
        except UpstreamError as e:
            raise self._failed(ex, e, provider, what) from None
        if resp.status != 200 or not raw:
            raise vendor_error(provider.name, 502, f"{what} gave HTTP {resp.status}"
                               + ("" if raw else " with no body"))
        return raw

    def _failed(self, ex: Exchange, e: UpstreamError, provider, what: str) -> Exception:
        """What a failed fetch or download raises."""
        if ex.client_gone:
            return ClientGone()
        if e.kind == "aborted" and self._shutting_down():
            return shutdown_error()
        if e.kind == "timeout" and self.remaining(ex) <= 0:
            return self.timed_out(provider, what)
        return upstream_failure(provider.name, e)

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

        def wake() -> None:
            if not fut.done():  # unless the client left or shutdown failed it first
                fut.set_result(None)
        handle = loop.call_later(seconds, wake)
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
        """One more call to the vendor (a poll): (status, headers, body)."""
        return await self._calls.fetch(self._ex, provider, req, limit, what)

    async def download(self, provider, url, limit: int, what: str) -> bytes:
        """The body of a URL the vendor's answer named (no key, no internal address)."""
        return await self._calls.download(self._ex, provider, url, limit, what)

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

    @property
    def usage(self) -> dict | None:
        """The usage reported so far (None: none yet)."""
        return self._ex.usage

    def relaying(self, mark) -> None:
        """A body relayed as it arrives: the ledger reads its usage and end from `mark`
        (a relay.StreamMark)."""
        self._ex.relay = mark

    def failed(self, code: str) -> None:
        """The answer failed after its first byte: the ledger notes `code`."""
        self._ex.error = code
