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
import ssl
import time
import zlib
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from adapter.errors import ProviderError, TokenError, ValidationError, bounded_text
from adapter.jose import strict_json
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.dpop_auth import DPoPProofs
from adapter.protocol.tokens import TokenSet, bound_certificate, unverified_claims

T = TypeVar("T")
log = logging.getLogger(__name__)
KID_EXTENSION = "oidc_adapter.kid"  # set by private_key_jwt: which key signed the assertion
_RETRIES_WARNED: set[tuple[str | None, str | None]] = set()  # (refused kid, previous kid)
_RETRIES_WARNED_MAX = 64  # bounded: switches are rare, kids few


@dataclass(frozen=True)
class Send:
    """One request a flow wants sent; ``authenticate`` adds the client authentication,
    ``dpop`` a DPoP proof of that key (RFC 9449: the tokens come back bound to it), for
    ``access_token`` when the request presents one (``Authorization: DPoP``, ``ath``)."""

    request: httpx.Request
    authenticate: bool = False
    dpop: DPoPKey | None = None
    access_token: str | None = field(default=None, repr=False)


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
            headers=_identity_encoding(step.request.headers),
            auth=_auth(step, auth),
            extensions=step.request.extensions,
            timeout=_within(client.timeout, total),
        ) as response:
            reader = _Reader(response, deadline)
            for chunk in [response.content] if reader.in_memory else response.iter_raw():
                reader.feed(chunk)
            return reader.complete()
    except httpx.HTTPError as exc:
        return _transport_error(step.request, exc)
    except _Unusable as exc:
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
            headers=_identity_encoding(step.request.headers),
            auth=_auth(step, auth),
            extensions=step.request.extensions,
            timeout=_within(client.timeout, total),
        ) as response:
            reader = _Reader(response, deadline)
            if reader.in_memory:
                reader.feed(response.content)
            else:
                async for chunk in response.aiter_raw():
                    reader.feed(chunk)
            return reader.complete()
    except httpx.HTTPError as exc:
        return _transport_error(step.request, exc)
    except _Unusable as exc:
        return ProviderError(str(exc))


def _auth(step: Send, auth: httpx.Auth | None) -> httpx.Auth | None:
    """The step's authentication: the client's when asked, inside DPoP proofs when asked."""
    client_auth = auth if step.authenticate else None
    if step.dpop is None:
        return client_auth
    if step.access_token is None:  # a token request: the proof alone
        return DPoPProofs(step.dpop, client_auth)
    return DPoPProofs(step.dpop, client_auth, access_token=step.access_token)


def _within(timeout: httpx.Timeout, total: float | None) -> httpx.Timeout:
    """The client's timeouts, none longer than ``total``: a connect or a read can then never
    outlast the whole exchange's bound (a best-effort call such as a logout's revocation)."""
    if total is None:
        return timeout

    def bounded(value: float | None) -> float:
        return total if value is None else min(value, total)

    return httpx.Timeout(
        connect=bounded(timeout.connect),
        read=bounded(timeout.read),
        write=bounded(timeout.write),
        pool=bounded(timeout.pool),
    )


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
        _log_retry(refused, getattr(retry, "key", None) and retry.key.kid)  # type: ignore[attr-defined]
    return retry


def _log_retry(refused: str | None, previous: str | None) -> None:
    """One warning per switch and key (the pair of kids); every later retry for the same
    pair, until the server's JWKS cache catches up, at debug: one line, not one per request."""
    pair = (refused, previous)
    level = logging.DEBUG if pair in _RETRIES_WARNED else logging.WARNING
    if level == logging.WARNING:
        if len(_RETRIES_WARNED) >= _RETRIES_WARNED_MAX:
            _RETRIES_WARNED.clear()
        _RETRIES_WARNED.add(pair)
    log.log(
        level,
        "the server refused the client assertion signed by key %s (invalid_client); "
        "retrying once with the previous key %s: its JWKS cache may predate the switch "
        "(said once per switch; later retries at debug level)",
        refused,
        previous,
    )


class _Unusable(Exception):
    """An answer refused while it is read (too big, too slow, badly encoded)."""


