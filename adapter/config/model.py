"""The adapter's configuration: frozen dataclasses and :func:`load_config`.

Two spellings load into the same :class:`AdapterConfig`: a ``keycloak.json`` exactly as the
Keycloak admin console exports it, and the native TOML/JSON format, which adds ``issuer`` for
any OpenID Connect provider and several client keys for rotation. Loading checks every field
and fails with one :class:`ConfigError` line naming the field and the fix; it does not open
keystores (see :func:`adapter.keys.load_key_ring`) or touch the network.

The middleware's own settings (session secret, paths, store ...) form a part of their own:
``load_config(..., web=False)`` neither reads nor checks them, so that the key and token
commands work where only the client's credentials are at hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from adapter.config._fields import Fields, substitute_env, written_literally
from adapter.config._files import KEYSTORE_LIMIT, FileRefused, read_regular_file, warn_if_exposed
from adapter.config._redis_url import is_sentinel_url, parse_sentinel_url
from adapter.config.access_rules import AccessRule, Requirement, rule_methods
from adapter.config.key_options import KEYSTORE_EXTENSIONS, KeyState
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.jose import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS

METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
KEY_STATES = tuple(state.value for state in KeyState)
SSL_REQUIRED = ("external", "all", "none")

# keycloak.json fields this adapter accepts as they are but has no use for (Java-specific
# transport, CORS and policy-enforcer settings). They do not warn: the file is valid.
KEYCLOAK_UNUSED_FIELDS = frozenset(
    {
        "realm-public-key", "enable-cors", "cors-max-age", "cors-allowed-headers",
        "cors-allowed-methods", "cors-exposed-headers", "enable-basic-auth",
        "redirect-rewrite-rules", "client-keystore", "client-keystore-password",
        "client-key-password", "connection-pool-size", "connection-ttl-millis",
        "register-node-at-startup", "register-node-period", "token-store",
        "adapter-state-cookie-path", "token-cookie-path", "turn-off-change-session-id-on-login",
        "policy-enforcer", "ignore-oauth-query-parameter", "expose-token",
    }
)  # fmt: skip

# keycloak.json fields that are read and checked but change nothing here, and why: `config
# check` lists them, so that nobody expects the Java adapter's behaviour from them.
KEYCLOAK_NO_EFFECT_FIELDS = {
    "always-refresh-token": "tokens are refreshed shortly before they expire",
    "autodetect-bearer-only": "API requests always get 401, browser navigations a login",
    "confidential-port": "https is decided by ssl-required, redirect-uri and the request",
    "pkce": "PKCE S256 is always used",
    "enable-pkce": "PKCE S256 is always used",
}
KEYCLOAK_TOKEN_TIMEOUT = 10  # seconds: the Java adapter's default client-assertion lifetime
# Servers such as Keycloak refuse a client assertion whose iat is more than this many seconds
# ago (Keycloak: the client's maximum assertion age); backdates are checked against it.
ASSERTION_MAX_AGE = 60

# Connections to the identity server (adapter/_connection.py builds the HTTP client from them).
TRUSTSTORE_TYPES = ("PKCS12", "JKS", "PEM")
TLS_OFF_CONSENT = "i-understand-tls-is-disabled"
# Read only beside a truststore: without one they have no use, and are listed as not used.
_TRUSTSTORE_COMPANIONS = frozenset(
    {
        "truststore-password",
        "truststore-password-env",
        "truststore-password-file",
        "truststore-type",
    }
)


@dataclass(frozen=True)
class KeyConfig:
    """One client key as configured: where it is and how it takes part in rotation."""

    keystore: Path
    field: str  # where it was configured, e.g. "credentials.keys[1]", for messages
    type: str | None = None
    password: Secret | None = None
    key_password: Secret | None = None
    alias: str | None = None
    kid: str | None = None
    algorithm: str | None = None
    state: str | None = None
    activate_at: datetime | None = None
    certificate: Path | None = None
    # The fields of the store and the key password, named when one is needed (keycloak.json
    # spells them client-keystore-password and client-key-password). How the file spells a
    # setting is not part of it: never compared. (dataclasses.field: ``field`` is a member.)
    lock_fields: tuple[str, str] = dataclasses.field(
        default=("password", "key-password"), compare=False
    )


@dataclass(frozen=True)
class CredentialsConfig:
    """How the client proves who it is to the identity server (DESIGN.md, client assertion)."""

    method: str = "none"
    secret: Secret | None = None
    algorithm: str | None = None
    assertion_lifetime: int = 60
    assertion_audience: str = "issuer"
    assertion_backdate: int = 0
    assertion_typ: str | None = None
    assertion_x5t: bool = False
    assertion_x5t_s256: bool = False
    key_switch_grace: int = 120
    keys: tuple[KeyConfig, ...] = ()
    # Keys revoked for good (keys revoke): a key with one of these kids is refused at load.
    revoked_kids: frozenset[str] = frozenset()
    # Spelled as keycloak.json (one key, no rotation: convert it); the spelling is not compared.
    keycloak_json: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class WebConfig:
    """What the middleware answers and how it keeps sessions (native fields; defaults work)."""

    jwks_path: str = "/k_jwks"
    login_path: str = "/oidc/login"
    callback_path: str = "/oidc/callback"
    logout_path: str = "/oidc/logout"
    backchannel_logout_path: str = "/oidc/backchannel-logout"
    post_logout_redirect: str = "/"
    public_paths: tuple[str, ...] = ()
    redirect_uri: str | None = None
    scope: str = "openid profile email"
    session_store: str = "cookie"
    session_cookie: str = "oidc_session"
    session_max_age: int = 28800
    session_secrets: tuple[Secret, ...] = ()  # first seals, all open; empty: random per process
    bearer_introspection: bool = False
    redis_url: Secret | None = None  # may hold a password: a Secret, never printed
    redis_prefix: str = "oidc:"
    access_rules: tuple[AccessRule, ...] = ()  # [[access]], first match wins
    error_page: str | None = None  # the text of the app's own sign-in error page template
    websocket_origins: tuple[str, ...] = ()  # besides the app's own origin
    # Answers for a signed-in user get Cache-Control: private (and Vary: Cookie for a cookie
    # session) when the app set no Cache-Control: a shared cache never serves them to another.
    private_responses: bool = True


@dataclass(frozen=True)
class AdapterConfig:
    """Everything the adapter is configured with; secrets are :class:`Secret` objects."""

    issuer: str
    client_id: str
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    realm: str | None = None
    auth_server_url: str | None = None
    ssl_required: str = "external"
    endpoint_hosts: tuple[str, ...] = ()  # hosts besides the issuer's that discovery may name
    confidential_port: int = 8443
    public_client: bool = False
    bearer_only: bool = False
    autodetect_bearer_only: bool = False
    principal_attribute: str = "sub"
    use_resource_role_mappings: bool = False
    verify_token_audience: bool = True  # bearer tokens must be for us (off: a warning)
    token_audiences: tuple[str, ...] = ()  # accepted bearer audiences; empty: the client id
    always_refresh_token: bool = False
    pkce: bool = True
    token_minimum_time_to_live: int = 0
    min_time_between_jwks_requests: int = 10
    public_key_cache_ttl: int = 86400
    connection_timeout_millis: int = 5000
    socket_timeout_millis: int = 10000
    clock_skew: int = 30
    # The client's ID token algorithm at the server: ID tokens and logout tokens must use it.
    id_token_signing_alg: str = "RS256"  # noqa: S105 - an algorithm name, not a secret
    # How calls to the server travel (read once, when the HTTP client is built):
    truststore: Path | None = None  # its CA certificates replace the system's
    truststore_password: Secret | None = None
    truststore_type: str | None = None  # PKCS12, JKS or PEM; None: from the file's content
    disable_trust_manager: bool = False  # no certificate check at all (a warning at every start)
    allow_any_hostname: bool = False  # no host name check (a warning at every start)
    i_understand_tls_is_disabled: bool = False  # the two above for a server on another machine
    backchannel_url: str | None = None  # where the adapter reaches the issuer, if elsewhere
    proxy: str | None = None  # an HTTP proxy for every call to the server
    web: WebConfig = field(default_factory=WebConfig)
    source: Path | None = None
    unused_fields: tuple[str, ...] = ()
    no_effect_fields: tuple[str, ...] = ()  # read and checked, but nothing depends on them
    # The middleware's own settings that the file sets (what they set is in ``web``).
    web_fields: tuple[str, ...] = field(default=(), compare=False)
    secret_files: tuple[Path, ...] = ()  # password and secret files it read

    def watched_files(self) -> tuple[Path, ...]:
        """Every file this configuration was built from: a change to any calls for a reload."""
        files = [self.source] if self.source is not None else []
        files += self.secret_files
        for key in self.credentials.keys:
            files.append(key.keystore)
            if key.certificate is not None:
                files.append(key.certificate)
        return tuple(dict.fromkeys(files))


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


def _secret_spellings(*names: str) -> frozenset[str]:
    """A secret field's three spellings: the value, ``-env`` and ``-file``."""
    return frozenset(f"{name}{suffix}" for name in names for suffix in ("", "-env", "-file"))


