"""Gateway keys and teams as data: the fields the admin API and `freeapi keys|teams` take,
their validation (every refusal names its field), the stored record shapes and the views
callers see. Pure: no Tornado, no store.

A key's secret is `fk-` + 43 characters of a 256-bit random value, shown once when made;
the store keeps its SHA-256 (a fast hash is enough for a secret of that entropy: nobody
can guess their way back), never the secret.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from datetime import datetime, timezone

from freeapi.config_keys import BUDGET_MAX, BUDGET_PERIODS, GATEWAY_KEY_LIMITS
from freeapi.errors import APIError

LIMITS = GATEWAY_KEY_LIMITS  # rpm, tpm, daily_tokens, monthly_tokens
TEAM_FIELDS = ("name", "models", *LIMITS, "budget", "metadata")
KEY_FIELDS = ("name", "team", "models", *LIMITS, "budget", "expires_at", "metadata")
MAX_NAME = 100
MAX_METADATA = 4096  # bytes of JSON
MAX_MODELS = 200
MAX_GRACE = 30 * 86400.0  # a rotated secret's overlap


class FieldError(APIError):
    """400 naming the field (OpenAI's `param`)."""

    def __init__(self, field: str, message: str, code: str = "invalid_field"):
        super().__init__(400, f"`{field}` {message}", param=field, code=code)


# -- secrets --------------------------------------------------------------------------------

def new_secret() -> str:
    return "fk-" + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    """`fk-...abcd`: tells keys apart in a list, useless to anyone else."""
    return f"fk-...{secret[-4:]}"


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


# -- validation -----------------------------------------------------------------------------

def _name(value, field="name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, "must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise FieldError(field, f"is longer than {MAX_NAME} characters")
    if any(c < " " or c == "\x7f" for c in value):
        raise FieldError(field, "must not contain control characters")
    return value


def _models(value):
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_MODELS:
        raise FieldError("models", f"must be a list of at most {MAX_MODELS} model names or "
                                   "patterns (null: every model)")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise FieldError(f"models[{i}]", "must be a non-empty model name or pattern")
        out.append(item.strip())
    return out


def _limit(value, field):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "must be a whole number (null: no limit)")
    if value < 1:
        raise FieldError(field, "must be at least 1 (null: no limit)")
    return value


def _budget(value):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FieldError("budget", "must be an object {daily, monthly, total} (null: none)")
    out = {}
    for period, amount in value.items():
        field = f"budget.{period}"
        if period not in BUDGET_PERIODS:
            raise FieldError(field, f"is not a budget period (allowed: "
                                    f"{', '.join(BUDGET_PERIODS)})", code="unknown_field")
        if amount is None:
            continue
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) \
                or not math.isfinite(amount):
            raise FieldError(field, "must be an amount of money (a number, null: none)")
        if amount < 0:
            raise FieldError(field, "must not be negative")
        if amount > BUDGET_MAX:
            raise FieldError(field, f"must be at most {BUDGET_MAX:,}")
        out[period] = amount
    return out or None


