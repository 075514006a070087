"""Step-up against the real identity server (its acr levels stand in for Keycloak's: "silver"
unless the login asks for "gold"), in both shells and in the framework idioms: a session
signed in at silver is sent back to the server with ``acr_values=gold``, signs in again there
and reaches the page; a bearer token at silver gets RFC 9470's challenge, one at gold passes."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from adapter.web._steps import Identity
from tests.idp_server import IdentityServer
from tests.integration.test_security import catch_all_asgi, catch_all_wsgi
from tests.web_client import APP, Browser, Stack, authorization_code, web_client

SECRET = "step-up-client-secret-" + "u" * 40
SESSION_SECRET = "step-up-session-secret-" + "v" * 24
API = "urn:oidc-adapter:test-api"  # the test server's default resource: its tokens' audience
CALLBACK = f"{APP}/oidc/callback"
RULES = """
[[access]]
path = "/gold"
acr = ["gold"]
"""


@dataclass
class World:
    idp: IdentityServer
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("step-up")
    with IdentityServer(
        [web_client(SECRET)], tmp_dir=directory, acr_values=["silver", "gold"]
    ) as idp:
        yield World(idp, directory)


def write_config(world: World, rules: str = RULES) -> Path:
    path = world.directory / "adapter.toml"
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\n'
        f'session-secret = "{SESSION_SECRET}"\ntoken-audiences = ["{API}"]\n{rules}\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


def browser_for(world: World, shell: str, app: Any, stack: ExitStack, path: Path) -> Browser:
    if shell == "wsgi":
        transport: httpx.BaseTransport = httpx.WSGITransport(app=app)
    else:
        transport = stack.enter_context(TestClient(app, base_url=APP))._transport
    browser = Browser(Stack(world.idp, path, {shell: transport}), shell)
    stack.callback(browser.http.close)
    return browser


def steps_up(browser: Browser, page: str) -> None:
    """Signed in at silver, ``page`` sends the browser back to sign in with acr_values=gold;
    the server asks for the login again and the page then answers."""
    signed_in = browser.walk(browser.get("/oidc/login?next=/me"))
    assert signed_in.status_code == 200, signed_in.text
    refused = browser.get(page)
    assert refused.status_code == 302, refused.text
    target = urlsplit(refused.headers["location"])
    assert target.path == "/oidc/login"
    assert parse_qs(target.query) == {"next": [page], "acr_values": ["gold"]}
    login = browser.get(refused.headers["location"])
    assert login.status_code == 302
    asked = parse_qs(urlsplit(login.headers["location"]).query)
    assert asked["acr_values"] == ["gold"]
    assert "prompt" not in asked
    stepped = browser.walk(login)
    assert stepped.status_code == 200, stepped.text
    assert urlsplit(str(stepped.url)).path == page
    assert browser.get(page).status_code == 200, "stepped up: the session stays at gold"


def token_at(world: World, **params: str) -> str:
    """Alice's access token from a login of her own (code + PKCE), at the level it asks."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": "web",
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **params,
    }
    with httpx.Client(timeout=10) as http:
        start = http.get(f"{world.idp.metadata['authorization_endpoint']}?{urlencode(query)}")
        code = authorization_code(http, start, CALLBACK)["code"]
    answer = httpx.post(
        world.idp.metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=("web", SECRET),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer_steps_up(browser: Browser, world: World, page: str) -> None:
    silver = {"Authorization": f"Bearer {token_at(world)}", "Accept": "application/json"}
    refused = browser.get(page, cookies={}, headers=silver)
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert 'acr_values="gold"' in challenge
    gold = {"Authorization": f"Bearer {token_at(world, acr_values='gold')}"}
    assert browser.get(page, cookies={}, headers=gold).status_code == 200


# --- the [[access]] rule, in both shells --------------------------------------------------------


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_a_rule_with_acr_steps_a_session_and_a_bearer_token_up(world: World, shell: str) -> None:
    path = write_config(world)
    with ExitStack() as stack:
        app: Any = (
            OIDCMiddleware(catch_all_asgi, path)  # type: ignore[arg-type]
            if shell == "asgi"
            else OIDCWSGIMiddleware(catch_all_wsgi, path)
        )
        browser = browser_for(world, shell, app, stack, path)
        steps_up(browser, "/gold")
        bearer_steps_up(browser, world, "/gold")


# --- the idioms: Starlette, FastAPI, Flask ------------------------------------------------------


def starlette_app(path: Path) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from adapter.integrations.starlette import require

    @require(acr=["gold"])
    async def gold(request: Request) -> PlainTextResponse:
        return PlainTextResponse("gold")

    async def me(request: Request) -> PlainTextResponse:
        return PlainTextResponse("me")

    app = Starlette(routes=[Route("/gold", gold), Route("/me", me)])
    return OIDCMiddleware(app, path)


def fastapi_app(path: Path) -> Any:
    from fastapi import Depends, FastAPI

    from adapter.integrations.fastapi import OIDC, require

    app = FastAPI()
    OIDC(app, config=path)

    @app.get("/gold")
    def gold(user: Identity = Depends(require(acr=["gold"]))) -> dict[str, str]:  # noqa: B008
        return {"user": user.display_name}

    @app.get("/me")
    def me() -> dict[str, str]:
        return {}

    return app


def flask_app(path: Path) -> Any:
    import flask

    from adapter.integrations.flask import OIDC

    app = flask.Flask(__name__)
    oidc = OIDC(app, config=path)

    @app.get("/gold")
    @oidc.require(acr=["gold"])
    def gold() -> str:
        return "gold"

    @app.get("/me")
    def me() -> str:
        return "me"

    return app


IDIOMS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "starlette": ("asgi", starlette_app),
    "fastapi": ("asgi", fastapi_app),
    "flask": ("wsgi", flask_app),
}


