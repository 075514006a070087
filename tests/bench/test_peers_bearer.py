"""Issue 26's peer rows for bearer APIs run (one round, a few calls): names, targets, numbers.

Speed is not tested. The rows assert on their own that both sides let every token in (200s,
the same claims); here: each row is there, with its target, and finite positive timings.
"""

from __future__ import annotations

import asyncio
import math

import httpx

from bench.peers_bearer import KeycloakPaths, peer_bearer_rows

NAMES = (
    "bearer, token seen before: oidc-adapter vs fastapi-keycloak-middleware (FastAPI)",
    "bearer, first-seen token: oidc-adapter vs fastapi-keycloak-middleware (FastAPI)",
    "token check, first seen (cold): oidc-adapter vs python-keycloak decode_token (JWKS)",
    "token check, seen before (cached): oidc-adapter vs python-keycloak decode_token (JWKS)",
)


def test_the_peer_bearer_rows_run() -> None:
    rows = peer_bearer_rows(10, 1)
    assert {row.name: row.target for row in rows} == dict.fromkeys(NAMES, 1.0)
    for row in rows:
        assert math.isfinite(row.value), row
        assert row.value > 0, row
        assert math.isfinite(row.baseline), row
        assert row.baseline > 0, row
        assert "fastapi-keycloak-middleware 2." in row.note or "python-keycloak " in row.note


def test_keycloak_paths_are_rewritten_to_the_servers_endpoints() -> None:
    seen: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"keys": []})

    certs = "/realms/bench/protocol/openid-connect/certs"
    transport = KeycloakPaths(httpx.MockTransport(server), {certs: "/realms/bench/jwks"})

    async def fetch() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            await http.get(f"http://127.0.0.1:1{certs}")
            await http.get("http://127.0.0.1:1/realms/bench/.well-known/openid-configuration")

    asyncio.run(fetch())
    assert seen == ["/realms/bench/jwks", "/realms/bench/.well-known/openid-configuration"]
    assert transport.rewritten == 1
