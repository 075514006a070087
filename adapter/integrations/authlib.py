"""authlib: the adapter's client authentication as the token endpoint auth method of authlib's
OAuth 2 clients (``httpx_client.OAuth2Client`` / ``AsyncOAuth2Client``, ``requests_client.
OAuth2Session``, and through them its Starlette and Flask integrations).

    from authlib.integrations.httpx_client import OAuth2Client
    from adapter.integrations.authlib import ClientAuthMethod

    method = ClientAuthMethod("adapter.toml")  # or ClientAuthMethod(middleware.client)
    client = method.install(
        OAuth2Client(method.client_id, token_endpoint_auth_method=method.name)
    )
    client.fetch_token(token_endpoint, grant_type="client_credentials")

Every assertion is signed by the key ring's active key, with Keycloak's kid, so ``activate-at``
switches and reloads apply to authlib's requests as to the adapter's own; given the app's
middleware client, the keys authlib signs with are the ones its ``/k_jwks`` publishes. The
assertion, and the previous-key retry after a switch, are :mod:`adapter.protocol.client_auth`'s and
:mod:`adapter.protocol.flows`' (one rule for both); this module only translates between their
``httpx.Auth`` objects and authlib's auth-method interface,
``method(client, http_method, uri, headers, body) -> (uri, headers, body)``. For the
integrations' registries: ``oauth.register(..., client_auth_methods=[method],
token_endpoint_auth_method=method.name)`` (signing; the retry needs :meth:`install`).
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx

from adapter.config import AdapterConfig
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing
from adapter.protocol.client_auth import client_auth
from adapter.protocol.flows import KID_EXTENSION, Send, _retry_auth
from adapter.reload import Reloader, ReloadStatus
from adapter.state import AdapterState

__all__ = ["ClientAuthMethod"]

_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[authlib]'"
_FORM = "application/x-www-form-urlencoded"


def _require_authlib() -> None:
    """Fail at construction, naming the extra, rather than at the first token request."""
    if importlib.util.find_spec("authlib") is None:
        raise ImportError(
            f"adapter.integrations.authlib works with authlib's clients; {_EXTRA_HINT}"
        )


class StateSource(Protocol):
    """What holds the current state: the adapter's clients (``middleware.client``)."""

    @property
    def state(self) -> AdapterState: ...


class _OwnState:
    """The state of a configuration this bridge loaded itself."""

    def __init__(self, state: AdapterState) -> None:
        self.state = state

    def swap(self, state: AdapterState) -> None:
        self.state = state


AuthMethod = Callable[[Any, str, str, Any, Any], tuple[str, Any, Any]]


