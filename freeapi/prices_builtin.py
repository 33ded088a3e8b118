"""The built-in price table: what each built-in provider's vendor charges for its current
models, per million tokens (input = cache miss, cached = cache hit, output = completion,
reasoning included where the vendor bills it as output), per image, per speech character
or per audio second, in the vendor's own currency.

Every row names the vendor's official pricing page and the day it was read. `verified`
is True only when the figure was checked on that official page on that day; False rows
(a third party's copy, an older official copy) are marked "3p, unverified" or so in
`note`, and `freeapi prices` / the docs say so. A model with no row is served and
recorded as `unpriced`: no price is ever guessed. Keys are `provider type/upstream model`.

`config.yaml` `prices:` overrides and adds rows (freeapi/pricing.py).
"""

from __future__ import annotations

READ = "2026-12-06"

DEEPSEEK = "https://api-docs.deepseek.com/quick_start/pricing"
GLM_CN = "https://docs.bigmodel.cn/cn/guide/start/pricing"
GLM_INTL = "https://docs.z.ai/guides/overview/pricing"
GLM_FREE = "https://docs.bigmodel.cn/cn/guide/start/model-overview"
MINIMAX_CN = "https://platform.minimaxi.com/docs/guides/pricing-paygo"
MINIMAX_INTL = "https://platform.minimax.io/docs/guides/pricing-paygo"
KIMI = "https://platform.kimi.ai/docs/pricing/chat-k3"
QWEN = "https://www.alibabacloud.com/help/en/model-studio/model-pricing"
STEP = "https://platform.stepfun.com/docs/zh/guides/pricing/details"

# DeepSeek's page lists an off-peak and a peak price per row; off-peak is half. Peak is
# 01:00-04:00 and 06:00-10:00 UTC, Monday to Friday, i.e. 09-12 and 14-18 Beijing time
# (the page's own wording names UTC; holidays are not modelled, so a Chinese public
# holiday's weekday reads at the peak price: an overestimate, never an underestimate).
DEEPSEEK_PEAK = {"tz_offset_h": 8, "weekdays": (0, 1, 2, 3, 4),
                 "hours": ((9, 12), (14, 18))}


def _row(currency, url, *, input=None, cached=None, output=None, image=None,
         character=None, second=None, verified=True, note=None, off_peak=None,
         peak=None) -> dict:
    return {"currency": currency, "input": input, "cached": cached, "output": output,
            "image": image, "character": character, "second": second, "source": url,
            "read": READ, "verified": verified, "note": note, "off_peak": off_peak,
            "peak": peak}


def _deepseek(miss, hit, out):
    """Peak prices; off-peak is the page's half-price row."""
    return _row("USD", DEEPSEEK, input=miss, cached=hit, output=out, peak=DEEPSEEK_PEAK,
                off_peak={"input": miss / 2, "cached": hit / 2, "output": out / 2},
                note="off-peak half price; reasoning tokens are output tokens")


