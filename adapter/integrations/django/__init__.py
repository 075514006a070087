"""Django: the adapter as Django users expect it (WSGI).

The WSGI middleware signs users in and checks bearer tokens in front of Django, as for any WSGI
app; this module makes its identity a Django user, the way ``RemoteUserMiddleware`` and
``RemoteUserBackend`` do for a web server's ``REMOTE_USER``::

    # settings.py
    OIDC_ADAPTER = {"config": BASE_DIR / "adapter.toml", "staff_roles": ["admin"]}
    AUTHENTICATION_BACKENDS = ["adapter.integrations.django.OIDCBackend",
                               "django.contrib.auth.backends.ModelBackend"]
    MIDDLEWARE = [...,  # after SessionMiddleware and AuthenticationMiddleware:
                  "adapter.integrations.django.OIDCMiddleware", ...]
    LOGIN_URL = "/oidc/login"

    # wsgi.py
    application = adapter.integrations.django.wrap(get_wsgi_application())

    # views.py
    @adapter.integrations.django.require(roles=["admin"])
    def admin_only(request): ...

``request.oidc_identity`` is the :class:`~adapter.Identity` (or ``None``); ``request.user`` is
the Django user :class:`OIDCBackend` maps it to, so ``@login_required``, permissions and the
admin work. Browser sessions log the user in to Django's session (and out again when the
adapter's session ends); bearer requests set ``request.user`` for that request only. What an
identity may do is decided by the adapter's core (:mod:`adapter.web._access`); this module asks
and translates.

The package: this module (the public names), ``backend.py`` (:class:`OIDCBackend`, imported
when first asked for) and ``settings.py`` (``settings.OIDC_ADAPTER`` read and checked, for
both).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from adapter.config import AdapterConfig, load_config
from adapter.config.access_rules import Requirement
from adapter.integrations.django.settings import (
    AdapterSettings,
    adapter_settings,
    check_admin_tenants,
    django_module,
    improperly_configured,
)
from adapter.web._access import Refusal, forbidden_response
from adapter.web._guard import (
    IDENTITY_KEY,
    as_tenant_sees,
    asked,
    identity_in,
    permission_answer,
    permission_text,
    refused_for,
    step_up_settings,
    stepped_up,
    tenant_in,
    unauthorized,
    web_request,
)
from adapter.web._http import wants_json
from adapter.web._steps import Identity, Respond, current_identity
from adapter.wsgi import OIDCWSGIMiddleware

if TYPE_CHECKING:
    from adapter.integrations.django.backend import OIDCBackend

__all__ = [
    "AdapterSettings",
    "OIDCBackend",
    "OIDCMiddleware",
    "adapter_settings",
    "admin_urls",
    "require",
    "wrap",
]

log = logging.getLogger(__name__)
SESSION_MARK = "_oidc_identity"  # what the Django session was last configured from
_WRAP_FIX = "in wsgi.py: application = adapter.integrations.django.wrap(get_wsgi_application())"
_auth = django_module("django.contrib.auth")
_conf = django_module("django.conf")
_http = django_module("django.http")


def __getattr__(name: str) -> Any:
    """``OIDCBackend`` subclasses Django's ``ModelBackend``, which needs the app registry:
    it is imported when first asked for (Django does so after setup), so that ``wsgi.py`` can
    import :func:`wrap` before ``get_wsgi_application()``."""
    if name == "OIDCBackend":
        from adapter.integrations.django.backend import OIDCBackend

        return OIDCBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the WSGI side ------------------------------------------------------------------------------

_INSTALLED: dict[str, OIDCWSGIMiddleware] = {}  # the application wrap() made in this process


def wrap(application: Any, *, http: httpx.Client | None = None) -> OIDCWSGIMiddleware:
    """The Django WSGI application behind the adapter, configured by ``settings.OIDC_ADAPTER``
    (``http``: the client to reach the identity server, e.g. ``adapter.testing``'s)."""
    chosen = adapter_settings()
    middleware = OIDCWSGIMiddleware(
        application, chosen.config, http=http, watch=chosen.watch, sighup=chosen.sighup
    )
    try:
        check_admin_tenants(chosen, [site.name for site in middleware.tenancy.sites])
    except Exception:
        if http is None:
            middleware.close()
        else:  # the caller's client stays open (it is theirs); the sites stop listening
            for site in middleware.tenancy:
                site.shell.close()
        raise
    _INSTALLED["application"] = middleware
    return middleware


def adapter_config(request: Any = None) -> AdapterConfig:
    """The configuration in force: ``request``'s tenant's with several realms, else the
    wrapped application's (it follows reloads), else the file named in the settings (Django's
    test client calls the app without the wrapper)."""
    tenant = tenant_in(request.META) if request is not None else None
    if tenant is not None:
        return tenant.config
    installed = _INSTALLED.get("application")
    if installed is not None:
        return installed.client.config
    return _config_from_file(str(adapter_settings().config))


@functools.cache
def _config_from_file(path: str) -> AdapterConfig:
    return load_config(path)


# -- the Django middleware ----------------------------------------------------------------------


class OIDCMiddleware:
    """Put the adapter's identity on the request and log its Django user in (or out).

    As ``RemoteUserMiddleware``: it needs ``AuthenticationMiddleware`` before it, and
    :class:`OIDCBackend` (or a subclass) in ``AUTHENTICATION_BACKENDS``.
    """

    sync_capable = True
    async_capable = False  # the adapter's Django support is WSGI (wrap)

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._warned_unwrapped = False
        backends = getattr(_conf.settings, "AUTHENTICATION_BACKENDS", ())
        if not any(isinstance(_auth.load_backend(path), _backend()) for path in backends):
            raise improperly_configured(
                "AUTHENTICATION_BACKENDS: add 'adapter.integrations.django.OIDCBackend' (before "
                "'django.contrib.auth.backends.ModelBackend') for "
                "adapter.integrations.django.OIDCMiddleware"
            )

    def __call__(self, request: Any) -> Any:
        self.process_request(request)
        return self.get_response(request)

    def process_request(self, request: Any) -> None:
        if not hasattr(request, "user"):
            raise improperly_configured(
                "MIDDLEWARE: put 'django.contrib.auth.middleware.AuthenticationMiddleware' "
                "before 'adapter.integrations.django.OIDCMiddleware'"
            )
        if IDENTITY_KEY not in request.META and not self._warned_unwrapped:
            self._warned_unwrapped = True  # e.g. Django's test client: anonymous then
            log.warning("no adapter in front of Django (users are anonymous): %s", _WRAP_FIX)
        identity = current_identity(request.META)
        request.oidc_identity = identity
        if "HTTP_AUTHORIZATION" in request.META:  # this request only: the session stays as it is
            user = _auth.authenticate(request, oidc_identity=identity) if identity else None
            request.user = user if user is not None else _anonymous()
            return
        if identity is None:
            if request.user.is_authenticated:
                self._remove_invalid_user(request)
            return
        mark = identity_mark(identity)
        if request.user.is_authenticated and request.session.get(SESSION_MARK) == mark:
            return  # the same identity as when this session was configured: nothing to do
        user = _auth.authenticate(request, oidc_identity=identity)
        if user is None:  # refused (inactive, not created, a local account): anonymous
            if request.user.is_authenticated:
                self._remove_invalid_user(request)
            return
        if not (request.user.is_authenticated and request.user.pk == user.pk):
            _auth.login(request, user)
        request.user = user
        request.session[SESSION_MARK] = mark

    def _remove_invalid_user(self, request: Any) -> None:
        """Log out a Django session that this middleware logged in (never another's)."""
        try:
            stored = _auth.load_backend(request.session.get(_auth.BACKEND_SESSION_KEY, ""))
        except ImportError:
            _auth.logout(request)
            return
        if isinstance(stored, _backend()):
            _auth.logout(request)


def _anonymous() -> Any:
    return django_module("django.contrib.auth.models").AnonymousUser()


def _backend() -> type:
    from adapter.integrations.django.backend import OIDCBackend

    return OIDCBackend


def identity_mark(identity: Identity) -> str:
    """A digest of what the Django user is configured from: a session whose identity changes
    (roles after a refresh, a new name), or whose tenant enters or leaves ``admin_tenants``, is
    configured again. Kept per identity object while it lives (the requests of a session seen
    before share one: a JSON dump and a SHA-256 each request were measured against
    mozilla-django-oidc), and per what the settings say of its tenant."""
    admin = adapter_settings().maps_roles(identity.tenant) if identity.tenant is not None else None
    key = (id(identity), admin)
    mark = _MARKS.get(key)
    if mark is None:
        mark = _mark(identity, admin)
        if len(_MARKS) >= MAX_MARKS:
            _MARKS.clear()
        _MARKS[key] = mark
        # Dropped with the identity (its id may then be reused); never keeps it alive.
        weakref.finalize(identity, _MARKS.pop, key, None)
    return mark


MAX_MARKS = 4096  # marks kept at most (a process's recent sessions)
_MARKS: dict[tuple[int, object], str] = {}


def _mark(identity: Identity, admin: object) -> str:
    claims = identity.claims
    material: list[object] = [
        identity.tenant,
        identity.identity,
        sorted(identity.roles),
        sorted(identity.client_roles),
        *(str(claims.get(k, "")) for k in ("given_name", "family_name", "email", "email_verified")),
    ]
    if identity.tenant is not None:  # a plain app's marks stay as they were
        material.append(admin)
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32]


