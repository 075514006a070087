"""Which configured path of a ``policy-enforcer`` block a request path is, as Keycloak says.

Keycloak's enforcer (``PathMatcher`` / ``PathConfigMatcher``) decides by precedence, not by
order alone; an app moving from the Java adapter keeps its paths only if the same one wins
here. The rules, from Keycloak's ``PathMatcher.matches``:

1. **exact**: the pattern is the path (``/a``), or a ``/a/*`` at ``/a`` itself; the first in
   the file wins;
2. **template**: ``{name}`` segments (``/r/{id}``, ``/r/{id}/sub``) that match the whole path;
   the one with more literal segments wins, then the first;
3. **suffix**: ``/*.html``; the *last* in the file wins (Keycloak keeps overwriting it);
4. **wildcard**: a trailing ``/*`` (``/*``, ``/api/*``, ``/r/{id}/*``); the pattern with the
   most segments wins, then the first.

The request path is the one the app routes: ``WebRequest.path``, decoded once by the server and
never again here. Keycloak's servlet containers normalised the path before the app saw it, so
Keycloak could normalise it too (decode, drop ``;`` parameters, resolve ``..``); here the app
sees the path as sent, and a path the enforcer read differently from the app could move a
request into a weaker entry (``/users/../public/x`` decided as ``/public/*``, routed by a
``/users/{rest:path}`` handler). So nothing is rewritten but a trailing ``/``, and a path with
``.``, ``..`` or empty segments (``//``) normalises to ``None``: the enforcer answers 400.

One deliberate difference: Keycloak matches a suffix pattern by its extension alone
(``/static/*.html`` also covers ``/other/x.html``); here its directory must match too. ``/*.html``
(the common form) behaves the same in both.

Also here: the paths a server resource stands for (lazy loading), the URIs under which a
``{name}`` pattern's resource instance is looked up (Keycloak does so for every template match,
lazy or not), and :class:`PathCache`, the bounded, expiring memory of the paths found at the
server. What a method needs and whether permissions cover it:
:mod:`adapter.web._enforcer_permissions`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from adapter.config.policy_enforcer import PathCacheConfig, PathConfig, PolicyEnforcerConfig

Kind = Literal["exact", "template", "suffix", "wildcard"]
_RANK: dict[Kind, int] = {"exact": 0, "template": 1, "suffix": 2, "wildcard": 3}
T = TypeVar("T")


def normalize(path: str) -> str | None:
    """The request path as the enforcer compares it (a trailing ``/`` dropped), or ``None``
    when it is not absolute or has ``.``, ``..`` or empty segments: paths the enforcer will
    not decide, because the app may read them otherwise (the module docstring)."""
    if not path.startswith("/"):
        return None
    segments = path[1:].split("/")
    if segments[-1] == "":
        segments.pop()  # one trailing "/"
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return "/" + "/".join(segments)


@dataclass(frozen=True)
class Pattern:
    """A path pattern, taken apart once."""

    text: str
    segments: tuple[str | None, ...]  # literal segments; None for a {name}
    names: tuple[str | None, ...]  # the {name} of each segment (None: a literal one)
    wildcard: bool  # ends in /*
    suffix: str | None  # ".html" of /dir/*.html
    length: int  # Keycloak's segment count of the pattern (for the wildcard precedence)

    @classmethod
    def parse(cls, text: str) -> Pattern:
        length = len([part for part in text.split("/") if part]) + 1
        wildcard = text.endswith("/*") or text == "*"
        suffix = None
        body = text
        if wildcard:
            body = text[:-2] if text.endswith("/*") else ""
        elif "/*." in text:
            body, suffix = text.rsplit("/*", 1)
        names = tuple(
            part[1:-1] if part.startswith("{") and part.endswith("}") else None
            for part in body.split("/")
            if part
        )
        parts = tuple(
            None if name is not None else part
            for name, part in zip(names, (p for p in body.split("/") if p), strict=True)
        )
        return cls(text, parts, names, wildcard, suffix, length)

    def match(self, path: str) -> tuple[Kind, dict[str, str]] | None:
        """How this pattern matches the normalised ``path`` (and the values of its {names}),
        or ``None``."""
        segments = [part for part in path.split("/") if part]
        if self.suffix is not None:
            inside = segments[: len(self.segments)] == list(self.segments)
            deeper = len(segments) > len(self.segments)
            if inside and deeper and path.endswith(self.suffix):
                return "suffix", {}
            return None
        own = len(self.segments)
        if len(segments) < own or (not self.wildcard and len(segments) != own):
            return None
        params: dict[str, str] = {}
        for want, name, got in zip(self.segments, self.names, segments, strict=False):
            if name is not None:
                params[name] = got
            elif want != got:
                return None
        if self.wildcard:
            return ("exact" if len(segments) == own and not params else "wildcard"), params
        return ("template" if params else "exact"), params


@dataclass(frozen=True)
class PathMatch(Generic[T]):
    """The configured path that won, how it matched, and its {names}' values."""

    entry: T
    pattern: str
    kind: Kind
    params: Mapping[str, str]