# Every field each kind of table may hold: unknown fields are reported against these (with the
# closest as "did you mean") also when loading fails before their table was read to the end.
# tests/unit/test_config.py checks that every field this module reads is listed.
_TOP_LEVEL_FIELDS = frozenset(
    {
        "issuer", "realm", "auth-server-url", "ssl-required", "resource", "client-id",
        "public-client", "bearer-only", "credentials", "endpoint-hosts", "confidential-port",
        "autodetect-bearer-only", "principal-attribute", "use-resource-role-mappings",
        "verify-token-audience", "token-audiences", "always-refresh-token", "pkce",
        "enable-pkce", "token-minimum-time-to-live", "min-time-between-jwks-requests",
        "public-key-cache-ttl", "connection-timeout-millis", "socket-timeout-millis",
        "clock-skew", "truststore", "disable-trust-manager", "allow-any-hostname",
        TLS_OFF_CONSENT, "backchannel-url", "proxy", "proxy-url", "id-token-signing-alg",
    }
) | _TRUSTSTORE_COMPANIONS | _secret_spellings("truststore-password")  # fmt: skip
NATIVE_CREDENTIALS_FIELDS = frozenset(
    {
        "method", "algorithm", "assertion-lifetime", "assertion-audience", "assertion-backdate",
        "assertion-typ", "assertion-x5t", "assertion-x5t-s256", "key-switch-grace", "keys",
        "revoked-kids",
    }
) | _secret_spellings("secret")  # fmt: skip
NATIVE_KEY_FIELDS = frozenset(
    {"keystore", "type", "alias", "kid", "algorithm", "state", "activate-at", "certificate"}
) | _secret_spellings("password", "key-password")
KEYCLOAK_CREDENTIALS_FIELDS = frozenset({"jwt", "secret-jwt"}) | _secret_spellings("secret")
KEYCLOAK_SECRET_JWT_FIELDS = frozenset(
    {"algorithm", "token-timeout", "token-expiration"}
) | _secret_spellings("secret")
KEYCLOAK_JWT_FIELDS = frozenset(
    {
        "client-keystore-file", "client-keystore-type", "client-key-alias", "algorithm",
        "token-timeout", "token-expiration",
    }
) | _secret_spellings("client-keystore-password", "client-key-password")  # fmt: skip


