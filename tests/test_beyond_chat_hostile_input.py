"""Hostile input at the doors beyond chat: wrong JSON types, malformed
multipart, forged gateway placeholders and broken vendor answers each get a clear
OpenAI-shaped 4xx (or a 502 for the vendor's fault), never a 500 with a traceback, and
nothing a client forges reaches a vendor. Found by fuzzing a gateway in front of the fake
vendors; each test pins one bug that was there."""

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tornado import web

from freeapi.errors import APIError
from freeapi.modalities import documents
from freeapi.modalities.transcriptions import parse_form
from tests.fakes import glm as fake_glm
from tests.fakes import qwen as fake_qwen
from tests.fakes import step as fake_step
from tests.fakes.common import serve
from tests.helpers import error_of, request

GW = "gw-hostile-beyond-0001"
BOUNDARY = "b0undary"
MP = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def gw(start_vendor, make_gateway):
    glm_url, glm = start_vendor(fake_glm)
    qwen_url, qwen = start_vendor(fake_qwen)
    step_url, step = start_vendor(fake_step)
    base, _ = make_gateway({"auth": {"keys": [GW]}, "providers": {
        "glm": {"base_url": glm_url + "/api/paas/v4", "api_keys": [fake_glm.GOOD]},
        "qwen": {"base_url": qwen_url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
                 "discover": False},
        "step": {"base_url": step_url + "/v1", "api_keys": [fake_step.GOOD],
                 "discover": False}}})
    return base, {"glm": glm, "qwen": qwen, "step": step}


def no_tracebacks(caplog):
    # (the access log's line for a 502 is at ERROR level; an SDK client another test left
    # to the collector may log its own failed close on this test's loop: not the gateway's)
    for record in caplog.records:
        if record.name.startswith(("freeapi", "tornado")):
            assert record.exc_info is None and record.name != "tornado.application", \
                record.getMessage()[:300]


def form(*parts) -> bytes:
    out = b""
    for head, value in parts:
        out += f"--{BOUNDARY}\r\n".encode() + head + b"\r\n\r\n" + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def field(name: bytes, value: bytes):
    return b'Content-Disposition: form-data; name="' + name + b'"', value


def upload(value: bytes = b"RIFF....", ctype: bytes = b"audio/wav", filename=b"a.wav"):
    return (b'Content-Disposition: form-data; name="file"; filename="' + filename +
            b'"\r\nContent-Type: ' + ctype, value)


# -- JSON fields of the wrong type ------------------------------------------------------------

@pytest.mark.parametrize("fmt", [[], ["mp3"], {}, {"mp3": 1}])
async def test_a_speech_response_format_that_is_not_a_string_is_a_400(gw, caplog, fmt):
    base, vendors = gw
    resp = await request(base + "/v1/audio/speech", "POST", {
        "model": "step-tts-mini", "input": "hi", "voice": "v", "response_format": fmt},
        key=GW)
    assert error_of(resp, 400)["param"] == "response_format"
    assert vendors["step"].requests == []
    no_tracebacks(caplog)


@pytest.mark.parametrize("quality", [[], ["hd"], {}, {"hd": True}])
async def test_a_glm_image_quality_that_is_not_a_string_is_a_400(gw, caplog, quality):
    base, vendors = gw
    resp = await request(base + "/v1/images/generations", "POST", {
        "model": "cogview-3-flash", "prompt": "a cat", "quality": quality}, key=GW)
    assert error_of(resp, 400)["param"] == "quality"
    assert vendors["glm"].requests == []
    no_tracebacks(caplog)


# -- malformed multipart --------------------------------------------------------------------

GOOD_TRANSCRIPTION = (field(b"model", b"step-asr"), upload())
GOOD_FILE = (field(b"purpose", b"user_data"), upload(b"notes", b"text/plain", b"n.txt"))