class PathMatcher(Generic[T]):
    """Configured entries (a :class:`PathConfig`, or anything with a pattern) matched with
    Keycloak's precedence; built once per configuration."""

    def __init__(self, entries: Iterable[T], pattern_of: Callable[[T], str]) -> None:
        self._entries = tuple((entry, Pattern.parse(pattern_of(entry))) for entry in entries)

    def match(self, path: str) -> PathMatch[T] | None:
        """The entry for the request path ``path`` (not yet normalised), or ``None``."""
        target = normalize(path)
        return None if target is None else self.match_normalized(target)

    def match_normalized(self, target: str) -> PathMatch[T] | None:
        """:meth:`match` for a path :func:`normalize` gave."""
        best: tuple[tuple[int, ...], PathMatch[T]] | None = None
        for order, (entry, pattern) in enumerate(self._entries):
            found = pattern.match(target)
            if found is None:
                continue
            kind, params = found
            key = (_RANK[kind], *_tiebreak(kind, pattern, order))
            if best is None or key < best[0]:
                best = (key, PathMatch(entry, pattern.text, kind, params))
        return None if best is None else best[1]


def _tiebreak(kind: Kind, pattern: Pattern, order: int) -> tuple[int, ...]:
    if kind == "template":
        return (pattern.segments.count(None), order)
    if kind == "suffix":
        return (-order,)
    if kind == "wildcard":
        return (-pattern.length, order)
    return (order,)


def path_matcher(config: PolicyEnforcerConfig) -> PathMatcher[PathConfig]:
    """The matcher of a block's configured paths."""
    return PathMatcher(config.paths, lambda path: path.path)


def paths_from_resource(resource: Mapping[str, Any]) -> tuple[PathConfig, ...]:
    """The paths a Protection API resource representation stands for, one per URI (Keycloak's
    ``PathConfig.createPathConfigs``): its id, name, type and scope names."""
    scopes = resource.get("resource_scopes") or resource.get("scopes") or []
    names = tuple(
        str(scope.get("name")) if isinstance(scope, Mapping) else str(scope)
        for scope in scopes
        if scope
    )
    return tuple(
        PathConfig(
            path=uri,
            name=resource.get("name"),
            type=resource.get("type"),
            id=resource.get("_id") or resource.get("id"),
            scopes=names,
        )
        for uri in resource.get("uris") or []
        if isinstance(uri, str) and uri.strip()
    )


def should_ask_server(config: PolicyEnforcerConfig, match: PathMatch[Any] | None) -> bool:
    """Keycloak's ``PathConfigMatcher``: with lazy loading (or a path cache configured), the
    server is asked for the resource of a path that no configured path covers, or that only a
    wildcard covers (a more specific resource may exist on the server)."""
    if not (config.lazy_load_paths or config.path_cache is not None):
        return False
    return match is None or "*" in match.pattern


def instance_uris(match: PathMatch[Any], path: str) -> tuple[str, ...]:
    """The URIs under which a *resource instance* of a ``{name}`` pattern is looked up
    (Keycloak's ``resolvePathConfig``, whatever ``lazy-load-paths`` says): the request path
    itself, then the path up to the pattern's last parameter (``/r/{id}/*`` at ``/r/1/x``:
    ``/r/1``), so that a permission on the instance covers what lies below it."""
    target = normalize(path)
    if target is None or not match.params:
        return ()
    pattern = Pattern.parse(match.pattern)
    last = max(index for index, name in enumerate(pattern.names) if name is not None)
    segments = [part for part in target.split("/") if part][: last + 1]
    parent = "/" + "/".join(segments)
    return tuple(dict.fromkeys((target, parent)))


def instance_path(original: PathConfig, resource: Mapping[str, Any]) -> PathConfig | None:
    """The path of a resource instance found at the server: its id, name and type, with the
    configured pattern's methods, scopes, mode and claims (as Keycloak builds it)."""
    found = paths_from_resource(resource)
    if not found:
        return None
    return replace(
        found[0],
        scopes=original.scopes,
        methods=original.methods,
        enforcement_mode=original.enforcement_mode,
        claim_information_point=original.claim_information_point,
    )


class PathCache(Generic[T]):
    """Request paths and what the server said they are (``None`` too: no resource), at most
    ``max-entries`` of them (the least recently used leave first), each for ``lifespan``
    milliseconds. Shared by threads (WSGI): one lock around each short operation."""

    def __init__(self, config: PathCacheConfig, clock: Callable[[], float] = time.monotonic):
        self._max = config.max_entries
        self._lifespan = config.lifespan / 1000
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, T | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> tuple[bool, T | None]:
        """``(True, value)`` for a path remembered and not expired, else ``(False, None)``."""
        now = self._clock()
        with self._lock:
            found = self._entries.get(path)
            if found is None:
                return False, None
            expires, value = found
            if now >= expires:
                del self._entries[path]
                return False, None
            self._entries.move_to_end(path)
            return True, value

    def put(self, path: str, value: T | None) -> None:
        """Remember ``value`` for ``path`` (``None``: the server has no resource for it)."""
        if self._lifespan <= 0:
            return
        expires = self._clock() + self._lifespan
        with self._lock:
            self._entries[path] = (expires, value)
            self._entries.move_to_end(path)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
