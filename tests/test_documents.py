"""Documents in chat: OpenAI's `file` content part. Kimi's files API extracts the text,
which goes into a system message; the extraction is cached by content (one upload for the
same file twice); vendors without a document API refuse with a 400; no file in a log."""

import base64
import json

import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import kimi as fake_kimi
from tests.helpers import error_of, request
from tests.sibling import client, start_vendor  # noqa: F401 (a fixture)

SECRET_TEXT = "quarterly figures 7f3a9c: revenue up"


def with_file(text=SECRET_TEXT, model="moonshot-v1-8k", **file):
    data = base64.b64encode(text.encode()).decode()
    part = {"type": "file", "file": {"filename": "report.txt",
                                     "file_data": f"data:text/plain;base64,{data}", **file}}
    return {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise the report."}, part]}]}


@pytest.fixture
def gw(start_vendor, make_gateway):
    kimi_url, kimi_state = start_vendor(fake_kimi)
    glm_url, glm_state = start_vendor(fake_glm)
    base, gateway = make_gateway({"auth": {"allow_anonymous": True}, "providers": {
        "kimi": {"base_url": kimi_url + "/v1", "api_keys": [fake_kimi.GOOD],
                 "discover": False},
        "glm": {"base_url": glm_url + "/api/paas/v4", "api_keys": [fake_glm.GOOD]}}})
    return base, gateway, kimi_state, glm_state


async def test_kimi_reads_the_file_once_for_two_requests(gw, caplog):
    base, _, kimi, _ = gw
    for _ in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", with_file(), key="x")
        assert resp.code == 200, resp.body
    uploads = [q for q in kimi.requests if q["path"] == "/v1/files"]
    assert len(uploads) == 1  # the second request used the cached extraction
    assert uploads[0]["headers"]["Authorization"] == f"Bearer {fake_kimi.GOOD}"
    deletes = [q for q in kimi.requests if q.get("method") == "DELETE"]
    assert len(deletes) == 1 and kimi.files == {}  # the vendor keeps no copy
    chats = [q["body"] for q in kimi.requests if q["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    for body in chats:
        system, user = body["messages"]
        assert system["role"] == "system"
        assert json.loads(system["content"])["content"] == f"EXTRACTED: {SECRET_TEXT}"
        assert user == {"role": "user", "content": [
            {"type": "text", "text": "Summarise the report."}]}
    for record in caplog.records:  # the document never reaches a log
        assert "7f3a9c" not in record.getMessage()


async def test_the_sdk_sends_a_file_part(gw):
    base, _, kimi, _ = gw
    body = with_file("another file")
    r = await client(base, "x").chat.completions.create(**body)
    assert r.choices[0].message.content
    assert any(q["path"] == "/v1/files" for q in kimi.requests)


@pytest.mark.parametrize("body,code,words", [
    (with_file(model="glm-4.7-flash"), "documents_not_supported", "no document API"),
    (with_file(file_id="file-abc", file_data=None), "file_id_not_supported", "file_data"),
    (with_file(file_data="data:text/plain;base64,@@@"), None, "not valid base64"),
    (with_file(file_data="https://example.com/x.pdf"), None, "data: URL"),
])
async def test_what_cannot_be_read_is_a_clear_400(gw, body, code, words):
    base, _, kimi, glm = gw
    err = error_of(await request(base + "/v1/chat/completions", "POST", body, key="x"), 400)
    assert words in err["message"] and (code is None or err["code"] == code)
    assert glm.requests == [] and not any(q["path"] == "/v1/chat/completions"
                                          for q in kimi.requests)
