"""Which URLs from a vendor's answer the gateway may download, and to which addresses.

A vendor answers some requests with a URL instead of the bytes (GLM's and Qwen-Image's
images, Qwen-TTS's audio) and the gateway fetches it. The URL is the vendor's word, not
the operator's: a hostile or compromised vendor could name the gateway's own network
(loopback, private ranges, a cloud's metadata service) and have the answer handed back
to the client. So a vendor-given URL is downloaded only when

- it is a plain http(s) URL (printable ASCII, a valid port, no user:password@), and
- every address its host resolves to is a public one (`internal` below), checked on the
  addresses the connection then uses, so a name that resolves differently on a second
  lookup (DNS rebinding) changes nothing;

except for two documented exceptions, whose addresses are not checked:

- the provider's own `base_url` origin (same scheme, host and port): that is the vendor
  itself, which the gateway already sends its requests (and keys) to;
- a host the operator lists in `providers.NAME.download_hosts` (`host` or `host:port`),
  e.g. an internal object store a self-hosted vendor serves its files from.

No Tornado here: config.py parses `download_hosts` with this module."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

# Cloud metadata services. Most sit in ranges refused anyway (link-local, ULA, shared
# address space); listed so that a change of what Python calls "global" cannot let
# them through. AWS/GCP/Azure/OpenStack 169.254.169.254, AWS ECS 169.254.170.2, AWS IPv6
# fd00:ec2::254, Alibaba Cloud 100.100.100.200, Azure's wireserver 168.63.129.16 (a
# public address that answers only inside Azure).
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200",
    "168.63.129.16"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL = 8192


class Refused(Exception):
    """A URL or address the gateway will not download from; the message is safe to show
    the client (it names no address)."""


def internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` is anything but a public unicast address: loopback, private,
    link-local, shared (CGNAT), unspecified, multicast, reserved, documentation, a cloud
    metadata address, or an IPv6 address carrying an IPv4 one that is (IPv4-mapped,
    IPv4-compatible, 6to4, Teredo, NAT64)."""
    if ip in METADATA:
        return True
    if ip.version == 6:
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64 or int(ip) >> 32 == 0:  # NAT64 and IPv4-compatible (::a.b.c.d)
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and internal(v4) for v4 in embedded):
            return True
    return (not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local
            or ip.is_unspecified or ip.is_multicast or ip.is_reserved)


def check_address(address: str) -> None:
    """Refused for an internal address (as a resolver or getpeername gives it)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope is no matter
    except ValueError:
        raise Refused("its host resolved to something that is not an IP address") from None
    if internal(ip):
        raise Refused("its host is a loopback, private, link-local or metadata address")


@dataclass(frozen=True)
class Target:
    """A checked download URL. `checked`: whether the addresses must be public (False for
    the vendor's own origin and the operator's download_hosts)."""

    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    path: str  # origin form: /path?query
    checked: bool = True

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url) -> Target:
    """A vendor-given URL -> Target (checked=True), or Refused saying what is wrong."""
    if not isinstance(url, str) or not url:
        raise Refused("it is not a URL")
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    if any(not "\x21" <= c <= "\x7e" for c in url):
        # Vendors' signed URLs are percent-encoded; anything else would not survive the
        # request line (and re-encoding would break a signature).
        raise Refused("the URL holds a space, control or non-ASCII character")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("the URL is not http(s)")
    if "@" in parts.netloc:
        raise Refused("the URL carries credentials (user:password@)")
    try:
        port = parts.port
    except ValueError:
        raise Refused("the URL's port is not a number from 1 to 65535") from None
    if port == 0:
        raise Refused("the URL's port is not a number from 1 to 65535")
    if not parts.hostname:
        raise Refused("the URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/"):
        raise Refused("the URL's path is not absolute")
    return Target(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80),
                  path)


def origin(url: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a configured URL (the provider's base_url)."""
    if not url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    return (scheme, (parts.hostname or "").lower(), port)


def parse_hosts(value) -> tuple[tuple[str, int | None], ...]:
    """providers.NAME.download_hosts: a list of `host`, `host:port`, `[v6]` or
    `[v6]:port` -> ((host, port or None), ...); ValueError saying what is wrong."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of host names or host:port")
    out = []
    for item in value:
        item = item.strip().lower()
        if not item or "/" in item or "@" in item or any(
                not "\x21" <= c <= "\x7e" for c in item):
            raise ValueError(f"{item!r} is not a host or host:port")
        try:
            parts = urlsplit("//" + item)
            port = parts.port
        except ValueError:
            raise ValueError(f"{item!r}: the port must be a number from 1 to 65535") from None
        if not parts.hostname or port == 0:
            raise ValueError(f"{item!r} is not a host or host:port")
        out.append((parts.hostname, port))
    return tuple(out)


def exempt(target: Target, own: tuple | None, hosts) -> bool:
    """Whether `target` is the vendor's own origin or an operator-listed host."""
    if own is not None and (target.scheme, target.host, target.port) == own:
        return True
    return any(target.host == host and port in (None, target.port) for host, port in hosts)
