"""Keycloak's ``policy-enforcer`` block (Authorization Services), read into frozen values.

A keycloak.json from a Java application often carries this block: per path, method and scope,
Keycloak decides whether a user may pass. Reading it "with no effect" would silently drop every
check it describes, so the whole block is read here, field by field as Keycloak's
``PolicyEnforcerConfig`` spells it (same names and defaults), and the native TOML has it as
``[policy-enforcer]`` with the same keys. Whatever Keycloak accepts and this adapter cannot
honour (another claim provider than ``claims``, the standalone enforcer's own ``realm`` or
``credentials``, Keycloak's internal path flags) and every unknown field is refused at load
with one line naming the field's JSON path and the fix: a block that loads is a block that the
middleware enforces as written.

What the values mean at request time lives elsewhere (the enforcer: :mod:`adapter.web.
_enforcer`; path matching: :mod:`adapter.web._enforcer_paths`); this module only reads and
checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from adapter.config._fields import Fields, did_you_mean
from adapter.errors import ConfigError

EnforcementMode = Literal["ENFORCING", "PERMISSIVE", "DISABLED"]
ScopesEnforcementMode = Literal["ALL", "ANY", "DISABLED"]
ENFORCEMENT_MODES: tuple[EnforcementMode, ...] = get_args(EnforcementMode)
SCOPES_ENFORCEMENT_MODES: tuple[ScopesEnforcementMode, ...] = get_args(ScopesEnforcementMode)
# Keycloak's PathCacheConfig defaults: 1000 entries, 30000 ms.
PATH_CACHE_MAX_ENTRIES = 1000
PATH_CACHE_LIFESPAN_MS = 30000

# Placeholders of Keycloak's "claims" claim information point: those that take an argument
# (['name'] or ['/json/pointer']) and those that stand alone.
WITH_ARGUMENT = (
    "request.parameter",
    "request.header",
    "request.cookie",
    "request.body",
    "keycloak.access_token",
)
STANDALONE = (
    "request.remoteAddr",
    "request.method",
    "request.uri",
    "request.relativePath",
    "request.secure",
    "request.body",
    "keycloak.access_token",
)
_POINTER_SOURCES = ("request.body", "keycloak.access_token")  # their argument is a JSON pointer
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_WITH_ARGUMENT = re.compile(r"([A-Za-z_.]+)\['([^']*)'\]")
_TEMPLATE_SEGMENT = re.compile(r"\{[^{}/]+\}")
_SUFFIX = re.compile(r"\.[^*/]+")  # what follows the * of /*.ext
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")

# Fields Keycloak's PolicyEnforcerConfig has that this adapter refuses, with the fix.
_REFUSED_TOP = {
    "realm": "remove it: the enforcer uses this file's own realm / issuer",
    "auth-server-url": "remove it: the enforcer uses this file's own auth-server-url / issuer",
    "resource": "remove it: the enforcer's resource server is this file's client (resource)",
    "credentials": "remove it: the enforcer authenticates with this file's credentials",
}
_REFUSED_PATH = {
    "invalidated": "remove it: Keycloak's enforcer sets it internally, a file never does",
    "static": "remove it: Keycloak's enforcer sets it internally, a file never does",
}
_TOP_FIELDS = (
    "enforcement-mode", "paths", "path-cache", "lazy-load-paths", "on-deny-redirect-to",
    "user-managed-access", "claim-information-point", "http-method-as-scope",
)  # fmt: skip
_PATH_FIELDS = (
    "name", "path", "type", "id", "scopes", "methods", "enforcement-mode",
    "claim-information-point",
)  # fmt: skip
_METHOD_FIELDS = ("method", "scopes", "scopes-enforcement-mode")
_CACHE_FIELDS = ("max-entries", "lifespan")


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}`` of a claim value: where the value comes from at request time.

    ``source`` is e.g. ``request.parameter``; ``argument`` the name in ``['...']`` (a JSON
    pointer such as ``/a/b`` for ``request.body`` and ``keycloak.access_token``) or ``None``.
    """

    source: str
    argument: str | None = None


@dataclass(frozen=True)
class ClaimValue:
    """One value of a pushed claim as written: literal text and placeholders, in order."""

    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(part for part in self.parts if isinstance(part, Placeholder))


