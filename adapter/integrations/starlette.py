"""Starlette: ``@require(roles=["admin"])`` on an endpoint, like Starlette's own ``requires``.

    @require(roles=["admin"])
    async def admin(request: Request) -> Response: ...

The app runs behind :class:`~adapter.OIDCMiddleware`, which signs users in and puts their
identity in the scope; the decorator asks the core's access decision (``adapter.web._access``)
and answers as the middleware does for an ``[[access]]`` rule: 401 with a Bearer challenge
when nobody is signed in (only possible on a public path), 403 when roles, client roles or
scopes are missing (RFC 6750 ``insufficient_scope`` for a bearer token, a short page for a
browser, JSON for API clients), and a step-up when ``acr``/``max_age`` ask for a stronger or
more recent sign-in (``@require(acr=["gold"], max_age=300)``). ``permission="Bank Account#view"``
asks the policy enforcer (Keycloak Authorization Services): 403 when the server denies it, 503
when it cannot be asked.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec

from adapter.config.access_rules import Requirement
from adapter.web import _guard
from adapter.web._steps import Identity, Respond, WebRequest

_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[asgi]'"
try:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
    from starlette.websockets import WebSocket
except ImportError:
    raise ImportError(
        f"adapter.integrations.starlette needs Starlette; {_EXTRA_HINT}", name="starlette"
    ) from None

P = ParamSpec("P")
_FIX = "wrap the app: OIDCMiddleware(app, config)"


def require(
    roles: Iterable[str] = (),
    client_roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    any_role: Iterable[str] = (),
    *,
    acr: Iterable[str] = (),
    max_age: int | None = None,
    realm: str | None = None,
    logout_path: str = _guard.DEFAULT_LOGOUT_PATH,
    login_path: str = _guard.DEFAULT_LOGIN_PATH,
    permission: str | None = None,
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Let the endpoint run only for an identity holding every role (realm roles), client role
    (this client's roles) and scope listed, and one of ``any_role`` when given; signed in
    with one of the ``acr`` values and at most ``max_age`` seconds ago, when given (step-up:
    a browser's session is sent to sign in again, a bearer token gets RFC 9470's 401).

    ``realm`` goes into the 401's challenge (the middleware uses the client id);
    ``logout_path`` is where the 403 page's "sign in as someone else" button posts, the
    configuration's ``logout-path``; ``login_path`` where a step-up signs in again, its
    ``login-path``. With several tenants, the request's tenant gives them (its client id, its
    paths under its prefix). A websocket endpoint is closed (1008) when refused.

    ``permission`` (``"Bank Account#view"``: a resource's name or id, ``#``, its scopes)
    asks the policy enforcer, as ``await identity.has_permission_async(...)`` does: denied,
    403 (as for a missing role); the identity server unreachable, 503 (a websocket: 1013).
    It needs a ``policy-enforcer`` block in the configuration (without one the request
    fails loudly); a malformed permission fails here, when the route is declared.
    """
    requirement = Requirement.of(roles, client_roles, scopes, any_role, acr, max_age)
    wanted = _guard.permission_text(permission)

    def decorator(func: Callable[P, Any]) -> Callable[P, Any]:
        index, kind = _connection_parameter(func)
        check = _Check(
            func.__qualname__, index, kind, requirement, realm, logout_path, login_path, wanted
        )
        return _guarded(func, check)

    return decorator


@dataclass(frozen=True)
class _Check:
    """What a decorated endpoint asks of each call: where its connection is, what it needs."""

    endpoint: str  # its qualified name, for errors
    index: int  # the connection's position, when passed positionally
    kind: str  # "request" or "websocket": the parameter's name
    requirement: Requirement
    realm: str | None
    logout_path: str
    login_path: str = _guard.DEFAULT_LOGIN_PATH
    permission: str | None = None

    def connection(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
        found = kwargs.get(self.kind, args[self.index] if self.index < len(args) else None)
        if not isinstance(found, HTTPConnection):
            raise TypeError(f"@require: {self.endpoint} got no {self.kind}")
        return found

    def refused(self, connection: HTTPConnection) -> Respond | None:
        """The core's answer when the connection's identity may not call the endpoint (the
        permission aside: :meth:`refused_async`)."""
        identity, request = self._seen(connection)
        return self._answer(identity, request, _guard.tenant_in(connection.scope))

    async def refused_async(self, connection: HTTPConnection) -> Respond | None:
        """:meth:`refused`, then the policy enforcer's answer to the permission."""
        identity, request = self._seen(connection)
        tenant = _guard.tenant_in(connection.scope)
        answer = self._answer(identity, request, tenant)
        if answer is not None or identity is None or self.permission is None:
            return answer
        verdict = await _guard.asked_async(identity, self.permission)
        permission, logout_path = self.permission, self.logout_path
        return _guard.permission_answer(verdict, identity, permission, request, logout_path, tenant)

    def _seen(self, connection: HTTPConnection) -> tuple[Identity | None, WebRequest]:
        identity = _guard.identity_in(connection.scope, _FIX)
        method = connection.scope.get("method", "GET")
        request = _guard.asgi_web_request(method, _text_headers(connection), connection.scope)
        return identity, request

    def _answer(
        self, identity: Identity | None, request: WebRequest, tenant: _guard.RequestTenant | None
    ) -> Respond | None:
        return _guard.answer(
            identity,
            self.requirement,
            request,
            realm=self.realm,
            logout_path=self.logout_path,
            tenant=tenant,
            login_path=self.login_path,
        )


def _guarded(func: Callable[P, Any], check: _Check) -> Callable[P, Any]:
    """``func`` behind ``check``: a websocket closed, an async or sync endpoint answered."""
    if check.kind == "websocket":

        @functools.wraps(func)
        async def websocket_wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
            connection = check.connection(args, kwargs)
            answer = await check.refused_async(connection)
            if answer is not None:
                assert isinstance(connection, WebSocket)
                await connection.close(code=1013 if answer.status == 503 else 1008)
                return
            await func(*args, **kwargs)

        return websocket_wrapper

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            answer = await check.refused_async(check.connection(args, kwargs))
            if answer is not None:
                return _response(answer)
            return await func(*args, **kwargs)

        return async_wrapper

    if check.permission is not None:  # asked on the event loop, the endpoint in a thread

        @functools.wraps(func)
        async def threaded_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            answer = await check.refused_async(check.connection(args, kwargs))
            if answer is not None:
                return _response(answer)
            return await run_in_threadpool(func, *args, **kwargs)

        return threaded_wrapper

    @functools.wraps(func)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        answer = check.refused(check.connection(args, kwargs))
        if answer is not None:
            return _response(answer)
        return func(*args, **kwargs)

    return sync_wrapper


def _response(answer: Respond) -> Response:
    """The core's answer as a Starlette response (its headers as they are)."""
    response = Response(answer.body, answer.status)
    response.raw_headers = [*answer.raw_headers, *response.raw_headers]
    return response


def _connection_parameter(func: Callable[..., Any]) -> tuple[int, str]:
    """Where the endpoint takes its ``request`` (or ``websocket``), found once, as Starlette's
    ``requires`` does: a function endpoint or a method of an ``HTTPEndpoint``."""
    for index, parameter in enumerate(inspect.signature(func).parameters.values()):
        if parameter.name in ("request", "websocket"):
            return index, parameter.name
    raise TypeError(
        f'@require: {func.__qualname__} has no "request" or "websocket" parameter; '
        "name the endpoint's parameter request"
    )


def _text_headers(connection: HTTPConnection) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in connection.scope["headers"]]


__all__ = ["require"]
