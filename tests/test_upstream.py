"""The pooled HTTP/1.1 client's body decoding, byte by byte."""

import pytest

from freeapi.http1 import Dechunker as _Dechunker
from freeapi.errors import UpstreamError

BODY = (b"7\r\ndata: a\r\n"
        b"10;ext=1\r\n0123456789abcdef\r\n"
        b"3\r\n\r\n\n\r\n"
        b"0\r\nX-Trailer: 1\r\n\r\n")
PAYLOAD = b"data: a" + b"0123456789abcdef" + b"\r\n\n"


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64])
def test_dechunker_any_split(step):
    d, out = _Dechunker(), b""
    for i in range(0, len(BODY), step):
        assert not d.done
        out += d.feed(BODY[i:i + step])
    assert d.done and not d.extra and out == PAYLOAD


def test_dechunker_every_two_way_split():
    for cut in range(len(BODY) + 1):
        d = _Dechunker()
        assert d.feed(BODY[:cut]) + d.feed(BODY[cut:]) == PAYLOAD and d.done


def test_dechunker_notices_bytes_past_the_end():
    d = _Dechunker()
    d.feed(b"1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK")
    assert d.done and d.extra


@pytest.mark.parametrize("bad", [b"zz\r\n", b"2\r\nabXY", b"9" * 70000])
def test_dechunker_refuses_bad_framing(bad):
    with pytest.raises(UpstreamError):
        _Dechunker().feed(bad)
