"""The pooled HTTP/1.1 client: body decoding byte by byte, and the connection's buffer."""

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


@pytest.mark.parametrize("size", [b"-6", b"-0", b"0x10", b"+5", b" 5", b"5_0", b"\xd9\xa5",
                                  b"1" * 17, b"", b"5;" + b"e" * 5000])
def test_a_chunk_size_that_is_not_plain_hex_is_a_framing_error(size):
    """`-6` once made the de-chunker walk backwards forever; Python's int() also takes
    `0x`, signs, spaces, underscores and non-ASCII digits, which are not HTTP."""
    with pytest.raises(UpstreamError):
        _Dechunker().feed(b"6\r\nabcdef\r\n" + size + b"\r\nabcdef\r\n0\r\n\r\n")


def test_chunk_extensions_and_trailers_are_accepted_within_bounds():
    d = _Dechunker()
    assert d.feed(b"3 ;name=value\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n") == b"abc"
    assert d.done and not d.extra
    with pytest.raises(UpstreamError):  # an endless trailer section
        d = _Dechunker()
        d.feed(b"0\r\n")
        for _ in range(2000):
            d.feed(b"X-Pad: " + b"p" * 60 + b"\r\n")


# -- the connection's buffer (freeapi/transport.py) ----------------------------------------

async def test_a_fast_vendor_is_not_read_ahead_of_a_slow_reader():
    """A vendor that sends 8 MB at once: while nobody takes the bytes, the connection stops
    reading past HIGH_WATER (the rest waits in the kernel and at the vendor), and reading
    resumes as they are taken, until every byte has arrived in order."""
    import asyncio

    from freeapi.transport import HIGH_WATER, open_conn

    payload = bytes(range(256)) * (8 * 4096)  # 8 MB

    async def serve(reader, writer):
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await open_conn("127.0.0.1", port)
    try:
        for _ in range(50):  # give the loop time to read all it would
            await asyncio.sleep(0.01)
        assert 0 < conn.buffered < HIGH_WATER + 1024 * 1024  # one socket read past the mark
        got = []
        while True:
            await conn.wait()
            data = conn.take()
            if not data:
                break
            assert len(data) <= HIGH_WATER
            got.append(data)
        assert b"".join(got) == payload
    finally:
        conn.close()
        server.close()
        await server.wait_closed()
