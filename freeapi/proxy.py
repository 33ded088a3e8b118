"""Outgoing HTTP proxies for vendor connections.

Per provider, `providers.NAME.proxy` is a proxy URL (`http://[user:password@]host:port`),
`none` (always direct), or unset: then the standard environment variables decide, as curl
and most HTTP clients read them: `https_proxy` / `HTTPS_PROXY` for https vendors,
`http_proxy` / `HTTP_PROXY` for http ones, and `no_proxy` / `NO_PROXY` for hosts that go
direct. https vendors are reached through a CONNECT tunnel (TLS stays end to end);
http ones get the request in absolute form. Credentials in the URL are sent as
`Proxy-Authorization: Basic` and are never logged or shown in errors.

SOCKS proxies are not supported (no socks5:// URL is accepted): the usual way in is an HTTP
proxy in front of them (e.g. privoxy, gost, or a tunnel tool's HTTP port).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from freeapi.errors import UpstreamError

# The transport is imported only where a connection is opened: config.py reads proxy
# settings with this module, and providers import config.

log = logging.getLogger("freeapi.proxy")

NONE = "none"
_MAX_HEAD = 16 * 1024


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    # "Basic ..." or None; kept out of repr() so it cannot reach a log by accident.
    authorization: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"http://{self.host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """A proxy URL -> Proxy; ValueError with a message that never quotes the URL (it may
    hold a password)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("expected a proxy URL such as http://host:port, or none")
    url = url.strip()
    if "://" not in url:
        url = "http://" + url  # curl's reading of `host:port`
    parts = urlsplit(url)
    if parts.scheme.lower().startswith("socks"):
        raise ValueError("SOCKS proxies are not supported; use an HTTP proxy (CONNECT)")
    if parts.scheme.lower() != "http":
        raise ValueError(f"unsupported proxy scheme {parts.scheme!r}; expected http://")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("the proxy's port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the proxy URL has no host")
    auth = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(user_pass.encode()).decode()
    return Proxy(parts.hostname, port, auth)


