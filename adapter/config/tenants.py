"""Several realms in one app: the tenants file, and each tenant's configuration from it.

A native configuration with ``[[tenants]]`` names, for each tenant, its own configuration file
(a keycloak.json exactly as exported, or a native file) and how a request finds it::

    session-secret-env = "SESSION_SECRET"     # shared defaults: everything outside [[tenants]]

    [[tenants]]
    name = "acme"
    config = "tenants/acme.json"              # relative to this file
    path-prefix = "/acme"                     # or: host = "acme.example.com"

A tenant's configuration is its own file over the shared defaults: a setting the tenant's file
gives (in either spelling) replaces the shared one. What names the client (issuer, realm,
client id, credentials, keys) belongs to each tenant's file, never to the shared part. Paths in
the shared part are relative to the tenants file, paths in a tenant's file to that file, as
anywhere else.

Keycloak's Java adapters chose a keycloak.json per request with a ``KeycloakConfigResolver``;
this is its declarative form (a resolver callable covers the rest: see docs/tenants.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.config._fields import Fields
from adapter.config._settings import read_settings, settings_of
from adapter.config.model import (
    AdapterConfig,
    WebConfig,
    load_config,
    read_document,
    top_level_fields,
)
from adapter.errors import ConfigError

TENANTS = "tenants"
# Names appear in metric labels, CLI flags and log lines: short, lower case, no spaces.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENTRY_KEYS = ("name", "config", "path-prefix", "host")
_OUTSIDE = ("public_paths", "access_rules")  # what the shared part says about no tenant's paths
# What names the client: each tenant's own, never a shared default.
_PER_TENANT = (
    "issuer", "realm", "auth-server-url", "client-id", "resource", "credentials", "keys",
)  # fmt: skip
_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()+,;=:@-]+)+")
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True)
class TenantConfig:
    """One tenant: its name, its configuration, and how a request finds it."""

    name: str
    config: AdapterConfig
    path_prefix: str | None = None  # "/acme": the tenant's pages and routes live under it
    host: str | None = None  # "acme.example.com" (lower case, without a port)


@dataclass(frozen=True)
class TenantsConfig:
    """Every tenant of a tenants file, in the file's order."""

    tenants: tuple[TenantConfig, ...]
    source: Path | None = None
    resolver: bool = False  # loaded for an app that chooses tenants with a callable
    # The shared part's public paths and access rules: what holds outside every tenant.
    shared: WebConfig = dataclasses.field(default_factory=WebConfig)

    def named(self, name: str) -> TenantConfig:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        names = ", ".join(t.name for t in self.tenants)
        raise ConfigError(f"tenant {name!r}: not in the tenants file (its tenants: {names})")


def has_tenants(document: object) -> bool:
    """Whether a parsed configuration is a tenants file."""
    return isinstance(document, Mapping) and TENANTS in document


def is_tenants_file(source: str | Path) -> bool:
    """Whether the configuration file at ``source`` lists tenants."""
    return has_tenants(read_document(source))


def tenants_or_plain(
    config: AdapterConfig | str | Path, *, resolver: bool = False
) -> AdapterConfig | str | Path | TenantsConfig:
    """A tenants file loaded as one (:func:`load_tenants`); any other configuration as given
    (its loader reads it). ``resolver``: the app passed ``tenant_resolver=``."""
    if not isinstance(config, AdapterConfig) and is_tenants_file(config):
        return load_tenants(config, resolver=resolver)
    if resolver:
        raise ConfigError(
            "tenant_resolver: chooses among tenants; the configuration lists none ([[tenants]])"
        )
    return config


def load_tenants(source: str | Path, *, resolver: bool = False) -> TenantsConfig:
    """Load a tenants file and every tenant's configuration; :class:`ConfigError` names the
    file, the tenant and the field. ``resolver``: the app chooses tenants with a callable,
    so a tenant may have neither ``path-prefix`` nor ``host``."""
    path = Path(source)
    document = read_document(path)
    try:
        entries, shared = _split(document)
        tenants = tuple(
            _tenant(entry, index, shared, path, resolver) for index, entry in enumerate(entries)
        )
        _check_unique(tenants)
        outside = Fields(shared, "", path.resolve().parent, known=top_level_fields())
        web = WebConfig(**read_settings(outside, WebConfig, only=_OUTSIDE))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return TenantsConfig(tenants, path, resolver, web)


