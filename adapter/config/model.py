"""The adapter's configuration: frozen dataclasses and :func:`load_config`.

Two spellings load into the same :class:`AdapterConfig`: a ``keycloak.json`` exactly as the
Keycloak admin console exports it, and the native TOML/JSON format, which adds ``issuer`` for
any OpenID Connect provider and several client keys for rotation. Loading checks every field
and fails with one :class:`ConfigError` line naming the field and the fix; it does not open
keystores (see :func:`adapter.keys.load_key_ring`) or touch the network.

Each setting is declared once, on its dataclass field (:mod:`adapter.config._settings`): its
native key, keycloak.json's name, its default, bounds or choices. The loader reads the fields
of a table in one loop from that; the lists of known field names, ``config check``'s notes and
``config convert``'s mapping are derived from it, and tests hold docs/configuration.md to it.

The middleware's own settings (session secret, paths, store ...) form a part of their own:
``load_config(..., web=False)`` neither reads nor checks them, so that the key and token
commands work where only the client's credentials are at hand.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args
from urllib.parse import quote, unquote, urlsplit

from adapter.config import _readers
from adapter.config._fields import Fields, written_literally
from adapter.config._files import KEYSTORE_LIMIT, FileRefused, read_regular_file, warn_if_exposed
from adapter.config._settings import (
    Setting,
    about,
    keycloak_names,
    native_names,
    read_settings,
    setting,
    setting_of,
    settings_of,
)
from adapter.config.access_rules import AccessRule
from adapter.config.key_options import (
    KEY_MANAGEMENT_ALGORITHMS,
    KEYSTORE_EXTENSIONS,
    REFUSED_KEY_MANAGEMENT,
    KeyStateName,
    KeyUseName,
    key_management_problem,
)
from adapter.config.profile import Chosen, Profile, apply_profile
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.jose import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS

if TYPE_CHECKING:
    from adapter.config.policy_enforcer import PolicyEnforcerConfig as _PolicyEnforcer
else:
    # The policy-enforcer block's classes load with the first block read (an app without one
    # never imports them); the settings' type hints are evaluated at import, so the field's
    # hint names a stand-in here. ``PolicyEnforcerConfig`` is still importable from here.
    _PolicyEnforcer = Any

    def __getattr__(name: str) -> Any:
        if name == "PolicyEnforcerConfig":
            from adapter.config.policy_enforcer import PolicyEnforcerConfig

            return PolicyEnforcerConfig
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The closed sets of words, each declared once; the choices a file may give are derived.
ClientAuthMethod = Literal[
    "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt",
    "tls_client_auth", "self_signed_tls_client_auth", "none",
]  # fmt: skip
SslRequired = Literal["external", "all", "none"]  # Keycloak's ssl-required
SessionStore = Literal["cookie", "memory", "redis"]
PushedRequests = Literal["auto", "always", "never"]  # pushed-authorization-requests (RFC 9126)
RequestObjects = Literal["off", "signed"]  # request-objects (RFC 9101)
DPoPMode = Literal["allowed", "required", "off"]  # dpop (RFC 9449), at the resource server
SignedResponses = Literal["off", "auto", "always"]  # signed-responses (JARM)
RolesFrom = Literal["token", "introspection", "auto"]  # roles-from (lightweight tokens)
EnforcerGrant = Literal["decision", "permissions"]  # enforcer-grant (policy-enforcer's UMA grant)
TruststoreType = Literal["PKCS12", "JKS", "PEM"]
METHODS: tuple[ClientAuthMethod, ...] = get_args(ClientAuthMethod)
# mTLS (RFC 8705): the key and its certificate are the TLS client certificate to the server.
TLS_METHODS: tuple[ClientAuthMethod, ...] = ("tls_client_auth", "self_signed_tls_client_auth")
KEY_METHODS: tuple[ClientAuthMethod, ...] = ("private_key_jwt", *TLS_METHODS)  # need keys
SECRET_METHODS: tuple[ClientAuthMethod, ...] = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
)
KEY_STATES: tuple[KeyStateName, ...] = get_args(KeyStateName)
SSL_REQUIRED: tuple[SslRequired, ...] = get_args(SslRequired)
SESSION_STORES: tuple[SessionStore, ...] = get_args(SessionStore)
TRUSTSTORE_TYPES: tuple[TruststoreType, ...] = get_args(TruststoreType)
# keycloak.json's credentials: exactly one of these providers, and the method each one is.
KEYCLOAK_PROVIDERS: dict[str, ClientAuthMethod] = {
    "secret": "client_secret_basic",
    "jwt": "private_key_jwt",
    "secret-jwt": "client_secret_jwt",
}

# keycloak.json fields this adapter accepts as they are but has no use for (Java-specific
# transport and CORS settings). They do not warn: the file is valid. The policy-enforcer block
# is read whole: adapter.config.policy_enforcer.
KEYCLOAK_UNUSED_FIELDS = frozenset(
    {
        "realm-public-key", "enable-cors", "cors-max-age", "cors-allowed-headers",
        "cors-allowed-methods", "cors-exposed-headers", "enable-basic-auth",
        "redirect-rewrite-rules", "client-keystore", "client-keystore-password",
        "client-key-password", "connection-pool-size", "connection-ttl-millis",
        "register-node-at-startup", "register-node-period", "token-store",
        "adapter-state-cookie-path", "token-cookie-path", "turn-off-change-session-id-on-login",
        "ignore-oauth-query-parameter", "expose-token",
    }
)  # fmt: skip
# Servers such as Keycloak refuse a client assertion whose iat is more than this many seconds
# ago (Keycloak: the client's maximum assertion age); backdates are checked against it.
ASSERTION_MAX_AGE = 60


@dataclass(frozen=True)
class KeyConfig:
    """One client key as configured: where it is and how it takes part in rotation."""

    keystore: Path = dataclasses.field(
        metadata=about(key="keystore", keycloak="client-keystore-file", doc="the keystore file")
    )
    field: str  # where it was configured, e.g. "credentials.keys[1]", for messages
    type: str | None = setting(
        None,
        key="type",
        keycloak="client-keystore-type",
        keycloak_default="JKS",  # unless the file's extension says otherwise
        doc="PKCS12, JKS, PEM or JWK, as written; None: from the file's extension",
    )
    password: Secret | None = setting(
        None, key="password", keycloak="client-keystore-password", doc="the store password"
    )
    key_password: Secret | None = setting(
        None, key="key-password", keycloak="client-key-password", doc="the key's own password"
    )
    alias: str | None = setting(
        None, key="alias", keycloak="client-key-alias", doc="which key of the store"
    )
    kid: str | None = setting(None, key="kid", doc="the key id; None: Keycloak's, from the key")
    use: KeyUseName = setting(
        "sig", key="use", doc="sig signs; enc decrypts what the server encrypts to the client"
    )
    algorithm: str | None = setting(
        None, key="algorithm", keycloak="algorithm", built=True, doc="this key's algorithm"
    )
    state: KeyStateName | None = setting(
        None, key="state", doc="next, active or retired; None: active, or next with activate-at"
    )
    activate_at: datetime | None = setting(
        None, key="activate-at", doc="the time the key becomes active by itself"
    )
    decrypt_until: datetime | None = setting(
        None,
        key="decrypt-until",
        doc="a retired encryption key: the time it stops decrypting (tokens still on their way "
        "to it expire before); None: until it leaves the configuration",
    )
    certificate: Path | None = setting(
        None, key="certificate", doc="a PEM file with the chain, for a PEM key kept apart"
    )
    # The fields of the store and the key password, named when one is needed (keycloak.json
    # spells them client-keystore-password and client-key-password). How the file spells a
    # setting is not part of it: never compared. (dataclasses.field: ``field`` is a member.)
    lock_fields: tuple[str, str] = dataclasses.field(
        default=("password", "key-password"), compare=False
    )


@dataclass(frozen=True)
class CredentialsConfig:
    """How the client proves who it is to the identity server (DESIGN.md, client assertion)."""

    method: ClientAuthMethod = setting("none", key="method", doc="the client authentication")
    secret: Secret | None = setting(
        None, key="secret", keycloak="secret", doc="for the three secret methods"
    )
    algorithm: str | None = setting(
        None, key="algorithm", keycloak="algorithm", built=True, doc="the JWS algorithm"
    )
    assertion_lifetime: int = setting(
        60,
        key="assertion-lifetime",
        keycloak=("token-timeout", "token-expiration"),
        keycloak_default=10,  # seconds: the Java adapter's default client-assertion lifetime
        bounds=(1, 3600),
        doc="seconds between iat and exp of a client assertion",
    )
    assertion_audience: str = setting(
        "issuer",
        key="assertion-audience",
        read=_readers.assertion_audience,
        doc="issuer, token-endpoint or an explicit URL",
    )
    assertion_backdate: int = setting(
        0, key="assertion-backdate", bounds=(0, 300), doc="seconds to move iat, nbf and exp back"
    )
    assertion_typ: str | None = setting(None, key="assertion-typ", doc="a typ header")
    assertion_x5t: bool = setting(False, key="assertion-x5t", doc="add the x5t header")
    assertion_x5t_s256: bool = setting(
        False, key="assertion-x5t-s256", doc="add the x5t#S256 header"
    )
    key_switch_grace: int = setting(
        120,
        key="key-switch-grace",
        bounds=(0, 86400),
        doc="seconds after a key switch when invalid_client is retried with the previous key",
    )
    keys: tuple[KeyConfig, ...] = setting((), key="keys", built=True, doc="the client's keys")
    revoked_kids: frozenset[str] = setting(
        frozenset(),
        key="revoked-kids",
        example='["Xk3...kid"]',
        doc="kids of keys revoked for good (keys revoke): refused at load",
    )
    # Spelled as keycloak.json (one key, no rotation: convert it); the spelling is not compared.
    keycloak_json: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class WebConfig:
    """What the middleware answers and how it keeps sessions (native fields; defaults work).
    The fields are read in this order: the first failing one is reported."""

    jwks_path: str = setting("/k_jwks", key="jwks-path", read=_readers.route)
    login_path: str = setting("/oidc/login", key="login-path", read=_readers.route)
    callback_path: str = setting("/oidc/callback", key="callback-path", read=_readers.route)
    logout_path: str = setting("/oidc/logout", key="logout-path", read=_readers.route)
    backchannel_logout_path: str = setting(
        "/oidc/backchannel-logout", key="backchannel-logout-path", read=_readers.route
    )
    frontchannel_logout: bool = setting(
        False,
        key="frontchannel-logout",
        doc="answer the identity server's front-channel logout (iss and sid in a framed GET)",
    )
    frontchannel_logout_path: str = setting(
        "/oidc/frontchannel-logout", key="frontchannel-logout-path", read=_readers.route
    )
    post_logout_redirect: str = setting("/", key="post-logout-redirect", read=_readers.route)
    public_paths: tuple[str, ...] = setting(
        (), key="public-paths", read=_readers.public_paths, doc="paths that need no login"
    )
    redirect_uri: str | None = setting(
        None,
        key="redirect-uri",
        read=_readers.redirect_uri,
        doc="the callback URL; None: the request's scheme and host + callback-path",
    )
    session_secrets: tuple[Secret, ...] = setting(
        (),
        key="session-secret",
        also=("previous-session-secret",),
        kind="secret",
        read=_readers.session_secrets,
        doc="the first seals, all open; empty: random per process",
    )
    redis_url: Secret | None = setting(
        None,
        key="redis-url",
        read=_readers.redis_url,
        doc="may hold a password: a Secret, never printed",
    )
    redis_prefix: str = setting("oidc:", key="redis-prefix", doc="of every key and the channel")
    scope: str = setting("openid profile email", key="scope", doc="what the login asks for")
    pushed_authorization_requests: PushedRequests = setting(
        "auto",
        key="pushed-authorization-requests",
        doc="PAR (RFC 9126): auto when the server requires it, always, never",
    )
    signed_responses: SignedResponses = setting(
        "off",
        key="signed-responses",
        doc="JARM: the callback's answer as a JWT the server signs (response_mode query.jwt); "
        "auto: when the server offers it",
    )
    request_objects: RequestObjects = setting(
        "off",
        key="request-objects",
        doc="signed: the login's parameters in a request object (JAR, RFC 9101) signed by the "
        "active key",
    )
    session_store: SessionStore = setting("cookie", key="session-store")
    session_cookie: str = setting(
        "oidc_session", key="session-cookie", read=_readers.session_cookie
    )
    session_max_age: int = setting(
        28800, key="session-max-age", bounds=(60, 30 * 86400), doc="seconds a session lasts"
    )
    dpop: DPoPMode = setting(
        "allowed",
        key="dpop",
        doc="DPoP-bound tokens (RFC 9449): allowed beside bearer tokens, required, or off",
    )
    dpop_tokens: bool = setting(
        False,
        key="dpop-tokens",
        doc="the app's own tokens DPoP-bound (RFC 9449): a key per session, made at sign-in",
    )
    dpop_key: str | None = setting(
        None,
        key="dpop-key",
        example='"Xk3...kid"',
        doc="the kid of a client key that binds the service account's tokens (dpop-tokens); "
        "none: a key made once per process",
    )
    client_certificate_header: str | None = setting(
        None,
        key="client-certificate-header",
        example='"X-SSL-Client-Cert"',
        doc="where the TLS terminator forwards the client certificate (certificate-bound "
        "tokens, RFC 8705)",
    )
    client_certificate_proxies: tuple[str, ...] = setting(
        (),
        key="client-certificate-proxies",
        example='["127.0.0.1"]',
        read=_readers.networks,
        doc="addresses (or networks) of the TLS terminators trusted to set that header",
    )
    bearer_introspection: bool = setting(
        False, key="bearer-introspection", doc="check opaque bearer tokens at the server"
    )
    userinfo: bool = setting(
        False,
        key="userinfo",
        doc="fetch the UserInfo endpoint's claims at sign-in and refresh, beneath the ID "
        "token's (plain, signed or encrypted answers)",
    )
    roles_from: RolesFrom = setting(
        "token",
        key="roles-from",
        doc="where roles come from: the access token, its introspection, or auto (introspect "
        "a token that carries no role claims: Keycloak's lightweight access tokens)",
    )
    enforcer_grant: EnforcerGrant = setting(
        "decision",
        key="enforcer-grant",
        doc="how the policy enforcer asks the UMA grant: decision (yes or no), or permissions "
        "(the granted scopes, as identity.permissions); docs/authorization.md",
    )
    websocket_origins: tuple[str, ...] = setting(
        (),
        key="websocket-origins",
        example='["https://app.example.com"]',
        read=_readers.origins,
        doc="besides the app's own origin",
    )
    access_rules: tuple[AccessRule, ...] = setting(
        (), key="access", read=_readers.access_rules, doc="[[access]], first match wins"
    )
    error_page: str | None = setting(
        None,
        key="error-page",
        kind="path",
        read=_readers.error_page,
        doc="the text of the app's own sign-in error page template",
    )
    private_responses: bool = setting(
        True,
        key="private-responses",
        # A shared cache never serves one user's answer to another.
        doc="Cache-Control: private (and Vary: Cookie) for a signed-in user's answers",
    )


def _policy_enforcer(
    fields: Fields, spec: Setting, values: Mapping[str, Any]
) -> _PolicyEnforcer | None:
    """The ``policy-enforcer`` block (:func:`adapter.config.policy_enforcer.read_policy_enforcer`),
    its module imported only when the file has one."""
    if fields.raw(spec.key) is None:
        return None
    from adapter.config.policy_enforcer import read_policy_enforcer

    return read_policy_enforcer(fields, spec.key)  # both formats spell it at the top level


def issuer_realm(issuer: str) -> str | None:
    """Keycloak's realm in an issuer URL (its last ``/realms/<name>`` segment), else ``None``."""
    head, _, name = urlsplit(issuer).path.rstrip("/").rpartition("/")
    return unquote(name) if head.endswith("/realms") and name else None


