"""Test helpers: an app's own tests act as a signed-in user through the real middleware.

:class:`TestIssuer` is an identity server that lives in the test process: a fresh signing key,
discovery, JWKS and a token endpoint answered by an ``httpx.MockTransport`` that the middleware
is given as its HTTP client. The middleware does everything as in production (the login
redirect, the callback, the code exchange with PKCE, the ID-token and access-token checks, the
sealed session cookie, ``[[access]]`` rules, bearer checks); only the identity server is
replaced, so an app's tests need no server process and no network::

    issuer = TestIssuer()                                  # or the oidc_test_issuer fixture
    app = issuer.asgi(starlette_app, "tests/adapter.toml")  # issuer = "https://test-issuer.invalid"
    with TestClient(app, base_url="https://testserver") as client:
        issuer.sign_in(client, "alice", roles=["admin"])
        assert client.get("/admin/").status_code == 200

It cannot be switched on by accident in production: nothing constructs it but a test, it logs
a warning when it is built and for every app it is handed, and it serves only configurations
whose issuer is its own URL, under ``.invalid`` (RFC 6761: a name that never resolves, so a
production configuration naming it could not work anyway).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from adapter.config import AdapterConfig, load_config
from adapter.errors import ConfigError
from adapter.jose import b64url, encode_header, sign_compact
from adapter.keys.generate import generate_private_key
from adapter.keys.keyring import SigningKey, default_kid
from adapter.wsgi import OIDCWSGIMiddleware

__all__ = ["TEST_ISSUER", "TestIssuer", "TestUser"]

log = logging.getLogger("adapter.testing")
TEST_ISSUER = "https://test-issuer.invalid"
_TEST_HOST = "test-issuer.invalid"


@dataclass(frozen=True)
class TestUser:
    """Who signs in: ``sub``, Keycloak realm ``roles``, this client's ``client_roles``, extra
    ``scopes`` granted beyond the configured ones, and any other ``claims`` (name, email ...)."""

    __test__ = False  # a helper, not a test class for pytest to collect

    sub: str
    roles: tuple[str, ...] = ()
    client_roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        sub: str,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
    ) -> TestUser:
        """Built from any iterables; a single string counts as one name, not as letters."""
        return cls(sub, _names(roles), _names(client_roles), _names(scopes), dict(claims or {}))


@dataclass
class _Grant:
    """What a code or refresh token stands for at the test issuer."""

    user: TestUser
    client_id: str
    scope: str
    nonce: str | None = None
    redirect_uri: str = ""
    code_challenge: str | None = None


class TestIssuer:
    """An in-process identity server for an app's own tests (see the module docstring)."""

    __test__ = False  # a helper, not a test class for pytest to collect

    def __init__(self, issuer: str = TEST_ISSUER, *, token_lifetime: int = 300) -> None:
        """``issuer`` must be ``https://test-issuer.invalid``, optionally with a path
        (``https://test-issuer.invalid/realms/test``); tokens live ``token_lifetime`` seconds."""
        parts = urlsplit(issuer)
        if parts.scheme != "https" or parts.hostname != _TEST_HOST or parts.port is not None:
            raise ConfigError(
                f"TestIssuer: {issuer!r} is not a test issuer URL; use {TEST_ISSUER!r} "
                "(optionally with a path), which never resolves outside the tests"
            )
        self.issuer = issuer.rstrip("/")
        self.token_lifetime = token_lifetime
        private = ec.generate_private_key(ec.SECP256R1())
        self._key = SigningKey(default_kid(private.public_key()), "ES256", private)
        # ID tokens are signed as each client's configuration says (id-token-signing-alg,
        # RS256 by default), with a key per algorithm made when a client asks for it.
        self._id_keys: dict[str, SigningKey] = {self._key.alg: self._key}
        self._id_algs: dict[str, str] = {}  # client id -> its id-token-signing-alg
        self._header = {typ: encode_header(self._header_for(typ)) for typ in ("JWT", "at+jwt")}
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._audiences: dict[str, tuple[str, ...]] = {}  # client id -> what its app accepts
        self._clients: list[httpx.Client] = []
        self.transport = httpx.MockTransport(self._handle)
        self.requests = 0  # how many requests the middleware sent here (tests may assert it)
        log.warning(
            "TEST ISSUER %s: tokens signed by a throwaway key, trusted by every middleware "
            "handed this issuer; for tests only",
            self.issuer,
        )

    # -- wiring the app ----------------------------------------------------------------------

    def http(self) -> httpx.Client:
        """An ``httpx.Client`` that reaches this issuer: the WSGI middleware's ``http=``."""
        client = httpx.Client(transport=self.transport)
        self._clients.append(client)
        return client

    def async_http(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` that reaches this issuer: the ASGI middleware's ``http=``."""
        return httpx.AsyncClient(transport=self.transport)

    def check(self, config: AdapterConfig | str | Path) -> AdapterConfig:
        """The configuration, once it is known to name this issuer (else a ConfigError): an
        app's real configuration can never be served by the test issuer."""
        loaded = config if isinstance(config, AdapterConfig) else load_config(config)
        if loaded.issuer != self.issuer:
            raise ConfigError(
                f"issuer: {loaded.issuer!r} is not the test issuer; set "
                f'issuer = "{self.issuer}" in the tests\' configuration'
            )
        self._id_key(loaded.id_token_signing_alg)  # published before the app fetches the JWKS
        with self._lock:
            self._audiences[loaded.client_id] = loaded.token_audiences or (loaded.client_id,)
            self._id_algs[loaded.client_id] = loaded.id_token_signing_alg
        log.warning("TEST ISSUER %s trusted by client %r", self.issuer, loaded.client_id)
        return loaded

    def wsgi(self, app: Any, config: AdapterConfig | str | Path, **options: Any) -> Any:
        """``OIDCWSGIMiddleware(app, config, http=...)`` trusting this issuer (checked)."""
        self.check(config)
        return OIDCWSGIMiddleware(app, config, http=self.http(), **options)

    def asgi(self, app: Any, config: AdapterConfig | str | Path, **options: Any) -> Any:
        """``OIDCMiddleware(app, config, http=...)`` trusting this issuer (checked); it needs
        Starlette (the ``asgi`` extra), imported here so that WSGI apps' tests do without it."""
        from adapter.asgi import OIDCMiddleware

        self.check(config)
        return OIDCMiddleware(app, config, http=self.async_http(), **options)

    # -- acting as a user --------------------------------------------------------------------

    def sign_in(
        self,
        client: Any,
        user: str | TestUser = "alice",
        *,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
        next: str = "/",
        login_path: str = "/oidc/login",
    ) -> Any:
        """Sign ``user`` in through the app's own login route and callback; returns the
        callback's answer (a redirect to ``next``), and ``client`` keeps the session cookie.

        ``client`` is any test client with ``get(url, follow_redirects=False)``: Starlette's
        ``TestClient``, an ``httpx.Client`` on the app's transport, Flask's test client. Over
        plain http the session cookie is ``Secure`` unless the host is ``localhost`` or
        ``127.0.0.1``: give the client ``base_url="https://testserver"`` or a loopback host.
        """
        who = _as_user(user, roles, client_roles, scopes, claims)
        start = client.get(f"{login_path}?{urlencode({'next': next})}", follow_redirects=False)
        location = start.headers.get("location") or ""
        if not location.startswith(self.issuer + "/auth?"):
            raise AssertionError(
                f"GET {login_path} answered {start.status_code}, not a redirect to the test "
                f"issuer: wrap the app with issuer.asgi()/wsgi() (or give its middleware "
                f'http=issuer.http()) and set issuer = "{self.issuer}"'
            )
        done = client.get(self.authorize(location, who), follow_redirects=False)
        if done.status_code != 302:
            raise AssertionError(f"the app refused the test login: {done.status_code}")
        return done

    def authorize(self, url: str, user: TestUser) -> str:
        """The callback URL the issuer would send the browser to after ``user`` signed in at
        the authorization ``url`` the app redirected to (for drivers other than sign_in)."""
        params = dict(parse_qsl(urlsplit(url).query))
        redirect_uri, state = params.get("redirect_uri"), params.get("state")
        if not redirect_uri or not state or params.get("response_type") != "code":
            raise AssertionError(f"not an authorization code request: {url[:200]}")
        if params.get("code_challenge_method", "S256") != "S256":
            raise AssertionError("the test issuer supports PKCE with S256 only")
        code = secrets.token_urlsafe(24)
        grant = _Grant(
            user,
            params.get("client_id", ""),
            " ".join([*params.get("scope", "openid").split(), *user.scopes]),
            params.get("nonce"),
            redirect_uri,
            params.get("code_challenge"),
        )
        with self._lock:
            self._codes[code] = grant
        answer = urlencode({"code": code, "state": state, "iss": self.issuer})
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{answer}"

    def access_token(
        self,
        user: str | TestUser = "alice",
        *,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        audience: str | Iterable[str] | None = None,
    ) -> str:
        """A signed access token for bearer requests (``Authorization: Bearer ...``), for the
        app's client (the one configuration handed to this issuer, or ``client_id``) and the
        audiences it accepts (``token-audiences``, else its client id) unless ``audience``."""
        who = _as_user(user, roles, client_roles, scopes, claims)
        client = client_id or self._only_client()
        grant = _Grant(who, client, " ".join(["openid", *who.scopes]))
        wanted = (audience,) if isinstance(audience, str) else audience
        return self._access_token(grant, tuple(wanted) if wanted is not None else None)

    def id_token(self, user: TestUser, client_id: str, nonce: str | None = None) -> str:
        """A signed ID token for ``user`` and ``client_id``, with the client's
        ``id-token-signing-alg`` (ES256 for a client no configuration named)."""
        now = int(time.time())
        claims = {
            **self._user_claims(user, client_id),
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + self.token_lifetime,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        with self._lock:
            alg = self._id_algs.get(client_id, self._key.alg)
        key = self._id_key(alg)
        header = encode_header({"alg": key.alg, "kid": key.kid, "typ": "JWT"})
        return sign_compact(header, claims, key.sign)

    def close(self) -> None:
        """Close the synchronous clients handed out (the async ones hold no connection)."""
        for client in self._clients:
            client.close()
        self._clients.clear()

    # -- the identity server's side ----------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests += 1
        url = str(request.url)
        if not url.startswith(self.issuer + "/"):
            log.error("the test issuer was asked for %s: it answers only for %s", url, self.issuer)
            return httpx.Response(421, text=f"the test issuer answers only for {self.issuer}\n")
        path = url[len(self.issuer) :].split("?", 1)[0]
        route = self._routes.get((request.method, path))
        if route is None:
            return httpx.Response(404, text="not found\n")
        return route(self, request)

    def _metadata(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": list(self._published()),
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                ],
            },
        )

    def _jwks(self, request: httpx.Request) -> httpx.Response:
        keys = [key.public_jwk() for key in self._published().values()]
        return httpx.Response(200, json={"keys": keys})

    def _token(self, request: httpx.Request) -> httpx.Response:
        """The token endpoint. The client's credentials are not checked (their own tests run
        against a real server): only that the client is the one the code was issued to."""
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        client_id = _client_id(request, form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self._lock:
                grant = self._codes.pop(form.get("code", ""), None)  # a code is used once
            if grant is None or grant.client_id != client_id:
                return _error("invalid_grant", "unknown or used code, or another client's")
            if form.get("redirect_uri") != grant.redirect_uri:
                return _error("invalid_grant", "redirect_uri differs from the authorization's")
            if grant.code_challenge != _s256(form.get("code_verifier", "")):
                return _error("invalid_grant", "PKCE code_verifier does not match")
        elif grant_type == "refresh_token":
            with self._lock:
                grant = self._refresh.pop(form.get("refresh_token", ""), None)  # rotated
            if grant is None or grant.client_id != client_id:
                return _error("invalid_grant", "unknown or used refresh token")
        elif grant_type == "client_credentials":
            service = TestUser(f"service-account-{client_id}")
            grant = _Grant(service, client_id, form.get("scope", ""))
            token = self._access_token(grant, None)
            return _tokens({"access_token": token, "scope": grant.scope}, self.token_lifetime)
        else:
            return _error("unsupported_grant_type", f"{grant_type!r} is not supported here")
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[refresh] = grant
        answer = {
            "access_token": self._access_token(grant, None),
            "id_token": self.id_token(grant.user, grant.client_id, grant.nonce),
            "refresh_token": refresh,
            "scope": grant.scope,
        }
        return _tokens(answer, self.token_lifetime)

    _routes: Mapping[tuple[str, str], Callable[[TestIssuer, httpx.Request], httpx.Response]] = {
        ("GET", "/.well-known/openid-configuration"): _metadata,
        ("GET", "/jwks"): _jwks,
        ("POST", "/token"): _token,
    }

    # -- minting -----------------------------------------------------------------------------

    def _id_key(self, alg: str) -> SigningKey:
        """The key that signs ID tokens with ``alg``, made on first use."""
        with self._lock:
            key = self._id_keys.get(alg)
        if key is None:
            private = generate_private_key(alg)
            made = SigningKey(default_kid(private.public_key()), alg, private)
            with self._lock:
                key = self._id_keys.setdefault(alg, made)
        return key

    def _published(self) -> dict[str, SigningKey]:
        """Every key the JWKS holds, by algorithm."""
        with self._lock:
            return dict(self._id_keys)

    def _header_for(self, typ: str) -> dict[str, Any]:
        return {"alg": self._key.alg, "kid": self._key.kid, "typ": typ}

    def _access_token(self, grant: _Grant, audience: tuple[str, ...] | None) -> str:
        now = int(time.time())
        with self._lock:
            accepted = self._audiences.get(grant.client_id, (grant.client_id,))
        claims = {
            **self._user_claims(grant.user, grant.client_id),
            "iss": self.issuer,
            "aud": list(audience if audience is not None else accepted),
            "azp": grant.client_id,
            "client_id": grant.client_id,
            "scope": grant.scope,
            "iat": now,
            "exp": now + self.token_lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return sign_compact(self._header["at+jwt"], claims, self._key.sign)

    def _user_claims(self, user: TestUser, client_id: str) -> dict[str, Any]:
        """Keycloak's shape: realm roles in ``realm_access``, client roles in
        ``resource_access.<client id>``."""
        claims: dict[str, Any] = {"sub": user.sub, "preferred_username": user.sub}
        claims.update(user.claims)
        claims["sub"] = user.sub
        if user.roles:
            claims["realm_access"] = {"roles": list(user.roles)}
        if user.client_roles:
            claims["resource_access"] = {client_id: {"roles": list(user.client_roles)}}
        return claims

    def _only_client(self) -> str:
        with self._lock:
            clients = list(self._audiences)
        if len(clients) != 1:
            raise ConfigError(
                "TestIssuer.access_token: pass client_id= (the issuer serves "
                f"{len(clients)} clients: {', '.join(clients) or 'none yet'})"
            )
        return clients[0]


def _client_id(request: httpx.Request, form: Mapping[str, str]) -> str:
    """The client a token request names: HTTP Basic, the form, or the assertion's ``iss``."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            pair = base64.b64decode(authorization[6:]).decode()
        except ValueError:
            return ""
        return unquote(pair.partition(":")[0].replace("+", " "))
    if form.get("client_id"):
        return form["client_id"]
    assertion = form.get("client_assertion", "")
    if assertion.count(".") == 2:
        payload = assertion.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return ""
        issuer = claims.get("iss") if isinstance(claims, dict) else None
        return issuer if isinstance(issuer, str) else ""
    return ""


def _s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


def _tokens(answer: dict[str, Any], lifetime: int) -> httpx.Response:
    headers = {"Cache-Control": "no-store"}
    return httpx.Response(
        200, headers=headers, json={**answer, "token_type": "Bearer", "expires_in": lifetime}
    )


def _error(error: str, description: str) -> httpx.Response:
    return httpx.Response(400, json={"error": error, "error_description": description})


def _as_user(
    user: str | TestUser,
    roles: Iterable[str],
    client_roles: Iterable[str],
    scopes: Iterable[str],
    claims: Mapping[str, Any] | None,
) -> TestUser:
    if isinstance(user, TestUser):
        return user
    return TestUser.of(user, roles, client_roles, scopes, claims)


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


try:  # the pytest fixture, for apps that declare pytest_plugins = ["adapter.testing"]
    import pytest
except ImportError:  # pragma: no cover - pytest is not installed: no fixture
    pass
else:

    @pytest.fixture
    def oidc_test_issuer() -> Iterator[TestIssuer]:
        """A fresh :class:`TestIssuer` per test, closed afterwards."""
        issuer = TestIssuer()
        try:
            yield issuer
        finally:
            issuer.close()