def load_tenant_config(
    source: str | Path,
    name: str,
    *,
    resolver: bool = False,
    web: bool = True,
    serving: TenantConfig | None = None,
) -> AdapterConfig:
    """One tenant's configuration, read afresh from the tenants file (a reload of that tenant:
    an error in another tenant's file does not stop it). ``web=False``: as
    :func:`~adapter.config.load_config` (the key and token commands). ``serving``: the tenant
    as the app serves it; a new path prefix or host is refused (the routing is built at
    start: a restart changes it)."""
    path = Path(source)
    document = read_document(path)
    try:
        entries, shared = _split(document)
        for index, entry in enumerate(entries):
            if isinstance(entry, Mapping) and entry.get("name") == name:
                tenant = _tenant(entry, index, shared, path, resolver, web)
                _check_same_place(tenant, serving)
                return tenant.config
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    raise ConfigError(
        f"{path}: tenant {name!r} is no longer listed; a tenant is added or removed by a restart"
    )


def tenant_file(source: str | Path, name: str) -> Path:
    """The configuration file of tenant ``name`` in the tenants file ``source`` (the file the
    key commands edit), found without loading any tenant."""
    path = Path(source)
    try:
        entries, _ = _split(read_document(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    names = []
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("config"), str):
            if entry.get("name") == name:
                file = Path(entry["config"])
                return file if file.is_absolute() else path.resolve().parent / file
            names.append(str(entry.get("name")))
    raise ConfigError(f"{path}: no tenant {name!r} (its tenants: {', '.join(names)})")


def tenant_names(source: str | Path) -> list[str]:
    """The tenants a tenants file lists, in its order."""
    entries, _ = _split(read_document(source))
    return [str(e.get("name")) for e in entries if isinstance(e, Mapping)]


def _check_same_place(tenant: TenantConfig, serving: TenantConfig | None) -> None:
    if serving is None:
        return
    for field, now, before in (
        ("path-prefix", tenant.path_prefix, serving.path_prefix),
        ("host", tenant.host, serving.host),
    ):
        if now != before:
            raise ConfigError(
                f"tenants ({tenant.name}).{field}: changed from {before!r} to {now!r}; the "
                "routing to tenants is built at start (restart to change it)"
            )


def _split(document: object) -> tuple[list[Any], dict[str, Any]]:
    """The ``[[tenants]]`` entries and the shared defaults."""
    if not isinstance(document, Mapping):
        raise ConfigError("must be a table of settings with [[tenants]]")
    entries = document.get(TENANTS)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{TENANTS}: must be a non-empty list of tables ([[tenants]])")
    shared = {str(k): v for k, v in document.items() if k != TENANTS}
    for key in _PER_TENANT:
        if key in shared:
            raise ConfigError(
                f"{key}: names a tenant's client; write it in each tenant's configuration file, "
                "not beside [[tenants]]"
            )
    return entries, shared


def _tenant(
    entry: object,
    index: int,
    shared: dict[str, Any],
    source: Path,
    resolver: bool,
    web: bool = True,
) -> TenantConfig:
    where = f"{TENANTS}[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a table (name, config, path-prefix or host)")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; a tenant has {', '.join(_ENTRY_KEYS)} (its "
            "settings go in its own configuration file)"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name: must be lower-case letters, digits, '-' or '_' (at most 63), "
            f'e.g. "acme"; got {name!r}'
        )
    where = f"{where} ({name})"
    prefix = _path_prefix(entry.get("path-prefix"), where)
    host = _host(entry.get("host"), where)
    if prefix is not None and host is not None:
        raise ConfigError(f"{where}: give path-prefix or host, not both")
    if prefix is None and host is None and not resolver:
        raise ConfigError(
            f"{where}: says neither path-prefix nor host; give one (or pass tenant_resolver=)"
        )
    config = _tenant_config(entry.get("config"), shared, source, name, where, web)
    return TenantConfig(name, config, prefix, host)


