"""A browser for in-process apps: an httpx client that reaches the app through its shell's
transport (ASGI or WSGI) and the identity server for real, following its login forms."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from tests.idp_server import IdentityServer

APP = "http://127.0.0.1:8765"


@dataclass
class Stack:
    idp: IdentityServer
    config: Path
    transports: dict[str, httpx.BaseTransport]


class Browser:
    """An httpx client that reaches the app in-process and the identity server for real."""

    def __init__(self, stack: Stack, shell: str, base: str = APP) -> None:
        self.idp = stack.idp
        self.http = httpx.Client(
            mounts={base: stack.transports[shell], "all://": httpx.HTTPTransport()},
            base_url=base,
            timeout=10,
        )

    def get(
        self, path: str, cookies: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """GET ``path``; ``cookies`` replace the browser's own for this one request."""
        return self.request("GET", path, cookies, **kwargs)

    def post(
        self, path: str, cookies: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST ``path``; ``cookies`` replace the browser's own for this one request."""
        return self.request("POST", path, cookies, **kwargs)

    def request(
        self, method: str, path: str, cookies: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        if cookies is not None:
            self.http.cookies.clear()
            header = "; ".join(f"{k}={v}" for k, v in cookies.items())
            kwargs["headers"] = {**kwargs.get("headers", {}), "Cookie": header}
        return self.http.request(method, path, **kwargs)

    def walk(
        self, response: httpx.Response, login: str = "alice", stop_at_callback: bool = False
    ) -> httpx.Response:
        """Follow redirects and the server's login/consent forms until the app answers."""
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if stop_at_callback and "/oidc/callback" in location:
                    return response
                response = self.http.get(location)
                continue
            if not str(response.url).startswith(self.idp.issuer):
                return response
            form = response.text.split('action="', 1)[1].split('"', 1)[0]
            prompt = "login" if 'name="login"' in response.text else "consent"
            data = {"prompt": prompt, "login": login, "password": "any"}
            response = self.http.post(urljoin(str(response.url), form), data=data)
        raise AssertionError("too many steps")

    def log_in(self, path: str = "/profile", login: str = "alice") -> httpx.Response:
        return self.walk(self.get(path), login)

    def session_cookies(self) -> dict[str, str]:
        jar = self.http.cookies.jar
        return {
            c.name: c.value
            for c in jar
            if c.name.removeprefix("__Host-").startswith("oidc_session")
        }

    def csrf(self, path: str = "/profile") -> str:
        """The CSRF token the app shows: the examples' logout form, or a JSON ``csrf`` field."""
        page = self.get(path)
        if page.headers.get("content-type", "").startswith("application/json"):
            return str(page.json()["csrf"])
        return page.text.split("name='csrf' value='", 1)[1].split("'", 1)[0]


def authorization_code(
    http: httpx.Client, response: httpx.Response, redirect_uri: str, login: str = "alice"
) -> dict[str, str]:
    """Follow the server's redirects and login/consent forms from ``response`` until it sends
    the browser to ``redirect_uri``; the query of that redirect (``code``, ``state``)."""
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(redirect_uri):
                return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            response = http.get(location)
            continue
        form = response.text.split('action="', 1)[1].split('"', 1)[0]
        prompt = "login" if 'name="login"' in response.text else "consent"
        data = {"prompt": prompt, "login": login, "password": "any"}
        response = http.post(urljoin(str(response.url), form), data=data)
    raise AssertionError(f"no redirect to {redirect_uri} for {login}")


def code_flow_token(
    idp: IdentityServer,
    login: str,
    client_id: str,
    secret: str | None = None,
    redirect_uri: str = f"{APP}/oidc/callback",
    scope: str = "openid",
) -> str:
    """An access token for ``login`` through the real code flow (:func:`code_flow_tokens`)."""
    token: str = code_flow_tokens(idp, login, client_id, secret, redirect_uri, scope)[
        "access_token"
    ]
    return token


def code_flow_tokens(
    idp: IdentityServer,
    login: str,
    client_id: str,
    secret: str | None = None,
    redirect_uri: str = f"{APP}/oidc/callback",
    scope: str = "openid",
    **params: str,
) -> dict[str, Any]:
    """The token response for ``login`` through the real code flow with PKCE and the server's
    own login and consent forms: a confidential client (``secret``) authenticates with secret
    basic, a public one names itself; ``params`` go into the authorization request too."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **params,
    }
    form = {
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    auth = (client_id, secret) if secret is not None else None
    if secret is None:
        form["client_id"] = client_id
    with httpx.Client(timeout=30) as http:
        response = http.get(idp.metadata["authorization_endpoint"], params=query)
        form["code"] = authorization_code(http, response, redirect_uri, login)["code"]
        answer = http.post(idp.metadata["token_endpoint"], data=form, auth=auth)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


def web_client(
    secret: str, client_id: str = "web", base: str = APP, **extra: Any
) -> dict[str, Any]:
    """A confidential client of the test identity server for an app at ``base`` (secret basic;
    code, refresh and client credentials grants; ``extra`` metadata adds or overrides)."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{base}/oidc/callback"],
        "post_logout_redirect_uris": [f"{base}/oidc/logout"],  # where logouts come back
        **extra,
    }


def jwks_uri_client(client_id: str, jwks_uri: str, alg: str = "RS256") -> dict[str, Any]:
    """A private_key_jwt client of the test identity server whose keys it fetches from
    ``jwks_uri`` (an app's /k_jwks: "Use JWKS URL"), for client-credentials tokens only."""
    return {
        "client_id": client_id,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": alg,
        "jwks_uri": jwks_uri,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
    }


def signing_key(kid: str = "server-1") -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """An RSA key for the test identity server, and its private JWK: a test that holds the
    server's key can forge well-signed tokens with bad claims."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAKey.import_key(key).as_dict(private=True)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return key, jwk


def client_api(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI API that answers which client the adapter let in (its token's ``client_id``)."""
    from adapter import current_identity

    identity = current_identity(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"client": identity.claims.get("client_id") if identity else None}).encode()]
