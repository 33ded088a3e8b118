"""The hooks as a plugin object uses them: `resolve_model` overrides, bad registrations.
(Entry-point discovery is covered in test_plugin_entrypoints.py.)"""

import logging

import pytest

from freeapi import hookimpl
from freeapi.config import ConfigError
from freeapi.errors import APIError
from freeapi.provider import Provider
from freeapi.routing import Route
from tests.fakes.deepseek import ANSWER, GOOD
from tests.helpers import HI, error_of, request, sdk


class Mine(Provider):
    """An OpenAI-compatible vendor that only renames a model: no code beyond attributes."""
    type_name = "mine-test"
    aliases = {"mine-chat": "deepseek-flash"}
    owned_by = "mine"
    enabled_by_default = False


class MinePlugin:
    @hookimpl
    def register_providers(self, register):
        register(dict)  # not a Provider: reported and skipped, the next one still counts
        register(Mine)


async def test_provider_subclass_from_a_plugin_object(make_gateway, upstream, upstream_state,
                                                      caplog):
    base, gw = make_gateway({"providers": {"mine": {"type": "mine-test", "base_url": upstream}}},
                            plugins=[MinePlugin()])
    r = await sdk(base).chat.completions.create(model="mine-chat", messages=HI)
    assert r.model == "mine-chat" and r.choices[0].message.content == "".join(ANSWER)
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-flash"
    owners = {m.id: m.owned_by async for m in sdk(base).models.list()}
    assert owners["mine-chat"] == "mine" and owners["deepseek-flash"] == "deepseek"
    assert any("not a freeapi.provider.Provider" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.ERROR)


def test_provider_without_base_url_is_a_config_error(make_gateway):
    with pytest.raises(ConfigError) as info:
        make_gateway({"providers": {"mine": {"type": "mine-test"}}}, plugins=[MinePlugin()])
    assert "providers.mine.base_url" in str(info.value)


class Resolver:
    @hookimpl
    def resolve_model(self, model, catalog):
        if model == "house-model":
            return Route(catalog.providers["deepseek"], "deepseek-flash", "silent")
        if model.startswith("forbidden"):
            raise APIError(403, "not for you", code="model_forbidden")
        return None  # everything else: the core decides


async def test_resolve_model_hook(make_gateway, upstream_state):
    base, _ = make_gateway(plugins=[Resolver()])
    r = await sdk(base).chat.completions.create(model="house-model", messages=HI)
    assert r.model == "house-model"
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert upstream_state.requests[-1]["body"]["model"] == "deepseek-flash"
    err = error_of(await request(base + "/v1/chat/completions", "POST", {
        "model": "forbidden-x", "messages": HI}, key=GOOD), 403)
    assert err["code"] == "model_forbidden"
    r = await sdk(base).chat.completions.create(model="deepseek-chat", messages=HI)
    assert r.model == "deepseek-chat"


def test_providers_never_import_tornado():
    """Providers describe requests; the core does the HTTP. Loading every built-in
    provider must not pull Tornado in."""
    import subprocess
    import sys
    code = ("import sys, importlib.metadata as m\n"
            "for ep in m.entry_points(group='freeapi'):\n"
            "    if ep.value.startswith('providers.'): ep.load()\n"
            "print('tornado' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
