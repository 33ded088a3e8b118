"""How reasoning goes back into a request's history: the pure parts (freeapi/reasoning.py,
the conversation store's field rules, each vendor's own form)."""

from __future__ import annotations

import json

from freeapi import conversations as conv
from freeapi import reasoning
from freeapi.config import ProviderConfig

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_unfold_moves_the_think_block_back_into_reasoning_content():
    messages = [
        {"role": "user", "content": "<think>\nnot mine\n</think>\n\nhi"},
        {"role": "assistant", "content": "<think>\nstep 1\nstep 2\n</think>\n\n",
         "tool_calls": [CALL]},
        {"role": "assistant", "content": "<think>\nother\n</think>\n\nDone.",
         "reasoning_content": "the client's own"},
        {"role": "assistant", "content": "no block"},
    ]
    out = reasoning.unfold(messages)
    assert out[0] is messages[0]  # a user's text is never touched
    assert out[1] == {"role": "assistant", "content": "", "tool_calls": [CALL],
                      "reasoning_content": "step 1\nstep 2"}
    assert out[2]["content"] == "Done." and out[2]["reasoning_content"] == "the client's own"
    assert out[3] is messages[3]
    assert messages[1]["content"].startswith("<think>")  # the client's list is not changed
    parts = [{"role": "assistant", "tool_calls": [CALL], "content": [
        {"type": "text", "text": "<think>\nplan\n</think>\n\nOK"}, {"type": "text", "text": "!"}]}]
    assert reasoning.unfold(parts)[0] == {"role": "assistant", "tool_calls": [CALL],
                                          "reasoning_content": "plan", "content": [
        {"type": "text", "text": "OK"}, {"type": "text", "text": "!"}]}


def test_records_keep_only_tool_call_answers_and_cut_long_reasoning():
    completion = {"choices": [
        {"message": {"role": "assistant", "reasoning_content": "abcdef",
                     "tool_calls": [CALL, dict(CALL, id="call_2")]}},
        {"message": {"role": "assistant", "reasoning_content": "no calls", "content": "x"}},
        {"message": {"role": "assistant", "tool_calls": [dict(CALL, id="call_3")]}},
    ]}
    key = reasoning._call_key  # a call's id, name and arguments
    assert reasoning.records(completion, max_chars=4) == {
        key(CALL): {"r": "abcd"}, key(dict(CALL, id="call_2")): {"r": "abcd"}}
    assert reasoning.records({"role": "assistant", "reasoning_content": "r",
                              "tool_calls": [CALL]}, 100) == {key(CALL): {"r": "r"}}
    assert reasoning.records("not a dict", 100) == {}


def test_missing_names_the_tool_call_turns_without_reasoning():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "r"},
                {"role": "assistant", "reasoning_content": "kept",
                 "tool_calls": [dict(CALL, id="call_9")]},
                {"role": "assistant", "content": "plain"}]
    assert reasoning.missing(messages) == {1: reasoning._call_key(CALL)}


class MemoryStore:
    """The kv part of freeapi.store, in a dict (the real backends: tests/test_store.py)."""

    def __init__(self):
        self.kv = {}

    async def kv_put(self, ns, name, value, ttl_s):
        assert ns == reasoning.NS and ttl_s == 60
        self.kv[(ns, name)] = json.loads(json.dumps(value))

    async def kv_get(self, ns, names):
        return {n: self.kv[(ns, n)] for n in names if (ns, n) in self.kv}


async def test_remember_and_restore_round_trip_per_caller():
    store = MemoryStore()
    answer = {"choices": [{"message": {"role": "assistant", "reasoning_content": "why",
                                       "tool_calls": [CALL]}}]}
    await reasoning.remember(store, answer, owner="alice", ttl=60)
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": "", "tool_calls": [CALL]},
               {"role": "tool", "tool_call_id": "call_1", "content": "r"}]
    back = await reasoning.restore(store, history, owner="alice")
    assert back[1]["reasoning_content"] == "why" and "reasoning_content" not in history[1]
    other = await reasoning.restore(store, history, owner="bob")
    assert "reasoning_content" not in other[1]


async def test_restore_goes_on_without_the_store():
    from freeapi.store import StoreError

    class Down(MemoryStore):
        async def kv_get(self, ns, names):
            raise StoreError("down")

    history = [{"role": "assistant", "content": "", "tool_calls": [CALL]}]
    assert await reasoning.restore(Down(), history, owner="a") == history


def test_stored_conversation_turns_keep_reasoning_only_where_vendors_need_it():
    with_calls = {"role": "assistant", "content": "<think>\nplan\n</think>\n\n",
                  "tool_calls": [CALL], "reasoning_details": [{"text": "plan"}],
                  "audio": "dropped"}
    assert conv.clean(with_calls) == {"role": "assistant", "content": "",
                                      "tool_calls": [CALL], "reasoning_content": "plan",
                                      "reasoning_details": [{"text": "plan"}]}
    plain = {"role": "assistant", "content": "<think>\nx\n</think>\n\nHi",
             "reasoning_content": "x"}
    assert conv.clean(plain) == {"role": "assistant", "content": "Hi"}
    # DeepSeek's prefix completion and Kimi's partial mode flags survive.
    assert conv.clean({"role": "assistant", "content": "def f(", "prefix": True})["prefix"]
    assert conv.clean({"role": "assistant", "content": "Sure", "partial": True})["partial"]


