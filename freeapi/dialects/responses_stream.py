"""Chat-completions stream chunks -> Responses API stream events. Pure: no Tornado.

One `EventStream` per response. Events are the ones OpenAI sends and the `openai` SDK
(openai/types/responses/response_stream_event.py) and Codex consume, each with a
`sequence_number`: `response.created`, `response.in_progress`, then per output item
`response.output_item.added`, its deltas, `response.output_item.done`; finally
`response.completed` (or `response.incomplete` when the vendor stopped at the token limit,
`response.failed` when the stream broke). One item is open at a time and is closed before
the next one opens, as in OpenAI's streams: reasoning, then text, then function calls.

Codex builds its history from `response.output_item.done` alone, so every done event
carries the whole item.
"""

from __future__ import annotations

import json

from freeapi.dialects.responses import Translation
from freeapi.dialects.responses_output import (call_item, chat_message, message_item, new_id,
                                               output_text, reasoning_item, response_object,
                                               status_of, usage)
from freeapi.json_text import compact
from freeapi.jsonvalues import obj_at


# One encoder for every event (freeapi/json_text.py).
_ENCODE = compact
# A delta's text, as _ENCODE writes a str (ensure_ascii off), without its dispatch.
_STRING = json.encoder.encode_basestring


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {_ENCODE(event)}\n\n".encode()


