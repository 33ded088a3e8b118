"""A hostile (or compromised) vendor whose answers name URLs for the gateway to download:
GLM's image generation (`data[].url`),
Qwen-TTS (`output.audio.url`) and Qwen-Image-Edit (`output.choices[].message.content[]
.image`) on DashScope's native endpoint, in the shapes the real fakes (glm.py, qwen.py,
qwen_audio.py) answer. It answers whatever URLs the test puts in `state.urls` ("{own}"
stands for this server's own origin), serves images on its own origin under /files/,
and a redirect to `state.redirect` at /files/redirect."""

from __future__ import annotations

from tornado import web

from tests.fakes.common import Base, State, serve

PNG = b"\x89PNG\r\n\x1a\n" + b"hostile-vendor-image" * 4


class _Answer(Base):
    def urls(self) -> list[str]:
        own = f"{self.request.protocol}://{self.request.host}"
        return [u.replace("{own}", own) for u in self.state.urls]


class Images(_Answer):  # GLM: POST {base_url}/images/generations
    def post(self):
        self.body()
        self.finish({"created": 1760335349, "data": [{"url": u} for u in self.urls()]})


class Generation(_Answer):  # DashScope: POST /api/v1/services/aigc/multimodal-generation/...
    def post(self):
        body = self.body()
        urls = self.urls()
        if "text" in (body.get("input") or {}):  # Qwen-TTS
            self.finish({"output": {"finish_reason": "stop", "audio": {
                "url": urls[0], "id": "audio_1", "expires_at": 1760000000, "data": ""}},
                "usage": {"characters": 2}, "request_id": "5c7c4c2f"})
            return
        self.finish({"output": {"choices": [{"finish_reason": "stop", "message": {
            "role": "assistant", "content": [{"image": u} for u in urls]}}]},
            "usage": {"image_count": len(urls)}, "request_id": "7f3b"})


class File(Base):
    def get(self, name):
        if name == "redirect":
            self.redirect(self.state.redirect)
            return
        self.set_header("Content-Type", "image/png")
        self.finish(PNG)


def make_app(state: State) -> web.Application:
    kw = {"state": state}
    return web.Application([
        (r"/api/paas/v4/images/generations", Images, kw),
        (r"/api/v1/services/aigc/multimodal-generation/generation", Generation, kw),
        (r"/files/(.*)", File, kw),
    ])


def start(urls: list[str]):
    """(base URL, state, server) of a hostile vendor answering `urls`."""
    state = State({})
    state.urls = list(urls)
    state.redirect = ""
    url, server = serve(make_app(state))
    return url, state, server
