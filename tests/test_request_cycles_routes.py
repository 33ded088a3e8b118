"""The routes beyond the chat doors leave nothing to the cyclic garbage collector either
(tests/test_request_cycles.py: why, and the check): the operations (embeddings, images,
speech, transcriptions), documents, files, the key check, the models list, and what
probes, scrapers and operators read. A raised error held by a local of a frame in its own
traceback made a cycle with every frame up to the handler's; those frames now let go of
it as it leaves (`finally: err = None`, as in freeapi/pipeline/failover.py)."""

import asyncio
import json

import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import minimax as fake_mm
from tests.fakes import openai_compat as fake_local
from tests.fakes import qwen as fake_qwen
from tests.fakes import step as fake_step
from tests.fakes.deepseek import GOOD
from tests.helpers import request
from tests.test_documents_glm import with_file
from tests.test_file_uploads_admission import BOUNDARY, upload
from tests.test_request_cycles import (ADMIN, ALICE, KEYS, RPM1,
                                       freed_without_the_collector, leave)
from tests.test_speech import form


def multipart(fields: dict, files: dict) -> tuple[bytes, dict]:
    return form(fields, files), {"Content-Type": "multipart/form-data; boundary=b0undary"}


PNG = ("a.png", fake_local.PNG, "image/png")
EDIT = multipart({"model": "local/flux-kontext", "prompt": "a hat"}, {"image": PNG})
VARIATION = multipart({"model": "local/flux-kontext"}, {"image": PNG})
HEARD = multipart({"model": "local/whisper-1"}, {"file": ("a.wav", b"RIFF....", "audio/wav")})

OPERATIONS = [  # against a `type: openai` server (tests/fakes/openai_compat.py)
    ("/v1/embeddings", {"model": "local/nomic-embed-text", "input": ["a", "b"]}, 200),
    ("/v1/embeddings", {"model": "local/no-such-embedder", "input": "a"}, 404),
    ("/v1/images/generations", {"model": "local/sd-turbo", "prompt": "a cat",
                                "response_format": "b64_json"}, 200),
    ("/v1/images/edits", EDIT, 200),
    ("/v1/images/variations", VARIATION, 200),
    ("/v1/audio/speech", {"model": "local/kokoro", "voice": "af_heart", "input": "hi"}, 200),
    ("/v1/audio/transcriptions", HEARD, 200),
]


@pytest.mark.parametrize("path,body,status", OPERATIONS)
async def test_an_operation_leaves_no_cycle(start_vendor, make_gateway, monkeypatch, path,
                                           body, status):
    url, _ = start_vendor(fake_local)
    base, _ = make_gateway({**KEYS, "providers": {
        "local": {"type": "openai", "base_url": url + "/v1", "discover": False}}})
    body, headers = body if isinstance(body, tuple) else (body, None)
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + path, "POST", body, key=ALICE, headers=headers), status)


def speech_gateway(start_vendor, make_gateway):
    step_url, step = start_vendor(fake_step)
    mm_url, _ = start_vendor(fake_mm)
    base, _ = make_gateway({**KEYS, "providers": {
        "step": {"base_url": step_url + "/v1", "discover": False,
                 "api_keys": [fake_step.GOOD]},
        "minimax": {"base_url": mm_url + "/v1", "discover": False,
                    "api_keys": [fake_mm.GOOD]}}})
    return base, step


async def test_speech_a_vendor_garbles_before_any_audio_leaves_no_cycle(start_vendor,
                                                                        make_gateway,
                                                                        monkeypatch):
    base, _ = speech_gateway(start_vendor, make_gateway)
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + "/v1/audio/speech", "POST", {"model": "speech-2.8-hd", "voice": "nova",
                                            "input": "!badhex"}, key=ALICE), 502)


async def test_speech_a_vendor_cuts_mid_audio_leaves_no_cycle(start_vendor, make_gateway,
                                                              monkeypatch):
    base, _ = speech_gateway(start_vendor, make_gateway)

    async def send():  # the client sees the body cut short
        stream = await leave(base, "/v1/audio/speech", {
            "model": "speech-2.8-hd", "voice": "nova", "input": "!cut here"}, None, ALICE)
        await stream.read_until_close()
    await freed_without_the_collector(monkeypatch, send, None)


async def test_speech_a_client_that_leaves_mid_audio_leaves_no_cycle(start_vendor,
                                                                     make_gateway,
                                                                     monkeypatch):
    base, step = speech_gateway(start_vendor, make_gateway)
    step.gate = asyncio.Event()  # the vendor holds the rest of the audio

    async def send():
        stream = await leave(base, "/v1/audio/speech", {"model": "step-tts-mini",
                             "voice": "cixingnansheng", "input": "hi"}, b"\r\n\r\n", ALICE)
        stream.close()
    try:
        await freed_without_the_collector(monkeypatch, send, None)
    finally:
        step.gate.set()


async def test_an_image_task_that_fails_leaves_no_cycle(start_vendor, make_gateway,
                                                        monkeypatch):
    url, _ = start_vendor(fake_qwen)
    base, _ = make_gateway({**KEYS, "providers": {"qwen": {
        "base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
        "discover": False}}})
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + "/v1/images/generations", "POST",
        {"model": "qwen-image-plus", "prompt": "!fail this"}, key=ALICE), 400)


