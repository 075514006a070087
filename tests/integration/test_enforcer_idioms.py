"""``require(permission="Bank Account#view")`` in each framework integration (Starlette,
FastAPI, Flask, Django) against the real test identity server and its Keycloak Authorization
Services stand-in (tests/idp/authorization.mjs): the idiom asks the policy enforcer through
``identity.has_permission`` (``has_permission_async`` in the ASGI ones), in the shell's own
step I/O, with the grants it remembers.

The bank example of tests/integration/test_policy_enforcer.py: alice may view and delete an
account, bob only view it. The middleware's own enforcement is out of the way (every path
``DISABLED``): the routes decide in code. Bearer tokens from the server's code flow call them;
the UMA grants each call caused are counted in the server's log (``uma.grant``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from adapter import Identity, OIDCMiddleware
from adapter.integrations.fastapi import OIDC as FastAPIOIDC
from adapter.integrations.fastapi import require as fastapi_require
from adapter.integrations.flask import OIDC as FlaskOIDC
from adapter.integrations.starlette import require as starlette_require
from adapter.web._guard import EnforcerMissing
from tests.django_site import django_directory
from tests.idp_server import IdentityServer
from tests.integration.test_policy_enforcer import (
    GRANT,
    bank_server,
    bearer,
    keycloak_json,
    user_token,
)
from tests.web_client import APP, Browser, Stack

FRAMEWORKS = ["starlette", "fastapi", "flask", "django"]
VIEW, DELETE = "Bank Account#view", "Bank Account#delete"
# The middleware lets every request through: the routes' require(permission=...) decides.
BLOCK: dict[str, Any] = {"paths": [{"path": "/*", "enforcement-mode": "DISABLED"}]}
DENIED = {"error": "forbidden", "missing": [DELETE], "kind": "permission"}


# -- the apps, one per framework -------------------------------------------------------------


def starlette_app(config: Path) -> Any:
    @starlette_require(permission=VIEW)
    async def view(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.user.display_name)

    @starlette_require(permission=DELETE)
    def delete(request: Request) -> PlainTextResponse:  # a sync endpoint (in a thread)
        return PlainTextResponse(request.user.display_name)

    return Starlette(
        routes=[Route("/view", view), Route("/delete", delete)],
        middleware=[Middleware(OIDCMiddleware, config=config)],
    )


def fastapi_app(config: Path) -> Any:
    api = FastAPI()

    @api.get("/view")
    async def view(user: Annotated[Identity, Depends(fastapi_require(permission=VIEW))]) -> str:
        return user.display_name

    @api.get("/delete")
    def delete(user: Annotated[Identity, Depends(fastapi_require(permission=DELETE))]) -> str:
        return user.display_name

    FastAPIOIDC(api, config=config)
    return api


def flask_app(config: Path) -> Flask:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # a loud failure is raised, not a 500 page
    oidc = FlaskOIDC(app, config=config)

    @app.get("/view")
    @oidc.require(permission=VIEW)
    def view() -> str:
        identity = oidc.identity
        assert identity is not None
        return identity.display_name

    @app.get("/delete")
    @oidc.require(permission=DELETE)
    async def delete() -> str:  # an async view (Flask runs it in its own loop)
        identity = oidc.identity
        assert identity is not None
        return identity.display_name

    return app


def _django_views() -> list[Any]:
    from django.http import HttpResponse
    from django.urls import path

    from adapter.integrations.django import require

    @require(permission=VIEW)
    def view(request: Any) -> Any:
        return HttpResponse(request.oidc_identity.display_name)

    @require(permission=DELETE)
    def delete(request: Any) -> Any:
        return HttpResponse(request.oidc_identity.display_name)

    return [path("view", view), path("delete", delete)]


urlpatterns: list[Any] = []  # this module is the Django app's URLconf (django_app below)


def django_app(config: Path, stack: ExitStack) -> Any:
    """The Django example project (set up by the ``django`` fixture) with this module's views
    and ``config``; errors propagate (a loud failure is raised, not a 500 page)."""
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings

    from adapter.integrations.django import wrap

    urlpatterns[:] = _django_views()
    chosen = {**settings.OIDC_ADAPTER, "config": str(config)}
    stack.enter_context(
        override_settings(
            ROOT_URLCONF=__name__, OIDC_ADAPTER=chosen, DEBUG_PROPAGATE_EXCEPTIONS=True
        )
    )
    application = wrap(get_wsgi_application())
    stack.callback(application.close)
    return application


def transport(framework: str, config: Path, stack: ExitStack) -> httpx.BaseTransport:
    """The ``framework``'s app in-process, as an httpx transport."""
    if framework == "flask":
        return httpx.WSGITransport(app=flask_app(config))
    if framework == "django":
        return httpx.WSGITransport(app=django_app(config, stack))
    app = starlette_app(config) if framework == "starlette" else fastapi_app(config)
    client = stack.enter_context(TestClient(app, base_url=APP))
    found: httpx.BaseTransport = client._transport
    return found


