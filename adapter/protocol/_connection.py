"""How the adapter's calls reach the identity server: whom TLS trusts, at what address, through
which proxy.

Every call the adapter makes to the server (discovery, JWKS, token, introspection, revocation,
PAR, service-account tokens) goes through the one httpx client that ``OIDCClient`` or
``AsyncOIDCClient`` builds at start; :class:`Connection` is what that client is built with,
decided once (a reload cannot change it, see ``adapter.state``):

- **trust**: a truststore's certificates become the only CAs, as in Keycloak ("the client will
  use this truststore instead of the default Java one"): an internal CA then cannot be mixed up
  with a public one that issued a look-alike certificate. One ``ssl.SSLContext``, built once.
  ``disable-trust-manager`` and ``allow-any-hostname`` turn checks off, with a warning at every
  start (the configuration refuses them for a server on another machine without consent).
- **back channel**: requests meant for the public issuer go to ``backchannel-url`` instead. A
  request hook rewrites them after client authentication has run, so assertions still name the
  public URLs the server knows itself by, and httpx's own proxy choice sees the real target.
- **proxy**: httpx's ``proxy=``; without one, httpx's usual ``HTTP(S)_PROXY`` handling stays.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from adapter.config import AdapterConfig
from adapter.config.model import TLS_METHODS
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing, SigningKey

if TYPE_CHECKING:
    from adapter.protocol._truststore import Truststore

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"https": 443, "http": 80}


class Backchannel:
    """Sends requests meant for the public issuer to the address the adapter reaches it at.

    ``internal`` given as an origin (``http://keycloak:8080``) replaces the issuer's scheme,
    host and port and keeps the path; given with a path, it replaces the issuer URL as a prefix
    (issuer ``https://sso.example.com/auth/realms/x``, ``http://kc:8080/realms/x``). Requests to
    any other URL pass unchanged.
    """

    def __init__(self, issuer: str, internal: str) -> None:
        public, target = httpx.URL(issuer), httpx.URL(internal)
        self.url = internal
        self._origin = _origin(public)
        self._target = target
        self._from = self._to = b""
        if target.raw_path.rstrip(b"/"):
            self._from = public.raw_path.rstrip(b"/")
            self._to = target.raw_path.rstrip(b"/")
        host = f"[{target.host}]" if ":" in target.host else target.host
        # As an endpoint-hosts entry: discovery may name endpoints on this host and port.
        self.endpoint_host = f"{host}:{_origin(target)[2]}"

    def target(self, url: httpx.URL) -> httpx.URL | None:
        """Where a request for ``url`` goes instead, or ``None`` to send it as it is."""
        if _origin(url) != self._origin:
            return None
        path, separator, query = url.raw_path.partition(b"?")
        if self._from:
            if path != self._from and not path.startswith(self._from + b"/"):
                return None
            path = self._to + path[len(self._from) :]
        return url.copy_with(
            scheme=self._target.scheme,
            host=self._target.host,
            port=self._target.port,
            raw_path=path + separator + query,
        )

    def rewrite(self, request: httpx.Request) -> None:
        """httpx request hook (``httpx.Client``): point the request at the internal address."""
        url = self.target(request.url)
        if url is not None:
            request.url = url
            request.headers["Host"] = url.netloc.decode("ascii")

    async def rewrite_async(self, request: httpx.Request) -> None:
        """httpx request hook (``httpx.AsyncClient``)."""
        self.rewrite(request)


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0)


@dataclass(frozen=True)
class Connection:
    """What the HTTP client to the identity server is built with (see the module docstring)."""

    verify: ssl.SSLContext | bool = True  # True: httpx's default CAs
    proxy: str | None = None
    backchannel: Backchannel | None = None
    truststore: Truststore | None = None

    @classmethod
    def from_config(cls, config: AdapterConfig, ring: KeyRing | None = None) -> Connection:
        """Open the truststore and build the TLS context; warns when checks are off. With an
        mTLS method (``tls_client_auth``), the ``ring``'s active key and its certificate are
        the TLS client certificate on every call."""
        truststore = None
        if config.truststore is not None:  # its readers (and cryptography.x509) load here
            from adapter.protocol._truststore import read_truststore

            truststore = read_truststore(
                config.truststore, config.truststore_password, config.truststore_type
            )
        if config.disable_trust_manager:
            log.warning(
                "disable-trust-manager = true: the identity server's TLS certificate is not "
                "checked, so anyone on the network path can pose as it and receive the "
                "client's credentials; trust its CA with truststore instead"
            )
        if config.allow_any_hostname:
            log.warning(
                "allow-any-hostname = true: the identity server's TLS certificate is accepted "
                "for any host name, so a certificate for another server passes; give the "
                "server a certificate for the name the adapter calls it by"
            )
        backchannel = None
        if config.backchannel_url is not None:
            backchannel = Backchannel(config.issuer, config.backchannel_url)
        verify = _verify(config, truststore)
        if config.credentials.method in TLS_METHODS and ring is not None:
            verify = with_client_certificate(verify, ring.active())
        return cls(verify, config.proxy, backchannel, truststore)

    @property
    def customised(self) -> bool:
        """Whether anything differs from a plain httpx client."""
        return self.verify is not True or self.proxy is not None or self.backchannel is not None

    def endpoint_hosts(self, configured: tuple[str, ...]) -> tuple[str, ...]:
        """``endpoint-hosts`` plus the back-channel host, where discovery may name endpoints
        (Keycloak's ``hostname-backchannel-dynamic`` answers with the address it was asked at)."""
        if self.backchannel is None:
            return configured
        return (*configured, self.backchannel.endpoint_host)

    def client(self, timeout: httpx.Timeout, headers: dict[str, str]) -> httpx.Client:
        """The synchronous client for every call to the server."""
        hooks = {"request": [self.backchannel.rewrite]} if self.backchannel else None
        return httpx.Client(
            timeout=timeout, headers=headers, verify=self.verify, proxy=self.proxy,
            event_hooks=hooks,
        )  # fmt: skip

    def async_client(self, timeout: httpx.Timeout, headers: dict[str, str]) -> httpx.AsyncClient:
        """The asynchronous client for every call to the server."""
        hooks = {"request": [self.backchannel.rewrite_async]} if self.backchannel else None
        return httpx.AsyncClient(
            timeout=timeout, headers=headers, verify=self.verify, proxy=self.proxy,
            event_hooks=hooks,
        )  # fmt: skip

    def ignored_by(self, given: object) -> None:
        """Warn that an HTTP client handed in is used as it is, without these settings."""
        if self.customised:
            log.warning(
                "the http client passed to %s is used as it is: truststore, "
                "disable-trust-manager, allow-any-hostname, backchannel-url and proxy do not "
                "apply to it",
                type(given).__name__,
            )

    def describe(self) -> list[tuple[str, str]]:
        """(label, value) lines for ``oidc-adapter config check``."""
        if self.truststore is not None:
            store = self.truststore
            trust = f"{len(store.certificates)} CA certificate(s) from {store.path} ({store.type})"
        elif self.verify is False:
            trust = "OFF: certificates are not checked (disable-trust-manager)"
        else:
            trust = "httpx's default CA certificates (certifi, or SSL_CERT_FILE)"
        if isinstance(self.verify, ssl.SSLContext) and not self.verify.check_hostname:
            trust += "; host names are not checked (allow-any-hostname)"
        lines = [("trust", trust)]
        if self.backchannel is not None:
            lines.append(("back channel", self.backchannel.url))
        if self.proxy is not None:
            lines.append(("proxy", self.proxy))
        return lines


def with_client_certificate(verify: ssl.SSLContext | bool, key: SigningKey) -> ssl.SSLContext:
    """``verify`` as a context that also presents ``key`` and its certificate chain (mTLS,
    RFC 8705). Python's ``ssl`` reads a certificate and key from files only: they are written
    for the moment of loading into a private directory (0700), the key encrypted with a
    random password, and removed at once."""
    if not key.cert_chain:
        raise ConfigError(
            f"{key.source}: mTLS needs the key's certificate (a keystore entry with its "
            "certificate, or certificate = ... beside a PEM key)"
        )
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    password = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="oidc-adapter-mtls-") as directory:
        certificate, private = Path(directory) / "certificate.pem", Path(directory) / "key.pem"
        certificate.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in key.cert_chain))
        encrypted = BestAvailableEncryption(password)
        private.write_bytes(
            key.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encrypted)
        )
        try:
            context.load_cert_chain(certificate, private, password)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{key.source}: the key and its certificate do not make a TLS client "
                f"certificate ({exc.reason or type(exc).__name__}); check the keystore entry"
            ) from None
    return context


def _verify(config: AdapterConfig, truststore: Truststore | None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: True (its default CAs), False (no checks) or one context."""
    if config.disable_trust_manager:
        return False
    if truststore is None and not config.allow_any_hostname:
        return True
    if truststore is None:
        context = httpx.create_ssl_context()  # the CAs httpx would use, host names unchecked
    else:
        try:
            context = ssl.create_default_context(cadata=truststore.pem())
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            raise ConfigError(
                f"truststore: {truststore.path}: a certificate is unusable ({reason}); check "
                "the file"
            ) from None
    if config.allow_any_hostname:
        context.check_hostname = False
    return context