@functools.cache
def web_fields() -> frozenset[str]:
    """The names of the middleware's own settings: what :func:`_web` reads, learnt by letting
    it read an empty table (so a setting added there is known here without a second list)."""
    probe = Fields({}, "", Path())
    with contextlib.suppress(ConfigError):  # a setting without a default: the rest still counts
        _web(probe)
    return frozenset(probe.read)


def top_level_fields() -> frozenset[str]:
    """Every field the top level of a configuration may hold (both spellings)."""
    return _TOP_LEVEL_FIELDS | web_fields() | KEYCLOAK_UNUSED_FIELDS


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


# Fields whose value is a secret: a literal one (not -env, -file or ${env.VAR}) makes the
# configuration file as private as a keystore.
_SECRET_FIELDS = frozenset(
    {
        "secret",
        "password",
        "key-password",
        "session-secret",
        "previous-session-secret",
        "client-keystore-password",
        "client-key-password",
        "truststore-password",
    }
)


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
    realm = fields.string("realm")
    auth_server_url = fields.string("auth-server-url")
    ssl_required = fields.choice("ssl-required", SSL_REQUIRED, "external")
    issuer = _issuer(fields, realm, auth_server_url, ssl_required)
    client_id = _client_id(fields)
    public_client = fields.flag("public-client", False)
    bearer_only = fields.flag("bearer-only", False)
    credentials = _credentials(fields, public_client or bearer_only)
    endpoint_hosts = _endpoint_hosts(fields)
    connection = _connection(fields, issuer, ssl_required, endpoint_hosts)
    config = AdapterConfig(
        issuer=issuer,
        client_id=client_id,
        credentials=credentials,
        realm=realm,
        auth_server_url=auth_server_url,
        ssl_required=ssl_required,
        endpoint_hosts=endpoint_hosts,
        confidential_port=fields.integer("confidential-port", 8443, 0, 65535),
        public_client=public_client,
        bearer_only=bearer_only,
        autodetect_bearer_only=fields.flag("autodetect-bearer-only", False),
        principal_attribute=fields.string("principal-attribute", "sub") or "sub",
        use_resource_role_mappings=fields.flag("use-resource-role-mappings", False),
        verify_token_audience=fields.flag("verify-token-audience", True),
        token_audiences=_strings(fields, "token-audiences", '["my-api", "account"]'),
        always_refresh_token=fields.flag("always-refresh-token", False),
        pkce=fields.flag("pkce", fields.flag("enable-pkce", True)),
        token_minimum_time_to_live=fields.integer("token-minimum-time-to-live", 0),
        min_time_between_jwks_requests=fields.integer("min-time-between-jwks-requests", 10),
        public_key_cache_ttl=fields.integer("public-key-cache-ttl", 86400),
        connection_timeout_millis=fields.integer("connection-timeout-millis", 5000, 1),
        socket_timeout_millis=fields.integer("socket-timeout-millis", 10000, 1),
        clock_skew=fields.integer("clock-skew", 30, 0, 600),
        id_token_signing_alg=_id_token_signing_alg(fields),
        **connection,
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
    return config


def _skip_web(fields: Fields) -> WebConfig:
    """The defaults, with the middleware's settings left unread (they are not unknown)."""
    fields.read.update(web_fields())
    return WebConfig()


def _never_read(fields: Fields) -> frozenset[str]:
    """The known fields that had no effect: Java-only ones, truststore companions without one."""
    return (KEYCLOAK_UNUSED_FIELDS | _TRUSTSTORE_COMPANIONS) - fields.read


def _web(fields: Fields) -> WebConfig:
    paths = {
        name: _path_field(fields, key, default)
        for name, key, default in (
            ("jwks_path", "jwks-path", "/k_jwks"),
            ("login_path", "login-path", "/oidc/login"),
            ("callback_path", "callback-path", "/oidc/callback"),
            ("logout_path", "logout-path", "/oidc/logout"),
            ("backchannel_logout_path", "backchannel-logout-path", "/oidc/backchannel-logout"),
            ("post_logout_redirect", "post-logout-redirect", "/"),
        )
    }
    public = fields.raw("public-paths")
    if public is None:
        public = []
    if not isinstance(public, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in public
    ):
        raise ConfigError(
            'public-paths: must be a list of path prefixes such as ["/static", "/health"]'
        )
    redirect_uri = fields.string("redirect-uri")
    if redirect_uri is not None:
        _check_url("redirect-uri", fields.written("redirect-uri"), redirect_uri, "none")
    secrets = [fields.secret("session-secret"), fields.secret("previous-session-secret")]
    if secrets[0] is None and secrets[1] is not None:
        raise ConfigError("previous-session-secret: needs session-secret beside it")
    for secret, name in zip(secrets, ("session-secret", "previous-session-secret"), strict=True):
        if secret is not None and len(secret.reveal().encode()) < 32:
            raise ConfigError(f"{name}: must be at least 32 bytes of random text; generate one")
    redis_url, redis_prefix = _redis(fields)
    return WebConfig(
        **paths,
        public_paths=tuple(public),
        redirect_uri=redirect_uri,
        scope=fields.string("scope", "openid profile email") or "openid",
        session_store=fields.choice("session-store", ("cookie", "memory", "redis"), "cookie"),
        session_cookie=_cookie_name(fields),
        session_max_age=fields.integer("session-max-age", 28800, 60, 30 * 86400),
        session_secrets=tuple(s for s in secrets if s is not None),
        bearer_introspection=fields.flag("bearer-introspection", False),
        websocket_origins=_origins(fields, "websocket-origins"),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        access_rules=_access_rules(fields),
        error_page=_error_page(fields),
        private_responses=fields.flag("private-responses", True),
    )


def _error_page(fields: Fields) -> str | None:
    """``error-page``: the app's own template for sign-in errors (``$title``, ``$message``,
    ``$retry``, ``$home``), read once with the configuration."""
    path = fields.path("error-page")
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            f"{fields.name('error-page')}: cannot read {path}; give a UTF-8 HTML file"
        ) from None


