"""The `free:` config section and `providers.qwen.free_quota_only`: mistakes are refused
at startup with the key path that holds them."""

from __future__ import annotations

import pytest

from freeapi.app import Gateway
from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types


def build(cfg: dict) -> Gateway:
    pm = make_plugin_manager()
    types = provider_types(pm)
    return Gateway(parse_config(cfg, types), pm, types)


@pytest.mark.parametrize("cfg,where", [
    ({"free": {"add": ["nosuch/model"]}}, "free.add[0]"),
    ({"free": {"models": ["glm/glm-4.7-flash", "nosuch/x"]}}, "free.models[1]"),
    ({"free": {"paid_fallback": "nosuch/model"}}, "free.paid_fallback"),
    ({"free": {"models": ["glm/glm-4.7-flash"], "add": ["glm/glm-5"]}}, "free.add"),
    ({"free": {"quota_recheck": 0}}, "free.quota_recheck"),
    ({"free": {"paid_fallbacks": "x"}}, "free.paid_fallbacks"),
    ({"free": {"add": [3]}}, "free.add[0]"),
    # Qwen's quota runs into billing: never free without the operator's declaration
    ({"free": {"add": ["qwen/qwen3.7-max"]}}, "free.add[0]"),
    ({"providers": {"qwen": {"free_quota_only": ["qwen-plus"]}},
      "free": {"models": ["qwen/qwen-plus", "qwen/qwen3.7-max"]}}, "free.models[1]"),
    ({"providers": {"qwen": {"free_quota_only": [1]}}}, "providers.qwen.free_quota_only"),
    ({"providers": {"qwen": {"free_quota_only": "yes"}}}, "providers.qwen.free_quota_only"),
    # regions without the new-user free quota: every call there is billed
    ({"providers": {"qwen": {"free_quota_only": True,
                             "base_url": "https://dashscope-us.aliyuncs.com/compatible-mode/v1"}}},
     "providers.qwen.free_quota_only"),
    ({"providers": {"qwen": {"free_quota_only": ["qwen-plus"], "base_url":
                             "https://ws1.eu-central-1.maas.aliyuncs.com/compatible-mode/v1"}}},
     "providers.qwen.free_quota_only"),
])
def test_mistakes_name_their_key(cfg, where, io_loop):
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert str(e.value).startswith(f"config: {where}: ")


@pytest.mark.parametrize("url", ["https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                                 "https://dashscope.aliyuncs.com/compatible-mode/v1",
                                 "https://ws1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"])
def test_free_quota_only_in_the_regions_that_have_the_quota(url, io_loop):
    gw = build({"providers": {"qwen": {"free_quota_only": True, "base_url": url}}})
    assert "qwen/qwen3.7-max" in [c.id for c in gw.free.candidates]
    gw.close()


def test_the_built_in_order_add_remove_and_qwens_declaration(io_loop):
    gw = build({"providers": {"qwen": {"free_quota_only": ["qwen3.6-flash"]},
                              "local": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                        "models": ["llama3"]}},
                "free": {"add": ["local/llama3"], "remove": ["glm-4-flash-*"]}})
    assert [c.id for c in gw.free.candidates] == ["glm/glm-4.7-flash", "qwen/qwen3.6-flash",
                                                  "local/llama3"]
    gw.close()


def test_every_built_in_offer_is_a_served_model_with_its_source_and_date():
    from freeapi.config import ProviderConfig
    from freeapi.free_tier import DAILY, GRANT, RATE
    types = provider_types(make_plugin_manager())
    for name, cls in types.items():
        if not cls.default_base_url:
            continue  # `openai`: the operator's own models only
        p = cls(ProviderConfig(name=name, type=name))
        for offer in cls.free_tier:
            assert offer.model in p.model_ids(), (name, offer.model)
            assert offer.source.startswith("https://") and offer.read == "2026-12-06"
            assert offer.quota in (DAILY, GRANT, RATE)
        assert set(cls.free_refusals.values()) <= {DAILY, GRANT}
    # the vendors with an official free API model today (the rest say why not, in code)
    assert {n for n, c in types.items() if c.free_tier} == {"glm", "qwen"}