Caller = Callable[[str, str], httpx.Response]


def caller(framework: str, config: Path, stack: ExitStack) -> Caller:
    """``call(path, token)``: a GET with the bearer token, JSON asked for."""
    http = httpx.Client(transport=transport(framework, config, stack), base_url=APP)
    stack.callback(http.close)
    return lambda path, token: http.get(path, headers=bearer(token))


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def django(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Django set up once per process (tests/django_site.py), its database migrated."""
    django_directory(tmp_path_factory)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    with bank_server(tmp_path_factory.mktemp("enforcer-idioms")) as server:
        yield server


@pytest.fixture(scope="module")
def apps(
    idp: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Caller]]:
    directory = tmp_path_factory.mktemp("idioms")
    config = keycloak_json(directory, idp, BLOCK)
    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            # The shells' single flight hands an answer to the callers of the next seconds
            # too; off, a grant not asked again is the enforcer's memory of it.
            patch.setattr("adapter._shell.INTROSPECTION_REUSE_SECONDS", 0.0)
            made = {name: caller(name, config, stack) for name in FRAMEWORKS}
        yield made


@pytest.fixture(scope="module")
def tokens(idp: IdentityServer) -> dict[str, str]:
    return {login: user_token(idp, login) for login in ("alice", "bob")}


def grants(idp: IdentityServer) -> int:
    return idp.settled_logs().count(GRANT)


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_granted_permission_passes_and_a_denied_one_is_a_403(
    framework: str, apps: dict[str, Caller], tokens: dict[str, str]
) -> None:
    call = apps[framework]
    allowed = call("/view", tokens["alice"])
    assert allowed.status_code == 200, allowed.text
    assert "alice" in allowed.text
    denied = call("/delete", tokens["bob"])
    assert denied.status_code == 403, denied.text
    assert denied.json() == DENIED, "as a denied [[access]] rule or the enforcer's own 403"
    assert denied.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert call("/view", tokens["bob"]).status_code == 200, "bob may view"
    assert call("/delete", tokens["alice"]).status_code == 200, "alice may delete"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_second_identical_check_asks_no_new_grant(
    framework: str, apps: dict[str, Caller], idp: IdentityServer
) -> None:
    token = user_token(idp, "bob")  # a token no app has asked for yet
    call = apps[framework]
    before = grants(idp)
    assert call("/view", token).status_code == 200
    assert grants(idp) == before + 1, "one grant"
    assert call("/view", token).status_code == 200
    assert call("/view", token).status_code == 200
    assert grants(idp) == before + 1, "remembered: no new grant"
    assert call("/delete", token).status_code == 403
    assert call("/delete", token).status_code == 403
    assert grants(idp) == before + 2, "a denial is remembered too"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_session_asks_with_its_access_token(
    framework: str, idp: IdentityServer, tmp_path: Path
) -> None:
    """A browser's session (its identity has an ID token): the grant carries the session's
    access token as its bearer credential, as Keycloak's adapters did."""
    config = keycloak_json(tmp_path, idp, BLOCK)
    with ExitStack() as stack:
        shell = "wsgi" if framework in ("flask", "django") else "asgi"
        browser = Browser(Stack(idp, config, {shell: transport(framework, config, stack)}), shell)
        stack.callback(browser.http.close)
        assert browser.log_in("/view", login="bob").status_code == 200
        line = [line for line in idp.settled_logs().splitlines() if GRANT in line][-1]
        assert '"via":"bearer"' in line, line
        denied = browser.get("/delete", headers={"Accept": "application/json"})
        assert denied.status_code == 403
        assert denied.json() == DENIED


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_a_policy_enforcer_the_idiom_fails_loudly(
    framework: str, idp: IdentityServer, tokens: dict[str, str], tmp_path: Path
) -> None:
    config = keycloak_json(tmp_path, idp, BLOCK)
    document = json.loads(config.read_text())
    del document["policy-enforcer"]
    config.write_text(json.dumps(document))
    with ExitStack() as stack:
        call = caller(framework, config, stack)
        with pytest.raises(EnforcerMissing, match=r"configure policy-enforcer"):
            call("/view", tokens["alice"])


def test_the_identity_server_down_is_a_503(tmp_path: Path) -> None:
    """Every framework's app asks the server once (and validates the token), then the server
    goes away: a permission not asked before is a 503, never a pass nor a 500."""
    with ExitStack() as stack:
        with bank_server(tmp_path) as server:
            token = user_token(server, "alice")
            config = keycloak_json(tmp_path, server, BLOCK)
            calls = {name: caller(name, config, stack) for name in FRAMEWORKS}
            for name, call in calls.items():
                assert call("/view", token).status_code == 200, name
        for name, call in calls.items():
            answer = call("/delete", token)
            assert answer.status_code == 503, (name, answer.status_code, answer.text)
            assert answer.json()["error"] == "temporarily_unavailable", name
            assert answer.headers["retry-after"] == "5", name
            assert call("/view", token).status_code == 200, f"{name}: remembered, not asked"
