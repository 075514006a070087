"""``doctor``: check a deployment: one line per check, ``ok``, ``warn``, ``fail`` or ``skip``,
each problem with its fix; exit status 0 (all ok), 1 (a warning) or 2 (a failure).

The checks, in order: the configuration loads; discovery answers with exactly the configured
issuer; TLS to the server is trusted (truststore); this machine's clock agrees with the
server's ``Date`` header; the server accepts the client's authentication (the active key's
signature, or the secret) on a ``client_credentials`` call; ``/k_jwks`` at the app's public URL
(``--url``) serves exactly the configured key set; every staged next key is published there;
the redirect URI is on the public URL's origin; Redis answers when configured. A check whose
input is absent (no ``--url``, no answer from discovery) is skipped with a note saying what it
needs. Nothing secret is printed: the server's refusals are its bounded error words, Redis is
named by host only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from adapter.cli.common import PROG, Subparsers, UsageError, config_option, timestamp
from adapter.config.key_options import KeyState
from adapter.config.model import AdapterConfig, load_config
from adapter.errors import AdapterError, ConfigError, ProviderError, TokenError, bounded_text
from adapter.keys.keyring import KeyRing
from adapter.keys.loader import load_key_ring
from adapter.protocol import flows
from adapter.protocol._connection import Connection
from adapter.protocol.client import USER_AGENT
from adapter.protocol.client_auth import client_auth
from adapter.protocol.provider import ProviderMetadata

Status = Literal["ok", "warn", "fail", "skip"]
EXIT_STATUS: dict[Status, int] = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}
CLOCK_WARN_SECONDS = 10
_TRUST_FIX = "trust the server's CA with truststore = a PEM, JKS or PKCS#12 file that holds it"


def _now() -> float:
    """This machine's clock, as the clock check reads it (tests shift it here)."""
    return time.time()