class ClientAuthMethod:
    """The configured client authentication, as an authlib auth method named :attr:`name`.

    ``source`` is a configuration (file or :class:`AdapterConfig`: loaded here, reloaded by
    :meth:`reload`), or an object with the adapter's current ``state`` such as
    ``middleware.client``: then every reload of the middleware applies here too.
    """

    def __init__(
        self,
        source: AdapterConfig | str | Path | StateSource,
        *,
        key_ring: KeyRing | None = None,
    ) -> None:
        _require_authlib()
        self._reloader: Reloader | None = None
        if isinstance(source, AdapterConfig | str | Path):
            own = _OwnState(AdapterState.load(source, key_ring=key_ring))
            if not isinstance(source, AdapterConfig):
                self._reloader = Reloader(Path(source), lambda: own.state, own.swap)
            self._source: StateSource = own
        else:
            self._source = source
        method = self._source.state.config.credentials.method
        if method == "none":
            raise ConfigError(
                'credentials.method: "none" is a public client, with no client authentication '
                'to lend authlib; give authlib token_endpoint_auth_method="none" itself'
            )
        self.name = method  # registered under this name: it replaces authlib's own method

    @property
    def client_id(self) -> str:
        """The configured client id: give it to the authlib client."""
        return self._source.state.config.client_id

    def reload(self) -> bool:
        """Reload the configuration file now; ``False`` (old state kept) when it is broken."""
        if self._reloader is None:
            raise ConfigError(
                "reload: this method follows an adapter client's state (or was given a "
                "configuration object); reload the middleware instead"
            )
        return self._reloader.reload()

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and key states (``None``: not loaded here)."""
        return self._reloader.status if self._reloader is not None else None

    def install(self, client: Any) -> Any:
        """Register this method with an authlib OAuth 2 client and give that client the
        previous-key retry (httpx and requests clients); returns ``client``."""
        chosen = getattr(client, "token_endpoint_auth_method", None)
        if chosen != self.name:
            raise ConfigError(
                f"authlib client: token_endpoint_auth_method is {chosen!r}; create it with "
                f"token_endpoint_auth_method={self.name!r} (method.name)"
            )
        client.register_client_auth_method((self.name, self))
        client.client_auth_class = _with_retry(type(client).client_auth_class)
        return client

    def __call__(
        self, client: Any, method: str, uri: str, headers: Any, body: Any
    ) -> tuple[str, Any, Any]:
        """authlib's auth-method interface: the request with this client's authentication."""
        named = getattr(client, "client_id", None)
        if named and named != self.client_id:
            raise ConfigError(
                f"authlib client: client_id {named!r} is not the configured client-id "
                f"{self.client_id!r}; create the client with client_id=method.client_id"
            )
        return _applied(self._auth(uri), method, uri, headers, body)

    def retry_for(
        self, uri: str, status: int, answer: bytes, sent: bytes | str
    ) -> AuthMethod | None:
        """After a refusal of the request that carried ``sent``: the method signing with the
        previous key when the adapter's rule allows one retry (``invalid_client`` right after
        a key switch, see :mod:`adapter.protocol.flows`), else ``None``."""
        kid = _assertion_kid(sent)
        request = httpx.Request("POST", uri, extensions={KID_EXTENSION: kid} if kid else {})
        response = httpx.Response(status, content=answer, request=request)
        retry = _retry_auth(Send(request, authenticate=True), self._auth(uri), response)
        if retry is None:
            return None

        def previous_key(client: Any, method: str, url: str, headers: Any, body: Any) -> Any:
            return _applied(retry, method, url, headers, body)

        return previous_key

    def _auth(self, uri: str) -> httpx.Auth:
        """The ``httpx.Auth`` of the current state for this token endpoint, built once."""
        state = self._source.state  # one snapshot: its ring signs, its JWKS publishes
        endpoint = uri.split("?", 1)[0]
        key = f"authlib:{endpoint}"
        auth = state.derived.get(key)
        if auth is None:
            grace = state.config.credentials.key_switch_grace
            auth = client_auth(
                state.config, state.ring, endpoint, lambda: state.fallback_key(grace)
            )
            if auth is None:  # a reload made the client public
                raise ConfigError('credentials.method: "none" has no client authentication')
            state.derived[key] = auth
        result: httpx.Auth = auth
        return result

    def __repr__(self) -> str:
        return f"ClientAuthMethod(name={self.name!r}, client_id={self.client_id!r})"


def _applied(
    auth: httpx.Auth, method: str, uri: str, headers: Any, body: Any
) -> tuple[str, Any, Any]:
    """Run ``auth`` on the request authlib is building and hand back its parts: the
    ``Authorization`` header it set, or the form body with its fields (same type as given)."""
    content = body.encode() if isinstance(body, str) else bytes(body or b"")
    request = httpx.Request(method, uri, headers={"Content-Type": _FORM}, content=content)
    flow = auth.sync_auth_flow(request)
    signed = next(flow)
    flow.close()
    if "authorization" in signed.headers:
        headers["Authorization"] = signed.headers["authorization"]
    signed_body = signed.content
    if "Content-Length" in headers:
        headers["Content-Length"] = str(len(signed_body))
    return str(signed.url), headers, signed_body.decode() if isinstance(body, str) else signed_body


def _assertion_kid(body: bytes | str) -> str | None:
    """The ``kid`` of the client assertion a sent form carries (our own assertion)."""
    text = body.decode("ascii", "replace") if isinstance(body, bytes) else body
    assertion = dict(parse_qsl(text)).get("client_assertion", "")
    header = assertion.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return None
    kid = decoded.get("kid") if isinstance(decoded, dict) else None
    return kid if isinstance(kid, str) else None


_RETRYING: dict[Any, type] = {}


def _with_retry(base: Any) -> type:
    """authlib's client-auth class of one client flavour, answering a refused assertion with
    one retry by the previous key: as an httpx auth flow (which sees the response), or with a
    requests response hook (as requests' own digest auth retries)."""
    made = _RETRYING.get(base)
    if made is not None:
        return made
    namespace = _httpx_retry(base) if hasattr(base, "auth_flow") else _requests_retry(base)
    made = _RETRYING[base] = type(f"Retrying{base.__name__}", (base,), namespace)
    return made


def _httpx_retry(base: Any) -> dict[str, Any]:
    def auth_flow(self: Any, request: Any) -> Any:
        method = self.auth_method
        first = next(base.auth_flow(self, request))
        response = yield first
        if not isinstance(method, ClientAuthMethod):
            return
        retry = method.retry_for(
            str(first.url), response.status_code, response.content, first.content
        )
        if retry is not None:
            self.auth_method = retry  # this object serves this one request
            yield next(base.auth_flow(self, request))

    return {"auth_flow": auth_flow, "requires_response_body": True}


def _requests_retry(base: Any) -> dict[str, Any]:
    def call(self: Any, request: Any) -> Any:
        prepared = base.__call__(self, request)
        method = self.auth_method
        if isinstance(method, ClientAuthMethod):
            prepared.register_hook("response", lambda r, **kw: _requests_again(method, r, kw))
        return prepared

    return {"__call__": call}


def _requests_again(method: ClientAuthMethod, response: Any, options: dict[str, Any]) -> Any:
    """Send a refused token request once more, signed by the previous key, when allowed."""
    sent = response.request
    retry = method.retry_for(sent.url, response.status_code, response.content, sent.body or b"")
    if retry is None:
        return response
    again = sent.copy()
    again.url, again.headers, again.body = retry(
        None, again.method, again.url, again.headers, sent.body
    )
    response.close()
    answer = response.connection.send(again, **options)
    answer.history.append(response)
    answer.request = again
    return answer
