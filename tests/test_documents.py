"""Documents in chat: OpenAI's `file` content part. Kimi's files API extracts the text,
which goes into a system message; the extraction is cached by content (one upload for the
same file twice); vendors without a document API refuse with a 400; no file in a log."""

import base64
import json

import pytest

from tests.fakes import kimi as fake_kimi
from tests.fakes import spark as fake_spark
from tests.helpers import client, error_of, request

SECRET_TEXT = "quarterly figures 7f3a9c: revenue up"
ALICE, BOB = "gw-docs-alice-000001", "gw-docs-bob-0000002"


def with_file(text=SECRET_TEXT, model="moonshot-v1-8k", **file):
    data = base64.b64encode(text.encode()).decode()
    part = {"type": "file", "file": {"filename": "report.txt",
                                     "file_data": f"data:text/plain;base64,{data}", **file}}
    return {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise the report."}, part]}]}


@pytest.fixture
def gw(start_vendor, make_gateway):
    kimi_url, kimi_state = start_vendor(fake_kimi)
    spark_url, spark_state = start_vendor(fake_spark)
    base, gateway = make_gateway({"auth": {"keys": [ALICE, BOB]}, "providers": {
        "kimi": {"base_url": kimi_url + "/v1", "api_keys": [fake_kimi.GOOD],
                 "discover": False},
        "spark": {"base_url": spark_url + "/v1", "api_keys": [fake_spark.GOOD]}}})
    return base, gateway, kimi_state, spark_state


async def test_kimi_reads_the_file_once_for_two_requests(gw, caplog):
    base, _, kimi, _ = gw
    for _ in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
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
        assert user == {"role": "user", "content": "Summarise the report."}
    for record in caplog.records:  # the document never reaches a log
        assert "7f3a9c" not in record.getMessage()


async def test_the_sdk_sends_a_file_part(gw):
    base, _, kimi, _ = gw
    body = with_file("another file")
    r = await client(base, ALICE).chat.completions.create(**body)
    assert r.choices[0].message.content
    assert any(q["path"] == "/v1/files" for q in kimi.requests)


@pytest.mark.parametrize("body,code,words", [
    (with_file(model="generalv3"), "documents_not_supported", "no document API"),
    (with_file(file_id="file-abc", file_data=None), "invalid_file_id", "POST /v1/files"),
    (with_file(file_data="data:text/plain;base64,@@@"), None, "not valid base64"),
    (with_file(file_data="https://example.com/x.pdf"), None, "data: URL"),
])
async def test_what_cannot_be_read_is_a_clear_400(gw, body, code, words):
    base, _, kimi, spark = gw
    err = error_of(await request(base + "/v1/chat/completions", "POST", body, key=ALICE), 400)
    assert words in err["message"] and (code is None or err["code"] == code)
    assert spark.requests == [] and not any(q["path"] == "/v1/chat/completions"
                                          for q in kimi.requests)


async def test_a_file_id_from_post_v1_files_is_read_like_file_data(gw):
    base, _, kimi, _ = gw
    c = client(base, ALICE)
    f = await c.files.create(file=("notes.txt", b"uploaded notes 51c2", "text/plain"),
                             purpose="user_data")
    assert f.id.startswith("file-") and f.bytes == 19 and f.filename == "notes.txt"
    assert (await c.files.retrieve(f.id)).id == f.id
    body = with_file()
    body["messages"][0]["content"][1]["file"] = {"file_id": f.id}
    resp = await request(base + "/v1/chat/completions", "POST", body, key=ALICE)
    assert resp.code == 200, resp.body
    system = [q["body"] for q in kimi.requests
              if q["path"] == "/v1/chat/completions"][-1]["messages"][0]
    assert "uploaded notes 51c2" in system["content"]
    # Another caller can neither use nor see it.
    err = error_of(await request(base + "/v1/chat/completions", "POST", body, key=BOB), 404)
    assert err["code"] == "file_not_found"
    assert (await request(base + f"/v1/files/{f.id}", key=BOB)).code == 404
    got = await request(base + f"/v1/files/{f.id}/content", key=ALICE)
    assert got.body == b"uploaded notes 51c2"
    await c.files.delete(f.id)
    assert (await request(base + f"/v1/files/{f.id}", key=ALICE)).code == 404
    await c.close()