class EventStream:
    def __init__(self, req: Translation, rid: str, model: str, created: float,
                 show_reasoning: bool = True):
        self.req, self.rid, self.model, self.created = req, rid, model, created
        self.show_reasoning = show_reasoning
        self.seq = 0
        self.output: list[dict] = []  # finished items, in order
        self._open: dict | None = None  # the item being streamed
        self._calls: dict[int, dict] = {}  # tool-call index -> its item
        self.reasoning = ""  # kept for the stored turn even when not shown
        self.text = ""
        self.finish: str | None = None
        self.usage: dict | None = None
        self.ended = False
        self.final: dict | None = None  # the Response object of the last event

    def _ev(self, kind: str, **fields) -> bytes:
        fields["type"] = kind
        fields["sequence_number"] = self.seq
        self.seq += 1
        return sse(fields)

    def _delta(self, kind: str, item_id: str, delta: str, content: bool = True,
               logprobs: bool = False) -> bytes:
        """A delta event, the one sent per vendor chunk, formatted without building a dict
        (the same JSON as `_ev`'s; ids are [a-z0-9_] only)."""
        seq = self.seq
        self.seq += 1
        index = ',"content_index":0' if content else ""
        tail = ',"logprobs":[]' if logprobs else ""
        return (f'event: {kind}\ndata: {{"item_id":"{item_id}","output_index":'
                f'{len(self.output)}{index},"delta":{_STRING(delta)}{tail},'
                f'"type":"{kind}","sequence_number":{seq}}}\n\n').encode()

    def _response(self, status: str, **kw) -> dict:
        return response_object(self.rid, self.model, self.created, self.req.echo,
                               status=status, output=list(self.output),
                               store=self.req.store, **kw)

    def start(self) -> bytes:
        # One snapshot, encoded once for both events (the bytes _ev would write for each).
        snapshot = _ENCODE(self._response("in_progress"))
        seq = self.seq
        self.seq += 2
        return "".join(
            f'event: {kind}\ndata: {{"response":{snapshot},"type":"{kind}",'
            f'"sequence_number":{seq + i}}}\n\n'
            for i, kind in enumerate(("response.created", "response.in_progress"))).encode()

    # -- items --------------------------------------------------------------------------

    def _add(self, item: dict) -> bytes:
        self._open = item
        return self._ev("response.output_item.added", output_index=len(self.output),
                        item=item)

    def _close(self, status: str = "completed") -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        i = len(self.output)
        out = b""
        kind = item["type"]
        if kind == "reasoning":
            text = item["content"][0]["text"]
            part = {"type": "reasoning_text", "text": text}
            out += self._ev("response.reasoning_text.done", item_id=item["id"],
                            output_index=i, content_index=0, text=text)
            out += self._ev("response.content_part.done", item_id=item["id"],
                            output_index=i, content_index=0, part=part)
        elif kind == "message":
            text = item["content"][0]["text"]
            out += self._ev("response.output_text.done", item_id=item["id"], output_index=i,
                            content_index=0, text=text, logprobs=[])
            out += self._ev("response.content_part.done", item_id=item["id"],
                            output_index=i, content_index=0, part=output_text(text))
        else:
            out += self._ev("response.function_call_arguments.done", item_id=item["id"],
                            output_index=i, arguments=item["arguments"])
        if item.get("status") == "in_progress":
            item["status"] = status
        self.output.append(item)
        return out + self._ev("response.output_item.done", output_index=i, item=item)

    def _reasoning(self, delta: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item["type"] != "reasoning":
            out += self._close()
            item = reasoning_item("", status="in_progress")
            item["content"] = []
            out += self._add(item)
            out += self._ev("response.content_part.added", item_id=item["id"],
                            output_index=len(self.output), content_index=0,
                            part={"type": "reasoning_text", "text": ""})
            item["content"] = [{"type": "reasoning_text", "text": ""}]
        item["content"][0]["text"] += delta
        return out + self._delta("response.reasoning_text.delta", item["id"], delta)

    def _message(self) -> tuple[dict, bytes]:
        """The open message item, opened (with its one output_text part) if need be."""
        item = self._open
        if item is not None and item["type"] == "message":
            return item, b""
        out = self._close()
        item = message_item("", status="in_progress")
        item["content"] = []
        out += self._add(item)
        out += self._ev("response.content_part.added", item_id=item["id"],
                        output_index=len(self.output), content_index=0, part=output_text(""))
        item["content"] = [output_text("")]
        return item, out

    def _text(self, delta: str) -> bytes:
        item = self._open
        if item is not None and item["type"] == "message":  # the usual chunk: more text
            out = b""
        else:
            item, out = self._message()
        item["content"][0]["text"] += delta
        return out + self._delta("response.output_text.delta", item["id"], delta,
                                 logprobs=True)

    def _call(self, tc: dict) -> bytes:
        out = b""
        index = tc.get("index")
        if not isinstance(index, int):  # some servers omit it: an id starts a new call
            last = max(self._calls, default=-1)
            index = last + 1 if tc.get("id") is not None or last < 0 else last
        fn = obj_at(tc, "function")
        item = self._calls.get(index)
        if item is None:
            out += self._close()
            call_id = tc["id"] if isinstance(tc.get("id"), str) and tc["id"] else new_id("call")
            name = fn["name"] if isinstance(fn.get("name"), str) else ""
            item = call_item(call_id, name, "", status="in_progress")
            self._calls[index] = item
            out += self._add(item)
        elif isinstance(fn.get("name"), str) and item is self._open \
                and not item["arguments"]:
            item["name"] += fn["name"]  # a name split over chunks (rare)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            item["arguments"] += args
            if item is self._open:
                out += self._delta("response.function_call_arguments.delta", item["id"],
                                   args, content=False)
        return out

    # -- input --------------------------------------------------------------------------

    def feed(self, chunk: dict) -> bytes:
        """One parsed chat chunk (already normalized by the provider) -> events."""
        usage = chunk.get("usage")
        if usage is not None and isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return b""
        choice = choices[0]  # a Response has one answer; n > 1 is never asked for
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        out = b""
        reasoning = delta.get("reasoning_content")
        if reasoning and isinstance(reasoning, str):
            self.reasoning += reasoning
            if self.show_reasoning:
                out += self._reasoning(reasoning)
        content = delta.get("content")
        if content and isinstance(content, str):
            self.text += content
            item = self._open
            if item is not None and item["type"] == "message":
                # the usual chunk, more text for the open message: _text's work inline
                item["content"][0]["text"] += content
                out += self._delta("response.output_text.delta", item["id"], content,
                                   logprobs=True)
            else:
                out += self._text(content)
        calls = delta.get("tool_calls")
        if calls is not None and isinstance(calls, list):
            for tc in calls:
                if isinstance(tc, dict):
                    out += self._call(tc)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        return out

    def end(self) -> bytes:
        """The vendor's stream ended normally: close what is open, then the final event."""
        self.ended = True
        status = status_of(self.finish)
        out = b""
        if self._open is None and not self.output:  # an empty answer: one empty message
            out += self._message()[1]
        # Cut at the token limit: the item being written is incomplete, as OpenAI marks it.
        out += self._close("incomplete" if status == "incomplete" else "completed")
        final = self._response(status, usage_=usage(self.usage), finish=self.finish)
        self.final = final
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._ev(kind, response=final)

    def fail(self, message: str, code: str = "server_error") -> bytes:
        """The stream broke after it began: `response.failed` with what was produced."""
        self.ended = True
        if self._open is not None:
            self._open["status"] = "incomplete"
            self.output.append(self._open)
            self._open = None
        error = {"code": code, "message": message}
        self.final = self._response("failed", error=error, usage_=usage(self.usage))
        return self._ev("response.failed", response=self.final)

    def answer(self) -> dict:
        """The assistant turn to store for a continuation (reasoning included)."""
        calls = [{"id": item["call_id"], "type": "function",
                  "function": {"name": item["name"], "arguments": item["arguments"]}}
                 for _, item in sorted(self._calls.items())]
        return chat_message(self.text, self.reasoning, calls)
