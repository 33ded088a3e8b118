"""JSON text as the gateway writes it: compact (no spaces), text as it is (not \\u-escaped),
NaN and Infinity written as json.dumps writes them.

One encoder, built once. json.dumps with arguments builds a JSONEncoder and then a C
encoder on every call: a third of what a chunk the relay parses and writes again cost
(7.00 -> 4.69 us; bench/README.md, "Where a stream's CPU goes"). Without circular-reference
checks: what is written is read JSON or built from it, neither of which has cycles (a
cycle would end in RecursionError instead of json's ValueError)."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]


def _refuse(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


if c_make_encoder is not None:
    # (markers, default, encoder, indent, key separator, item separator, sort_keys,
    # skipkeys, allow_nan): the arguments json.dumps(..., ensure_ascii=False,
    # separators=(",", ":"), check_circular=False) hands it
    _ENCODER = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False,
                              True)

    def compact(obj) -> str:
        """json.dumps(obj, ensure_ascii=False, separators=(",", ":"))."""
        return "".join(_ENCODER(obj, 0))
else:  # an interpreter without json's C accelerator
    compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                               check_circular=False).encode
