"""Bearer APIs side by side with what users would install instead (issue 26).

Two peers, each configured as its own README says, each given tokens of the same identity
server as the adapter, in the same run:

- **fastapi-keycloak-middleware** (2.x): a FastAPI app behind its ``KeycloakMiddleware``
  (``setup_keycloak_middleware``, the route asking ``Depends(get_user)``) against the same app
  behind the adapter's FastAPI integration (``OIDC(app, config=...)``, the route asking
  ``Depends(require())``), one ASGI call each without sockets (``bench.requests.asgi_caller``);
  a token seen before, and a new token each call.
- **python-keycloak**: ``KeycloakOpenID.decode_token(token, key=<the realm's JWKS>)`` against the
  adapter's access-token check (``OIDCClient.validate_access_token``) of the same token, from
  its validated-token cache emptied before each call (cold) and from the cache (seen before).
  The key set is the ``JWKSet`` that ``decode_token`` builds from ``certs()`` when given no
  key, built once (its docs' ``decode_token(token)`` fetches the certs over HTTP every call).

Each row is timed turn about, one call each, each call timed on its own (as
``bench.measure.alternated``): two requests a few µs apart meet the same machine speed.

The identity server is the test server (``tests.idp_server.IdentityServer``, node
oidc-provider) with the Keycloak-like issuer ``http://127.0.0.1:{port}/realms/bench``; every
token is a ``client_credentials`` access token (RS256, ``typ: at+jwt``) it issued, fetched
before the clock runs. Keycloak clients build Keycloak's own URLs
(``{server}/realms/{realm}/protocol/openid-connect/certs``), which oidc-provider serves at
``jwks_uri`` instead: the peers' HTTP client goes through :class:`KeycloakPaths`, an httpx
transport that rewrites those paths to the server's endpoints (the adapter reads discovery
and needs none). Without node, the rows fall back to ``bench.requests``' in-process
``MockTransport`` server (the same RS256 tokens for both) and say so in their notes.

Neither peer remembers a token: each request verifies the signature again (jwcrypto), so for
the peers "seen before" and "first seen" cost the same. They also check less than the adapter
(their defaults, as documented): signature and ``exp``/``nbf`` (60 s leeway), no issuer, no
audience, no token type; the adapter checks all of these.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from itertools import cycle
from typing import Any

import httpx

from adapter import OIDCClient, load_config
from bench.measure import Row, alternated
from bench.requests import LOOP, asgi_caller, identity_server

REALM = "bench"
API = "urn:oidc-adapter:bench-api"  # the resource the tokens are for (their aud)
CLIENT = "bench-service"  # the service account asking the server for tokens
CLIENT_SECRET = "bench-service-secret-0123456789abcdef"  # noqa: S105 - a benchmark fixture
PATH = "/api/me"
TARGET = 1.0  # issue 26: the adapter at most as slow as the peer
MIDDLEWARE_PEER = "fastapi-keycloak-middleware"
DECODER_PEER = "python-keycloak"


@dataclass
class Realm:
    """An identity server as both sides see it: its issuer, how to reach it, its tokens."""

    issuer: str
    audience: str
    sync_transport: Callable[[], httpx.BaseTransport]
    async_transport: Callable[[], httpx.AsyncBaseTransport]
    tokens: Callable[[int], list[str]]  # that many distinct access tokens, made now
    source: str  # for the notes: which server issued the tokens
    keycloak_paths: dict[str, str] = field(default_factory=dict)

    @property
    def server_url(self) -> str:
        """What a Keycloak client is given: the issuer without ``/realms/<realm>``."""
        return self.issuer.removesuffix(f"/realms/{REALM}")


class KeycloakPaths(httpx.AsyncBaseTransport):
    """Rewrites the paths a Keycloak client builds (``.../protocol/openid-connect/certs``) to
    the endpoints the test server announces in its discovery document; the rest passes."""

    def __init__(self, inner: httpx.AsyncBaseTransport, paths: Mapping[str, str]) -> None:
        self.inner = inner
        self.paths = dict(paths)
        self.rewritten = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.paths.get(request.url.path)
        if target is not None:
            request.url = request.url.copy_with(path=target)
            self.rewritten += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.contextmanager
def realm() -> Iterator[Realm]:
    """The test identity server (node), or the in-process one where node is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        yield in_process_realm()
        return
    client = {
        "client_id": CLIENT,
        "client_secret": CLIENT_SECRET,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
    }
    with node_server([client], {"ClientCredentials": 3600, "AccessToken": 3600}) as server:
        yield node_realm(server.issuer, server.metadata)