@dataclass(frozen=True)
class AdapterConfig:
    """Everything the adapter is configured with; secrets are :class:`Secret` objects."""

    issuer: str = field(metadata=about(key="issuer", built=True, doc="the issuer identifier"))
    client_id: str = field(
        metadata=about(key="client-id", keycloak="resource", built=True, doc="the client id")
    )
    credentials: CredentialsConfig = field(
        default_factory=CredentialsConfig, metadata=about(key="credentials", built=True)
    )
    realm: str | None = setting(None, key="realm", doc="Keycloak: the realm, with auth-server-url")
    auth_server_url: str | None = setting(None, key="auth-server-url")
    ssl_required: SslRequired = setting("external", key="ssl-required")
    profile: Profile = setting(
        "none",
        key="profile",
        doc="fapi2 or fapi2-message-signing: what FAPI 2.0 asks of a client, enforced",
    )
    endpoint_hosts: tuple[str, ...] = setting(
        (),
        key="endpoint-hosts",
        read=_readers.endpoint_hosts,
        doc="hosts besides the issuer's that discovery may name",
    )
    confidential_port: int = setting(
        8443,
        key="confidential-port",
        bounds=(0, 65535),
        no_effect="https is decided by ssl-required, redirect-uri and the request",
    )
    public_client: bool = setting(False, key="public-client")
    bearer_only: bool = setting(False, key="bearer-only")
    autodetect_bearer_only: bool = setting(
        False,
        key="autodetect-bearer-only",
        no_effect="API requests always get 401, browser navigations a login",
    )
    principal_attribute: str = setting("sub", key="principal-attribute")
    use_resource_role_mappings: bool = setting(False, key="use-resource-role-mappings")
    verify_token_audience: bool = setting(
        True, key="verify-token-audience", doc="bearer tokens must be for us (off: a warning)"
    )
    token_audiences: tuple[str, ...] = setting(
        (),
        key="token-audiences",
        example='["my-api", "account"]',
        doc="accepted bearer audiences; empty: the client id",
    )
    always_refresh_token: bool = setting(
        False,
        key="always-refresh-token",
        no_effect="tokens are refreshed shortly before they expire",
    )
    pkce: bool = setting(
        True, key="pkce", keycloak="enable-pkce", no_effect="PKCE S256 is always used"
    )
    token_minimum_time_to_live: int = setting(0, key="token-minimum-time-to-live")
    min_time_between_jwks_requests: int = setting(10, key="min-time-between-jwks-requests")
    public_key_cache_ttl: int = setting(86400, key="public-key-cache-ttl")
    connection_timeout_millis: int = setting(
        5000, key="connection-timeout-millis", bounds=(1, None)
    )
    socket_timeout_millis: int = setting(10000, key="socket-timeout-millis", bounds=(1, None))
    clock_skew: int = setting(30, key="clock-skew", bounds=(0, 600))
    id_token_signing_alg: str = setting(
        "RS256",
        key="id-token-signing-alg",
        read=_readers.id_token_signing_alg,
        doc="the algorithm of the client's ID tokens and logout tokens at the server",
    )
    id_token_encrypted_response_alg: str | None = setting(
        None,
        key="id-token-encrypted-response-alg",
        read=_readers.id_token_encrypted_alg,
        doc="set: ID tokens must come encrypted (JWE) with this key management algorithm",
    )
    id_token_encrypted_response_enc: str | None = setting(
        None,
        key="id-token-encrypted-response-enc",
        read=_readers.id_token_encrypted_enc,
        doc="their content encryption; None with the alg set: A128CBC-HS256",
    )
    # How calls to the server travel (read once, when the HTTP client is built):
    truststore: Path | None = setting(
        None, key="truststore", doc="its CA certificates replace the system's"
    )
    truststore_password: Secret | None = setting(
        None, key="truststore-password", only_with="truststore"
    )
    truststore_type: TruststoreType | None = setting(
        None, key="truststore-type", only_with="truststore", doc="None: from the file's content"
    )
    disable_trust_manager: bool = setting(
        False, key="disable-trust-manager", doc="no certificate check at all (a warning)"
    )
    allow_any_hostname: bool = setting(
        False, key="allow-any-hostname", doc="no host name check (a warning at every start)"
    )
    i_understand_tls_is_disabled: bool = setting(
        False,
        key="i-understand-tls-is-disabled",
        doc="the two above for a server on another machine",
    )
    backchannel_url: str | None = setting(
        None,
        key="backchannel-url",
        read=_readers.backchannel_url,
        doc="where the adapter reaches the issuer, if elsewhere",
    )
    proxy: str | None = setting(
        None,
        key="proxy",
        keycloak="proxy-url",
        read=_readers.proxy,
        doc="an HTTP proxy for every call to the server",
    )
    policy_enforcer: _PolicyEnforcer | None = setting(
        None,
        key="policy-enforcer",
        read=_policy_enforcer,
        doc="Keycloak Authorization Services: the whole block, checked (docs/authorization.md)",
    )
    web: WebConfig = field(default_factory=WebConfig)  # its settings are at the top level too
    source: Path | None = None
    unused_fields: tuple[str, ...] = ()
    no_effect_fields: tuple[str, ...] = ()  # read and checked, but nothing depends on them
    # The middleware's own settings that the file sets (what they set is in ``web``).
    web_fields: tuple[str, ...] = field(default=(), compare=False)
    secret_files: tuple[Path, ...] = ()  # password and secret files it read
    tenant: str | None = None  # its name in a tenants file (adapter.config.tenants)
    companions: tuple[Path, ...] = ()  # files it was built from besides source: a tenants file

    def watched_files(self) -> tuple[Path, ...]:
        """Every file this configuration was built from: a change to any calls for a reload."""
        files = [self.source] if self.source is not None else []
        files += self.companions
        files += self.secret_files
        for key in self.credentials.keys:
            files.append(key.keystore)
            if key.certificate is not None:
                files.append(key.certificate)
        return tuple(dict.fromkeys(files))


