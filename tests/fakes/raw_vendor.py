"""A hostile vendor on a raw socket: it answers each request with exactly the bytes a test
scripts, however wrong (negative or conflicting lengths, bad chunk sizes, bytes past the
end, endless lines, early closes), which no HTTP framework would let a fake send.

    vendor = RawVendor(lambda req: [head(200, {"Content-Length": "-1"}), body, CLOSE])

A script returns steps: bytes are written, a number sleeps that many seconds, CLOSE closes
the connection, HOLD keeps it open without writing until the gateway closes it. After the
steps the connection waits for the next request (keep-alive), as a real server's would.
The fake never logs or echoes a key unless a test's script does.
"""

from __future__ import annotations

import asyncio
import json

CLOSE = object()
HOLD = object()


class RawRequest:
    def __init__(self, method: str, path: str, headers: dict, body: bytes, conn: int, nth: int):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.conn = conn  # which connection (0, 1, ...) it came on
        self.nth = nth  # its position on that connection

    @property
    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}

    @property
    def last_message(self) -> str:
        messages = self.json.get("messages") or [{}]
        content = messages[-1].get("content")
        return content if isinstance(content, str) else ""


class RawVendor:
    def __init__(self, script):
        self.script = script
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.closed_by_peer = 0  # connections the gateway closed
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set = set()
        self.url = ""

    async def start(self) -> "RawVendor":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self):
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._tasks.add(asyncio.current_task())
        conn, self.connections = self.connections, self.connections + 1
        nth = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_peer += 1
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = RawRequest(method, path, headers, body, conn, nth)
                nth += 1
                self.requests.append(req)
                for step in self.script(req):
                    if step is CLOSE:
                        return
                    if step is HOLD:
                        await reader.read()  # until the gateway gives up and closes
                        self.closed_by_peer += 1
                        return
                    if isinstance(step, (int, float)):
                        await asyncio.sleep(step)
                        continue
                    writer.write(step)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_peer += 1
        finally:
            writer.close()
            self._tasks.discard(asyncio.current_task())


# -- building answers ---------------------------------------------------------------------

def head(status: int = 200, headers: dict | None = None, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def completion(text: str, model: str = "deepseek-chat") -> bytes:
    """A chat.completion body as DeepSeek's documented non-stream answer."""
    return json.dumps({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()


def json_answer(body: bytes, status: int = 200, **headers) -> bytes:
    """A well-framed JSON answer."""
    return head(status, {"Content-Type": "application/json", "Content-Length": len(body),
                         **headers}) + body


def sse(*datas: str) -> bytes:
    return b"".join(b"data: " + d.encode() + b"\n\n" for d in datas)


def chunk_events(texts, model: str = "deepseek-chat", done: bool = True) -> bytes:
    """An event stream body of chat.completion.chunk events for `texts`, then [DONE]."""
    out = []
    for i, t in enumerate(texts):
        out.append(json.dumps({"id": "chatcmpl-raw", "object": "chat.completion.chunk",
                               "created": 1, "model": model, "choices": [{
                                   "index": 0, "delta": {"content": t},
                                   "finish_reason": "stop" if i == len(texts) - 1 else None}]}))
    if done:
        out.append("[DONE]")
    return sse(*out)


def chunked(*pieces: bytes) -> bytes:
    """`pieces` in chunked transfer encoding, with the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


SSE_HEAD = {"Content-Type": "text/event-stream; charset=utf-8"}
