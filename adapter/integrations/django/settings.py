"""``settings.OIDC_ADAPTER`` for :mod:`adapter.integrations.django` and its
:class:`~adapter.integrations.django.OIDCBackend`.

Apart from both because they both read it: the package's ``__init__`` is imported before
Django's app registry is ready (in ``wsgi.py``) and imports the backend lazily, and the backend
(:mod:`adapter.integrations.django.backend`) needs the registry when it is imported; both
import this module, which imports neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[django]'"


def django_module(name: str) -> Any:
    """A Django module, or an ImportError naming the extra. (Django ships no type hints:
    what comes from it is ``Any`` here.)"""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"adapter.integrations.django needs Django; {_EXTRA_HINT}") from None


_conf = django_module("django.conf")
_exceptions = django_module("django.core.exceptions")


@dataclass(frozen=True)
class AdapterSettings:
    """``settings.OIDC_ADAPTER``, checked: the configuration file and how identities map to
    Django users (``None``: that part of the user is left alone, e.g. set in the admin)."""

    config: str | Path
    watch: float | None = None  # seconds between checks of the configuration's files
    sighup: bool = False
    username_claim: str = "sub"  # a claim the user cannot change (Keycloak: sub)
    create_users: bool = True
    staff_roles: frozenset[str] | None = None  # any of them -> is_staff (else not)
    superuser_roles: frozenset[str] | None = None  # any of them -> is_superuser (else not)
    groups: Mapping[str, str] | None = None  # role -> Django group (kept in step)
    # With several realms, the tenants whose roles make staff, superusers and groups: any
    # other tenant's realm admins could otherwise grant themselves the role (docs/django.md).
    admin_tenants: frozenset[str] = frozenset()

    def maps_roles(self, tenant: str | None) -> bool:
        """Whether roles map to staff, superuser and groups for an identity of ``tenant``
        (``None``: a plain configuration, where they always do)."""
        return tenant is None or tenant in self.admin_tenants


_KEYS = {
    "config": "a path",
    "watch": "seconds",
    "sighup": "true or false",
    "username_claim": "a claim name",
    "create_users": "true or false",
    "staff_roles": "a list of roles",
    "superuser_roles": "a list of roles",
    "groups": "a mapping of role to group name",
    "admin_tenants": "a list of tenant names",
}


def adapter_settings() -> AdapterSettings:
    """``settings.OIDC_ADAPTER`` read and checked; ImproperlyConfigured names the fix."""
    raw = getattr(_conf.settings, "OIDC_ADAPTER", None)
    if not isinstance(raw, Mapping) or "config" not in raw:
        raise improperly_configured(
            'settings.OIDC_ADAPTER: set it to {"config": BASE_DIR / "adapter.toml"} '
            "(the adapter's configuration file)"
        )
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise improperly_configured(
            f"settings.OIDC_ADAPTER: unknown key {unknown[0]!r}; known: {', '.join(_KEYS)}"
        )
    config = raw["config"]
    if not isinstance(config, str | Path):
        raise improperly_configured(
            'settings.OIDC_ADAPTER["config"]: give the configuration file\'s path'
        )
    watch = raw.get("watch")
    if watch is not None and (isinstance(watch, bool) or not isinstance(watch, int | float)):
        raise improperly_configured('settings.OIDC_ADAPTER["watch"]: give seconds, e.g. 2')
    return AdapterSettings(
        config=config,
        watch=float(watch) if watch is not None else None,
        sighup=_flag(raw, "sighup", False),
        username_claim=_text(raw, "username_claim", "sub"),
        create_users=_flag(raw, "create_users", True),
        staff_roles=_roles(raw, "staff_roles"),
        superuser_roles=_roles(raw, "superuser_roles"),
        groups=_groups(raw),
        admin_tenants=_tenant_names(raw),
    )


def _flag(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise improperly_configured(f'settings.OIDC_ADAPTER["{key}"]: give True or False')
    return value


def _text(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise improperly_configured(f'settings.OIDC_ADAPTER["{key}"]: give {_KEYS[key]}')
    return value


def _roles(raw: Mapping[str, Any], key: str) -> frozenset[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise improperly_configured(
            f'settings.OIDC_ADAPTER["{key}"]: give a list of roles, e.g. ["admin"]'
        )
    return frozenset(value)


def _groups(raw: Mapping[str, Any]) -> Mapping[str, str] | None:
    value = raw.get("groups")
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise improperly_configured(
            'settings.OIDC_ADAPTER["groups"]: give role -> group names, e.g. {"editor": "Editors"}'
        )
    return dict(value)


def _tenant_names(raw: Mapping[str, Any]) -> frozenset[str]:
    value = raw.get("admin_tenants", ())
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(v, str) and v for v in value
    ):
        raise improperly_configured(
            'settings.OIDC_ADAPTER["admin_tenants"]: give a list of tenant names, e.g. ["acme"]'
        )
    return frozenset(value)


def check_admin_tenants(chosen: AdapterSettings, tenants: list[str | None]) -> None:
    """``admin_tenants`` against the tenants the configuration serves (``[None]``: a plain
    configuration, which has none): ImproperlyConfigured naming the fix."""
    if not chosen.admin_tenants:
        return
    if tenants == [None]:
        raise improperly_configured(
            'settings.OIDC_ADAPTER["admin_tenants"]: the configuration is not a tenants file '
            "(one realm, whose roles always map); remove admin_tenants"
        )
    known = [name for name in tenants if name is not None]
    unknown = sorted(chosen.admin_tenants - set(known))
    if unknown:
        raise improperly_configured(
            f'settings.OIDC_ADAPTER["admin_tenants"]: {unknown[0]!r} is not a tenant of the '
            f"configuration (its tenants: {', '.join(known)})"
        )


def improperly_configured(message: str) -> Exception:
    """Django's ``ImproperlyConfigured`` with ``message`` (raise it)."""
    error: Exception = _exceptions.ImproperlyConfigured(message)
    return error
