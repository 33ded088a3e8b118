"""Qwen's image generation (Qwen-Image) and edits (Qwen-Image-Edit) (docs/beyond-chat.md),
mixed into providers/qwen.py's provider (kept apart so that module stays readable). Both
go to DashScope's native API beside the OpenAI-compatible base URL (`native_base`):
generation as an asynchronous task that is polled, edits as one synchronous call.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from freeapi.errors import invalid_request, vendor_error
from freeapi.modalities.images import parse_size, refuse_size
from freeapi.vendor_request import UpstreamRequest


class QwenImages:
    # Images: DashScope's asynchronous task API, which serves only these two models
    # (https://docs.qwencloud.com/api-reference/image-generation/qwen-text-to-image-async,
    # polled per .../image-generation/qwen-text-to-image-task-query).
    image_models = ("qwen-image-plus", "qwen-image")
    # Their sizes. Unverified: the official size table was not retrievable; 1472*1140 and
    # 1140*1472 are as several third-party copies of it give them.
    _IMAGE_SIZES = ("1664*928", "1472*1140", "1328*1328", "1140*1472", "928*1664")
    _OPENAI_SIZES = {"1024x1024": "1328*1328", "1792x1024": "1664*928",
                     "1024x1792": "928*1664"}
    # Image edits: Qwen-Image-Edit, DashScope's synchronous multimodal-generation API
    # (https://www.alibabacloud.com/help/en/model-studio/qwen-image-edit-api; zh:
    # https://help.aliyun.com/zh/model-studio/qwen-image-edit-api): one user message whose
    # content is the images ({"image": ...}) then one instruction ({"text": ...}), and
    # `parameters` (n, size as "W*H", negative_prompt, prompt_extend, watermark, seed).
    # The models and their rules are the page's model table (tc edition, Jan 2026):
    # max and plus make 1-6 PNGs at a chosen size; qwen-image-edit one, at its own size.
    # Alibaba now files these under "legacy image models"
    # (https://www.alibabacloud.com/help/en/model-studio/legacy-qwen-image-models/); the
    # qwen-image-2.x/3.0 models that generate and edit are not wired yet.
    image_edit_models = ("qwen-image-edit-max", "qwen-image-edit-max-2026-01-16",
                         "qwen-image-edit-plus", "qwen-image-edit-plus-2025-12-15",
                         "qwen-image-edit-plus-2025-10-30", "qwen-image-edit")
    # 3p, unverified (the official page's parameter table was not retrievable; copies of
    # it agree): 1-3 input images of at most 10 MB each, given as a URL or a data URL
    # ("data:{MIME_type};base64,{base64_data}"); n 1-6; size sides 512-2048 px.
    _EDIT_MAX_IMAGES, _EDIT_MAX_BYTES, _EDIT_MAX_N, _EDIT_SIDES = 3, 10 << 20, 6, (512, 2048)

    def images_request(self, body, key):
        if (body.get("n") or 1) != 1:
            raise invalid_request(f"{self.name}: Qwen-Image makes one image per request; "
                                  "send n=1.", param="n")
        size = body.get("size")
        params = {"n": 1}
        if size is not None:
            w, h = parse_size(size)
            vendor = self._OPENAI_SIZES.get(f"{w}x{h}") or f"{w}*{h}"
            if vendor not in self._IMAGE_SIZES:
                raise refuse_size(f"{self.name} (Qwen-Image)", size, ", ".join(
                    s.replace("*", "x") for s in self._IMAGE_SIZES) + " (1024x1024, "
                    "1792x1024 and 1024x1792 are mapped to the nearest)")
            params["size"] = vendor
        for name in ("negative_prompt", "prompt_extend", "watermark", "seed"):
            if name in body:
                params[name] = body[name]
        payload = {"model": body["model"], "input": {"prompt": body["prompt"]},
                   "parameters": params}
        return UpstreamRequest("POST", self.native_base() +
                               "/services/aigc/text2image/image-synthesis", {
                                   "Content-Type": "application/json",
                                   "X-DashScope-Async": "enable", **self.auth_headers(key)},
                               json.dumps(payload, ensure_ascii=False).encode())

    def image_edits_request(self, body, key):
        model, vendor = body["model"], f"{self.name} (Qwen-Image-Edit)"
        if "mask" in body:
            raise invalid_request(f"{vendor} takes no mask: say in the prompt what to "
                                  "change and where.", param="mask", code="mask_not_supported")
        images = body["image"]
        if len(images) > self._EDIT_MAX_IMAGES:
            raise invalid_request(f"{vendor} edits 1 to {self._EDIT_MAX_IMAGES} images at "
                                  f"once; got {len(images)}.", param="image")
        for _, media_type, data in images:
            if len(data) > self._EDIT_MAX_BYTES:
                raise invalid_request(f"{vendor} takes images of at most "
                                      f"{self._EDIT_MAX_BYTES >> 20} MB; one is "
                                      f"{len(data) / (1 << 20):.1f} MB.", param="image",
                                      code="image_too_large")
        fixed = model == "qwen-image-edit"  # one image, at a size of its own choosing
        n = body.get("n") or 1
        if not 1 <= n <= (1 if fixed else self._EDIT_MAX_N):
            raise invalid_request(f"{vendor}: {model} makes " + (
                "one image per request; send n=1 (qwen-image-edit-plus makes up to 6)."
                if fixed else f"1 to {self._EDIT_MAX_N} images per request."), param="n")
        params = {"n": n}
        if body.get("size") is not None:
            w, h = parse_size(body["size"])
            low, high = self._EDIT_SIDES
            if fixed:
                raise refuse_size(f"{vendor}: {model}", body["size"], "no size (it keeps "
                                  "the input's aspect ratio; qwen-image-edit-plus takes one)")
            if not (low <= w <= high and low <= h <= high):
                raise refuse_size(vendor, body["size"], f"sides of {low}-{high} px")
            params["size"] = f"{w}*{h}"
        if body.get("output_format") not in (None, "png"):
            raise invalid_request(f"{vendor} answers PNG only.", param="output_format")
        for name, kind in (("negative_prompt", str), ("prompt_extend", bool),
                           ("watermark", bool), ("seed", int)):
            if name in body:
                params[name] = _form_value(body[name], kind, name)
        content = [{"image": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}
                   for _, media_type, data in images]
        content.append({"text": body["prompt"]})
        payload = {"model": model, "input": {"messages": [
            {"role": "user", "content": content}]}, "parameters": params}
        return UpstreamRequest("POST", self.native_base() +
                               "/services/aigc/multimodal-generation/generation", {
                                   "Content-Type": "application/json",
                                   **self.auth_headers(key)},
                               json.dumps(payload, ensure_ascii=False).encode())

    def images_answer(self, raw, key):
        """The task's state: a poll request while it is PENDING or RUNNING, OpenAI's
        answer once it SUCCEEDED, an error once it FAILED. An edit's synchronous answer
        has the images in `output.choices[].message.content[].image` (3p, unverified:
        the shape as copies of the official reference give it)."""
        out = json.loads(raw)["output"]
        if not isinstance(out, dict):  # the caller reads ValueError as a broken answer
            raise ValueError("`output` is not an object")
        if "choices" in out:
            return {"data": [{"url": part["image"]} for choice in out["choices"]
                             for part in (choice.get("message") or {}).get("content") or ()
                             if isinstance(part, dict) and isinstance(part.get("image"),
                                                                      str)]}
        status = out.get("task_status")
        if status in ("PENDING", "RUNNING"):
            task = quote(str(out["task_id"]), safe="")
            return UpstreamRequest("GET", f"{self.native_base()}/tasks/{task}",
                                   self.auth_headers(key))
        if status == "SUCCEEDED":
            return {"data": [{"url": r["url"], **({"revised_prompt": r["actual_prompt"]}
                                                 if r.get("actual_prompt") else {})}
                             for r in out.get("results") or ()
                             if isinstance(r, dict) and r.get("url")]}
        code, message = str(out.get("code") or status), str(out.get("message") or "")
        # Refused content or parameters are the request's fault; anything else the
        # vendor's (the task cannot be retried elsewhere: it was already made).
        bad = code.startswith(("DataInspection", "InvalidParameter", "IPInfringement"))
        raise vendor_error(self.name, 400 if bad else 502,
                           f"the image task {status.lower()}: {code} {message}".strip(),
                           code=code)


def _form_value(text, kind, name: str):
    """A DashScope parameter from OpenAI's form, where every field is text."""
    if kind is str:
        return text
    if kind is bool and str(text).lower() in ("true", "false"):
        return str(text).lower() == "true"
    if kind is int and str(text).isascii() and str(text).isdigit():  # not "²"
        return int(text)
    want = "true or false" if kind is bool else "a whole number"
    raise invalid_request(f"`{name}` must be {want}.", param=name)