def parse_time(value, field="expires_at"):
    """RFC 3339 (`2027-01-31T00:00:00Z`, an offset required) or unix seconds -> unix
    seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise FieldError(field, "must be an RFC 3339 time or unix seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise FieldError(field, "must be an RFC 3339 time or unix seconds")
        return float(value)
    if not isinstance(value, str):
        raise FieldError(field, "must be an RFC 3339 time or unix seconds")
    try:
        when = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise FieldError(field, f"is not an RFC 3339 time ({value[:40]!r}); e.g. "
                                "2027-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        raise FieldError(field, "needs a time zone (Z or +hh:mm)")
    return when.timestamp()


def format_time(ts):
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _metadata(value):
    import json
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FieldError("metadata", "must be a JSON object")
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA:
        raise FieldError("metadata", f"is larger than {MAX_METADATA} bytes of JSON")
    return value


def validate(body, kind: str, *, partial: bool) -> dict:
    """The checked fields of a create (`partial` False: `name` required) or PATCH body
    for `kind` "key" or "team"; unknown fields refused. `team` stays as given (the caller
    resolves it against the teams)."""
    if not isinstance(body, dict):
        raise APIError(400, "The body must be a JSON object.", code="invalid_request")
    allowed = KEY_FIELDS if kind == "key" else TEAM_FIELDS
    for field in body:
        if field not in allowed:
            raise FieldError(str(field)[:80], f"is not a {kind} field (allowed: "
                                              f"{', '.join(allowed)})", code="unknown_field")
    if not partial and "name" not in body:
        raise FieldError("name", "is required")
    out = {}
    for field, value in body.items():
        if field == "name":
            out[field] = _name(value)
        elif field == "team":
            out[field] = None if value is None else _name(value, "team")
        elif field == "models":
            out[field] = _models(value)
        elif field in LIMITS:
            out[field] = _limit(value, field)
        elif field == "budget":
            out[field] = _budget(value)
        elif field == "expires_at":
            out[field] = parse_time(value)
        elif field == "metadata":
            out[field] = _metadata(value)
    return out


def grace_seconds(body) -> float:
    """The overlap a rotation leaves the old secret (`grace_seconds`, default 0)."""
    body = body or {}
    if not isinstance(body, dict):
        raise APIError(400, "The body must be a JSON object.", code="invalid_request")
    for field in body:
        if field != "grace_seconds":
            raise FieldError(str(field)[:80], "is not a rotation field (allowed: "
                                              "grace_seconds)", code="unknown_field")
    grace = body.get("grace_seconds", 0) or 0
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) \
            or not math.isfinite(grace) or grace < 0 or grace > MAX_GRACE:
        raise FieldError("grace_seconds", f"must be a number of seconds from 0 to "
                                          f"{MAX_GRACE:g}")
    return float(grace)


# -- records and views ---------------------------------------------------------------------

def blank(kind: str) -> dict:
    fields = KEY_FIELDS if kind == "key" else TEAM_FIELDS
    return {f: None for f in fields}


def key_status(record: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if record.get("revoked_at") is not None:
        return "revoked"
    if record.get("expires_at") is not None and record["expires_at"] <= now:
        return "expired"
    return "active"


def key_view(record: dict, teams: dict) -> dict:
    """What the admin API shows of a stored key: never a hash, never the secret."""
    team = teams.get(record.get("team")) if record.get("team") else None
    out = {"id": record["id"], "object": "gateway_key", "source": "store",
           "name": record["name"], "team": record.get("team"),
           "team_name": team["name"] if team else None, "hint": record.get("hint"),
           "status": key_status(record)}
    for field in ("models", *LIMITS, "budget", "metadata"):
        out[field] = record.get(field)
    for field in ("expires_at", "created_at", "updated_at", "revoked_at"):
        out[field] = format_time(record.get(field))
    return out


def team_view(record: dict) -> dict:
    out = {"id": record["id"], "object": "team"}
    for field in TEAM_FIELDS:
        out[field] = record.get(field)
    for field in ("created_at", "updated_at"):
        out[field] = format_time(record.get(field))
    return out


def config_key_view(gk) -> dict:
    """A key from config.yaml `auth.keys`: listed, read-only."""
    out = {"id": f"config:{gk.name}", "object": "gateway_key", "source": "config",
           "name": gk.name, "team": None, "team_name": None, "hint": None,
           "status": "active", "role": gk.role, "models": gk.models}
    for field in LIMITS:
        out[field] = getattr(gk, field)
    out.update(budget=gk.budget, metadata=None, expires_at=None, created_at=None,
               updated_at=None, revoked_at=None)
    return out


def audit_safe(record: dict | None) -> dict | None:
    """A record as the audit log keeps it: without hashes."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k != "hashes"}
