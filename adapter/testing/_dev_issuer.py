"""The development identity server: the test issuer's keys and tokens (``TokenMinter``,
``IssuerEndpoints``) behind Keycloak's paths, over real HTTP, for trying an app by hand.

``oidc-adapter dev-server`` builds one from the app's configuration and serves it on loopback
(:mod:`adapter.cli.dev_server`). Under the issuer's path (``/realms/<realm>`` for a keycloak.json)
it answers as Keycloak does at ``/protocol/openid-connect/...``: discovery, the JWKS
(``certs``), the authorization endpoint (a form that signs in a test user, no password), the token
endpoint (authorization code with PKCE S256, refresh token, client credentials; the client
authenticated as the configuration says, see :mod:`adapter.testing._dev_clients`), revocation,
introspection, userinfo and RP-initiated logout. Tokens are shaped like Keycloak's: realm roles
in ``realm_access``, the same roles for the client in ``resource_access``, ``preferred_username``,
``email``, a ``sub`` that is a UUID.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from adapter.config import AdapterConfig
from adapter.jose import parse_compact, strict_json, verify_signature
from adapter.testing._dev_clients import ClientAuthenticator, ClientSettings
from adapter.testing._dev_http import (
    DevRequest,
    Reply,
    html_reply,
    json_reply,
    oauth_error,
    redirect,
)
from adapter.testing._dev_pages import error_page, index_page, sign_in_page, signed_out_page
from adapter.testing._endpoints import IssuerEndpoints
from adapter.testing._minting import TestUser, TokenMinter

OIDC = "/protocol/openid-connect"
DEFAULT_USERS: dict[str, tuple[str, ...]] = {"alice": ("user", "admin"), "bob": ("user",)}
_TOKEN_PLUMBING = frozenset(
    [
        "iss",
        "aud",
        "azp",
        "client_id",
        "scope",
        "iat",
        "exp",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "typ",
        "realm_access",
        "resource_access",
    ]
)


def dev_user(issuer: str, client_id: str, name: str, roles: tuple[str, ...]) -> TestUser:
    """A Keycloak-shaped user: a UUID ``sub`` (the same for a name on every run), the roles as
    realm roles and as roles of the client, a username and a verified email."""
    claims = {
        "preferred_username": name,
        "name": name.capitalize(),
        "given_name": name.capitalize(),
        "email": f"{name}@example.com",
        "email_verified": True,
        "resource_access": {
            client_id: {"roles": list(roles)},
            "account": {"roles": ["manage-account", "view-profile"]},
        },
    }
    sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}#{name}"))
    return TestUser.of(sub, roles, claims=claims)


class DevIssuer:
    """The issuer at ``issuer`` serving ``config``'s client and ``users`` (name -> roles);
    ``handle`` answers one :class:`DevRequest`; ``say`` reports events (never a secret)."""

    def __init__(
        self,
        config: AdapterConfig,
        issuer: str,
        users: Mapping[str, tuple[str, ...]],
        app_url: str,
        *,
        token_lifetime: int = 300,
        say: Callable[[str], None] = print,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.prefix = urlsplit(self.issuer).path
        self.endpoint = f"{self.issuer}{OIDC}"
        self.users = dict(users)
        self.client = ClientSettings.of(config, app_url)
        self.jwks_url = f"{self.client.app_url}{config.web.jwks_path}"
        self._say = say
        self._minter = TokenMinter(self.issuer, token_lifetime)
        self._minter.trust(config)
        self._endpoints = IssuerEndpoints(self._minter)
        audiences = (self.issuer, f"{self.endpoint}/token", f"{self.endpoint}/token/introspect")
        self._auth = ClientAuthenticator(self.client, self.jwks_url, audiences, say)
        self._revoked: set[str] = set()
        self._lock = threading.Lock()
        self._people = {
            name: dev_user(self.issuer, self.client.client_id, name, roles)
            for name, roles in self.users.items()
        }

    def close(self) -> None:
        self._auth.close()

    def handle(self, request: DevRequest) -> Reply:
        """The answer to ``request``: a route under the issuer's path, the index, or 404."""
        if request.method == "GET" and request.path in ("", "/"):
            return html_reply(200, self._index())
        if not request.path.startswith(self.prefix):
            return html_reply(404, error_page("Not found", f"this server serves {self.issuer}"))
        route = self._routes.get((request.method, request.path[len(self.prefix) :]))
        if route is None:
            return html_reply(404, error_page("Not found", "no such endpoint here"))
        return route(self, request)

    # -- discovery ---------------------------------------------------------------------------

    def _metadata(self, request: DevRequest) -> Reply:
        endpoint = self.endpoint
        return json_reply(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{endpoint}/auth",
                "token_endpoint": f"{endpoint}/token",
                "introspection_endpoint": f"{endpoint}/token/introspect",
                "userinfo_endpoint": f"{endpoint}/userinfo",
                "end_session_endpoint": f"{endpoint}/logout",
                "revocation_endpoint": f"{endpoint}/revoke",
                "jwks_uri": f"{endpoint}/certs",
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                ],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": list(self._minter.published()),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "client_secret_jwt",
                    "private_key_jwt",
                ],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email", "roles", "offline_access"],
                "authorization_response_iss_parameter_supported": True,
                "backchannel_logout_supported": False,
                "frontchannel_logout_supported": False,
            },
        )

    def _certs(self, request: DevRequest) -> Reply:
        keys = [key.public_jwk() for key in self._minter.published().values()]
        return json_reply(200, {"keys": keys})

    def _realm(self, request: DevRequest) -> Reply:
        realm = self.prefix.rsplit("/", 1)[-1]
        return json_reply(200, {"realm": realm, "token-service": self.endpoint})

    def _index(self) -> str:
        notes = [f"Client authentication: {self.client.method}."]
        if self.client.method == "private_key_jwt":
            notes.append(f"The client's keys are fetched from {self.jwks_url}.")
        return index_page(self.issuer, self.client.client_id, self.users, notes)

    # -- signing in --------------------------------------------------------------------------

    def _authorize(self, request: DevRequest) -> Reply:
        """GET: the sign-in form; POST (the form): sign the chosen user in, back to the app."""
        params = request.params()
        refused = self._check_authorization(params)
        if refused is not None:
            return refused
        action = f"{self.endpoint}/auth"
        if request.method == "GET":
            return html_reply(200, sign_in_page(action, self.client.client_id, self.users, params))
        user = self._people.get(params.pop("user", ""))
        if user is None:
            page = sign_in_page(action, self.client.client_id, self.users, params, "pick a user")
            return html_reply(400, page)
        callback = self._endpoints.authorize(f"{action}?{urlencode(params)}", user)
        self._say(f"signed in {user.claims['preferred_username']} to {self.client.client_id}")
        return redirect(callback)

    def _check_authorization(self, params: Mapping[str, str]) -> Reply | None:
        """None for a request this server serves; else the error page (unknown client or
        redirect URI: never redirected to) or the error sent back to the app."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        if client_id != self.client.client_id:
            message = f"unknown client {client_id!r}: this server serves {self.client.client_id!r}"
            return html_reply(400, error_page("Unknown client", message))
        if not self.client.redirect_allowed(redirect_uri):
            allowed = (
                f"only the configured redirect-uri {self.client.redirect_uri!r} is"
                if self.client.redirect_uri
                else "a URL on loopback or the app's origin is"
            )
            message = f"redirect_uri {redirect_uri!r} is not allowed: {allowed} allowed"
            return html_reply(400, error_page("Invalid redirect URI", message))
        problem = _authorization_problem(params)
        if problem is None:
            return None
        error, description = problem
        back = {"error": error, "error_description": description, "iss": self.issuer}
        if params.get("state"):
            back["state"] = params["state"]
        return redirect(redirect_uri, back)

    # -- tokens ------------------------------------------------------------------------------

    def _token(self, request: DevRequest) -> Reply:
        form = request.form()
        refused = self._authenticated(request, form)
        if refused is not None:
            return refused
        grant = form.get("grant_type", "")
        if grant == "client_credentials" and self.client.public:
            return oauth_error(400, "unauthorized_client", "a public client has no service account")
        with self._lock:
            revoked = grant == "refresh_token" and form.get("refresh_token") in self._revoked
        if revoked:
            return oauth_error(400, "invalid_grant", "the refresh token was revoked")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        authorization = request.header("Authorization")
        if authorization:
            headers["Authorization"] = authorization
        answer = self._endpoints.handle(
            httpx.Request("POST", f"{self.issuer}/token", headers=headers, content=request.body)
        )
        outcome = "issued" if answer.status_code == 200 else f"refused ({answer.status_code})"
        self._say(
            f"token request ({grant or 'no grant_type'}) from {self.client.client_id}: {outcome}"
        )
        content_type = answer.headers.get("content-type", "application/json")
        return Reply(answer.status_code, answer.content, content_type)

    def _authenticated(self, request: DevRequest, form: Mapping[str, str]) -> Reply | None:
        problem = self._auth.authenticate(request.headers, form)
        if problem is None:
            return None
        self._say(f"client authentication refused: {problem}")
        return oauth_error(401, "invalid_client", problem)

    def _revoke(self, request: DevRequest) -> Reply:
        form = request.form()
        refused = self._authenticated(request, form)
        if refused is not None:
            return refused
        with self._lock:
            self._revoked.add(form.get("token", ""))
        return Reply(200)

    def _introspect(self, request: DevRequest) -> Reply:
        form = request.form()
        refused = self._authenticated(request, form)
        if refused is not None:
            return refused
        claims = self.verified(form.get("token", ""))
        return json_reply(200, {"active": True, **claims} if claims else {"active": False})

    def _userinfo(self, request: DevRequest) -> Reply:
        authorization = request.header("Authorization")
        token = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        claims = self.verified(token)
        if claims is None:
            challenge = ("WWW-Authenticate", 'Bearer error="invalid_token"')
            return json_reply(401, {"error": "invalid_token"}, challenge)
        return json_reply(200, {k: v for k, v in claims.items() if k not in _TOKEN_PLUMBING})

    def verified(self, token: str, *, check_expiry: bool = True) -> dict[str, Any] | None:
        """The claims of a token this server signed (unexpired unless ``check_expiry`` is
        false), else None."""
        try:
            jws = parse_compact(token)
            claims = strict_json(jws.payload)
        except (ValueError, RecursionError):
            return None
        alg, kid = jws.header.get("alg"), jws.header.get("kid")
        key = self._minter.published().get(str(alg))
        if key is None or key.kid != kid or not isinstance(claims, dict):
            return None
        if not verify_signature(
            key.alg, key.private_key.public_key(), jws.signing_input, jws.signature
        ):
            return None
        if claims.get("iss") != self.issuer:
            return None
        expiry = claims.get("exp")
        if check_expiry and (not isinstance(expiry, int | float) or expiry < time.time()):
            return None
        return claims

    # -- signing out -------------------------------------------------------------------------

    def _logout(self, request: DevRequest) -> Reply:
        """RP-initiated logout: back to ``post_logout_redirect_uri`` (with ``state``) when the
        client is known (``client_id``, or the ``id_token_hint`` this server signed) and the URI
        allowed, else a signed-out page. A hint from before a restart (other keys) is ignored."""
        params = request.params()
        back = params.get("post_logout_redirect_uri")
        hint = self.verified(params.get("id_token_hint", ""), check_expiry=False)
        client_id = params.get("client_id") or (hint or {}).get("aud")
        self._say(f"signed out of {self.client.client_id}")
        if not back:
            return html_reply(200, signed_out_page())
        if client_id != self.client.client_id or not self.client.return_allowed(back):
            message = (
                f"post_logout_redirect_uri {back!r} is not allowed for client {client_id!r}: "
                "use a URL on loopback or the app's origin"
            )
            return html_reply(400, error_page("Sign-out refused", message))
        return redirect(back, {"state": params["state"]} if params.get("state") else None)

    _routes: Mapping[tuple[str, str], Callable[[DevIssuer, DevRequest], Reply]] = {
        ("GET", ""): _realm,
        ("GET", "/.well-known/openid-configuration"): _metadata,
        ("GET", f"{OIDC}/certs"): _certs,
        ("GET", f"{OIDC}/auth"): _authorize,
        ("POST", f"{OIDC}/auth"): _authorize,
        ("POST", f"{OIDC}/token"): _token,
        ("POST", f"{OIDC}/revoke"): _revoke,
        ("POST", f"{OIDC}/token/introspect"): _introspect,
        ("GET", f"{OIDC}/userinfo"): _userinfo,
        ("POST", f"{OIDC}/userinfo"): _userinfo,
        ("GET", f"{OIDC}/logout"): _logout,
        ("POST", f"{OIDC}/logout"): _logout,
    }


def _authorization_problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    """What an authorization request lacks, as (error, description); None when it is whole."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "only the authorization code flow (code) is served"
    if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        return "invalid_request", "PKCE with code_challenge_method=S256 is required"
    if not params.get("state"):
        return "invalid_request", "state is required"
    if params.get("prompt") == "none":
        return "login_required", "this server keeps no session: a user must pick a name"
    return None
