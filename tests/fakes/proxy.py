"""A fake outgoing HTTP proxy on 127.0.0.1 (the `proxy_server` fixture of conftest.py)."""

import asyncio
import base64
from urllib.parse import urlsplit


class CountingProxy:
    """A tiny HTTP proxy: CONNECT tunnels, and absolute-form requests forwarded one per
    connection; it remembers what passed through and the credentials it was given."""

    def __init__(self, credentials: str | None = None, tunnel: bool = True,
                 refusal: bytes = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"):
        self.credentials = credentials
        self.tunnel = tunnel  # False: every CONNECT is recorded and answered `refusal`
        self.refusal = refusal
        self.connects: list[str] = []
        self.forwarded: list[str] = []
        self.auth_seen: list[str | None] = []
        self.tasks: set = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def close(self):
        self.server.close()
        for task in self.tasks:
            task.cancel()

    async def _handle(self, reader, writer):
        self.tasks.add(asyncio.current_task())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            auth = headers.get("proxy-authorization")
            self.auth_seen.append(auth)
            if self.credentials is not None and auth != "Basic " + base64.b64encode(
                    self.credentials.encode()).decode():
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=x\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                self.connects.append(target)
                if not self.tunnel:
                    writer.write(self.refusal)
                    await writer.drain()
                    return
                host, port = target.rsplit(":", 1)
                up_r, up_w = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
                return
            self.forwarded.append(f"{method} {target}")
            url = urlsplit(target)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            up_r, up_w = await asyncio.open_connection(url.hostname, url.port)
            out = [f"{method} {url.path}{'?' + url.query if url.query else ''} HTTP/1.1"]
            out += [line for line in lines[1:] if line and not
                    line.lower().startswith(("proxy-authorization:", "connection:"))]
            out.append("Connection: close")
            up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await self._pipe(up_r, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src, dst):
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            try:
                dst.close()
            except RuntimeError:
                pass