def _identity_encoding(headers: httpx.Headers) -> httpx.Headers:
    """The request's headers asking for an uncompressed answer (the body cap is then the
    memory bound; httpx would otherwise offer gzip, deflate and more)."""
    sent = httpx.Headers(headers)
    sent["Accept-Encoding"] = "identity"
    return sent


class _Reader:
    """One answer's body, capped on the bytes received and again on the bytes inflated.

    The raw bytes are read (httpx would inflate each network chunk whole before the cap is
    checked: 64 KiB of gzip can hold 64 MiB); a ``Content-Encoding`` the server sends anyway
    is inflated here, at most a chunk past the cap. An answer built in memory (as
    ``httpx.MockTransport`` returns them) is already read and decoded: ``in_memory``.
    """

    def __init__(self, response: httpx.Response, deadline: float | None) -> None:
        self._where = _url(response.request)
        self._response = response
        self._deadline = deadline
        self._received = 0
        self._body = bytearray()
        self.in_memory = response.is_stream_consumed
        encoding = "" if self.in_memory else response.headers.get("content-encoding", "")
        self._inflater = _inflater(encoding, self._where)

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        self._check(self._received)
        if self._inflater is None:
            self._body += chunk
        else:
            self._inflater.feed(chunk, self._body, self._check)
        self._check(len(self._body))

    def complete(self) -> httpx.Response:
        """A read response carrying the decoded body (so flows see ``.content`` as usual)."""
        cut = self._inflater is not None and self._received and not self._inflater.finished()
        if cut:  # an empty body is no stream at all (some servers label even that gzip)
            raise _Unusable(f"{self._where}: the compressed answer is incomplete")
        response = self._response
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=bytes(self._body),
            request=response.request,
        )

    def _check(self, size: int) -> None:
        if size > MAX_RESPONSE_BYTES:
            raise _Unusable(f"{self._where}: the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise _Unusable(f"{self._where}: no complete answer in time")


_INFLATE_STEP = 65_536  # bytes inflated at a time: the most the cap can be overshot by


class _Inflater:
    """gzip or deflate inflated a step at a time, so that the caller's cap stops a bomb."""

    def __init__(self, encoding: str, where: str) -> None:
        self._encoding = encoding
        self._where = where
        # gzip: header required; deflate: RFC 9110 says the zlib format, raw is tried after
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, body: bytearray, check: Callable[[int], None]) -> None:
        """Inflate ``data`` into ``body``, calling ``check`` with its size after each step."""
        while not self._decompressor.eof:
            try:
                out = self._decompressor.decompress(data, _INFLATE_STEP)
            except zlib.error:
                self._restart_raw()
                continue
            self._started = True
            body += out
            check(len(body))
            data = self._decompressor.unconsumed_tail
            if not data and len(out) < _INFLATE_STEP:
                return  # input used up, nothing more pending

    def _restart_raw(self) -> None:
        """A deflate answer that is not zlib may be raw deflate (httpx accepts both)."""
        if self._started or self._encoding != "deflate" or self._wbits < 0:
            raise _Unusable(
                f"{self._where}: the answer's {self._encoding} encoding is corrupt"
            ) from None
        self._wbits = -zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(self._wbits)

    def finished(self) -> bool:
        """Whether the compressed stream ended (a cut one would inflate to a partial body)."""
        return self._decompressor.eof


