"""Flask: ``OIDC(app, config=...)`` signs users in, ``@oidc.require(roles=["admin"])`` guards a
view, ``oidc.identity`` is who is asking.

    oidc = OIDC(config="oidc.toml")        # or OIDC(app, config=...)

    def create_app() -> Flask:
        app = Flask(__name__)
        oidc.init_app(app)                  # app.wsgi_app = OIDCWSGIMiddleware(app.wsgi_app)
        return app

    @bp.get("/admin")
    @oidc.require(roles=["admin"])
    def admin() -> str: return f"hello {oidc.identity.display_name}"

An extension in Flask's manner (``init_app``, ``app.extensions["oidc"]``); the middleware is
installed on ``app.wsgi_app``, so Flask's own middleware (``ProxyFix``) may still wrap it. The
decorator holds no decision: it asks ``adapter.web._access`` and answers as the middleware does for
an ``[[access]]`` rule (401 with a Bearer challenge, 403 with RFC 6750's ``insufficient_scope``
for a missing scope: a short page for a browser, JSON for an API client).
``@oidc.require(permission="Bank Account#view")`` asks the policy enforcer (Keycloak
Authorization Services): 403 when the server denies it, 503 when it cannot be asked.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec
from weakref import WeakKeyDictionary

from adapter.config import AdapterConfig
from adapter.config.access_rules import Requirement
from adapter.reload import ReloadStatus
from adapter.web import _guard
from adapter.web._steps import Identity, Respond
from adapter.wsgi import OIDCWSGIMiddleware

_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[flask]'"
try:
    import flask
except ImportError:
    raise ImportError(f"adapter.integrations.flask needs Flask; {_EXTRA_HINT}") from None

P = ParamSpec("P")
_FIX = "install it: adapter.integrations.flask.OIDC(app, config=...) or oidc.init_app(app)"


class OIDC:
    """The adapter as a Flask extension, for one or several apps with one configuration.

    ``middleware_options`` go to :class:`~adapter.OIDCWSGIMiddleware` (``watch``,
    ``sighup`` ...). ``init_app`` reads the configuration, so a mistake in it stops the app's
    factory with a one-line error."""

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        config: AdapterConfig | str | Path,
        **middleware_options: Any,
    ) -> None:
        self.config_source = config
        self.middleware_options = middleware_options
        # Per app, as Flask-SQLAlchemy keeps its engines: the extension object is shared.
        self._middlewares: WeakKeyDictionary[flask.Flask, OIDCWSGIMiddleware] = WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Put the middleware on ``app.wsgi_app`` and register as ``app.extensions["oidc"]``."""
        if app in self._middlewares:
            return  # installed already: a second middleware would only repeat the first
        middleware = OIDCWSGIMiddleware(app.wsgi_app, self.config_source, **self.middleware_options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions["oidc"] = self
        self._middlewares[app] = middleware

    def middleware(self, app: flask.Flask | None = None) -> OIDCWSGIMiddleware:
        """The middleware of ``app`` (default: the current app, or outside an app context the
        one app this extension is installed on); its ``client`` makes service-account tokens;
        ``adapter.metrics.enable(oidc.middleware(app))`` reports its key states."""
        target = app
        if target is None and flask.has_app_context():
            target = flask.current_app._get_current_object()  # type: ignore[attr-defined]
        elif target is None and len(self._middlewares) == 1:
            target = next(iter(self._middlewares.keys()))
        middleware = self._middlewares.get(target) if target is not None else None
        if middleware is None:
            raise _guard.MiddlewareMissing(f"OIDC is not installed on this app; {_FIX}")
        return middleware

    @property
    def status(self) -> ReloadStatus | None:
        """The status of the current app's middleware (see :meth:`middleware`): load times,
        the last reload error and the key states; ``None`` for a configuration object."""
        return self.middleware().status

    def reload(self, app: flask.Flask | None = None) -> bool:
        """Reload the configuration of ``app``'s middleware now (default as
        :meth:`middleware`); ``False`` (the old state kept) when it is broken."""
        return self.middleware(app).reload()

    @property
    def identity(self) -> Identity | None:
        """The current request's identity; ``None``: anonymous (on a public path)."""
        return _guard.identity_in(flask.request.environ, _FIX)

    def require(
        self,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        any_role: Iterable[str] = (),
        *,
        acr: Iterable[str] = (),
        max_age: int | None = None,
        permission: str | None = None,
    ) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
        """Let the view run only for an identity holding every role (realm roles), client
        role (this client's roles) and scope listed, and one of ``any_role`` when given;
        signed in with one of the ``acr`` values and at most ``max_age`` seconds ago, when
        given (step-up: a browser's session is sent to sign in again, a bearer token gets
        RFC 9470's 401 ``insufficient_user_authentication``).

        ``permission`` (``"Bank Account#view"``: a resource's name or id, ``#``, its scopes)
        asks the policy enforcer, as ``identity.has_permission(...)`` does: denied, 403 (as
        for a missing role); the identity server unreachable, 503. It needs a
        ``policy-enforcer`` block in the configuration (without one the request fails
        loudly); a malformed permission fails here, when the view is declared."""
        requirement = Requirement.of(roles, client_roles, scopes, any_role, acr, max_age)
        wanted = _guard.permission_text(permission)

        def decorator(view: Callable[P, Any]) -> Callable[P, Any]:
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    answer = self._refused(requirement, wanted)
                    if answer is not None:
                        return _response(answer)
                    return await view(*args, **kwargs)

                return async_wrapper

            @functools.wraps(view)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                answer = self._refused(requirement, wanted)
                if answer is not None:
                    return _response(answer)
                return view(*args, **kwargs)

            return wrapper

        return decorator

    def _refused(self, requirement: Requirement, permission: str | None) -> Respond | None:
        request = flask.request
        identity = _guard.identity_in(request.environ, _FIX)
        tenant = _guard.tenant_in(request.environ)  # several realms: the request's
        config = self.middleware().client.config  # the configuration in force (reloads too)
        web = _guard.web_request(
            request.method,
            request.headers.items(),
            request.script_root,
            request.path,
            request.query_string.decode("latin-1"),
        )
        realm, logout_path = config.client_id, config.web.logout_path
        login_path, leeway = _guard.step_up_settings(config)
        answer = _guard.answer(
            identity, requirement, web, realm=realm, logout_path=logout_path, tenant=tenant,
            login_path=login_path, leeway=leeway,
        )  # fmt: skip
        if answer is not None or identity is None or permission is None:
            return answer
        verdict = _guard.asked(identity, permission)
        return _guard.permission_answer(verdict, identity, permission, web, logout_path, tenant)


def _response(answer: Respond) -> flask.Response:
    return flask.Response(answer.body, status=answer.status, headers=answer.headers)


__all__ = ["OIDC"]
