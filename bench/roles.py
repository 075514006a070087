"""Lightweight access tokens (issue 24): roles from introspection, once per token.

A Keycloak lightweight access token carries no role claims; with ``roles-from = "auto"`` the
adapter asks the introspection endpoint once per token and keeps the answer's roles until the
token expires. The row measures a bearer request whose roles come from that kept answer
against the same request with a JWT that carries its roles, both on a path an ``[[access]]``
rule guards with a role (so neither request reuses a remembered decision: each is decided in
full, token claims from the validated-token cache), one call each, turn about (target ≤ 1.2).
Tokens are made, and the introspection answered, before the clock runs.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import httpx

from adapter import OIDCMiddleware
from adapter.jose import encode_header, make_signer, sign_compact
from bench.measure import Row, alternated
from bench.requests import ISSUER, asgi_caller, bare_asgi, config, identity_server

TARGET = 1.2  # issue 24: the lightweight-token path, introspection kept, vs a JWT with roles
PATH = "/admin/report"
ROLES = {"realm_access": {"roles": ["admin"]}}


def roles_rows(calls: int) -> list[Row]:
    made = identity_server()
    sign = make_signer("RS256", made.key)
    header = encode_header({"alg": "RS256", "kid": "s1", "typ": "at+jwt"})
    light_claims = json.loads(_payload(made.token(0)))
    light = sign_compact(header, light_claims, sign)
    heavy = sign_compact(header, {**light_claims, "jti": "heavy", **ROLES}, sign)
    introspections: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=_discovery())
        if request.url.path.endswith("/introspect"):
            introspections.append(parse_qs(request.content.decode())["token"][0])
            return httpx.Response(200, json={"active": True, **light_claims, **ROLES})
        return made.idp(request)

    rule = [{"path": "/admin/*", "roles": ["admin"]}]
    common = {"bearer-only": True, "access": rule, "public-client": False}
    credentials = {"method": "client_secret_basic", "secret": "bench-client-secret-" + "x" * 20}
    auto = _middleware(idp, {**common, "roles-from": "auto", "credentials": credentials})
    token = _middleware(idp, {**common, "credentials": credentials})
    light_call = asgi_caller(auto, PATH, headers=[(b"authorization", f"Bearer {light}".encode())])
    heavy_call = asgi_caller(token, PATH, headers=[(b"authorization", f"Bearer {heavy}".encode())])
    assert light_call() == 200 == heavy_call(), "both let in with the admin role"
    assert introspections == [light], "the lightweight token introspected once"
    subject, baseline = alternated(light_call, heavy_call, calls)
    assert introspections == [light], "and never again"
    name = "lightweight token, roles from kept introspection vs JWT with roles (guarded path)"
    return [Row(name, subject, baseline, TARGET)]


def _middleware(idp: Any, settings: dict[str, Any]) -> OIDCMiddleware:
    return OIDCMiddleware(
        bare_asgi, config(**settings), http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
    )


def _discovery() -> dict[str, str]:
    return {
        "issuer": ISSUER,
        "token_endpoint": ISSUER + "/t",
        "jwks_uri": ISSUER + "/jwks",
        "introspection_endpoint": ISSUER + "/introspect",
    }


def _payload(token: str) -> bytes:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
