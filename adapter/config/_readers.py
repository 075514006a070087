"""The readers of the settings that need more than their type says (``setting(read=...)``).

Each takes the table, its :class:`~adapter.config._settings.Setting` (the key and default
come from there, declared once on the dataclass field) and the values read before it in the
same table; it returns the field's value or raises a one-line :class:`ConfigError`. The URL
checks that the issuer shares with them live here too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from adapter.config._fields import Fields, substitute_env
from adapter.config._settings import Setting
from adapter.config.access_rules import MIN_STEP_UP_AGE, AccessRule, Requirement, rule_methods
from adapter.config.key_options import (
    CONTENT_ENCRYPTION_ALGORITHMS,
    KEY_MANAGEMENT_ALGORITHMS,
    REFUSED_KEY_MANAGEMENT,
)
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.jose import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS

Values = Mapping[str, Any]

# --- top level ---------------------------------------------------------------------------------


def id_token_encrypted_alg(fields: Fields, spec: Setting, values: Values) -> str | None:
    """``id-token-encrypted-response-alg``: the key-management algorithm the server encrypts
    this client's ID tokens with (Keycloak: the client's "ID token encryption key management
    algorithm"); set, a plain signed ID token is refused. RSA1_5 is refused by name."""
    value = fields.string(spec.key)
    if value is None:
        return None
    if value.upper() in REFUSED_KEY_MANAGEMENT:
        raise ConfigError(f"{fields.name(spec.key)}: {REFUSED_KEY_MANAGEMENT[value.upper()]}")
    return fields.choice(spec.key, KEY_MANAGEMENT_ALGORITHMS, "")


def id_token_encrypted_enc(fields: Fields, spec: Setting, values: Values) -> str | None:
    """``id-token-encrypted-response-enc``: the content encryption of encrypted ID tokens
    (Keycloak: "ID token encryption content encryption algorithm"); with the alg set and this
    not, A128CBC-HS256 (OpenID registration's default, and Keycloak's); alone, refused."""
    value = fields.choice(spec.key, CONTENT_ENCRYPTION_ALGORITHMS, "") or None
    alg = values.get("id_token_encrypted_response_alg")
    if value is not None and alg is None:
        raise ConfigError(
            f"{fields.name(spec.key)}: needs id-token-encrypted-response-alg beside it (the "
            "key-management algorithm, e.g. RSA-OAEP-256); set both or neither"
        )
    if alg is not None and value is None:
        return CONTENT_ENCRYPTION_ALGORITHMS[0]
    return value