def _access_rules(fields: Fields) -> tuple[AccessRule, ...]:
    """``[[access]]`` tables: ``path`` (exact or ``/prefix/*``, relative to the app's root),
    optional ``methods``, and ``roles`` / ``client-roles`` / ``scopes`` (all required) or
    ``any-role`` (one of them)."""
    raw = fields.raw("access")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(
            'access: must be a list of tables; write [[access]] with path = "/admin/*"'
        )
    rules = []
    for index, table in enumerate(raw):
        rule = Fields(table, f"access[{index}]", fields.base_dir, fields.files)
        path = rule.string("path")
        wildcard_ok = path is not None and (
            "*" not in path or (path.endswith("/*") and "*" not in path[:-2])
        )
        if path is None or not path.startswith("/") or not wildcard_ok:
            raise ConfigError(
                f"{rule.name('path')}: give a path such as /admin (exact) or /admin/* (below it)"
            )
        lists = {
            key: _strings(rule, key, '["admin"]')
            for key in ("methods", "roles", "client-roles", "scopes", "any-role")
        }
        if not any(lists[key] for key in ("roles", "client-roles", "scopes", "any-role")):
            raise ConfigError(
                f"{rule.prefix}: requires nothing; give roles, client-roles, scopes or any-role"
            )
        rule.warn_unknown()
        requirement = Requirement.of(
            lists["roles"], lists["client-roles"], lists["scopes"], lists["any-role"]
        )
        try:
            methods = rule_methods(lists["methods"])
        except ValueError as unknown:
            raise ConfigError(
                f"{rule.name('methods')}: unknown method {str(unknown)!r}; use HTTP method names "
                f"such as GET, POST, PUT, PATCH, DELETE (any case; GET covers HEAD too)"
            ) from None
        rules.append(AccessRule(path, methods, requirement))
    return tuple(rules)


