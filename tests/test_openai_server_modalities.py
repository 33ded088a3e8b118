"""Any `type: openai` server (LocalAI, vLLM, Ollama...) gets OpenAI's own embeddings,
image, speech and transcription requests through the gateway, with the SDK."""

import base64
import struct

import pytest

from tests.fakes import openai_compat as fake
from tests.helpers import client


@pytest.fixture
def gw(start_vendor, make_gateway):
    url, state = start_vendor(fake)
    base, _ = make_gateway({"auth": {"allow_anonymous": True}, "providers": {
        "local": {"type": "openai", "base_url": url + "/v1", "discover": False}}})
    return base, state


async def test_the_four_operations_pass_through(gw):
    base, state = gw
    c = client(base, "none")
    r = await c.embeddings.create(model="local/nomic-embed-text", input=["a", "b"])
    assert [d.embedding for d in r.data] == [fake.VECTOR] * 2
    sent = [q["body"] for q in state.requests if q["path"] == "/v1/embeddings"][-1]
    assert "encoding_format" not in sent  # floats asked for; base64 made by the gateway
    r = await c.images.generate(model="local/sd-turbo", prompt="a cat",
                                response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == fake.PNG  # the server's own b64_json
    r = await c.audio.speech.create(model="local/kokoro", voice="af_heart", input="hi")
    assert r.content == fake.AUDIO
    t = await c.audio.transcriptions.create(model="local/whisper-1",
                                            file=("a.wav", b"RIFF....", "audio/wav"))
    assert t.text == "hello from whisper"
    await c.close()


async def test_a_model_the_server_lacks_is_its_own_404(gw):
    base, _ = gw
    c = client(base, "none")
    import openai
    with pytest.raises(openai.NotFoundError):
        await c.embeddings.create(model="local/no-such-embedder", input="x")
    await c.close()


def test_base64_matches_openais_packing():
    from freeapi.modalities.embeddings import to_base64
    assert base64.b64decode(to_base64(fake.VECTOR)) == struct.pack("<3f", *fake.VECTOR)