@dataclass(frozen=True)
class Result:
    """One check's outcome: one line, with the fix for anything not ok."""

    status: Status
    check: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status:<5} {self.check:<10} {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text


@dataclass
class Deployment:
    """What the checks share; the discovery and /k_jwks checks fill in what they fetched."""

    path: Path
    config: AdapterConfig
    ring: KeyRing
    connection: Connection
    http: httpx.Client
    url: str | None
    metadata: ProviderMetadata | None = None
    response: httpx.Response | None = None  # discovery's, for its Date header
    asked: tuple[float, float] = (0.0, 0.0)  # this machine's clock around that exchange
    tls_failure: str | None = None
    served: bytes | None = None  # /k_jwks at --url
    notes: list[Result] = field(default_factory=list)

    @property
    def total_timeout(self) -> float:
        config = self.config
        return (config.connection_timeout_millis + config.socket_timeout_millis) / 1000

    @property
    def jwks_url(self) -> str | None:
        return None if self.url is None else self.url + self.config.web.jwks_path


def add_doctor(parent: Subparsers) -> None:
    doctor = parent.add_parser(
        "doctor",
        help="check a deployment: discovery, TLS, clock, the server accepting the key, /k_jwks",
        description="One line per check (ok, warn, fail, skip) with the fix; exit status 0 when "
        "all is ok, 1 with a warning, 2 with a failure.",
    )
    config_option(doctor)
    doctor.add_argument(
        "--url",
        metavar="PUBLIC_URL",
        help="the app's public URL (as the identity server reaches it), e.g. "
        "https://app.example.com: checks /k_jwks and the redirect URI there",
    )
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    url = _public_url(args.url) if args.url is not None else None
    config, notes = _load(args.config)
    ring = load_key_ring(config)
    connection = Connection.from_config(config, ring)
    timeout = httpx.Timeout(
        config.socket_timeout_millis / 1000, connect=config.connection_timeout_millis / 1000
    )
    with connection.client(timeout, {"User-Agent": USER_AGENT}) as http:
        deployment = Deployment(args.config, config, ring, connection, http, url, notes=notes)
        results = run_checks(deployment, lambda result: print(result.line(), flush=True))
    worst = max(results, key=lambda result: EXIT_STATUS[result.status]).status
    counts = {status: sum(r.status == status for r in results) for status in EXIT_STATUS}
    print(
        f"doctor: {worst if worst != 'skip' else 'ok'} ({counts['ok']} ok, {counts['warn']} "
        f"warn, {counts['fail']} fail, {counts['skip']} skipped)"
    )
    return EXIT_STATUS[worst]


def run_checks(deployment: Deployment, report: Callable[[Result], None]) -> list[Result]:
    """Every check in order, each reported as soon as it is known."""
    results = [_configuration(deployment), *deployment.notes]
    for result in results:
        report(result)
    for check in CHECKS:
        result = check(deployment)
        report(result)
        results.append(result)
    return results


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise UsageError(f"--url: {url!r} is not the app's URL; e.g. https://app.example.com")
    return url.rstrip("/")


def _load(path: Path) -> tuple[AdapterConfig, list[Result]]:
    """The whole configuration; when only the middleware's settings fail, the rest with a
    failed check naming the setting (the other checks still run)."""
    try:
        return load_config(path), []
    except ConfigError as error:
        failure = error
    try:
        config = load_config(path, web=False)
    except ConfigError:
        raise failure from None
    what = str(failure).removeprefix(f"{path}: ")
    fix = "the middleware will not start until it loads; the other checks need only the client"
    return config, [Result("fail", "middleware", f"its settings do not load: {what}", fix)]


def _configuration(deployment: Deployment) -> Result:
    config = deployment.config
    keys = len(deployment.ring.keys)
    return Result(
        "ok",
        "config",
        f"{deployment.path}: issuer {config.issuer}, client {config.client_id}, "
        f"{config.credentials.method}" + (f", {keys} key(s)" if keys else ""),
    )


# --- the identity server ---------------------------------------------------------------------


def _fetch(url: str) -> flows.Flow[httpx.Response]:
    response = yield flows.Send(httpx.Request("GET", url, headers={"Accept": "application/json"}))
    return response


def _discovery(deployment: Deployment) -> Result:
    config = deployment.config
    url = flows.discovery_url(config.issuer)
    before = _now()
    try:
        response = flows.run(_fetch(url), deployment.http, total_timeout=deployment.total_timeout)
    except ProviderError as error:
        if _is_tls(str(error)):
            deployment.tls_failure = str(error)
            return Result("skip", "discovery", f"{url}: not read, TLS failed (see tls below)")
        return Result("fail", "discovery", str(error), _reach_fix(deployment))
    deployment.response, deployment.asked = response, (before, _now())
    try:
        document = flows.json_object(response, "discovery")
    except ProviderError as error:
        return Result("fail", "discovery", str(error), _issuer_fix(deployment))
    said = document.get("issuer")
    if said != config.issuer:
        shown = bounded_text(said, 120)
        return Result(
            "fail",
            "discovery",
            f"the server says its issuer is {shown!r}, the configuration says {config.issuer!r}",
            f"set issuer = {json.dumps(shown)} in {deployment.path} (character for character)"
            if isinstance(said, str)
            else _issuer_fix(deployment),
        )
    try:
        deployment.metadata = ProviderMetadata.from_document(
            document,
            config.issuer,
            ssl_required=config.ssl_required,
            endpoint_hosts=deployment.connection.endpoint_hosts(config.endpoint_hosts),
        )
    except ProviderError as error:
        what, _, fix = str(error).partition("; ")
        return Result("fail", "discovery", what, fix or "see the server's discovery document")
    return Result("ok", "discovery", f"{url} answers with this issuer")


def _is_tls(message: str) -> bool:
    return "certificate verify failed" in message or "TLS handshake failed" in message


def _reach_fix(deployment: Deployment) -> str:
    return (
        f"check issuer in {deployment.path} and that this machine reaches the server (set "
        "backchannel-url when the app reaches it at another address, proxy behind a proxy)"
    )


def _issuer_fix(deployment: Deployment) -> str:
    return (
        f"set issuer in {deployment.path} to the URL the discovery document lives under "
        "(Keycloak: https://HOST/realms/REALM)"
    )


def _tls(deployment: Deployment) -> Result:
    config, connection = deployment.config, deployment.connection
    if deployment.tls_failure is not None:
        what, _, fix = deployment.tls_failure.partition("; ")
        return Result("fail", "tls", what, fix or _TRUST_FIX)
    target = config.backchannel_url or config.issuer
    if urlsplit(target).scheme != "https":
        return Result("skip", "tls", f"plain http to {urlsplit(target).netloc}: no TLS to check")
    if deployment.response is None:
        return Result("skip", "tls", "the server was not reached (see discovery)")
    trust = dict(connection.describe())["trust"]
    if connection.verify is False or "not checked" in trust:
        return Result(
            "warn",
            "tls",
            f"the server answered, but {trust}",
            f"{_TRUST_FIX}, and remove disable-trust-manager / allow-any-hostname",
        )
    return Result("ok", "tls", f"the server's certificate is trusted ({trust})")


def _clock(deployment: Deployment) -> Result:
    response = deployment.response
    if response is None:
        return Result("skip", "clock", "needs the server's answer (see discovery)")
    fix = "synchronise the clocks (NTP: chrony or systemd-timesyncd) on this machine and the server"
    try:
        server = parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return Result("warn", "clock", "the server sent no readable Date header", fix)
    before, after = deployment.asked
    offset = server + 0.5 - (before + after) / 2  # Date has whole seconds: the mid-second
    beyond = abs(offset) - 0.5 - (after - before) / 2  # what the exchange cannot explain
    limit, what = _clock_limit(deployment.config)
    side = "behind" if offset > 0 else "ahead of"
    message = f"this machine's clock is {abs(offset):.0f} s {side} the server's (its Date header)"
    if beyond > limit:
        return Result("fail", "clock", f"{message}, more than {what} tolerates", fix)
    if beyond > CLOCK_WARN_SECONDS:
        return Result("warn", "clock", f"{message}; {what} tolerates {limit} s", fix)
    return Result("ok", "clock", f"within {max(1, round(abs(offset)))} s of the server's")


def _clock_limit(config: AdapterConfig) -> tuple[int, str]:
    """The smallest difference that breaks something: token checks (clock-skew), and client
    assertions (they live assertion-lifetime seconds)."""
    credentials = config.credentials
    limits = [(config.clock_skew, f"clock-skew = {config.clock_skew}")]
    if credentials.method in ("private_key_jwt", "client_secret_jwt"):
        lifetime = credentials.assertion_lifetime
        limits.append((lifetime, f"assertion-lifetime = {lifetime}"))
    return min(limits)


# What a server answers when it accepted the client's authentication but not the grant (a
# client without service accounts): Keycloak's unauthorized_client "Client not enabled to
# retrieve service account", oidc-provider's invalid_request "requested grant type is not
# allowed for this client". Keycloak also answers unauthorized_client for a refused
# authentication ("Invalid client or Invalid client credentials", "Client authentication with
# signed JWT failed: ..."): the description decides.
_GRANT_REFUSED = (("unauthorized_client", "service account"), ("invalid_request", "grant type"))
_GRANT_ONLY = frozenset({"unsupported_grant_type", "invalid_scope", "invalid_target"})


def _client_auth(deployment: Deployment) -> Result:
    config, metadata = deployment.config, deployment.metadata
    if config.credentials.method == "none":
        return Result("skip", "auth", "no client authentication (a public or bearer-only client)")
    if metadata is None:
        return Result("skip", "auth", "needs the token endpoint (see discovery)")
    label = _authentication(deployment)
    auth = client_auth(config, deployment.ring, metadata.token_endpoint)  # no key retry
    flow = flows.client_credentials(metadata.token_endpoint)
    try:
        flows.run(flow, deployment.http, auth, total_timeout=deployment.total_timeout)
    except TokenError as error:
        return _refusal(deployment, label, error)
    except ProviderError as error:
        return Result("fail", "auth", str(error), "see the server's log for the token endpoint")
    return Result("ok", "auth", f"the server accepted {label} (client_credentials)")


def _authentication(deployment: Deployment) -> str:
    config = deployment.config
    if config.credentials.method != "private_key_jwt":
        return f"the client's {config.credentials.method}"
    key = deployment.ring.active()
    return f"key {key.kid} ({key.alg}, active)"


def _refusal(deployment: Deployment, label: str, error: TokenError) -> Result:
    description = (error.description or "").lower()
    if error.error in _GRANT_ONLY or any(
        error.error == name and words in description for name, words in _GRANT_REFUSED
    ):
        return Result(
            "ok",
            "auth",
            f"the server accepted {label}; it refused only the grant ({error}): fine unless "
            "the app needs its own tokens (Keycloak: Service accounts roles)",
        )
    if error.error not in ("invalid_client", "unauthorized_client"):
        return Result("warn", "auth", f"the server answered {error}", "see the server's log")
    return Result("fail", "auth", f"the server refused {label}: {error}", _auth_fix(deployment))


def _auth_fix(deployment: Deployment) -> str:
    config, path = deployment.config, deployment.path
    method = config.credentials.method
    if method == "client_secret_jwt":
        return (
            "set Credentials > Client Authenticator = Signed JWT with Client Secret and copy the "
            "client secret into secret-env / secret-file"
        )
    if method != "private_key_jwt":
        return (
            "set Credentials > Client Authenticator = Client Id and Secret and copy the client "
            "secret into secret-env / secret-file"
        )
    key = deployment.ring.active()
    where = deployment.jwks_url or "<the app's public URL>" + config.web.jwks_path
    export = shlex.join([PROG, "keys", "export-cert", "--config", str(path), "--kid", key.kid])
    return (
        f"set Credentials > Client Authenticator = Signed JWT ({key.alg}) and Keys > Use JWKS "
        f"URL = {where} (or import the certificate: {export}); if that is set, the server "
        "still caches older keys (Keycloak refetches on an unknown kid at most every 10 s) or "
        "this machine's clock is off"
    )


# --- the app ---------------------------------------------------------------------------------


def _jwks(deployment: Deployment) -> Result:
    url = deployment.jwks_url
    if url is None:
        return Result("skip", "k_jwks", "pass --url PUBLIC_URL to check what the server fetches")
    fix = (
        f"the server fetches the client's keys from {url} (Use JWKS URL): start the app there, "
        "let the reverse proxy pass the path through, or pass the app's public URL as --url"
    )
    try:
        with httpx.Client(timeout=deployment.http.timeout) as http:
            response = http.get(url, headers={"User-Agent": USER_AGENT})
    except httpx.HTTPError as error:
        return Result("fail", "k_jwks", f"{url}: cannot be fetched ({type(error).__name__})", fix)
    if response.status_code != 200:
        return Result("fail", "k_jwks", f"{url} answered HTTP {response.status_code}", fix)
    deployment.served = response.content
    expected = deployment.ring.jwks_bytes
    if response.content != expected:
        served = ", ".join(_kids(response.content)) or "none"
        return Result(
            "fail",
            "k_jwks",
            f"{url} serves other keys (kids: {bounded_text(served, 300)}) than "
            f"{deployment.path} ({', '.join(k.kid for k in deployment.ring.keys)})",
            "the app there runs another configuration: deploy and reload this one on every "
            "replica, or point --url at this app",
        )
    return Result("ok", "k_jwks", f"{url} serves exactly the configured key set")


def _kids(document: bytes) -> list[str]:
    try:
        keys = json.loads(document).get("keys", [])
        return [str(key.get("kid")) for key in keys if isinstance(key, dict)]
    except (ValueError, AttributeError, RecursionError):
        return []


def _next_keys(deployment: Deployment) -> Result:
    now = datetime.now(UTC)
    ring = deployment.ring
    staged = [key for key in ring.keys if ring.state_at(key, now) is KeyState.NEXT]
    if not staged:
        return Result("ok", "next keys", "none staged")
    if deployment.served is None:
        return Result("skip", "next keys", f"{len(staged)} staged; needs /k_jwks (see k_jwks)")
    published = set(_kids(deployment.served))
    missing = [key for key in staged if key.kid not in published]
    names = ", ".join(
        key.kid + (f" (activates {timestamp(key.activate_at)})" if key.activate_at else "")
        for key in missing or staged
    )
    if missing:
        return Result(
            "fail",
            "next keys",
            f"not published at {deployment.jwks_url}: {names}",
            "every replica must publish a key before any signs with it: deploy this "
            "configuration everywhere, longer before activate-at than the server's JWKS cache",
        )
    return Result("ok", "next keys", f"published: {names}")


def _redirect(deployment: Deployment) -> Result:
    url, config = deployment.url, deployment.config
    if url is None:
        return Result("skip", "redirect", "pass --url PUBLIC_URL to compare the redirect URI")
    wanted = url + config.web.callback_path
    configured = config.web.redirect_uri
    if configured is None:
        return Result(
            "skip",
            "redirect",
            "redirect-uri is not set: the app takes scheme and host from each request",
            f'behind a reverse proxy, set redirect-uri = "{wanted}"',
        )
    if _origin(configured) != _origin(url):
        return Result(
            "fail",
            "redirect",
            f"redirect-uri {configured} is not on {_origin_text(url)}",
            f'set redirect-uri = "{wanted}" (and the client\'s Valid redirect URIs), or pass '
            "the app's public URL as --url",
        )
    return Result("ok", "redirect", f"redirect-uri {configured} is on {_origin_text(url)}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _origin_text(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _redis(deployment: Deployment) -> Result:
    config = deployment.config
    if config.web.redis_url is None:
        return Result("skip", "redis", f"no redis-url (session-store = {config.web.session_store})")
    from adapter.stores.redis import _where, connect

    url = config.web.redis_url.reveal()
    where = _where(url)
    truststore = deployment.connection.truststore
    options: dict[str, Any] = {"socket_timeout": 3.0, "socket_connect_timeout": 3.0}
    try:
        client = connect(url, options, truststore.pem() if truststore else None)
        try:
            client.ping()
        finally:
            client.close()
    except AdapterError as error:
        return Result("fail", "redis", str(error), "install the extra, or remove redis-url")
    except Exception as error:  # redis-py's errors, OSError: named by type only (no URL)
        return Result(
            "fail",
            "redis",
            f"Redis at {where} does not answer ({type(error).__name__})",
            "start it, or fix redis-url (host, port, password, TLS)",
        )
    return Result("ok", "redis", f"Redis at {where} answers")


CHECKS: tuple[Callable[[Deployment], Result], ...] = (
    _discovery,
    _tls,
    _clock,
    _client_auth,
    _jwks,
    _next_keys,
    _redirect,
    _redis,
)
