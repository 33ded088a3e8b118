"""What stored responses (/v1/responses with store: true) may keep, on SQLite and Redis: per
caller, at most responses.max_per_caller records and responses.max_bytes_per_caller bytes
within their ttl (once either is reached, store: true is a 429 before the vendor is asked;
store: false is still served), and an input_file's inline data is not kept beyond
responses.max_file_bytes: the stored conversation names the file and its sha256 instead,
so a continuation by previous_response_id is served and tells the model what it was."""

import base64
import hashlib
import json

import openai
import pytest

from freeapi.handlers.responses import NS
from tests.fakes import kimi as fake_kimi
from tests.sibling import start_vendor  # noqa: F401 (a fixture)

ALICE, BOB = "gw-stored-resp-alice-01", "gw-stored-resp-bob-0002"
MODEL = "moonshot-v1-8k"
DOC = ("clause %d: the tenant pays on the first of the month. " * 2000 % (
    *range(2000),)).encode()


@pytest.fixture
def gw(start_vendor, make_gateway, state_backend):
    def start(responses=None):
        kimi_url, kimi = start_vendor(fake_kimi)
        base, gateway = make_gateway({
            "auth": {"keys": [ALICE, BOB]}, "state": state_backend,
            "responses": dict({"ttl": 600}, **(responses or {})),
            "providers": {"kimi": {"base_url": kimi_url + "/v1",
                                   "api_keys": [fake_kimi.GOOD], "discover": False}}})
        return base, gateway, kimi
    return start


def sdk(base, key=ALICE):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def kimi_chats(kimi) -> list:
    return [q["body"] for q in kimi.requests if q["path"] == "/v1/chat/completions"]


async def test_a_callers_stored_responses_are_capped_in_number(gw):
    base, gateway, kimi = gw({"max_per_caller": 2})
    for _ in range(2):
        await sdk(base).responses.create(model=MODEL, input="hi")
        await gateway.store.settle()
    with pytest.raises(openai.RateLimitError) as e:
        await sdk(base).responses.create(model=MODEL, input="hi")
    err = e.value.body
    assert err["code"] == "stored_response_limit"
    assert "responses.max_per_caller" in err["message"] and "store: false" in err["message"]
    assert len(kimi_chats(kimi)) == 2  # refused before the vendor was asked
    r = await sdk(base).responses.create(model=MODEL, input="hi", store=False)
    assert r.output_text
    await sdk(base, BOB).responses.create(model=MODEL, input="hi")  # Bob's own quota


async def test_a_callers_stored_responses_are_capped_in_bytes(gw):
    base, gateway, kimi = gw({"max_bytes_per_caller": 6000})
    first = await sdk(base).responses.create(model=MODEL, input="x" * 2000)
    await gateway.store.settle()
    size = len(json.dumps((await gateway.store.kv_get(NS, [first.id]))[first.id]))
    assert 2000 < size < 6000
    # Room was left: this one is stored, and fills the quota.
    second = await sdk(base).responses.create(model=MODEL, input="x" * 2000)
    await gateway.store.settle()
    assert (await sdk(base).responses.retrieve(second.id)).id == second.id
    with pytest.raises(openai.RateLimitError) as e:
        await sdk(base).responses.create(model=MODEL, input="hi")
    assert "responses.max_bytes_per_caller" in e.value.body["message"]


async def test_an_input_files_bytes_are_not_kept_and_a_continuation_says_so(gw):
    base, gateway, kimi = gw()
    first = await sdk(base).responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_file", "filename": "lease.txt",
         "file_data": "data:text/plain;base64," + base64.b64encode(DOC).decode()},
        {"type": "input_text", "text": "When is rent due?"}]}])
    assert json.loads(kimi_chats(kimi)[0]["messages"][0]["content"])["content"] \
        == "EXTRACTED: " + DOC.decode()
    await gateway.store.settle()
    record = (await gateway.store.kv_get(NS, [first.id]))[first.id]
    kept = json.dumps(record)
    assert len(kept) < 10_000 and base64.b64encode(DOC[:300]).decode() not in kept
    sha = hashlib.sha256(DOC).hexdigest()
    assert sha in kept and "lease.txt" in kept
    # The continuation is served; the model is told the file was there and is not now.
    nxt = await sdk(base).responses.create(model=MODEL, input="And the deposit?",
                                           previous_response_id=first.id)
    assert nxt.output_text
    sent = json.dumps(kimi_chats(kimi)[-1]["messages"])
    assert sha in sent and "send it again as input_file" in sent
    assert len([q for q in kimi.requests if q["path"] == "/v1/files"]) == 1


async def test_a_small_input_file_is_kept_for_continuations(gw):
    base, gateway, kimi = gw()
    small = b"rent is due on the 3rd"
    first = await sdk(base).responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_file", "filename": "note.txt",
         "file_data": "data:text/plain;base64," + base64.b64encode(small).decode()},
        {"type": "input_text", "text": "When?"}]}])
    await gateway.store.settle()
    await sdk(base).responses.create(model=MODEL, input="Sure?",
                                     previous_response_id=first.id)
    assert "EXTRACTED: " + small.decode() in json.dumps(kimi_chats(kimi)[-1]["messages"])