def _inflater(content_encoding: str, where: str) -> _Inflater | None:
    """The inflater for the answer's ``Content-Encoding``; anything but gzip and deflate is
    refused (the request asked for none: a server sending brotli anyway is not guessed at)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Inflater("gzip", where)
    if encoding == "deflate":
        return _Inflater("deflate", where)
    raise _Unusable(
        f"{where}: the answer is encoded with {bounded_text(encoding, 32)!r}, which is refused; "
        "the server must answer Accept-Encoding: identity (or use gzip)"
    )


def _transport_error(request: httpx.Request, exc: httpx.HTTPError) -> ProviderError:
    where = _url(_sent(request, exc))
    tls = _tls_failure(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = bounded_text(tls.verify_message or tls.reason or "", 120)
        fix = _VERIFY_FIXES.get(tls.verify_code, _TRUST_THE_CA)
        return ProviderError(f"certificate verify failed for {where} ({reason}); {fix}")
    if tls is not None:
        reason = bounded_text(tls.reason or type(tls).__name__, 80)
        fix = "is it an https port?" if reason == "WRONG_VERSION_NUMBER" else "check its TLS set-up"
        return ProviderError(f"{where}: the TLS handshake failed ({reason}); {fix}")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"{where}: no answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return ProviderError(f"{where}: cannot connect ({type(exc).__name__})")
    return ProviderError(f"{where}: the exchange failed ({type(exc).__name__})")


_TRUST_THE_CA = "trust the server's CA with truststore = a PEM, JKS or PKCS#12 file that holds it"
_WRONG_NAME = (
    "give the server a certificate for the name the adapter calls it by (allow-any-hostname "
    "only for a test set-up)"
)
# OpenSSL's X509_V_ERR_* codes whose fix is not the truststore.
_VERIFY_FIXES = {
    9: "the certificate is not valid yet; check this machine's clock",  # CERT_NOT_YET_VALID
    10: "the server must renew its certificate (or check this machine's clock)",  # EXPIRED
    62: _WRONG_NAME,  # HOSTNAME_MISMATCH
    64: _WRONG_NAME,  # IP_ADDRESS_MISMATCH
}


def _sent(request: httpx.Request, exc: httpx.HTTPError) -> httpx.Request:
    """The request as it went out (a back-channel URL rewrites it on the way), else the flow's."""
    try:
        return exc.request
    except RuntimeError:  # httpx attaches the request to every error it raises while sending
        return request


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` under an httpx error (httpx -> httpcore -> ssl), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _url(request: httpx.Request) -> str:
    """The request's URL for a message: no query, and bounded (discovery chose the path)."""
    url = f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}"
    return bounded_text(url, 200)


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


def token_request(
    token_endpoint: str,
    form: Mapping[str, str],
    dpop: DPoPKey | None = None,
    certificate: str | None = None,
) -> Flow[TokenSet]:
    """POST a grant to the token endpoint with client authentication (and with ``dpop``, a
    proof of that key: the tokens come back bound to it, RFC 9449 §5). ``certificate``: the
    thumbprint a JWT access token must be bound to (mTLS under a FAPI profile, RFC 8705)."""
    request = httpx.Request("POST", token_endpoint, headers=_FORM, content=urlencode(form))
    response = yield Send(request, authenticate=True, dpop=dpop)
    tokens = TokenSet.from_response(oauth_result(response, "token request"))
    if dpop is not None and tokens.token_type.lower() != "dpop":
        raise ProviderError(
            "token request: DPoP was asked for and the server answered a bearer token; turn "
            "DPoP on for this client at the server"
        )
    claims = unverified_claims(tokens.access_token) if certificate is not None else None
    if claims is not None and bound_certificate(claims) != certificate:  # opaque: its server's
        raise ProviderError(
            "token request: the access token is not bound to the client certificate; turn on "
            "certificate-bound tokens for this client at the server"
        )
    return tokens


def client_credentials(
    token_endpoint: str,
    scope: str | None = None,
    resource: str | None = None,
    dpop: DPoPKey | None = None,
    certificate: str | None = None,
) -> Flow[TokenSet]:
    """The client_credentials grant (RFC 6749 §4.4), with RFC 8707 ``resource`` if given."""
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    return (yield from token_request(token_endpoint, form, dpop, certificate))


def exchange_code(
    token_endpoint: str,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    dpop: DPoPKey | None = None,
    certificate: str | None = None,
) -> Flow[TokenSet]:
    """The authorization code grant (RFC 6749 §4.1.3) with the PKCE verifier (RFC 7636)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        form["code_verifier"] = code_verifier
    return (yield from token_request(token_endpoint, form, dpop, certificate))


def refresh(
    token_endpoint: str,
    refresh_token: str,
    scope: str | None = None,
    dpop: DPoPKey | None = None,
    certificate: str | None = None,
) -> Flow[TokenSet]:
    """The refresh token grant (RFC 6749 §6); a DPoP-bound refresh token needs its key."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope:
        form["scope"] = scope
    return (yield from token_request(token_endpoint, form, dpop, certificate))


def introspect(
    endpoint: str, token: str, token_type_hint: str | None = None, signed: bool = False
) -> Flow[dict[str, Any]]:
    """Token introspection (RFC 7662); the response's ``active`` says whether it is valid.

    With ``signed`` the answer is asked for as a JWT the server signs (RFC 9701, which
    Keycloak's ``Accept: application/jwt`` also answers): a server that does so answers
    ``{"jwt": <the answer's JWT>}`` here, still to be verified (:func:`signed_introspection`);
    one that does not answers plain JSON, which is then what counts."""
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    headers = {**_FORM, "Accept": _SIGNED_INTROSPECTION} if signed else _FORM
    request = httpx.Request("POST", endpoint, headers=headers, content=urlencode(form))
    response = yield Send(request, authenticate=True)
    media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if signed and response.status_code == 200 and media in _JWT_MEDIA:
        return {"jwt": response.text.strip()}
    document = oauth_result(response, "introspection")
    if not isinstance(document.get("active"), bool):
        raise ProviderError("introspection: the response has no boolean 'active'")
    return document


_SIGNED_INTROSPECTION = "application/token-introspection+jwt, application/json;q=0.5"
_JWT_MEDIA = frozenset({"application/token-introspection+jwt", "application/jwt"})


def signed_introspection(claims: Mapping[str, Any], issuer: str, client_id: str) -> dict[str, Any]:
    """The introspection answer inside a verified RFC 9701 JWT: issued by ``issuer`` for
    ``client_id``, its ``token_introspection`` an object with a boolean ``active``."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer or client_id not in audiences:
        raise ValidationError("the signed introspection answer is not from the issuer for us")
    answer = claims.get("token_introspection")
    if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
        raise ValidationError("the signed introspection answer holds no token_introspection")
    return answer


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
    sign: Callable[[Mapping[str, str]], str] | None = None,
) -> AuthorizationRequest:
    """An authorization code request URL with fresh state, nonce and PKCE S256 challenge;
    with ``sign`` (:mod:`adapter.protocol.request_object`), the parameters go signed in a
    ``request`` (``client_id``, ``response_type`` and ``scope`` repeated beside it, as OpenID
    Connect Core §6.1 asks)."""
    params, state, nonce, verifier = _authorization_params(client_id, redirect_uri, scope, extra)
    if sign is not None:
        request = sign(params)
        params = {"client_id": client_id, "response_type": "code", "scope": scope}
        params["request"] = request
    url = _with_query(authorization_endpoint, params)
    return AuthorizationRequest(url, state, nonce, verifier, redirect_uri)


def pushed_authorization_request(
    par_endpoint: str,
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    scope: str = "openid",
    extra: Mapping[str, str] | None = None,
    sign: Callable[[Mapping[str, str]], str] | None = None,
) -> Flow[AuthorizationRequest]:
    """The same request pushed to the server first (PAR, RFC 9126), with client authentication;
    with ``sign``, its parameters in a signed request object (JAR, RFC 9101 §5).

    The browser then carries only ``client_id`` and the ``request_uri`` the server returned, so
    the parameters can be neither read nor altered on the way.
    """
    params, state, nonce, verifier = _authorization_params(client_id, redirect_uri, scope, extra)
    if sign is not None:
        params = {"client_id": client_id, "request": sign(params)}
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


def response_issuer_problem(iss: str | None, issuer: str, required: bool) -> str | None:
    """What is wrong with the ``iss`` of an authorization response (RFC 9207), or None.

    A present ``iss`` must be the configured issuer (mix-up attacks); a missing one is refused
    when ``required``: the server's discovery says ``authorization_response_iss_parameter_
    supported: true`` (§2.4), so a response without it did not come from that server as it is.
    """
    if iss is None:
        if required:
            return "the callback has no iss, which the identity server says it always sends"
        return None
    if iss != issuer:
        return "the callback comes from another issuer"
    return None


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
