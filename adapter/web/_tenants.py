"""Which tenant a request is for, in an app with several realms: decided here for both shells.

The order: the app's resolver (``tenant_resolver=``: any rule, from the request as the server
gives it), then the ``Host`` (a dictionary look-up), then the path prefix (one look-up per
segment of the longest prefix), then a bearer token's issuer (an API path every tenant shares:
the token's ``iss``, read unchecked, picks whose keys and rules check it; an issuer two tenants
share picks none). A tenant found by its prefix is served as if the app were mounted there: the
prefix joins the root path, so its routes, cookies and redirect URI follow the rules of an app
behind a proxy's prefix.

A request no tenant claims fails closed: the app answers it only on the shared public paths
(a landing page, a tenant picker), without an identity; the adapter's routes and every other
path answer 404 (there is no tenant to sign in to), a bearer token 401 with no call to anyone
(no JWKS is fetched for an issuer a client chose), and a path with ``.`` or ``..`` segments
400 (``/acme/../globex/x`` must not reach globex's page as an acme request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from adapter.config import WebConfig
from adapter.protocol.tokens import unverified_issuer
from adapter.web._access import PublicPaths
from adapter.web._bearer import challenge
from adapter.web._http import text
from adapter.web._steps import Outcome, Respond
from adapter.web.entry import ANONYMOUS, UNREAD, Credentials, Unread, Wire

log = logging.getLogger(__name__)
R = TypeVar("R")  # the server's request: an ASGI scope or a WSGI environ

MAX_REMEMBERED_TOKENS = 4096  # bearer headers whose tenant is remembered: at most
MAX_REMEMBERED_LENGTH = 4096  # 16 MB of them, a few MB for tokens of usual size
NOT_A_TENANT = Respond(404, (("Content-Type", "text/plain; charset=utf-8"),), b"Not Found\n")
DOT_SEGMENTS = text(400, "a path with . or .. segments names no page here", [])


class Claims(Protocol):
    """What the choice needs of a tenant's site (the shells' :class:`~adapter._tenancy.Site`)."""

    @property
    def name(self) -> str | None: ...
    @property
    def path_prefix(self) -> str: ...
    @property
    def host(self) -> str | None: ...


S = TypeVar("S", bound=Claims)


class TenantChoice(Generic[S, R]):
    """The tenants' claims, in dictionaries, and the answer for a request none claims."""

    def __init__(
        self,
        sites: Sequence[S],
        issuers: Mapping[S, str],
        routes: frozenset[str],
        shared: WebConfig,
        resolver: Callable[[R], str | None] | None = None,
    ) -> None:
        self._resolver = resolver
        self._named = {site.name: site for site in sites if site.name is not None}
        self._by_host = {site.host: site for site in sites if site.host is not None}
        self._by_prefix = {site.path_prefix: site for site in sites if site.path_prefix}
        self._depth = max((p.count("/") for p in self._by_prefix), default=0)
        counted: dict[str, list[S]] = {}
        for site, issuer in issuers.items():
            counted.setdefault(issuer, []).append(site)
        self._by_issuer = {issuer: found[0] for issuer, found in counted.items() if len(found) == 1}
        self._tokens: dict[str, S | None] = {}  # Authorization value -> its issuer's tenant
        self._routes = routes  # the adapter's own paths, as a tenant sees them
        self._public = PublicPaths(shared.public_paths, shared.access_rules)  # outside them all

    def choose(
        self, wire: Wire[R], request: R, path: str, root_path: str
    ) -> tuple[S | None, str, str, Credentials | Unread]:
        """The request's site, and its path and root path as that site sees them (``None``
        when no tenant claims it: then :meth:`unclaimed` answers), and its credentials when
        they were read to choose (``UNREAD`` otherwise: the shortcut reads them)."""
        if self._resolver is not None:
            named = self._resolve(request)
            if named is not None:
                return (*self._resolved(named, path, root_path), UNREAD)
        if self._by_host:
            site = self._by_host.get(_hostname(wire.header(request, "host")))
            if site is not None:  # never on a path another tenant's prefix claims
                return self._only_its_own(site, path), path, root_path, UNREAD
        if self._by_prefix:
            site = self._claimant(path)
            if site is not None and not _dot_segments(path):
                return (site, *mounted(path, root_path, site.path_prefix), UNREAD)
        credentials = wire.credentials(request)
        authorization = credentials[1] if credentials is not None else None
        return self._by_bearer(authorization), path, root_path, credentials

    def _claimant(self, path: str) -> S | None:
        """The tenant whose path prefix the path lies under (one look-up per segment)."""
        end = path.find("/", 1)
        site = self._by_prefix.get(path if end < 0 else path[:end])
        if site is not None or self._depth == 1 or end < 0:
            return site  # every prefix one segment (/acme): one look-up
        for _ in range(self._depth - 1):
            end = path.find("/", end + 1)
            site = self._by_prefix.get(path if end < 0 else path[:end])
            if site is not None or end < 0:
                return site
        return None

    def _only_its_own(self, site: S, path: str) -> S | None:
        """``site``, chosen by host or by the app's resolver, unless the path lies under
        another tenant's prefix: the app routes by path, and would serve that tenant's page
        with this tenant's identity."""
        if self._by_prefix:
            claimant = self._claimant(path)
            if claimant is not None and claimant is not site:
                log.info("tenant %s chosen, but the path is under another's prefix", site.name)
                return None
        return site

    def _by_bearer(self, authorization: str | None) -> S | None:
        """The tenant a bearer token's issuer names: remembered by the header's value (a
        token is sent again and again, and decoding it cost as much as the rest of a
        remembered request); the memory is bounded, and cleared when full."""
        if authorization is None:
            return None
        try:
            return self._tokens[authorization]  # one look-up: a clear() may run meanwhile
        except KeyError:
            pass
        scheme = _scheme(authorization)
        if scheme != "bearer" and scheme != "dpop":
            return None  # never remembered: Basic credentials stay out of this memory
        issuer = _bearer_issuer(authorization)
        site = self._by_issuer.get(issuer) if issuer else None
        if len(authorization) <= MAX_REMEMBERED_LENGTH:  # a huge header is decoded each time
            if len(self._tokens) >= MAX_REMEMBERED_TOKENS:
                self._tokens.clear()
            self._tokens[authorization] = site
        return site

    def unclaimed(self, wire: Wire[R], request: R, path: str, method: str) -> Outcome:
        """The answer for a request no tenant claims (see the module's docstring)."""
        if _dot_segments(path):
            return DOT_SEGMENTS
        if path in self._routes:
            return NOT_A_TENANT
        if self._public.covers(path, method):
            return ANONYMOUS
        if _scheme(_authorization(wire, request)) in ("bearer", "dpop"):
            return challenge("", "invalid_token")  # its issuer is no tenant's (or two tenants')
        return NOT_A_TENANT

    def _resolve(self, request: R) -> str | None:
        assert self._resolver is not None
        try:
            return self._resolver(request)
        except Exception as error:  # the app's code: its failure is no tenant, never a 500
            log.warning(
                "tenant_resolver raised %s: the request is no tenant's", type(error).__name__
            )
            return None

    def _resolved(self, name: str, path: str, root_path: str) -> tuple[S | None, str, str]:
        site = self._named.get(name)
        if site is None:
            log.info("tenant_resolver named %r, not a tenant of this app", name[:64])
            return None, path, root_path
        if site.path_prefix and under_prefix(path, site.path_prefix) and not _dot_segments(path):
            return (site, *mounted(path, root_path, site.path_prefix))
        return self._only_its_own(site, path), path, root_path


