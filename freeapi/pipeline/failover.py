"""Failover for one request: keys from the pool, retries, the fallback chain.

Everything here happens before the first byte of an answer reaches the client; after it,
the pipeline never retries.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from freeapi.budgets import budgeted
from freeapi.errors import (APIError, ClientGone, upstream_failure, UpstreamError,
                            vendor_error)
from freeapi.pipeline import native
from freeapi.pipeline.exchange import Exchange
from freeapi.pipeline.open_stream import OpenStream
from freeapi.routing import Route

log = logging.getLogger("freeapi.pipeline")

# Vendor answers that are about the key, not the request: another key may succeed.
KEY_FAILURES = frozenset({401, 402, 403, 429})
# Every key of a provider busy (max_concurrency): a fallback target may be free.
_BUSY = frozenset({"queue_full", "queue_timeout"})
MAX_UPSTREAM_BODY = 64 * 1024 * 1024
#: What an attempt expects back: a whole body (False), an event stream (True), or a body
#: relayed as it arrives ("bytes": audio).
Transport = Literal[False, True, "bytes"]
# A failed attempt's verdict: what the request does next.
NEXT_KEY, SAME_KEY, NEXT_TARGET = "next key", "same key", "next target"


def shutdown_error() -> APIError:
    return APIError(503, "freeapi is shutting down; retry on another instance.",
                    code="shutting_down")


def server_key_error(err: APIError, provider: str) -> APIError:
    """What the caller hears when the vendor refused a server-side key of the gateway:
    a 401 would tell them that *their* gateway key is wrong."""
    if err.status not in (401, 403):
        return err
    return APIError(503, f"{err.message} (a server-side key of the gateway; the operator "
                         f"must fix providers.{provider}.api_keys)",
                    code="upstream_key_rejected")


def _verdict(lease, err: APIError) -> None:
    """Release the key with the vendor's verdict, unless the refusal was about one model,
    not the key (a used-up per-model free quota: `err.scope == "model"`)."""
    if getattr(err, "scope", None) == "model":
        lease.cancel()
    else:
        lease.release(err.status, retry_after=err.retry_after)


def _context_too_long(err: APIError) -> bool:
    text = err.message.lower()
    return err.status in (400, 413) and ("context" in text or "too long" in text
                                         or "maximum" in text and "token" in text)


# Raising without a cycle: a raised exception's traceback keeps the frames it passes
# through, and a frame keeps its locals, so a local still naming the exception makes a cycle
# that holds the whole request (its handler, pipeline, exchange) until the garbage collector
# runs. The frames an error leaves the failover step by let go of it as it leaves
# (`finally: x = None`; tests/test_request_cycles.py).


class Failover:
    """The request's attempts: `targets` (the route and the fallbacks this request may
    use), `lease` (a key of a target's pool), `send` (one attempt with one key) and
    `verdict` (what a failed attempt means for the next), composed by `attempt`.
    Writes the exchange's `credentialed`, `lease`, `served`, `deadline`, `opened`,
    `upstream_s` and `failed_at`, and (Budgets.top_up) `budget`."""

    def __init__(self, gateway, calls, documents, budgets):
        # gateway: config, fallbacks_for, limits, vendor_keys, pools, metrics, free,
        # shutting_down
        self.gateway, self.calls, self.documents = gateway, calls, documents
        self.budgets = budgets  # freeapi/budgets.py: a dearer target's top-up

    async def attempt(self, ex: Exchange, route: Route, model: str, body: dict, token,
                      stream: Transport):
        """Send to the vendor; while nothing has reached the client, move past failures to
        another key, then along the fallback chain, within config `failover`.

        Returns (an OpenStream or a non-stream answer's raw body, the route that served).
        """
        # Each attempt's outcome is counted once: ok, or when the next one starts, retried
        # (same target) or fallback (the next target); the last failed one as failed.
        try:
            return await self._attempts(ex, route, model, body, token, stream)
        finally:
            if ex.failed_at is not None:
                self.gateway.metrics.attempt(ex.failed_at[1], "failed")
                ex.failed_at = None

    def targets(self, ex: Exchange, route: Route, model: str) -> list[Route]:
        """The route, then the fallbacks this request may go to."""
        gw = self.gateway
        # A key's `models` allowlist holds for every target: a fallback it may not use is
        # skipped (the requested name was checked on admission).
        caller = ex.door.caller
        targets = [route] + [t for t in gw.fallbacks_for(model, route)
                             if caller is None or caller.models is None
                             or gw.limits.target_allowed(caller, t)]
        if ex.operation is not None:  # a fallback that does not offer the operation
            targets = [route] + [t for t in targets[1:] if ex.operation.offered(t)]
        if ex.doc_refs:  # files read by id: only where they can be (pipeline/documents.py)
            targets = [route] + [t for t in targets[1:] if self.documents.reads(t)]
        if route.via is not None:  # `free`: a paid model only within a budget that counts it
            targets = [t for t in targets if not t.paid or (
                budgeted(caller) and self.budgets.counts(t, model))]
        return native.targets(ex, targets)  # documents the native endpoint carries

    async def lease(self, ex: Exchange, pool, keys, tried: set, passthrough: bool):
        """A key of `pool` not yet `tried` (waiting for a busy one, within
        max_concurrency's queue), or None when none is left. The client leaving or
        shutdown meanwhile ends the request."""
        try:
            lease = await pool.acquire(keys, tried, last_resort=passthrough,
                                       on_wait=ex.wait_on)
        finally:
            ex.queued = None
        if lease is not None and (ex.client_gone or self.gateway.shutting_down):
            lease.cancel()  # nothing was sent: no verdict on the key
            if ex.client_gone:
                raise ClientGone()
            raise shutdown_error()
        return lease

    async def verdict(self, ex: Exchange, err: APIError, target: Route,
                      more_targets: bool) -> str:
        """What a failed attempt's error means: NEXT_KEY, SAME_KEY (with new uploads),
        NEXT_TARGET, or (raised) the end of the request."""
        if ex.client_gone:
            raise ClientGone()
        if self.gateway.shutting_down:
            raise err
        if getattr(err, "host_down", False):
            return NEXT_TARGET  # no key gets through a closed port: the next target may
        if err.status in KEY_FAILURES or err.status >= 500:
            return NEXT_KEY  # this key or this vendor: try another
        if more_targets and _context_too_long(err):
            return NEXT_TARGET  # a longer-context fallback may take it
        if more_targets and target.via and err.status == 404:
            return NEXT_TARGET  # a `free` target this account cannot reach (unknown model)
        if ex.doc_refs and await self.documents.stale(ex, err):
            return SAME_KEY  # the same key may serve, with a new upload
        try:
            raise err  # the request itself is wrong: no key or vendor will take it
        finally:
            err = None  # type: ignore[assignment]  # raising without a cycle (above)

    async def _attempts(self, ex: Exchange, route: Route, model: str, body: dict, token,
                        stream: Transport):
        gw = self.gateway
        limits = gw.config.failover
        started = time.monotonic()
        attempts, last = 0, None
        targets = self.targets(ex, route, model)
        for t_index, target in enumerate(targets):
            provider = target.provider
            try:
                keys, passthrough = gw.vendor_keys(provider, token)
            except APIError as e:
                last = last or e
                continue
            if passthrough and provider is not route.provider:
                continue  # the client's key is for its vendor; never send it to another
            tbody = target.body_for(body)
            if ex.budget is not None:  # a dearer target (or a grown body): hold more first
                refused = await self.budgets.top_up(ex, target, tbody)
                if refused is not None:
                    last = refused
                    continue
            ex.credentialed = True  # it has credentials for a target: the ledger has it
            pool = gw.pool_for(provider)
            more_targets = t_index + 1 < len(targets)
            tried = set(target.skip_keys)  # keys whose free quota is used up (freeapi/free.py)
            while attempts < limits.max_attempts and (
                    attempts == 0 or time.monotonic() - started < limits.max_time):
                try:
                    lease = await self.lease(ex, pool, keys, tried, passthrough)
                except APIError as e:
                    if e.code in _BUSY and more_targets:
                        last = e
                        break
                    raise
                if lease is None:
                    if not tried:
                        last = last or pool.refusal(keys)
                    break
                tried.add(lease.key)
                attempts += 1
                if ex.failed_at is not None:
                    gw.metrics.attempt(ex.failed_at[1], "retried"
                                       if ex.failed_at[0] == t_index else "fallback")
                    ex.failed_at = None
                sent = time.monotonic()
                if ex.span is None:
                    result, err = await self.send(ex, target, tbody, lease, stream)
                else:  # traced: the attempt's child span (freeapi/telemetry.py)
                    result, err = await self.traced_send(ex, target, tbody, lease, stream)
                ex.upstream_s += time.monotonic() - sent
                if err is None:
                    gw.metrics.attempt(provider.name, "ok")
                    self._served(ex, target, lease, attempts)
                    return result, target
                gw.free.observe(target, lease.key, err)  # a used-up free quota is remembered
                ex.failed_at = (t_index, provider.name)
                last = err if passthrough else server_key_error(err, provider.name)
                try:
                    then = await self.verdict(ex, err, target, more_targets)
                except BaseException:
                    err = last = None  # raising without a cycle (above)
                    raise
                if then == NEXT_TARGET:
                    break
                if then == SAME_KEY:
                    tried.discard(lease.key)
        if route.via is not None:  # `free`: say when one comes back
            last = await gw.free.unserved(route.via, last, any(t.paid for t in targets))
        failure: APIError | None = last or APIError(
            503, "No provider could take the request.", code="no_target")
        err = last = None
        try:
            raise failure  # type: ignore[misc]  # (an APIError until the finally clause)
        finally:
            failure = None  # raising without a cycle (above)

    async def traced_send(self, ex: Exchange, target: Route, body: dict, lease,
                          stream: Transport):
        """`send` inside the attempt's trace span."""
        tracing = self.gateway.telemetry
        span = tracing.attempt_started(ex, target, lease, body)
        try:
            result, err = await self.send(ex, target, body, lease, stream)
        except BaseException as e:
            tracing.attempt_ended(span, exc=e)
            raise
        tracing.attempt_ended(span, err, result=result)
        return result, err

    def _served(self, ex: Exchange, target: Route, lease, attempts: int) -> None:
        ex.lease = lease
        h = ex.door
        ex.served = (target, lease.id, h.elapsed())
        h.set_header("x-freeapi-provider", target.provider.name)
        h.set_header("x-freeapi-upstream-model", target.upstream_model)
        h.set_header("x-freeapi-key", lease.id)
        if attempts > 1:
            h.set_header("x-freeapi-attempts", str(attempts))

    @staticmethod
    def request(ex: Exchange, target: Route, body: dict, key):
        """The vendor request for one attempt: the operation's hook (embeddings, images,
        speech), else native or chat (pipeline/native.py)."""
        if ex.operation is not None:
            return ex.operation.request(target.provider, body, key)
        return native.request(ex, target, body, key)

    async def send(self, ex: Exchange, target: Route, body: dict, lease, stream: Transport):
        """One attempt with one key: (result, None) or (None, error); the lease is released
        here unless the attempt succeeded."""
        gw, provider = self.gateway, target.provider
        t = provider.timeouts
        started = time.monotonic()
        ex.deadline = started + t.total
        first_byte = provider.first_byte_timeout(target.upstream_model, body)
        if ex.doc_refs:  # files the vendor reads by id: uploaded with this very key
            try:
                body = await self.documents.bind(ex, target, body, lease.key)
            except APIError as refused:
                if gw.shutting_down:
                    lease.cancel()
                    raise
                lease.release(refused.status, retry_after=refused.retry_after)
                log.warning("%s: a document could not be prepared with key %s: %s",
                            provider.name, lease.id, refused.message)
                return None, refused
            except BaseException:
                lease.cancel()
                raise
            if ex.client_gone:  # it left during a store call: send nothing for nobody
                lease.cancel()
                raise ClientGone()
            # The first byte is the chat's, timed from its send: the upload and parse
            # before it count against `total` only.
            started = time.monotonic()
        try:
            req = self.request(ex, target, body, lease.key)
            call = self.calls.start(ex, req)
            resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                      t.connect, first_byte)
            ctype = resp.headers.get("Content-Type", "")
            if stream == "bytes" and resp.status == 200 and not ctype.startswith(
                    "application/json"):
                return resp, None  # a body relayed as it arrives (audio); JSON is an error
            if stream is True and resp.status == 200 and ctype.startswith(
                    "text/event-stream"):
                opened = await OpenStream.first_event(resp, t.idle, started + first_byte,
                                                      ex.deadline, gw.config.max_event_size)
                err = opened.error(provider, lease.key)
                if err is None:
                    ex.opened = opened
                    return opened, None
                opened.close()
                _verdict(lease, err)
                log.warning("%s: stream began with an error for key %s: %s",
                            provider.name, lease.id, err.message)
                return None, err
            raw = await resp.read(t.idle, MAX_UPSTREAM_BODY, ex.deadline)
        except UpstreamError as e:
            if e.kind == "aborted":  # by us (client gone, shutdown): not the key's fault
                lease.cancel()
            else:
                lease.release(None, error=e.kind)
            if ex.client_gone:
                raise ClientGone() from None
            if e.kind == "aborted" and gw.shutting_down:
                return None, shutdown_error()
            # (the text, not the error: a handler that keeps records, such as a
            # MemoryHandler, would keep the request alive through its traceback)
            log.warning("%s: %s (key %s)", provider.name, str(e), lease.id)
            err = upstream_failure(provider.name, e)
            err.host_down = e.kind == "connect"
            if lease.key is None:  # a keyless host: probed every second (KeyPool.refusal)
                err.retry_after = "1"
            return None, err
        except BaseException:
            lease.cancel()  # whatever went wrong, the key's slot must not stay taken
            raise
        err = provider.error_from(resp.status, resp.headers, raw, [lease.key])
        if err is None:
            if not stream:
                lease.release(resp.status)
                return raw, None
            err = vendor_error(provider.name, 502, "expected an event stream, got "
                               f"{resp.headers.get('Content-Type') or 'no type'}")
        _verdict(lease, err)
        log.warning("%s answered %d for key %s: %s", provider.name, resp.status, lease.id,
                    err.message)
        return None, err
