"""The Tornado application and the gateway state it carries in its settings."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from functools import partial

import pluggy
from tornado import web

from freeapi.body_budget import BodyBudget
from freeapi import fleet
from freeapi.config import Config, ConfigError
from freeapi.discovery import Discovery
from freeapi.downloads import Downloads
from freeapi.errors import APIError, invalid_request
from freeapi.free import FreeRouter
from freeapi.handlers.admin import ROUTES as ADMIN_ROUTES
from freeapi.handlers.admin_log import ROUTES as ADMIN_LOG_ROUTES
from freeapi.handlers.admin_spend import ROUTES as ADMIN_SPEND_ROUTES
from freeapi.handlers.audio import SpeechHandler, TranscriptionsHandler
from freeapi.handlers.base import NotFoundHandler
from freeapi.handlers.chat import ChatCompletionsHandler
from freeapi.handlers.conversations import ConversationHandler, ConversationsHandler
from freeapi.handlers.embeddings import EmbeddingsHandler
from freeapi.handlers.files import FileContentHandler, FileHandler, FilesHandler
from freeapi.handlers.gate import GatewayApplication
from freeapi.handlers.health import HealthHandler, PingHandler
from freeapi.handlers.images import ImageEditsHandler, ImagesHandler, ImageVariationsHandler
from freeapi.handlers.models import ModelHandler, ModelsHandler
from freeapi.handlers.responses import ResponseHandler, ResponsesHandler
from freeapi.handlers.tokens import TokenCheckHandler
from freeapi.handlers.keys import KeysHandler
from freeapi.handlers.messages import CountTokensHandler, MessagesHandler
from freeapi.handlers.status import MetricsHandler, StatusHandler, StatusPageHandler
from freeapi.healthsync import HealthSync
from freeapi.keypool import HealthStore, KeyPool
from freeapi.admin.directory import Auth, Directory
from freeapi.admin.service import Admin
from freeapi.keys import GatewayAuth, split_keys
from freeapi.limits import Limits
from freeapi import telemetry
from freeapi.metrics import Metrics, multiproc_dir
from freeapi.pipeline import Steps
from freeapi.probes import check_key, host_answers
from freeapi.provider import Provider
from freeapi.routing import Catalog, Route
from freeapi.pricing import Pricing
from freeapi.status import StatusBoard
from freeapi.store import open_store
from freeapi.housekeeping import Sweeper
from freeapi.upstream import Pool

# Pass-through keys one request may carry (`Bearer k1,k2,...`): every key is tried or
# tracked, so the list is bounded; real clients send a handful.
MAX_PASSTHROUGH_KEYS = 32

log = logging.getLogger("freeapi.discovery")


class Gateway:
    """Everything a request needs, built once at startup (no per-request lookups)."""

    @property
    def pricing(self) -> Pricing:
        """Prices as the config (as last reloaded) says (freeapi/pricing.py)."""
        cfg, got = self.config, self._pricing
        if got is None or got[0] is not cfg.prices or got[1] is not cfg.billing \
                or got[3] is not self.providers:
            clock = got[2].clock if got is not None else time.time
            got = self._pricing = (cfg.prices, cfg.billing, Pricing(
                cfg.prices, cfg.billing, {n: p.config.type for n, p in self.providers.items()},
                clock), self.providers)
        return got[2]

    def __init__(self, config: Config, pm: pluggy.PluginManager,
                 provider_types: dict[str, type[Provider]]):
        self.config = config
        self.pm = pm
        self.provider_types = provider_types
        # providers, catalog, fallbacks, proxies, the `free` candidates (freeapi/fleet.py);
        # a reload replaces them all at once (`apply_fleet`).
        built = fleet.build(config, provider_types)
        self.providers: dict[str, Provider] = built.providers
        self.catalog: Catalog = built.catalog
        self.http = Pool()
        # Periodic cleanups for everything at once, instead of checks per request.
        self.sweeper = Sweeper()
        self.sweeper.add("upstream idle connections", self.http.sweep)
        self.http.proxy_for = built.proxy
        # URLs a vendor's answer names (images, audio): checked, unpooled, same proxy.
        self.downloads = Downloads(self.providers, self.http.proxy_for)
        self.health = HealthStore()
        self.store = open_store(config.state)  # opens (or connects) on first use
        self.metrics = Metrics(multiproc_dir(), cache_seconds=config.metrics_cache,
                               max_models=config.metrics_max_models)
        # Request-body bytes held at once, across all requests (server.max_buffered_bytes).
        self.body_budget = BodyBudget(max(config.max_buffered_bytes, config.max_body_size))
        self.status = StatusBoard(self)  # GET /v1/status
        # (prices, billing, Pricing, providers): rebuilt when a reload changes them
        self._pricing = None
        self.workers = 1  # processes serving this port (the CLI's --workers)
        self.limits = Limits(self.store, on_reject=self.metrics.limit_rejected)
        self.store.on_ledger_dropped = partial(self.metrics.ledger_dropped, self.store.kind)
        # Gateway keys: config.yaml's, then those made at runtime (freeapi/admin).
        self.directory = Directory(self.store)
        self.auth = Auth(GatewayAuth(config.gateway_keys),
                         self.directory)
        self.admin = Admin(self.store, self.directory, lambda: self.config.gateway_keys)
        self.pools: dict[str, KeyPool] = {}  # the running providers' pools, by name
        # Pools of providers a reload removed or replaced, while requests that hold the old
        # provider object still use them (they go with the last such request).
        self._retired_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Server-side keys' cooldowns and verdicts, shared with gateways on the same store.
        self.health_sync = HealthSync(self.store, self.pools,
                                      {n: p.api_keys for n, p in self.providers.items()},
                                      config.state.sync_interval)
        self.pools.update((name, self._pool(p)) for name, p in self.providers.items())
        self.fallbacks: dict[str, list[Route]] = built.fallbacks
        self.free = FreeRouter(self, built.free)  # the `free` model (freeapi/free.py)
        self.active: set = set()  # chat handlers in flight, for graceful shutdown
        # File contents being sent, per caller (handlers/files.py); `downloads` above is
        # the vendor-URL fetcher.
        self.file_downloads: dict[str, int] = {}
        self.uploads = 0  # file uploads being received (handlers/files.py)
        self.draining = False  # no new chat requests (graceful shutdown began)
        self.shutting_down = False  # the grace period is over: in-flight work is cut
        self._resolve = pm.hook.resolve_model
        # OpenTelemetry traces, or None (off: no opentelemetry import; freeapi/telemetry.py).
        # Made at startup: a reload leaves it as it is.
        self.telemetry = telemetry.start(config.telemetry)
        self.steps = Steps(self)  # the request pipeline's steps (freeapi/pipeline)
        self.discovery = Discovery(self.providers, config.discovery, self.http,
                                   self._catalog_changed)

    def _pool(self, p: Provider) -> KeyPool:
        kp = p.config.key_pool

        async def probe(key):
            return await check_key(self.http, p, key)

        async def host_probe():
            return await host_answers(self.http, p)

        # The gateway's own keys, and a keyless provider's pseudo-key, are never forgotten
        # for clients' pass-through keys.
        self.health.pin(p.name, p.api_keys or [None])
        return KeyPool(p.name, self.health, max_concurrency=kp.max_concurrency,
                       max_queue=kp.queue_size, queue_timeout=kp.queue_timeout,
                       prober=probe, probe_interval=kp.recheck_interval,
                       on_change=lambda key, h: self.health_sync.publish(p.name, key, h),
                       host_prober=host_probe, no_balance_wait=p.no_balance_wait())

    def pool_for(self, provider: Provider) -> KeyPool:
        """The key pool of this provider object: a request that resolved before a reload
        replaced or removed its provider keeps the pool it began with."""
        if self.providers.get(provider.name) is not provider:
            pool = self._retired_pools.get(provider)
            if pool is not None:
                return pool
        return self.pools[provider.name]

    def apply_fleet(self, config: Config, built: fleet.Fleet) -> None:
        """A reload's providers, catalog, fallbacks and `free` candidates, swapped in at
        once (no await: no request sees half of it). Unchanged providers keep their pools;
        a replaced provider's new pool starts from the health its kept keys had (health is
        kept per provider name and key); a removed or replaced pool stops its background
        probes and serves the requests in flight until they end."""
        old_providers = self.providers
        for name in built.removed + built.changed:
            old, pool = old_providers[name], self.pools.pop(name)
            pool.close(handoff=partial(self._recheck, name))
            self._retired_pools[old] = pool
            kept = set(built.providers[name].api_keys or [None]) \
                if name in built.providers else set()
            self.health.unpin(name, [k for k in (old.api_keys or [None]) if k not in kept])
        self.providers = built.providers
        self.catalog = built.catalog
        self.fallbacks = built.fallbacks
        for field in ("providers", "models", "fallbacks", "free"):
            setattr(self.config, field, getattr(config, field))
        self.http.proxy_for = built.proxy
        self.downloads.set_providers(self.providers, built.proxy)
        self.health_sync.set_keys({n: p.api_keys for n, p in self.providers.items()})
        if self.health_sync.enabled:  # a shared store and, maybe for the first time, keys
            try:
                self.health_sync.start()  # (a no-op when it runs already)
            except RuntimeError:  # no event loop: a gateway that is not serving
                pass
        for name, p in self.providers.items():
            if name not in self.pools:
                self.pools[name] = pool = self._pool(p)
                pool.resume(p.api_keys or [None])
        self.free = FreeRouter(self, built.free, self.free.memory)
        self.discovery.providers = self.providers
        if any(self.providers[n].discover_enabled for n in built.added + built.changed):
            self.discovery.soon()  # the new providers' models, without waiting a round

    def _recheck(self, name: str, key) -> None:
        """A request still on a pool a reload retired found `key` dead: the pool serving
        `name` now re-checks it, if the key is still the provider's (a removed one is not
        the operator's to probe any more)."""
        p, pool = self.providers.get(name), self.pools.get(name)
        if p is not None and pool is not None and key in (p.api_keys or [None]):
            pool.resume([key])

    def fallbacks_for(self, requested: str, route: Route) -> list[Route]:
        """The configured fallback chain: by the name the client used, else by the model
        that serves it (`provider/model` or its bare id)."""
        if route.chain is not None:  # the `free` model's candidates (freeapi/free.py)
            return list(route.chain)
        for name in (requested, f"{route.provider.name}/{route.upstream_model}",
                     route.upstream_model):
            if name in self.fallbacks:
                return [dataclasses.replace(r, display=route.display)
                        for r in self.fallbacks[name]]
        return []

    async def resolve_fresh(self, model: str) -> Route:
        """resolve(), but a bare name nobody serves first asks the providers that list
        their models again (freeapi/discovery.py), so a model pulled into a local server
        since the last round is found."""
        if self.free.parse(model) is not None:  # what can serve now, in order
            return await self.free.route(model)
        try:
            return self.resolve(model)
        except APIError as e:
            if e.code != "model_not_found" or "/" in model or not self.discovery.may_rerun():
                raise
        await self.discovery.rerun()
        return self.resolve(model)

    def _catalog_changed(self) -> None:
        """Discovery found new models: a Catalog that includes them."""
        try:
            self.catalog = Catalog(self.providers, self.config.models)
        except ConfigError as e:  # cannot happen for names that resolved at startup
            log.error("model discovery: keeping the startup catalog: %s", str(e))

    def resolve(self, model: str) -> Route:
        # A name the vendor could be billed for and the gateway then cannot put in its
        # x-freeapi-upstream-model header (a 500 after the fact): refused up front.
        bad = next((c for c in model if c < " " or "\x7f" <= c <= "\x9f" or c > "\xff"),
                   None)
        if bad is not None:
            raise invalid_request(f"`model` contains U+{ord(bad):04X}; a model name is "
                                  "printable Latin-1 text without control characters.",
                                  param="model", code="invalid_model")
        if self.free.parse(model) is not None:
            return self.free.static_route(model)
        try:
            route = self._resolve(model=model, catalog=self.catalog)
        except APIError as e:
            # Raised again without the hook's frames: pluggy's _multicall keeps the error
            # it re-raises in a local, so its frame in the traceback made a cycle holding
            # the request (its handler and pipeline) until the garbage collector ran.
            raise e.with_traceback(None)
        if route is None:  # a plugin returned None and the core raised nothing
            raise APIError(404, f"The model {model!r} does not exist.", param="model",
                           code="model_not_found")
        return route

    def servable(self, caller, name: str, route: Route) -> bool:
        """Whether a request for `name` (served by `route`) can work for this caller: the
        gateway holds keys for the provider, or needs none, or passes the caller's own
        through; and the caller's gateway key may use the model."""
        p = route.provider
        if not (p.api_keys or not p.key_required or not self.auth.enabled):
            return False
        return caller is None or caller.models is None or \
            Limits.model_allowed(caller, name, route)

    def vendor_keys(self, provider: Provider, token: str | None) -> tuple[list, bool]:
        """The vendor keys one request may use ([None]: send no key), and whether they are
        the client's own (pass-through)."""
        if provider.api_keys:
            return provider.api_keys, False
        if self.auth.enabled and not provider.key_required:
            return [None], False  # the caller's token is a gateway key, not the server's
        if self.auth.enabled:
            # Not a 401: SDKs raise that as "your key is wrong", and the caller's gateway
            # key is fine; the gateway lacks one of its own.
            raise APIError(503, f"The gateway holds no API key for {provider.name}: the "
                                f"operator must set providers.{provider.name}.api_keys.",
                           code="no_provider_key")
        keys = split_keys(token) if token else []
        if len(keys) > MAX_PASSTHROUGH_KEYS:
            raise invalid_request(
                f"The Authorization header carries {len(keys)} API keys; a request may pass "
                f"at most {MAX_PASSTHROUGH_KEYS} (configure larger pools on the gateway, "
                f"under providers.{provider.name}.api_keys).", code="too_many_keys")
        if not keys and not provider.key_required:
            return [None], False
        if not keys:
            raise APIError(401, f"No API key for {provider.name}: send your own key as "
                                "`Authorization: Bearer sk-...` (several as sk-a,sk-b), or "
                                f"configure providers.{provider.name}.api_keys on the gateway.",
                           code="missing_api_key")
        return keys, True

    async def drain(self, grace: float):
        """Graceful shutdown: new chat requests are refused, those in flight get `grace`
        seconds, then streams end with an error event and the rest are cancelled."""
        self.draining = True
        deadline = time.monotonic() + grace
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.active:
            return
        self.shutting_down = True
        for handler in list(self.active):
            handler.shutdown()
        deadline = time.monotonic() + 2
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def close(self):
        self.directory.close()
        self.health_sync.close()
        for pool in self.pools.values():
            pool.close()
        self.http.close()
        self.store.close()
        if self.telemetry is not None:
            self.telemetry.close()  # the spans still queued are exported first