# -- the view decorator -------------------------------------------------------------------------


def require(
    roles: Iterable[str] = (),
    client_roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    any_role: Iterable[str] = (),
    *,
    acr: Iterable[str] = (),
    max_age: int | None = None,
    permission: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: the identity must hold every role, client role and scope listed (and
    one of ``any_role``). Refused: the same 403 as an ``[[access]]`` rule (a page for browsers,
    JSON for APIs, RFC 6750's ``WWW-Authenticate`` for bearer requests); anonymous: the login
    redirect for browsers (as ``@login_required``), 401 for API clients. With ``acr`` and/or
    ``max_age`` (step-up), a sign-in weaker or older than asked is sent to sign in again (a
    browser), or answered with RFC 9470's 401 (a bearer token). Without the adapter in front
    it fails closed, with an error naming :func:`wrap`.

    ``permission`` (``"Bank Account#view"``: a resource's name or id, ``#``, its scopes) asks
    the policy enforcer, as ``identity.has_permission(...)`` does: denied, 403 (as for a
    missing role); the identity server unreachable, 503. It needs a ``policy-enforcer`` block
    in the adapter's configuration (without one the request fails loudly); a malformed
    permission fails here, when the view is declared.
    """
    requirement = Requirement.of(roles, client_roles, scopes, any_role, acr, max_age)
    wanted = permission_text(permission)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            identity = identity_in(request.META, _WRAP_FIX)
            if identity is None:
                return _unauthenticated(request)
            refused = refused_for(identity, requirement)
            if refused is not None:
                logout_path = adapter_config(request).web.logout_path
                answer = forbidden_response(_web_request(request), identity, refused, logout_path)
                return _response(answer)
            if requirement.steps_up:
                config = adapter_config(request)
                seen = _web_request(request)
                login, leeway = step_up_settings(config)
                step_up = stepped_up(identity, requirement, seen, login, leeway)
                if step_up is not None:
                    return _response(step_up)
            if wanted is not None:
                denied = _permission_refused(request, identity, wanted)
                if denied is not None:
                    return denied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _permission_refused(request: Any, identity: Identity, permission: str) -> Any:
    """The policy enforcer's 403 or 503 for ``permission``, or ``None``: granted."""
    verdict = asked(identity, permission)
    logout_path = adapter_config(request).web.logout_path
    answer = permission_answer(verdict, identity, permission, _web_request(request), logout_path)
    return _response(answer) if answer is not None else None


def _unauthenticated(request: Any) -> Any:
    config = adapter_config(request)
    accept = request.META.get("HTTP_ACCEPT", "")
    if "HTTP_AUTHORIZATION" in request.META or (accept and "text/html" not in accept):
        return _response(unauthorized(config.client_id, as_json=wants_json(accept)))
    seen = _web_request(request)  # as the tenant sees it, with several: under its prefix
    target = quote(seen.path) + (
        f"?{request.META['QUERY_STRING']}" if request.META.get("QUERY_STRING") else ""
    )
    login = seen.root_path + config.web.login_path
    return _http.HttpResponseRedirect(f"{login}?{urlencode({'next': target})}")


def _web_request(request: Any) -> Any:
    """The parts of a Django request the 403 answer looks at, as the request's tenant sees
    them (its prefix part of the root)."""
    meta = request.META
    headers = [(name, str(meta[key])) for name, key in _HEADERS if key in meta]
    root = meta.get("SCRIPT_NAME", "").rstrip("/")
    query = str(meta.get("QUERY_STRING", ""))
    return as_tenant_sees(
        web_request(request.method, headers, root, request.path_info, query), tenant_in(meta)
    )


_HEADERS = (  # what the answers look at: the 403's and the step-up's
    ("accept", "HTTP_ACCEPT"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    ("x-requested-with", "HTTP_X_REQUESTED_WITH"),
)


def _response(answer: Respond) -> Any:
    response = _http.HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


# -- Django's admin -----------------------------------------------------------------------------

_LOGOUT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Log out</title></head>
<body><form id="oidc-logout" method="post" action="{action}">
<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button></form>
<script>document.getElementById("oidc-logout").submit()</script></body></html>"""


def admin_urls(site: Any = None) -> tuple[list[Any], str, str]:
    """``path("admin/", admin_urls())`` in place of ``admin.site.urls``: Django's admin, signed
    in and out by the adapter. Its login page sends to the adapter's login, or answers a
    signed-in user who is not staff with the 403 page (not Django's password form); its logout
    ends the adapter's session (and so Django's and the identity server's)."""
    urls = django_module("django.urls")
    patterns, app_name, namespace = (site or django_module("django.contrib.admin").site).urls
    ours = [urls.path("login/", _admin_login), urls.path("logout/", _admin_logout)]
    return [*ours, *patterns], app_name, namespace


def _admin_login(request: Any) -> Any:
    identity = identity_in(request.META, _WRAP_FIX)
    if identity is None:
        return _unauthenticated(request)
    if request.user.is_active and request.user.is_staff:  # signed in since: the admin's index
        return _http.HttpResponseRedirect("../")
    staff = adapter_settings().staff_roles or frozenset({"staff"})
    refused = Refusal("role", tuple(sorted(staff)))
    logout_path = adapter_config(request).web.logout_path
    return _response(forbidden_response(_web_request(request), identity, refused, logout_path))


def _admin_logout(request: Any) -> Any:
    """A page that posts the adapter's logout form at once (its CSRF token is the session's).

    Only for the admin's own POST (Django's CSRF middleware checks its token, as for Django's
    logout view): a GET from another site's link must not sign anybody out here and at the
    identity server."""
    if request.method != "POST":
        return _http.HttpResponseNotAllowed(["POST"])
    identity = identity_in(request.META, _WRAP_FIX)
    if identity is None:
        return _http.HttpResponseRedirect(request.META.get("SCRIPT_NAME", "").rstrip("/") + "/")
    action = _web_request(request).root_path + adapter_config(request).web.logout_path
    page = _LOGOUT_PAGE.format(
        action=html.escape(action), csrf=html.escape(identity.csrf_token or "")
    )
    return _http.HttpResponse(page, headers={"Cache-Control": "no-store"})
