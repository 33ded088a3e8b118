"""OpenAI-shaped errors. Pure: providers import this, so no Tornado here."""

from __future__ import annotations

# The `type` OpenAI uses for each status; the openai SDK picks its exception class from the
# status alone, the type is for humans and for clients that switch on it.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """An error the gateway answers with, in OpenAI's `{"error": {...}}` shape."""

    def __init__(self, status: int, message: str, *, type: str | None = None,
                 code: str | None = None, param: str | None = None,
                 retry_after: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status) or ("server_error" if status >= 500 else "api_error")
        self.code = code
        self.param = param
        self.retry_after = retry_after

    #: Set on a failure to connect to the vendor (Failover.send): the host, not the key,
    #: is down.
    host_down: bool = False

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# Vendor status -> what the message says it means; the status itself is kept.
_VENDOR_MEANING = {
    400: "rejected the request",
    401: "rejected the API key",
    402: "insufficient balance",
    403: "refused access",
    404: "does not know this resource",
    413: "says the request is too large",
    422: "rejected the request parameters",
    429: "rate limit reached",
}


def vendor_error(provider: str, status: int, detail: str = "", *, code: str | None = None,
                 retry_after: str | None = None, out_status: int | None = None) -> APIError:
    """An error that came from a vendor, surfaced with the vendor's status.

    `detail` must already be redacted of keys (see freeapi.keys.redact).
    """
    meaning = _VENDOR_MEANING.get(status) or ("server error" if status >= 500 else "error")
    message = f"{provider}: {meaning} (HTTP {status})"
    if detail:
        message += f": {detail}"
    status = out_status or status
    if status < 400 or status > 599:
        status = 502
    return APIError(status, message, code=code or f"upstream_{status}", retry_after=retry_after)


class ClientGone(Exception):
    """The client disconnected; there is nobody to answer."""


class Answered(Exception):
    """The connection was answered and closed outside Tornado's request flow."""


class UpstreamError(Exception):
    """The vendor could not be reached or did not answer in time."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "connect", "timeout", "closed", "protocol", "aborted"


def upstream_failure(provider: str, e: UpstreamError) -> APIError:
    """What the client is told: 504 when the vendor was too slow, else 502."""
    if e.kind == "timeout":
        return APIError(504, f"{provider}: {e}", type="timeout_error", code="upstream_timeout")
    return APIError(502, f"{provider}: {e}", code="upstream_unreachable")
