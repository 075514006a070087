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

An app that installs the adapter itself (FastAPI's or Flask's ``OIDC``) is built by its own
factory with ``config=issuer.config("tests/adapter.toml")`` (its credentials replaced: no
keystore needed) and ``http=issuer.async_http()`` / ``issuer.http()``; wrapping it again with
``asgi()``/``wsgi()`` is refused (two middlewares would loop). A client never handed to the
issuer registers when it first asks for a login.

It cannot be switched on by accident in production: nothing constructs it but a test, it logs
a warning when it is built and for every app it is handed, and it serves only configurations
whose issuer is its own URL, under ``.invalid`` (RFC 6761: a name that never resolves, so a
production configuration naming it could not work anyway).

The package: :class:`TestIssuer` here (wiring an app, acting as a user), its keys and tokens in
``_minting.py`` (:class:`TestUser`, ``TokenMinter``), its HTTP side in ``_endpoints.py``
(``IssuerEndpoints``); everything public is re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from adapter.config import AdapterConfig, CredentialsConfig, load_config
from adapter.config.model import read_document
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.testing._endpoints import IssuerEndpoints
from adapter.testing._minting import Grant, TestUser, TokenMinter, as_user
from adapter.wsgi import OIDCWSGIMiddleware

__all__ = ["TEST_ISSUER", "TestIssuer", "TestUser"]

log = logging.getLogger(__name__)
TEST_ISSUER = "https://test-issuer.invalid"
_TEST_HOST = "test-issuer.invalid"
_SECRET = "test-issuer-does-not-check-client-credentials"  # noqa: S105 - a stand-in, by design


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
        self._minter = TokenMinter(self.issuer, token_lifetime)
        self._endpoints = IssuerEndpoints(self._minter)
        self._clients: list[httpx.Client] = []
        self.transport = httpx.MockTransport(self._endpoints.handle)
        log.warning(
            "TEST ISSUER %s: tokens signed by a throwaway key, trusted by every middleware "
            "handed this issuer; for tests only",
            self.issuer,
        )

    @property
    def token_lifetime(self) -> int:
        """How long the tokens it signs live, in seconds."""
        return self._minter.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self._minter.token_lifetime = seconds

    @property
    def requests(self) -> int:
        """How many requests the middleware sent here (tests may assert it)."""
        return self._endpoints.requests

    @requests.setter
    def requests(self, count: int) -> None:
        self._endpoints.requests = count

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
        self._minter.trust(loaded)
        log.warning("TEST ISSUER %s trusted by client %r", self.issuer, loaded.client_id)
        return loaded

    def config(self, config: AdapterConfig | str | Path) -> AdapterConfig:
        """The app's test configuration as this issuer serves it, for an app factory that
        takes ``config=`` and ``http=``: checked like :meth:`check` (its issuer must be this
        one), its client registered, and its credentials replaced by a throwaway secret (the
        test issuer checks none), so a test needs no keystore, no key and no password: a
        ``password-env`` may be unset. A public client keeps having none."""
        if isinstance(config, AdapterConfig):
            if config.credentials.method != "none":
                throwaway = CredentialsConfig("client_secret_basic", Secret(_SECRET, "TestIssuer"))
                config = replace(config, credentials=throwaway)
            return self.check(config)
        document = dict(read_document(config))
        if document.get("public-client") or document.get("bearer-only"):
            document.pop("credentials", None)
        elif "resource" in document:  # keycloak.json
            document["credentials"] = {"secret": _SECRET}
        else:
            document["credentials"] = {"method": "client_secret_basic", "secret": _SECRET}
        return self.check(load_config(document, base_dir=Path(config).resolve().parent))

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
        who = as_user(user, roles, client_roles, scopes, claims)
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
        return self._endpoints.authorize(url, user)

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
        who = as_user(user, roles, client_roles, scopes, claims)
        client = client_id or self._minter.only_client()
        grant = Grant(who, client, " ".join(["openid", *who.scopes]))
        wanted = (audience,) if isinstance(audience, str) else audience
        return self._minter.access_token(grant, tuple(wanted) if wanted is not None else None)

    def id_token(self, user: TestUser, client_id: str, nonce: str | None = None) -> str:
        """A signed ID token for ``user`` and ``client_id``, with the client's
        ``id-token-signing-alg`` (ES256 for a client no configuration named)."""
        return self._minter.id_token(user, client_id, nonce)

    def close(self) -> None:
        """Close the synchronous clients handed out (the async ones hold no connection)."""
        for client in self._clients:
            client.close()
        self._clients.clear()


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