@dataclass(frozen=True)
class Claim:
    """A claim the enforcer pushes to the server (``claim_token``): its values, and whether
    the file wrote them as a list (kept, so that a conversion writes them back the same way).
    """

    name: str
    values: tuple[ClaimValue, ...]
    listed: bool = False


@dataclass(frozen=True)
class ClaimInformationPoint:
    """``claim-information-point`` with its one supported provider, ``claims``."""

    claims: tuple[Claim, ...]

    @property
    def needs_body(self) -> bool:
        """Whether a claim reads the request's JSON body (the enforcer must buffer it)."""
        return any(
            placeholder.source == "request.body"
            for claim in self.claims
            for value in claim.values
            for placeholder in value.placeholders
        )


@dataclass(frozen=True)
class MethodConfig:
    """``paths[].methods[]``: the scopes one HTTP method needs on the path's resource."""

    method: str  # upper case, as requests name it
    scopes: tuple[str, ...] = ()
    scopes_enforcement_mode: ScopesEnforcementMode = "ALL"


@dataclass(frozen=True)
class PathConfig:
    """``paths[]``: a path pattern (``/a``, ``/a/*``, ``/*.html``, ``/r/{id}``) and the
    resource it stands for (``name``, else the server's resource whose URI matches)."""

    path: str
    name: str | None = None
    type: str | None = None
    id: str | None = None
    scopes: tuple[str, ...] = ()
    methods: tuple[MethodConfig, ...] = ()
    enforcement_mode: EnforcementMode = "ENFORCING"
    claim_information_point: ClaimInformationPoint | None = None


@dataclass(frozen=True)
class PathCacheConfig:
    """``path-cache``: how many request paths keep their resource, and for how long (ms)."""

    max_entries: int = PATH_CACHE_MAX_ENTRIES
    lifespan: int = PATH_CACHE_LIFESPAN_MS


@dataclass(frozen=True)
class PolicyEnforcerConfig:
    """The whole ``policy-enforcer`` block, with Keycloak's defaults.

    ``path_cache`` is ``None`` when the file does not give one (Keycloak then caches with the
    defaults of :class:`PathCacheConfig`, see :attr:`cache`); ``user_managed_access`` is true
    when the file has the (empty) ``user-managed-access`` object.
    """

    enforcement_mode: EnforcementMode = "ENFORCING"
    paths: tuple[PathConfig, ...] = ()
    path_cache: PathCacheConfig | None = None
    lazy_load_paths: bool = False
    on_deny_redirect_to: str | None = None
    user_managed_access: bool = False
    claim_information_point: ClaimInformationPoint | None = None
    http_method_as_scope: bool = False

    @property
    def cache(self) -> PathCacheConfig:
        """The path cache in effect: the configured one or Keycloak's defaults."""
        return self.path_cache or PathCacheConfig()

    @property
    def enforced(self) -> bool:
        """Whether the middleware enforces the block (``DISABLED``: read, checked, not used)."""
        return self.enforcement_mode != "DISABLED"

    def as_document(self) -> dict[str, Any]:
        """The block as keycloak.json (and the native TOML) writes it: what differs from
        Keycloak's defaults, and the mode. Reading it back gives this configuration."""
        document: dict[str, Any] = {"enforcement-mode": self.enforcement_mode}
        if self.paths:
            document["paths"] = [_path_document(path) for path in self.paths]
        if self.path_cache is not None:
            cache = self.path_cache
            document["path-cache"] = {"max-entries": cache.max_entries, "lifespan": cache.lifespan}
        flags = {"lazy-load-paths": self.lazy_load_paths}
        flags["http-method-as-scope"] = self.http_method_as_scope
        document |= {name: True for name, on in flags.items() if on}
        if self.on_deny_redirect_to is not None:
            document["on-deny-redirect-to"] = self.on_deny_redirect_to
        if self.user_managed_access:
            document["user-managed-access"] = {}
        if self.claim_information_point is not None:
            document["claim-information-point"] = _cip_document(self.claim_information_point)
        return document

    def summary(self) -> str:
        """One line for ``config check``."""
        parts = [self.enforcement_mode, f"{len(self.paths)} path(s)"]
        disabled = sum(path.enforcement_mode == "DISABLED" for path in self.paths)
        if disabled:
            parts.append(f"{disabled} DISABLED")
        if not self.paths or self.lazy_load_paths:
            parts.append("resources from the server (Protection API)")
        if self.lazy_load_paths:
            cache = self.cache
            parts.append(f"lazy, path cache {cache.max_entries} for {cache.lifespan} ms")
        if self.http_method_as_scope:
            parts.append("HTTP method as scope")
        if self.on_deny_redirect_to:
            parts.append(f"denied -> {self.on_deny_redirect_to}")
        if self.user_managed_access:
            parts.append("user-managed access (UMA tickets)")
        if self.claim_information_point or any(p.claim_information_point for p in self.paths):
            parts.append("pushes claims")
        return ", ".join(parts)


