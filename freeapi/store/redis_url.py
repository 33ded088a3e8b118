"""`state.redis_url`, parsed: one server, or a primary found through Redis Sentinel.

    redis://[[user]:password@]host[:port][/db][?options]
    rediss://...                                           TLS
    redis+sentinel://[[user]:password@]host[:port][,host2[:port2],...]/master_name[/db][?options]
    rediss+sentinel://...                                  TLS to the sentinels and the data nodes

The Sentinel spelling is the one the Redis-Sentinel-Url package defined and that Prefect's
prefect-redis and RedisVL accept (https://pypi.org/project/Redis-Sentinel-Url/,
https://docs.prefect.io/integrations/prefect-redis/api-ref/prefect_redis-connection):
sentinels default to port 26379; the credentials before `@` are the data nodes';
`sentinel_username` / `sentinel_password` options authenticate to the sentinels (when
they require it). TLS options (redis-py's names): `ssl_ca_certs` (a CA file to trust
instead of the system's), `ssl_certfile` and `ssl_keyfile` (a client certificate, for a
server with `tls-auth-clients yes`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

SENTINEL_PORT = 26379
_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "sentinel_username",
                      "sentinel_password"})
_EXPECTED = ("expected redis://[user:password@]host[:port][/db], rediss://..., or "
             "redis+sentinel://[user:password@]host[:port][,host2[:port2]...]/master_name[/db]")


@dataclass(frozen=True)
class RedisTarget:
    hosts: tuple[tuple[str, int], ...]  # the server, or the sentinels
    master_name: str | None  # set: hosts are sentinels to ask for this primary
    db: int
    username: str | None
    password: str | None
    tls: bool
    options: tuple[tuple[str, str], ...] = ()

    @property
    def sentinel(self) -> bool:
        return self.master_name is not None

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.option("ssl_ca_certs"))
        if self.option("ssl_certfile"):
            ctx.load_cert_chain(self.option("ssl_certfile"), self.option("ssl_keyfile"))
        return ctx

    def describe(self) -> str:
        """The URL without any password or option (it goes to logs)."""
        scheme = "rediss" if self.tls else "redis"
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.sentinel:
            return f"{scheme}+sentinel://{hosts}/{self.master_name}/{self.db}"
        return f"{scheme}://{hosts}/{self.db}"


def _host_port(piece: str, default_port: int) -> tuple[str, int]:
    if piece.startswith("["):  # [::1]:26379
        host, _, rest = piece[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = piece.rpartition(":") if ":" in piece else (piece, "", "")
    if not host:
        raise ValueError(f"{_EXPECTED} (a host is missing)")
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{_EXPECTED} (bad port {port!r})")
    return host, int(port) if port else default_port


def parse_redis_url(url: str) -> RedisTarget:
    """A RedisTarget, or ValueError saying what is wrong (never quoting a password)."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
        raise ValueError(_EXPECTED)
    sentinel = scheme.endswith("+sentinel")
    netloc_path, _, query = rest.partition("?")
    netloc, _, path = netloc_path.partition("/")
    creds, at, hosts = netloc.rpartition("@")
    if not at:
        creds, hosts = "", netloc
    username = password = None
    if at:
        user, colon, pw = creds.partition(":")
        username = unquote(user) if user else None
        password = unquote(pw) if colon else None
    pieces = [p for p in hosts.split(",")] if hosts else [""]
    if not sentinel and len(pieces) > 1:
        raise ValueError(f"{_EXPECTED} (several hosts need redis+sentinel://)")
    if not sentinel and pieces == [""]:
        pieces = ["127.0.0.1"]
    default = SENTINEL_PORT if sentinel else 6379
    parsed = tuple(_host_port(p, default) for p in pieces)
    parts = [p for p in path.split("/")] if path else []
    if parts and parts[-1] == "":
        parts.pop()
    master = None
    if sentinel:
        if not parts or not parts[0]:
            raise ValueError(f"{_EXPECTED} (the master name is missing)")
        master, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1 or (parts and not (parts[0].isascii() and parts[0].isdigit())):
        raise ValueError("the database in the URL's path must be a number")
    options = tuple(parse_qsl(query, keep_blank_values=True))
    for name, _ in options:
        if name not in _OPTIONS:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(sorted(_OPTIONS))})")
    return RedisTarget(hosts=parsed, master_name=master, db=int(parts[0]) if parts else 0,
                       username=username, password=password,
                       tls=scheme.startswith("rediss"), options=options)