# --- what the settings above say, for the loader and its users --------------------------------

# keycloak.json fields that are read and checked but change nothing here, and why: `config
# check` lists them, so that nobody expects the Java adapter's behaviour from them.
KEYCLOAK_NO_EFFECT_FIELDS = {
    name: spec.no_effect
    for spec in settings_of(AdapterConfig)
    if spec.no_effect is not None
    for name in (*spec.keys, *spec.keycloak)
}
KEYCLOAK_TOKEN_TIMEOUT: int = setting_of(CredentialsConfig, "assertion_lifetime").keycloak_default
TLS_OFF_CONSENT = setting_of(AdapterConfig, "i_understand_tls_is_disabled").key
# Read only beside a truststore: without one they have no use, and are listed as not used.
_TRUSTSTORE_COMPANIONS = frozenset(
    name
    for spec in settings_of(AdapterConfig)
    if spec.only_with == "truststore"
    for name in spec.spellings
)

# Every field each kind of table may hold: unknown fields are reported against these (with the
# closest as "did you mean") also when loading fails before their table was read to the end.
# The top level holds both spellings, and the middleware's settings (web_fields()).
_TOP_LEVEL_FIELDS = native_names(AdapterConfig) | keycloak_names(AdapterConfig)
_WEB_FIELDS = native_names(WebConfig)
NATIVE_CREDENTIALS_FIELDS = native_names(CredentialsConfig)
NATIVE_KEY_FIELDS = native_names(KeyConfig)
_KEYCLOAK_SECRET = setting_of(CredentialsConfig, "secret").keycloak_spellings
KEYCLOAK_CREDENTIALS_FIELDS = frozenset(KEYCLOAK_PROVIDERS.keys() - {"secret"}) | frozenset(
    _KEYCLOAK_SECRET
)
KEYCLOAK_SECRET_JWT_FIELDS = keycloak_names(CredentialsConfig)
KEYCLOAK_JWT_FIELDS = keycloak_names(KeyConfig) | (
    keycloak_names(CredentialsConfig) - frozenset(_KEYCLOAK_SECRET)
)
# Fields whose value is a secret: a literal one (not -env, -file or ${env.VAR}) makes the
# configuration file as private as a keystore. A Redis URL holds a password only sometimes:
# it does not count.
_SECRET_FIELDS = frozenset(
    name
    for cls in (AdapterConfig, WebConfig, CredentialsConfig, KeyConfig)
    for spec in settings_of(cls)
    if spec.kind == "secret" and spec.name != "redis_url"
    for name in (*spec.keys, *spec.keycloak)
)


