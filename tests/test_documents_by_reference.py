"""Documents Qwen-Long reads by file id: the id belongs to the account that uploaded the
file, so the gateway uploads with the key that serves each attempt (again after a failover
to another key), waits until Model Studio has parsed the file, reuses the id for that key,
and names it in a system message ("fileid://..."). A conversation keeps its files for
later turns, for its caller only. The fake refuses a file id of another account and one
still being parsed, as the vendor would."""

import base64
import hashlib
import json

import pytest

from freeapi.healthsync import key_hash
from freeapi.modalities import documents
from tests.fakes import kimi as fake_kimi
from tests.fakes import qwen as fake_qwen
from tests.helpers import client, collect, error_of, request

SECRET = "board minutes 41d9e2: merger approved"
ALICE, BOB = "gw-qdoc-alice-00000001", "gw-qdoc-bob-000000002"


def with_file(text=SECRET, model="qwen-long", **extra):
    data = base64.b64encode(text.encode()).decode()
    return {"model": model, **extra, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What was decided?"},
        {"type": "file", "file": {"filename": "minutes.txt",
                                  "file_data": f"data:text/plain;base64,{data}"}}]}]}


@pytest.fixture
def setup(start_vendor, make_gateway):
    def start(keys=(fake_qwen.GOOD,)):
        url, state = start_vendor(fake_qwen)
        kimi_url, _ = start_vendor(fake_kimi)
        base, gateway = make_gateway({"auth": {"keys": [ALICE, BOB]}, "providers": {
            "qwen": {"base_url": url + "/compatible-mode/v1", "api_keys": list(keys),
                     "discover": False},
            "kimi": {"base_url": kimi_url + "/v1", "api_keys": [fake_kimi.GOOD],
                     "discover": False}}})
        return base, gateway, state
    return start


def uploads(state):
    return [q for q in state.requests
            if q["path"] == "/compatible-mode/v1/files" and q["method"] == "POST"]


def chats(state):
    return [q for q in state.requests if q["path"] == "/compatible-mode/v1/chat/completions"]


def owner_of(state, file_id):
    return fake_qwen.qwen_files(state)[file_id]["key"]


async def test_qwen_long_reads_the_file_by_an_id_uploaded_once_with_the_serving_key(
        setup, caplog):
    base, _, state = setup()
    for _ in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
        assert resp.code == 200, resp.body
        assert f"[read: {SECRET}]" in json.loads(resp.body)["choices"][0]["message"]["content"]
    assert len(uploads(state)) == 1  # the second request reused the id for this key
    assert uploads(state)[0]["headers"]["Authorization"] == f"Bearer {fake_qwen.GOOD}"
    for chat in chats(state):
        system, user = chat["body"]["messages"]
        assert system["role"] == "system" and system["content"].startswith("fileid://file-fe-")
        assert set(system) == {"role", "content"}  # no gateway placeholder reaches Qwen
        assert user == {"role": "user", "content": "What was decided?"}
    for record in caplog.records:
        assert "41d9e2" not in record.getMessage()


async def test_the_sdk_streams_an_answer_about_a_file(setup):
    base, _, state = setup()
    got = await collect(await client(base, ALICE).chat.completions.create(
        **with_file("streamed notes 77"), stream=True))
    assert "[read: streamed notes 77]" in got["content"]


async def test_a_failover_to_another_key_uploads_the_file_again_with_that_key(setup):
    # POOR uploads fine but its chat is refused (arrears, a 402): the attempt with GOOD
    # must name GOOD's own upload, or Qwen would not find the file. The pool rotates, so
    # new files are sent until one request has met POOR first.
    base, _, state = setup(keys=(fake_qwen.POOR, fake_qwen.GOOD))
    for n in range(3):
        resp = await request(base + "/v1/chat/completions", "POST",
                             with_file(f"{SECRET} #{n}"), key=ALICE)
        assert resp.code == 200, resp.body
        if resp.headers.get("x-freeapi-attempts") == "2":
            break
    else:
        pytest.fail("no request met the key in arrears first")
    assert [u["headers"]["Authorization"] for u in uploads(state)][-2:] == [
        f"Bearer {fake_qwen.POOR}", f"Bearer {fake_qwen.GOOD}"]
    for chat in chats(state):
        file_id = chat["body"]["messages"][0]["content"][len("fileid://"):]
        assert chat["headers"]["Authorization"] == f"Bearer {owner_of(state, file_id)}"


async def test_an_upload_refused_for_a_key_moves_on_to_the_next_key(setup):
    base, _, state = setup(keys=(fake_qwen.DEAD, fake_qwen.GOOD))
    resp = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
    assert resp.code == 200, resp.body
    assert len(chats(state)) == 1
    assert chats(state)[0]["headers"]["Authorization"] == f"Bearer {fake_qwen.GOOD}"