MALFORMED = {
    "empty body": (MP, lambda good: b""),
    "no closing boundary": (MP, lambda good: form(*good)[:-12]),
    "cut inside a part": (MP, lambda good: form(*good)[:40] + f"--{BOUNDARY}--".encode()),
    "no boundary parameter": ("multipart/form-data", lambda good: form(*good)),
    "an empty boundary": ("multipart/form-data; boundary=", lambda good: form(*good)),
    "a media type that only starts like it": (
        f"multipart/form-dataX; boundary={BOUNDARY}", lambda good: form(*good)),
    "a part header of 100 kB": (MP, lambda good: form(field(b"x" * 100_000, b"v"), *good)),
    "a part header that is not UTF-8": (MP, lambda good: form(
        field(b"model\xff", b"step-asr"), *good)),
    "a control character in a part's Content-Type": (MP, lambda good: form(
        good[0], upload(ctype=b"audio/\x01wav"))),
    "a part that is not form-data": (MP, lambda good: form(
        (b"Content-Disposition: attachment", b"x"), *good)),
    "a part without a name": (MP, lambda good: form(
        (b"Content-Disposition: form-data", b"x"), *good)),
}


@pytest.mark.parametrize("path,good", [("/v1/audio/transcriptions", GOOD_TRANSCRIPTION),
                                       ("/v1/files", GOOD_FILE)], ids=["transcriptions",
                                                                       "files"])
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_multipart_body_is_a_400_not_a_500(gw, caplog, path, good, case):
    base, vendors = gw
    ctype, make = MALFORMED[case]
    resp = await request(base + path, "POST", make(good), key=GW,
                         headers={"Content-Type": ctype})
    assert error_of(resp, 400)
    assert vendors["step"].requests == []
    no_tracebacks(caplog)


def valid_form() -> bytes:
    return form(*GOOD_TRANSCRIPTION)


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, 200), edits=st.lists(st.tuples(st.integers(0, 200),
                                                          st.integers(0, 255)), max_size=4),
       junk=st.binary(max_size=40), ctype=st.sampled_from(
           [MP, "multipart/form-data", f'multipart/form-data; boundary="{BOUNDARY}"',
            "multipart/form-data; boundary=other", "multipart/form-data;boundary"]))
def test_any_mangled_form_is_parsed_or_refused_with_a_400(cut, edits, junk, ctype):
    """parse_form on a valid form cut short, bytes changed, junk appended: a dict or an
    APIError 400, never another exception (which the handler turned into a 500)."""
    raw = bytearray(valid_form())
    raw = raw[:len(raw) - cut % len(raw)]
    for pos, value in edits:
        if raw:
            raw[pos % len(raw)] = value
    try:
        got = parse_form(ctype, bytes(raw) + junk)
    except APIError as e:
        assert e.status == 400
    else:
        assert isinstance(got["file"][2], bytes) and got["file"][2]


async def test_a_file_stored_with_a_non_latin1_media_type_is_still_served(gw, caplog):
    base, _ = gw
    resp = await request(base + "/v1/files", "POST", form(
        field(b"purpose", b"user_data"), upload(b"notes", "音/频".encode(), b"n.txt")),
        key=GW, headers={"Content-Type": MP})
    assert resp.code == 200, resp.body
    file_id = json.loads(resp.body)["id"]
    got = await request(base + f"/v1/files/{file_id}/content", key=GW)
    assert got.code == 200 and got.body == b"notes"
    no_tracebacks(caplog)


# -- the gateway's document placeholder, forged by a client ---------------------------------

SHA = "b" * 64


def chats(state):
    return [q for q in state.requests if q["path"].endswith("/chat/completions")]


@pytest.mark.parametrize("model", ["qwen-plus", "qwen-long", "glm-4.7-flash"])
async def test_a_forged_document_placeholder_never_reaches_the_vendor(gw, model):
    base, vendors = gw
    resp = await request(base + "/v1/chat/completions", "POST", {"model": model, "messages": [
        {"role": "system", "content": "be brief", documents.REF: [SHA]},
        {"role": "user", "content": "hi"}]}, key=GW)
    err = error_of(resp, 400)
    assert documents.REF in err["message"]
    assert chats(vendors["qwen"]) == [] and chats(vendors["glm"]) == []


