"""The identity server as the client knows it: discovery metadata and the server's JWKS.

Both are cached. The JWKS is fetched again on a kid it does not hold, at most once per
``min-time-between-jwks-requests`` (Keycloak's 10 s default), so a forged kid cannot make the
adapter hammer the server, while a real key rotation is picked up at once. One fetch is in
flight at a time: concurrent callers wait for it and then read the fresh cache.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from adapter.config._readers import plain_http_allowed as _plain_http_allowed
from adapter.errors import ConfigError, ProviderError, bounded_text
from adapter.jose import MIN_RSA_BITS, PublicKey
from adapter.protocol._locks import LoopLocks
from adapter.protocol.flows import Flow, discovery_url, get_json, run, run_async

Clock = Callable[[], float]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderMetadata:
    """The discovery document's fields the adapter uses (OpenID Connect Discovery §3)."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    jwks_uri: str | None = None
    introspection_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    # RFC 9207: the server puts iss in every authorization response, so one without is refused.
    authorization_response_iss_parameter_supported: bool = False
    # RFC 9126 §5: the server takes authorization requests only pushed (PAR) first.
    require_pushed_authorization_requests: bool = False
    # RFC 9101 / OpenID Connect Discovery: how the server checks signed request objects.
    request_object_signing_alg_values_supported: tuple[str, ...] = ()
    response_modes_supported: tuple[str, ...] = ()  # JARM's query.jwt, when offered
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_document(
        cls,
        document: Mapping[str, Any],
        expected_issuer: str,
        *,
        ssl_required: str = "external",
        endpoint_hosts: Iterable[str] = (),
    ) -> ProviderMetadata:
        """Validate a discovery document; its issuer must be exactly the configured one (§4.3).

        Every endpoint must be on the issuer's host and port, or on one of ``endpoint_hosts``,
        and keep ``ssl_required``: a document (or whoever serves it) naming another host would
        otherwise receive the client's credentials and the users' codes and tokens.
        """
        issuer = document.get("issuer")
        if issuer != expected_issuer:
            raise ProviderError(
                f"discovery: the server says its issuer is {bounded_text(issuer, 100)!r}, the "
                f"configuration says {expected_issuer!r}; configure the server's issuer exactly"
            )
        check = _EndpointCheck(expected_issuer, ssl_required, endpoint_hosts)

        def url(name: str, required: bool = False) -> str | None:
            value = document.get(name)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ProviderError(f"discovery: {name} is missing or not a URL")
            check(name, value)
            return value

        algorithms = document.get("id_token_signing_alg_values_supported", ["RS256"])
        if not isinstance(algorithms, list):
            raise ProviderError("discovery: id_token_signing_alg_values_supported is not a list")
        token_endpoint = url("token_endpoint", required=True)
        assert token_endpoint is not None
        return cls(
            issuer=expected_issuer,
            token_endpoint=token_endpoint,
            authorization_endpoint=url("authorization_endpoint"),
            jwks_uri=url("jwks_uri"),
            introspection_endpoint=url("introspection_endpoint"),
            revocation_endpoint=url("revocation_endpoint"),
            end_session_endpoint=url("end_session_endpoint"),
            userinfo_endpoint=url("userinfo_endpoint"),
            pushed_authorization_request_endpoint=url("pushed_authorization_request_endpoint"),
            id_token_signing_alg_values_supported=tuple(
                a for a in algorithms if isinstance(a, str)
            ),
            **{flag: document.get(flag) is True for flag in _FLAGS},
            request_object_signing_alg_values_supported=_names(
                document.get("request_object_signing_alg_values_supported")
            ),
            response_modes_supported=_names(document.get("response_modes_supported")),
            raw=dict(document),
        )

    def endpoint(self, name: str) -> str:
        """An endpoint URL the server must have for an operation, or a ProviderError."""
        value = getattr(self, name)
        if not isinstance(value, str):
            raise ProviderError(f"the identity server advertises no {name}")
        return value


# What the server says of itself as true or false (anything but true is false).
_FLAGS = (
    "authorization_response_iss_parameter_supported",
    "require_pushed_authorization_requests",
)


