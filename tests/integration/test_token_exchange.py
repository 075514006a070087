"""Token exchange (RFC 8693) against the real test identity server's stand-in for Keycloak
26.2's standard token exchange V2 (tests/idp/server.mjs ``tokenExchange``: the audience must
be a client, the subject token must have been issued to the caller or name it, no refresh
token). Alice signs in to the app; the app calls the orders API (the adapter in bearer mode,
client ``orders-api``) with her token exchanged: the API sees ``aud = orders-api`` and alice's
``sub``. Exchanged once for several calls (the server's log counts); refusals come back as
``TokenError`` with the server's text; the library client and the async client do the same.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import AsyncOIDCClient, OIDCClient, OIDCWSGIMiddleware, TokenError, current_identity
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, web_client

SECRET = "exchange-client-secret-" + "x" * 40
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ORDERS = "http://orders.internal"
ISSUED = '"event":"token_exchange","client_id":"web","audience":"orders-api","outcome":"issued"'


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    app = web_client(
        SECRET,
        grant_types=["authorization_code", "refresh_token", "client_credentials", GRANT],
    )
    orders = web_client("orders-secret-" + "o" * 40, client_id="orders-api", base=ORDERS)
    directory = tmp_path_factory.mktemp("exchange")
    with IdentityServer([app, orders], tmp_dir=directory, token_exchange=True) as server:
        yield server


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def orders_api(directory: Path, idp: IdentityServer) -> OIDCWSGIMiddleware:
    """The downstream API: the adapter in bearer mode for client ``orders-api``, answering
    the subject and audience of the token it let in."""

    def whoami(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = current_identity(environ)
        assert identity is not None
        body = {"sub": identity.claims["sub"], "aud": identity.claims["aud"]}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    path = directory / "orders.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "orders-api"\nbearer-only = true\n'
        'token-audiences = ["orders-api"]\npublic-client = true\n'
    )
    return OIDCWSGIMiddleware(whoami, path)


def app_config(directory: Path, idp: IdentityServer) -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{"s" * 40}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


def test_an_api_exchanges_its_callers_token_through_its_identity(
    idp: IdentityServer, tmp_path: Path
) -> None:
    downstream = orders_api(tmp_path, idp)
    answers: list[Any] = []

    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = current_identity(environ)
        assert identity is not None
        auth = identity.exchange_auth("orders-api", allowed_origins=[ORDERS])
        transport = httpx.WSGITransport(app=downstream)
        with httpx.Client(transport=transport, base_url=ORDERS, auth=auth) as http:
            for _ in range(3):
                answers.append(http.get("/orders").json())
        exchanged = identity.exchange("orders-api")  # the same one, kept
        answers.append(claims(exchanged.access_token)["azp"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    before = idp.settled_logs().count(ISSUED)
    path = app_config(tmp_path, idp)
    served = OIDCWSGIMiddleware(page, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    assert browser.log_in("/orders-page").status_code == 200
    assert answers[:3] == [{"sub": "alice", "aud": "orders-api"}] * 3
    assert answers[3] == "web", "the app is the actor"
    assert idp.settled_logs().count(ISSUED) - before == 1, "one exchange for four uses"
    served.close()
    downstream.close()


def test_an_app_exchanges_the_users_token_for_the_downstream_audience(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """The library alone (docs/token-exchange.md "From Python"), sync and async."""
    seen: list[Any] = []

    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(current_identity(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    path = app_config(tmp_path, idp)
    served = OIDCWSGIMiddleware(page, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    assert browser.log_in("/").status_code == 200
    user_token = seen[-1].access_token
    with OIDCClient(path) as client:
        orders = client.exchange_token(user_token, audience="orders-api", scope="openid")
        found = claims(orders.access_token)
        assert (found["aud"], found["sub"], found["azp"]) == ("orders-api", "alice", "web")
        assert orders.refresh_token is None, "Keycloak V2: no refresh token unless allowed"
        assert client.exchange_token(user_token, "orders-api", "openid") is orders, "kept"
        with pytest.raises(TokenError) as refused:
            client.exchange_token(user_token, audience="no-such-client")
        assert refused.value.description == "Audience not found"

    async def run_async() -> dict[str, Any]:
        async with AsyncOIDCClient(path) as client:
            tokens = await client.exchange_token(user_token, audience="orders-api")
            return claims(tokens.access_token)

    assert asyncio.run(run_async())["aud"] == "orders-api"
    served.close()


def test_a_token_not_issued_to_the_caller_is_refused_with_the_servers_words(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """Keycloak: "Client is not within the token audience" for a token of another client."""
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("orders-api", "orders-secret-" + "o" * 40),
    )
    foreign = answer.json()["access_token"]
    with OIDCClient(app_config(tmp_path, idp)) as client, pytest.raises(TokenError) as refused:
        client.exchange_token(foreign, audience="orders-api")
    assert refused.value.error == "access_denied"
    assert "audience" in (refused.value.description or "")


def test_an_asgi_app_exchanges_with_await_and_an_async_auth(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """Starlette: ``await request.user.exchange_async(...)`` and ``exchange_auth`` for an
    ``httpx.AsyncClient``; ``identity.exchange`` (for WSGI) says what to use instead."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from adapter import OIDCMiddleware

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity, "aud": request.user.claims["aud"]})

    orders_api(tmp_path, idp).close()  # writes orders.toml: the same API, as an ASGI app here
    routes = [Route("/orders", whoami)]
    downstream = OIDCMiddleware(Starlette(routes=routes), tmp_path / "orders.toml")

    async def page(request: Request) -> JSONResponse:
        identity = request.user
        exchanged = await identity.exchange_async("orders-api")
        with pytest.raises(RuntimeError, match="exchange_async"):
            identity.exchange("orders-api")
        auth = identity.exchange_auth("orders-api")
        transport = httpx.ASGITransport(app=downstream)
        async with httpx.AsyncClient(transport=transport, base_url=ORDERS, auth=auth) as http:
            seen = (await http.get("/orders")).json()
        return JSONResponse({"aud": claims(exchanged.access_token)["aud"], "api": seen})

    app = Starlette(routes=[Route("/exchange", page)])
    path = app_config(tmp_path, idp)
    with TestClient(OIDCMiddleware(app, path), base_url="http://127.0.0.1:8765") as client:
        browser = Browser(Stack(idp, path, {"asgi": client._transport}), "asgi")
        answer = browser.log_in("/exchange")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "aud": "orders-api",
            "api": {"sub": "alice", "aud": "orders-api"},
        }
        browser.http.close()
