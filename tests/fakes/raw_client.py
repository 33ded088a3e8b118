"""A hostile client on a raw socket: it sends exactly the bytes a test says, when it says
(headers without a body, a body that stalls, a connection that never sends anything), and
reads what the gateway answers or whether it hangs up."""

from __future__ import annotations

import asyncio


class RawClient:
    """A client on a raw socket that sends exactly what a test says, when it says."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, base: str) -> "RawClient":
        host, port = base.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes):
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 5) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one response with a Content-Length."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers.get("content-length", 0))), timeout)
        return int(lines[0].split()[1]), headers, body

    async def closed_within(self, timeout: float) -> bool:
        """Whether the gateway closes the connection within `timeout` seconds (anything
        it sends first is read and dropped)."""
        try:
            while True:
                if not await asyncio.wait_for(self.reader.read(65536), timeout):
                    return True
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self):
        self.writer.close()