def web_fields() -> frozenset[str]:
    """The names of the middleware's own settings (WebConfig's)."""
    return _WEB_FIELDS


def top_level_fields() -> frozenset[str]:
    """Every field the top level of a configuration may hold (both spellings)."""
    return _TOP_LEVEL_FIELDS | _WEB_FIELDS | KEYCLOAK_UNUSED_FIELDS


def keycloak_keystore_type(keystore: str | Path, written: str | None) -> str | None:
    """The type of keycloak.json's ``client-keystore-file``: as written, else Keycloak's
    default (JKS) unless the file's extension tells the type."""
    if written is not None or Path(keystore).suffix.lower() in KEYSTORE_EXTENSIONS:
        return written
    default: str = setting_of(KeyConfig, "type").keycloak_default
    return default


def load_config(
    source: str | Path | Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    web: bool = True,
) -> AdapterConfig:
    """Load and validate a ``keycloak.json`` or a native TOML/JSON configuration.

    ``source`` is a file path or an already parsed mapping. Relative paths inside (keystores,
    password files) resolve against the file's directory, or ``base_dir`` for a mapping.
    Raises :class:`ConfigError`; warns with :class:`ConfigWarning` about unknown fields (an
    error names them too). ``web=False`` leaves the middleware's settings (:func:`web_fields`)
    unread and unchecked, with defaults in ``config.web``: for the key and token commands, never
    for a middleware.
    """
    if isinstance(source, Mapping):
        directory = Path(base_dir) if base_dir is not None else Path.cwd()
        return _load(Fields(source, "", directory, known=top_level_fields()), None, web)
    path = Path(source)
    document = _parse_file(path)
    directory = Path(base_dir) if base_dir is not None else path.resolve().parent
    try:
        return _load(Fields(document, "", directory, known=top_level_fields()), path, web)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _load(fields: Fields, source: Path | None, web: bool) -> AdapterConfig:
    also_known = KEYCLOAK_UNUSED_FIELDS | _TRUSTSTORE_COMPANIONS
    return fields.build(lambda table: _build(table, source, web), also_known)


