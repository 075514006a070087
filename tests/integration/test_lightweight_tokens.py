"""Keycloak's lightweight access tokens against the real test identity server (issue 24,
docs/keycloak.md "Lightweight access tokens"): the client's JWT access tokens carry no role
claims (``lightweight_access_tokens``), alice holds the realm role ``admin`` at the server, and
an ``[[access]]`` rule asks for it. With ``roles-from = "token"`` the rule refuses her (and the
adapter says why, once); with ``"auto"`` her roles come from introspection, asked once per
token (counted in the server's log), for a session and for a bearer API."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import OIDCWSGIMiddleware, current_identity
from tests.app_server import hello
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, web_client

SECRET = "lightweight-client-secret-" + "l" * 40
API = "urn:oidc-adapter:test-api"
INTROSPECTED = '"event":"introspection","client_id":"web"'


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    client = web_client(SECRET, lightweight_access_tokens=True)
    accounts = {"alice": {"realm_access": {"roles": ["user", "admin"]}}}
    directory = tmp_path_factory.mktemp("lightweight")
    with IdentityServer([client], tmp_dir=directory, accounts=accounts) as server:
        yield server


def configured(directory: Path, idp: IdentityServer, extra: str) -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{"s" * 40}"\n'
        f'scope = "openid profile roles"\ntoken-audiences = ["{API}"]\n{extra}'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
        '[[access]]\npath = "/admin/*"\nroles = ["admin"]\n'
    )
    path.chmod(0o600)
    return path


def signed_in_app(directory: Path, idp: IdentityServer, extra: str) -> tuple[Browser, list[Any]]:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(current_identity(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    path = configured(directory, idp, extra)
    served = OIDCWSGIMiddleware(app, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    return browser, seen


def test_roles_read_from_a_lightweight_token_refuse_the_rule_and_say_why(
    idp: IdentityServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "adapter.web._roles")
    browser, seen = signed_in_app(tmp_path, idp, "")
    assert browser.log_in("/admin/report").status_code == 403
    assert browser.get("/profile").status_code == 200
    assert "admin" not in seen[-1].roles, "the token carries no roles: none granted"
    assert "roles-from" in caplog.text, "the adapter says what to set"


def test_auto_grants_the_servers_roles_to_a_session_with_one_introspection(
    idp: IdentityServer, tmp_path: Path
) -> None:
    before = idp.settled_logs().count(INTROSPECTED)
    browser, seen = signed_in_app(tmp_path, idp, 'roles-from = "auto"\n')
    assert browser.log_in("/admin/report").status_code == 200
    for _ in range(3):
        assert browser.get("/admin/report").status_code == 200
    identity = seen[-1]
    assert "admin" in identity.roles
    assert "realm_access" not in _claims(identity.access_token), "a lightweight token"
    assert idp.settled_logs().count(INTROSPECTED) - before == 1, "once, at sign-in"


def test_auto_grants_the_servers_roles_to_a_bearer_token_once_per_token(
    idp: IdentityServer, tmp_path: Path
) -> None:
    (tmp_path / "app").mkdir()
    browser, seen = signed_in_app(tmp_path / "app", idp, 'roles-from = "auto"\n')
    assert browser.log_in("/profile").status_code == 200
    token = seen[-1].access_token
    (tmp_path / "api").mkdir()
    api_config = configured(tmp_path / "api", idp, 'roles-from = "auto"\nbearer-only = true\n')
    api = OIDCWSGIMiddleware(hello, api_config)
    before = idp.settled_logs().count(INTROSPECTED)
    with httpx.Client(transport=httpx.WSGITransport(app=api), base_url="http://api") as http:
        for _ in range(3):  # a guarded path: each request decided in full
            answer = http.get("/admin/report", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
    plain = OIDCWSGIMiddleware(hello, configured(tmp_path, idp, "bearer-only = true\n"))
    with httpx.Client(transport=httpx.WSGITransport(app=plain), base_url="http://api") as http:
        refused = http.get("/admin/report", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403, "roles-from token: the lightweight token has none"
    assert idp.settled_logs().count(INTROSPECTED) - before == 1, "one call for three requests"
    api.close()
    plain.close()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_signed_introspection_answer_is_verified_and_read(tmp_path: Path) -> None:
    """RFC 9701 (Keycloak: ``Accept: application/jwt``): the roles question is asked for a
    signed answer; a server that signs it (``introspection_signed_response_alg``) answers a
    JWT, verified with its keys, whose ``token_introspection`` grants the role."""
    client = web_client(
        SECRET, lightweight_access_tokens=True, introspection_signed_response_alg="RS256"
    )
    accounts = {"alice": {"realm_access": {"roles": ["user", "admin"]}}}
    features = {"jwtIntrospection": {"enabled": True}}
    with IdentityServer([client], tmp_dir=tmp_path, accounts=accounts, features=features) as idp:
        browser, seen = signed_in_app(tmp_path, idp, 'roles-from = "auto"\n')
        assert browser.log_in("/admin/report").status_code == 200
        assert "admin" in seen[-1].roles
        logs = idp.settled_logs()
        # What the adapter asked for is what this server answers signed: a JWT, not JSON.
        direct = httpx.post(
            idp.metadata["introspection_endpoint"],
            data={"token": seen[-1].access_token},
            auth=("web", SECRET),
            headers={"Accept": "application/token-introspection+jwt, application/json;q=0.5"},
        )
    assert direct.headers["content-type"].startswith("application/token-introspection+jwt")
    assert '"event":"introspection","client_id":"web","status":200,"active":true' in logs
    assert logs.count(INTROSPECTED) == 1