def make_app(gateway: Gateway) -> web.Application:
    routes = [
        (r"/(?:v1/)?chat/completions", ChatCompletionsHandler),
        (r"/v1/messages", MessagesHandler),  # `?beta=true` (Claude Code) is accepted as is
        # (the doors first: Tornado tries each pattern in turn until one matches)
        (r"/(?:v1/)?responses", ResponsesHandler),
        (r"/v1/messages/count_tokens", CountTokensHandler),
        (r"/(?:v1/)?embeddings", EmbeddingsHandler),
        (r"/(?:v1/)?audio/speech", SpeechHandler),
        (r"/(?:v1/)?audio/transcriptions", TranscriptionsHandler),
        (r"/(?:v1/)?images/generations", ImagesHandler),
        (r"/(?:v1/)?images/edits", ImageEditsHandler),
        (r"/(?:v1/)?images/variations", ImageVariationsHandler),
        (r"/v1/files", FilesHandler),
        (r"/v1/files/([^/]+)", FileHandler),
        (r"/v1/files/([^/]+)/content", FileContentHandler),
        (r"/(?:v1/)?models", ModelsHandler),
        (r"/(?:v1/)?models/(.+)", ModelHandler),
        (r"/token/check", TokenCheckHandler),
        (r"/v1/keys", KeysHandler),
        (r"/v1/conversations", ConversationsHandler),
        (r"/v1/conversations/([^/]+)", ConversationHandler),
        (r"/(?:v1/)?responses/([^/]+)", ResponseHandler),
        (r"/ping", PingHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/status", StatusPageHandler),
        (r"/v1/status", StatusHandler),
        *ADMIN_ROUTES,
        *ADMIN_LOG_ROUTES,
        *ADMIN_SPEND_ROUTES,
    ]
    return GatewayApplication(routes, freeapi=gateway, default_handler_class=NotFoundHandler,
                           compress_response=False)