def read_document(path: str | Path) -> Any:
    """The parsed configuration file as written (no substitution, no checks of its fields)."""
    return _parse_file(Path(path))


def _parse_file(path: Path) -> Any:
    """The parsed document; warns (once) when the file is open to others, see
    :func:`adapter.config._files.warn_if_exposed`: a secret written in it makes it a private
    file."""
    data, status = _read_config_file(path)
    try:
        text = data.decode("utf-8-sig")  # tolerate a BOM (Windows editors)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read the configuration (not UTF-8 text)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text() did
    document = _parse_text(path, text)
    holds_secret = _holds_inline_secret(document)
    why = "it has a secret written in it" if holds_secret else "they could change the keys used"
    warn_if_exposed(path, status, what="configuration", holds_secret=holds_secret, why=why)
    return document


def _read_config_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The file's bytes and status; only a regular file is read (a FIFO would hang a reload)."""
    try:
        return read_regular_file(path, what="configuration", limit=KEYSTORE_LIMIT)
    except FileRefused as exc:
        if exc.missing:
            raise ConfigError(f"{path}: configuration file not found; check the path") from None
        shown = repr(path) if exc.bad_name else str(path)
        raise ConfigError(
            f"{shown}: cannot read the configuration ({exc.reason}); {exc.fix}"
        ) from None