def endpoint_hosts(fields: Fields, spec: Setting, values: Values) -> tuple[str, ...]:
    """Hosts besides the issuer's that discovered endpoints may be on (Keycloak's frontend
    hostname): ``host`` or ``host:port`` only, so that an entry allows no more than it says."""
    hosts = fields.raw(spec.key)
    if hosts is None:
        return ()
    if isinstance(hosts, list):
        hosts = [substitute_env(h, spec.key) if isinstance(h, str) else h for h in hosts]
    if not isinstance(hosts, list) or not all(_is_host(h) for h in hosts):
        raise ConfigError(
            f'{fields.name(spec.key)}: must be a list of "host" or "host:port" strings such as '
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


def backchannel_url(fields: Fields, spec: Setting, values: Values) -> str | None:
    """Where the adapter reaches the issuer, held to ``ssl-required`` as the issuer is."""
    url = fields.string(spec.key)
    if url is not None:
        check_url(spec.key, fields.written(spec.key), url, values["ssl_required"])
    return url


def proxy(fields: Fields, spec: Setting, values: Values) -> str | None:
    """The HTTP proxy for calls to the server: ``proxy``, or Keycloak's ``proxy-url``."""
    (keycloak,) = spec.keycloak
    given = [key for key in (spec.key, keycloak) if fields.has(key)]
    fields.read.update((spec.key, keycloak))
    if len(given) > 1:
        raise ConfigError(f"{spec.key}: give {spec.key} or {keycloak} (Keycloak's name), not both")
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


def id_token_signing_alg(fields: Fields, spec: Setting, values: Values) -> str:
    """``id-token-signing-alg``: the algorithm the server signs this client's ID tokens with
    (Keycloak: the client's "ID token signature algorithm"), RS256 unless set, as OpenID
    registration defaults it. Asymmetric algorithms only: ``none`` signs nothing, and HS256
    with the client secret would let anyone who holds the secret (every replica, every
    operator) forge ID tokens and logout tokens, and needs a key the server does not publish.
    """
    key = spec.key
    value = fields.string(key)
    if value is None:
        default: str = spec.default
        return default
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


# --- credentials -------------------------------------------------------------------------------


def assertion_audience(fields: Fields, spec: Setting, values: Values) -> str:
    """``issuer``, ``token-endpoint`` or an explicit http(s) URL."""
    default: str = spec.default
    value = fields.string(spec.key, default) or default
    if value in ("issuer", "token-endpoint"):
        return value
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{fields.name(spec.key)}: use issuer, token-endpoint or an http(s) URL")
    return value


# --- the middleware ----------------------------------------------------------------------------


def route(fields: Fields, spec: Setting, values: Values) -> str:
    """A path the middleware answers (or sends the browser to), relative to the app's root."""
    default: str = spec.default
    value = fields.string(spec.key, default) or default
    if not value.startswith("/") or value.startswith("//") or "?" in value or "#" in value:
        raise ConfigError(f"{fields.name(spec.key)}: must be a path such as {default}")
    return value


def public_paths(fields: Fields, spec: Setting, values: Values) -> tuple[str, ...]:
    public = fields.raw(spec.key)
    if public is None:
        public = []
    if not isinstance(public, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in public
    ):
        raise ConfigError(
            f'{fields.name(spec.key)}: must be a list of path prefixes such as ["/static", '
            '"/health"]'
        )
    return tuple(public)


def redirect_uri(fields: Fields, spec: Setting, values: Values) -> str | None:
    url = fields.string(spec.key)
    if url is not None:
        check_url(spec.key, fields.written(spec.key), url, "none")
    return url


def session_cookie(fields: Fields, spec: Setting, values: Values) -> str:
    default: str = spec.default
    value = fields.string(spec.key, default) or default
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigError(f"{fields.name(spec.key)}: use letters, digits, - and _ only")
    return value


def session_secrets(fields: Fields, spec: Setting, values: Values) -> tuple[Secret, ...]:
    """``session-secret`` (seals) and ``previous-session-secret`` (still opens)."""
    names = spec.keys
    secrets = [fields.secret(name) for name in names]
    if secrets[0] is None and secrets[1] is not None:
        raise ConfigError(f"{names[1]}: needs {names[0]} beside it")
    for secret, name in zip(secrets, names, strict=True):
        if secret is not None and len(secret.reveal().encode()) < 32:
            raise ConfigError(f"{name}: must be at least 32 bytes of random text; generate one")
    return tuple(s for s in secrets if s is not None)


def redis_url(fields: Fields, spec: Setting, values: Values) -> Secret | None:
    """``redis-url`` (or ``-env`` / ``-file``: it may hold a password), required by
    ``session-store = "redis"``."""
    url = fields.secret(spec.key)
    store = fields.table.get("session-store")  # as written: read after this field
    if url is None:
        if isinstance(store, str) and store.lower() == "redis":
            raise ConfigError(
                f'{spec.key}: missing; session-store = "redis" needs {spec.key}, '
                f"{spec.key}-env or {spec.key}-file (redis://host:6379/0, rediss://..., "
                "unix:///path, redis+sentinel://host:26379,host:26380/mymaster/0)"
            )
        return None
    from adapter.config._redis_url import is_sentinel_url, parse_sentinel_url  # with a Redis URL

    if is_sentinel_url(url.reveal()):
        parse_sentinel_url(url.reveal())  # a malformed one: a ConfigError naming redis-url
        return url
    try:
        scheme = urlsplit(url.reveal()).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix"):
        # Not quoted: the URL may hold a password.
        raise ConfigError(
            f"{spec.key}: not a redis://, rediss://, redis+sentinel:// or unix:// URL; fix the URL"
        )
    return url


def access_rules(fields: Fields, spec: Setting, values: Values) -> tuple[AccessRule, ...]:
    """``[[access]]`` tables: ``path`` (exact or ``/prefix/*``, relative to the app's root),
    optional ``methods``, and ``roles`` / ``client-roles`` / ``scopes`` (all required) or
    ``any-role`` (one of them), ``dpop``, and the step-up's ``acr`` and ``max-age``."""
    raw = fields.raw(spec.key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(
            f'{spec.key}: must be a list of tables; write [[{spec.key}]] with path = "/admin/*"'
        )
    rules = []
    for index, table in enumerate(raw):
        rule = Fields(table, f"{spec.key}[{index}]", fields.base_dir, fields.files)
        path = rule.string("path")
        wildcard_ok = path is not None and (
            "*" not in path or (path.endswith("/*") and "*" not in path[:-2])
        )
        if path is None or not path.startswith("/") or not wildcard_ok:
            raise ConfigError(
                f"{rule.name('path')}: give a path such as /admin (exact) or /admin/* (below it)"
            )
        lists = {
            key: rule.strings(key, '["admin"]')
            for key in ("methods", "roles", "client-roles", "scopes", "any-role", "acr")
        }
        dpop = rule.flag("dpop", False)  # RFC 9449: only DPoP-bound tokens with their proof
        requirement = _requirement(rule, lists, dpop)
        rule.warn_unknown()
        try:
            methods = rule_methods(lists["methods"])
        except ValueError as unknown:
            raise ConfigError(
                f"{rule.name('methods')}: unknown method {str(unknown)!r}; use HTTP method names "
                f"such as GET, POST, PUT, PATCH, DELETE (any case; GET covers HEAD too)"
            ) from None
        rules.append(AccessRule(path, methods, requirement, dpop))
    return tuple(rules)


def _requirement(rule: Fields, lists: dict[str, tuple[str, ...]], dpop: bool) -> Requirement:
    """An ``[[access]]`` rule's requirement: its lists, and the step-up's ``max-age``
    (seconds since the sign-in, ``auth_time``; absent: any age) and ``acr`` values."""
    max_age = None
    if rule.raw("max-age") is not None:
        max_age = rule.integer("max-age", 0, 0, 366 * 86400)
        if max_age < MIN_STEP_UP_AGE:
            raise ConfigError(
                f"{rule.name('max-age')}: give at least {MIN_STEP_UP_AGE} seconds (a sign-in "
                "takes longer than that: a shorter one would send every user back to sign in)"
            )
    asks = ("roles", "client-roles", "scopes", "any-role", "acr")
    if not dpop and max_age is None and not any(lists[k] for k in asks):
        raise ConfigError(
            f"{rule.prefix}: requires nothing; give roles, client-roles, scopes, any-role, "
            "acr, max-age or dpop = true"
        )
    try:
        return Requirement.of(
            lists["roles"], lists["client-roles"], lists["scopes"], lists["any-role"],
            lists["acr"], max_age,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"{rule.name('acr')}: {exc}; give the server's acr values") from None


def error_page(fields: Fields, spec: Setting, values: Values) -> str | None:
    """``error-page``: the app's own template for sign-in errors (``$title``, ``$message``,
    ``$retry``, ``$home``), read once with the configuration."""
    path = fields.path(spec.key)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            f"{fields.name(spec.key)}: cannot read {path}; give a UTF-8 HTML file"
        ) from None


def origins(fields: Fields, spec: Setting, values: Values) -> tuple[str, ...]:
    """Origins as browsers send them: scheme://host[:port], nothing else."""
    key = spec.key
    found = fields.strings(key, spec.example)
    for origin in found:
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
    return tuple(o.lower() for o in found)


def networks(fields: Fields, spec: Setting, values: Values) -> tuple[str, ...]:
    """IP addresses or networks (``10.0.0.0/8``), checked; written back in canonical form."""
    key = spec.key
    found = fields.strings(key, spec.example)
    checked = []
    for entry in found:
        try:
            checked.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{fields.name(key)}: {entry[:80]!r} is not an IP address or network; write "
                "127.0.0.1 or 10.0.0.0/8"
            ) from None
    return tuple(checked)


# --- URLs --------------------------------------------------------------------------------------


def check_url(name: str, written: str, url: str, ssl_required: str) -> None:
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
    if parts.scheme == "http" and not plain_http_allowed(hostname, ssl_required):
        raise ConfigError(
            f"{name}: plain http to {hostname} is refused with ssl-required = "
            f'{ssl_required!r}; use https, or set ssl-required = "none" for a test set-up'
        )


def plain_http_allowed(host: str, ssl_required: str) -> bool:
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


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): the config, the cookies' Secure
    flag, ``init`` and the dev server ask this one function."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
