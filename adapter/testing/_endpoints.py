"""The test issuer's side of HTTP (see :mod:`adapter.testing`): discovery, JWKS and the token
endpoint, answered in process for an ``httpx.MockTransport``, and the authorization step a
browser would go through (a code for a user, remembered until the app redeems it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx

from adapter.jose import b64url
from adapter.testing._minting import Grant, TestUser, TokenMinter

log = logging.getLogger(__name__)


class IssuerEndpoints:
    """What the identity server at ``minter.issuer`` answers, and the codes and refresh tokens
    it has handed out (each used once)."""

    def __init__(self, minter: TokenMinter) -> None:
        self.minter = minter
        self.issuer = minter.issuer
        self._lock = threading.Lock()
        self._codes: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self.requests = 0  # how many requests the middleware sent here

    def authorize(self, url: str, user: TestUser) -> str:
        """The callback URL the issuer would send the browser to after ``user`` signed in at
        the authorization ``url`` the app redirected to."""
        params = dict(parse_qsl(urlsplit(url).query))
        redirect_uri, state = params.get("redirect_uri"), params.get("state")
        if not redirect_uri or not state or params.get("response_type") != "code":
            raise AssertionError(f"not an authorization code request: {url[:200]}")
        if params.get("code_challenge_method", "S256") != "S256":
            raise AssertionError("the test issuer supports PKCE with S256 only")
        self.minter.register(params.get("client_id", ""))  # a client unknown yet: first use
        code = secrets.token_urlsafe(24)
        grant = Grant(
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

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The answer to ``request`` (the MockTransport's handler)."""
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
                "id_token_signing_alg_values_supported": list(self.minter.published()),
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                ],
            },
        )

    def _jwks(self, request: httpx.Request) -> httpx.Response:
        keys = [key.public_jwk() for key in self.minter.published().values()]
        return httpx.Response(200, json={"keys": keys})

    def _token(self, request: httpx.Request) -> httpx.Response:
        """The token endpoint. The client's credentials are not checked (their own tests run
        against a real server): only that the client is the one the code was issued to."""
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        client_id = _client_id(request, form)
        grant_type = form.get("grant_type")
        lifetime = self.minter.token_lifetime
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
            self.minter.register(client_id)
            service = TestUser(f"service-account-{client_id}")
            grant = Grant(service, client_id, form.get("scope", ""))
            token = self.minter.access_token(grant, None)
            return _tokens({"access_token": token, "scope": grant.scope}, lifetime)
        else:
            return _error("unsupported_grant_type", f"{grant_type!r} is not supported here")
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[refresh] = grant
        answer = {
            "access_token": self.minter.access_token(grant, None),
            "id_token": self.minter.id_token(grant.user, grant.client_id, grant.nonce),
            "refresh_token": refresh,
            "scope": grant.scope,
        }
        return _tokens(answer, lifetime)

    _routes: Mapping[
        tuple[str, str], Callable[[IssuerEndpoints, httpx.Request], httpx.Response]
    ] = {
        ("GET", "/.well-known/openid-configuration"): _metadata,
        ("GET", "/jwks"): _jwks,
        ("POST", "/token"): _token,
    }


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