@contextlib.contextmanager
def node_server(clients: Sequence[Mapping[str, Any]], ttl: Mapping[str, int]) -> Iterator[Any]:
    """The test identity server (node oidc-provider) for the peer rows: the bench's issuer
    (``/realms/bench``) and API resource, these clients and token lifetimes; stopped after."""
    from tests.idp_server import IdentityServer

    with IdentityServer(
        clients=list(clients),
        issuer=f"http://127.0.0.1:{{port}}/realms/{REALM}",
        resource=API,
        ttl=dict(ttl),
    ) as server:
        yield server


def node_realm(issuer: str, discovery: Mapping[str, Any]) -> Realm:
    base = f"/realms/{REALM}/protocol/openid-connect"
    paths = {
        f"{base}/certs": httpx.URL(discovery["jwks_uri"]).path,
        f"{base}/token/introspect": httpx.URL(discovery["introspection_endpoint"]).path,
        f"{base}/token": httpx.URL(discovery["token_endpoint"]).path,
    }

    def tokens(count: int) -> list[str]:
        with httpx.Client(timeout=30) as http:
            return [
                http.post(
                    discovery["token_endpoint"],
                    data={"grant_type": "client_credentials", "scope": "api:read"},
                    auth=(CLIENT, CLIENT_SECRET),
                ).json()["access_token"]
                for _ in range(count)
            ]

    return Realm(
        issuer=issuer,
        audience=API,
        sync_transport=httpx.HTTPTransport,
        async_transport=httpx.AsyncHTTPTransport,
        tokens=tokens,
        source="the test identity server (node oidc-provider)",
        keycloak_paths=paths,
    )


def in_process_realm() -> Realm:
    """bench.requests' MockTransport server: it answers its JWKS at any path but discovery,
    Keycloak's ``.../certs`` included."""
    made = identity_server()
    counter = iter(range(10**9))
    issuer = "https://sso.example.com/realms/bench"
    return Realm(
        issuer=issuer,
        audience="api",
        sync_transport=lambda: httpx.MockTransport(made.idp),
        async_transport=lambda: httpx.MockTransport(made.idp),
        tokens=lambda count: [made.token(next(counter)) for _ in range(count)],
        source="the in-process MockTransport identity server (node missing)",
    )


def adapter_config(where: Realm) -> Any:
    return load_config(
        {
            "issuer": where.issuer,
            "client-id": "bench-api",
            "bearer-only": True,
            "token-audiences": [where.audience],
        }
    )


# --- FastAPI apps, as each README sets them up ----------------------------------------------------


def adapter_app(where: Realm) -> Any:
    """docs/fastapi.md: ``OIDC(app, config=...)`` and ``Depends(require())`` on the route."""
    from fastapi import Depends, FastAPI

    from adapter import Identity
    from adapter.integrations.fastapi import OIDC, require

    app = FastAPI()
    http = httpx.AsyncClient(transport=where.async_transport())
    OIDC(app, config=adapter_config(where), http=http)

    @app.get(PATH)
    async def me(user: Identity = Depends(require())) -> dict[str, str]:  # noqa: B008
        return {"sub": str(user.claims["sub"])}

    return app


