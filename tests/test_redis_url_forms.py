"""The spellings `state.redis_url` accepts (one server, TLS, Sentinel) and the clear
errors for the others; no password ever in what goes to logs."""

from __future__ import annotations

import re

import pytest

from freeapi.config import ConfigError, parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.store.redis_url import parse_redis_url
from freeapi.store.resp import RespClient


def test_one_server_and_tls_forms():
    t = parse_redis_url("redis://:s3cret@10.0.0.5:6380/2")
    assert (t.hosts, t.master_name, t.db, t.username, t.password, t.tls) == (
        (("10.0.0.5", 6380),), None, 2, None, "s3cret", False)
    t = parse_redis_url("rediss://app:pw%40x@cache.internal/0?ssl_ca_certs=/etc/ca.pem")
    assert (t.hosts, t.username, t.password, t.tls, t.option("ssl_ca_certs")) == (
        (("cache.internal", 6379),), "app", "pw@x", True, "/etc/ca.pem")
    assert parse_redis_url("redis://").hosts == (("127.0.0.1", 6379),)


def test_sentinel_form_names_sentinels_master_and_db():
    t = parse_redis_url("redis+sentinel://:pw@h1:26380,h2,[::1]:26381/mymaster/3"
                        "?sentinel_password=sp")
    assert t.hosts == (("h1", 26380), ("h2", 26379), ("::1", 26381))
    assert (t.master_name, t.db, t.password, t.tls) == ("mymaster", 3, "pw", False)
    assert t.option("sentinel_password") == "sp"
    assert parse_redis_url("rediss+sentinel://h1/main").tls
    assert parse_redis_url("redis+sentinel://h1/main/").db == 0


@pytest.mark.parametrize("url, says", [
    ("http://x", "expected redis://"),
    ("redis://h:1/db", "must be a number"),
    ("redis://h1,h2/0", "need redis+sentinel"),
    ("redis+sentinel://h1,h2", "master name is missing"),
    ("redis+sentinel://h1/m/x", "must be a number"),
    ("redis://h:99999/0", "bad port"),
    # isdigit() is true of superscripts, which int() refuses: still the clear message.
    ("redis://h:\u00b2/0", "bad port"),
    ("redis://h/\u00b2", "must be a number"),
    ("redis://h/0?password=x", "unknown option"),
])
def test_bad_urls_are_refused_at_config_time(url, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_redis_url(url)
    types = provider_types(make_plugin_manager())
    with pytest.raises(ConfigError, match="state.redis_url") as err:
        parse_config({"state": {"redis_url": url}}, types)
    assert says in str(err.value)


def test_describe_never_shows_a_password():
    for url in ("redis://:hunter2pw@h:1/0", "redis+sentinel://u:hunter2pw@h1,h2/m/1"
                "?sentinel_password=hunter2pw", "rediss://u:hunter2pw@h/0"):
        assert "hunter2pw" not in RespClient(url).describe()