def _names(value: object) -> tuple[str, ...]:
    """A discovery list of names (algorithms); anything else is no list."""
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


_DEFAULT_PORTS = {"https": 443, "http": 80}
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


class _EndpointCheck:
    """Where discovered endpoints may be: the issuer's host and port, or a configured host.

    Keycloak may answer the browser on a frontend hostname and the back channel on another;
    ``endpoint-hosts`` lists such hosts (``host`` for any port, ``host:port`` for one).
    """

    def __init__(self, issuer: str, ssl_required: str, endpoint_hosts: Iterable[str]) -> None:
        self._issuer = _host_port(urlsplit(issuer))
        self._ssl_required = ssl_required
        self._allowed = {_configured_host(entry) for entry in endpoint_hosts}

    def __call__(self, name: str, url: str) -> None:
        if _AMBIGUOUS.search(url):
            # Parsers disagree on these: a browser reads https://evil\@idp/ as evil's host.
            raise ProviderError(
                f"discovery: {name} contains a backslash, whitespace or control character"
            )
        try:
            httpx.URL(url)  # what the request will be built with (it limits the length)
            parts = urlsplit(url)
            host, port = _host_port(parts)
            has_user_info = parts.username is not None or parts.password is not None
        except (ValueError, httpx.InvalidURL):  # e.g. a port that is not a number
            raise ProviderError(f"discovery: {name} is not a valid URL") from None
        if not host:
            raise ProviderError(f"discovery: {name} is not a URL with a host")
        if has_user_info:
            raise ProviderError(f"discovery: {name} contains user:password@; refused")
        if parts.scheme == "http" and not _plain_http_allowed(host, self._ssl_required):
            raise ProviderError(
                f"discovery: {name} uses plain http to {_host(host)}, refused with "
                f"ssl-required = {self._ssl_required!r}; the server must advertise https URLs"
            )
        if (host, port) == self._issuer or {(host, None), (host, port)} & self._allowed:
            return
        entry = _host(host) if port == _DEFAULT_PORTS[parts.scheme] else f"{_host(host)}:{port}"
        raise ProviderError(
            f"discovery: {name} is on {_host(host)}:{port}, the issuer on "
            f"{_host(self._issuer[0])}:{self._issuer[1]}; if the server really answers there, "
            f'add "{entry}" to endpoint-hosts'
        )


def _host_port(parts: SplitResult) -> tuple[str, int]:
    """The lower-case hostname and the port, the scheme's default one if none is given."""
    return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)


def _configured_host(entry: str) -> tuple[str, int | None]:
    """An ``endpoint-hosts`` entry as (hostname, port or None for any port)."""
    try:
        parts = urlsplit("//" + entry)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = None
    if not host or "/" in entry:
        raise ConfigError(f"endpoint-hosts: {entry!r} is not host or host:port; fix the entry")
    return host, port


def _host(host: str) -> str:
    """A hostname for a message: IPv6 in brackets, bounded (the server chose it)."""
    return bounded_text(f"[{host}]" if ":" in host else host, 255)


def _shown_kid(kid: object) -> str:
    """A kid from the server's JWKS for a log line: quoted and bounded."""
    return repr(bounded_text(kid, 64)) if isinstance(kid, str) else "none"