def _path_document(path: PathConfig) -> dict[str, Any]:
    document: dict[str, Any] = {"path": path.path}
    optional = {"name": path.name, "type": path.type, "id": path.id}
    document |= {key: value for key, value in optional.items() if value is not None}
    if path.scopes:
        document["scopes"] = list(path.scopes)
    if path.methods:
        document["methods"] = [_method_document(method) for method in path.methods]
    if path.enforcement_mode != "ENFORCING":
        document["enforcement-mode"] = path.enforcement_mode
    if path.claim_information_point is not None:
        document["claim-information-point"] = _cip_document(path.claim_information_point)
    return document


def _method_document(method: MethodConfig) -> dict[str, Any]:
    document: dict[str, Any] = {"method": method.method, "scopes": list(method.scopes)}
    if method.scopes_enforcement_mode != "ALL":
        document["scopes-enforcement-mode"] = method.scopes_enforcement_mode
    return document


def _cip_document(point: ClaimInformationPoint) -> dict[str, Any]:
    claims = {
        claim.name: [value.text for value in claim.values] if claim.listed else claim.values[0].text
        for claim in point.claims
    }
    return {"claims": claims}


# --- reading -----------------------------------------------------------------------------------


def read_policy_enforcer(fields: Fields, key: str) -> PolicyEnforcerConfig | None:
    """The ``key`` table of ``fields`` (``policy-enforcer``), or ``None`` when absent."""
    raw = fields.raw(key)
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{fields.name(key)}: must be an object (keycloak.json) or a [{key}] table (TOML)"
        )
    table = Fields(raw, fields.name(key), fields.base_dir, fields.files)
    _refuse(table, _REFUSED_TOP)
    config = PolicyEnforcerConfig(
        enforcement_mode=_mode(table, "enforcement-mode", ENFORCEMENT_MODES, "ENFORCING"),
        paths=_paths(table),
        path_cache=_path_cache(table),
        lazy_load_paths=table.flag("lazy-load-paths", False),
        on_deny_redirect_to=_redirect(table),
        user_managed_access=_user_managed_access(table),
        claim_information_point=_claim_information_point(table),
        http_method_as_scope=table.flag("http-method-as-scope", False),
    )
    _refuse_unknown(table, _TOP_FIELDS)
    return config


def _refuse(table: Fields, refused: Mapping[str, str]) -> None:
    for name, fix in refused.items():
        if name in table.table:
            raise ConfigError(f"{table.name(name)}: not supported by this adapter; {fix}")


def _refuse_unknown(table: Fields, known: tuple[str, ...]) -> None:
    """Unknown fields are refused, not warned about: a misspelt field of an authorization
    block would otherwise leave a path unprotected."""
    for name in table.table:
        if name not in known:
            hint = did_you_mean(str(name), known)
            raise ConfigError(
                f"{table.name(str(name))}: unknown policy-enforcer field{hint}; fix or remove it"
                f" (known here: {', '.join(known)})"
            )


def _mode(table: Fields, key: str, modes: tuple[str, ...], default: str) -> Any:
    value = table.raw(key)
    if value is None:
        return default
    if not isinstance(value, str) or value.strip().upper() not in modes:
        raise ConfigError(
            f"{table.name(key)}: {value!r} is not valid; use one of {', '.join(modes)}"
        )
    return value.strip().upper()


