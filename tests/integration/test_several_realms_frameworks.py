"""The framework idioms with several realms (docs/tenants.md): FastAPI's ``OIDC`` and
``require``, Flask's extension, Starlette's ``@require`` and Django's integration serve each
request with its own tenant (its roles checked, its 403 page posting to its own logout under
its prefix, its client id in a 401), against two real identity servers. FastAPI, Flask and
Starlette choose tenants by path prefix; Django by host (``127.0.0.1`` is acme, ``localhost``
globex), since its URLs carry no prefix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from adapter import Identity
from adapter.integrations.fastapi import require
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, web_client

SECRETS = {"acme": "acme-client-secret-" + "a" * 40, "globex": "globex-client-secret-" + "g" * 40}
HOSTS = {"acme": "127.0.0.1", "globex": "localhost"}  # by host: both reach this process
PORT = APP.rsplit(":", 1)[1]
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}
API = "urn:oidc-adapter:test-api"
HTML = {"Accept": "text/html"}


def client(name: str) -> dict[str, Any]:
    """Tenant ``name``'s client: the app under its prefix, or on its host."""
    by_host = f"http://{HOSTS[name]}:{PORT}"
    bases = [f"{APP}/{name}", by_host]
    return web_client(
        SECRETS[name],
        redirect_uris=[f"{b}/oidc/callback" for b in bases],
        post_logout_redirect_uris=[f"{b}/oidc/logout" for b in bases],
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, IdentityServer]]:
    directory = tmp_path_factory.mktemp("realms")
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                IdentityServer(
                    [client(name)],
                    tmp_dir=directory,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                    accounts=ACCOUNTS,
                )
            )
            for name in ("acme", "globex")
        }


def tenants_file(
    directory: Path, servers: dict[str, IdentityServer], by: str, public: str = '"/"'
) -> Path:
    """Two tenants, by path prefix (``by="prefix"``) or by host."""
    (directory / "tenants").mkdir(exist_ok=True)
    entries = ""
    for name, idp in servers.items():
        tenant = directory / "tenants" / f"{name}.toml"
        tenant.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRETS[name]}"\n'
        )
        tenant.chmod(0o600)
        where = f'path-prefix = "/{name}"' if by == "prefix" else f'host = "{HOSTS[name]}"'
        entries += f'[[tenants]]\nname = "{name}"\nconfig = "tenants/{name}.toml"\n{where}\n'
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "tenants-session-secret-{"s" * 24}"\npublic-paths = [{public}]\n'
        f'scope = "openid profile email roles"\ntoken-audiences = ["{API}"]\n{entries}'
    )
    path.chmod(0o600)
    return path


def browser_for(transport: httpx.BaseTransport, idp: IdentityServer, config: Path) -> Browser:
    return Browser(Stack(idp, config, {"app": transport}), "app")


def sign_in(browser: Browser, servers: dict[str, IdentityServer], name: str, login: str) -> Any:
    browser.idp = servers[name]
    return browser.log_in(f"/{name}/admin", login)


def service_token(idp: IdentityServer, name: str) -> str:
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", SECRETS[name]),
    )
    return str(answer.json()["access_token"])


def assert_refused_at_its_own_logout(browser: Browser, name: str) -> None:
    """The 403 page of tenant ``name``: its "sign in as someone else" posts to its logout."""
    page = browser.get(f"/{name}/admin", headers=HTML)
    assert page.status_code == 403, page.text
    assert f'action="/{name}/oidc/logout"' in page.text, page.text


# -- FastAPI --------------------------------------------------------------------------------


@dataclass
class FastAPISite:
    browser: Browser
    oidc: Any


