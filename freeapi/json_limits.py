"""Bounds on a JSON request body, checked over its raw bytes at C speed (bytes.count,
bytes.replace, bytes.translate), never by walking the parsed body in Python.

A body is parsed before the vendor authenticates it (a pass-through gateway has no
credentials of its own to check), so what parsing costs must follow from the bytes alone:

- `value_bound(raw)`: an upper bound on the JSON values in the body, counted before
  json.loads. Every value but the first follows a `,` or is the first item of a container
  (`[`, `{`), so values <= 1 + commas + openers; those inside strings are counted too, which
  only makes the bound looser. server.max_json_values caps it: json.loads' time and memory
  grow with the values (a 48 MiB `[{},{},...]` is 16M dicts: 3 s and 1.2 GB), not the bytes.
- `deeper_than(raw, limit)`: whether objects and arrays nest more than `limit` levels, for a
  body json.loads accepted. Strings are dropped first (escapes, then quote pairs), the rest
  reduced to brackets as +1/-1 bytes, and the deepest point is the largest running sum
  (itertools.accumulate and max, in C). That text is at most two bytes per value, so it is
  bounded by the value cap: 1M brackets take ~0.1 s. (Peeling empty pairs a level per
  bytes.replace pass was as fast on wide bodies but took 1.6 s on 3,900 chains 128 deep.)
"""

from __future__ import annotations

from array import array
from itertools import accumulate

_STRUCTURE = b'[]{}"'
# bytes.translate: everything but brackets and quotes deleted; [ { become 1 and ] } become
# 0xff, which an array of signed bytes reads as -1.
_DROP = bytes(b for b in range(256) if b not in _STRUCTURE)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def value_bound(raw: bytes) -> int:
    """At least the number of JSON values in `raw` (see the module's docstring)."""
    return 1 + raw.count(b",") + raw.count(b"[") + raw.count(b"{")


def _outside_strings(raw: bytes) -> bytes:
    """The brackets of `raw` (a valid JSON text) that are not inside a string, as 1 (an
    opening one) and 0xff (a closing one)."""
    # (bytes.find, not `in`: on CPython 3.11 a bytes needle first fails as an integer, an
    # exception made and cleared, costing more than the search)
    if raw.find(b"\\") >= 0:
        # Left to right, as JSON reads escapes: `\\` first, so that in `\\"` the quote is
        # not taken for an escaped one; then every remaining `"` delimits a string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = raw.translate(_STEPS, _DROP)
    # Two adjacent quotes enclose nothing that matters here: a string without brackets, or
    # the bracket-free gap between two strings. Most strings go in this one C pass.
    text = text.replace(b'""', b"")
    if text.find(b'"') >= 0:  # strings holding brackets: rare, each costs one list item here
        text = b"".join(text.split(b'"')[::2])
    return text


def deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the containers of `raw`, a JSON text json.loads accepted, nest more than
    `limit` levels deep."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # not enough brackets to be that deep, even all nested
    text = _outside_strings(raw)
    return bool(text) and max(accumulate(array("b", text))) > limit