def _list(table: Fields, key: str, what: str) -> list[Any]:
    value = table.raw(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{table.name(key)}: must be a list of {what}")
    return value


def _scopes(table: Fields) -> tuple[str, ...]:
    scopes = table.strings("scopes", '["urn:app.com:scopes:view"]')
    return tuple(dict.fromkeys(scopes))


def _paths(table: Fields) -> tuple[PathConfig, ...]:
    paths = []
    for index, item in enumerate(_list(table, "paths", 'objects such as {"path": "/api/*"}')):
        path = Fields(item, f"{table.name('paths')}[{index}]", table.base_dir, table.files)
        paths.append(_path(path))
    return tuple(paths)


def _path(table: Fields) -> PathConfig:
    _refuse(table, _REFUSED_PATH)
    pattern = table.required("path", 'a path such as "/api/*", "/r/{id}" or "/*.html"')
    problem = pattern_problem(pattern)
    if problem:
        raise ConfigError(f"{table.name('path')}: {pattern!r}: {problem}")
    config = PathConfig(
        path=pattern,
        name=table.string("name"),
        type=table.string("type"),
        id=table.string("id"),
        scopes=_scopes(table),
        methods=_methods(table),
        enforcement_mode=_mode(table, "enforcement-mode", ENFORCEMENT_MODES, "ENFORCING"),
        claim_information_point=_claim_information_point(table),
    )
    _refuse_unknown(table, _PATH_FIELDS)
    return config


def pattern_problem(pattern: str) -> str | None:
    """What is wrong with a path pattern, or ``None``. Keycloak's forms: exact ``/a``, a
    trailing ``/*`` (``/a/*``, ``/*``), a suffix ``/*.html`` (``/a/*.html``), and ``{name}``
    segments (``/r/{id}``, ``/r/{id}/sub``, ``/r/{id}/*``). Fix hints in the message."""
    if not pattern.startswith("/"):
        return "write it relative to the app's root, starting with / (e.g. /api/*)"
    if "?" in pattern or "#" in pattern or ";" in pattern:
        return "a path pattern holds no query, fragment or ; parameters; remove them"
    problem = _wildcard_problem(pattern)
    if problem:
        return problem
    for segment in pattern.split("/"):
        if ("{" in segment or "}" in segment) and not _TEMPLATE_SEGMENT.fullmatch(segment):
            return "a {name} parameter is a whole segment (/r/{id}/sub), not nested or partial"
    return None


def _wildcard_problem(pattern: str) -> str | None:
    """A ``*`` is a trailing ``/*`` or the ``*`` of a suffix ``/*.ext`` (Keycloak's
    validateTemplate), and a suffix pattern has no ``{name}`` segments."""
    star = pattern.find("*")
    if star == -1:
        return None
    trailing = pattern.endswith("/*") and star == len(pattern) - 1
    rest = pattern[star + 1 :]
    suffix = pattern[star - 1] == "/" and _SUFFIX.fullmatch(rest) is not None
    if not (trailing or suffix):
        return "* is only a trailing /* (/api/*) or a suffix /*.ext (/*.html)"
    if suffix and "{" in pattern:
        return "a suffix pattern /*.ext takes no {name} segments; write two paths"
    return None


def _methods(table: Fields) -> tuple[MethodConfig, ...]:
    methods: list[MethodConfig] = []
    items = _list(table, "methods", 'objects such as {"method": "GET", "scopes": ["view"]}')
    for index, item in enumerate(items):
        entry = Fields(item, f"{table.name('methods')}[{index}]", table.base_dir, table.files)
        name = entry.required("method", "an HTTP method such as GET")
        if not _METHOD.fullmatch(name):
            raise ConfigError(f"{entry.name('method')}: {name!r} is not an HTTP method; e.g. GET")
        method = MethodConfig(
            method=name.upper(),
            scopes=_scopes(entry),
            scopes_enforcement_mode=_mode(
                entry, "scopes-enforcement-mode", SCOPES_ENFORCEMENT_MODES, "ALL"
            ),
        )
        _refuse_unknown(entry, _METHOD_FIELDS)
        if any(other.method == method.method for other in methods):
            raise ConfigError(
                f"{entry.name('method')}: {method.method} is listed twice for this path; "
                "merge the two entries (Keycloak would use only the first)"
            )
        methods.append(method)
    return tuple(methods)


def _path_cache(table: Fields) -> PathCacheConfig | None:
    raw = table.raw("path-cache")
    if raw is None:
        return None
    cache = Fields(raw, table.name("path-cache"), table.base_dir, table.files)
    config = PathCacheConfig(
        max_entries=cache.integer("max-entries", PATH_CACHE_MAX_ENTRIES, 1, 1_000_000),
        lifespan=cache.integer("lifespan", PATH_CACHE_LIFESPAN_MS, 0, 365 * 86400 * 1000),
    )
    _refuse_unknown(cache, _CACHE_FIELDS)
    return config


def _redirect(table: Fields) -> str | None:
    target = table.string("on-deny-redirect-to")
    if target is None:
        return None
    if not (target.startswith("/") and not target.startswith("//")) and not re.match(
        r"https?://[^/]", target
    ):
        raise ConfigError(
            f"{table.name('on-deny-redirect-to')}: {target!r}: give a path of the app "
            "(/access-denied) or an http(s) URL"
        )
    return target


def _user_managed_access(table: Fields) -> bool:
    value = table.raw("user-managed-access")
    if value is None:
        return False
    if isinstance(value, Mapping) and not value:
        return True
    raise ConfigError(
        f"{table.name('user-managed-access')}: must be an empty object {{}} (keycloak.json) or "
        "an empty table (TOML); it has no settings"
    )


def _claim_information_point(table: Fields) -> ClaimInformationPoint | None:
    key = "claim-information-point"
    raw = table.raw(key)
    if raw is None:
        return None
    where = Fields(raw, table.name(key), table.base_dir, table.files)
    for provider in where.table:
        if provider != "claims":
            raise ConfigError(
                f"{where.name(str(provider))}: the {provider!r} claim provider is not supported; "
                "use the claims provider ({request.header['x']}, ...) or push the claims from "
                "the app"
            )
    claims = where.raw("claims")
    if not isinstance(claims, Mapping):
        raise ConfigError(
            f"{where.name('claims')}: must be an object of claim names and values, e.g. "
            """{"claim-a": "{request.parameter['a']}"}"""
        )
    return ClaimInformationPoint(
        tuple(_claim(where.name("claims"), str(name), value) for name, value in claims.items())
    )


def _claim(prefix: str, name: str, value: object) -> Claim:
    where = f"{prefix}.{name}"
    listed = isinstance(value, list)
    values = value if isinstance(value, list) else [value]
    texts = [item for item in values if isinstance(item, str)]
    if not values or len(texts) != len(values):
        raise ConfigError(
            f"{where}: must be a string or a list of strings (static text and placeholders "
            "such as {request.header['x']})"
        )
    return Claim(name, tuple(parse_claim_value(where, item) for item in texts), listed)


def parse_claim_value(where: str, text: str) -> ClaimValue:
    """A claim value split into text and placeholders; an unknown placeholder is refused."""
    parts: list[str | Placeholder] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(_placeholder(where, match.group(1)))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    rest = "".join(part for part in parts if isinstance(part, str))
    if "{" in rest or "}" in rest:
        raise ConfigError(f"{where}: unbalanced {{ or }} in {text!r}; close each placeholder")
    return ClaimValue(text, tuple(parts))


def _placeholder(where: str, inner: str) -> Placeholder:
    inner = inner.strip()
    if inner in STANDALONE:
        return Placeholder(inner)
    match = _WITH_ARGUMENT.fullmatch(inner)
    if match and match.group(1) in WITH_ARGUMENT and match.group(2):
        source, argument = match.group(1), match.group(2)
        if source in _POINTER_SOURCES and not argument.startswith("/"):
            raise ConfigError(
                f"{where}: {{{inner}}}: the argument is a JSON pointer; write e.g. "
                f"{{{source}['/{argument}']}}"
            )
        return Placeholder(source, argument)
    known = ", ".join([f"{{{s}['...']}}" for s in WITH_ARGUMENT[:3]] + ["{request.body['/a']}"])
    raise ConfigError(
        f"{where}: unknown placeholder {{{inner}}}; use {known}, "
        "{keycloak.access_token['/claim']} or one of "
        + ", ".join(f"{{{s}}}" for s in STANDALONE[:5])
    )
