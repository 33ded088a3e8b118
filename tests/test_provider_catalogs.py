"""The built-in vendor catalogs hold together: retired names point at current models, free
and reasoning models are served models, and each name pattern claims the vendor's own ids
(the routing that reads `retired` and `patterns` is tested with it)."""

from fnmatch import fnmatchcase

import pytest

from freeapi.plugins import make_plugin_manager, provider_types

TYPES = provider_types(make_plugin_manager())
VENDORS = ["deepseek", "kimi", "glm", "qwen", "step", "minimax", "spark", "metaso"]


@pytest.mark.parametrize("name", VENDORS)
def test_catalog_is_consistent(name):
    cls = TYPES[name]
    models = set(cls.models)
    assert len(models) == len(cls.models), "a model listed twice"
    assert set(cls.reasoning_models) <= models
    assert set(cls.free_models) <= models
    for old, (new, defaults) in getattr(cls, "retired", {}).items():
        assert old not in models and new in models and isinstance(defaults, dict)
    patterns = getattr(cls, "patterns", ())
    if patterns:
        unclaimed = [m for m in models if not any(fnmatchcase(m, p) for p in patterns)]
        assert unclaimed == []


def test_no_two_vendors_patterns_claim_one_anothers_models():
    for name in VENDORS:
        for other in VENDORS:
            if other == name:
                continue
            claimed = [m for m in TYPES[other].models
                       if any(fnmatchcase(m, p) for p in getattr(TYPES[name], "patterns", ()))]
            assert claimed == [], f"{name}'s patterns claim {other}'s {claimed}"


def test_free_models_are_the_documented_ones():
    # GLM-4.5-Flash went offline on 2026-01-30 (it is a retired name now, see below).
    assert TYPES["glm"].free_models == {"glm-4.7-flash", "glm-4-flash-250414"}
    assert TYPES["spark"].free_models == {"lite"}
    # GLM's key check costs nothing: it asks a free model.
    assert TYPES["glm"].options["check_model"][1] in TYPES["glm"].free_models
    assert [n for n in VENDORS if n not in ("glm", "spark") and TYPES[n].free_models] == []


# -- each vendor's catalog as its docs show it today (read 2026-12-06) -------------------------
# One entry per built-in vendor: the page(s) the catalog mirrors, then the models listed, the
# retired names and where they go, the vision models and the free models. A vendor change
# means changing the provider, its docs (docs/_incoming/vendors.md) and this pin together.
OFF, ON = {"thinking": {"type": "disabled"}}, {"thinking": {"type": "enabled"}}
CATALOGS = {
    "deepseek": dict(
        urls=["https://api-docs.deepseek.com/zh-cn/quick_start/pricing",
              "https://api-docs.deepseek.com/news/news260424",
              "https://api-docs.deepseek.com/guides/vision"],
        models=["deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash"],
        retired={"deepseek-chat": ("deepseek-flash", OFF),
                 "deepseek_chat": ("deepseek-flash", OFF),  # the seed project's name
                 "deepseek-coder": ("deepseek-flash", OFF),
                 "deepseek_code": ("deepseek-flash", OFF),  # the seed project's name
                 "deepseek-reasoner": ("deepseek-flash", ON),
                 "deepseek-r1": ("deepseek-flash", ON),
                 "deepseek-think": ("deepseek-flash", ON)},
        vision={"deepseek-flash", "deepseek-v4-flash"},  # v4-pro: "图像理解: 不支持"
        free=set()),
    "kimi": dict(
        urls=["https://platform.kimi.com/docs/models",
              "https://platform.kimi.com/docs/guide/use-kimi-k2-thinking-model.md",
              "https://platform.moonshot.ai/docs/guide/use-kimi-vision-model"],
        models=["kimi-k2.6", "kimi-k2.5", "kimi-k2-thinking", "kimi-k2-thinking-turbo",
                "kimi-k2-0905-preview", "kimi-k2-turbo-preview", "kimi-k2-0711-preview",
                "moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k",
                "moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
                "moonshot-v1-128k-vision-preview"],
        retired={"kimi-latest": ("kimi-k2.6", OFF),
                 "kimi-thinking-preview": ("kimi-k2.6", ON)},
        vision={"moonshot-v1-8k-vision-preview", "moonshot-v1-32k-vision-preview",
                "moonshot-v1-128k-vision-preview", "kimi-k2.5", "kimi-k2.6"},
        free=set()),
    "glm": dict(
        urls=["https://docs.bigmodel.cn/cn/guide/start/model-overview",
              "https://docs.bigmodel.cn/cn/guide/start/pricing.md",
              "https://docs.bigmodel.cn/cn/guide/models/free/glm-4.5-flash.md",
              "https://docs.bigmodel.cn/cn/guide/models/text/glm-4.md"],
        models=["glm-4.7-flash", "glm-4-flash-250414", "glm-5.3", "glm-5.3-flash", "glm-5",
                "glm-4.7", "glm-4.7-flashx", "glm-4.6", "glm-4.5-air", "glm-4.5-airx",
                "glm-4-long", "glm-4-flashx-250414", "glm-4-plus", "glm-4-air-250414",
                "glm-4-airx", "glm-4.6v"],
        retired={"glm-4-flash": ("glm-4-flash-250414", {}),
                 "glm-4.5-flash": ("glm-4.7-flash", {})},  # offline since 2026-01-30
        vision={"glm-5.3-flash", "glm-4.6v", "glm-4.5v", "glm-4.1v-thinking-flash",
                "glm-4v-flash", "glm-4v-plus-0111"},
        free={"glm-4.7-flash", "glm-4-flash-250414"}),
    "qwen": dict(
        urls=["https://help.aliyun.com/zh/model-studio/models",
              "https://help.aliyun.com/zh/model-studio/visual-reasoning",
              "https://www.alibabacloud.com/help/en/model-studio/new-free-quota",
              "https://help.aliyun.com/en/model-studio/new-free-quota"],
        models=["qwen3.7-max", "qwen3.7-plus", "qwen3.6-flash", "qwen-plus", "qwen3-vl-plus",
                "qvq-max", "qwq-plus", "qwen-long"],
        retired={},
        vision={"qwen3-vl-plus", "qwen3-vl-flash", "qvq-max", "qwen-vl-max", "qwen-vl-plus",
                "qwen3.7-max", "qwen3.7-plus", "qwen3.6-flash"},
        free=set()),  # a per-region free quota for new accounts, no free model
    "step": dict(
        urls=["https://platform.stepfun.ai/docs/en/guides/models/reasoning",
              "https://platform.stepfun.ai/docs/en/guides/models/vision"],
        models=["step-3.7-flash", "step-3.5-flash", "step-1o-turbo-vision",
                "step-1o-vision-32k", "step-1v-8k", "step-1v-32k"],
        retired={},
        vision={"step-3.7-flash", "step-1o-turbo-vision", "step-1o-vision-32k", "step-1v-8k",
                "step-1v-32k", "step-r1-v-mini", "step-3"},
        free=set()),
    "minimax": dict(
        urls=["https://platform.minimax.io/docs/api-reference/text-openai-api",
              "https://platform.minimaxi.com/docs/guides/rate-limits"],
        models=["MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M2.5",
                "MiniMax-M2.5-highspeed", "MiniMax-M2.1", "MiniMax-M2.1-highspeed",
                "MiniMax-M2"],
        retired={},
        vision=None,  # not declared: nothing refused
        free=set()),
    "spark": dict(
        urls=["https://www.xfyun.cn/doc/spark/HTTP调用文档.html",
              "https://www.xfyun.cn/doc/spark/X1http.html"],
        models=["lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra",
                "spark-x"],
        retired={"x1": ("spark-x", {})},
        vision=None,
        free={"lite"}),
    "metaso": dict(
        urls=["https://metaso.cn/search-api"],  # product page; the ids are 3p, unverified
        models=["fast", "fast_thinking", "ds-r1"],
        retired={},
        vision=None,
        free=set()),
}


