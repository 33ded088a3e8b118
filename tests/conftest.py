import asyncio
import copy
import logging
import os
import socket

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from freeapi.app import Gateway, make_app
from freeapi.config import parse_config
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.server import make_server
from tests.fakes import deepseek as fake_deepseek
from tests.fakes.proxy import CountingProxy
from tests.helpers import assert_no_keys


# The fake vendors listen on 127.0.0.1: a developer's HTTP(S)_PROXY must not route the
# gateways under test (and their `freeapi` subprocesses) through a real proxy.
for _name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)


@pytest.fixture
def upstream_state():
    return fake_deepseek.State()


@pytest.fixture
def upstream(io_loop, upstream_state):
    """The fake DeepSeek API; yields its base URL."""
    sock, port = bind_unused_port()
    server = HTTPServer(fake_deepseek.make_app(upstream_state))
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def config_overrides():
    """Tests override this (or use `make_gateway`) to change the gateway's config."""
    return {}


@pytest.fixture
def make_gateway(io_loop, upstream):
    """Start a gateway with `config` (a dict as in config.yaml) and extra pluggy `plugins`
    against the fake upstream; returns (base URL `http://127.0.0.1:PORT`, Gateway)."""
    started = []

    def start(config: dict | None = None, plugins=()):
        config = copy.deepcopy(config or {})  # callers share module-level dicts
        providers = config.setdefault("providers", {})
        providers.setdefault("deepseek", {})
        providers["deepseek"].setdefault("base_url", upstream)
        pm = make_plugin_manager()
        for plugin in plugins:  # as a third-party package's entry point would add them
            pm.register(plugin)
        types = provider_types(pm)
        gateway = Gateway(parse_config(config, types), pm, types)
        sock, port = bind_unused_port()
        server = make_server(make_app(gateway), gateway.config)  # as `freeapi serve` does
        server.add_sockets([sock])
        started.append((server, gateway))
        return f"http://127.0.0.1:{port}", gateway

    yield start
    for server, gateway in started:
        server.stop()
        gateway.close()
    # Let the background key re-probes that close() cancelled finish cancelling, or asyncio
    # reports them as destroyed while pending when the loop closes.
    io_loop.run_sync(lambda: asyncio.sleep(0))


@pytest.fixture
def gateway(make_gateway, config_overrides):
    url, _ = make_gateway(config_overrides)
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog):
    """No full API key may appear in anything the gateway logs, in any test."""
    caplog.set_level(logging.DEBUG)
    yield
    for when in ("setup", "call"):
        for record in caplog.get_records(when):
            text = record.getMessage() + (caplog.handler.formatter.formatException(
                record.exc_info) if record.exc_info else "")
            assert_no_keys(text)


@pytest.fixture
def proxy_server(io_loop):
    """Start fake proxies (tests/fakes/proxy.py): `await proxy_server(credentials, tunnel)`."""
    started = []

    async def start(credentials=None, tunnel=True):
        p = await CountingProxy(credentials, tunnel).start()
        started.append(p)
        return p
    yield start
    for p in started:
        p.close()
    io_loop.run_sync(lambda: asyncio.sleep(0.01))  # let the cancelled tunnels end


REDIS_URL = os.environ.get("FREEAPI_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["sqlite", "redis"])
def state_backend(request, tmp_path, io_loop):
    """A `state` config section on each backend: an SQLite file, or a Redis prefix of its
    own (wiped afterwards)."""
    if request.param == "sqlite":
        yield {"path": str(tmp_path / "state.db")}
        return
    state = {"redis_url": REDIS_URL, "prefix": f"freeapi-test:{os.urandom(8).hex()}:"}
    yield state
    from freeapi.store.redis import RedisStore

    async def wipe():
        store = RedisStore(REDIS_URL, prefix=state["prefix"])
        await store.delete_all()
        store.close()
    io_loop.run_sync(wipe)