def test_prefix_and_partial_flags_stay_on_the_last_message_only():
    stored = [[{"role": "user", "content": "write f"},
               {"role": "assistant", "content": "def f(", "prefix": True},
               {"role": "assistant", "content": "): pass"}]]
    new = [{"role": "user", "content": "now g"},
           {"role": "assistant", "content": "def g(", "prefix": True}]
    sent = conv.with_history(stored, new, 100000)
    assert [m.get("prefix") for m in sent] == [None, None, None, None, True]
    assert sent[1] == {"role": "assistant", "content": "def f("}


def _sent(provider, body) -> dict:
    return json.loads(provider.chat_request(body, "k").body)


def test_minimax_gets_its_reasoning_back_in_its_own_form():
    # https://platform.minimax.io/docs/api-reference/text-openai-api
    from providers.minimax import MiniMax
    p = MiniMax(ProviderConfig(name="minimax", type="minimax"))
    turn = {"role": "assistant", "content": "", "reasoning_content": "plan",
            "tool_calls": [CALL]}
    body = {"model": "MiniMax-M2.7", "messages": [{"role": "user", "content": "q"}, turn]}
    inline = _sent(p, body)["messages"][1]
    assert inline == {"role": "assistant", "content": "<think>\nplan\n</think>\n\n",
                      "tool_calls": [CALL]}
    split = _sent(p, dict(body, reasoning_split=True))["messages"][1]
    assert split["reasoning_details"] == [{"type": "reasoning.text", "text": "plan"}]
    assert split["content"] == "" and "reasoning_content" not in split
    assert body["messages"][1] is turn and "reasoning_content" in turn  # not changed


def test_deepseek_and_kimi_take_reasoning_content_as_it_is():
    from providers.deepseek import DeepSeek
    from providers.kimi import Kimi
    turn = {"role": "assistant", "content": "", "reasoning_content": "plan",
            "tool_calls": [CALL]}
    for cls in (DeepSeek, Kimi):
        p = cls(ProviderConfig(name=cls.type_name, type=cls.type_name))
        assert _sent(p, {"model": "m", "messages": [turn]})["messages"] == [turn]


async def test_silent_memory_tells_apart_calls_that_reuse_an_id():
    """Kimi numbers tool calls per answer (`get_weather:0`): two sessions of one caller
    must each get their own reasoning back, even when the client re-serializes the
    arguments with other spacing."""
    store = MemoryStore()

    def turn(city, spacing=""):
        args = json.dumps({"city": city}, separators=("," + spacing, ":" + spacing))
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": "get_weather:0", "type": "function",
             "function": {"name": "get_weather", "arguments": args}}]}

    for city in ("Paris", "Oslo"):
        await reasoning.remember(store, dict(turn(city), reasoning_content=f"about {city}"),
                                 owner="team", ttl=60)
    for city in ("Paris", "Oslo"):
        history = [{"role": "user", "content": "q"}, turn(city, spacing=" "),
                   {"role": "tool", "tool_call_id": "get_weather:0", "content": "sunny"}]
        back = await reasoning.restore(store, history, owner="team")
        assert back[1]["reasoning_content"] == f"about {city}"


def test_a_silent_stream_summarizes_its_tool_calls_and_survives_odd_deltas():
    """What a -silent stream hid is its reasoning and its tool calls as the client
    assembles them; a malformed tool-call delta from the vendor is skipped, not a crash."""
    from freeapi.provider import Provider
    from freeapi.relay import StreamRelay
    from freeapi.routing import Route

    provider = Provider(ProviderConfig(name="v", type="openai",
                                       base_url="http://127.0.0.1:1/v1"))
    relay = StreamRelay(Route(provider, "m", "silent"), "m-silent", include_usage=False)

    def delta(**d):
        return json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
                           "choices": [{"index": 0, "delta": d, "finish_reason": None}]})

    relay.feed(delta(reasoning_content="why"))
    relay.feed(delta(tool_calls=[{"index": 0, "id": "f:0", "type": "function",
                                  "function": {"name": "f", "arguments": '{"a"'}}]))
    relay.feed(delta(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}]))
    for odd in ([{"index": 0, "function": "x"}], [{"index": "0"}], [{"index": 10**9}], ["x"]):
        relay.feed(delta(tool_calls=odd))
    [choice] = relay.answer()["choices"]
    assert choice["message"]["reasoning_content"] == "why"
    assert choice["message"]["tool_calls"] == [{"id": "f:0", "type": "function", "function": {
        "name": "f", "arguments": '{"a": 1}'}}]


async def test_a_call_known_by_its_id_alone_is_never_remembered():
    """An id is unique only within one answer (Kimi's `get_weather:0`): a summary without
    the call's name and arguments is filed under nothing, so no turn that merely reuses
    the id can read it."""
    store = MemoryStore()
    await reasoning.remember(store, {"role": "assistant", "reasoning_content": "by id",
                                     "tool_calls": [{"id": "call_1"}]}, owner="a", ttl=60)
    history = [{"role": "assistant", "content": "", "tool_calls": [CALL]}]
    assert "reasoning_content" not in (await reasoning.restore(store, history, owner="a"))[0]
