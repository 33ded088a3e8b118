"""The Responses dialect against golden fixtures (tests/golden/responses/*.json).

Each fixture holds an input and the expected translation: `request` -> the chat body,
`error` -> the 400's param, `completion` -> the Response object and the stored turn,
`stream` -> every SSE event. Generated ids and clocks are replaced by stable placeholders.
Every stream event and Response object is also validated against the `openai` SDK's own
pydantic types, so a field the SDK requires cannot go missing unnoticed.

After a deliberate change, `FREEAPI_REGOLD=1 pytest tests/test_responses_dialect.py`
rewrites the expected parts; review the diff before committing it.
"""

from __future__ import annotations

import glob
import json
import os
import re

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from freeapi.dialects.responses import to_chat
from freeapi.dialects.responses_output import from_chat
from freeapi.dialects.responses_stream import EventStream
from freeapi.errors import APIError
from freeapi.sse import SSEParser

HERE = os.path.join(os.path.dirname(__file__), "golden", "responses")
FIXTURES = sorted(glob.glob(os.path.join(HERE, "*.json")))
REGOLD = os.environ.get("FREEAPI_REGOLD") == "1"
_ID = re.compile(r"\b(rs|msg|fc|call|resp)_[0-9a-f]{32}\b")
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def stable(obj):
    """Generated ids -> <kind-N> in order of appearance; clocks -> 0."""
    seen: dict[str, str] = {}

    def rename(m):
        if m.group(0) not in seen:
            seen[m.group(0)] = f"<{m.group(1)}-{sum(k.startswith(m.group(1)) for k in seen) + 1}>"
        return seen[m.group(0)]

    def walk(v):
        if isinstance(v, dict):
            return {k: (0 if k in ("created_at", "completed_at") and isinstance(x, int)
                        else walk(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            return _ID.sub(rename, v)
        return v
    return walk(obj)


def run(fx: dict) -> dict:
    kind = fx["kind"]
    if kind == "error":
        with pytest.raises(APIError) as e:
            to_chat(fx["request"])
        assert e.value.status == 400 and e.value.type == "invalid_request_error"
        assert e.value.param == fx["param"]
        return {"message": e.value.message}
    req = to_chat(fx["request"], fx.get("history"))
    if kind == "request":
        return {"chat": req.chat, "messages": req.messages, "dropped": req.dropped,
                "skipped": req.skipped,
                "store": req.store}
    if kind == "completion":
        obj, turn = from_chat(fx["completion"], req, "resp_" + "0" * 32, "deepseek-flash",
                              1_700_000_000)
        Response.model_validate(obj)
        return {"response": stable(obj), "stored_turn": turn}
    es = EventStream(req, "resp_" + "0" * 32, "deepseek-flash", 1_700_000_000,
                     show_reasoning=fx.get("show_reasoning", True))
    raw = es.start() + b"".join(es.feed(c) for c in fx["chunks"])
    raw += es.fail(**fx["fail"]) if "fail" in fx else es.end()
    events = []
    for block in raw.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        ev = json.loads(data[len("data: "):])
        assert name == "event: " + ev["type"]
        EVENT.validate_python(ev)
        events.append(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert SSEParser().feed(raw) == [json.dumps(e, ensure_ascii=False, separators=(",", ":"))
                                     for e in events]
    return {"events": stable(events), "stored_turn": es.answer()}


@pytest.mark.parametrize("path", FIXTURES, ids=[os.path.basename(p)[:-5] for p in FIXTURES])
def test_translation_matches_golden_fixture(path):
    with open(path) as f:
        fx = json.load(f)
    got = run(fx)
    if REGOLD:
        fx["expected"] = got
        with open(path, "w") as f:
            json.dump(fx, f, indent=1, ensure_ascii=False)
            f.write("\n")
        return
    assert "expected" in fx, f"{path} has no expected output yet (run with FREEAPI_REGOLD=1)"
    assert got == fx["expected"]


def test_every_fixture_kind_is_covered():
    kinds = set()
    for path in FIXTURES:
        with open(path) as f:
            kinds.add(json.load(f)["kind"])
    assert kinds == {"request", "error", "completion", "stream"}


# -- malformed input: a clear 400, never an exception that would become a 500 ------------

ODD = [None, True, 0, -1, 1.5, "", "x", [], [None], {}, {"type": None}, {"type": "x"},
       [{"type": "input_text"}], {"text": 5}]


def _paths(value, trail=()):
    """Every (path, value) inside a JSON value."""
    yield trail, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, trail + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, trail + (i,))


def _replaced(value, path, new):
    if not path:
        return new
    out = json.loads(json.dumps(value))
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return out


def _mutations(kinds):
    for path in FIXTURES:
        with open(path) as f:
            fx = json.load(f)
        fx.pop("expected", None)
        if fx["kind"] in kinds:
            for trail, _ in _paths(fx):
                for new in ODD:
                    yield fx, trail, new


def test_every_malformed_request_is_a_400_or_translates():
    seen = 0
    for fx, trail, new in _mutations({"request", "error"}):
        if not trail or trail[0] != "request":
            continue
        body = _replaced(fx["request"], trail[1:], new)
        if not isinstance(body, dict):
            continue
        seen += 1
        try:
            req = to_chat(body, fx.get("history"))
        except APIError as e:
            assert e.status == 400, (trail, new, e.message)
            continue
        json.dumps(req.chat)  # what goes to the vendor is JSON
        assert isinstance(req.chat["messages"], list) and req.chat["messages"]
    assert seen > 1000


def test_malformed_vendor_answers_and_chunks_never_raise():
    req = to_chat({"model": "m", "input": "hi", "stream": True})
    for fx, trail, new in _mutations({"completion", "stream"}):
        if trail[:1] == ("completion",):
            completion = _replaced(fx["completion"], trail[1:], new)
            if isinstance(completion, dict):
                obj, _ = from_chat(completion, req, "resp_1", "m", 0)
                Response.model_validate(obj)
        elif trail[:1] == ("chunks",) and len(trail) > 2:
            chunks = _replaced(fx["chunks"], trail[1:], new)
            es = EventStream(req, "resp_1", "m", 0)
            raw = es.start() + b"".join(es.feed(c) for c in chunks) + es.end()
            events = SSEParser().feed(raw)
            EVENT.validate_python(json.loads(events[-1]))  # the SDK can still read it all
            json.loads(events[-2])
            assert es.final["status"] in ("completed", "incomplete")
            json.dumps(es.answer())