def _redis(fields: Fields) -> tuple[Secret | None, str]:
    """``redis-url`` (or ``-env`` / ``-file``: it may hold a password) and ``redis-prefix``;
    the URL is required by ``session-store = "redis"``."""
    url = fields.secret("redis-url")
    prefix = fields.string("redis-prefix", "oidc:") or "oidc:"
    store = fields.table.get("session-store")
    if url is None:
        if isinstance(store, str) and store.lower() == "redis":
            raise ConfigError(
                'redis-url: missing; session-store = "redis" needs redis-url, redis-url-env or '
                "redis-url-file (redis://host:6379/0, rediss://..., unix:///path, "
                "redis+sentinel://host:26379,host:26380/mymaster/0)"
            )
        return None, prefix
    if is_sentinel_url(url.reveal()):
        parse_sentinel_url(url.reveal())  # a malformed one: a ConfigError naming redis-url
        return url, prefix
    try:
        scheme = urlsplit(url.reveal()).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix"):
        # Not quoted: the URL may hold a password.
        raise ConfigError(
            "redis-url: not a redis://, rediss://, redis+sentinel:// or unix:// URL; fix the URL"
        )
    return url, prefix


def _strings(fields: Fields, key: str, example: str) -> tuple[str, ...]:
    """A list of non-empty strings (a single string is a list of one)."""
    value = fields.raw(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{fields.name(key)}: must be a list of strings such as {example}")
    return tuple(v.strip() for v in value)


def _origins(fields: Fields, key: str) -> tuple[str, ...]:
    """Origins as browsers send them: scheme://host[:port], nothing else."""
    origins = _strings(fields, key, '["https://app.example.com"]')
    for origin in origins:
        try:
            parts = urlsplit(origin)
            valid = parts.scheme in ("https", "http") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid or parts.path or parts.query or parts.fragment or parts.username:
            raise ConfigError(
                f"{fields.name(key)}: {origin[:80]!r} is not an origin; write "
                "scheme://host[:port] without a path"
            )
    return tuple(o.lower() for o in origins)


def _path_field(fields: Fields, key: str, default: str) -> str:
    value = fields.string(key, default) or default
    if not value.startswith("/") or value.startswith("//") or "?" in value or "#" in value:
        raise ConfigError(f"{fields.name(key)}: must be a path such as {default}")
    return value


def _cookie_name(fields: Fields) -> str:
    value = fields.string("session-cookie", "oidc_session") or "oidc_session"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigError("session-cookie: use letters, digits, - and _ only")
    return value


def _issuer(
    fields: Fields, realm: str | None, auth_server_url: str | None, ssl_required: str
) -> str:
    issuer = fields.string("issuer")
    if auth_server_url is not None and realm is None:
        raise ConfigError("realm: missing; auth-server-url needs the realm name beside it")
    if issuer is None and auth_server_url is None:
        raise ConfigError(
            "issuer: missing; set issuer (any OpenID provider) or auth-server-url and realm "
            "(Keycloak)"
        )
    # Each URL is checked before it is quoted anywhere (it could carry user:password@).
    if issuer is not None:
        _check_url("issuer", fields.written("issuer"), issuer, ssl_required)
    derived = None
    if auth_server_url is not None and realm is not None:
        _check_url(
            "auth-server-url", fields.written("auth-server-url"), auth_server_url, ssl_required
        )
        try:
            derived = f"{auth_server_url.rstrip('/')}/realms/{quote(realm, safe='')}"
        except UnicodeError:
            raise ConfigError("realm: is not valid text; fix the realm name") from None
    if issuer is not None and derived is not None and issuer.rstrip("/") != derived:
        raise ConfigError(
            f"issuer: {issuer!r} disagrees with auth-server-url + realm ({derived!r}); "
            "keep only one of them"
        )
    chosen = issuer or derived
    assert chosen is not None
    return chosen


def _check_url(name: str, written: str, url: str, ssl_required: str) -> None:
    """Refuse anything but a plain http(s) URL; ``written`` is the value as the file has it."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        has_user_info = parts.username is not None or parts.password is not None
    except ValueError:
        raise ConfigError(f"{name}: is not a valid URL; write https://host/path") from None
    if has_user_info:
        # Not quoted: the user-info part may hold a password.
        raise ConfigError(f"{name}: must not contain user:password@; remove the credentials")
    if parts.scheme not in ("https", "http") or not hostname:
        raise ConfigError(f"{name}: {written} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}: must not contain a query or fragment")
    if parts.scheme == "http" and not _plain_http_allowed(hostname, ssl_required):
        raise ConfigError(
            f"{name}: plain http to {hostname} is refused with ssl-required = "
            f'{ssl_required!r}; use https, or set ssl-required = "none" for a test set-up'
        )


def _plain_http_allowed(host: str, ssl_required: str) -> bool:
    """Keycloak's ssl-required: ``external`` allows http to local and private addresses."""
    if ssl_required == "none":
        return True
    if ssl_required == "all":
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _endpoint_hosts(fields: Fields) -> tuple[str, ...]:
    """Hosts besides the issuer's that discovered endpoints may be on (Keycloak's frontend
    hostname): ``host`` or ``host:port`` only, so that an entry allows no more than it says."""
    hosts = fields.raw("endpoint-hosts")
    if hosts is None:
        return ()
    if isinstance(hosts, list):
        hosts = [substitute_env(h, "endpoint-hosts") if isinstance(h, str) else h for h in hosts]
    if not isinstance(hosts, list) or not all(_is_host(h) for h in hosts):
        raise ConfigError(
            'endpoint-hosts: must be a list of "host" or "host:port" strings such as '
            '["sso.example.com"], without scheme or path'
        )
    return tuple(h.lower() for h in hosts)


def _is_host(entry: object) -> bool:
    if not isinstance(entry, str) or not entry or entry.endswith(":"):
        return False
    if any(c in entry for c in "/\\?#@ ") or not entry.isprintable():
        return False
    try:
        parts = urlsplit("//" + entry)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number or out of range
        return False


def _connection(
    fields: Fields, issuer: str, ssl_required: str, endpoint_hosts: tuple[str, ...]
) -> dict[str, Any]:
    """The fields of AdapterConfig that say how calls to the server travel: trust, the
    internal address, the proxy. Turning TLS checks off is refused for a server on another
    machine unless the configuration says, in words, that this is understood."""
    truststore = fields.path("truststore")
    settings: dict[str, Any] = {
        "truststore": truststore,
        "disable_trust_manager": fields.flag("disable-trust-manager", False),
        "allow_any_hostname": fields.flag("allow-any-hostname", False),
        "i_understand_tls_is_disabled": fields.flag(TLS_OFF_CONSENT, False),
        "backchannel_url": fields.string("backchannel-url"),
        "proxy": _proxy(fields),
    }
    if settings["backchannel_url"] is not None:
        written = fields.written("backchannel-url")
        _check_url("backchannel-url", written, settings["backchannel_url"], ssl_required)
    if truststore is not None:
        settings["truststore_password"] = fields.secret("truststore-password")
        settings["truststore_type"] = fields.choice("truststore-type", TRUSTSTORE_TYPES, "") or None
        if settings["disable_trust_manager"]:
            raise ConfigError(
                "disable-trust-manager: turns certificate checks off, so the truststore would "
                "not be used; remove one of them"
            )
    unchecked = [
        name
        for name in ("disable-trust-manager", "allow-any-hostname")
        if settings[name.replace("-", "_")]
    ]
    if unchecked and not settings["i_understand_tls_is_disabled"]:
        hosts = [urlsplit(issuer).hostname, urlsplit(settings["backchannel_url"] or "").hostname]
        hosts += [urlsplit("//" + entry).hostname for entry in endpoint_hosts]
        remote = [host for host in hosts if host and not _is_loopback(host)]
        if remote:
            raise ConfigError(
                f"{unchecked[0]}: turns TLS checks off for {remote[0]}, which is not this "
                f"machine; trust its CA with truststore instead, or set {TLS_OFF_CONSENT} = true"
            )
    return settings


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxy(fields: Fields) -> str | None:
    """The HTTP proxy for calls to the server: ``proxy``, or Keycloak's ``proxy-url``."""
    given = [key for key in ("proxy", "proxy-url") if fields.has(key)]
    fields.read.update(("proxy", "proxy-url"))
    if len(given) > 1:
        raise ConfigError("proxy: give proxy or proxy-url (Keycloak's name), not both")
    if not given:
        return None
    key = given[0]
    value = fields.string(key)
    assert value is not None
    example = "write http://proxy.example.com:3128"
    try:
        parts = urlsplit(value)
        has_user_info = parts.username is not None or parts.password is not None
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        raise ConfigError(f"{key}: is not a valid URL; {example}") from None
    if has_user_info:
        # Not quoted: the user-info part may hold a password.
        raise ConfigError(
            f"{key}: must not contain user:password@; a proxy that asks for credentials is "
            "not supported"
        )
    if not valid or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{key}: {fields.written(key)} is not an http(s) proxy URL; {example}")
    return value


def _client_id(fields: Fields) -> str:
    resource = fields.string("resource")
    client_id = fields.string("client-id")
    if resource and client_id and resource != client_id:
        raise ConfigError("client-id: disagrees with resource; keep only one of them")
    chosen = client_id or resource
    if chosen is None:
        raise ConfigError("client-id: missing; set client-id (or resource, in keycloak.json)")
    return chosen


def _credentials(fields: Fields, may_be_empty: bool) -> CredentialsConfig:
    if not fields.has("credentials"):
        fields.read.add("credentials")
        if not may_be_empty:
            raise ConfigError(
                "credentials: missing; a confidential client needs a secret or a key "
                "(or set public-client / bearer-only to true)"
            )
        return CredentialsConfig()
    table = fields.raw("credentials")
    native = ("method", "secret-env", "secret-file", "keys", "algorithm")
    if isinstance(table, Mapping) and any(k in table for k in native):
        credentials = fields.nested("credentials", _native_credentials, NATIVE_CREDENTIALS_FIELDS)
    else:
        credentials = fields.nested(
            "credentials", _keycloak_credentials, KEYCLOAK_CREDENTIALS_FIELDS
        )
    assert credentials is not None
    return credentials


def _native_credentials(fields: Fields) -> CredentialsConfig:
    if not fields.has("method"):
        raise ConfigError(f"{fields.name('method')}: missing; set one of {', '.join(METHODS)}")
    method = fields.choice("method", METHODS, "none")
    secret = fields.secret("secret")
    lifetime = fields.integer("assertion-lifetime", 60, 1, 3600)
    backdate = fields.integer("assertion-backdate", 0, 0, 300)
    problem = assertion_timing_problem(lifetime, backdate)
    if problem is not None:
        raise ConfigError(f"{fields.name('assertion-backdate')}: {problem}")
    common: dict[str, Any] = {
        "method": method,
        "secret": secret,
        "assertion_lifetime": lifetime,
        "assertion_audience": _audience(fields),
        "assertion_backdate": backdate,
        "assertion_typ": fields.string("assertion-typ"),
        "assertion_x5t": fields.flag("assertion-x5t", False),
        "assertion_x5t_s256": fields.flag("assertion-x5t-s256", False),
        "key_switch_grace": fields.integer("key-switch-grace", 120, 0, 86400),
        "revoked_kids": frozenset(_strings(fields, "revoked-kids", '["Xk3...kid"]')),
    }
    if method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
        if secret is None:
            raise ConfigError(
                f"{fields.name('secret')}: missing; {method} needs secret, secret-env or "
                "secret-file"
            )
    elif method == "private_key_jwt":
        raw_keys = fields.raw("keys")
        if raw_keys is not None and not isinstance(raw_keys, list):
            raise ConfigError(
                f"{fields.name('keys')}: must be a list of key tables; write [[credentials.keys]]"
            )
        if not raw_keys:
            raise ConfigError(
                f"{fields.name('keys')}: missing; private_key_jwt needs at least one "
                "[[credentials.keys]] entry"
            )
        keys = []
        for index, raw in enumerate(raw_keys):
            key_fields = Fields(
                raw,
                f"{fields.name('keys')}[{index}]",
                fields.base_dir,
                fields.files,
                known=NATIVE_KEY_FIELDS,
            )
            keys.append(key_fields.build(_native_key))
        common["keys"] = tuple(keys)
    if method == "client_secret_jwt":
        common["algorithm"] = _algorithm(fields, HMAC_ALGORITHMS, "HS256")
    elif method == "private_key_jwt":
        common["algorithm"] = _algorithm(fields, ASYMMETRIC_ALGORITHMS, None)
    return CredentialsConfig(**common)


def _native_key(fields: Fields) -> KeyConfig:
    keystore = fields.path("keystore")
    if keystore is None:
        raise ConfigError(f"{fields.name('keystore')}: missing; give the keystore file path")
    state = fields.choice("state", KEY_STATES, "") or None
    activate_at = fields.timestamp("activate-at")
    if activate_at is not None and state not in (None, "next"):
        raise ConfigError(
            f"{fields.name('state')}: a key with activate-at is next until that time; "
            f"remove state = {state!r} or activate-at"
        )
    return KeyConfig(
        keystore=keystore,
        field=fields.prefix,
        type=fields.string("type"),
        password=fields.secret("password"),
        key_password=fields.secret("key-password"),
        alias=fields.string("alias"),
        kid=fields.string("kid"),
        algorithm=_algorithm(fields, ASYMMETRIC_ALGORITHMS, None),
        state=state,
        activate_at=activate_at,
        certificate=fields.path("certificate"),
    )


def _keycloak_credentials(fields: Fields) -> CredentialsConfig:
    providers = [k for k in ("secret", "jwt", "secret-jwt") if fields.has(k)]
    if len(providers) != 1:
        found = ", ".join(providers) or "none"
        raise ConfigError(
            f"{fields.prefix}: needs exactly one of secret, jwt, secret-jwt (found {found})"
        )
    provider = providers[0]
    if provider == "secret":
        secret = fields.secret("secret")
        return CredentialsConfig(method="client_secret_basic", secret=secret, keycloak_json=True)
    if provider == "secret-jwt":
        built = fields.nested("secret-jwt", _keycloak_secret_jwt, KEYCLOAK_SECRET_JWT_FIELDS)
    else:
        built = fields.nested("jwt", _keycloak_jwt, KEYCLOAK_JWT_FIELDS)
    assert built is not None
    return built


def _keycloak_secret_jwt(fields: Fields) -> CredentialsConfig:
    secret = fields.secret("secret")
    if secret is None:
        raise ConfigError(f"{fields.name('secret')}: missing; give the client secret")
    return CredentialsConfig(
        method="client_secret_jwt",
        secret=secret,
        algorithm=_algorithm(fields, HMAC_ALGORITHMS, "HS256"),
        assertion_lifetime=_token_timeout(fields),
        keycloak_json=True,
    )


def _keycloak_jwt(fields: Fields) -> CredentialsConfig:
    keystore = fields.path("client-keystore-file")
    if keystore is None:
        raise ConfigError(
            f"{fields.name('client-keystore-file')}: missing; give the client keystore path"
        )
    key = KeyConfig(
        keystore=keystore,
        field=fields.prefix,
        # Keycloak's default keystore type is JKS; an extension that says otherwise wins.
        type=fields.string("client-keystore-type")
        or (None if keystore.suffix.lower() in KEYSTORE_EXTENSIONS else "JKS"),
        password=fields.secret("client-keystore-password"),
        key_password=fields.secret("client-key-password"),
        alias=fields.string("client-key-alias"),
        algorithm=_algorithm(fields, ASYMMETRIC_ALGORITHMS, None),
        state="active",
        lock_fields=("client-keystore-password", "client-key-password"),
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
    if fields.has("token-timeout") and fields.has("token-expiration"):
        raise ConfigError(
            f"{fields.name('token-timeout')}: give token-timeout or token-expiration, not both"
        )
    key = "token-expiration" if fields.has("token-expiration") else "token-timeout"
    fields.read.update({"token-timeout", "token-expiration"})
    return fields.integer(key, KEYCLOAK_TOKEN_TIMEOUT, 1, 3600)


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


def _id_token_signing_alg(fields: Fields) -> str:
    """``id-token-signing-alg``: the algorithm the server signs this client's ID tokens with
    (Keycloak: the client's "ID token signature algorithm"), RS256 unless set, as OpenID
    registration defaults it. Asymmetric algorithms only: ``none`` signs nothing, and HS256
    with the client secret would let anyone who holds the secret (every replica, every
    operator) forge ID tokens and logout tokens, and needs a key the server does not publish.
    """
    key = "id-token-signing-alg"
    value = fields.string(key)
    if value is None:
        return "RS256"
    for algorithm in ASYMMETRIC_ALGORITHMS:
        if algorithm.lower() == value.lower():
            return algorithm
    fix = (
        "set the client's ID token signature algorithm at the server to RS256 (Keycloak's "
        "default) or another asymmetric one, and this field alike"
    )
    if value.lower() == "none":
        raise ConfigError(f"{fields.name(key)}: unsigned ID tokens (none) are refused; {fix}")
    if value.upper() in HMAC_ALGORITHMS:
        raise ConfigError(
            f"{fields.name(key)}: {value.upper()} (signed with the client secret) is not "
            f"supported, tokens are checked with the server's published keys; {fix}"
        )
    raise ConfigError(
        f"{fields.name(key)}: unknown algorithm {fields.written(key)}; use the client's ID "
        f"token signature algorithm at the server, one of {', '.join(ASYMMETRIC_ALGORITHMS)}"
    )


def _algorithm(fields: Fields, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = fields.string("algorithm")
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(
            f"{fields.name('algorithm')}: unknown algorithm {fields.written('algorithm')}; use "
            f"one of {', '.join(allowed)}"
        )
    return value


def _audience(fields: Fields) -> str:
    value = fields.string("assertion-audience", "issuer") or "issuer"
    if value in ("issuer", "token-endpoint"):
        return value
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"{fields.name('assertion-audience')}: use issuer, token-endpoint or an http(s) URL"
        )
    return value
