"""The provider hooks beyond chat (embeddings, images and their edits, speech,
transcriptions, vision, search, documents), mixed into freeapi.provider.Provider. Pure like the rest of a
provider; docs/beyond-chat.md and docs/plugins.md describe them."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, ClassVar

from freeapi.errors import invalid_request
from freeapi.vendor_request import UpstreamRequest


def _seconds(value) -> float | None:
    """A positive number of seconds, else None (a vendor's odd value is not a price)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class ModalityHooks:
    # -- beyond chat: embeddings, images, speech, vision (docs/beyond-chat.md) --------
    # Pure like the rest: a hook builds the vendor request for one attempt (the gateway
    # sends it with the key pool, failover, timeouts and the ledger of chat), or returns
    # None when this vendor does not offer the operation; the matching `*_answer` reads
    # the vendor's body into OpenAI's shape. A plugin adds a modality for its vendor by
    # overriding these, and declares the models in the class attributes below (they are
    # routed and listed in GET /v1/models with their `capabilities`).

    #: Models served by `embeddings_request`, `images_request`, `image_edits_request`,
    #: `speech_request`.
    embedding_models: ClassVar[tuple[str, ...]] = ()
    image_models: ClassVar[tuple[str, ...]] = ()
    image_edit_models: ClassVar[tuple[str, ...]] = ()
    speech_models: ClassVar[tuple[str, ...]] = ()
    transcription_models: ClassVar[tuple[str, ...]] = ()
    #: Chat models that take `image_url` parts. None: not declared (nothing is refused);
    #: a set: a chat request with images to any other model is refused with a 400 naming
    #: one of these.
    vision_models: ClassVar[frozenset | None] = None

    # What the hooks use of freeapi.provider.Provider, which they are mixed into:
    # declared for the type checker only (annotations without values, and a method
    # signature never defined at run time, so Provider's own are the ones used).
    name: str
    models: ClassVar[tuple[str, ...]]
    base_url: str
    if TYPE_CHECKING:
        def auth_headers(self, key: str | None) -> dict: ...

    def modality_ids(self) -> list[str]:
        """The gateway's: the non-chat models this provider declares (routed like chat
        models)."""
        seen = dict.fromkeys((*self.embedding_models, *self.image_models,
                              *self.image_edit_models, *self.speech_models,
                              *self.transcription_models))
        return [m for m in seen if m not in self.models]

    def capabilities(self, model: str) -> list[str]:
        """The gateway's: what `model` can do, for GET /v1/models: chat, vision, embeddings,
        images, image_edits, speech, search, documents."""
        if model in self.embedding_models:
            return ["embeddings"]
        images = [cap for cap, declared in (("images", self.image_models),
                                            ("image_edits", self.image_edit_models))
                  if model in declared]
        if images:
            return images
        if model in self.speech_models:
            return ["speech"]
        if model in self.transcription_models:
            return ["transcription"]
        caps = ["chat"]
        if self.vision_models is not None and model in self.vision_models:
            caps.append("vision")
        if self.search_body({"model": model, "messages": []}) is not None \
                and self.search_refusal(model) is None:
            caps.append("search")
        if self.takes_documents(model) and self.document_upload(
                "probe", "text/plain", b"-", None) is not None:
            caps.append("documents")
        return caps

    def json_request(self, path: str, body: dict, key: str | None,
                     headers: dict | None = None) -> UpstreamRequest:
        """Helper: a JSON POST to `base_url + path` with the key: what OpenAI-shaped hooks
        send."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return UpstreamRequest("POST", self.base_url + path, {
            "Content-Type": "application/json", **self.auth_headers(key), **(headers or {})},
            payload)

    def embeddings_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/embeddings. `body` is OpenAI's (model is the upstream model; `input` a
        string, a list of strings, or token arrays; `encoding_format` already removed: the
        gateway asks for floats and encodes base64 itself). Raise an APIError 400 for
        input the vendor documents it refuses. None: not offered."""
        return None

    def text_embeddings_request(self, body: dict, key: str | None, *, vendor: str,
                                max_inputs: int, dimensions: dict) -> UpstreamRequest:
        """Helper: an OpenAI-compatible embeddings request for a vendor that embeds text only,
        at most `max_inputs` texts at once, with the `dimensions` {model: (allowed, ...)}
        its docs list: anything else is the 400 the vendor would answer, before it is sent."""
        inp, model = body["input"], body["model"]
        if not (isinstance(inp, str) or all(isinstance(s, str) for s in inp)):
            raise invalid_request(f"{self.name}: {vendor} embeddings take text (a string or "
                                  "an array of strings), not token ids.", param="input")
        if isinstance(inp, list) and len(inp) > max_inputs:
            raise invalid_request(f"{self.name}: {vendor} embeds at most {max_inputs} texts "
                                  f"per request; got {len(inp)}.", param="input")
        dims, allowed = body.get("dimensions"), dimensions.get(model)
        if dims is not None and allowed and dims not in allowed:
            raise invalid_request(f"{self.name}: {model} gives {', '.join(map(str, allowed))}"
                                  f" dimensions, not {dims}.", param="dimensions")
        return self.json_request("/embeddings", {k: body[k] for k in (
            "model", "input", "dimensions") if k in body}, key)

    def embeddings_answer(self, raw: bytes) -> dict:
        """OpenAI's `{"object": "list", "data": [{"index", "embedding": [floats]}],
        "usage"}` from the vendor's body (ValueError if unusable)."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ValueError("no `data` list")
        return data

    def images_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/images/generations (`prompt`, `n`, `size`, `quality`, ...;
        `response_format` is left to `images_url_only`). None: not offered."""
        return None

    #: True when the vendor answers only with image URLs: the gateway then downloads them
    #: for `response_format: b64_json` (and sends the vendor no response_format).
    images_url_only: ClassVar[bool] = True

    def images_answer(self, raw: bytes, key: str | None):
        """OpenAI's `{"created", "data": [{"url" | "b64_json"}]}`, or an UpstreamRequest
        to send (with the same key) before asking again: a poll of an asynchronous task.
        Raise an APIError for a task that failed."""
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ValueError("no `data` list")
        return data

    def image_edits_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/images/edits. `body` has `model`, `prompt`, `image` (a list of
        (filename, media type, bytes), media types checked by their bytes), `mask` (one
        such, when given), `n` (an int) and OpenAI's other form fields as strings. The
        answer is read by `images_answer` (so it may be an asynchronous task to poll).
        None: not offered. Raise an APIError 400 for input the vendor documents it
        refuses (a mask, a size, too many or too large images)."""
        return None

    def image_variations_request(self, body: dict, key: str | None
                                 ) -> UpstreamRequest | None:
        """POST /v1/images/variations: like `image_edits_request`, without `prompt` or
        `mask` and with exactly one image. None: not offered."""
        return None

    def images_poll_delay(self, polls: int) -> float:
        """Seconds to wait before the next poll of an asynchronous image task."""
        return min(0.5 * 2 ** polls, 5.0)

    def speech_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/audio/speech (`input`, `voice`, `response_format`, `speed`). None: not
        offered. Raise an APIError 400 for a voice or format the vendor does not take."""
        return None

    def system_voice(self, asked: str, voices: tuple, openai_names: dict,
                     vendor: str) -> str:
        """Helper: the vendor's voice for `asked`: an OpenAI voice name mapped by
        `openai_names`, or one of the vendor's `voices`; a 400 naming some of them
        otherwise."""
        voice = openai_names.get(asked, asked)
        if voice not in voices:
            shown = ", ".join(voices[:8]) + ("..." if len(voices) > 8 else "")
            raise invalid_request(f"{self.name}: {vendor} has no voice {asked!r}; use one "
                                  f"of {shown} (or an OpenAI voice name such as alloy).",
                                  param="voice", code="unknown_voice")
        return voice

    #: How the vendor's speech answer arrives: "bytes" (the audio itself, relayed as it
    #: arrives), "sse" (events that `speech_decoder` decodes) or "json" (`speech_answer`).
    speech_transport: ClassVar[str] = "bytes"
    #: The format made when the client names none (OpenAI's default is mp3; a vendor that
    #: makes no mp3 gives its own instead of refusing the SDK's plain call).
    speech_default_format: ClassVar[str] = "mp3"

    def speech_transport_for(self, body: dict) -> str:
        """The transport of this request (a vendor that streams only some formats answers
        others whole): `speech_transport` unless overridden."""
        return self.speech_transport

    def transcriptions_request(self, body: dict, key: str | None) -> UpstreamRequest | None:
        """POST /v1/audio/transcriptions. `body` has `model`, `file` ((filename, media
        type, bytes)) and OpenAI's other form fields as strings. The vendor's answer goes
        to the client as it is (JSON, or text for text/srt/vtt). None: not offered."""
        return None

    def search_body(self, body: dict) -> dict | None:
        """The chat body with the vendor's own web search turned on (the `-search` model
        suffix), or None when the vendor offers none. Pure: return a new dict. It is
        applied again to each attempt's vendor body (`model` then the upstream id, for
        switches that depend on the model), so applying it twice must change nothing."""
        return None

    def search_refusal(self, model: str) -> str | None:
        """Why the upstream `model` cannot take the vendor's search although the vendor
        offers it (the message of a 400 for `MODEL-search`; name a model that can), or
        None. Such models are not listed with the `search` capability."""
        return None

    #: True when the vendor's search is a builtin tool whose calls the caller must hand
    #: back (Kimi's `$web_search`): the gateway then completes those rounds itself.
    search_round_trip: ClassVar[bool] = False

    #: Chat messages' `file` content parts: "refuse" (a 400, unless the provider extracts
    #: documents with the hooks below) or "pass" (sent to the vendor as they are).
    file_parts: ClassVar[str] = "refuse"

    def document_upload(self, filename: str, media_type: str, data: bytes,
                        key: str | None) -> UpstreamRequest | None:
        """The upload of a document for text extraction, or None: no document API (raise
        an APIError 400 for a file the vendor documents it refuses: its type, its size).
        Then `document_id(raw)` reads the upload's answer, `document_text_request(file_id,
        key)` asks for the text, `document_text(raw)` is what goes into the chat (a system
        message), and `document_delete(file_id, key)` (optional) removes the vendor's
        copy."""
        return None

    def document_id(self, raw: bytes) -> str:
        file_id = json.loads(raw)["id"]
        if not isinstance(file_id, str) or not file_id or "/" in file_id:
            raise ValueError("no file id")
        return file_id

    def document_text_request(self, file_id: str, key: str | None) -> UpstreamRequest:
        raise NotImplementedError

    def document_text(self, raw: bytes) -> str | None:
        """The text in the answer to `document_text_request`; None while the vendor still
        parses the file (the gateway asks again, within the request's deadline); raise an
        APIError 400 (code `document_unreadable`) when it could not parse it."""
        return raw.decode("utf-8", "replace")

    def document_delete(self, file_id: str, key: str | None) -> UpstreamRequest | None:
        return None

    #: How the vendor reads an uploaded document (freeapi/pipeline/documents.py):
    #: "extract" (the text above goes into the chat; any key may serve it) or "reference"
    #: (the vendor reads the file by an id of the uploading account: the gateway uploads
    #: with the key of each attempt and sends `document_reference(ids)`).
    document_mode: ClassVar[str] = "extract"
    #: The chat models that read documents; empty: all of the provider's.
    document_models: ClassVar[tuple[str, ...]] = ()

    def takes_documents(self, model: str) -> bool:
        return not self.document_models or model in self.document_models

    def document_ready(self, raw: bytes) -> bool:
        """"reference" mode: whether the upload's (or status request's) answer says the
        vendor has parsed the file; raise an APIError 400 when it could not."""
        return True

    def document_status_request(self, file_id: str, key: str | None) -> UpstreamRequest:
        """"reference" mode: asks how the parsing of an uploaded file goes."""
        raise NotImplementedError

    def document_reference(self, file_ids: list[str]) -> dict:
        """"reference" mode: the chat message that names the files (put before the message
        that carried them)."""
        raise NotImplementedError

    def multipart_request(self, path: str, fields: dict, file_field: str, filename: str,
                          media_type: str, data: bytes, key: str | None) -> UpstreamRequest:
        """Helper: a multipart/form-data POST (RFC 7578) of `fields` and one file."""
        return self.multipart_files_request(path, fields, [
            (file_field, filename, media_type, data)], key)

    def multipart_files_request(self, path: str, fields: dict, files: list,
                                key: str | None) -> UpstreamRequest:
        """Helper: a multipart/form-data POST (RFC 7578) of `fields` and `files`, each (field
        name, filename, media type, bytes); a field name may repeat (`image[]`). Built
        afresh: none of the client's headers (its Authorization) goes along."""
        # Random: a client who could predict it could smuggle parts in through a field.
        boundary = "freeapi-" + secrets.token_hex(16)

        def safe(text):
            return "".join("_" if c in '"\\\r\n' else c for c in str(text))
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{safe(k)}"'
                 f"\r\n\r\n{v}\r\n".encode() for k, v in fields.items()]
        for field, filename, media_type, data in files:
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{safe(field)}"; '
                    f'filename="{safe(filename)}"\r\nContent-Type: {safe(media_type)}'
                    "\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return UpstreamRequest("POST", self.base_url + path, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            **self.auth_headers(key)}, b"".join(parts))

    def speech_decoder(self):
        """For the "sse" transport: a fresh callable (one per stream, so it may keep
        state) from one event's data to the audio bytes in it; it raises an APIError for
        an event that reports a failure."""
        return lambda data: b""

    def speech_answer(self, raw: bytes) -> bytes | UpstreamRequest:
        """The audio in a whole speech answer ("json" transport), or the GET of the URL the
        vendor put it at (sent without any key: the URL is the vendor's signed storage)."""
        return raw

    def speech_characters(self, data: bytes | str) -> int | None:
        """The characters the vendor says it billed, read from a whole speech answer
        (bytes, "json" transport) or one event's data (str, "sse"; the last event that
        says wins); None when it says nothing, and the gateway counts the characters of
        the input (docs/money.md). Called on every event: check cheaply first."""
        return None

    def transcription_seconds(self, raw: bytes) -> float | None:
        """The audio seconds a transcription answer reports, for pricing per second:
        OpenAI's `usage: {"type": "duration", "seconds": N}` (whisper-1) or
        verbose_json's `duration`
        (https://platform.openai.com/docs/api-reference/audio/createTranscription, read
        2026-12-06); None when the answer has neither (the gateway then reads a WAV
        upload's own length)."""
        if not raw.lstrip().startswith(b"{"):
            return None  # text, srt, vtt: no usage in them
        try:
            answer = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(answer, dict):
            return None
        usage = answer.get("usage")
        if isinstance(usage, dict) and usage.get("type") == "duration":
            return _seconds(usage.get("seconds"))
        return _seconds(answer.get("duration"))

    def transcriptions_answer(self, raw: bytes, response_format: str) -> bytes:
        """The client's transcription in `response_format` (json: OpenAI's `{"text"}`;
        text: the plain text) from the vendor's answer: as it is, unless overridden
        (ValueError, KeyError or TypeError if unusable)."""
        return raw