@pytest.mark.parametrize("keys,key,parse_fails,status", [
    ([fake_glm.GOOD], ALICE, False, 200),
    ([fake_glm.GOOD], ALICE, True, 400),  # the vendor could not parse it
    ([fake_glm.DEAD], ALICE, False, 503),  # no key of the gateway's could upload it
    (None, fake_glm.DEAD, False, 401),  # nor the client's own (pass-through)
])
async def test_a_document_read_leaves_no_cycle(start_vendor, make_gateway, monkeypatch, keys,
                                              key, parse_fails, status):
    url, state = start_vendor(fake_glm)
    state.parse_fails = parse_fails
    glm = {"base_url": url + "/api/paas/v4"}
    base, _ = make_gateway({**KEYS, "providers": {"glm": {**glm, "api_keys": keys}}}
                           if keys else {"providers": {"glm": glm}})
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + "/v1/chat/completions", "POST", with_file(), key=key), status)


async def test_files_leave_no_cycle(make_gateway, monkeypatch):
    base, _ = make_gateway({**KEYS, "files": {"max_file_bytes": 1000}})
    made = []

    async def uploaded():
        resp = await upload(base, ALICE)
        made.append(json.loads(resp.body)["id"])
        return resp
    await freed_without_the_collector(monkeypatch, uploaded, 200)
    for path in ("/v1/files", f"/v1/files/{made[0]}", f"/v1/files/{made[0]}/content"):
        await freed_without_the_collector(
            monkeypatch, lambda: request(base + path, key=ALICE), 200)
    gone = iter(made)
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + f"/v1/files/{next(gone)}", "DELETE", key=ALICE), 200)


@pytest.mark.parametrize("data,key,status", [
    (b"a" * 1001, ALICE, 413),  # over files.max_file_bytes once read
    (b"a" * 90_000, ALICE, 413),  # from its Content-Length: answered before its body
    (b"notes", RPM1, 429),  # the key's rpm, before the body too
    (None, RPM1, 429),  # no body coming: raised by the handler
])
async def test_a_refused_upload_leaves_no_cycle(make_gateway, monkeypatch, data, key,
                                               status):
    base, _ = make_gateway({**KEYS, "files": {"max_file_bytes": 1000}})
    await upload(base, key)  # RPM1's one request

    def send():
        if data is None:
            return request(base + "/v1/files", "POST", b"", key=key, headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        return upload(base, key, data)
    await freed_without_the_collector(monkeypatch, send, status)


async def test_a_chunked_body_over_the_limit_leaves_no_cycle(make_gateway, monkeypatch):
    """A body without a Content-Length is refused by its handler, once it outgrew
    server.max_body_size (raw_body)."""
    base, _ = make_gateway(KEYS)

    async def body(write):
        await write(b'{"model": "deepseek-chat", "pad": "' + b"x" * 200_000 + b'"}')

    def send():
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        return AsyncHTTPClient().fetch(HTTPRequest(
            base + "/v1/chat/completions", "POST", body_producer=body,
            headers={"Authorization": f"Bearer {ALICE}"}), raise_error=False)
    await freed_without_the_collector(monkeypatch, send, 413)


@pytest.mark.parametrize("token,status", [(GOOD, 200), ("sk-outage-key-00000000001", 502)])
async def test_a_key_check_leaves_no_cycle(make_gateway, upstream_state, monkeypatch, token,
                                          status):
    upstream_state.keys["sk-outage-key-00000000001"] = "outage"  # the vendor answers 503
    base, _ = make_gateway()
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + "/token/check", "POST", {"token": token}), status)


READS = [  # what clients, probes, scrapers and operators read
    ("/v1/models", ALICE, 200),
    ("/v1/models/deepseek-chat", ALICE, 200),
    ("/v1/models/no-such-model", ALICE, 404),
    ("/v1/keys", ADMIN, 200),
    ("/ping", None, 200),
    ("/healthz", None, 200),
    ("/metrics", ADMIN, 200),
    ("/status", None, 200),
    ("/v1/status", ADMIN, 200),
    ("/admin/keys", ADMIN, 200),
    ("/admin/teams", ADMIN, 200),
    ("/admin/audit", ADMIN, 200),
    ("/admin/requests", ADMIN, 200),
    ("/admin/spend", ADMIN, 200),
    ("/admin/keys", ALICE, 403),
]


@pytest.mark.parametrize("path,key,status", READS)
async def test_a_read_leaves_no_cycle(make_gateway, monkeypatch, path, key, status):
    base, _ = make_gateway(KEYS)
    await freed_without_the_collector(monkeypatch, lambda: request(base + path, key=key),
                                      status)


async def test_counting_tokens_leaves_no_cycle(make_gateway, monkeypatch):
    base, _ = make_gateway(KEYS)
    await freed_without_the_collector(monkeypatch, lambda: request(
        base + "/v1/messages/count_tokens", "POST",
        {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]},
        key=ALICE), 200)


async def test_stored_conversations_and_responses_leave_no_cycle(make_gateway, monkeypatch):
    base, _ = make_gateway(KEYS)
    made = []

    def stored(path, body):
        async def send():
            resp = await request(base + path, "POST", body, key=ALICE)
            made.append(json.loads(resp.body)["id"])
            return resp
        return send
    await freed_without_the_collector(monkeypatch, stored("/v1/conversations", {}), 200)
    conversation = made.pop()
    await freed_without_the_collector(monkeypatch, stored(
        "/v1/responses", {"model": "deepseek-chat", "input": "hi"}), 200)
    for path, status in ((f"/v1/conversations/{conversation}", 200),
                         ("/v1/conversations/conv_none", 404),
                         (f"/v1/responses/{made[-1]}", 200),
                         ("/v1/responses/resp_none", 404)):
        await freed_without_the_collector(
            monkeypatch, lambda: request(base + path, key=ALICE), status)
