"""POST /v1/chat/completions: the OpenAI wire format in front of a provider.

The request already is a chat-completions body, so this door only checks it and hands it
to the pipeline; answers go out as the vendor sent them unless something must change."""

from __future__ import annotations

from freeapi.errors import invalid_request
from freeapi.handlers.door import DoorHandler
from freeapi.routing import require_model


def validate(body: dict) -> tuple[str, bool]:
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` is required and must be a non-empty array.",
                              param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise invalid_request(f"`messages[{i}]` must be an object with a string `role`.",
                                  param=f"messages[{i}]")
        if not isinstance(m.get("content"), (str, list, type(None))):
            raise invalid_request(f"`messages[{i}].content` must be a string, an array of "
                                  "content parts, or null.", param=f"messages[{i}].content")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid_request("`stream` must be true or false.", param="stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise invalid_request("`stream_options` must be an object.", param="stream_options")
    return model, stream


class ChatCompletionsHandler(DoorHandler):
    endpoint = "chat"

    async def post(self):
        token = self.client_token()
        body = self.json_body()
        model, stream = validate(body)
        opts = body.get("stream_options") or {}
        answer = await self.pipeline.run(body, model=model, stream=stream, token=token,
                                         include_usage=opts.get("include_usage") is True)
        if answer is None:
            return  # streamed
        if answer.raw is not None:
            self.finish(answer.raw)
        else:
            self.write_json(answer.data)
