"""POST /v1/images/edits (https://platform.openai.com/docs/api-reference/images/createEdit)
and /v1/images/variations (.../images/createVariation).

OpenAI takes them as multipart/form-data: one or more `image` files (the SDK names them
`image[]` when it sends several), a `prompt` (edits), an optional `mask` and the other
fields as text. The form becomes a dict the provider hook turns into its vendor's request
(`Provider.image_edits_request`, `image_variations_request`); the answer is read by
`images_answer` and finished exactly as a generation's (freeapi/modalities/images.py:
task polls, downloads for `response_format: b64_json`). Image bytes are never logged."""

from __future__ import annotations

from freeapi.errors import invalid_request
from freeapi.modalities.forms import is_multipart, parse_multipart, text_fields
from freeapi.modalities import required_text
from freeapi.modalities.images import MAX_N, MAX_PROMPT, Images, parse_size
from freeapi.routing import require_model

MAX_IMAGES = 16  # OpenAI's own limit for gpt-image models; vendors' are checked by them
FILES = ("image", "image[]", "mask")

# The formats image vendors read, known by their first bytes (what the client calls the
# file is not trusted: a vendor refusing a mislabelled file is a worse error).
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"),
          (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


def sniff(data: bytes) -> str | None:
    """The image's media type from its bytes, or None when it is no known image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return None


def _file(up, param: str) -> tuple[str, str, bytes]:
    if not up.body:
        raise invalid_request(f"`{param}` is an empty file.", param=param)
    media_type = sniff(up.body)
    if media_type is None:
        raise invalid_request(f"`{param}` is not an image (PNG, JPEG, WEBP, GIF, BMP or "
                              "TIFF, known by its bytes).", param=param, code="invalid_image")
    return up.filename or "image", media_type, up.body


def parse_form(content_type: str, raw: bytes, *, variation: bool = False) -> dict:
    """OpenAI's edit (or variation) form as a dict: `image` a list of (filename, media
    type, bytes), `mask` one such, `n` an int, the other fields strings; a 400 for
    anything that is not such a form."""
    what = "variation" if variation else "edit"
    if not is_multipart(content_type):
        raise invalid_request(f"Send the image {what} as multipart/form-data with an `image` "
                              "file, as OpenAI's API takes it.", code="invalid_content_type")
    args, files = parse_multipart(content_type, raw)
    unknown = sorted(set(files) - set(FILES))
    if unknown:
        raise invalid_request(f"The file field `{unknown[0]}` is not taken here; send the "
                              "images as `image` (or `image[]`) and a mask as `mask`.",
                              param=unknown[0])
    uploads = files.get("image", []) + files.get("image[]", [])
    if not uploads:
        raise invalid_request("`image` is required: the image file to "
                              f"{'vary' if variation else 'edit'}.", param="image")
    limit = 1 if variation else MAX_IMAGES
    if len(uploads) > limit:
        raise invalid_request(f"`image` takes at most {limit} file{'s' * (limit > 1)} "
                              f"here; got {len(uploads)}.", param="image")
    body: dict = {"image": [_file(up, "image") for up in uploads]}
    masks = files.get("mask", [])
    if variation and masks:
        raise invalid_request("An image variation takes no `mask`.", param="mask")
    if len(masks) > 1:
        raise invalid_request("`mask` is one file.", param="mask")
    if masks:
        body["mask"] = _file(masks[0], "mask")
    body.update(text_fields(args, FILES))
    return body


def validate(body: dict, variation: bool) -> str:
    """The form's fields as OpenAI checks them; the vendor's own limits are its hook's."""
    model = require_model(body)
    if variation:
        body.pop("prompt", None)  # not a field of variations: never sent on
    else:
        required_text(body, "prompt", MAX_PROMPT, "what to change in the image")
    n = body.get("n", "1")
    # isascii(): "²" is a digit to isdigit(), not to int()
    if not (isinstance(n, str) and n.isascii() and n.isdigit() and 1 <= int(n) <= MAX_N):
        raise invalid_request(f"`n` must be an integer from 1 to {MAX_N}.", param="n")
    body["n"] = int(n)
    if body.get("response_format") not in (None, "url", "b64_json"):
        raise invalid_request("`response_format` must be \"url\" or \"b64_json\".",
                              param="response_format")
    size = body.get("size")
    if size == "auto":
        del body["size"]
    elif size is not None:
        parse_size(size)
    if body.get("stream") not in (None, "false", "False", "0"):
        raise invalid_request("Streamed image edits are not supported by this gateway.",
                              param="stream")
    body.pop("stream", None)
    return model


class ImageEdits(Images):
    """An edit: the generation's finish (polls, downloads), another provider hook."""

    capability = "image_edits"
    hook = "image_edits_request"
    declared = "image_edit_models"
    variation = False

    def __init__(self, body: dict, editors: list[str] = ()):
        """`editors`: models of the gateway's providers that do this, named when a
        model that cannot is asked."""
        model = validate(body, self.variation)
        self.b64 = body.get("response_format") == "b64_json"
        self.editors = list(editors)
        super(Images, self).__init__(body, model)

    def request(self, provider, body: dict, key):
        if provider.images_url_only:
            body = {k: v for k, v in body.items() if k != "response_format"}
        return getattr(provider, self.hook)(body, key)

    def check(self, route) -> None:
        p, model = route.provider, route.upstream_model
        declared = getattr(p, self.declared) if self.declared else ()
        known = model in p.models or model in p.modality_ids()
        if not (declared and known and model not in declared) and self.offered(route):
            super().check(route)  # offered: the input the vendor refuses is refused now
            return
        what = "variations of images" if self.variation else "image edits"
        others = [m for m in self.editors if m not in declared]
        hint = (f"; {p.name} makes them with: {', '.join(declared)}" if declared else
                f"; {p.name} makes none" + (f" (ask for {', '.join(others[:4])})"
                                             if others else ""))
        raise invalid_request(f"The model {self.model!r} does not make {what}{hint}.",
                              param="model", code="model_not_supported")


class ImageVariations(ImageEdits):
    capability = "image_variations"
    hook = "image_variations_request"
    declared = ""  # no list of its own: a server that takes them says which models do
    variation = True
