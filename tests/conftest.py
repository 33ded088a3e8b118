import asyncio
import copy
import functools
import logging
import os
import socket
import uuid

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

import freeapi.app
from freeapi.app import Gateway, make_app
from freeapi.config import parse_config
from freeapi.keypool import KeyPool
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.server import make_server
from tests.fakes import deepseek as fake_deepseek
from tests.fakes import agent_vendor as fake_agent
from tests.fakes.common import State, serve
from tests.fakes.proxy import CountingProxy
from freeapi.store.redis import RedisStore
from tests.helpers import REDIS_URL, Clock, assert_no_keys


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


# The gateways a test started (make_gateway), for fixtures torn down before it (pg_url).
GATEWAYS = pytest.StashKey[list]()


@pytest.fixture
def make_gateway(io_loop, upstream, request):
    """Start a gateway with `config` (a dict as in config.yaml) and extra pluggy `plugins`
    against the fake upstream; returns (base URL `http://127.0.0.1:PORT`, Gateway)."""
    started = request.node.stash.setdefault(GATEWAYS, [])

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
    started.clear()  # closed: nothing of theirs is left for pg_url to wait for
    # Let the background key re-probes that close() cancelled finish cancelling, or asyncio
    # reports them as destroyed while pending when the loop closes.
    io_loop.run_sync(lambda: asyncio.sleep(0))


@pytest.fixture
def gateway_clock(monkeypatch):
    """A test clock (tests.helpers.Clock) the key pools of every gateway started after it
    read: the test moves it to a cooldown's or an out-of-balance pause's end instead of
    sleeping through it (the gateway builds its pools as freeapi.app's `KeyPool`)."""
    clock = Clock()
    monkeypatch.setattr(freeapi.app, "KeyPool", functools.partial(KeyPool, clock=clock))
    return clock


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
    """No full API key may appear in anything the gateway logs, in any test; and no record
    of the gateway's holds an error among its arguments (a handler that keeps records, as
    logging.handlers.MemoryHandler does, would keep the error's traceback, and with it the
    request it was raised in: its text is logged instead)."""
    caplog.set_level(logging.DEBUG)
    yield
    for when in ("setup", "call"):
        for record in caplog.get_records(when):
            text = record.getMessage() + (caplog.handler.formatter.formatException(
                record.exc_info) if record.exc_info else "")
            assert_no_keys(text)
            if record.name.startswith("freeapi") and isinstance(record.args, tuple):
                assert not any(isinstance(a, BaseException) for a in record.args), \
                    f"a log record holds an error: {record.name}: {record.msg!r}"


@pytest.fixture
def proxy_server(io_loop):
    """Start fake proxies (tests/fakes/proxy.py): `await proxy_server(credentials, tunnel,
    **more)` (more: CountingProxy's other arguments)."""
    started = []

    async def start(credentials=None, tunnel=True, **more):
        p = await CountingProxy(credentials, tunnel, **more).start()
        started.append(p)
        return p
    yield start
    for p in started:
        p.close()
    io_loop.run_sync(lambda: asyncio.sleep(0.01))  # let the cancelled tunnels end



