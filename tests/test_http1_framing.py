"""How an upstream response body is delimited (RFC 9112 6.3): exactly `chunked` is chunked;
any other transfer coding (`gzip, chunked`, a doubled `chunked`, `identity`) is a framing
error, since the gateway asks for identity and decodes nothing but chunked."""

import pytest
from hypothesis import given, settings, strategies as st

from freeapi.http1 import Headers, body_framing
from freeapi.errors import UpstreamError


def headers(**values):
    h = Headers()
    for name, value in values.items():
        h[name.replace("_", "-").lower()] = value
    return h


@pytest.mark.parametrize("te", ["chunked", "Chunked", " chunked ", "CHUNKED"])
def test_exactly_chunked_is_chunked(te):
    assert body_framing(200, headers(transfer_encoding=te)) == ("chunked", 0)


@pytest.mark.parametrize("te", ["gzip, chunked", "chunked, chunked", "deflate,chunked",
                                "chunked, gzip", "identity", "gzip", "", "x-custom"])
def test_any_other_transfer_coding_is_refused(te):
    with pytest.raises(UpstreamError):
        body_framing(200, headers(transfer_encoding=te))


def test_chunked_wins_over_content_length():
    assert body_framing(200, headers(transfer_encoding="chunked",
                                     content_length="10")) == ("chunked", 0)


@pytest.mark.parametrize("status", [100, 101, 199, 204, 304])
def test_bodiless_statuses_have_no_body_whatever_the_headers(status):
    assert body_framing(status, headers(transfer_encoding="gzip, chunked")) == ("none", 0)


def test_length_and_close():
    assert body_framing(200, headers(content_length="42")) == ("length", 42)
    assert body_framing(502, headers()) == ("close", 0)


coding = st.sampled_from(["chunked", "gzip", "deflate", "br", "identity", "compress"])


@settings(max_examples=300, deadline=None)
@given(codings=st.lists(coding, min_size=1, max_size=4),
       sep=st.sampled_from([",", ", ", " ,\t"]))
def test_transfer_encoding_lists_match_the_rule(codings, sep):
    te = sep.join(codings)
    try:
        got = body_framing(200, headers(transfer_encoding=te))
    except UpstreamError:
        assert codings != ["chunked"]
        return
    assert codings == ["chunked"] and got == ("chunked", 0)
