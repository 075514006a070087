"""What a request needs on its resource, and whether granted permissions cover it, as Keycloak's
policy enforcer decides (``getRequiredScopes``, ``isAuthorized``, ``hasResourceScopePermission``).

Pure functions over the configured path (:mod:`adapter.web._enforcer_paths` finds it) and the
permissions the server granted: an RPT's ``authorization.permissions`` claim or the answer of
the UMA grant's ``permissions`` mode (:class:`adapter.protocol.uma.Granted`). A bearer RPT that
covers the request passes without a call to the server; these functions say when it does.

Keycloak's rules, kept here:

- a method with a ``methods[]`` entry needs its scopes in its mode (``ALL`` by default); a
  method without one needs ANY of the path's scopes, or, with ``http-method-as-scope``, the
  method's name;
- ``scopes-enforcement-mode: DISABLED``: the method is not checked at all (Keycloak grants
  before asking anything), see :func:`is_unchecked`;
- a granted permission without scopes stands for the whole resource: it covers any scopes;
- a permission counts for the path when its resource id is the path's (or, for a resource
  instance of a ``{name}`` pattern, the pattern's resource id); a permission without a
  resource id (scopes only) counts for any path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapter.config.policy_enforcer import MethodConfig, PathConfig, ScopesEnforcementMode


@dataclass(frozen=True)
class RequiredScopes:
    """What a request needs on the matched resource: these scopes, ALL or ANY of them (or
    nothing at all: DISABLED)."""

    scopes: tuple[str, ...]
    mode: ScopesEnforcementMode


def required_scopes(path: PathConfig, method: str, http_method_as_scope: bool) -> RequiredScopes:
    """Keycloak's ``getRequiredScopes``: the ``methods[]`` entry for the request's method as
    configured; without one, the method itself as the scope (``http-method-as-scope``) or
    the path's scopes, ANY of them."""
    entry = method_config(path, method)
    if entry is not None:
        return RequiredScopes(entry.scopes, entry.scopes_enforcement_mode)
    if http_method_as_scope:
        return RequiredScopes((method.upper(),), "ANY")
    return RequiredScopes(path.scopes, "ANY")


def method_config(path: PathConfig, method: str) -> MethodConfig | None:
    """The configured ``methods[]`` entry for ``method``, if any (Keycloak compares the names
    exactly; the configuration holds them in upper case)."""
    wanted = method.upper()
    return next((entry for entry in path.methods if entry.method == wanted), None)


def is_unchecked(required: RequiredScopes) -> bool:
    """``scopes-enforcement-mode: DISABLED``: the request passes without any question."""
    return required.mode == "DISABLED"


def scopes_satisfied(required: RequiredScopes, granted: Iterable[str]) -> bool:
    """Whether a permission granting ``granted`` scopes on the resource (none: the whole
    resource) covers ``required`` (Keycloak's ``hasResourceScopePermission``)."""
    have = set(granted)
    if not have or is_unchecked(required) or not required.scopes:
        return True
    if required.mode == "ALL":
        return all(scope in have for scope in required.scopes)
    return any(scope in have for scope in required.scopes)


def permissions_cover(
    permissions: Iterable[Mapping[str, Any]],
    path: PathConfig,
    required: RequiredScopes,
    parent_id: str | None = None,
    claims: Mapping[str, list[str]] | None = None,
) -> bool:
    """Whether granted ``permissions`` (``{"rsid", "scopes", "claims"?}`` objects, as in an
    RPT's ``authorization.permissions``) cover ``required`` on ``path``'s resource, for a
    request that pushes ``claims``. ``parent_id``: the id of the ``{name}`` pattern's resource
    when ``path`` is an instance of it."""
    if is_unchecked(required):
        return True
    ids = {value for value in (path.id, parent_id) if value}
    for permission in permissions:
        scopes = permission.get("scopes") or ()
        if not isinstance(scopes, list | tuple):
            continue
        names = [scope for scope in scopes if isinstance(scope, str)]
        rsid = permission.get("rsid")
        if rsid is not None and rsid not in ids:
            continue
        if scopes_satisfied(required, names) and claims_hold(permission, claims or {}):
            return True
    return False


def has_claims(permission: Mapping[str, Any]) -> bool:
    """Whether a granted permission was granted for certain pushed claims only."""
    return permission.get("claims") is not None


def claims_hold(permission: Mapping[str, Any], claims: Mapping[str, list[str]]) -> bool:
    """Keycloak's ``hasValidClaims``: a permission granted for pushed claims counts only for a
    request whose claims are among the granted values (every granted claim present, each of
    its values granted), so an RPT obtained for ``amount = 10`` does not pay 5000."""
    granted = permission.get("claims")
    if granted is None:
        return True
    if not isinstance(granted, Mapping) or not claims:
        return False
    for name, values in granted.items():
        asked = claims.get(name)
        allowed = values if isinstance(values, list | tuple) else (values,)
        if not asked or not all(value in allowed for value in asked):
            return False
    return True


def rpt_permissions(claims: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The ``authorization.permissions`` of a token's claims (an RPT), or none."""
    authorization = claims.get("authorization")
    if not isinstance(authorization, Mapping):
        return ()
    permissions = authorization.get("permissions")
    if not isinstance(permissions, list | tuple):  # a tuple once cached claims are frozen
        return ()
    return tuple(item for item in permissions if isinstance(item, Mapping))