@pytest.mark.parametrize("idiom", sorted(IDIOMS))
def test_the_idioms_step_up_as_the_rules_do(world: World, idiom: str) -> None:
    path = write_config(world, rules="")
    shell, make = IDIOMS[idiom]
    with ExitStack() as stack:
        browser = browser_for(world, shell, make(path), stack, path)
        steps_up(browser, "/gold")
        bearer_steps_up(browser, world, "/gold")


def test_djangos_require_steps_up_as_the_rules_do(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Django's decorator, with identities handed in as the WSGI middleware hands them."""
    from tests.django_site import django_directory, write_adapter_config

    directory = django_directory(tmp_path_factory)
    if not (directory / "adapter.toml").exists():
        write_adapter_config(directory, "https://sso.example.com/realms/django", SECRET)
    from django.http import HttpResponse
    from django.test import RequestFactory

    from adapter.integrations.django import require

    @require(acr=["gold"], max_age=300)
    def gold(request: Any) -> HttpResponse:
        return HttpResponse("gold")

    now = int(time.time())
    silver = Identity(
        {"sub": "alice", "acr": "silver", "auth_time": now}, "alice", *(frozenset(),) * 3
    )
    golden = Identity(
        {"sub": "alice", "acr": "gold", "auth_time": now}, "alice", *(frozenset(),) * 3
    )
    factory = RequestFactory()
    page = gold(
        factory.get("/gold", {"tab": "1"}, HTTP_ACCEPT="text/html", **{"oidc.identity": silver})
    )
    assert page.status_code == 302
    target = urlsplit(page["Location"])
    assert target.path == "/oidc/login"
    assert parse_qs(target.query) == {
        "next": ["/gold?tab=1"], "acr_values": ["gold"], "max_age": ["300"]
    }  # fmt: skip
    api = gold(factory.get("/gold", HTTP_AUTHORIZATION="Bearer t", **{"oidc.identity": silver}))
    assert api.status_code == 401
    assert api["WWW-Authenticate"].startswith('Bearer error="insufficient_user_authentication"')
    assert gold(factory.get("/gold", **{"oidc.identity": golden})).status_code == 200
