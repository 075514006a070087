"""Which resource at the identity server a request path is: the policy enforcer's look-ups.

Keycloak's enforcer needs the *server's* id of a path's resource: granted permissions (an RPT's,
the UMA grant's) name resources by id, and the UMA grant asks by id. A configured path gets its
id from the file (``id``) or from the Protection API (by ``name``, else by its URI), once per
configuration; with ``lazy-load-paths`` (or a ``path-cache``) a path no configured path covers,
or only a wildcard covers, is looked up at the server by its URI (``matchingUri``); and a
``{name}`` pattern's *resource instance* (``/accounts/42`` of ``/accounts/{id}``) is looked up
as Keycloak does, so that a permission on the instance counts. Every answer, no resource too,
is kept in the path cache (``path-cache``: entries and lifespan), so the server hears of a path
once per lifespan.

The Protection API is called with a PAT: the client's own ``client_credentials`` token, kept
until shortly before it expires; concurrent requests share one call for a PAT and one for each
path (the shells' single flight). The server's failures propagate (the enforcer's 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from adapter.config.policy_enforcer import PathConfig, PolicyEnforcerConfig
from adapter.errors import AdapterError
from adapter.protocol import flows, uma
from adapter.protocol.provider import ProviderMetadata
from adapter.web._enforcer_paths import (
    PathCache,
    PathMatch,
    Pattern,
    instance_path,
    instance_uris,
    normalize,
    path_matcher,
    paths_from_resource,
    should_ask_server,
)
from adapter.web._steps import NeedFlow, NeedIntrospection, NeedMetadata, Step

log = logging.getLogger(__name__)
PAT_MARGIN = 10.0  # seconds before its expiry a PAT is replaced
MISSING_RETRY = 60.0  # seconds before a configured path's resource, not found, is asked again

Lookup = Generator[Step, Any, Any]


@dataclass(frozen=True)
class Target:
    """The resource a request path stands for: its configured (or server-made) path, with the
    server's resource id when known; ``parent_id`` for a resource instance of a ``{name}``
    pattern (a permission on the pattern's resource counts for it too)."""

    path: PathConfig
    parent_id: str | None = None

    @property
    def resource(self) -> str | None:
        """The resource id the UMA grant and a ticket name."""
        return self.path.id

    @property
    def label(self) -> str:
        """How logs and 403 answers name it: the resource's name, else its path pattern."""
        return self.path.name or self.path.path


class Unknown:
    """A path whose resource needs a look-up at the server (the shortcut cannot decide)."""


UNKNOWN = Unknown()


class Resources:
    """One configuration's path → resource answers (built with the web core, per state)."""

    def __init__(self, block: PolicyEnforcerConfig, issuer: str, client_id: str) -> None:
        self._block = block
        self._matcher = path_matcher(block)
        self._cache: PathCache[Target] = PathCache(block.cache)
        self._ids: dict[str, tuple[str | None, float]] = {}  # pattern -> (id, retry after)
        self._issuer = issuer
        self._scope = f"{issuer}\0{client_id}"  # flight keys: never shared between apps
        self._uma: uma.UmaConfiguration | None = None
        self._pat: tuple[str, float] | None = None

    # -- without I/O (the shortcut) ---------------------------------------------------------

    def configured(self, path: str) -> PathConfig | None:
        """The configured path that covers ``path`` (no look-up at the server)."""
        match = self._matcher.match(path)
        return match.entry if match is not None else None

    def known(self, path: str) -> tuple[Target | Unknown | None, bool]:
        """The target when no look-up is needed (``None``: no resource), else ``UNKNOWN``;
        and whether that answer holds for the configuration's life (a configured path with
        its id known, or no path at all without lazy loading), rather than for the path
        cache's lifespan."""
        target = normalize(path)
        if target is None:
            return UNKNOWN, False  # the full path answers 400
        match = self._matcher.match_normalized(target)
        lazy = should_ask_server(self._block, match)
        if match is None and not lazy:
            return None, True
        if match is not None and not match.params and not lazy:
            known = self._known_target(match.entry)
            # Not asked yet, or its miss is asked again after a while: the full path.
            return (known, True) if known is not None else (UNKNOWN, False)
        found, value = self._cache.get(target)
        return (value, False) if found else (UNKNOWN, False)

    # -- with the server --------------------------------------------------------------------

    def target(self, path: str) -> Lookup:
        """The :class:`Target` for ``path`` (``None``: no resource covers it)."""
        normalized = normalize(path)
        if normalized is None:
            return None
        found, value = self._cache.get(normalized)
        if found:
            return value
        match = self._matcher.match_normalized(normalized)
        target: Target | None = None
        if should_ask_server(self._block, match):
            target = yield from self._lazy(normalized, match)
        if target is None and match is not None:
            target = yield from self._configured(match.entry)
            if match.params and target.path.enforcement_mode != "DISABLED":
                target = yield from self._instance(target, match, normalized)
        self._cache.put(normalized, target)
        return target

    def _known_target(self, entry: PathConfig) -> Target | None:
        """A configured path's target without a look-up: the file says all it takes (its id,
        or a mode that asks for none), or the server's id is known; else ``None``."""
        if entry.id is not None or entry.enforcement_mode in ("DISABLED", "PERMISSIVE"):
            return Target(entry)
        known = self._ids.get(entry.path)
        if known is not None and known[0] is not None:
            return Target(replace(entry, id=known[0]))
        return None

    def _configured(self, entry: PathConfig) -> Lookup:
        """A configured path with its resource id: the file's, else the server's (by name,
        else by the path as URI), asked once per configuration (a miss again after a minute)."""
        known = self._known_target(entry)
        if known is not None:
            return known
        missed = self._ids.get(entry.path)
        if missed is not None and time.monotonic() < missed[1]:
            return Target(entry)  # not at the server a moment ago: not asked again yet
        if entry.name is not None:
            found = yield from self._find(f"name:{entry.name}", name=entry.name, exact_name=True)
        else:
            found = yield from self._find(f"uri:{entry.path}", uri=entry.path)
            if not found:
                found = yield from self._find(
                    f"match:{entry.path}", uri=entry.path, matching_uri=True
                )
        resource = _id(found[0]) if found else None
        if resource is None:
            log.warning(
                "policy-enforcer: no resource %s at the server for path %s; requests there are "
                "denied until it exists (create it in the client's Authorization tab, or fix "
                "the path's name)",
                repr(entry.name) if entry.name else "with that URI",
                entry.path,
            )
        self._ids[entry.path] = (resource, time.monotonic() + MISSING_RETRY)
        return Target(replace(entry, id=resource))

    def _lazy(self, normalized: str, match: PathMatch[PathConfig] | None) -> Lookup:
        """The server's resource whose URI matches best (Keycloak's lazy loading), with the
        wildcard's methods, mode and claims when one matched; ``None`` when it has none."""
        found = yield from self._find(f"match:{normalized}", uri=normalized, matching_uri=True)
        paths = paths_from_resource(found[0]) if found and isinstance(found[0], Mapping) else ()
        if not paths:
            return None
        path = paths[0]
        if match is not None:
            entry = match.entry
            path = replace(
                path,
                methods=entry.methods,
                enforcement_mode=entry.enforcement_mode,
                claim_information_point=entry.claim_information_point,
            )
        target = Target(path)
        pattern = Pattern.parse(path.path)
        matched = pattern.match(normalized)
        if matched is not None and matched[1]:  # the server's resource is a {name} pattern
            own = PathMatch(path, path.path, matched[0], matched[1])
            target = yield from self._instance(target, own, normalized)
        return target

    def _instance(self, target: Target, match: PathMatch[Any], normalized: str) -> Lookup:
        """The resource instance of a ``{name}`` pattern at this path, if the server has one
        (the path itself, then the path up to the last parameter), else the pattern's own."""
        for uri in instance_uris(match, normalized):
            found = yield from self._find(f"uri:{uri}", uri=uri)
            if found and isinstance(found[0], Mapping):
                path = instance_path(target.path, found[0])
                if path is not None:
                    return Target(path, parent_id=target.path.id)
        return target

    def _find(self, key: str, **query: Any) -> Lookup:
        """``resource_set`` representations (``deep``) for ``query``; one call per ``key``
        in flight."""
        pat = yield from self.pat()
        endpoint = (yield from self.configuration()).resource_registration_endpoint
        try:
            answer = yield NeedIntrospection(
                f"uma-resources\0{self._scope}\0{key}", _listed(endpoint, pat, query)
            )
        except AdapterError:
            self._pat = None  # revoked or forgotten by the server: the next call gets a new one
            raise
        return tuple(answer["resources"])

    def ticket(
        self, resource: str, scopes: tuple[str, ...], claims: Mapping[str, list[str]]
    ) -> Generator[Step, Any, str]:
        """A permission ticket for ``resource`` and ``scopes`` (Keycloak's
        ``getPermissionTicket``), with the pushed claims: the UMA challenge's."""
        pat = yield from self.pat()
        endpoint = (yield from self.configuration()).permission_endpoint
        flow = uma.permission_ticket(endpoint, pat, [(resource, scopes)], claims or None)
        try:
            ticket: str = yield NeedFlow(flow)
        except AdapterError:
            self._pat = None  # as in _find
            raise
        return ticket

    def configuration(self) -> Generator[Step, Any, uma.UmaConfiguration]:
        """The server's UMA configuration, fetched once per configuration."""
        if self._uma is None:
            self._uma = yield NeedFlow(uma.uma_configuration(self._issuer))
        return self._uma

    def pat(self) -> Generator[Step, Any, str]:
        """The Protection API token: the client's own, until shortly before it expires."""
        now = time.time()
        if self._pat is not None and now < self._pat[1]:
            return self._pat[0]
        metadata: ProviderMetadata = yield NeedMetadata()
        answer = yield NeedIntrospection(
            f"uma-pat\0{self._scope}", _pat_flow(metadata.endpoint("token_endpoint"))
        )
        token, expires_in = answer["access_token"], answer["expires_in"]
        self._pat = (token, now + max(0.0, expires_in - PAT_MARGIN))
        return str(token)


def _id(representation: Any) -> str | None:
    if isinstance(representation, Mapping):
        value = representation.get("_id") or representation.get("id")
        return value if isinstance(value, str) and value else None
    return representation if isinstance(representation, str) and representation else None


def _listed(endpoint: str, pat: str, query: dict[str, Any]) -> flows.Flow[dict[str, Any]]:
    found = yield from uma.find_resources(endpoint, pat, deep=True, **query)
    return {"resources": list(found)}


def _pat_flow(token_endpoint: str) -> flows.Flow[dict[str, Any]]:
    tokens = yield from flows.client_credentials(token_endpoint)
    expires_at = tokens.expires_at if tokens.expires_at is not None else time.time() + 60
    return {"access_token": tokens.access_token, "expires_in": expires_at - time.time()}
