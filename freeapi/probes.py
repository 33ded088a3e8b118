"""Asking a vendor whether a key, or a keyless host, works now: the key pool's probes
(a key in cooldown, a host that could not be reached), `freeapi check-keys` and
POST /token/check."""

from __future__ import annotations

import time

from freeapi.errors import UpstreamError, upstream_failure

_MAX_CHECK_BODY = 1 << 20


async def check_key(http, provider, key: str, on_call=None) -> bool:
    """Ask the vendor whether `key` is usable now. An outage raises an APIError (502 or
    504); a check cancelled through `on_call(call).abort()` raises UpstreamError."""
    req = provider.key_check_request(key)
    t = provider.timeouts
    call = http.start(req.url)
    if on_call is not None:
        on_call(call)
    try:
        resp = await http.send(call, req.method, req.url, req.headers, req.body,
                               t.connect, t.first_byte)
        raw = await resp.read(t.idle, _MAX_CHECK_BODY)
    except UpstreamError as e:
        if e.kind == "aborted":
            raise
        raise upstream_failure(provider.name, e) from None
    return provider.key_check_result(resp.status, resp.headers, raw, [key])


async def host_answers(http, provider, timeout: float = 5.0) -> bool:
    """Whether a keyless provider's server answers HTTP at all (any status): the probe
    that lets traffic back to a host that could not be reached."""
    req = provider.models_request(None)
    t = provider.timeouts
    call = http.start(req.url)
    try:
        resp = await http.send(call, req.method, req.url, req.headers, req.body,
                               min(t.connect, timeout), min(t.first_byte, timeout))
        await resp.read(timeout, _MAX_CHECK_BODY, time.monotonic() + timeout)
    except UpstreamError:
        return False
    return True
