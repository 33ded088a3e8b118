"""Speech and transcription at GLM (GLM-TTS, GLM-ASR) and Qwen (Qwen-TTS, Qwen3-ASR-Flash)
through the shared pipeline, with the official openai SDK: OpenAI's voices and formats
mapped to each vendor's, audio relayed as it arrives (GLM's body, Qwen's base64 events) or
downloaded with no key (Qwen's wav URL), failover to a second key, the ledger, and clear
400s for what a vendor cannot do."""

import asyncio
import base64
import json

import openai
import pytest

from tests.fakes import glm as fake_glm
from tests.fakes import qwen as fake_qwen
from tests.helpers import error_of, request
from tests.test_usage import ledger

GW = "gw-speech-key-000002"
WAV_CLIP = ("clip.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64, "audio/wav")


@pytest.fixture
def gw(start_vendor, make_gateway):
    glm_url, glm = start_vendor(fake_glm)
    qwen_url, qwen = start_vendor(fake_qwen)

    def start(glm_keys=(fake_glm.GOOD,), qwen_keys=(fake_qwen.GOOD,)):
        return make_gateway({"auth": {"keys": [{"key": GW, "name": "speaker"}]}, "providers": {
            "glm": {"base_url": glm_url + "/api/paas/v4", "api_keys": list(glm_keys)},
            "qwen": {"base_url": qwen_url + "/compatible-mode/v1", "discover": False,
                     "api_keys": list(qwen_keys)}}})
    return start, glm, qwen


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW, max_retries=0)


# -- GLM-TTS ---------------------------------------------------------------------------------

async def test_glm_speech_with_the_sdk_maps_openai_voices_and_defaults_to_wav(gw):
    start, glm, _ = gw
    base, gateway = start()
    r = await client(base).audio.speech.create(model="glm-tts", voice="alloy", input="你好")
    assert r.content == b"".join(fake_glm.TTS_AUDIO)
    assert r.response.headers["content-type"] == "audio/wav"
    assert glm.requests[-1]["body"] == {"model": "glm-tts", "input": "你好", "voice": "tongtong",
                                        "response_format": "wav", "stream": False}
    r = await client(base).audio.speech.create(model="glm-tts", voice="xiaochen", input="hi",
                                               response_format="pcm", speed=1.5)
    assert r.content == b"".join(fake_glm.TTS_AUDIO)
    assert glm.requests[-1]["body"]["speed"] == 1.5
    assert glm.requests[-1]["body"]["voice"] == "xiaochen"
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["status"], e["key"], e["error"]) for e in rows] \
        == [("speech", "glm", 200, "speaker", None)] * 2


async def test_glm_audio_reaches_the_client_as_it_arrives(gw):
    start, glm, _ = gw
    base, _ = start()
    glm.gate = asyncio.Event()
    async with client(base).audio.speech.with_streaming_response.create(
            model="glm-tts", voice="nova", input="hi") as resp:
        pieces = resp.iter_bytes()
        first = await asyncio.wait_for(pieces.__anext__(), 5)
        assert first == fake_glm.TTS_AUDIO[0]  # before the vendor sent the rest
        glm.gate.set()
        rest = b"".join([p async for p in pieces])
    assert first + rest == b"".join(fake_glm.TTS_AUDIO)


async def test_glm_speech_fails_over_to_the_second_key(gw):
    start, glm, _ = gw
    base, gateway = start(glm_keys=(fake_glm.DEAD, fake_glm.GOOD2))
    for _ in range(2):  # the pool starts anywhere: two requests meet the dead key once
        r = await client(base).audio.speech.create(model="glm-tts", voice="alloy", input="hi")
        assert r.content == b"".join(fake_glm.TTS_AUDIO)
    sent = [q["headers"]["Authorization"][7:] for q in glm.requests
            if q["path"].endswith("/audio/speech")]
    assert sent.count(fake_glm.DEAD) == 1 and sent.count(fake_glm.GOOD2) == 2
    rows = await ledger(gateway, 2)
    assert [(e["status"], e["vendor_key"][-4:]) for e in rows] == [(200, "et02")] * 2


async def test_glm_failing_mid_audio_never_looks_like_a_whole_file(gw):
    start, _, _ = gw
    base, gateway = start()
    with pytest.raises(Exception) as e:
        await client(base).audio.speech.create(model="glm-tts", voice="alloy",
                                               input="!cut here")
    assert not isinstance(e.value, openai.APIStatusError)  # a broken body, not a 200
    [entry] = await ledger(gateway, 1)
    assert entry["error"] is not None and entry["endpoint"] == "speech"


