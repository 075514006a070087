"""``redis+sentinel://`` URLs: Redis behind Sentinel, named as other clients name it.

    redis+sentinel://[[user]:password@]host:26379[,host:26380...]/service[/db][?sentinel_password=...]
    rediss+sentinel://...   TLS to the Sentinels and to the primary alike

The password (and user) sign in to the primary; ``sentinel_password`` (URL-encoded) to Sentinels
that have a ``requirepass`` of their own. Parsed here, once, for the configuration loader and the
Redis store; a malformed URL is a one-line :class:`ConfigError` naming ``redis-url`` and never
quoting the URL (it may hold a password).
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote

from adapter.errors import ConfigError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
FORM = "redis+sentinel://[:password@]host:26379,host:26380/mymaster/0"


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """The parts of a ``redis+sentinel://`` URL (its repr shows no password)."""

    tls: bool
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def where(self) -> str:
        """What messages may name: the scheme, the Sentinels and the service."""
        scheme = SENTINEL_SCHEMES[1] if self.tls else SENTINEL_SCHEMES[0]
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{scheme}://{hosts}/{self.service}"


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of ``url``, or a ConfigError that says what is missing and shows the form."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SENTINEL_SCHEMES:
        raise _bad("not a redis+sentinel:// or rediss+sentinel:// URL")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    credentials, at, hostlist = netloc.rpartition("@")
    if not at:
        credentials = ""
    sentinels = tuple(_host(entry) for entry in hostlist.split(",")) if hostlist else ()
    if not sentinels:
        raise _bad("no Sentinel host")
    service, _, database = path.partition("/")
    service = unquote(service)
    if not service:
        raise _bad("no service name (the name in Sentinel's 'monitor' line, such as mymaster)")
    username, password = _credentials(credentials)
    return SentinelURL(
        tls=scheme.lower() == SENTINEL_SCHEMES[1],
        sentinels=sentinels,
        service=service,
        db=_database(database),
        username=username,
        password=password,
        sentinel_password=_sentinel_password(query),
    )


def _host(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):  # [::1]:26379
        host, bracket, port = entry[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise _bad("an IPv6 Sentinel host is written [::1]:26379")
        port = port[1:]
    else:
        host, _, port = entry.partition(":")
    if not host or any(c in host for c in " /@?#"):
        raise _bad("an empty or malformed Sentinel host (hosts are separated by commas)")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad("a Sentinel port is not a number from 1 to 65535")
    return host, int(port)


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    if not colon:  # redis://secret@host: the one part is the password, as redis-py reads it
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def _database(text: str) -> int:
    text = text.strip("/")
    if not text:
        return 0
    if not text.isdigit():
        raise _bad("the database after the service name must be a number such as 0")
    return int(text)


def _sentinel_password(query: str) -> str | None:
    if not query:
        return None
    try:
        fields = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _bad("a malformed query; the only parameter is sentinel_password") from None
    if set(fields) - {"sentinel_password"}:  # not named: a misplaced password may be one
        raise _bad("an unknown query parameter; the only one is sentinel_password")
    values = fields.get("sentinel_password", [""])
    return values[-1] or None


def _bad(what: str) -> ConfigError:
    # Never the URL itself: it may hold a password.
    return ConfigError(f"redis-url: {what}; write {FORM}")
