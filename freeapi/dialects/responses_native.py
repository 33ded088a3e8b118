"""Pass-through to a vendor's own Responses API (a provider's `responses_url`, set by config
`responses_base_url`): the client's request goes to the vendor as it came, model name
rewritten, and the vendor's answer or events come back with the gateway's response id and
the client's model name. Pure: no Tornado.

The gateway keeps `store` / `previous_response_id` to itself (its own stored responses,
scoped to the caller; a continuation is translated, since the history is kept as chat
messages), so neither is sent on: vendors whose Responses API is stateless (DeepSeek's)
need not know them.
"""

from __future__ import annotations

import json
import time

from freeapi.dialects.responses import reasoning_text
from freeapi.dialects.responses_stream import sse
from freeapi.keys import redact
from freeapi.provider import UpstreamRequest
from freeapi.jsonvalues import obj_at

_KEPT_HERE = ("store", "previous_response_id")
_FINAL = ("response.completed", "response.incomplete", "response.failed")


def chat_usage(u) -> dict | None:
    """Responses usage -> chat-completions usage, for the ledger and token limits."""
    if not isinstance(u, dict):
        return None
    n = lambda v: v if isinstance(v, int) and not isinstance(v, bool) else 0  # noqa: E731
    inp = obj_at(u, "input_tokens_details")
    out = obj_at(u, "output_tokens_details")
    prompt, completion = n(u.get("input_tokens")), n(u.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": n(u.get("total_tokens")) or prompt + completion,
            "prompt_tokens_details": {"cached_tokens": n(inp.get("cached_tokens"))},
            "completion_tokens_details": {"reasoning_tokens": n(out.get("reasoning_tokens"))}}


def remembered(response) -> dict:
    """A vendor's Response as freeapi.reasoning.remember reads an answer: its function calls
    with its reasoning (text, and the reasoning items as they came, put back verbatim into
    the next request when a client drops them)."""
    output = response.get("output") if isinstance(response, dict) else None
    items, calls = [], []
    for item in output if isinstance(output, list) else ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "reasoning":
            items.append(item)
        elif kind == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function", "function": {
                "name": item.get("name"), "arguments": item.get("arguments")}})
    return {"role": "assistant", "reasoning_content": "".join(map(reasoning_text, items)),
            "reasoning_items": items, "tool_calls": calls}


class NativeResponses:
    """The pipeline's `native=` object for the /v1/responses door."""

    def __init__(self, body: dict, rid: str, on_final=None):
        self.body = {k: v for k, v in body.items() if k not in _KEPT_HERE}
        self.rid = rid
        self.on_final = on_final  # called with the finished Response object
        self.events: NativeEvents | None = None

    def request(self, provider, body: dict, key) -> UpstreamRequest | None:
        url = getattr(provider, "responses_url", None)
        if not url:
            return None
        headers = {"Content-Type": "application/json", **provider.auth_headers(key)}
        if body.get("stream"):
            headers["Accept"] = "text/event-stream"
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return UpstreamRequest("POST", url + "/responses", headers, payload)

    def _own(self, obj: dict, model: str) -> dict:
        obj["id"] = self.rid
        obj["model"] = model
        return obj

    def answer(self, raw: bytes, model: str) -> tuple[dict, dict | None]:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        self._own(data, model)
        if self.on_final is not None:
            self.on_final(data)
        return data, chat_usage(data.get("usage"))

    def relay(self, model: str, keys=()) -> "NativeEvents":
        self.events = NativeEvents(self, model, keys)
        return self.events


class NativeEvents:
    """The vendor's Responses events to the client: ids and model rewritten in the
    Response snapshots, usage noted for the ledger, keys scrubbed from error reports."""

    def __init__(self, native: NativeResponses, model: str, keys=()):
        self.native, self.model, self.keys = native, model, keys
        self.usage: dict | None = None
        self.finished = False  # a final event came: the ledger counts the stream complete
        self.seq = -1
        self.snapshot: dict | None = None
        self.ended = False  # finished, or failed: nothing more goes out
        # Set by the pipeline when the door remembers reasoning: called with the answer
        # (`remembered`) at the end, before the final event, which waits for it in `held`.
        self.on_finish = None
        self.held = b""

    def feed(self, data: str) -> bytes:
        try:
            ev = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(ev, dict) or self.ended:
            return b""
        if not isinstance(ev.get("type"), str):  # an OpenAI-style `{"error": ...}` report
            err = obj_at(ev, "error")
            return self.fail(redact(str(err.get("message") or ev)[:500], self.keys))
        if isinstance(ev.get("sequence_number"), int):
            self.seq = ev["sequence_number"]
        response = ev.get("response")
        if isinstance(response, dict):
            self.snapshot = self.native._own(response, self.model)
            if isinstance(response.get("usage"), dict):
                self.usage = chat_usage(response["usage"])
        if ev["type"] in _FINAL:
            self.ended = True
            self.finished = ev["type"] != "response.failed"
            if self.finished and self.native.on_final is not None and self.snapshot:
                self.native.on_final(self.snapshot)
        out = sse(ev)
        if ev["type"] == "error" or ev["type"] == "response.failed":
            out = redact(out.decode(), self.keys).encode()
        if self.finished and self.on_finish is not None:
            self.held = out  # sent by finish(), once the reasoning is remembered
            return b""
        return out

    def finish(self) -> bytes:
        if self.held:
            held, self.held = self.held, b""
            on_finish, self.on_finish = self.on_finish, None
            on_finish(remembered(self.snapshot))
            return held
        if self.ended:
            return b""
        return self.fail("the vendor's stream ended without its final event")

    def fail(self, message: str, code: str = "server_error") -> bytes:
        """End the client's stream with `response.failed` (after what the vendor sent)."""
        if self.held:  # the vendor had finished: its final event is the end
            return self.finish()
        self.seq += 1
        self.ended = True
        response = dict(self.snapshot or {
            "id": self.native.rid, "object": "response", "created_at": int(time.time()),
            "model": self.model, "output": [], "tools": [], "tool_choice": "auto",
            "parallel_tool_calls": True}, status="failed",
            error={"code": code, "message": message})
        return sse({"type": "response.failed", "sequence_number": self.seq,
                    "response": response})