# -- Qwen-TTS --------------------------------------------------------------------------------

async def test_qwen_wav_is_downloaded_from_its_url_without_a_key(gw):
    start, _, qwen = gw
    base, gateway = start()
    r = await client(base).audio.speech.create(model="qwen3-tts-flash", voice="alloy",
                                               input="今天天气真好")
    assert r.content == fake_qwen.WAV
    assert r.response.headers["content-type"] == "audio/wav"
    submit, download = qwen.requests[-2:]
    assert submit["body"] == {"model": "qwen3-tts-flash",
                              "input": {"text": "今天天气真好", "voice": "Cherry"}}
    assert "X-Dashscope-Sse" not in submit["headers"]
    assert download["path"] == "/files/qwen-tts.wav"
    assert "Authorization" not in download["headers"]
    [e] = await ledger(gateway, 1)
    assert (e["endpoint"], e["provider"], e["status"], e["stream"], e["error"]) == (
        "speech", "qwen", 200, False, None)


async def test_qwen_pcm_streams_its_base64_events_as_they_arrive(gw):
    start, _, qwen = gw
    base, gateway = start()
    qwen.gate = asyncio.Event()
    async with client(base).audio.speech.with_streaming_response.create(
            model="qwen3-tts-flash", voice="Ethan", input="hi", response_format="pcm") as resp:
        assert resp.headers["content-type"] == "audio/pcm"
        pieces = resp.iter_bytes()
        first = await asyncio.wait_for(pieces.__anext__(), 5)
        assert first == fake_qwen.PCM[0]
        qwen.gate.set()
        rest = b"".join([p async for p in pieces])
    assert first + rest == b"".join(fake_qwen.PCM)
    assert qwen.requests[-1]["headers"]["X-Dashscope-Sse"] == "enable"
    assert qwen.requests[-1]["body"]["input"]["voice"] == "Ethan"
    [e] = await ledger(gateway, 1)
    assert e["stream"] is True and e["status"] == 200 and e["error"] is None


async def test_qwen_speech_fails_over_to_the_second_key(gw):
    start, _, qwen = gw
    base, gateway = start(qwen_keys=(fake_qwen.DEAD, fake_qwen.GOOD2))
    for _ in range(2):  # the pool starts anywhere: two requests meet the dead key once
        r = await client(base).audio.speech.create(model="qwen3-tts-flash", voice="nova",
                                                   input="hi", response_format="pcm")
        assert r.content == b"".join(fake_qwen.PCM)
    sent = [q["headers"]["Authorization"][7:] for q in qwen.requests
            if q["path"].endswith("/generation")]
    assert sent.count(fake_qwen.DEAD) == 1 and sent.count(fake_qwen.GOOD2) == 2
    rows = await ledger(gateway, 2)
    assert [e["vendor_key"] for e in rows] == ["sk-...0002"] * 2


async def test_qwen_failing_mid_audio_never_looks_like_a_whole_file(gw):
    start, _, _ = gw
    base, gateway = start()
    with pytest.raises(Exception) as e:
        await client(base).audio.speech.create(model="qwen3-tts-flash", voice="Cherry",
                                               input="!cut here", response_format="pcm")
    assert not isinstance(e.value, openai.APIStatusError)
    [entry] = await ledger(gateway, 1)
    assert entry["error"] is not None and entry["endpoint"] == "speech"


async def test_a_qwen_error_event_before_any_audio_is_a_clear_error(gw):
    start, _, _ = gw
    base, _ = start()
    resp = await request(base + "/v1/audio/speech", "POST", {
        "model": "qwen3-tts-flash", "voice": "Cherry", "input": "!flagged",
        "response_format": "pcm"}, key=GW)
    err = error_of(resp, 400)
    assert "inappropriate" in err["message"] and err["code"] == "DataInspectionFailed"


@pytest.mark.parametrize("model,body,param,words", [
    ("glm-tts", {"voice": "alloy", "response_format": "mp3"}, "response_format", "wav or pcm"),
    ("glm-tts", {"voice": "Cherry"}, "voice", "tongtong"),
    ("glm-tts", {"voice": "alloy", "speed": 3}, "speed", "0.5 to 2.0"),
    ("glm-tts", {"voice": "alloy", "input": "x" * 1025}, "input", "1024 characters"),
    ("glm-4.7", {"voice": "alloy"}, "model", "glm-tts"),
    ("qwen3-tts-flash", {"voice": "tongtong"}, "voice", "Cherry"),
    ("qwen3-tts-flash", {"voice": "alloy", "response_format": "opus"}, "response_format",
     "wav (whole) or pcm"),
    ("qwen3-tts-flash", {"voice": "alloy", "speed": 1.5}, "speed", "no speed"),
    ("qwen3-tts-flash", {"voice": "alloy", "input": "字" * 601}, "input", "600 characters"),
])
async def test_what_glm_or_qwen_cannot_speak_is_a_clear_400(gw, model, body, param, words):
    start, glm, qwen = gw
    base, _ = start()
    resp = await request(base + "/v1/audio/speech", "POST",
                         {"model": model, "input": "hi", **body}, key=GW)
    err = error_of(resp, 400)
    assert err["param"] == param and words in err["message"], err
    assert not glm.requests and not qwen.requests  # refused before anything was sent