class ServerKeys:
    """The server's public signing keys from one JWKS document, looked up by kid and alg.

    A JWK's ``alg`` binds its key to that algorithm (a PS256 token does not verify under a key
    published for RS256); RSA keys under 2048 bits and encryption keys are left out.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        members = document.get("keys")
        if not isinstance(members, list):
            raise ProviderError("server JWKS: no 'keys' list")
        from joserfc.jwk import JWKRegistry  # loaded already: with the Provider (~8 ms)

        self._keys: list[tuple[str | None, str | None, PublicKey]] = []
        for member in members:
            if not isinstance(member, dict) or member.get("use", "sig") != "sig":
                continue
            if member.get("kty") not in ("RSA", "EC", "OKP"):
                continue
            kid = member.get("kid")
            try:
                imported = JWKRegistry.import_key(member)
            except Exception:  # one unusable key must not hide the others
                kty = member["kty"]
                log.warning(
                    "server JWKS: skipped an unusable %s key (kid %s)", kty, _shown_kid(kid)
                )
                continue
            public = imported.public_key
            if not isinstance(
                public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
            ):
                continue  # X25519 and other encryption-only curves
            if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
                bits = public.key_size
                log.warning("server JWKS: skipped a %d-bit RSA key (kid %s)", bits, _shown_kid(kid))
                continue
            alg = member.get("alg")
            self._keys.append(
                (
                    kid if isinstance(kid, str) else None,
                    alg if isinstance(alg, str) else None,
                    public,
                )
            )

    def find(self, kid: str | None, alg: str | None = None) -> list[PublicKey]:
        """Keys with this kid (every key without one) usable for ``alg``."""
        return [
            key
            for key_id, key_alg, key in self._keys
            if (kid is None or key_id == kid) and (alg is None or key_alg in (None, alg))
        ]

    def __len__(self) -> int:
        return len(self._keys)


_FAILURE_BACKOFF = 2.0  # seconds a failed fetch is remembered, so waiters do not each retry
_STALE_GRACE = 60.0  # seconds stale metadata keeps serving after a failed refresh


class Provider:
    """Discovery and server keys for one issuer, cached, shared by sync and async callers.

    Failures are handled so that a broken server cannot be hammered and cannot stall callers:
    refetches are rate-limited on attempts (not successes), a failure is remembered for a
    moment so that callers queued behind it fail at once, and stale metadata or keys keep
    serving while the server cannot be reached.
    """

    def __init__(
        self,
        issuer: str,
        *,
        metadata_ttl: float = 3600,
        keys_ttl: float = 86400,
        min_refetch_interval: float = 10,
        total_timeout: float | None = None,
        ssl_required: str = "external",
        endpoint_hosts: Iterable[str] = (),
        clock: Clock = time.monotonic,
        id_token_alg: str | None = None,
    ) -> None:
        # The server's keys are read with joserfc's JWK classes: loaded with the provider (the
        # app's start), not at import and not on the first request (an ASGI loop would stall).
        import joserfc.jwk  # noqa: F401

        self.issuer = issuer
        self.id_token_alg = id_token_alg  # checked against discovery, to warn early
        self.ssl_required = ssl_required  # what discovered endpoints must keep, as the issuer
        self.endpoint_hosts = tuple(endpoint_hosts)  # where they may be besides its host
        self.metadata_ttl = metadata_ttl
        self.keys_ttl = keys_ttl
        self.min_refetch_interval = min_refetch_interval
        self.total_timeout = total_timeout
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._metadata_expires = 0.0
        self._keys: ServerKeys | None = None
        self._keys_fetched = 0.0
        self._keys_attempted = -math.inf
        self._failures: dict[str, tuple[float, ProviderError]] = {}
        self.jwks_fetches = 0  # JWKS fetch attempts (observability, tests)
        self._lock = threading.Lock()
        self._async_locks = LoopLocks()

    # -- flows (all decisions; no I/O) --------------------------------------------------------

    def metadata_flow(self) -> Flow[ProviderMetadata]:
        """The discovery metadata, fetched when the cache is empty or stale."""
        if self._metadata is not None and self._clock() < self._metadata_expires:
            return self._metadata
        self._recent_failure("discovery")
        try:
            document = yield from get_json(discovery_url(self.issuer), "discovery")
            metadata = ProviderMetadata.from_document(
                document,
                self.issuer,
                ssl_required=self.ssl_required,
                endpoint_hosts=self.endpoint_hosts,
            )
        except ProviderError as error:
            if self._metadata is None:
                raise self._remember_failure("discovery", error) from None
            log.warning("discovery failed, keeping the cached metadata: %s", error)
            self._metadata_expires = self._clock() + _STALE_GRACE
            return self._metadata
        previous = self._metadata
        self._metadata, self._metadata_expires = metadata, self._clock() + self.metadata_ttl
        if previous is None or previous.id_token_signing_alg_values_supported != (
            metadata.id_token_signing_alg_values_supported
        ):
            self._check_id_token_alg(metadata)
        return metadata

    def _check_id_token_alg(self, metadata: ProviderMetadata) -> None:
        """Say at the first discovery, not at the first refused login, when the server does not
        list the ID token algorithm this client holds its tokens to."""
        offered = metadata.id_token_signing_alg_values_supported
        if self.id_token_alg is not None and offered and self.id_token_alg not in offered:
            log.warning(
                "id-token-signing-alg is %s, but the server lists only %s for ID tokens: logins "
                "will be refused; set it to the client's ID token signature algorithm",
                self.id_token_alg,
                ", ".join(offered[:10]),
            )

    def keys_flow(self, refetch: bool = False) -> Flow[ServerKeys]:
        """The server's keys; ``refetch`` asks for a new copy, granted once per interval."""
        now = self._clock()
        if self._keys is not None:
            stale = now >= self._keys_fetched + self.keys_ttl
            may_refetch = now >= self._keys_attempted + self.min_refetch_interval
            if not may_refetch or (not stale and not refetch):
                return self._keys
        self._recent_failure("jwks")
        self._keys_attempted = now
        self.jwks_fetches += 1
        try:
            metadata = yield from self.metadata_flow()
            document = yield from get_json(metadata.endpoint("jwks_uri"), "server JWKS")
            keys = ServerKeys(document)
        except ProviderError as error:
            if self._keys is None:
                raise self._remember_failure("jwks", error) from None
            log.warning("server JWKS fetch failed, keeping the cached keys: %s", error)
            return self._keys
        self._keys, self._keys_fetched = keys, self._clock()
        return keys

    def keys_for_flow(self, kid: str | None, alg: str | None = None) -> Flow[list[PublicKey]]:
        """Keys that may have signed a token with ``kid``, refetching once if there are none."""
        keys = yield from self.keys_flow()
        found = keys.find(kid, alg)
        if not found:
            keys = yield from self.keys_flow(refetch=True)
            found = keys.find(kid, alg)
        return found

    def _recent_failure(self, what: str) -> None:
        failure = self._failures.get(what)
        if failure is not None and self._clock() < failure[0]:
            raise ProviderError(str(failure[1]))

    def _remember_failure(self, what: str, error: ProviderError) -> ProviderError:
        self._failures[what] = (self._clock() + _FAILURE_BACKOFF, error)
        return error

    # -- drivers: one flow in flight at a time ------------------------------------------------

    def metadata(self, client: httpx.Client) -> ProviderMetadata:
        """The metadata, fetching it with ``client`` if needed."""
        if self._metadata is not None and self._clock() < self._metadata_expires:
            return self._metadata
        with self._lock:
            return run(self.metadata_flow(), client, total_timeout=self.total_timeout)

    async def metadata_async(self, client: httpx.AsyncClient) -> ProviderMetadata:
        """The metadata, fetching it with ``client`` if needed."""
        if self._metadata is not None and self._clock() < self._metadata_expires:
            return self._metadata
        async with self._async_locks.get():
            return await run_async(self.metadata_flow(), client, total_timeout=self.total_timeout)

    def keys_for(
        self, client: httpx.Client, kid: str | None, alg: str | None = None
    ) -> list[PublicKey]:
        """Keys for ``kid``, fetching or refetching (rate-limited) with ``client``."""
        with self._lock:
            return run(self.keys_for_flow(kid, alg), client, total_timeout=self.total_timeout)

    async def keys_for_async(
        self, client: httpx.AsyncClient, kid: str | None, alg: str | None = None
    ) -> list[PublicKey]:
        """Keys for ``kid``, fetching or refetching (rate-limited) with ``client``."""
        async with self._async_locks.get():
            flow = self.keys_for_flow(kid, alg)
            return await run_async(flow, client, total_timeout=self.total_timeout)

    def cached_metadata(self) -> ProviderMetadata | None:
        """The metadata if it has been fetched (possibly stale); no I/O."""
        return self._metadata

    def cached_keys_for(self, kid: str | None, alg: str | None = None) -> list[PublicKey]:
        """Keys for ``kid`` from a fresh cache only (no I/O, no lock): the hot path."""
        if self._keys is None or self._clock() >= self._keys_fetched + self.keys_ttl:
            return []
        return self._keys.find(kid, alg)