def peer_app(where: Realm) -> tuple[Any, KeycloakPaths]:
    """fastapi-keycloak-middleware's README: ``setup_keycloak_middleware`` with a
    ``KeycloakConfiguration`` (its defaults: local validation with the realm's JWKS, fetched on
    the first request) and ``Depends(get_user)`` on the route."""
    from fastapi import Depends, FastAPI
    from fastapi_keycloak_middleware import (  # type: ignore[import-untyped]
        FastApiUser,
        KeycloakConfiguration,
        KeycloakMiddleware,
        get_user,
        setup_keycloak_middleware,
    )

    app = FastAPI()
    configuration = KeycloakConfiguration(url=where.server_url, realm=REALM, client_id="bench-api")
    setup_keycloak_middleware(app, keycloak_configuration=configuration)

    @app.get(PATH)
    async def me(user: FastApiUser = Depends(get_user)) -> dict[str, str]:  # noqa: B008
        return {"sub": str(user.user_id)}

    # Starlette builds the middleware on the first request; build it now to route the peer's
    # HTTP client through the path rewriting (the key set is still fetched on first use).
    app.middleware_stack = app.build_middleware_stack()
    layer: Any = app.middleware_stack
    while not isinstance(layer, KeycloakMiddleware):
        layer = layer.app
    transport = KeycloakPaths(where.async_transport(), where.keycloak_paths)
    connection = layer.backend.keycloak_openid.connection
    LOOP.run_until_complete(connection.async_s.aclose())
    connection.async_s = httpx.AsyncClient(transport=transport)
    return app, transport


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(PATH)
    async def me() -> dict[str, str]:
        return {"sub": "nobody"}

    return app


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode()), (b"accept", b"application/json")]


# --- the rows -------------------------------------------------------------------------------------


def peer_bearer_rows(number: int, rounds: int) -> list[Row]:
    """Issue 26's peer rows for bearer APIs (see the module's docstring)."""
    with realm() as where:
        return middleware_rows(where, number, rounds) + decoder_rows(where, number, rounds)