BUILTIN: dict[str, dict] = {
    # DeepSeek (verified on the official page, copy ?check=20261115): peak prices;
    # deepseek-v4-flash is a legacy name served by V4.1-Flash at the Flash price.
    "deepseek/deepseek-flash": _deepseek(0.30, 0.006, 1.20),
    "deepseek/deepseek-v4-flash": _deepseek(0.30, 0.006, 1.20),
    "deepseek/deepseek-v4-pro": _deepseek(1.32, 0.044, 3.96),
    # GLM, CNY per million (verified: docs.bigmodel.cn pricing, 旗舰模型 table). GLM-5.3-Flash
    # at its list price: the page's 50% promotion ended 2026-09-09 24:00 Beijing time.
    "glm/glm-5.3": _row("CNY", GLM_CN, input=8, cached=2, output=28,
                        note="cache storage free for a limited time"),
    "glm/glm-5.3-flash": _row("CNY", GLM_CN, input=0.8, cached=0.23, output=2.8,
                              note="list price (promotion ended 2026-09-09)"),
    # Free models per the official model overview (checked by the team's notes 2026-12-06).
    "glm/glm-4.7-flash": _row("CNY", GLM_FREE, input=0, cached=0, output=0, note="free"),
    "glm/glm-4-flash-250414": _row("CNY", GLM_FREE, input=0, cached=0, output=0,
                                   note="free"),
    # An older (GLM-5-era) copy of the official z.ai page, USD; not re-read today.
    "glm/glm-5": _row("USD", GLM_INTL, input=1.0, cached=0.2, output=3.2, verified=False,
                      note="official page, older copy; unverified 2026-12-06"),
    "glm/glm-4.7": _row("USD", GLM_INTL, input=0.6, cached=0.11, output=2.2,
                        verified=False, note="official page, older copy; unverified"),
    "glm/glm-4.6": _row("USD", GLM_INTL, input=0.6, cached=0.11, output=2.2,
                        verified=False, note="official page, older copy; unverified"),
    "glm/glm-4.7-flashx": _row("USD", GLM_INTL, input=0.07, cached=0.01, output=0.4,
                               verified=False, note="official page, older copy; unverified"),
    "glm/glm-4.5-air": _row("USD", GLM_INTL, input=0.2, cached=0.03, output=1.1,
                            verified=False, note="official page, older copy; unverified"),
    "glm/glm-4.5-airx": _row("USD", GLM_INTL, input=1.1, cached=0.22, output=4.5,
                             verified=False, note="official page, older copy; unverified"),
    # MiniMax, CNY per million (verified: platform.minimaxi.com 按量计费, 文本 table).
    "minimax/MiniMax-M2.7": _row("CNY", MINIMAX_CN, input=2.1, cached=0.42, output=8.4),
    "minimax/MiniMax-M2.7-highspeed": _row("CNY", MINIMAX_CN, input=4.2, cached=0.42,
                                           output=16.8),
    "minimax/MiniMax-M2.5": _row("CNY", MINIMAX_CN, input=2.1, cached=0.21, output=8.4),
    "minimax/MiniMax-M2.5-highspeed": _row("CNY", MINIMAX_CN, input=4.2, cached=0.21,
                                           output=16.8),
    # MiniMax-M3 up to 512k input, USD: 3p quote of the international page.
    "minimax/MiniMax-M3": _row("USD", MINIMAX_INTL, input=0.30, cached=0.06, output=1.20,
                               verified=False, note="3p, unverified (neurolink docs); "
                               "inputs above 512k tokens cost double"),
    # Kimi: the official page's table did not render; 3p copies only.
    "kimi/kimi-k3": _row("USD", KIMI, input=3.0, cached=0.30, output=15.0, verified=False,
                         note="3p, unverified (codeburn PR #709)"),
    # Qwen: the official per-model tables were not readable; 3p copies only (input/output).
    "qwen/qwen3.7-max": _row("USD", QWEN, input=2.50, output=7.50, verified=False,
                             note="3p, unverified (Codeep v3.3.0); thinking may cost more"),
    "qwen/qwen3.6-flash": _row("USD", QWEN, input=0.25, output=1.50, verified=False,
                               note="3p, unverified (Codeep v3.3.0)"),
    # StepFun: a 3p verbatim copy of the official page (read 2026-10-07), CNY.
    "step/step-3.7-flash": _row("CNY", STEP, input=1.35, cached=0.27, output=8.1,
                                verified=False, note="3p, unverified (api-evangelist)"),
    "step/step-3.5-flash": _row("CNY", STEP, input=0.7, cached=0.14, output=2.1,
                                verified=False, note="3p, unverified (api-evangelist)"),
    "step/step-1o-turbo-vision": _row("CNY", STEP, input=2.5, cached=0.5, output=8,
                                      verified=False, note="3p, unverified"),
    "step/step-2x-large": _row("CNY", STEP, image=0.1, verified=False,
                               note="3p, unverified; per image"),
    "step/step-tts-2": _row("CNY", STEP, character=2.8 / 10000, verified=False,
                            note="3p, unverified; ¥2.8 per 10,000 characters"),
    "step/step-tts-mini": _row("CNY", STEP, character=0.9 / 10000, verified=False,
                               note="3p, unverified; ¥0.9 per 10,000 characters"),
    "step/step-asr": _row("CNY", STEP, second=0.9 / 3600, verified=False,
                          note="3p, unverified; ¥0.9 per hour of audio"),
    # iFlytek Spark, Metaso: no current official price was readable: unpriced.
}
