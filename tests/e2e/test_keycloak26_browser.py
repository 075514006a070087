"""Keycloak 26's tokens in a real browser (issue 24): Chromium signs alice in to a Starlette
app served on 127.0.0.1 by uvicorn, against the test identity server with Keycloak's
lightweight access tokens (no role claims), step-up levels (``silver``, ``gold``) and the
standard token exchange V2 stand-in on.

- ``roles-from = "auto"``: alice's ``admin`` role comes from introspection (one call for her
  token, counted in the server's log), and the ``[[access]]`` rule on ``/admin/*`` lets her in;
- step-up: ``/vault`` asks ``acr = ["gold"]``; her ``silver`` session is sent back to the server
  with ``acr_values=gold`` and comes back at ``gold``; a bearer token at ``silver`` gets RFC
  9470's challenge;
- token exchange: ``/orders`` calls the orders API (the adapter in bearer mode, client
  ``orders-api``) with her token exchanged: it sees ``aud = orders-api`` and her ``sub``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapter import OIDCMiddleware
from tests.app_server import free_port, serve
from tests.e2e.test_browser import browser, local_context, sign_in
from tests.idp_server import IdentityServer, ensure_installed
from tests.web_client import web_client

SECRET = "kc26-e2e-client-secret-" + "k" * 40
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
INTROSPECTED = '"event":"introspection","client_id":"web"'
__all__ = ["browser"]  # the fixture, imported to be used here
EXCHANGED = '"event":"token_exchange","client_id":"web","audience":"orders-api","outcome":"issued"'


def orders_app(config: Path) -> OIDCMiddleware:
    """The orders API: the adapter in bearer mode for ``orders-api``; who and for whom."""

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity, "aud": request.user.claims["aud"]})

    return OIDCMiddleware(Starlette(routes=[Route("/orders", orders)]), config)


def web_app(config: Path, orders: OIDCMiddleware) -> OIDCMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse({"roles": sorted(user.roles), "acr": user.claims.get("acr")})

    async def call_orders(request: Request) -> JSONResponse:
        auth = request.user.exchange_auth("orders-api")
        transport = httpx.ASGITransport(app=orders)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://orders", auth=auth
        ) as http:
            seen = [(await http.get("/orders")).json() for _ in range(2)]
        return JSONResponse(seen[-1])

    routes = [
        Route("/profile", whoami),
        Route("/admin/report", whoami),
        Route("/vault", whoami),
        Route("/orders", call_orders),
    ]
    return OIDCMiddleware(Starlette(routes=routes), config)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, IdentityServer]]:
    ensure_installed()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = web_client(
        SECRET,
        base=base,
        lightweight_access_tokens=True,
        grant_types=["authorization_code", "refresh_token", "client_credentials", GRANT],
    )
    orders = web_client("orders-secret-" + "o" * 40, client_id="orders-api", base="http://o")
    accounts = {"alice": {"realm_access": {"roles": ["user", "admin"]}}}
    with IdentityServer(
        [web, orders],
        tmp_dir=tmp_path,
        accounts=accounts,
        acr_values=["silver", "gold"],
        token_exchange=True,
    ) as idp:
        config = tmp_path / "adapter.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{"s" * 40}"\n'
            'scope = "openid profile roles"\nroles-from = "auto"\n'
            'token-audiences = ["urn:oidc-adapter:test-api"]\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
            '[[access]]\npath = "/admin/*"\nroles = ["admin"]\n'
            '[[access]]\npath = "/vault"\nacr = ["gold"]\n'
        )
        config.chmod(0o600)
        orders_config = tmp_path / "orders.toml"
        orders_config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "orders-api"\nbearer-only = true\n'
            'token-audiences = ["orders-api"]\npublic-client = true\n'
        )
        with serve("asgi", web_app(config, orders_app(orders_config)), port=port) as url:
            yield url, idp


def test_lightweight_roles_step_up_and_token_exchange(
    browser: object, world: tuple[str, IdentityServer]
) -> None:
    app, idp = world
    context = local_context(browser)
    page = context.new_page()
    before = idp.settled_logs()
    page.goto(f"{app}/admin/report")
    sign_in(page, "alice")
    page.wait_for_url(f"{app}/admin/report")
    shown = json.loads(page.inner_text("body"))
    assert "admin" in shown["roles"], "the role came from introspection"
    assert shown["acr"] == "silver"
    logs = idp.settled_logs()
    assert logs.count(INTROSPECTED) - before.count(INTROSPECTED) == 1

    # Step-up: /vault wants gold; the silver session goes back to the server asking for it.
    asked: list[str] = []
    page.on("request", lambda sent: asked.append(sent.url))
    page.goto(f"{app}/vault")
    authorize = [u for u in asked if u.startswith(idp.metadata["authorization_endpoint"])]
    assert authorize, asked
    assert parse_qs(urlsplit(authorize[0]).query)["acr_values"] == ["gold"]
    page.wait_for_url(lambda url: not url.startswith(f"{app}/oidc/"))
    if page.url.startswith(idp.issuer):  # the server asks her to sign in again for gold
        page.fill("input[name=login]", "alice")
        page.fill("input[name=password]", "any-password")
        page.click("button[type=submit]")  # consent was given at the first sign-in
    page.wait_for_url(f"{app}/vault")
    assert json.loads(page.inner_text("body"))["acr"] == "gold"

    # Token exchange: the orders API sees a token for itself, alice's.
    page.goto(f"{app}/orders")
    assert json.loads(page.inner_text("body")) == {"sub": "alice", "aud": "orders-api"}
    logs = idp.settled_logs()
    assert logs.count(EXCHANGED) - before.count(EXCHANGED) == 1, "once for two calls"
    context.close()


def test_a_bearer_token_below_the_level_gets_the_rfc_9470_challenge(
    world: tuple[str, IdentityServer],
) -> None:
    app, idp = world
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("web", SECRET),
    )
    token = answer.json()["access_token"]
    refused = httpx.get(f"{app}/vault", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="gold"' in challenge
