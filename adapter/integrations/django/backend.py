"""``adapter.integrations.django.OIDCBackend``: the Django user of an adapter identity.

Apart from the package's ``__init__`` because Django's ``ModelBackend`` needs the app registry
when it is imported: Django imports this module (as
``adapter.integrations.django.OIDCBackend``) after setup, while ``wsgi.py`` imports
``adapter.integrations.django`` before. It reads ``settings.OIDC_ADAPTER`` through
:mod:`adapter.integrations.django.settings`, never through the package's ``__init__`` (which
imports it).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from adapter.integrations.django.settings import AdapterSettings, adapter_settings, django_module
from adapter.web._steps import Identity

log = logging.getLogger(__name__)
_auth = django_module("django.contrib.auth")
ModelBackend: Any = django_module("django.contrib.auth.backends").ModelBackend
_hashers = django_module("django.contrib.auth.hashers")
_models = django_module("django.contrib.auth.models")


class OIDCBackend(ModelBackend):  # type: ignore[misc]  # Django is untyped: its classes are Any
    """Get or create the Django user of an identity (``username`` = its ``sub``), update its
    name and email, and keep ``is_staff``, ``is_superuser`` and groups in step with its roles
    (with several tenants, only the roles of the tenants in ``admin_tenants``: another
    tenant's users count as holding no role here).

    As with ``RemoteUserBackend``, a subclass changes the knobs with class attributes; left at
    ``None`` they come from ``settings.OIDC_ADAPTER`` (see
    :class:`adapter.integrations.django.AdapterSettings`). Realm roles and this client's roles
    both count. Users it creates have no usable password; an existing local account with a
    password is never taken over by a login whose claim happens to equal its username, unless
    ``adopt_local_users``. With ``username_claim = "email"``, only an email the server says is
    verified names a user: an identity without ``email_verified: true`` is refused (not named by
    ``sub`` instead, which would give the same person a second user until the email is
    verified). With several tenants the username is ``tenant:claim`` (``acme:alice``): each
    realm has its own users, and one email at two realms is two people.
    """

    create_unknown_user: bool | None = None  # settings: create_users (True)
    username_claim: str | None = None  # settings: username_claim ("sub")
    staff_roles: Collection[str] | None = None  # settings: staff_roles (None: not managed)
    superuser_roles: Collection[str] | None = None  # settings: superuser_roles
    group_roles: Mapping[str, str] | None = None  # settings: groups (role -> group name)
    adopt_local_users = False

    def authenticate(self, request: Any, oidc_identity: Identity | None = None) -> Any:
        """The user for ``oidc_identity`` (Django passes it on from the middleware)."""
        if not isinstance(oidc_identity, Identity):
            return None
        chosen = adapter_settings()
        users = _auth.get_user_model()
        username = self._username(oidc_identity, chosen, users)
        if username is None:
            return None
        create = self.create_unknown_user
        if create is None:
            create = chosen.create_users
        created = False
        if create:
            user, created = users._default_manager.get_or_create(
                **{users.USERNAME_FIELD: username},
                defaults={"password": _hashers.make_password(None)},  # unusable from the start
            )
        else:
            try:
                user = users._default_manager.get_by_natural_key(username)
            except users.DoesNotExist:
                return None
        if not created and not self.adopt_local_users and user.has_usable_password():
            log.warning(
                "identity refused: the Django user %r is a local account with a password; "
                "remove its password (set_unusable_password) or set adopt_local_users = True",
                username,
            )
            return None
        user = self.configure_user(request, user, oidc_identity, created=created)
        return user if self.user_can_authenticate(user) else None

    def _username(self, identity: Identity, chosen: AdapterSettings, users: Any) -> str | None:
        """The username the identity's claim names; ``None`` (logged) when it names none."""
        claim = self.username_claim or chosen.username_claim
        claims = identity.claims
        if claim == "email" and claims.get("email_verified") is not True:
            # Anyone may type any address where the server does not verify it: matching it to
            # a user would hand that user's account over (principal-attribute has this rule).
            log.warning(
                "identity refused: username_claim is email and the server does not say the "
                "email is verified (email_verified: true); verify emails in the realm, or name "
                "users by sub"
            )
            return None
        value = claims.get(claim)
        if isinstance(value, str) and value and identity.tenant is not None:
            value = f"{identity.tenant}:{value}"  # realms are apart: alice at two is two users
        username = self.clean_username(value) if isinstance(value, str) and value else None
        limit = users._meta.get_field(users.USERNAME_FIELD).max_length
        if not username or (limit is not None and len(username) > limit):
            log.warning(
                "identity refused: its %s claim is missing or too long for a username", claim
            )
            return None
        return username

    def clean_username(self, username: str) -> str:
        """The username for a claim value (unchanged by default, as in RemoteUserBackend)."""
        return username

    def configure_user(self, request: Any, user: Any, identity: Identity, created: bool) -> Any:
        """Update ``user`` from ``identity``: name, email (unless unverified), staff and
        superuser flags and mapped groups; saved only when something changed."""
        chosen = adapter_settings()
        # With several realms, only an admin tenant's roles count here: each realm's admins
        # grant its roles, and none of them may make themselves staff over every tenant.
        held = self.mapped_roles(identity, chosen)
        claims = identity.claims
        values: dict[str, Any] = {}
        for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            if isinstance(claims.get(claim), str):
                values[field] = claims[claim]
        if isinstance(claims.get("email"), str) and claims.get("email_verified") is not False:
            values["email"] = claims["email"]
        staff = _option(self.staff_roles, chosen.staff_roles)
        if staff is not None:
            values["is_staff"] = bool(held & set(staff))
        superuser = _option(self.superuser_roles, chosen.superuser_roles)
        if superuser is not None:
            values["is_superuser"] = bool(held & set(superuser))
        changed = [name for name, value in values.items() if _set(user, name, value)]
        if changed and not created:
            user.save(update_fields=changed)
        elif created:
            user.save()
        groups = self.group_roles if self.group_roles is not None else chosen.groups
        if groups:
            _keep_groups(user, groups, held)
        return user

    def mapped_roles(self, identity: Identity, chosen: AdapterSettings) -> frozenset[str]:
        """The roles that map to staff, superuser and groups: the identity's realm and client
        roles, or none for a tenant outside ``admin_tenants`` (its user is then no staff, no
        superuser and in no mapped group, wherever those are managed)."""
        if not chosen.maps_roles(identity.tenant):
            return frozenset()
        return identity.roles | identity.client_roles


def _option(own: Collection[str] | None, configured: frozenset[str] | None) -> Any:
    return own if own is not None else configured


def _set(user: Any, name: str, value: Any) -> bool:
    """Set a field the user model has (values cut to its length); whether it changed."""
    try:
        field = user._meta.get_field(name)
    except Exception:  # FieldDoesNotExist: a custom user model without it
        return False
    if isinstance(value, str) and field.max_length is not None:
        value = value[: field.max_length]
    if getattr(user, name) == value:
        return False
    setattr(user, name, value)
    return True


def _keep_groups(user: Any, groups: Mapping[str, str], held: frozenset[str]) -> None:
    """Membership of the mapped groups follows the roles; other groups are left alone."""
    wanted = {group for role, group in groups.items() if role in held}
    managed = set(groups.values())
    current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
    for name in sorted(wanted - current):
        group, _ = _models.Group.objects.get_or_create(name=name)
        user.groups.add(group)
    gone = current - wanted
    if gone:
        user.groups.remove(*_models.Group.objects.filter(name__in=gone))
