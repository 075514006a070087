"""The protocol core, sans-IO: each exchange with the identity server is a generator.

A flow yields :class:`Send` (an ``httpx.Request`` and whether it needs client authentication)
and receives the ``httpx.Response``; its return value is the result. :func:`run` drives a flow
with ``httpx.Client`` and :func:`run_async` with ``httpx.AsyncClient``, so every protocol
decision is written once (DESIGN.md rule 1) and a unit test can drive a flow by hand.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from adapter.errors import ProviderError, TokenError
from adapter.jose import strict_json
from adapter.tokens import TokenSet

T = TypeVar("T")
log = logging.getLogger("adapter.client_auth")
KID_EXTENSION = "oidc_adapter.kid"  # set by private_key_jwt: which key signed the assertion


@dataclass(frozen=True)
class Send:
    """One request a flow wants sent; ``authenticate`` adds the client authentication."""

    request: httpx.Request
    authenticate: bool = False


Flow = Generator[Send, httpx.Response, T]

_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


# --- drivers ---------------------------------------------------------------------------------


MAX_RESPONSE_BYTES = 1_048_576  # discovery, JWKS and token responses are a few KB


def run(
    flow: Flow[T],
    client: httpx.Client,
    auth: httpx.Auth | None = None,
    *,
    total_timeout: float | None = None,
) -> T:
    """Drive ``flow`` with a synchronous client; transport failures become ProviderError.

    ``total_timeout`` bounds each exchange as a whole (httpx's timeouts bound each read, so a
    server dripping bytes could otherwise hold a request far longer); bodies are capped.
    """
    try:
        step = next(flow)
        while True:
            response = _exchange(client, step, auth, total_timeout)
            retry = _retry_auth(step, auth, response)
            if retry is not None:
                response = _exchange(client, step, retry, total_timeout)
            if isinstance(response, ProviderError):
                raise response
            step = flow.send(response)
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(
    flow: Flow[T],
    client: httpx.AsyncClient,
    auth: httpx.Auth | None = None,
    *,
    total_timeout: float | None = None,
) -> T:
    """Drive ``flow`` with an asynchronous client; transport failures become ProviderError."""
    try:
        step = next(flow)
        while True:
            response = await _exchange_async(client, step, auth, total_timeout)
            retry = _retry_auth(step, auth, response)
            if retry is not None:
                response = await _exchange_async(client, step, retry, total_timeout)
            if isinstance(response, ProviderError):
                raise response
            step = flow.send(response)
    except StopIteration as done:
        result: T = done.value
        return result


def _exchange(
    client: httpx.Client, step: Send, auth: httpx.Auth | None, total: float | None
) -> httpx.Response | ProviderError:
    """Send and read one request; failures are returned, to be raised outside any handler
    (an httpx exception holds the request, credentials included: it must not become the
    ProviderError's ``__context__``)."""
    deadline = time.monotonic() + total if total else None
    try:
        with client.stream(
            step.request.method,
            step.request.url,
            content=step.request.content,
            headers=step.request.headers,
            auth=auth if step.authenticate else None,
            extensions=step.request.extensions,
        ) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                _check_limits(step.request, body, deadline)
            return _complete(response, bytes(body))
    except httpx.HTTPError as exc:
        return _transport_error(step.request, exc)
    except _LimitExceeded as exc:
        return ProviderError(str(exc))


async def _exchange_async(
    client: httpx.AsyncClient, step: Send, auth: httpx.Auth | None, total: float | None
) -> httpx.Response | ProviderError:
    deadline = time.monotonic() + total if total else None
    try:
        async with client.stream(
            step.request.method,
            step.request.url,
            content=step.request.content,
            headers=step.request.headers,
            auth=auth if step.authenticate else None,
            extensions=step.request.extensions,
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                _check_limits(step.request, body, deadline)
            return _complete(response, bytes(body))
    except httpx.HTTPError as exc:
        return _transport_error(step.request, exc)
    except _LimitExceeded as exc:
        return ProviderError(str(exc))


def _retry_auth(
    step: Send, auth: httpx.Auth | None, response: httpx.Response | ProviderError
) -> httpx.Auth | None:
    """After a key switch the server may refuse the new key (its JWKS cache is older): then
    the client authentication may offer the previous key for one retry (private_key_jwt)."""
    if not step.authenticate or auth is None or isinstance(response, ProviderError):
        return None
    if response.status_code not in (400, 401) or not hasattr(auth, "retry_auth"):
        return None
    document = _json(response)
    if not isinstance(document, dict) or document.get("error") != "invalid_client":
        return None
    refused = response.request.extensions.get(KID_EXTENSION)
    retry: httpx.Auth | None = auth.retry_auth(refused)
    if retry is not None:
        log.warning(
            "the server refused the client assertion signed by key %s (invalid_client); "
            "retrying once with the previous key %s: its JWKS cache may predate the switch",
            refused,
            getattr(retry, "key", None) and retry.key.kid,  # type: ignore[attr-defined]
        )
    return retry


class _LimitExceeded(Exception):
    pass


def _check_limits(request: httpx.Request, body: bytearray, deadline: float | None) -> None:
    if len(body) > MAX_RESPONSE_BYTES:
        raise _LimitExceeded(
            f"{_url(request)}: the answer is larger than {MAX_RESPONSE_BYTES} bytes"
        )
    if deadline is not None and time.monotonic() > deadline:
        raise _LimitExceeded(f"{_url(request)}: no complete answer in time")


def _complete(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read response carrying the decoded body (so flows see ``.content`` as usual)."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-encoding"]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def _transport_error(request: httpx.Request, exc: httpx.HTTPError) -> ProviderError:
    where = _url(request)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"{where}: no answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return ProviderError(f"{where}: cannot connect ({type(exc).__name__})")
    return ProviderError(f"{where}: the exchange failed ({type(exc).__name__})")


def _url(request: httpx.Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}"


# --- reading responses -----------------------------------------------------------------------


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object in a 200 response, or a ProviderError naming ``what`` went wrong."""
    if response.status_code != 200:
        raise ProviderError(f"{what}: {_where(response)} answered HTTP {response.status_code}")
    document = _json(response)
    if not isinstance(document, dict):
        raise ProviderError(f"{what}: {_where(response)} did not answer a JSON object")
    return document


def _json(response: httpx.Response) -> Any:
    """The response's JSON, or ``None`` for anything else (bad bytes, NaN, absurd nesting)."""
    try:
        return strict_json(response.content)
    except (ValueError, RecursionError):
        return None


def oauth_result(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON body of a successful OAuth response; an OAuth error becomes TokenError.

    RFC 6749 §5.2: errors come as 400 (401 for client authentication) with ``error`` and
    ``error_description``. Anything else unexpected is the server's failure (ProviderError).
    """
    if response.status_code in (400, 401, 403):
        document = _json(response)
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            description = document.get("error_description")
            raise TokenError(
                document["error"], description if isinstance(description, str) else None
            )
    return json_object(response, what)


def _where(response: httpx.Response) -> str:
    return _url(response.request)


# --- discovery and keys ----------------------------------------------------------------------


def discovery_url(issuer: str) -> str:
    """OpenID Connect Discovery §4: the issuer plus ``/.well-known/openid-configuration``."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def get_json(url: str, what: str) -> Flow[dict[str, Any]]:
    """GET a JSON document (discovery, JWKS)."""
    response = yield Send(httpx.Request("GET", url, headers={"Accept": "application/json"}))
    return json_object(response, what)


# --- token endpoint --------------------------------------------------------------------------


def token_request(token_endpoint: str, form: Mapping[str, str]) -> Flow[TokenSet]:
    """POST a grant to the token endpoint with client authentication."""
    request = httpx.Request("POST", token_endpoint, headers=_FORM, content=urlencode(form))
    response = yield Send(request, authenticate=True)
    return TokenSet.from_response(oauth_result(response, "token request"))


def client_credentials(
    token_endpoint: str, scope: str | None = None, resource: str | None = None
) -> Flow[TokenSet]:
    """The client_credentials grant (RFC 6749 §4.4), with RFC 8707 ``resource`` if given."""
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    return (yield from token_request(token_endpoint, form))


def exchange_code(
    token_endpoint: str, code: str, redirect_uri: str, code_verifier: str | None
) -> Flow[TokenSet]:
    """The authorization code grant (RFC 6749 §4.1.3) with the PKCE verifier (RFC 7636)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        form["code_verifier"] = code_verifier
    return (yield from token_request(token_endpoint, form))


def refresh(token_endpoint: str, refresh_token: str, scope: str | None = None) -> Flow[TokenSet]:
    """The refresh token grant (RFC 6749 §6)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope:
        form["scope"] = scope
    return (yield from token_request(token_endpoint, form))


def introspect(
    endpoint: str, token: str, token_type_hint: str | None = None
) -> Flow[dict[str, Any]]:
    """Token introspection (RFC 7662); the response's ``active`` says whether it is valid."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    request = httpx.Request("POST", endpoint, headers=_FORM, content=urlencode(form))
    response = yield Send(request, authenticate=True)
    document = oauth_result(response, "introspection")
    if not isinstance(document.get("active"), bool):
        raise ProviderError("introspection: the response has no boolean 'active'")
    return document


def revoke(endpoint: str, token: str, token_type_hint: str | None = None) -> Flow[None]:
    """Token revocation (RFC 7009); success is HTTP 200 whatever the token was."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    request = httpx.Request("POST", endpoint, headers=_FORM, content=urlencode(form))
    response = yield Send(request, authenticate=True)
    if response.status_code != 200:
        oauth_result(response, "revocation")  # raises TokenError or ProviderError
    return None


# --- front-channel URLs (no I/O) -------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """What a login must remember until the callback: state, nonce and the PKCE verifier."""

    url: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


def authorization_request(
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    scope: str = "openid",
    extra: Mapping[str, str] | None = None,
) -> AuthorizationRequest:
    """An authorization code request URL with fresh state, nonce and PKCE S256 challenge."""
    params, state, nonce, verifier = _authorization_params(client_id, redirect_uri, scope, extra)
    url = _with_query(authorization_endpoint, params)
    return AuthorizationRequest(url, state, nonce, verifier, redirect_uri)


def pushed_authorization_request(
    par_endpoint: str,
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    scope: str = "openid",
    extra: Mapping[str, str] | None = None,
) -> Flow[AuthorizationRequest]:
    """The same request pushed to the server first (PAR, RFC 9126), with client authentication.

    The browser then carries only ``client_id`` and the ``request_uri`` the server returned, so
    the parameters can be neither read nor altered on the way.
    """
    params, state, nonce, verifier = _authorization_params(client_id, redirect_uri, scope, extra)
    request = httpx.Request("POST", par_endpoint, headers=_FORM, content=urlencode(params))
    response = yield Send(request, authenticate=True)
    if response.status_code == 201:  # RFC 9126 §2.2 answers 201 Created
        response.status_code = 200
    document = oauth_result(response, "pushed authorization request")
    request_uri = document.get("request_uri")
    if not isinstance(request_uri, str):
        raise ProviderError("pushed authorization request: the response has no request_uri")
    url = _with_query(authorization_endpoint, {"client_id": client_id, "request_uri": request_uri})
    return AuthorizationRequest(url, state, nonce, verifier, redirect_uri)


_RESERVED_PARAMETERS = frozenset(
    {"response_type", "client_id", "redirect_uri", "state", "nonce", "code_challenge",
     "code_challenge_method", "request_uri", "request"}
)  # fmt: skip


def _authorization_params(
    client_id: str, redirect_uri: str, scope: str, extra: Mapping[str, str] | None
) -> tuple[dict[str, str], str, str, str]:
    reserved = set(extra or ()) & _RESERVED_PARAMETERS
    if reserved:
        raise ValueError(f"extra parameters may not replace {', '.join(sorted(reserved))}")
    state = secrets.token_urlsafe(24)
    nonce = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43-128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge.rstrip(b"=").decode("ascii"),
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    return params, state, nonce, verifier


def end_session_url(
    end_session_endpoint: str,
    id_token_hint: str | None = None,
    post_logout_redirect_uri: str | None = None,
    client_id: str | None = None,
    state: str | None = None,
) -> str:
    """RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0 §2)."""
    params = {
        "id_token_hint": id_token_hint,
        "post_logout_redirect_uri": post_logout_redirect_uri,
        "client_id": client_id,
        "state": state,
    }
    return _with_query(end_session_endpoint, {k: v for k, v in params.items() if v})


def _with_query(url: str, params: Mapping[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode(params)