def _tenant_config(
    written: object, shared: dict[str, Any], source: Path, name: str, where: str, web: bool
) -> AdapterConfig:
    if not isinstance(written, str) or not written.strip():
        raise ConfigError(
            f'{where}.config: must be the path of its configuration file, e.g. "{name}.json"'
        )
    file = Path(written)
    if not file.is_absolute():
        file = source.resolve().parent / file
    try:
        document = read_document(file)
        if not isinstance(document, Mapping):
            raise ConfigError("must be a table of settings")
        merged = {**_anchored(_not_overridden(shared, document), source), **document}
        config = load_config(merged, base_dir=file.resolve().parent, web=web)
    except ConfigError as error:
        message = str(error)
        shown = message if message.startswith(str(file)) else f"{file}: {message}"
        raise ConfigError(f"{where}: {shown}") from None
    return dataclasses.replace(config, source=file, tenant=name, companions=(source,))


def _not_overridden(shared: dict[str, Any], document: Mapping[str, Any]) -> dict[str, Any]:
    """The shared settings the tenant's file does not give, in any of their spellings
    (``session-secret`` shared, ``session-secret-file`` in the tenant's file: the file's)."""
    dropped: set[str] = set()
    for spec in (*settings_of(AdapterConfig), *settings_of(WebConfig)):
        spellings = {*spec.spellings, *spec.keycloak_spellings}
        if spellings & set(document):
            dropped |= spellings
    return {k: v for k, v in shared.items() if k not in dropped}


def _anchored(shared: dict[str, Any], source: Path) -> dict[str, Any]:
    """The shared settings with their relative file paths made relative to the tenants file
    (they are read with the tenant's directory as the base)."""
    paths = {
        spelling
        for spec in (*settings_of(AdapterConfig), *settings_of(WebConfig))
        if spec.kind == "path"
        for spelling in (*spec.spellings, *spec.keycloak_spellings)
    }
    base = source.resolve().parent
    anchored = dict(shared)
    for key, value in shared.items():
        file_like = key in paths or key.endswith("-file")
        written = isinstance(value, str) and value and "${" not in value
        if file_like and written and not Path(value).is_absolute():
            anchored[key] = str(base / value)
    return anchored


def _path_prefix(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _PREFIX.fullmatch(value) or _dots(value):
        raise ConfigError(
            f'{where}.path-prefix: must be a path such as "/acme" (a leading "/", no trailing '
            f"\"/\", no wildcard, '.' or '..'); got {value!r}"
        )
    return value


def _dots(prefix: str) -> bool:
    return any(part in (".", "..") for part in prefix.split("/"))


def _host(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _HOST.fullmatch(value.lower()) and len(value) <= 253:
        return value.lower()
    raise ConfigError(
        f'{where}.host: must be a host name such as "acme.example.com" (no scheme, port or '
        f"path); got {value!r}"
    )


def _check_unique(tenants: tuple[TenantConfig, ...]) -> None:
    """Names, hosts and prefixes each name one tenant; no prefix lies inside another's (which
    tenant's cookies would ``/acme/eu`` carry?)."""
    seen: dict[str, str] = {}
    for tenant in tenants:
        for kind, value in (
            ("name", tenant.name),
            ("host", tenant.host),
            ("path-prefix", tenant.path_prefix),
        ):
            if value is None:
                continue
            key = f"{kind}\0{value}"
            if key in seen:
                raise ConfigError(
                    f"tenants: {kind} {value!r} is given twice ({seen[key]} and {tenant.name}); "
                    "each must be unique"
                )
            seen[key] = tenant.name
    clients: dict[tuple[str, str], str] = {}
    for tenant in tenants:
        client = (tenant.config.issuer, tenant.config.client_id)
        if client in clients:
            raise ConfigError(
                f"tenants: {clients[client]} and {tenant.name} are the same client "
                f"({client[1]} at {client[0]}): their sessions and logouts would mix; give each "
                "tenant its own client"
            )
        clients[client] = tenant.name
    prefixes = {t.path_prefix: t.name for t in tenants if t.path_prefix is not None}
    for prefix, name in prefixes.items():
        parts = prefix.split("/")
        for end in range(2, len(parts)):
            outer = "/".join(parts[:end])
            if outer in prefixes:
                raise ConfigError(
                    f"tenants: path-prefix {prefix!r} ({name}) lies inside {outer!r} "
                    f"({prefixes[outer]}); give tenants prefixes side by side"
                )
