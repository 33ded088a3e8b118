"""POST /v1/audio/speech through the shared pipeline with the official openai SDK: StepFun
(the audio is the body), MiniMax T2A v2 (hex audio in events becomes the binary body),
audio relayed as it arrives, and clear 400s for what a vendor refuses."""

import asyncio

import openai
import pytest

from tests.fakes import minimax as fake_mm
from tests.fakes import step as fake_step
from tests.helpers import error_of, request
from tests.test_usage import ledger

GW = "gw-speech-key-000001"


@pytest.fixture
def gw(start_vendor, make_gateway):
    step_url, step_state = start_vendor(fake_step)
    mm_url, mm_state = start_vendor(fake_mm)
    base, gateway = make_gateway({"auth": {"keys": [{"key": GW, "name": "speaker"}]},
                                  "providers": {
                                      "step": {"base_url": step_url + "/v1", "discover": False,
                                               "api_keys": [fake_step.GOOD]},
                                      "minimax": {"base_url": mm_url + "/v1", "discover": False,
                                                  "api_keys": [fake_mm.GOOD]}}})
    return base, gateway, step_state, mm_state


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW, max_retries=0)


async def test_stepfun_speech_with_the_sdk(gw):
    base, gateway, step, _ = gw
    r = await client(base).audio.speech.create(model="step-tts-mini", voice="cixingnansheng",
                                               input="智能阶跃", response_format="wav")
    assert r.content == b"".join(fake_step.AUDIO)
    assert r.response.headers["content-type"] == "audio/wav"
    assert step.requests[-1]["body"] == {"model": "step-tts-mini", "input": "智能阶跃",
                                         "voice": "cixingnansheng", "response_format": "wav"}
    [e] = await ledger(gateway, 1)
    assert e["endpoint"] == "speech" and e["provider"] == "step" and e["status"] == 200
    assert e["key"] == "speaker" and e["error"] is None


async def test_minimax_hex_events_become_the_binary_body(gw):
    base, gateway, _, mm = gw
    r = await client(base).audio.speech.create(model="speech-2.8-hd", voice="alloy",
                                               input="Hello there")
    assert r.content == b"".join(fake_mm.AUDIO)  # the repeated whole is not sent twice
    assert r.response.headers["content-type"] == "audio/mpeg"
    sent = mm.requests[-1]["body"]
    assert sent["voice_setting"]["voice_id"] == "English_expressive_narrator"
    assert sent["text"] == "Hello there" and sent["stream"] is True
    assert sent["audio_setting"]["format"] == "mp3"
    r = await client(base).audio.speech.create(model="speech-2.8-hd", voice="female-shaonv",
                                               input="你好", response_format="pcm")
    assert r.content == b"".join(fake_mm.AUDIO)
    assert mm.requests[-1]["body"]["audio_setting"]["sample_rate"] == 24000
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["stream"], e["error"]) for e in rows] == [
        ("speech", "minimax", True, None)] * 2


@pytest.mark.parametrize("fake_name,model,voice", [
    ("step", "step-tts-mini", "cixingnansheng"), ("minimax", "speech-2.8-hd", "nova")])
async def test_audio_reaches_the_client_as_it_arrives(gw, fake_name, model, voice):
    base, _, step, mm = gw
    state, fake = (step, fake_step) if fake_name == "step" else (mm, fake_mm)
    state.gate = asyncio.Event()  # the vendor holds the rest of the audio until told
    async with client(base).audio.speech.with_streaming_response.create(
            model=model, voice=voice, input="hi") as resp:
        pieces = resp.iter_bytes()
        first = await asyncio.wait_for(pieces.__anext__(), 5)
        assert first == fake.AUDIO[0]  # before the vendor sent the rest
        state.gate.set()
        rest = b"".join([p async for p in pieces])
    assert first + rest == b"".join(fake.AUDIO)


@pytest.mark.parametrize("model,body,status,param,words", [
    ("speech-2.8-hd", {"voice": "no-such-voice"}, 400, None, "voice id not exist"),
    ("step-tts-mini", {"voice": "alloy"}, 400, None, "voice not found"),
    ("speech-2.8-hd", {"voice": "nova", "response_format": "opus"}, 400, "response_format",
     "mp3, pcm, flac"),
    ("step-tts-mini", {"voice": "cixingnansheng", "input": "x" * 1001}, 400, "input",
     "1,000 characters"),
    ("step-tts-mini", {"voice": "cixingnansheng", "speed": 9}, 400, "speed", "0.25"),
    ("step-tts-mini", {"voice": ""}, 400, "voice", "voice"),
    ("step-3.5-flash", {"voice": "cixingnansheng"}, 400, "model", "step-tts-mini"),
    ("deepseek-flash", {"voice": "alloy"}, 400, "model", "offers no speech"),
])
async def test_what_a_vendor_refuses_is_a_clear_400(gw, model, body, status, param, words):
    base = gw[0]
    resp = await request(base + "/v1/audio/speech", "POST",
                         {"model": model, "input": "hi", **body}, key=GW)
    err = error_of(resp, status)
    assert words in err["message"], err
    if param:
        assert err["param"] == param


