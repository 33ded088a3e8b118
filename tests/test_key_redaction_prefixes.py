"""Vendor text loses anything shaped like a key, whatever the vendor's prefix: short keys
(under 32 characters, so only the prefix rule can catch them) with every known prefix."""

import pytest

from freeapi.keys import redact, redact_log


@pytest.mark.parametrize("prefix", ["sk", "mk", "ak", "key", "tp"])
def test_a_short_key_with_a_vendor_prefix_is_masked(prefix):
    secret = f"{prefix}-Ab3dE6gH9k"  # 10 characters after the prefix: too short for the
    text = f'{{"error": "invalid api key {secret}."}}'  # generic long-token rule
    out = redact(text)
    assert secret not in out
    assert out == f'{{"error": "invalid api key {prefix}-...gH9k."}}'


@pytest.mark.parametrize("prefix", ["sk", "mk", "ak", "key", "tp"])
def test_a_short_prefixed_key_is_masked_in_log_lines(prefix):
    secret = f"{prefix}-Zy98Xw76Vu"
    assert secret not in redact_log(f"upstream said: bad key {secret}")


def test_words_with_a_dash_are_not_keys():
    text = "a well-known re-try of a one-off mk-up"
    assert redact(text) == text
