"""A multi-megabyte reply is parsed once, not again from its start as each piece of it
arrives (which made its cost grow with the square of its size)."""

from __future__ import annotations

import os

from freeapi.store import resp
from freeapi.store.resp import ReplyReader, RespClient, encode
from tests.conftest import REDIS_URL

ITEMS = 40_000  # 40k items of 100 bytes: a ~4.3 MB reply, ~70 reads of 64 KB


def _counting_parse(monkeypatch) -> list:
    calls = [0]
    real = resp.parse

    def counted(buf, pos):
        calls[0] += 1
        return real(buf, pos)
    monkeypatch.setattr(resp, "parse", counted)
    return calls


async def test_a_multi_megabyte_reply_is_parsed_in_time_linear_in_its_size(monkeypatch):
    client, key = RespClient(REDIS_URL, 10), f"freeapi-test:big:{os.urandom(6).hex()}"
    items = [f"{i:08d}".encode() * 12 + b"ab\r\n" for i in range(ITEMS)]
    try:
        for at in range(0, ITEMS, 5000):
            await client.execute("RPUSH", key, *items[at:at + 5000])
        calls = _counting_parse(monkeypatch)
        got = await client.execute("LRANGE", key, 0, -1)
        assert got == items  # every item, in order, CRLF inside items kept
        # One parse per item, plus at most one retry of an item cut by each read.
        assert calls[0] <= ITEMS + ITEMS // 100, calls[0]
        assert await client.execute("PING") == "PONG"  # the connection is still in step
    finally:
        await client.execute("DEL", key)
        client.close()


def test_reply_reader_takes_replies_cut_at_every_byte():
    raw = (b"*3\r\n+OK\r\n*2\r\n$3\r\nab\n\r\n-ERR no\r\n*0\r\n:7\r\n$-1\r\n*-1\r\n"
           + encode(["hello"])[4:])
    whole = ReplyReader().feed(raw)
    assert whole[0][:2] == ["OK", [b"ab\n", whole[0][1][1]]] and whole[0][2] == []
    assert str(whole[0][1][1]) == "ERR no"
    assert whole[1:] == [7, None, None, b"hello"]
    for cut in range(1, len(raw)):
        r = ReplyReader()
        got = r.feed(raw[:cut]) + r.feed(raw[cut:])
        assert repr(got) == repr(whole), cut
    r = ReplyReader()
    byte_by_byte = [v for i in range(len(raw)) for v in r.feed(raw[i:i + 1])]
    assert repr(byte_by_byte) == repr(whole)
