"""The client that downloads URLs a vendor's answer names (freeapi/download_policy.py says
which): one GET per URL, with no key and no pooling.

Not pooled, on purpose: download hosts are whatever the vendor names (a storage bucket per
region, a CDN), rarely the same twice, so an idle pool of them would mostly hold sockets
to hosts chosen by the vendor, and need its own sweeping. Each download asks for
`Connection: close` and its connection is closed once the body is read (or on any
failure, timeout or abort), so no download connection is ever idle.

The addresses are checked where the connection is made:

- direct: the host is resolved once, every address must be public, the connection goes
  to one of those addresses (TLS still checks the certificate against the host name), and
  the peer's address is checked again once connected;
- through the provider's proxy (`providers.NAME.proxy`, else HTTPS_PROXY/HTTP_PROXY and
  NO_PROXY): the host is resolved and checked the same way before anything is sent to
  the proxy; an https download then asks the proxy to CONNECT to the checked address
  (not the name, which the proxy would resolve again); an http one goes in absolute form
  with the host name (virtual hosts need it), so there the proxy's own resolution is
  the last word (see docs: prefer https download hosts, or a proxy that refuses internal
  targets)."""

from __future__ import annotations

import asyncio
import socket
import ssl

from freeapi import download_policy as policy
from freeapi import proxy as proxies
from freeapi.errors import UpstreamError
from freeapi.http1 import parse_head
from freeapi.transport import failure_reason, open_conn, read_head, start_tls
from freeapi.upstream import Call, Response

_MAX_HEAD = 64 * 1024


def _head_too_large():
    return UpstreamError("protocol", "response head too large")


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` as the system resolver gives them (any notation getaddrinfo
    takes: 127.1, 2130706433, 0x7f000001, ...)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class Downloads:
    """Built once by the Gateway. `resolve` (async (host, port) -> [address, ...]) may be
    replaced, e.g. by tests mapping a name to an address."""

    def __init__(self, providers: dict, proxy_for):
        self.resolve = system_resolve
        self.ssl = ssl.create_default_context()
        self.set_providers(providers, proxy_for)

    def set_providers(self, providers: dict, proxy_for) -> None:
        """The providers' own hosts and `download_hosts` (again after a reload)."""
        self.proxy_for = proxy_for  # freeapi.proxy.Resolver
        self._own = {name: policy.origin(p.base_url) for name, p in providers.items()}
        self._hosts = {name: p.config.download_hosts for name, p in providers.items()}

    def start(self, provider, url: str) -> Call:
        """The call for one download (abort() cancels it); policy.Refused for a URL that
        is not downloaded at all."""
        target = policy.parse_url(url)
        if policy.exempt(target, self._own.get(provider.name), self._hosts.get(provider.name,
                                                                               ())):
            target = policy.Target(target.scheme, target.host, target.port, target.path,
                                   checked=False)
        proxy = self.proxy_for.for_setting(provider.config.proxy, target.scheme,
                                           target.host, target.port)
        return Call(None, (target, proxy), target.path)

    async def send(self, call: Call, connect_timeout: float, first_byte_timeout: float
                   ) -> Response:
        """Connect, send the GET and read the head; the body is read from the Response
        (its connection is closed afterwards: never kept)."""
        target, proxy = call.key
        try:
            conn = await asyncio.wait_for(self._open(target, proxy), connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", f"could not connect within "
                                           f"{connect_timeout:g}s") from None
        call.conn = conn
        if call.aborted:
            call.close()
            raise UpstreamError("aborted", "request cancelled")
        path = target.path
        if proxy is not None and target.scheme == "http":
            path = f"http://{target.authority}{path}"  # a plain-http proxy: absolute form
        lines = [f"GET {path} HTTP/1.1", f"Host: {target.authority}",
                 "Accept-Encoding: identity", "User-Agent: freeapi", "Connection: close"]
        if proxy is not None and target.scheme == "http" and proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        call.arm(first_byte_timeout, "response")
        try:
            conn.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
            while True:
                raw = await read_head(conn, _MAX_HEAD, _head_too_large)
                if not raw or call.aborted or call.timed_out:
                    raise call.failure("connection closed before a response")
                _, code, headers = parse_head(raw)
                if not 100 <= code < 200:
                    break
        except BaseException:
            call.close()
            raise
        finally:
            call.disarm()
        return Response(call, code, headers, False)  # never kept: closed after the body

    async def _addresses(self, target) -> list[str]:
        try:
            addresses = await self.resolve(target.host, target.port)
        except (OSError, UnicodeError) as e:
            raise UpstreamError("connect", f"cannot resolve the download host "
                                           f"({type(e).__name__})") from None
        if not addresses:
            raise UpstreamError("connect", "the download host has no address")
        for address in addresses:  # all of them: a name with one internal address is
            policy.check_address(address)  # not a public host
        return addresses

    async def _open(self, target, proxy):
        addresses = await self._addresses(target) if target.checked else None
        if proxy is not None:
            host = target.host
            if addresses and target.scheme == "https":
                host = addresses[0]  # the checked address, not a name to resolve again
            return await proxies.connect(proxy, target.scheme, host, target.port, 3600,
                                         self.ssl, server_hostname=target.host)
        last = None
        for address in addresses or [target.host]:
            try:
                conn = await open_conn(address, target.port)
            except OSError as e:
                last = e
                continue
            try:
                if target.checked:  # the address actually connected to
                    policy.check_address(conn.transport.get_extra_info("peername")[0])
                if target.scheme == "https":
                    conn = await start_tls(conn, self.ssl, target.host)
                return conn
            except policy.Refused:
                conn.close()
                raise
            except (OSError, ValueError) as e:  # TLS failures
                conn.close()
                raise UpstreamError("connect", f"TLS with the download host failed "
                                               f"({type(e).__name__})") from None
            except BaseException:
                conn.close()
                raise
        reason = failure_reason(last) if isinstance(last, OSError) else type(last).__name__
        raise UpstreamError("connect", f"cannot connect to the download host ({reason})")