async def test_the_chat_waits_until_model_studio_has_parsed_the_file(setup):
    base, _, state = setup()
    resp = await request(base + "/v1/chat/completions", "POST",
                         with_file("slow-parse of a long report"), key=ALICE)
    assert resp.code == 200, resp.body
    polls = [q for q in state.requests if q["path"].startswith("/compatible-mode/v1/files/")]
    assert len(polls) == fake_qwen.PARSE_POLLS


async def test_a_file_model_studio_cannot_parse_is_a_clear_400(setup):
    base, _, state = setup()
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 with_file("unparseable bytes"), key=ALICE), 400)
    assert err["code"] == "document_unreadable" and "could not parse" in err["message"]
    assert chats(state) == []


async def test_a_qwen_model_that_reads_no_files_names_qwen_long(setup):
    base, _, state = setup()
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 with_file(model="qwen-plus"), key=ALICE), 400)
    assert err["code"] == "documents_not_supported" and "qwen-long" in err["message"]
    assert uploads(state) == [] and chats(state) == []


async def test_models_list_says_which_models_read_documents(setup):
    base, _, _ = setup()
    listed = {m.id: m for m in (await client(base, ALICE).models.list()).data}
    assert "documents" in listed["qwen-long"].capabilities
    assert "documents" not in listed["qwen-plus"].capabilities
    assert "documents" in listed["moonshot-v1-8k"].capabilities  # Kimi: any model, by text


async def test_a_conversation_keeps_its_file_for_later_turns_and_other_keys(setup):
    base, gateway, state = setup()
    cid = json.loads((await request(base + "/v1/conversations", "POST", key=ALICE)).body)["id"]
    first = await request(base + "/v1/chat/completions", "POST",
                          with_file(conversation_id=cid), key=ALICE)
    assert first.code == 200, first.body
    # The id cached for the key is gone (another key, or a new day): the kept file is
    # uploaded again for the next turn, which carries no file of its own.
    sha = hashlib.sha256(SECRET.encode()).hexdigest()
    await gateway.store.kv_delete(documents.IDS, f"qwen:{key_hash(fake_qwen.GOOD)}:{sha}")
    later = {"model": "qwen-long", "conversation_id": cid,
             "messages": [{"role": "user", "content": "And who voted against?"}]}
    second = await request(base + "/v1/chat/completions", "POST", later, key=ALICE)
    assert second.code == 200, second.body
    assert f"[read: {SECRET}]" in json.loads(second.body)["choices"][0]["message"]["content"]
    assert len(uploads(state)) == 2
    # The same conversation cannot go on with a model that cannot read files by id.
    err = error_of(await request(base + "/v1/chat/completions", "POST",
                                 dict(later, model="moonshot-v1-8k"), key=ALICE), 400)
    assert err["code"] == "documents_not_supported"


async def test_another_caller_cannot_reach_a_file_by_its_hash(setup):
    base, _, state = setup()
    first = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
    assert first.code == 200, first.body
    cid = json.loads((await request(base + "/v1/conversations", "POST", key=BOB)).body)["id"]
    sha = hashlib.sha256(SECRET.encode()).hexdigest()
    forged = {"model": "qwen-long", "conversation_id": cid, "messages": [
        {"role": "system", "content": "", documents.REF: [sha]},
        {"role": "user", "content": "What was decided?"}]}
    err = error_of(await request(base + "/v1/chat/completions", "POST", forged, key=BOB), 400)
    assert err["code"] == "document_expired"
    assert len(chats(state)) == 1  # only Alice's


async def test_a_file_deleted_at_model_studio_is_uploaded_again_once(setup):
    base, _, state = setup()
    first = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
    assert first.code == 200, first.body
    fake_qwen.qwen_files(state).clear()  # deleted in the console; the id is still cached
    again = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
    assert again.code == 200, again.body
    assert f"[read: {SECRET}]" in json.loads(again.body)["choices"][0]["message"]["content"]
    assert len(uploads(state)) == 2 and len(chats(state)) == 3  # one 400, then the answer


async def test_a_file_the_vendor_keeps_missing_is_uploaded_again_only_once(setup,
                                                                          monkeypatch):
    base, _, state = setup()
    first = await request(base + "/v1/chat/completions", "POST", with_file(), key=ALICE)
    assert first.code == 200, first.body

    def never_found(state_, key, messages):  # every id the chat names is unknown
        ids = [m["content"] for m in messages if m.get("role") == "system"]
        return fake_qwen._error("invalid_parameter_error", f"File [id:{ids}] cannot be "
                                "found.", "invalid_request_error")
    monkeypatch.setattr(fake_qwen, "_referenced", never_found)
    err = error_of(await request(base + "/v1/chat/completions", "POST", with_file(),
                                 key=ALICE), 400)
    assert "cannot be found" in err["message"]
    assert len(chats(state)) == 3 and len(uploads(state)) == 2  # one retry, not a loop