def middleware_rows(where: Realm, number: int, rounds: int) -> list[Row]:
    """The FastAPI app behind each middleware, and bare, called turn about (one call each,
    each timed on its own: two requests a few µs apart meet the same machine speed)."""
    ours_app, (theirs_app, transport) = adapter_app(where), peer_app(where)
    bare = asgi_caller(bare_app(), PATH)
    seen = where.tokens(1)[0]
    ours = asgi_caller(ours_app, PATH, headers=_bearer(seen))
    theirs = asgi_caller(theirs_app, PATH, headers=_bearer(seen))
    assert (ours(), theirs(), bare()) == (200, 200, 200), "both must let the token in"
    assert not where.keycloak_paths or transport.rewritten == 1, "the peer fetched its keys"
    peer = f"{MIDDLEWARE_PEER} {_version(MIDDLEWARE_PEER)}"
    ours_s, theirs_s, bare_s = turn_about([ours, theirs, bare], number * max(1, rounds // 2))
    rows = [
        Row(
            f"bearer, token seen before: oidc-adapter vs {MIDDLEWARE_PEER} (FastAPI)",
            ours_s,
            theirs_s,
            TARGET,
            note=_fastapi_note(peer, where, ours_s, theirs_s, bare_s, "the same token"),
        )
    ]
    # A new token each call, for each side (the same list, each side its own pass through it).
    calls = max(2, number // 10) * rounds
    pool = where.tokens(calls + max(1, calls // 20) + 1)  # the calls, the warm-up, the check
    ours_tokens, theirs_tokens = iter(pool), iter(pool)
    ours_first = asgi_caller(ours_app, PATH, extra=lambda: _bearer(next(ours_tokens)))
    theirs_first = asgi_caller(theirs_app, PATH, extra=lambda: _bearer(next(theirs_tokens)))
    assert (ours_first(), theirs_first()) == (200, 200)
    ours_s, theirs_s, bare_s = turn_about([ours_first, theirs_first, bare], calls)
    rows.append(
        Row(
            f"bearer, first-seen token: oidc-adapter vs {MIDDLEWARE_PEER} (FastAPI)",
            ours_s,
            theirs_s,
            TARGET,
            note=_fastapi_note(peer, where, ours_s, theirs_s, bare_s, "a new token each call"),
        )
    )
    return rows


def turn_about(functions: Sequence[Callable[[], object]], calls: int) -> list[float]:
    """Median seconds per call of each function, called in turn, one call each, each call
    timed on its own, the order rotated every turn (``bench.measure.alternated`` for more
    than two; the warm-up is a twentieth of the calls)."""
    for _ in range(max(1, calls // 20)):
        for function in functions:
            function()
    count = len(functions)
    times: list[list[int]] = [[] for _ in functions]
    clock = time.perf_counter_ns
    for turn in range(calls):
        for step in range(count):
            index = (turn + step) % count
            start = clock()
            functions[index]()
            times[index].append(clock() - start)
    return [statistics.median(record) / 1e9 for record in times]


def decoder_rows(where: Realm, number: int, rounds: int) -> list[Row]:
    """python-keycloak's ``decode_token`` with the realm's JWKS (fetched once through its own
    client) against the adapter's access-token check of the same tokens."""
    from keycloak import KeycloakOpenID

    peer = KeycloakOpenID(server_url=where.server_url, realm_name=REALM, client_id="bench-api")
    LOOP.run_until_complete(peer.connection.async_s.aclose())
    transport = KeycloakPaths(where.async_transport(), where.keycloak_paths)
    peer.connection.async_s = httpx.AsyncClient(transport=transport)
    key_set = _key_set(LOOP.run_until_complete(peer.a_certs()))
    client = OIDCClient(adapter_config(where), http=httpx.Client(transport=where.sync_transport()))
    pool = where.tokens(max(2, min(number, 200)))
    for token in pool:  # both accept every token, and read the same claims
        assert peer.decode_token(token, key=key_set) == dict(client.validate_access_token(token))
    entries = client.validated._entries  # the validated-token cache (bench/crypto.py does so)

    ours_tokens, theirs_tokens = cycle(pool), cycle(pool)

    def ours_cold() -> object:
        entries.clear()
        return client.validate_access_token(next(ours_tokens))

    def theirs() -> object:
        return peer.decode_token(next(theirs_tokens), key=key_set)

    calls = number * max(1, rounds // 2)
    cold, decoded = alternated(ours_cold, theirs, calls)
    seen = pool[0]
    client.validate_access_token(seen)

    def ours_cached() -> object:
        return client.validate_access_token(seen)

    def theirs_seen() -> object:
        return peer.decode_token(seen, key=key_set)

    cached, decoded_again = alternated(ours_cached, theirs_seen, calls)
    client.close()
    LOOP.run_until_complete(peer.connection.async_s.aclose())
    version = f"{DECODER_PEER} {_version(DECODER_PEER)}, jwcrypto {_version('jwcrypto')}"
    note = (
        f"{version}; tokens from {where.source}; the peer checks signature and exp/nbf only "
        "(no iss, aud, typ)"
    )
    return [
        Row(
            f"token check, first seen (cold): oidc-adapter vs {DECODER_PEER} decode_token (JWKS)",
            cold, decoded, TARGET, note=note,
        ),
        Row(
            f"token check, seen before (cached): oidc-adapter vs {DECODER_PEER} decode_token"
            " (JWKS)",
            cached, decoded_again, TARGET, note=note + "; the peer keeps no cache",
        ),
    ]  # fmt: skip


def _key_set(certs: Mapping[str, Any]) -> Any:
    """The JWKSet ``decode_token`` builds from ``certs()`` when given no key: built once here,
    as a caller decoding many tokens passes it as ``key=``."""
    from jwcrypto import jwk  # type: ignore[import-untyped]

    key_set = jwk.JWKSet()
    for cert in certs["keys"]:
        key_set.add(jwk.JWK(**cert))
    return key_set


def _fastapi_note(
    peer: str, where: Realm, ours: float, theirs: float, bare: float, tokens: str
) -> str:
    return (
        f"{peer}; {tokens}, from {where.source}; bare FastAPI {bare * 1e6:.1f} µs, added: "
        f"oidc-adapter {(ours - bare) * 1e6:.1f} µs, peer {(theirs - bare) * 1e6:.1f} µs; the "
        "peer checks signature and exp/nbf only (no iss, aud, typ) and keeps no cache"
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":  # a quick look: python -m bench.peers_bearer
    import sys
    import warnings

    from bench.__main__ import table

    warnings.simplefilter("ignore")
    args = [int(a) for a in sys.argv[1:3]] or [3000, 7]
    found = peer_bearer_rows(*args)
    print(table(found))
    for row in found:
        print(f"{row.name}: {row.note}")
