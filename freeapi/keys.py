"""API keys: parsing, masking, redaction, constant-time gateway key checks."""

from __future__ import annotations

import functools
import hmac
import re
from urllib.parse import urlsplit, urlunsplit

from freeapi.errors import APIError

# Characters a real API key never contains; anything else in the Authorization header is
# refused before it can reach an upstream request line.
_KEY_OK = re.compile(r"^[\x21-\x7e]+$")
# Anything that looks like a secret token in vendor text (sk-..., mk-..., long hex/base64,
# GLM-style `id.secret`). Already-masked `sk-...abcd` must not match again, or the tail that
# tells keys apart is lost; a sentence's final dot is not part of a key.
_TOKENISH = re.compile(r"\b((?:sk|mk|ak|key|tp)-(?!\.\.\.)[A-Za-z0-9_\-.]{5,}[A-Za-z0-9_\-]"
                       r"|[A-Za-z0-9_\-]{32,}(?:\.[A-Za-z0-9_\-]+)?)")
# Vendors' own key prefixes: shown by mask() because they say whose key it is and are no
# secret. Any other start (an operator's `team-...` gateway key) is part of the secret.
_VENDOR_PREFIXES = ("sk-", "mk-", "ak-", "tp-", "key-")
# In log text, whatever follows `Bearer ` or `Authorization:` is a credential, whatever it
# looks like (Tornado quotes a malformed header's value in its log line): up to the end of
# the line, or of the header line when a header block is quoted with `\r\n` escapes. Each
# piece of it is masked, so `sk-...abcd` still tells keys apart.
_CREDENTIAL = re.compile(r"(?i)\b(authorization:[ \t]*(?:bearer[ \t]+)?|bearer[ \t]+)"
                         r"((?:(?!\\r\\n)[^\r\n])+)")
# Pieces of a credential: quotes, commas, spaces and the backslash of a quoted control
# character (`\x01`) are not part of a key.
_PIECE = re.compile(r"[^\s,'\"\\]+")


@functools.lru_cache(maxsize=1024)  # once per key, not per request (a lease, a log line)
def mask(key: str | None) -> str:
    """`sk-...abcd`: enough to tell keys apart, never enough to use one."""
    if not key:
        return "-"
    prefix = next((p for p in _VENDOR_PREFIXES if key.startswith(p)), "")
    return f"{prefix}...{key[-4:]}" if len(key) >= 12 else f"{prefix}..."


def redact(text: str, keys=()) -> str:
    """Remove every key in `keys`, and anything that looks like a key, from vendor text.

    Vendor text is often JSON, where a key may be spelled with escapes (`\\/` for `/`,
    `\\u0073` for `s`, doubled when JSON is quoted inside JSON): those spellings are
    removed too."""
    for key in keys:
        if not key:
            continue
        # The mask takes the key's place inside what may be a JSON string: a backslash or
        # a quote of the key's last characters would escape or end what follows it.
        shown = mask(key).replace("\\", "").replace('"', "")
        if "\\" in text:  # JSON spellings first: the raw key may be a prefix of one
            text = _escaped(key).sub(lambda m: shown, text)
        if key in text:
            text = text.replace(key, shown)
    return _TOKENISH.sub(lambda m: mask(m.group(0)), text)


def _escaped(key: str) -> re.Pattern:
    """`key` as JSON may spell it: each character as itself, as a `\\uXXXX` escape, or
    (`/`, `"`, `\\`) with its short escape, behind any number of backslashes (JSON inside
    JSON). Built only for text with a backslash (error texts); `re` caches the compiled
    pattern."""
    parts = []
    for ch in key:
        forms = [re.escape(ch)] if ch != "\\" else []
        hexa = f"{ord(ch):04x}"
        forms.append(r"\\+u" + "".join(f"[{h}{h.upper()}]" if h.isalpha() else h
                                          for h in hexa))
        if ch == "\\":  # `\\`, doubled per level: whole pairs, never the escape of what follows
            forms.append(r"(?:\\\\)+")
        elif ch in '/"':
            forms.append(r"\\+" + re.escape(ch))
        parts.append("(?:" + "|".join(forms) + ")")
    return re.compile("".join(parts))


def redact_log(text: str, keys=()) -> str:
    """redact() plus anything sent as a credential: for log lines, where a header value a
    client mistyped (`team-pass` with a stray control character) is quoted verbatim."""
    def credential(m):
        return m.group(1) + _PIECE.sub(lambda piece: mask(piece.group(0)), m.group(2))
    return redact(_CREDENTIAL.sub(credential, text), keys)


def public_url(url: str) -> str:
    """A URL as the log may show it: no `user:password@`, no query string (some proxies
    take a key there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def split_keys(token: str) -> list[str]:
    """`sk-a, sk-b,sk-c` -> ["sk-a", "sk-b", "sk-c"] (the seed's multi-key header)."""
    keys = [k.strip() for k in token.split(",")]
    keys = [k for k in keys if k]
    for k in keys:
        if not _KEY_OK.match(k):
            raise APIError(401, "Malformed API key in the Authorization header.",
                           code="invalid_api_key")
    return keys


class GatewayAuth:
    """The caller's key for the gateway itself (config `auth.keys`)."""

    def __init__(self, keys):
        # (auth.allow_anonymous only decides whether a config without keys may start:
        # freeapi/config.py. Without keys, every request is anonymous; with them, none.)
        self._keys = [(k, k.key.encode()) for k in keys]
        # Roles only restrict anything once the operator uses them.
        self.has_roles = any(k.role == "admin" for k in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, token: str | None):
        """The matching config.GatewayKey, or None. Compares against every key so timing
        says nothing about which one, or how much of one, matched."""
        if token is None:
            return None
        given = token.encode()
        found = None
        for entry, key in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = entry
        return found