def _authorization(wire: Wire[R], request: R) -> str | None:
    credentials = wire.credentials(request)
    return credentials[1] if credentials is not None else None


def _bearer_issuer(authorization: str) -> str | None:
    """The issuer the token of a ``Bearer`` or ``DPoP`` header says (unchecked)."""
    return unverified_issuer(authorization.partition(" ")[2].strip())


def mounted(path: str, root_path: str, prefix: str) -> tuple[str, str]:
    """A path under a tenant's ``prefix`` as that tenant sees it: the prefix joins the root
    (as an app mounted there: its routes, cookies and redirect URI follow)."""
    return path[len(prefix) :] or "/", root_path + prefix


def _scheme(authorization: str | None) -> str | None:
    """``bearer`` for ``Authorization: Bearer …``, ``dpop`` for ``DPoP …`` (any case)."""
    if not authorization:
        return None
    return authorization.partition(" ")[0].lower()


def _hostname(host: str | bytes | None) -> str:
    """The Host header's name, lower case, without its port or a final dot."""
    if host is None:
        return ""
    text_host = host.decode("latin-1") if isinstance(host, bytes) else host
    if text_host.startswith("["):  # [::1]:8000
        return text_host[: text_host.find("]") + 1].lower()
    name = text_host.rsplit(":", 1)[0] if ":" in text_host else text_host
    return name.rstrip(".").lower()


def _dot_segments(path: str) -> bool:
    return "/." in path and any(part in (".", "..") for part in path.split("/"))


def under_prefix(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