# -- GLM-ASR and Qwen3-ASR-Flash ------------------------------------------------------------

async def test_glm_transcription_with_the_sdk(gw):
    start, glm, _ = gw
    base, gateway = start()
    c = client(base)
    r = await c.audio.transcriptions.create(model="glm-asr-2512", file=WAV_CLIP,
                                            prompt="前文")
    assert r.text == fake_glm.TRANSCRIPT
    sent = glm.requests[-1]
    assert sent["body"] == {"model": "glm-asr-2512", "stream": "false", "prompt": "前文"}
    assert sent["files"]["file"] == [(WAV_CLIP[0], WAV_CLIP[2], WAV_CLIP[1])]
    text = await c.audio.transcriptions.create(model="glm-asr-2512", file=WAV_CLIP,
                                               response_format="text")
    assert text.strip() == fake_glm.TRANSCRIPT
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["status"]) for e in rows] == [
        ("transcriptions", "glm", 200)] * 2


async def test_qwen_transcription_sends_the_file_as_a_data_url(gw):
    start, _, qwen = gw
    base, gateway = start()
    c = client(base)
    r = await c.audio.transcriptions.create(model="qwen3-asr-flash", file=WAV_CLIP,
                                            language="zh", prompt="阿里云")
    assert r.text == fake_qwen.TRANSCRIPT
    body = qwen.requests[-1]["body"]
    system, user = body["input"]["messages"]
    assert system == {"role": "system", "content": [{"text": "阿里云"}]}
    assert user["content"] == [
        {"audio": "data:audio/wav;base64," + base64.b64encode(WAV_CLIP[1]).decode()}]
    assert body["parameters"]["asr_options"]["language"] == "zh"
    text = await c.audio.transcriptions.create(model="qwen3-asr-flash", file=WAV_CLIP,
                                               response_format="text")
    assert text.strip() == fake_qwen.TRANSCRIPT
    rows = await ledger(gateway, 2)
    assert [(e["endpoint"], e["provider"], e["status"]) for e in rows] == [
        ("transcriptions", "qwen", 200)] * 2


def form(fields: dict, files: dict) -> bytes:
    out = b""
    for name, value in fields.items():
        out += (f'--b0undary\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    for name, (filename, data, media_type) in files.items():
        out += (f'--b0undary\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n').encode()
        out += data + b"\r\n"
    return out + b"--b0undary--\r\n"


@pytest.mark.parametrize("fields,file,words", [
    ({"model": "glm-asr-2512", "response_format": "srt"}, WAV_CLIP, "json or text"),
    ({"model": "glm-asr-2512"}, ("clip.ogg", b"OggS" + b"\x00" * 32, "audio/ogg"),
     ".wav or .mp3"),
    ({"model": "qwen3-asr-flash", "response_format": "verbose_json"}, WAV_CLIP,
     "json or text"),
])
async def test_a_transcription_glm_or_qwen_cannot_make_is_a_clear_400(gw, fields, file,
                                                                      words):
    start, glm, qwen = gw
    base, _ = start()
    resp = await request(base + "/v1/audio/transcriptions", "POST", form(fields, {"file": file}),
                         key=GW, headers={
                             "Content-Type": "multipart/form-data; boundary=b0undary"})
    err = error_of(resp, 400)
    assert words in err["message"], err
    assert not glm.requests and not qwen.requests


async def test_models_list_the_speech_and_transcription_models(gw):
    start, _, _ = gw
    base, _ = start()
    resp = await request(base + "/v1/models", key=GW)
    caps = {m["id"]: m.get("capabilities") for m in json.loads(resp.body)["data"]}
    for model in ("glm-tts", "qwen3-tts-flash", "qwen3-tts-instruct-flash", "qwen-tts"):
        assert caps[model] == ["speech"], model
    for model in ("glm-asr-2512", "qwen3-asr-flash"):
        assert caps[model] == ["transcription"], model
