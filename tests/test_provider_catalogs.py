"""The built-in vendor catalogs hold together: retired names point at current models, free
and reasoning models are served models, and each name pattern claims the vendor's own ids
(the routing that reads `retired` and `patterns` is tested with it)."""

from fnmatch import fnmatchcase

import pytest

from freeapi.plugins import make_plugin_manager, provider_types

TYPES = provider_types(make_plugin_manager())
VENDORS = ["kimi", "glm", "qwen", "step", "minimax", "spark", "metaso"]


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
    assert TYPES["glm"].free_models == {"glm-4.7-flash", "glm-4-flash-250414",
                                        "glm-4.5-flash"}
    assert TYPES["spark"].free_models == {"lite"}
    # GLM's key check costs nothing: it asks a free model.
    assert TYPES["glm"].options["check_model"][1] in TYPES["glm"].free_models


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
