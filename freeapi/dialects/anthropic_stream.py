"""Anthropic Messages streams, for the /v1/messages door. Pure.

- `StreamTranslator` turns chat.completion.chunk dicts into Anthropic stream events
  (https://docs.anthropic.com/en/api/messages-streaming), one content block at a time:
  started, delta'd and stopped before the next one opens; exactly one message_start; tool
  arguments as input_json_delta; stop_reason tool_use after tool calls.
- `ChatToMessages` is the door's encoder over the pipeline's StreamRelay.
- `NativeMessages` is the pipeline's native pass-through for vendors that host an
  Anthropic-compatible endpoint: their request as the client sent it (model replaced), and
  their events as they come (`NativeEvents`: model put back, usage read for the ledger).
"""

from __future__ import annotations

import json
import re
import secrets
from json.encoder import encode_basestring as _string  # C, no ASCII escaping: like compact

from freeapi.dialects.anthropic import (STOP_REASONS, chat_usage, message_id, signature, sse,
                                        stream_error, usage_of)
from freeapi.errors import APIError
from freeapi.json_text import compact
from freeapi.jsonvalues import obj_at
from freeapi.keys import redact


_MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})


class StreamTranslator:
    """chat.completion.chunk dicts (first choice) -> Anthropic stream events as bytes."""

    def __init__(self, model: str):
        self.model = model
        self.started = False
        self.index = -1  # the open block's index; blocks are numbered from 0
        self.kind: str | None = None  # the open block: "thinking", "text", "tool_use"
        self.thinking: list[str] = []  # the open thinking block's text, for its signature
        self.tools: dict[int, int] = {}  # the vendor's tool-call index -> our block index
        self.stop: str | None = None
        self.usage: dict | None = None
        self.used_tools = False
        self.held: list[tuple[str, str]] = []  # text that came during a tool call
        self.reasoning: list[str] = []  # all of it, and the tool calls it led to (id, name,
        self.calls: list[dict] = []     # arguments), for the reasoning memory (answer())

    def _start(self, chunk: dict | None) -> bytes:
        self.started = True
        msg: dict[str, object] = {"id": message_id((chunk or {}).get("id")), "type": "message",
               "role": "assistant", "model": self.model, "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 0, "output_tokens": 0}}
        return sse("message_start", {"type": "message_start", "message": msg})

    def _close(self) -> bytes:
        if self.kind is None:
            return b""
        out = b""
        if self.kind == "thinking":
            out += sse("content_block_delta", {
                "type": "content_block_delta", "index": self.index,
                "delta": {"type": "signature_delta",
                          "signature": signature("".join(self.thinking))}})
            self.thinking = []
        self.kind = None
        return out + (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
                      + str(self.index).encode() + b'}\n\n')

    def _open(self, kind: str, block: dict) -> bytes:
        out = self._close()
        self.index += 1
        self.kind = kind
        return out + sse("content_block_start", {"type": "content_block_start",
                                                  "index": self.index, "content_block": block})

    def _delta(self, delta: dict) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                           "delta": delta})

    def _piece(self, kind: bytes, field: bytes, text: str) -> bytes:
        # The per-token event, written from a template: the generic encoder costs several
        # times this on every chunk of every stream.
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                + str(self.index).encode() + b',"delta":{"type":"' + kind + b'","' + field
                + b'":' + _string(text).encode("utf-8", "replace") + b'}}\n\n')

    def feed(self, chunk: dict) -> bytes:
        out = b"" if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices \
            and isinstance(choices[0], dict) else None
        if choice is None:
            return out
        delta = obj_at(choice, "delta")
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
            out += self._prose("thinking", reasoning)
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._prose("text", text)
        for tc in delta.get("tool_calls") or ():
            if isinstance(tc, dict):
                out += self._tool(tc)
        finish = choice.get("finish_reason")
        if finish:  # a vendor's odd value (a list, a number) is no reason we know
            self.stop = (STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str)
                         else "end_turn")
        return out

    def _prose(self, kind: str, text: str) -> bytes:
        if self.kind == "tool_use":
            # Text while a tool call's arguments may still be coming: closing the call now
            # would lose them, so the text waits until the call is done.
            self.held.append((kind, text))
            return b""
        out = b""
        if self.kind != kind:
            out += self._open(kind, {"type": "thinking", "thinking": "", "signature": ""}
                              if kind == "thinking" else {"type": "text", "text": ""})
        if kind == "thinking":
            self.thinking.append(text)
            return out + self._piece(b"thinking_delta", b"thinking", text)
        return out + self._piece(b"text_delta", b"text", text)

    def _release(self) -> bytes:
        """Close the open block, then send the text that waited for a tool call."""
        out = self._close()
        held, self.held = self.held, []
        for kind, text in held:
            out += self._prose(kind, text)
        return out

    def _tool(self, tc: dict) -> bytes:
        out = b""
        vendor_index = tc.get("index")
        slot = vendor_index if isinstance(vendor_index, int) else len(self.tools)
        fn = obj_at(tc, "function")
        if slot not in self.tools:
            # A new call. Vendors that repeat the name (or id) in later chunks of the same
            # call must not restart it, so only a new index opens a block.
            self.used_tools = True
            out += self._release()
            call_id = tc.get("id") or "toolu_" + secrets.token_hex(8)
            self.calls.append({"id": call_id, "name": fn.get("name") or "", "args": []})
            out += self._open("tool_use", {"type": "tool_use", "id": call_id,
                                           "name": fn.get("name") or "", "input": {}})
            self.tools[slot] = self.index
        elif self.tools[slot] != self.index or self.kind != "tool_use":
            return out  # arguments for a block already closed: the order cannot be kept
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            self.calls[-1]["args"].append(args)  # the open block is the last call
            out += self._piece(b"input_json_delta", b"partial_json", args)
        return out

    def answer(self) -> dict:
        """The reasoning and tool calls of the answer, chat.completion-shaped (what
        freeapi.reasoning.remember reads): each call with the id, name and arguments the
        client got, so it is filed under the same key as a non-stream answer's."""
        return {"choices": [{"index": 0, "message": {
            "role": "assistant", "reasoning_content": "".join(self.reasoning),
            "tool_calls": [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": "".join(c["args"])}} for c in self.calls]}}]}

    def finish(self) -> bytes:
        out = b"" if self.started else self._start(None)
        out += self._release() + self._close()
        stop = self.stop or "end_turn"
        if self.used_tools and stop == "end_turn":
            stop = "tool_use"
        elif stop == "tool_use" and not self.used_tools:
            stop = "end_turn"  # a vendor saying tool_calls with none: no tool to run
        usage = usage_of(self.usage)
        out += sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": usage})
        return out + _MESSAGE_STOP


class ChatToMessages:
    """The door's encoder over a StreamRelay (see freeapi/pipeline): vendor chat chunks in,
    Anthropic events out."""

    def __init__(self, relay, model: str):
        self.relay = relay
        self.translator = StreamTranslator(model)
        self.on_finish = None  # set by the pipeline: called with the answer at the end

    def feed(self, data: str) -> bytes:
        chunk = self.relay.chunk(data)
        if isinstance(chunk, dict):
            return self.translator.feed(chunk)
        if isinstance(chunk, str):  # a vendor's error report, keys already scrubbed
            try:
                report = json.loads(chunk)
            except ValueError:
                return b""
            detail = report.get("error") if isinstance(report, dict) else None
            if detail is not None:
                message = detail.get("message") if isinstance(detail, dict) else detail
                return stream_error(APIError(502, f"{self.relay.provider.name}: "
                                                  f"{str(message)[:500]}"))
        return b""

    def finish(self) -> bytes:
        self.relay.finish()
        out = self.translator.finish()
        if self.on_finish is not None:
            on_finish, self.on_finish = self.on_finish, None
            on_finish(self.translator.answer())
        return out


_TYPE = re.compile(r'^\{\s*"type"\s*:\s*"([a-z_]+)"')


class NativeEvents:
    """A native Anthropic stream for the client: each event named by its `type`, the model
    put back in message_start, usage read from message_start and message_delta."""

    def __init__(self, model: str, keys=()):
        self.model = model
        self.keys = keys
        self.finished = False
        self._usage: dict = {}

    @property
    def usage(self) -> dict | None:
        return chat_usage(self._usage) if self._usage else None

    def feed(self, data: str) -> bytes:
        if data.startswith('{"type":"content_block_delta"'):  # most events: as they are
            return b"event: content_block_delta\ndata: " + data.encode() + b"\n\n"
        m = _TYPE.match(data)
        kind = m.group(1) if m else None
        if kind in (None, "message_start", "message_delta", "error"):
            try:
                event = json.loads(data)
            except ValueError:
                return b""
            if not isinstance(event, dict):
                return b""
            kind = event.get("type")
            if kind == "message_start" and isinstance(event.get("message"), dict):
                event["message"]["model"] = self.model
                self._note(event["message"].get("usage"))
                data = compact(event)
            elif kind == "message_delta":
                self._note(event.get("usage"))
            elif kind == "error":
                data = redact(data, self.keys)
        if not isinstance(kind, str):
            return b""
        if kind == "message_stop":
            self.finished = True
        return b"event: " + kind.encode() + b"\ndata: " + data.encode() + b"\n\n"

    def _note(self, usage):
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int)})

    def finish(self) -> bytes:
        return b""


class NativeMessages:
    """The door's native pass-through (see freeapi/pipeline): the client's own request."""

    def __init__(self, body: dict, path: str = "/v1/messages"):
        self.body = body
        self.path = path

    def request(self, provider, body: dict, key):
        return provider.messages_request(body, key, self.path)

    def answer(self, raw: bytes, model: str) -> tuple[dict, dict | None]:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if "model" in data:
            data["model"] = model
        return data, chat_usage(data.get("usage"))

    def relay(self, model: str, keys=()):
        return NativeEvents(model, keys)
