"""The token client: everything the app asks of the identity server, sync and async.

:class:`OIDCClient` (``httpx.Client``) and :class:`AsyncOIDCClient` (``httpx.AsyncClient``)
differ only in how they drive the flows of :mod:`adapter.protocol.flows`; what to send and how
to read the answer is decided there, once. Both authenticate with the configured method, validate ID
tokens and JWT access tokens against the server's keys, and hand out
:class:`~adapter.protocol.service_account.ServiceAccountAuth` for calls to downstream APIs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from adapter import _observe
from adapter.config import AdapterConfig
from adapter.errors import ConfigError
from adapter.jose import PublicKey
from adapter.keys.keyring import KeyRing
from adapter.protocol import flows
from adapter.protocol._connection import Connection
from adapter.protocol.client_auth import client_auth, expected_certificate
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.flows import AuthorizationRequest, Flow
from adapter.protocol.jwe import expected_id_tokens, is_jwe, signed_token
from adapter.protocol.provider import Provider, ProviderMetadata
from adapter.protocol.service_account import AsyncServiceAccountAuth, ServiceAccountAuth
from adapter.protocol.token_exchange import (
    AsyncTokenExchangeAuth,
    ExchangedTokens,
    Subject,
    TokenExchangeAuth,
    exchange_key,
    token_exchange,
)
from adapter.protocol.tokens import (
    Checking,
    ClaimRules,
    NeedKeys,
    TokenSet,
    ValidatedTokenCache,
    access_token_claims,
    check_claims,
    id_token_rules,
    run_check,
    run_check_async,
    verify_jwt,
)
from adapter.state import AdapterState

USER_AGENT = "oidc-adapter"
T = TypeVar("T")


class _ClientAuth(httpx.Auth):
    """The configured client authentication of the current state.

    Each state gets its own auth object, built on its first authenticated request (always after
    discovery, since ``assertion-audience = "token-endpoint"`` needs the token endpoint). A
    request reads the state once: its assertion is signed by a key of that state's ring.
    """

    requires_request_body = True

    def __init__(self, owner: _Base, state: AdapterState | None = None) -> None:
        self._owner = owner
        self._state = state  # fixed to one state, or None: the owner's current one

    def resolve(self, state: AdapterState | None = None) -> httpx.Auth | None:
        """The auth object for the configured method (None for a public client)."""
        state = state or self._state or self._owner.state
        if "auth" not in state.derived:
            metadata = self._owner.provider.cached_metadata()
            endpoint = metadata.token_endpoint if metadata is not None else None
            grace = state.config.credentials.key_switch_grace
            state.derived["auth"] = client_auth(
                state.config, state.ring, endpoint, lambda: state.fallback_key(grace)
            )
        auth: httpx.Auth | None = state.derived["auth"]
        return auth

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        auth = self.resolve()
        if auth is None:
            yield request
            return
        yield from auth.auth_flow(request)

    def retry_auth(self, refused_kid: str | None) -> httpx.Auth | None:
        """The previous-key retry of the resolved method, if it has one (private_key_jwt)."""
        retry = getattr(self.resolve(), "retry_auth", None)
        result: httpx.Auth | None = retry(refused_kid) if retry is not None else None
        return result


class _Base:
    """What both clients share: the state (configuration, keys), provider cache, tokens."""

    def __init__(
        self, config: AdapterConfig | str | Path, *, key_ring: KeyRing | None = None
    ) -> None:
        self.state = AdapterState.load(config, key_ring=key_ring)
        # Trust, back channel and proxy: fixed at start, like the provider (a reload keeps them).
        self.connection = Connection.from_config(self.config, self.state.ring)
        self.provider = Provider(
            self.config.issuer,
            keys_ttl=self.config.public_key_cache_ttl,
            min_refetch_interval=self.config.min_time_between_jwks_requests,
            total_timeout=self.total_timeout,
            ssl_required=self.config.ssl_required,
            endpoint_hosts=self.connection.endpoint_hosts(self.config.endpoint_hosts),
            id_token_alg=self.config.id_token_signing_alg,
        )
        self.validated = ValidatedTokenCache()
        self.exchanged = ExchangedTokens()  # token exchange: kept per subject, audience, scope
        self.auth = _ClientAuth(self)
        self._service_dpop: DPoPKey | None = None

    def service_dpop_key(self) -> DPoPKey | None:
        """The key the service account's tokens are bound to, with ``dpop-tokens``: the client
        key ``dpop-key`` names (its kid), else one made once per client (this process's: its
        tokens are cached here, never shared), ES256."""
        web = self.config.web
        if not web.dpop_tokens:
            return None
        if web.dpop_key is not None:
            named = [key for key in self.key_ring.keys if key.kid == web.dpop_key]
            if not named:
                known = ", ".join(key.kid for key in self.key_ring.keys) or "none"
                raise ConfigError(
                    f"dpop-key: no client key has kid {web.dpop_key!r} (its keys: {known})"
                )
            return DPoPKey(named[0].private_key)
        if self._service_dpop is None:
            self._service_dpop = DPoPKey.generate("ES256")
        return self._service_dpop

    def _exchange_flow(
        self,
        endpoint: str,
        subject_token: str,
        audience: str | None,
        scope: str | None,
        resource: str | None,
        dpop: DPoPKey | None,
    ) -> Flow[TokenSet]:
        bound = expected_certificate(self.config, self.key_ring)
        return token_exchange(
            endpoint, subject_token, audience=audience, scope=scope, resource=resource,
            dpop=dpop, certificate=bound,
        )  # fmt: skip

    def _forget_exchanged(
        self, audience: str | None, scope: str | None, resource: str | None
    ) -> Callable[[str, str], None]:
        """How an exchange ``Auth`` drops a token the downstream API refused."""
        return lambda subject, token: self.exchanged.drop(
            exchange_key(subject, audience, scope, resource), token
        )

    @property
    def config(self) -> AdapterConfig:
        """The configuration of the current state."""
        return self.state.config

    @property
    def key_ring(self) -> KeyRing:
        """The key ring of the current state."""
        return self.state.ring

    def _hint(self, id_token: str | None) -> str | None:
        """An ID token as ``id_token_hint``: an encrypted one as the signed token inside
        (Keycloak refuses an encrypted hint)."""
        if id_token is None or not is_jwe(id_token):
            return id_token
        return signed_token(id_token, expected_id_tokens(self.config, self.key_ring))

    def swap(self, state: AdapterState) -> None:
        """Use ``state`` from now on (one assignment; requests in flight keep theirs)."""
        self.state = state

    def auth_for(self, state: AdapterState | None) -> httpx.Auth:
        """Client authentication bound to ``state`` (or following the current state)."""
        if state is None:
            return self.auth
        bound = state.derived.get("bound-auth")
        if bound is None:
            bound = state.derived["bound-auth"] = _ClientAuth(self, state)
        result: httpx.Auth = bound
        return result

    @property
    def total_timeout(self) -> float:
        """Seconds one exchange with the server may take in all (connect + answer)."""
        return (self.config.connection_timeout_millis + self.config.socket_timeout_millis) / 1000

    def timeout(self) -> httpx.Timeout:
        """Bounded timeouts from the configuration (Keycloak's ``*-timeout-millis``)."""
        return httpx.Timeout(
            self.config.socket_timeout_millis / 1000,
            connect=self.config.connection_timeout_millis / 1000,
        )

    def client_assertion(self) -> str:
        """A fresh client assertion (private_key_jwt / client_secret_jwt), e.g. for debugging."""
        auth = self.auth.resolve()
        assertion = getattr(auth, "assertion", None)
        if assertion is None:
            raise ConfigError(
                f"credentials.method: {self.config.credentials.method} uses no client assertion"
            )
        result: str = assertion()
        return result

    def authorization_request(
        self,
        metadata: ProviderMetadata,
        redirect_uri: str,
        scope: str = "openid",
        extra: Mapping[str, str] | None = None,
    ) -> AuthorizationRequest:
        """A login URL with state, nonce and PKCE for ``redirect_uri``."""
        return flows.authorization_request(
            metadata.endpoint("authorization_endpoint"),
            self.config.client_id,
            redirect_uri,
            scope,
            extra,
        )

    def _pushed(
        self,
        metadata: ProviderMetadata,
        redirect_uri: str,
        scope: str,
        extra: Mapping[str, str] | None,
    ) -> Flow[AuthorizationRequest]:
        return flows.pushed_authorization_request(
            metadata.endpoint("pushed_authorization_request_endpoint"),
            metadata.endpoint("authorization_endpoint"),
            self.config.client_id,
            redirect_uri,
            scope,
            extra,
        )

    def _id_token_rules(self, nonce: str | None) -> ClaimRules:
        config = self.config
        return id_token_rules(config.issuer, config.client_id, config.clock_skew, nonce)

    def _access_token_rules(self, audience: str | None) -> ClaimRules:
        """An explicit ``audience``, else (with verify-token-audience, the default) the
        configured token-audiences or the client id."""
        config = self.config
        accepted: str | tuple[str, ...] | None = audience
        if audience is None and config.verify_token_audience:
            accepted = config.token_audiences or (config.client_id,)
        return ClaimRules(config.issuer, audience=accepted, leeway=config.clock_skew)


class OIDCClient(_Base):
    """The synchronous client (WSGI apps, scripts, the CLI)."""

    def __init__(
        self,
        config: AdapterConfig | str | Path,
        *,
        key_ring: KeyRing | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(config, key_ring=key_ring)
        if http is not None:
            self.connection.ignored_by(http)
        self.http = http or self.connection.client(self.timeout(), {"User-Agent": USER_AGENT})

    def run_flow(
        self,
        flow: Flow[T],
        state: AdapterState | None = None,
        *,
        total_timeout: float | None = None,
    ) -> T:
        """Drive a protocol flow with this client's HTTP client and authentication.

        ``state`` pins the client authentication to one snapshot (a request in flight);
        ``total_timeout`` bounds the exchange tighter than the configured timeouts.
        """
        auth = self.auth_for(state)
        limit = min(total_timeout or self.total_timeout, self.total_timeout)
        started, ok = time.perf_counter(), False
        try:
            result = flows.run(flow, self.http, auth, total_timeout=limit)
            ok = True
            return result
        finally:
            tenant = (state or self.state).config.tenant
            _observe.observer.token_call(tenant, time.perf_counter() - started, ok)

    def metadata(self) -> ProviderMetadata:
        """The server's discovery metadata (cached)."""
        return self.provider.metadata(self.http)

    def client_credentials(
        self, scope: str | None = None, resource: str | None = None, dpop: DPoPKey | None = None
    ) -> TokenSet:
        """A token for the client itself (service account); with ``dpop``, bound to it."""
        endpoint = self.metadata().token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        return self.run_flow(flows.client_credentials(endpoint, scope, resource, dpop, bound))

    def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        dpop: DPoPKey | None = None,
    ) -> TokenSet:
        """Tokens for an authorization code returned to ``redirect_uri`` (bound to ``dpop``)."""
        endpoint = self.metadata().token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        flow = flows.exchange_code(endpoint, code, redirect_uri, code_verifier, dpop, bound)
        return self.run_flow(flow)

    def refresh(
        self, refresh_token: str, scope: str | None = None, dpop: DPoPKey | None = None
    ) -> TokenSet:
        """New tokens for a refresh token (a DPoP-bound one needs its key)."""
        endpoint = self.metadata().token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        return self.run_flow(flows.refresh(endpoint, refresh_token, scope, dpop, bound))

    def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """The server's view of a token (RFC 7662)."""
        endpoint = self.metadata().endpoint("introspection_endpoint")
        return self.run_flow(flows.introspect(endpoint, token, token_type_hint))

    def revoke(self, token: str, token_type_hint: str | None = None) -> None:
        """Revoke a token (RFC 7009)."""
        endpoint = self.metadata().endpoint("revocation_endpoint")
        self.run_flow(flows.revoke(endpoint, token, token_type_hint))

    def login_request(
        self,
        redirect_uri: str,
        scope: str = "openid",
        extra: Mapping[str, str] | None = None,
        *,
        pushed: bool = False,
    ) -> AuthorizationRequest:
        """A login URL with fresh state, nonce and PKCE S256 for ``redirect_uri``.

        ``pushed`` sends the parameters to the server's PAR endpoint first (RFC 9126).
        """
        metadata = self.metadata()
        if not pushed:
            return self.authorization_request(metadata, redirect_uri, scope, extra)
        return self.run_flow(self._pushed(metadata, redirect_uri, scope, extra))

    def end_session_url(
        self,
        id_token_hint: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """Where to send the browser to log out at the server."""
        return flows.end_session_url(
            self.metadata().endpoint("end_session_endpoint"),
            self._hint(id_token_hint),
            post_logout_redirect_uri,
            self.config.client_id,
            state,
        )

    def validate_id_token(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of an ID token for this client, signed with ``id-token-signing-alg``,
        or :class:`ValidationError`."""
        signed = signed_token(id_token, expected_id_tokens(self.config, self.key_ring))
        claims = self._checked(verify_jwt(signed, (self.config.id_token_signing_alg,)))
        check_claims(claims, self._id_token_rules(nonce))
        return claims

    def validate_access_token(self, token: str, audience: str | None = None) -> Mapping[str, Any]:
        """The claims of a JWT access token (resource server), cached until it expires."""
        rules = self._access_token_rules(audience)
        return self._checked(access_token_claims(token, rules, self.validated))

    def _checked(self, check: Checking[T]) -> T:
        return run_check(check, self._keys)

    def _keys(self, need: NeedKeys) -> list[PublicKey]:
        """The server's keys for a token (discovery first, as its jwks_uri is there)."""
        self.metadata()
        cached = self.provider.cached_keys_for(need.kid, need.alg)
        return cached or self.provider.keys_for(self.http, need.kid, need.alg)

    def service_account_auth(
        self,
        scope: str | None = None,
        resource: str | None = None,
        refresh_margin: float = 30,
        allowed_origins: Iterable[str] | None = None,
    ) -> ServiceAccountAuth:
        """An ``httpx.Auth`` that sends this client's own (cached) access token downstream.

        ``allowed_origins`` (``https://api.example.com`` ...) limits where the token goes.
        """
        key = self.service_dpop_key()
        return ServiceAccountAuth(
            lambda: self.client_credentials(scope, resource, key),
            refresh_margin=refresh_margin,
            allowed_origins=allowed_origins,
            dpop=key,
        )

    def exchange_token(
        self,
        subject_token: str,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        *,
        dpop: DPoPKey | None = None,
    ) -> TokenSet:
        """The user's ``subject_token`` exchanged for a token for ``audience`` (RFC 8693,
        Keycloak's standard token exchange), kept until shortly before it expires: one
        exchange per (token, audience, scope, resource), concurrent callers wait for it."""
        key = exchange_key(subject_token, audience, scope, resource, dpop.jkt if dpop else None)

        def exchange() -> TokenSet:
            endpoint = self.metadata().token_endpoint
            flow = self._exchange_flow(endpoint, subject_token, audience, scope, resource, dpop)
            return self.run_flow(flow)

        return self.exchanged.get(key, exchange)

    def exchange_auth(
        self,
        subject: Subject,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> TokenExchangeAuth:
        """An ``httpx.Auth`` that sends ``subject``'s access token exchanged for ``audience``:
        ``subject`` is the identity (``request.user``), a token, or a callable giving one."""
        return TokenExchangeAuth(
            subject,
            lambda token: self.exchange_token(token, audience, scope, resource),
            self._forget_exchanged(audience, scope, resource),
            allowed_origins,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    def __enter__(self) -> OIDCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOIDCClient(_Base):
    """The asynchronous client (ASGI apps)."""

    def __init__(
        self,
        config: AdapterConfig | str | Path,
        *,
        key_ring: KeyRing | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(config, key_ring=key_ring)
        if http is not None:
            self.connection.ignored_by(http)
        self.http = http or self.connection.async_client(self.timeout(), {"User-Agent": USER_AGENT})

    async def run_flow(
        self,
        flow: Flow[T],
        state: AdapterState | None = None,
        *,
        total_timeout: float | None = None,
    ) -> T:
        """Drive a protocol flow with this client's HTTP client and authentication.

        ``state`` pins the client authentication to one snapshot (a request in flight);
        ``total_timeout`` bounds the exchange tighter than the configured timeouts.
        """
        auth = self.auth_for(state)
        limit = min(total_timeout or self.total_timeout, self.total_timeout)
        started, ok = time.perf_counter(), False
        try:
            result = await flows.run_async(flow, self.http, auth, total_timeout=limit)
            ok = True
            return result
        finally:
            tenant = (state or self.state).config.tenant
            _observe.observer.token_call(tenant, time.perf_counter() - started, ok)

    async def metadata(self) -> ProviderMetadata:
        """The server's discovery metadata (cached)."""
        return await self.provider.metadata_async(self.http)

    async def client_credentials(
        self, scope: str | None = None, resource: str | None = None, dpop: DPoPKey | None = None
    ) -> TokenSet:
        """A token for the client itself (service account); with ``dpop``, bound to it."""
        endpoint = (await self.metadata()).token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        flow = flows.client_credentials(endpoint, scope, resource, dpop, bound)
        return await self.run_flow(flow)

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        dpop: DPoPKey | None = None,
    ) -> TokenSet:
        """Tokens for an authorization code returned to ``redirect_uri`` (bound to ``dpop``)."""
        endpoint = (await self.metadata()).token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        flow = flows.exchange_code(endpoint, code, redirect_uri, code_verifier, dpop, bound)
        return await self.run_flow(flow)

    async def refresh(
        self, refresh_token: str, scope: str | None = None, dpop: DPoPKey | None = None
    ) -> TokenSet:
        """New tokens for a refresh token (a DPoP-bound one needs its key)."""
        endpoint = (await self.metadata()).token_endpoint
        bound = expected_certificate(self.config, self.key_ring)
        return await self.run_flow(flows.refresh(endpoint, refresh_token, scope, dpop, bound))

    async def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """The server's view of a token (RFC 7662)."""
        endpoint = (await self.metadata()).endpoint("introspection_endpoint")
        return await self.run_flow(flows.introspect(endpoint, token, token_type_hint))

    async def revoke(self, token: str, token_type_hint: str | None = None) -> None:
        """Revoke a token (RFC 7009)."""
        endpoint = (await self.metadata()).endpoint("revocation_endpoint")
        await self.run_flow(flows.revoke(endpoint, token, token_type_hint))

    async def login_request(
        self,
        redirect_uri: str,
        scope: str = "openid",
        extra: Mapping[str, str] | None = None,
        *,
        pushed: bool = False,
    ) -> AuthorizationRequest:
        """A login URL with fresh state, nonce and PKCE S256 for ``redirect_uri``.

        ``pushed`` sends the parameters to the server's PAR endpoint first (RFC 9126).
        """
        metadata = await self.metadata()
        if not pushed:
            return self.authorization_request(metadata, redirect_uri, scope, extra)
        return await self.run_flow(self._pushed(metadata, redirect_uri, scope, extra))

    async def end_session_url(
        self,
        id_token_hint: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """Where to send the browser to log out at the server."""
        return flows.end_session_url(
            (await self.metadata()).endpoint("end_session_endpoint"),
            self._hint(id_token_hint),
            post_logout_redirect_uri,
            self.config.client_id,
            state,
        )

    async def validate_id_token(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of an ID token for this client, signed with ``id-token-signing-alg``,
        or :class:`ValidationError`."""
        signed = signed_token(id_token, expected_id_tokens(self.config, self.key_ring))
        check = verify_jwt(signed, (self.config.id_token_signing_alg,))
        claims = await self._checked(check)
        check_claims(claims, self._id_token_rules(nonce))
        return claims

    async def validate_access_token(
        self, token: str, audience: str | None = None
    ) -> Mapping[str, Any]:
        """The claims of a JWT access token (resource server), cached until it expires."""
        rules = self._access_token_rules(audience)
        return await self._checked(access_token_claims(token, rules, self.validated))

    async def _checked(self, check: Checking[T]) -> T:
        return await run_check_async(check, self._keys)

    async def _keys(self, need: NeedKeys) -> list[PublicKey]:
        """The server's keys for a token (discovery first, as its jwks_uri is there)."""
        await self.metadata()
        cached = self.provider.cached_keys_for(need.kid, need.alg)
        return cached or await self.provider.keys_for_async(self.http, need.kid, need.alg)

    def service_account_auth(
        self,
        scope: str | None = None,
        resource: str | None = None,
        refresh_margin: float = 30,
        allowed_origins: Iterable[str] | None = None,
    ) -> AsyncServiceAccountAuth:
        """An ``httpx.Auth`` that sends this client's own (cached) access token downstream.

        ``allowed_origins`` (``https://api.example.com`` ...) limits where the token goes.
        """
        key = self.service_dpop_key()
        return AsyncServiceAccountAuth(
            lambda: self.client_credentials(scope, resource, key),
            refresh_margin=refresh_margin,
            allowed_origins=allowed_origins,
            dpop=key,
        )

    async def exchange_token(
        self,
        subject_token: str,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        *,
        dpop: DPoPKey | None = None,
    ) -> TokenSet:
        """:meth:`OIDCClient.exchange_token`, one exchange per key across the loop's tasks."""
        key = exchange_key(subject_token, audience, scope, resource, dpop.jkt if dpop else None)

        async def exchange() -> TokenSet:
            endpoint = (await self.metadata()).token_endpoint
            flow = self._exchange_flow(endpoint, subject_token, audience, scope, resource, dpop)
            return await self.run_flow(flow)

        return await self.exchanged.get_async(key, exchange)

    def exchange_auth(
        self,
        subject: Subject,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> AsyncTokenExchangeAuth:
        """:meth:`OIDCClient.exchange_auth` for ``httpx.AsyncClient``."""
        return AsyncTokenExchangeAuth(
            subject,
            lambda token: self.exchange_token(token, audience, scope, resource),
            self._forget_exchanged(audience, scope, resource),
            allowed_origins,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncOIDCClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
