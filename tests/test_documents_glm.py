"""Documents GLM reads: the file parsing service's Lite tool
(https://docs.bigmodel.cn/cn/guide/tools/file-parser) parses a `file` part as an
asynchronous task; the gateway polls the task's text until it is done, within the
request's deadline, and puts it in a system message, cached by content. A task that
fails is a 400, a type Lite does not read is a 400 before anything is sent, and a key GLM
refuses moves the parse on to the next key."""

import base64

import openai
import pytest

from freeapi.config import ProviderConfig
from freeapi.errors import APIError
from providers.glm import GLM
from tests.fakes import glm as fake_glm
from tests.helpers import client, error_of, request

SECRET = "audit notes 5e8b1d: two findings"
ALICE = "gw-gdoc-alice-00000001"


def with_file(text=SECRET, model="glm-4.7-flash", filename="notes.txt",
              media_type="text/plain"):
    data = base64.b64encode(text.encode()).decode()
    return {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What did the audit find?"},
        {"type": "file", "file": {"filename": filename,
                                  "file_data": f"data:{media_type};base64,{data}"}}]}]}


@pytest.fixture
def setup(start_vendor, make_gateway):
    def start(keys=(fake_glm.GOOD,)):
        url, state = start_vendor(fake_glm)
        base, _ = make_gateway({"auth": {"keys": [ALICE]}, "providers": {
            "glm": {"base_url": url + "/api/paas/v4", "api_keys": list(keys)}}})
        return base, state
    return start


def creates(state):
    return [q for q in state.requests if q["path"] == "/api/paas/v4/files/parser/create"]


def polls(state):
    return [q for q in state.requests
            if q["path"].startswith("/api/paas/v4/files/parser/result/")]


def chats(state):
    return [q["body"] for q in state.requests if q["path"] == "/api/paas/v4/chat/completions"]


async def test_glm_parses_the_file_once_for_two_requests_with_lite(setup, caplog):
    base, state = setup()
    c = client(base, ALICE)
    for _ in range(2):
        r = await c.chat.completions.create(**with_file())
        assert r.choices[0].message.content == "Hello there!"
    assert len(creates(state)) == 1  # the second request used the cached text
    create = creates(state)[0]
    assert create["headers"]["Authorization"] == f"Bearer {fake_glm.GOOD}"
    assert create["form"] == {"tool_type": ["lite"], "file_type": ["TXT"]}
    assert [q["path"].rsplit("/", 1)[1] for q in polls(state)] == ["text"]
    assert len(chats(state)) == 2
    for body in chats(state):
        system, user = body["messages"]
        assert system == {"role": "system", "content": f"PARSED: {SECRET}"}
        assert user == {"role": "user", "content": "What did the audit find?"}
    for record in caplog.records:  # the document never reaches a log
        assert "5e8b1d" not in record.getMessage()
    await c.close()


async def test_the_gateway_polls_a_task_still_processing_until_it_is_done(setup):
    base, state = setup()
    state.parse_pending = 2
    r = await client(base, ALICE).chat.completions.create(**with_file("slow parse 77"))
    assert r.choices[0].message.content
    assert len(polls(state)) == 3  # processing, processing, succeeded
    assert chats(state)[0]["messages"][0]["content"] == "PARSED: slow parse 77"


async def test_a_parse_past_the_deadline_is_a_504(start_vendor, make_gateway):
    url, state = start_vendor(fake_glm)
    state.parse_pending = 100
    base, _ = make_gateway({"auth": {"keys": [ALICE]}, "providers": {"glm": {
        "base_url": url + "/api/paas/v4", "api_keys": [fake_glm.GOOD],
        "timeouts": {"total": 2}}}})
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 with_file("never done"), key=ALICE), 504)
    assert err["code"] == "upstream_timeout" and "parsing" in err["message"]
    assert chats(state) == []


async def test_a_failed_parse_is_a_400_document_unreadable_and_not_cached(setup):
    base, state = setup()
    state.parse_fails = True
    c = client(base, ALICE)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as got:
            await c.chat.completions.create(**with_file())
        assert got.value.code == "document_unreadable"
        assert "could not parse" in got.value.message
    assert len(creates(state)) == 2 and chats(state) == []
    await c.close()


@pytest.mark.parametrize("filename,media_type", [("page.html", "text/html"),
                                                 ("data.json", "application/json")])
async def test_a_type_lite_does_not_read_is_a_400_before_any_upload(setup, filename,
                                                                    media_type):
    base, state = setup()
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 with_file(filename=filename, media_type=media_type),
                                 key=ALICE), 400)
    assert err["code"] == "unsupported_file_type"
    assert "pdf" in err["message"] and filename in err["message"]
    assert creates(state) == [] and chats(state) == []


async def test_the_file_type_comes_from_the_extension_else_the_media_type(setup):
    base, state = setup()
    for filename, media_type in (("scan.PDF", "application/octet-stream"),
                                 ("document", "application/pdf")):
        resp = await request(base + "/v1/chat/completions", "POST", with_file(
            f"pdf bytes of {filename}", filename=filename, media_type=media_type), key=ALICE)
        assert resp.code == 200, resp.body
    assert [q["form"]["file_type"] for q in creates(state)] == [["PDF"], ["PDF"]]


def test_a_file_over_lites_50_mb_is_refused_before_upload():
    glm = GLM(ProviderConfig(name="glm", type="glm"))
    with pytest.raises(APIError) as got:
        glm.document_upload("big.pdf", "application/pdf", b"\0" * ((50 << 20) + 1), "k")
    assert got.value.status == 400 and got.value.code == "file_too_large"
    assert glm.document_upload("ok.pdf", "application/pdf", b"\0" * (50 << 20), "k") \
        is not None


async def test_a_key_glm_refuses_moves_the_parse_on_to_the_next_key(setup):
    # The pool rotates: a fresh gateway per key order until the parse met the dead key
    # first (the chat meeting it first would take it out of rotation).
    for keys in ((fake_glm.DEAD, fake_glm.GOOD), (fake_glm.GOOD, fake_glm.DEAD)):
        base, state = setup(keys=keys)
        resp = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
        assert resp.code == 200, resp.body
        if any(q["headers"]["Authorization"] == f"Bearer {fake_glm.DEAD}"
               for q in creates(state)):
            break
    else:
        pytest.fail("no parse met the dead key first")
    assert [q["headers"]["Authorization"] for q in creates(state)] == [
        f"Bearer {fake_glm.DEAD}", f"Bearer {fake_glm.GOOD}"]
    for q in polls(state):  # a task is polled with the key that created it
        assert q["headers"]["Authorization"] == f"Bearer {fake_glm.GOOD}"


async def test_only_dead_server_keys_are_a_503_for_the_operator(setup):
    base, state = setup(keys=(fake_glm.DEAD,))
    err = error_of(await request(base + "/v1/chat/completions", "POST", with_file(),
                                 key=ALICE), 503)
    assert "api_keys" in err["message"]
    assert chats(state) == []


async def test_models_list_says_glm_chat_models_read_documents(setup):
    base, _ = setup()
    listed = {m.id: m for m in (await client(base, ALICE).models.list()).data}
    for model in ("glm-4.7-flash", "glm-5", "glm-4.6v"):
        assert "documents" in listed[model].capabilities
    for model in ("embedding-3", "cogview-3-flash"):
        assert "documents" not in listed[model].capabilities