@pytest.fixture
def fastapi_site(servers: dict[str, IdentityServer], tmp_path: Path) -> Iterator[FastAPISite]:
    from starlette.testclient import TestClient

    from adapter.integrations.fastapi import OIDC

    app = FastAPI()  # its routes' annotations name module-level objects (FastAPI reads them)

    @app.get("/{tenant}/admin")
    def admin(tenant: str, user: Annotated[Identity, Depends(require(roles=["admin"]))]) -> Any:
        return {"user": user.display_name, "tenant": user.tenant, "path_tenant": tenant}

    @app.get("/api/reports")
    def reports(user: Annotated[Identity, Depends(require(roles=["auditor"]))]) -> Any:
        return {"tenant": user.tenant}

    config = tenants_file(tmp_path, servers, "prefix", public='"/", "/openapi.json"')
    oidc = OIDC(app, config=config, swagger_client_id="docs", docs_tenant="globex")
    with TestClient(app, base_url=APP) as http:
        browser = browser_for(http._transport, servers["acme"], config)
        yield FastAPISite(browser, oidc)
        browser.http.close()


def test_fastapi_require_answers_with_the_requests_tenant(
    fastapi_site: FastAPISite, servers: dict[str, IdentityServer]
) -> None:
    browser = fastapi_site.browser
    page = sign_in(browser, servers, "acme", "alice")
    assert page.json() == {"user": "alice", "tenant": "acme", "path_tenant": "acme"}
    refused = sign_in(browser, servers, "globex", "bob")  # bob is no admin at globex
    assert refused.json() == {"error": "forbidden", "missing": ["admin"], "kind": "role"}
    assert_refused_at_its_own_logout(browser, "globex")
    assert browser.get("/acme/admin").json()["user"] == "alice"  # acme's session lives on
    # A bearer token on the shared API path: its issuer's tenant, that tenant's 403.
    token = service_token(servers["globex"], "globex")
    api = browser.get("/api/reports", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 403, api.text
    assert api.json() == {"error": "forbidden", "missing": ["auditor"], "kind": "role"}


def test_fastapi_openapi_names_the_docs_tenants_issuer(
    fastapi_site: FastAPISite, servers: dict[str, IdentityServer]
) -> None:
    schema = fastapi_site.browser.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["oidc"]
    flow = scheme["flows"]["authorizationCode"]  # swagger_client_id: the code flow alone
    assert flow["authorizationUrl"].startswith(servers["globex"].issuer), flow
    assert fastapi_site.oidc.config.issuer == servers["globex"].issuer


def test_fastapi_docs_tenant_must_be_a_tenant(
    servers: dict[str, IdentityServer], tmp_path: Path
) -> None:
    from adapter import ConfigError
    from adapter.integrations.fastapi import OIDC

    config = tenants_file(tmp_path, servers, "prefix")
    with pytest.raises(ConfigError, match="tenant 'initech': not a tenant of this app"):
        OIDC(FastAPI(), config=config, docs_tenant="initech")


# -- Flask ----------------------------------------------------------------------------------


def test_flask_require_and_identity_per_tenant(
    servers: dict[str, IdentityServer], tmp_path: Path
) -> None:
    import flask

    from adapter.integrations.flask import OIDC

    config = tenants_file(tmp_path, servers, "prefix")
    app = flask.Flask(__name__)
    oidc = OIDC(app, config=config)

    @app.get("/<tenant>/admin")
    @oidc.require(roles=["admin"])
    def admin(tenant: str) -> Any:
        user = oidc.identity
        assert user is not None
        return {"user": user.display_name, "tenant": user.tenant}

    browser = browser_for(httpx.WSGITransport(app=app), servers["acme"], config)
    try:
        assert sign_in(browser, servers, "acme", "alice").json() == {
            "user": "alice",
            "tenant": "acme",
        }
        assert sign_in(browser, servers, "globex", "bob").status_code == 403
        assert_refused_at_its_own_logout(browser, "globex")
        globex = oidc.middleware(app).client_for("globex")
        assert globex.config.issuer == servers["globex"].issuer  # its own service account
    finally:
        browser.http.close()
        oidc.middleware(app).close()


# -- Starlette ------------------------------------------------------------------------------


def test_starlette_require_per_tenant_under_mount(
    servers: dict[str, IdentityServer], tmp_path: Path
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    from adapter import OIDCMiddleware
    from adapter.integrations.starlette import require

    @require(roles=["admin"])
    async def admin(request: Request) -> Response:
        return JSONResponse({"user": request.user.display_name, "tenant": request.user.tenant})

    async def open_page(request: Request) -> Response:
        return JSONResponse({"user": None})

    @require(roles=["admin"])
    async def guarded_public(request: Request) -> Response:
        return JSONResponse({"never": True})

    config = tenants_file(tmp_path, servers, "prefix", public='"/", "/acme/open"')
    routes = [Mount(f"/{name}", routes=[Route("/admin", admin)]) for name in servers]
    routes.append(Route("/acme/open", guarded_public))
    app = Starlette(routes=routes)
    with TestClient(OIDCMiddleware(app, config), base_url=APP) as http:
        browser = browser_for(http._transport, servers["acme"], config)
        anonymous = browser.get("/acme/open", headers={"Accept": "application/json"})
        assert anonymous.status_code == 401  # acme's public page: acme's client in the challenge
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="web"'
        assert sign_in(browser, servers, "acme", "alice").json() == {
            "user": "alice",
            "tenant": "acme",
        }
        assert sign_in(browser, servers, "globex", "bob").status_code == 403
        assert_refused_at_its_own_logout(browser, "globex")
        browser.http.close()


# -- Django (tenants by host) ---------------------------------------------------------------


@pytest.fixture
def django_hosts(
    servers: dict[str, IdentityServer],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, Browser]]:
    """The example project by host; ``admin_tenants`` from an indirect parameter (none)."""
    from tests.django_site import django_directory

    django_directory(tmp_path_factory)
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    import adapter.integrations.django as integration

    config = tenants_file(tmp_path, servers, "host")
    saved = dict(integration._INSTALLED)
    chosen = {
        **settings.OIDC_ADAPTER,  # staff_roles, superuser_roles: admin; groups: user -> Users
        "config": str(config),
        "admin_tenants": list(getattr(request, "param", [])),
    }
    with override_settings(OIDC_ADAPTER=chosen):
        application = integration.wrap(get_wsgi_application())
        transport = httpx.WSGITransport(app=application)
        browsers = {
            name: Browser(
                Stack(idp, config, {"wsgi": transport}), "wsgi", f"http://{HOSTS[name]}:{PORT}"
            )
            for name, idp in servers.items()
        }
        try:
            yield browsers
        finally:
            for browser in browsers.values():
                browser.http.close()
            application.close()
            integration._INSTALLED.clear()
            integration._INSTALLED.update(saved)


def test_django_users_are_per_tenant_by_host(django_hosts: dict[str, Browser]) -> None:
    from django.contrib.auth import get_user_model

    acme, globex = django_hosts["acme"], django_hosts["globex"]
    page = acme.log_in("/private", login="alice")
    assert page.status_code == 200, page.text
    assert "<dd id='username'>acme:alice</dd>" in page.text  # a realm's users are its own
    staff = globex.log_in("/staff", login="bob")
    assert staff.status_code == 403, staff.text  # bob is no admin at globex: its 403
    assert 'action="/oidc/logout"' in globex.get("/staff", headers=HTML).text
    assert globex.get("/api/whoami").json()["username"] == "globex:bob"
    users = get_user_model().objects
    assert users.filter(username__in=["acme:alice", "globex:bob"]).count() == 2
    anonymous = globex.get("/staff", cookies={}, headers=HTML, follow_redirects=False)
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith("/oidc/login?next=%2Fstaff")


def whoami(browser: Browser) -> tuple[str, bool, bool, list[str]]:
    me = browser.get("/api/whoami").json()
    return me["username"], me["staff"], me["superuser"], me["groups"]


def assert_not_let_into_the_admin(browser: Browser) -> None:
    """Django's admin sends a user who is not staff to its login: admin_urls()' 403 page."""
    admin = browser.get("/admin/", headers=HTML)
    assert admin.status_code == 302, admin.text
    assert admin.headers["location"].startswith("/admin/login/")
    login = browser.get(admin.headers["location"], headers=HTML)
    assert login.status_code == 403, login.text
    assert 'name="password"' not in login.text


def test_django_no_tenants_roles_make_staff_without_admin_tenants(
    django_hosts: dict[str, Browser],
) -> None:
    """alice is admin at acme, and staff_roles / superuser_roles name admin: with no
    admin_tenants, acme's admins grant themselves nothing in Django (they could grant
    themselves the role), and a user made staff before loses it, as on losing the role."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    users = get_user_model().objects
    before, _ = users.get_or_create(username="acme:alice")
    before.set_unusable_password()
    before.is_staff = before.is_superuser = True
    before.save()
    before.groups.add(Group.objects.get_or_create(name="Users")[0])
    acme = django_hosts["acme"]
    assert acme.log_in("/private", login="alice").status_code == 200
    assert whoami(acme) == ("acme:alice", False, False, [])
    user = users.get(username="acme:alice")
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert_not_let_into_the_admin(acme)
    # require(roles=...) is the app's own check of the request's realm's roles: unchanged.
    assert acme.get("/staff", headers=HTML).status_code == 200


@pytest.mark.parametrize("django_hosts", [["acme"]], indirect=True)
def test_django_admin_tenants_roles_make_staff_only_there(
    django_hosts: dict[str, Browser],
) -> None:
    from django.contrib.auth import get_user_model

    acme, globex = django_hosts["acme"], django_hosts["globex"]
    assert acme.log_in("/staff", login="alice").status_code == 200
    assert whoami(acme) == ("acme:alice", True, True, ["Users"])
    admin = acme.get("/admin/", headers=HTML)
    assert admin.status_code == 200, admin.text  # Django's admin lets acme's admin in
    # alice is admin at globex too, but globex is no admin tenant: no staff, no groups.
    assert globex.log_in("/private", login="alice").status_code == 200
    assert whoami(globex) == ("globex:alice", False, False, [])
    assert_not_let_into_the_admin(globex)
    flags = dict(
        get_user_model()
        .objects.filter(username__in=["acme:alice", "globex:alice"])
        .values_list("username", "is_superuser")
    )
    assert flags == {"acme:alice": True, "globex:alice": False}


@pytest.mark.parametrize(
    ("admin_tenants", "plain", "message"),
    [
        (["initech"], False, r"'initech' is not a tenant .*\(its tenants: acme, globex\)"),
        (["acme"], True, "the configuration is not a tenants file .*remove admin_tenants"),
        ("acme", False, "give a list of tenant names"),
        ([""], False, "give a list of tenant names"),
    ],
)
def test_django_admin_tenants_must_name_tenants(
    servers: dict[str, IdentityServer],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    admin_tenants: Any,
    plain: bool,
    message: str,
) -> None:
    from tests.django_site import django_directory, write_adapter_config

    django_directory(tmp_path_factory)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    import adapter.integrations.django as integration

    if plain:
        config = write_adapter_config(tmp_path, servers["acme"].issuer, SECRETS["acme"])
    else:
        config = tenants_file(tmp_path, servers, "host")
    saved = dict(integration._INSTALLED)
    chosen = {**settings.OIDC_ADAPTER, "config": str(config), "admin_tenants": admin_tenants}
    with override_settings(OIDC_ADAPTER=chosen), pytest.raises(ImproperlyConfigured) as error:
        integration.wrap(get_wsgi_application())
    assert "\n" not in str(error.value)
    assert error.match(r'settings\.OIDC_ADAPTER\["admin_tenants"\]: ' + message)
    assert integration._INSTALLED.get("application") is saved.get("application")  # refused
