"""What the client sees of an upstream answer: model name, display mode, usage placement.

Pure functions over parsed chunks; the handler feeds SSE `data` strings in and writes the
returned bytes out. Chunks are only parsed when something about them must change.
"""

from __future__ import annotations

import json

from freeapi.json_text import compact
from freeapi.keys import redact
from freeapi.provider import Provider
from freeapi.routing import Route
from freeapi.sse import event

THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"


# The decoder's scanner (C), called as JSONDecoder.raw_decode calls it, without that
# method's frame around it.
_SCAN = json.JSONDecoder().scan_once


def _loads(data: str):
    """json.loads for an event's data, without its two whitespace regexes per call when
    the text starts with a value (a re-encoding door parses every chunk)."""
    if not data or data[0] in " \t\r\n":
        return json.loads(data)
    try:
        value, end = _SCAN(data, 0)
    except StopIteration as e:  # what raw_decode makes of it
        raise json.JSONDecodeError("Expecting value", data, e.value) from None
    if end != len(data) and data[end:].strip(" \t\r\n"):  # JSON's whitespace only
        raise ValueError("extra data after the JSON value")
    return value


_dumps = compact


def _blank(delta: dict) -> bool:
    return all(v in (None, "", []) for v in delta.values())


class StreamRelay:
    def __init__(self, route: Route, requested_model: str, include_usage: bool, keys=()):
        self.provider = route.provider
        self.keys = keys  # scrubbed from vendor error events before they are relayed
        self._normalize = route.provider.chunk_normalizer()
        # `free` answers carry the model that served (Route.shown_as), not the name asked
        self.model = requested_model = route.shown_as or requested_model
        self.display = route.display
        self.include_usage = include_usage
        # We asked for usage the client did not: its usage-only chunk is ours alone.
        self._hide_usage = route.provider.usage_on_request and not include_usage
        self.parse_all = (requested_model != route.upstream_model or route.display is not None
                          or route.provider.rewrites_chunks)
        # Only the model's name to change (an alias, a retired name, `free`): it is replaced
        # in the vendor's text, `"model":"<its name>"` once in a chunk, which is then passed
        # on as it came, not parsed and written again (bench/relay_chunks.py).
        self._rename: tuple[str, str] | None = None
        if self.parse_all and route.display is None and not route.provider.rewrites_chunks:
            self._rename = (f'"model":{_dumps(route.upstream_model)}',
                            f'"model":{_dumps(self.model)}')
        self._own_errors = type(route.provider).chunk_error is not Provider.chunk_error
        self._thinking: set[int] = set()  # choice indexes inside an open <think> (fold)
        self._usage_chunk_sent = False
        self._usage = None
        self._last: dict | None = None
        self.finished = False  # finish() ran: the stream ended normally
        self.collect: list[str] | None = None  # every event's data, when the answer is kept
        self.extra: dict | None = None  # fields added to every chunk (parse_all must be on)
        # -silent: the reasoning the client does not see and the tool calls it belongs to,
        # per choice, for freeapi.reasoning.remember; `on_finish(answer())` runs at the end.
        self._hidden: dict[int, list] = {}
        self._calls: dict[int, list] = {}
        self.on_finish = None

    def feed(self, data: str) -> bytes:
        """One upstream event's data -> bytes for the client (possibly empty)."""
        if self.collect is not None:
            self.collect.append(data)
        if not self.parse_all:
            if '"usage"' not in data and '"error"' not in data:
                # The usual chunk, relayed as it came: two scans of it and sse.event's
                # encoding inlined (this runs for every event of every stream).
                try:
                    return b"data: " + data.encode() + b"\n\n"
                except UnicodeEncodeError:
                    return event(data)
            has_usage = '"usage":{' in data or '"usage": {' in data
            if not (has_usage and self.include_usage):
                if has_usage:  # the usage ledger wants the real numbers all the same
                    if self._peek_usage(data) and self._hide_usage:
                        return b""
                if '"error"' not in data:
                    return event(data)
                if not self._own_errors:
                    return event(redact(data, self.keys))
                # (a vendor error the provider reads for its codes: parsed below)
        elif (self._rename is not None and self.collect is None and not self.extra
              and '"usage"' not in data and '"error"' not in data):
            vendors, ours = self._rename
            # The one `"model":` of the chunk, with the vendor's name: else (spaced, escaped,
            # absent, another name, a nested one too) parsed below.
            if data.count(vendors) == 1 and data.count('"model":') == 1:
                return event(data.replace(vendors, ours))
        out = self._parsed(data)
        if out is None:
            return b""
        return event(out if isinstance(out, str) else _dumps(out))

    @property
    def passes_runs(self) -> bool:
        """Whether `block` can pass anything on (nothing in the chunks to change)."""
        return not self.parse_all and self.collect is None

    def block(self, raw: bytes) -> int:
        """A run of whole one-line events as the vendor sent them (sse.Run) -> how many of
        its bytes, whole events from the start, feed would pass on unchanged (the usual
        chunks of a stream that needs no rewriting): those go to the client as they are,
        the rest through feed one by one (usage or an error to read, `[DONE]`; all of
        them for a conversation or a display mode)."""
        if not self.passes_runs:
            return 0
        end = len(raw)
        for mark in (b'"usage"', b'"error"', b"[DONE]"):
            at = raw.find(mark, 0, end)
            if at >= 0:
                end = at
        if end == len(raw):
            return end
        start = raw.rfind(b"\n\n", 0, end)  # the end of the event before the mark's
        return start + 2 if start >= 0 else 0

    def chunk(self, data: str) -> dict | str | None:
        """One upstream event's data -> the chunk as the client should see it, parsed (for
        doors that re-encode chunks): a dict, or a str to pass on as it is (not JSON, or a
        vendor error report, keys scrubbed), or None when nothing is left of it."""
        if self.collect is not None:
            self.collect.append(data)
        return self._parsed(data)

    def _parsed(self, data: str) -> dict | str | None:
        try:
            chunk = _loads(data)
        except ValueError:
            return data
        if not isinstance(chunk, dict) or ("error" in chunk and "choices" not in chunk):
            if isinstance(chunk, dict) and self._own_errors:
                # The vendor's error codes say what a mid-stream failure means (GLM's 1301
                # is a content filter, not a server error): relay it in OpenAI's terms.
                err = self.provider.chunk_error(chunk, self.keys)
                if err is not None:
                    return _dumps(err.to_dict())
            return redact(data, self.keys)
        chunk = self._normalize(chunk)
        if "error" in chunk and "choices" not in chunk:  # the provider found a failure
            return redact(_dumps(chunk), self.keys)
        chunk["model"] = self.model
        if self.extra:
            chunk.update(self.extra)
        choices = chunk.get("choices")
        if isinstance(choices, list):
            if self.display:
                choices = self._display(choices)
                if not choices and chunk.get("choices") and not chunk.get("usage"):
                    return None
                chunk["choices"] = choices
            if chunk.get("usage"):
                self._usage = chunk["usage"]
                if not choices:
                    if self._hide_usage:
                        return None
                    self._usage_chunk_sent = True
        self._last = chunk
        return chunk

    def _peek_usage(self, data: str) -> bool:
        """Note the usage; True when the chunk carries nothing else (no choices)."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return False
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
            return not chunk.get("choices")
        return False

    @property
    def usage(self) -> dict | None:
        """The vendor's usage object for this stream, if it sent one."""
        return self._usage

    def _display(self, choices: list) -> list:
        kept = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                kept.append(choice)
                continue
            reasoning = delta.pop("reasoning_content", None)
            if self.display == "silent":
                self._keep(choice.get("index", 0), reasoning, delta.get("tool_calls"))
            elif self.display == "fold":
                idx = choice.get("index", 0)
                content = delta.get("content")
                out = ""
                if reasoning:
                    if idx not in self._thinking:
                        out += THINK_OPEN
                        self._thinking.add(idx)
                    out += reasoning
                if (content or choice.get("finish_reason")) and idx in self._thinking:
                    out += THINK_CLOSE
                    self._thinking.discard(idx)
                if out:
                    delta["content"] = out + (content or "")
            if _blank(delta) and not choice.get("finish_reason") and not choice.get("logprobs"):
                continue
            kept.append(choice)
        return kept

    def _keep(self, idx: int, reasoning, calls):
        if isinstance(reasoning, str) and reasoning:
            self._hidden.setdefault(idx, []).append(reasoning)
        for call in calls if isinstance(calls, list) else ():
            at = call.get("index", 0) if isinstance(call, dict) else None
            # The calls as the client assembles them (reasoning.remember files the
            # reasoning under each call's id, name and arguments).
            if isinstance(at, int) and not isinstance(at, bool) and 0 <= at < 256 \
                    and isinstance(call.get("function") or {}, dict):
                _merge_tool_call(self._calls.setdefault(idx, []), call)

    def answer(self) -> dict:
        """What a -silent stream hid: a chat.completion-shaped summary of each choice's
        reasoning and tool calls (freeapi.reasoning.remember reads it)."""
        return {"choices": [
            {"index": i, "message": {
                "role": "assistant", "reasoning_content": "".join(self._hidden.get(i, ())),
                "tool_calls": self._calls[i]}}
            for i in sorted(self._calls)]}

    def finish(self) -> bytes:
        """Anything owed before `[DONE]`: a closing think tag, OpenAI's usage chunk."""
        self.finished = True
        if self.on_finish is not None:
            on_finish, self.on_finish = self.on_finish, None
            on_finish(self.answer())
        out = b""
        base = {k: v for k, v in (self._last or {}).items() if k in ("id", "object", "created")}
        base.setdefault("object", "chat.completion.chunk")
        base["model"] = self.model
        base.update(self.extra or {})
        if self._thinking:
            choices = [{"index": i, "delta": {"content": THINK_CLOSE}, "finish_reason": None}
                       for i in sorted(self._thinking)]
            self._thinking.clear()
            out += event(_dumps({**base, "choices": choices}))
        if self.include_usage and self._usage and not self._usage_chunk_sent:
            out += event(_dumps({**base, "choices": [], "usage": self._usage}))
        return out