POSTGRES_URL = os.environ.get("FREEAPI_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


@pytest.fixture
def pg_url(io_loop, request):
    """A PostgreSQL URL (FREEAPI_TEST_POSTGRES, else 127.0.0.1:5432/test) whose search_path
    is a schema made for this test and dropped after it. An unreachable server fails the
    test; it never skips it."""
    import asyncpg
    schema = f"freeapi_test_{os.urandom(6).hex()}"

    async def run(sql):
        con = await asyncpg.connect(POSTGRES_URL)
        try:
            await con.execute(sql)
        finally:
            await con.close()
    async def drop():
        # A gateway of the test may still be writing (its teardown can come after this
        # one, when the test asked for make_gateway first): what it has in flight lands
        # before the schema goes, and a deadlock with its last batch is retried, never
        # left as the test's error.
        for _, gateway in request.node.stash.get(GATEWAYS, []):
            try:  # the store's own tasks, the token charges, the ledger's queued entries
                await asyncio.wait_for(gateway.store.settle(), 5)
                await asyncio.wait_for(gateway.limits.settle(), 5)
                await gateway.store.flush()
            except asyncio.TimeoutError:
                pass
        for attempt in range(20):
            try:
                return await run(f"DROP SCHEMA {schema} CASCADE")
            except asyncpg.exceptions.DeadlockDetectedError:
                await asyncio.sleep(0.1 * (attempt + 1))
        await run(f"DROP SCHEMA {schema} CASCADE")

    io_loop.run_sync(lambda: run(f"CREATE SCHEMA {schema}"))
    yield with_search_path(POSTGRES_URL, schema)
    io_loop.run_sync(drop)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def state_backend(request, tmp_path, io_loop):
    """A `state` config section on each backend: an SQLite file, a Redis prefix of its own
    (wiped afterwards), or a PostgreSQL schema of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield {"path": str(tmp_path / "state.db")}
        return
    if request.param == "postgres":
        yield {"database_url": request.getfixturevalue("pg_url")}
        return
    state = {"redis_url": REDIS_URL, "prefix": f"freeapi-test:{os.urandom(8).hex()}:"}
    yield state
    from freeapi.store.redis import RedisStore

    async def wipe():
        store = RedisStore(REDIS_URL, prefix=state["prefix"])
        await store.delete_all()
        store.close()
    io_loop.run_sync(wipe)


@pytest.fixture
def start_vendor(io_loop):
    """Start a fake vendor module's app; returns (base_url, state)."""
    servers = []

    def start(fake):
        state = State(getattr(fake, "KEYS", {}))
        url, server = serve(fake.make_app(state))
        servers.append(server)
        return url, state

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_state(io_loop):
    """A state section pointing at the test Redis under a prefix of its own."""
    prefix = f"freeapi-test:{uuid.uuid4().hex}:"
    yield {"redis_url": REDIS_URL, "prefix": prefix}
    store = RedisStore(REDIS_URL, prefix=prefix)

    async def cleanup():
        await store.delete_all()
        store.close()
        await asyncio.sleep(0)  # the reader task ends
    io_loop.run_sync(cleanup)


@pytest.fixture
def vendor(io_loop):
    """The agent vendor (tests/fakes/agent_vendor.py): its state, with `url` set."""
    state = fake_agent.State()
    url, server = fake_agent.start(state)
    state.url = url
    yield state
    server.stop()


class PrivateCluster:
    """A PostgreSQL cluster of one test's own (Debian's pg_createcluster), which the test
    may stop and start: the shared server on 5432 is never stopped."""

    def __init__(self, version: str, name: str, port: int):
        self.version, self.name, self.port = version, name, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    async def _ctl(self, action: str):
        proc = await asyncio.create_subprocess_exec(
            "pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()

    async def stop(self):
        await self._ctl("stop")

    async def start(self):
        await self._ctl("start")


@pytest.fixture
def private_postgres():
    """A PrivateCluster, running; dropped afterwards. Needs Debian's postgresql-common and
    root (pg_createcluster writes under /etc/postgresql and /var/lib/postgresql)."""
    import shutil
    import subprocess
    if shutil.which("pg_createcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.skip("no Debian PostgreSQL here (pg_createcluster) to make a private cluster")
    if os.geteuid() != 0:
        pytest.skip("making a private PostgreSQL cluster needs root (pg_createcluster)")
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    cluster = PrivateCluster(version, f"freeapi_{os.urandom(4).hex()}", free_port())
    subprocess.run(["pg_createcluster", version, cluster.name, "-p", str(cluster.port),
                    "--", "-A", "trust"], check=True, stdout=subprocess.DEVNULL)
    try:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster.name,
                        "start"], check=True)
        yield cluster
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, cluster.name],
                       stdout=subprocess.DEVNULL)