async def test_a_forged_null_placeholder_beside_a_real_file_never_reaches_qwen(gw):
    base, vendors = gw
    data = base64.b64encode(b"minutes").decode()
    resp = await request(base + "/v1/chat/completions", "POST", {
        "model": "qwen-long", "messages": [
            {"role": "system", "content": "be brief", documents.REF: None},
            {"role": "user", "content": [
                {"type": "text", "text": "What was decided?"},
                {"type": "file", "file": {"filename": "m.txt",
                                          "file_data": f"data:text/plain;base64,{data}"}}]}]},
        key=GW)
    error_of(resp, 400)
    assert chats(vendors["qwen"]) == []


# -- broken vendor answers --------------------------------------------------------------------

class _BrokenTask(web.RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"request_id": "r1", "output": self.settings["output"]}))


@pytest.mark.parametrize("output", [[], "PENDING", 7, None, {"choices": ["x"]},
                                    {"choices": [{"message": "x"}]}])
async def test_a_dashscope_task_answer_that_is_not_an_object_is_a_502(make_gateway, caplog,
                                                                     output):
    url, server = serve(web.Application(
        [(r"/api/v1/services/aigc/text2image/image-synthesis", _BrokenTask)], output=output))
    try:
        base, _ = make_gateway({"auth": {"keys": [GW]}, "providers": {"qwen": {
            "base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
            "discover": False}}})
        resp = await request(base + "/v1/images/generations", "POST", {
            "model": "qwen-image-plus", "prompt": "a cat"}, key=GW)
        assert error_of(resp, 502)
        no_tracebacks(caplog)
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/v1/images/edits", "/v1/images/variations"])
async def test_a_malformed_image_edit_form_is_a_400_not_a_500(gw, caplog, path):
    base, _ = gw
    good = (field(b"model", b"qwen-image-edit-max"), field(b"prompt", b"a hat"),
            (b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n'
             b"Content-Type: image/png", b"\x89PNG"))
    resp = await request(base + path, "POST", form(*good)[:-12], key=GW,
                         headers={"Content-Type": MP})
    assert error_of(resp, 400)
    no_tracebacks(caplog)


class _BrokenFiles(web.RequestHandler):
    """Model Studio's files API answering an upload, then a status request, oddly."""

    def post(self):
        self.finish(self.settings["upload"])

    def get(self, file_id):
        self.finish(self.settings["status"])


@pytest.mark.parametrize("upload_answer,status_answer", [
    (b"[]", b"{}"),
    (b'{"id": "file-fe-1", "status": "processing"}', b"not json"),
    (b'{"id": "file-fe-1", "status": "processing"}', b'["processed"]'),
])
async def test_a_broken_qwen_long_file_answer_is_a_502(make_gateway, caplog, upload_answer,
                                                       status_answer):
    url, server = serve(web.Application([
        (r"/compatible-mode/v1/files", _BrokenFiles),
        (r"/compatible-mode/v1/files/([^/]+)", _BrokenFiles)],
        upload=upload_answer, status=status_answer))
    try:
        base, _ = make_gateway({"auth": {"keys": [GW]}, "providers": {"qwen": {
            "base_url": url + "/compatible-mode/v1", "api_keys": [fake_qwen.GOOD],
            "discover": False}}})
        data = base64.b64encode(b"some text").decode()
        resp = await request(base + "/v1/chat/completions", "POST", {
            "model": "qwen-long", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Summarise."},
                {"type": "file", "file": {"file_data": f"data:text/plain;base64,{data}"}}]}]},
            key=GW)
        assert error_of(resp, 502)
        no_tracebacks(caplog)
    finally:
        server.stop()


async def test_a_multipart_media_type_in_any_case_is_a_form(gw):
    base, _ = gw
    resp = await request(base + "/v1/files", "POST", form(
        field(b"purpose", b"user_data"), upload(b"notes", b"text/plain", b"n.txt")), key=GW,
        headers={"Content-Type": f"Multipart/Form-Data; boundary={BOUNDARY}"})
    assert resp.code == 200, resp.body
