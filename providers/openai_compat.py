"""Any OpenAI-compatible server: Ollama, vLLM, llama.cpp's server, LM Studio, OpenRouter,
SiliconFlow... Not enabled unless configured, since it has no default address:

    providers:
      local: {type: openai, base_url: "http://127.0.0.1:11434/v1"}
      siliconflow:
        type: openai
        base_url: https://api.siliconflow.cn/v1
        api_keys: ["${SILICONFLOW_API_KEY}"]
        models: [deepseek-ai/DeepSeek-V3]

Options: `models` (a static list; the fallback when discovery fails), `discover` (ask
GET /models at startup, default true), `reasoning_models` (get `-fold`/`-silent` names),
`think_tags` (the server reasons inline in `<think>` tags: split them out). Keys are
optional: without any, requests go out without an Authorization header.
"""

from __future__ import annotations

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.provider import DISCOVER_OPTION, NO_BALANCE_OPTION, Provider
from freeapi.think import ChunkThinkSplitter, split_message


def _names(config, option: str) -> tuple[str, ...]:
    value = config.options.get(option) or []
    if not all(isinstance(m, str) and m for m in value):
        raise ConfigError(f"providers.{config.name}.{option}", "expected a list of model names")
    return tuple(value)


class OpenAICompatible(Provider):
    type_name = "openai"
    enabled_by_default = False
    key_required = False
    # Any server, any names: no pattern by default (config can add some).
    patterns = ()
    options = {**DISCOVER_OPTION, "models": ((list,), None),
               "reasoning_models": ((list,), None), "think_tags": ((bool,), False),
               **NO_BALANCE_OPTION}

    def __init__(self, config):
        super().__init__(config)
        # Per instance: several named instances of this type coexist.
        self.models = _names(config, "models")
        self.reasoning_models = frozenset(_names(config, "reasoning_models"))
        self.owned_by = config.name
        self.think_tags = bool(config.options.get("think_tags"))
        self.rewrites_chunks = self.think_tags
        self.rewrites_completions = self.think_tags

    def chunk_normalizer(self):
        return ChunkThinkSplitter() if self.think_tags else self.normalize_chunk

    def normalize_completion(self, data):
        if self.think_tags:
            for choice in data.get("choices") or ():
                if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                    split_message(choice["message"])
        return data

    # -- beyond chat: an OpenAI-compatible server takes OpenAI's own requests --------
    # (https://platform.openai.com/docs/api-reference/embeddings,
    # .../images/create, .../images/createEdit, .../images/createVariation,
    # .../audio/createSpeech); whether it serves them is the server's.
    images_url_only = False  # it takes `response_format: b64_json` itself
    file_parts = "pass"  # a `file` content part is the server's to take or refuse

    def embeddings_request(self, body, key):
        return self.json_request("/embeddings", body, key)

    def images_request(self, body, key):
        return self.json_request("/images/generations", body, key)

    def image_edits_request(self, body, key):
        return self._image_form("/images/edits", body, key)

    def image_variations_request(self, body, key):
        return self._image_form("/images/variations", body, key)

    def _image_form(self, path, body, key):
        """The client's form rebuilt (its own headers are not sent): several images as
        `image[]`, as OpenAI's SDK sends them, one as `image`."""
        images = body["image"]
        name = "image" if len(images) == 1 else "image[]"
        files = [(name, *img) for img in images]
        if "mask" in body:
            files.append(("mask", *body["mask"]))
        fields = {k: v for k, v in body.items() if k not in ("image", "mask")}
        return self.multipart_files_request(path, fields, files, key)

    def speech_request(self, body, key):
        return self.json_request("/audio/speech", body, key)

    def transcriptions_request(self, body, key):
        name, media_type, data = body["file"]
        fields = {k: v for k, v in body.items() if k != "file"}
        return self.multipart_request("/audio/transcriptions", fields, "file", name,
                                      media_type, data, key)


@hookimpl
def register_providers(register):
    register(OpenAICompatible)