def parse_setting(value) -> str | None:
    """providers.NAME.proxy as configured: None (the environment decides), "none", or a
    valid proxy URL (checked here, kept as given)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == NONE:
        return NONE
    parse_proxy(value)
    return value.strip()


class NoProxy:
    """NO_PROXY: `*`, host names (a name matches itself and its subdomains; a leading dot
    is allowed), `host:port`, IP addresses and CIDR ranges, separated by commas."""

    def __init__(self, value: str | None):
        self.everything = False
        self.names: list[tuple[str, int | None]] = []
        self.networks: list = []
        for item in (value or "").replace(" ", ",").split(","):
            item = item.strip().lower()
            if not item:
                continue
            if item == "*":
                self.everything = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            host, port = item, None
            if item.count(":") == 1:
                host, _, p = item.partition(":")
                port = int(p) if p.isascii() and p.isdigit() else None  # not "²"
            self.names.append((host.lstrip(".").lstrip("*").lstrip("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and any(ip in net for net in self.networks):
            return True
        for name, p in self.names:
            if p is not None and p != port:
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def _env(environ, name: str) -> str | None:
    return environ.get(name.lower()) or environ.get(name.upper()) or None


class Resolver:
    """Which proxy, if any, a connection to (scheme, host, port) goes through. Built once
    at startup from the providers' settings and the environment."""

    def __init__(self, providers: dict, environ):
        self.by_origin: dict[tuple, Proxy | None] = {}
        self.env = {}
        for scheme in ("https", "http"):
            raw = _env(environ, f"{scheme}_proxy")
            try:
                self.env[scheme] = parse_proxy(raw) if raw else None
            except ValueError as e:
                raise ValueError(f"{scheme.upper()}_PROXY (environment): {e}") from None
        self.no_proxy = NoProxy(_env(environ, "no_proxy"))
        for name, provider in providers.items():
            setting = provider.config.proxy
            # Every host the provider talks to: its base URL, and a native endpoint's own
            # (responses_base_url, the Anthropic endpoint of /v1/messages) when it has one.
            urls = [provider.base_url, getattr(provider.config, "responses_base_url", None),
                    getattr(provider, "anthropic_url", None)]
            used = set()
            for url in filter(None, urls):
                parts = urlsplit(url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                origin = (parts.scheme, parts.hostname, port)
                if setting is None:
                    chosen = self._from_env(*origin)
                else:
                    chosen = None if setting == NONE else parse_proxy(setting)
                self.by_origin.setdefault(origin, chosen)
                if chosen is not None:
                    used.add(chosen.describe())
            if used:
                log.info("%s: vendor connections go through the proxy %s", name,
                         ", ".join(sorted(used)))

    def _from_env(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self.env.get(scheme)
        if proxy is None or self.no_proxy.matches(host, port):
            return None
        return proxy

    def for_setting(self, setting: str | None, scheme: str, host: str, port: int
                    ) -> Proxy | None:
        """The proxy for a host that is not one of a provider's own (a download its answer
        named), by that provider's `proxy` setting: the proxy it names, none, or (unset)
        the environment's for that host."""
        if setting is None:
            return self._from_env(scheme, host, port)
        return None if setting == NONE else parse_proxy(setting)

    def __call__(self, scheme: str, host: str, port: int) -> Proxy | None:
        origin = (scheme, host, port)
        if origin in self.by_origin:
            return self.by_origin[origin]
        return self._from_env(scheme, host, port)


async def connect(proxy: Proxy, scheme: str, host: str, port: int, timeout: float,
                  ssl_context, server_hostname: str | None = None):
    """A connection (freeapi.transport.Conn) to host:port through `proxy`: for https a
    CONNECT tunnel with TLS to the vendor inside it; for http the proxy connection itself
    (requests go in absolute form). `server_hostname`: the name TLS checks when `host` is
    an address the caller resolved and checked itself (a download's)."""
    try:
        return await asyncio.wait_for(_connect(proxy, scheme, host, port, ssl_context,
                                               server_hostname or host), timeout)
    except asyncio.TimeoutError:
        raise UpstreamError("timeout", f"could not connect through the proxy "
                                       f"{proxy.describe()} within {timeout:g}s") from None


def _oversized():
    return UpstreamError("connect", "the proxy sent an oversized answer to CONNECT")


async def _connect(proxy, scheme, host, port, ssl_context, server_hostname):
    from freeapi.transport import failure_reason, open_conn, read_head, start_tls
    try:
        conn = await open_conn(proxy.host, proxy.port)
    except OSError as e:
        reason = failure_reason(e)
        raise UpstreamError("connect", f"cannot connect to the proxy {proxy.describe()} "
                                       f"({reason})") from None
    if scheme != "https":
        return conn
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        conn.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            head = await read_head(conn, _MAX_HEAD, _oversized)
        except UpstreamError:
            raise UpstreamError("connect", f"the proxy {proxy.describe()} sent an oversized "
                                           "answer to CONNECT") from None
        if not head:
            raise UpstreamError("connect", f"the proxy {proxy.describe()} closed the "
                                           f"connection to {host}:{port}")
        status_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = status_line.split(None, 2)
        word = parts[1] if len(parts) > 1 else ""
        code = int(word) if word.isascii() and word.isdigit() else 0  # not "²00"
        if not 200 <= code < 300:
            what = ("asks for credentials (407)" if code == 407 else
                    f"answered {code or repr(status_line[:60])}")
            raise UpstreamError("connect", f"the proxy {proxy.describe()} {what} to "
                                           f"CONNECT {target}")
        if conn.buffered:  # bytes before our TLS hello: not a tunnel we can trust
            raise UpstreamError("connect", f"the proxy {proxy.describe()} sent bytes after "
                                           f"its answer to CONNECT {target}")
        return await start_tls(conn, ssl_context, server_hostname)
    except UpstreamError:
        conn.close()
        raise
    except (OSError, ValueError) as e:  # TLS failures inside the tunnel, a bad head
        conn.close()
        raise UpstreamError("connect", f"through the proxy {proxy.describe()}: "
                                       f"{type(e).__name__}: {e}") from None
    except BaseException:
        conn.close()
        raise