def test_every_built_in_vendor_has_a_pinned_catalog():
    assert set(CATALOGS) == set(TYPES) - {"openai"}  # `openai`: the operator's servers


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_the_catalog_is_the_one_the_vendors_docs_show(name):
    cls, want = TYPES[name], CATALOGS[name]
    assert all(u.startswith("https://") for u in want["urls"])
    assert list(cls.models) == want["models"]
    assert {old: (new, dict(d)) for old, (new, d) in cls.retired.items()} == want["retired"]
    vision = None if cls.vision_models is None else set(cls.vision_models)
    assert vision == want["vision"]
    assert set(cls.free_models) == want["free"]


@pytest.mark.parametrize("name,model", [
    # New ids only third parties name (3p, unverified): not listed, but the vendor's name
    # pattern still sends them there as is.
    ("kimi", "kimi-k3"), ("kimi", "kimi-k2.7-code"), ("minimax", "MiniMax-M3.1-Flash"),
    ("step", "step-5-preview")])
def test_unverified_new_ids_are_unlisted_but_routed_by_pattern(name, model):
    cls = TYPES[name]
    assert model not in cls.models
    assert any(fnmatchcase(model, p) for p in cls.patterns)


@pytest.mark.parametrize("local_name", ["qwen2.5:0.5b", "qwen3:8b", "qwq:32b", "qwen2.5"])
def test_qwen_patterns_leave_local_servers_tags_alone(local_name):
    assert not any(fnmatchcase(local_name, p) for p in TYPES["qwen"].patterns)


@pytest.mark.parametrize("name", ["qwen3.8-max-preview", "qwen-max", "qwen3-coder-plus",
                                  "qwq-plus-latest", "qvq-max-2025-05-15"])
def test_qwen_patterns_claim_dashscope_style_names(name):
    assert any(fnmatchcase(name, p) for p in TYPES["qwen"].patterns)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_an_out_of_balance_key_waits_for_a_balance_check_or_a_long_pause(name):
    """A key out of balance (402) comes back only by a check that can see the balance
    (`balance_check`: DeepSeek /user/balance, Kimi /users/me/balance) or, where none
    exists, after a long pause: each built-in type says which, and the pool follows it."""
    from freeapi.config import ProviderConfig
    from freeapi.provider import NO_BALANCE_RECHECK
    cls = TYPES[name]
    p = cls(ProviderConfig(name=name, type=name, base_url="http://127.0.0.1:9/v1"))
    if cls.balance_check:
        assert p.no_balance_wait() is None  # the balance check restores the key
    else:
        assert p.no_balance_wait() == NO_BALANCE_RECHECK