async def test_a_client_that_leaves_mid_audio_stops_the_vendor(gw):
    base, gateway, step, _ = gw
    step.gate = asyncio.Event()
    async with client(base).audio.speech.with_streaming_response.create(
            model="step-tts-mini", voice="cixingnansheng", input="hi") as resp:
        pieces = resp.iter_bytes()
        await asyncio.wait_for(pieces.__anext__(), 5)
    # the client closed the response early
    [e] = await ledger(gateway, 1)
    assert e["status"] == 499 and e["endpoint"] == "speech"
    step.gate.set()


async def test_speed_null_means_the_default(gw):
    base = gw[0]
    resp = await request(base + "/v1/audio/speech", "POST", {
        "model": "speech-2.8-hd", "voice": "nova", "input": "hi", "speed": None}, key=GW)
    assert resp.code == 200 and resp.body == b"".join(fake_mm.AUDIO)


async def test_an_unreadable_audio_event_before_any_byte_is_a_502(gw):
    base, gateway = gw[0], gw[1]
    resp = await request(base + "/v1/audio/speech", "POST", {
        "model": "speech-2.8-hd", "voice": "nova", "input": "!badhex"}, key=GW)
    err = error_of(resp, 502)
    assert "audio event" in err["message"]


async def test_a_vendor_failing_mid_audio_never_looks_like_a_whole_file(gw):
    base, gateway = gw[0], gw[1]
    with pytest.raises(Exception) as e:
        await client(base).audio.speech.create(model="speech-2.8-hd", voice="nova",
                                               input="!cut here")
    assert not isinstance(e.value, openai.APIStatusError)  # a broken body, not a 200
    [entry] = await ledger(gateway, 1)
    assert entry["error"] is not None and entry["endpoint"] == "speech"


# -- speech to text -------------------------------------------------------------------------

AUDIO_FILE = ("clip.mp3", b"ID3\x04" + b"\x00" * 64, "audio/mpeg")


async def test_stepfun_transcription_with_the_sdk(gw):
    base, gateway, step, _ = gw
    c = client(base)
    r = await c.audio.transcriptions.create(model="step-asr", file=AUDIO_FILE)
    assert r.text == fake_step.TRANSCRIPT
    sent = step.requests[-1]
    assert sent["body"] == {"model": "step-asr", "response_format": "json"}
    assert sent["files"]["file"] == [(AUDIO_FILE[0], AUDIO_FILE[2], AUDIO_FILE[1])]
    text = await c.audio.transcriptions.create(model="step-asr", file=AUDIO_FILE,
                                               response_format="text")
    assert text.strip() == fake_step.TRANSCRIPT
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["status"]) for e in rows] == [
        ("transcriptions", "step", 200)] * 2


def form(fields: dict, files: dict) -> bytes:
    """A multipart/form-data body, by hand (boundary "b0undary")."""
    out = b""
    for name, value in fields.items():
        out += (f'--b0undary\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    for name, (filename, data, media_type) in files.items():
        out += (f'--b0undary\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n').encode()
        out += data + b"\r\n"
    return out + b"--b0undary--\r\n"


@pytest.mark.parametrize("fields,files,param,words", [
    ({"model": "step-asr"}, {}, "file", "`file` is required"),
    ({"model": "step-asr", "response_format": "verbose_json"}, {"file": AUDIO_FILE},
     "response_format", "json, text, srt or vtt"),
    ({"model": "step-tts-mini"}, {"file": AUDIO_FILE}, "model", "step-asr"),
    ({}, {"file": AUDIO_FILE}, "model", "`model` is required"),
])
async def test_a_transcription_the_vendor_refuses_is_a_clear_400(gw, fields, files, param,
                                                                  words):
    base, _, step, _ = gw
    resp = await request(base + "/v1/audio/transcriptions", "POST", form(fields, files),
                         key=GW, headers={
                             "Content-Type": "multipart/form-data; boundary=b0undary"})
    err = error_of(resp, 400)
    assert err["param"] == param and words in err["message"], err
    assert not any(q["path"] == "/v1/audio/transcriptions" for q in step.requests)


async def test_a_transcription_as_json_is_a_clear_400(gw):
    resp = await request(gw[0] + "/v1/audio/transcriptions", "POST", {"model": "step-asr"},
                         key=GW)
    assert error_of(resp, 400)["code"] == "invalid_content_type"
