"""The log filter that keeps configured keys out of every emitted log line.

`freeapi serve` puts one RedactKeys on each log handler (freeapi/cli.py) and gives it the
gateway's and vendors' keys at startup and on each reload (`redact_keys`).
"""

from __future__ import annotations

import logging

from freeapi import access_log
from freeapi.keys import redact_log


def redact_keys(redactor: RedactKeys, cfg) -> None:
    """Give `redactor` every key of `cfg` (at startup and on each reload)."""
    redactor.keys = sorted({k.key for k in cfg.gateway_keys} | {
        k for pc in cfg.providers.values() for k in pc.api_keys}, key=len, reverse=True)


class RedactKeys(logging.Filter):
    """Tornado logs a malformed request's header values verbatim, and an Authorization
    header carries vendor or gateway keys, which need not look like keys (`team-pass`).
    A handler filter: it runs only for records that are emitted, not for every request."""

    keys: list[str] = []  # every configured gateway and vendor key, longest first

    def __init__(self):
        super().__init__()
        self._memo: dict[str, str] = {}  # short field values, redacted with `_memo_keys`
        self._memo_keys: list[str] | None = None

    def _clean(self, text: str) -> str:
        if self._memo_keys is not self.keys:  # reloaded: the keys changed
            self._memo, self._memo_keys = {}, self.keys
        clean = self._memo.get(text)
        if clean is None:
            clean = redact_log(text, self.keys)
            if len(text) <= 200:
                if len(self._memo) >= 1024:
                    self._memo = {}
                self._memo[text] = clean
        return clean

    def filter(self, record):
        access = getattr(record, "access", None)
        if access:
            # An access line is its fields and nothing else (access_log.text_of): each text
            # field is redacted (paths, model names and key names repeat, so mostly a dict
            # lookup) and the line rebuilt when one changed, instead of the whole line
            # scanned for every key on every request.
            changed = False
            for name, value in access.items():
                if value.__class__ is str:
                    clean = self._clean(value)
                    if clean != value:
                        access[name] = clean
                        changed = True
            if changed:
                record.msg, record.args = access_log.text_of(access), None
            return True
        text = record.getMessage()
        clean = redact_log(text, self.keys)
        if clean != text:
            record.msg, record.args = clean, None
        return True
