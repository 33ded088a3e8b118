"""Speech is priced per character and transcription per audio second: the ledger's cost
is units × price, with the vendor's own count where its answer says (MiniMax's
usage_characters, Qwen-TTS's usage.characters, Qwen3-ASR's usage.seconds, whisper's
usage duration), else the input's characters and a WAV upload's length; an audio length
nobody can tell is unpriced, not free. Official SDK, fake vendors."""

import struct

import openai
import pytest

from tests.fakes import minimax as fake_mm
from tests.fakes import openai_compat as fake_local
from tests.fakes import qwen as fake_qwen
from tests.fakes.qwen_audio import ASR_SECONDS
from tests.fakes import step as fake_step
from tests.test_usage import ledger

GW = "gw-spend-audio-000001"
PRICES = {"step-tts-mini": {"character": 0.001}, "speech-2.8-hd": {"character": 0.002},
          "qwen3-tts-flash": {"character": 0.003}, "kokoro": {"character": 0.004},
          "step-asr": {"second": 0.01}, "qwen3-asr-flash": {"second": 0.02},
          "whisper-1": {"second": 0.03}}


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV of that length (silence), with a LIST chunk before `data`."""
    data = b"\x00\x00" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"LIST" + struct.pack("<I", 5) + b"INFO!\x00"  # odd size: padded
            + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
def gw(start_vendor, make_gateway):
    step_url, _ = start_vendor(fake_step)
    mm_url, mm = start_vendor(fake_mm)
    qwen_url, _ = start_vendor(fake_qwen)
    local_url, _ = start_vendor(fake_local)
    base, gateway = make_gateway({
        "auth": {"keys": [{"key": GW, "name": "speaker"}]}, "prices": PRICES,
        "providers": {
            "step": {"base_url": step_url + "/v1", "discover": False,
                     "api_keys": [fake_step.GOOD]},
            "minimax": {"base_url": mm_url + "/v1", "discover": False,
                        "api_keys": [fake_mm.GOOD]},
            "qwen": {"base_url": qwen_url + "/compatible-mode/v1", "discover": False,
                     "api_keys": [fake_qwen.GOOD]},
            "local": {"type": "openai", "base_url": local_url + "/v1", "discover": False,
                      "api_keys": ["sk-local-000000000001"]}}})
    return base, gateway, mm


def client(base):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=GW, max_retries=0)


async def test_speech_costs_characters_times_the_price(gw):
    base, gateway, mm = gw
    mm.usage_characters = 26  # MiniMax's own count, in its stream's last event
    async with client(base) as c:
        await c.audio.speech.create(model="step-tts-mini", voice="cixingnansheng",
                                    input="智能阶跃", response_format="wav")  # bytes relayed
        await c.audio.speech.create(model="speech-2.8-hd", voice="alloy", input="Hello there")
        await c.audio.speech.create(model="qwen3-tts-flash", voice="alloy",
                                    input="今天天气真好")  # whole answer, a URL to download
        await c.audio.speech.create(model="qwen3-tts-flash", voice="nova", input="hi there",
                                    response_format="pcm")  # base64 events
        await c.audio.speech.create(model="local/kokoro", voice="af_heart", input="hi")
    rows = await ledger(gateway, 5)
    assert [e["endpoint"] for e in rows] == ["speech"] * 5
    assert [(e["cost"], e["unpriced"]) for e in rows] == [
        (pytest.approx(4 * 0.001), False),   # StepFun says nothing: the input's length
        (pytest.approx(26 * 0.002), False),  # MiniMax's usage_characters, not 11
        (pytest.approx(6 * 0.003), False),   # Qwen-TTS's usage.characters
        (pytest.approx(8 * 0.003), False),
        (pytest.approx(2 * 0.004), False)]   # an OpenAI-compatible server: the input's


async def test_transcription_costs_audio_seconds_times_the_price(gw):
    base, gateway, _ = gw
    clip = ("clip.wav", wav(1.5), "audio/wav")
    mp3 = ("clip.mp3", b"ID3\x04" + b"\x00" * 64, "audio/mpeg")
    async with client(base) as c:
        await c.audio.transcriptions.create(model="step-asr", file=clip)  # the WAV's length
        await c.audio.transcriptions.create(model="step-asr", file=clip,
                                            response_format="text")
        await c.audio.transcriptions.create(model="qwen3-asr-flash", file=clip)  # usage.seconds
        await c.audio.transcriptions.create(model="local/whisper-1", file=clip)  # its usage
        await c.audio.transcriptions.create(model="step-asr", file=mp3)  # nobody says how long
    rows = await ledger(gateway, 5)
    assert [e["endpoint"] for e in rows] == ["transcriptions"] * 5
    assert [(e["cost"], e["unpriced"]) for e in rows] == [
        (pytest.approx(1.5 * 0.01), False), (pytest.approx(1.5 * 0.01), False),
        (pytest.approx(ASR_SECONDS * 0.02), False),
        (pytest.approx(3 * 0.03), False),
        (None, True)]


def test_a_wav_header_gives_the_length_and_anything_else_none():
    from freeapi.modalities.audio_length import wav_seconds
    assert wav_seconds(wav(2.25)) == pytest.approx(2.25)
    assert wav_seconds(wav(1.0, rate=8000)) == pytest.approx(1.0)
    assert wav_seconds(b"ID3\x04" + b"\x00" * 64) is None
    assert wav_seconds(b"RIFF\x24\x00\x00\x00WAVEfmt qwen-tts-whole-file") is None
    assert wav_seconds(wav(1.0)[:40]) is None  # cut before its samples