def _holds_inline_secret(node: object) -> bool:
    """Whether a secret field anywhere in the document has a value written in the file."""
    if isinstance(node, Mapping):
        return any(
            (key in _SECRET_FIELDS and _is_literal(value)) or _holds_inline_secret(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return any(_holds_inline_secret(item) for item in node)
    return False


def _is_literal(value: object) -> bool:
    if isinstance(value, str):
        return bool(written_literally(value).strip())
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_text(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".toml":
        import tomllib  # with the first TOML file, not at import

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
        except (ValueError, RecursionError):  # e.g. a number too long to convert
            raise ConfigError(f"{path}: not valid TOML (a value is out of range)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the syntax"
        ) from None
    except (ValueError, RecursionError):  # a number too long, nesting too deep
        raise ConfigError(f"{path}: not valid JSON (a value is out of range)") from None


def _build(fields: Fields, source: Path | None, with_web: bool = True) -> AdapterConfig:
    # What the issuer, the client and the credentials depend on first, then they, then the
    # rest: a missing issuer, client-id or credentials is reported before other problems.
    values = read_settings(fields, AdapterConfig, only=("realm", "auth_server_url", "ssl_required"))
    issuer = _issuer(fields, values["realm"], values["auth_server_url"], values["ssl_required"])
    client_id = _client_id(fields)
    read_settings(fields, AdapterConfig, only=("public_client", "bearer_only"), into=values)
    public_client: bool = values["public_client"]
    credentials = _credentials(fields, public_client or values["bearer_only"])
    read_settings(fields, AdapterConfig, aliases=True, into=values)
    _check_connection(values, issuer)
    config = AdapterConfig(
        issuer=issuer,
        client_id=client_id,
        credentials=credentials,
        **values,
        web=_web(fields) if with_web else _skip_web(fields),
        source=source,
        unused_fields=tuple(sorted(_never_read(fields) & set(fields.table))),
        no_effect_fields=tuple(sorted(set(KEYCLOAK_NO_EFFECT_FIELDS) & set(fields.table))),
        web_fields=tuple(sorted(web_fields() & set(fields.table))),
        secret_files=tuple(fields.files),
    )
    if public_client and credentials.method != "none":
        raise ConfigError("public-client: a public client has no credentials; remove one of them")
    if fields.has("credentials") and credentials.method == "none" and not public_client:
        raise ConfigError(
            'credentials.method: "none" is a public client; set public-client = true or choose '
            "a method"
        )
    config = _profiled(config, frozenset(fields.table))
    if config.web.dpop == "off" and any(rule.dpop for rule in config.web.access_rules):
        raise ConfigError(
            'access: a rule asks for dpop = true and dpop = "off" refuses DPoP: its paths could '
            'never be reached; set dpop = "allowed" or remove the rule\'s dpop'
        )
    if config.web.client_certificate_header and not config.web.client_certificate_proxies:
        raise ConfigError(
            "client-certificate-proxies: missing; client-certificate-header counts only from "
            'the TLS terminators that set it (anyone can send a header), e.g. ["127.0.0.1"]'
        )
    if config.web.request_objects == "signed" and not any(
        key.use == "sig" for key in credentials.keys
    ):
        raise ConfigError(
            'request-objects: "signed" needs the client\'s own keys (credentials.keys, as for '
            "private_key_jwt): they sign the request objects"
        )
    return config


def _profiled(config: AdapterConfig, explicit: frozenset[str]) -> AdapterConfig:
    """``config`` as its ``profile`` has it (:mod:`adapter.config.profile` decides)."""
    if config.profile == "none":
        return config
    credentials, web = config.credentials, config.web
    given = Chosen(
        credentials.method,
        credentials.algorithm,
        web.pushed_authorization_requests,
        web.request_objects,
        config.id_token_signing_alg,
        credentials.assertion_typ,
        web.dpop_tokens,
        web.signed_responses,
    )
    chosen = apply_profile(config.profile, given, explicit)
    return replace(
        config,
        credentials=replace(credentials, assertion_typ=chosen.assertion_typ),
        web=replace(
            web,
            pushed_authorization_requests=cast(PushedRequests, chosen.pushed),
            request_objects=cast(RequestObjects, chosen.request_objects),
            dpop_tokens=chosen.dpop_tokens,
            signed_responses=cast(SignedResponses, chosen.signed_responses),
        ),
        id_token_signing_alg=chosen.id_token_alg,
    )


def _web(fields: Fields) -> WebConfig:
    return WebConfig(**read_settings(fields, WebConfig))


def _skip_web(fields: Fields) -> WebConfig:
    """The defaults, with the middleware's settings left unread (they are not unknown)."""
    fields.read.update(web_fields())
    return WebConfig()


def _never_read(fields: Fields) -> frozenset[str]:
    """The known fields that had no effect: Java-only ones, truststore companions without one."""
    return (KEYCLOAK_UNUSED_FIELDS | _TRUSTSTORE_COMPANIONS) - fields.read


def _check_connection(values: Mapping[str, Any], issuer: str) -> None:
    """How calls to the server travel: turning TLS checks off is refused for a server on
    another machine unless the configuration says, in words, that this is understood."""
    disable = setting_of(AdapterConfig, "disable_trust_manager")
    if values["truststore"] is not None and values[disable.name]:
        raise ConfigError(
            f"{disable.key}: turns certificate checks off, so the truststore would not be used; "
            "remove one of them"
        )
    switches = (disable, setting_of(AdapterConfig, "allow_any_hostname"))
    unchecked = [spec.key for spec in switches if values[spec.name]]
    if unchecked and not values["i_understand_tls_is_disabled"]:
        hosts = [urlsplit(issuer).hostname, urlsplit(values["backchannel_url"] or "").hostname]
        hosts += [urlsplit("//" + entry).hostname for entry in values["endpoint_hosts"]]
        remote = [host for host in hosts if host and not _readers.is_loopback(host)]
        if remote:
            raise ConfigError(
                f"{unchecked[0]}: turns TLS checks off for {remote[0]}, which is not this "
                f"machine; trust its CA with truststore instead, or set {TLS_OFF_CONSENT} = true"
            )


def _issuer(
    fields: Fields, realm: str | None, auth_server_url: str | None, ssl_required: str
) -> str:
    key = setting_of(AdapterConfig, "issuer").key
    issuer = fields.string(key)
    if auth_server_url is not None and realm is None:
        raise ConfigError("realm: missing; auth-server-url needs the realm name beside it")
    if issuer is None and auth_server_url is None:
        raise ConfigError(
            f"{key}: missing; set {key} (any OpenID provider) or auth-server-url and realm "
            "(Keycloak)"
        )
    # Each URL is checked before it is quoted anywhere (it could carry user:password@).
    if issuer is not None:
        _readers.check_url(key, fields.written(key), issuer, ssl_required)
    derived = None
    if auth_server_url is not None and realm is not None:
        written = fields.written("auth-server-url")
        _readers.check_url("auth-server-url", written, auth_server_url, ssl_required)
        try:
            derived = f"{auth_server_url.rstrip('/')}/realms/{quote(realm, safe='')}"
        except UnicodeError:
            raise ConfigError("realm: is not valid text; fix the realm name") from None
    if issuer is not None and derived is not None and issuer.rstrip("/") != derived:
        raise ConfigError(
            f"{key}: {issuer!r} disagrees with auth-server-url + realm ({derived!r}); "
            "keep only one of them"
        )
    chosen = issuer or derived
    assert chosen is not None
    return chosen


def _client_id(fields: Fields) -> str:
    spec = setting_of(AdapterConfig, "client_id")
    (keycloak,) = spec.keycloak  # resource
    resource = fields.string(keycloak)
    client_id = fields.string(spec.key)
    if resource and client_id and resource != client_id:
        raise ConfigError(f"{spec.key}: disagrees with {keycloak}; keep only one of them")
    chosen = client_id or resource
    if chosen is None:
        raise ConfigError(f"{spec.key}: missing; set {spec.key} (or {keycloak}, in keycloak.json)")
    return chosen


def _credentials(fields: Fields, may_be_empty: bool) -> CredentialsConfig:
    key = setting_of(AdapterConfig, "credentials").key
    if not fields.has(key):
        fields.read.add(key)
        if not may_be_empty:
            raise ConfigError(
                f"{key}: missing; a confidential client needs a secret or a key "
                "(or set public-client / bearer-only to true)"
            )
        return CredentialsConfig()
    table = fields.raw(key)
    # What only the native table has (keycloak.json's has secret, jwt or secret-jwt).
    native = ("method", "secret-env", "secret-file", "keys", "algorithm")
    if isinstance(table, Mapping) and any(k in table for k in native):
        credentials = fields.nested(key, _native_credentials, NATIVE_CREDENTIALS_FIELDS)
    else:
        credentials = fields.nested(key, _keycloak_credentials, KEYCLOAK_CREDENTIALS_FIELDS)
    assert credentials is not None
    return credentials


def _native_credentials(fields: Fields) -> CredentialsConfig:
    method_key = setting_of(CredentialsConfig, "method").key
    if not fields.has(method_key):
        raise ConfigError(f"{fields.name(method_key)}: missing; set one of {', '.join(METHODS)}")
    values = read_settings(fields, CredentialsConfig)
    method: ClientAuthMethod = values["method"]
    problem = assertion_timing_problem(values["assertion_lifetime"], values["assertion_backdate"])
    if problem is not None:
        backdate = setting_of(CredentialsConfig, "assertion_backdate").key
        raise ConfigError(f"{fields.name(backdate)}: {problem}")
    if method in SECRET_METHODS:
        if values["secret"] is None:
            secret = setting_of(CredentialsConfig, "secret").key
            raise ConfigError(
                f"{fields.name(secret)}: missing; {method} needs {secret}, {secret}-env or "
                f"{secret}-file"
            )
        raw_keys = fields.table.get(setting_of(CredentialsConfig, "keys").key)
        if isinstance(raw_keys, list) and any(  # encryption keys (else unused: a warning)
            isinstance(raw, Mapping) and raw.get("use") == "enc" for raw in raw_keys
        ):
            values["keys"] = _native_keys(fields, method)
    elif method in KEY_METHODS:
        values["keys"] = _native_keys(fields, method)
    if method == "client_secret_jwt":
        values["algorithm"] = _algorithm(fields, HMAC_ALGORITHMS, "HS256")
    elif method == "private_key_jwt":
        values["algorithm"] = _algorithm(fields, ASYMMETRIC_ALGORITHMS, None)
    return CredentialsConfig(**values)


def _native_keys(fields: Fields, method: str) -> tuple[KeyConfig, ...]:
    key = setting_of(CredentialsConfig, "keys").key
    raw_keys = fields.raw(key)
    if raw_keys is not None and not isinstance(raw_keys, list):
        raise ConfigError(
            f"{fields.name(key)}: must be a list of key tables; write [[credentials.keys]]"
        )
    if not raw_keys:
        raise ConfigError(
            f"{fields.name(key)}: missing; {method} needs at least one [[credentials.keys]] entry"
        )
    keys = []
    for index, raw in enumerate(raw_keys):
        prefix = f"{fields.name(key)}[{index}]"
        table = Fields(raw, prefix, fields.base_dir, fields.files, known=NATIVE_KEY_FIELDS)
        keys.append(table.build(_native_key))
    _check_key_uses(fields.name(key), keys, method)
    return tuple(keys)


def _check_key_uses(name: str, keys: list[KeyConfig], method: str) -> None:
    """A key method needs a signing key; a secret method signs with the secret, so its keys
    can only be encryption keys (published for the server to encrypt ID tokens to)."""
    signing = [key for key in keys if key.use == "sig"]
    if method in KEY_METHODS and not signing:
        raise ConfigError(
            f'{name}: every key is use = "enc"; {method} needs a signing key too (use = "sig", '
            "the default)"
        )
    if method not in KEY_METHODS and signing:
        raise ConfigError(
            f'{signing[0].field}.use: {method} signs nothing with a key; set use = "enc" (a key '
            f"the server encrypts ID tokens to) or remove the key"
        )


def _native_key(fields: Fields) -> KeyConfig:
    keystore = setting_of(KeyConfig, "keystore").key
    if not fields.has(keystore):
        fields.read.add(keystore)
        raise ConfigError(f"{fields.name(keystore)}: missing; give the keystore file path")
    values = read_settings(fields, KeyConfig)
    if values["activate_at"] is not None and values["state"] not in (None, "next"):
        state, activate_at = (setting_of(KeyConfig, name).key for name in ("state", "activate_at"))
        raise ConfigError(
            f"{fields.name(state)}: a key with {activate_at} is next until that time; "
            f"remove {state} = {values['state']!r} or {activate_at}"
        )
    if values["decrypt_until"] is not None and (
        values["use"] != "enc" or values["state"] != "retired"
    ):
        until, state = (setting_of(KeyConfig, name).key for name in ("decrypt_until", "state"))
        raise ConfigError(
            f"{fields.name(until)}: only a retired encryption key stops decrypting at a time; "
            f'set use = "enc" and {state} = "retired", or remove {until}'
        )
    passwords = (setting_of(KeyConfig, name).key for name in ("password", "key_password"))
    return KeyConfig(
        field=fields.prefix,
        algorithm=_key_algorithm(fields, values["use"]),
        lock_fields=(next(passwords), next(passwords)),
        **values,
    )


def _keycloak_credentials(fields: Fields) -> CredentialsConfig:
    providers = [k for k in KEYCLOAK_PROVIDERS if fields.has(k)]
    if len(providers) != 1:
        found = ", ".join(providers) or "none"
        raise ConfigError(
            f"{fields.prefix}: needs exactly one of {', '.join(KEYCLOAK_PROVIDERS)} (found {found})"
        )
    provider = providers[0]
    method = KEYCLOAK_PROVIDERS[provider]
    if method == "client_secret_basic":
        secret = fields.secret(setting_of(CredentialsConfig, "secret").keycloak[0])
        return CredentialsConfig(method=method, secret=secret, keycloak_json=True)
    if method == "client_secret_jwt":
        built = fields.nested(provider, _keycloak_secret_jwt, KEYCLOAK_SECRET_JWT_FIELDS)
    else:
        built = fields.nested(provider, _keycloak_jwt, KEYCLOAK_JWT_FIELDS)
    assert built is not None
    return built


def _keycloak_secret_jwt(fields: Fields) -> CredentialsConfig:
    key = setting_of(CredentialsConfig, "secret").keycloak[0]
    secret = fields.secret(key)
    if secret is None:
        raise ConfigError(f"{fields.name(key)}: missing; give the client secret")
    return CredentialsConfig(
        method="client_secret_jwt",
        secret=secret,
        algorithm=_algorithm(fields, HMAC_ALGORITHMS, "HS256"),
        assertion_lifetime=_token_timeout(fields),
        keycloak_json=True,
    )


def _keycloak_jwt(fields: Fields) -> CredentialsConfig:
    keystore = setting_of(KeyConfig, "keystore").keycloak[0]
    if not fields.has(keystore):
        fields.read.add(keystore)
        raise ConfigError(f"{fields.name(keystore)}: missing; give the client keystore path")
    values = read_settings(fields, KeyConfig, keycloak=True)
    values["type"] = keycloak_keystore_type(values["keystore"], values["type"])
    passwords = (setting_of(KeyConfig, name).keycloak[0] for name in ("password", "key_password"))
    key = KeyConfig(
        field=fields.prefix,
        algorithm=_algorithm(fields, ASYMMETRIC_ALGORITHMS, None),
        state="active",
        lock_fields=(next(passwords), next(passwords)),
        **values,
    )
    return CredentialsConfig(
        method="private_key_jwt",
        algorithm=key.algorithm,
        assertion_lifetime=_token_timeout(fields),
        keys=(key,),
        keycloak_json=True,
    )


def _token_timeout(fields: Fields) -> int:
    """Keycloak's assertion lifetime: ``token-timeout``, or ``token-expiration`` in newer docs;
    10 s when absent, as the Java adapter (the native ``assertion-lifetime`` defaults to 60)."""
    spec = setting_of(CredentialsConfig, "assertion_lifetime")
    timeout, expiration = spec.keycloak
    if fields.has(timeout) and fields.has(expiration):
        raise ConfigError(f"{fields.name(timeout)}: give {timeout} or {expiration}, not both")
    key = expiration if fields.has(expiration) else timeout
    fields.read.update(spec.keycloak)
    lifetime: int = fields.integer(key, spec.keycloak_default, *spec.bounds)
    return lifetime


def assertion_timing_problem(lifetime: int, backdate: int) -> str | None:
    """Why no server refusing assertions older than :data:`ASSERTION_MAX_AGE` seconds from
    ``iat`` (Keycloak) could accept one made with this lifetime and backdate, or ``None``.

    An assertion carries ``iat = nbf = now - backdate`` and ``exp = iat + lifetime``: it is
    refused at once when its ``iat`` is already too old, or when it expires before it is made.
    """
    if backdate >= ASSERTION_MAX_AGE:
        return (
            f"{backdate} s makes every assertion at least {ASSERTION_MAX_AGE} s old when sent, "
            f"and servers that refuse assertions older than {ASSERTION_MAX_AGE} s from iat "
            f"(Keycloak) refuse them all; use less than {ASSERTION_MAX_AGE}"
        )
    if backdate >= lifetime:
        return (
            f"{backdate} s is not less than assertion-lifetime ({lifetime} s), so every "
            "assertion would have expired when made; backdate less or make the lifetime longer"
        )
    return None


def _algorithm(fields: Fields, allowed: tuple[str, ...], default: str | None) -> str | None:
    key = setting_of(CredentialsConfig, "algorithm").key  # a key's own is spelled the same
    value = fields.string(key)
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(
            f"{fields.name(key)}: unknown algorithm {fields.written(key)}; use "
            f"one of {', '.join(allowed)}"
        )
    return value


def _key_algorithm(fields: Fields, use: str) -> str | None:
    """A configured key's ``algorithm``: a JWS algorithm for a signing key, a key-management
    algorithm (RSA-OAEP-256 ...) for an ``enc`` key; one of the other kind names the fix."""
    key = setting_of(KeyConfig, "algorithm").key
    value = fields.string(key)
    if value is None:
        return None
    known = (*ASYMMETRIC_ALGORITHMS, *KEY_MANAGEMENT_ALGORITHMS, *REFUSED_KEY_MANAGEMENT)
    if value not in known:
        allowed = KEY_MANAGEMENT_ALGORITHMS if use == "enc" else ASYMMETRIC_ALGORITHMS
        raise ConfigError(
            f"{fields.name(key)}: unknown algorithm {fields.written(key)}; use "
            f"one of {', '.join(allowed)}"
        )
    problem = key_management_problem(use, value)
    if problem is not None:
        raise ConfigError(f"{fields.name(key)}: {problem}")
    return value