def unchanged(route: Route, requested_model: str) -> bool:
    """Whether a non-stream answer reaches the client exactly as the vendor sent it."""
    provider = route.provider
    rewrites = provider.rewrites_completions
    if rewrites is None:
        rewrites = type(provider).normalize_completion is not Provider.normalize_completion
    return (route.display is None
            and (route.shown_as or requested_model) == route.upstream_model and not rewrites)


def complete(data: dict, route: Route, requested_model: str) -> dict:
    """A non-stream `chat.completion` for the client."""
    data = route.provider.normalize_completion(data)
    data["model"] = route.shown_as or requested_model
    if route.display:
        for choice in data.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            reasoning = message.pop("reasoning_content", None)
            if route.display == "fold" and reasoning:
                message["content"] = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{message.get('content') or ''}"
    return data


def assemble(chunks: list[dict]) -> dict:
    """One `chat.completion` from a stream's chunks, for models a vendor only streams."""
    out: dict = {"object": "chat.completion"}
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                out.setdefault(key, chunk[key])
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for c in chunk.get("choices") or ():
            if not isinstance(c, dict):
                continue
            index = c.get("index", 0)
            choice = choices.setdefault(index, {"index": index, "message": {
                "role": "assistant", "content": None}, "finish_reason": None})
            message, delta = choice["message"], c.get("delta") or {}
            for field in ("content", "reasoning_content"):
                if isinstance(delta.get(field), str) and delta[field]:
                    message[field] = (message.get(field) or "") + delta[field]
            for tc in delta.get("tool_calls") or ():
                _merge_tool_call(message.setdefault("tool_calls", []), tc)
            if c.get("finish_reason"):
                choice["finish_reason"] = c["finish_reason"]
    out["choices"] = [choices[i] for i in sorted(choices)]
    for choice in out["choices"]:
        if choice["message"]["content"] is None and not choice["message"].get("tool_calls"):
            choice["message"]["content"] = ""
    return out


def _merge_tool_call(calls: list, tc: dict):
    i = tc.get("index", len(calls) - 1 if tc.get("id") is None and calls else len(calls))
    while len(calls) <= i:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call, fn = calls[i], tc.get("function") or {}
    if tc.get("id"):
        call["id"] = tc["id"]
    if tc.get("type"):
        call["type"] = tc["type"]
    for part in ("name", "arguments"):
        if isinstance(fn.get(part), str):
            call["function"][part] += fn[part]


class StreamMark:
    """What the ledger needs of a stream relayed as bytes (audio), in place of a
    StreamRelay: its usage and whether it ended."""

    usage = None
    finished = False
