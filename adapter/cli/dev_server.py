"""``dev-server``: a local OpenID provider for trying one's own app, without Keycloak or Node.js.

It serves the issuer the configuration names (``<auth-server-url>/realms/<realm>`` for a
keycloak.json, the ``issuer`` otherwise) on that URL's host and port, which must be loopback:
anything else is refused, so it cannot be mistaken for an identity server. It registers the
configured client with its credentials (the secret, or the app's ``/k_jwks`` for
``private_key_jwt``) and signs in test users from a form: alice (user, admin), bob (user) and
each ``--user``. The server itself is :mod:`adapter.testing._dev_issuer`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from adapter.cli.common import Subparsers, UsageError, config_option, print_note
from adapter.config import AdapterConfig, load_config

if TYPE_CHECKING:
    from adapter.testing._dev_issuer import DevIssuer

DEFAULT_APP_URL = "http://127.0.0.1:8000"
_USER = re.compile(r"(?P<name>[A-Za-z0-9._@-]{1,64})(?::(?P<roles>[^\s:]*))?")
_ROLE = re.compile(r"[A-Za-z0-9._:@/-]{1,64}")


def add_dev_server(parent: Subparsers) -> None:
    server = parent.add_parser(
        "dev-server",
        help="a local OpenID provider for trying the app (development only, loopback only)",
        description=(
            "Serve the issuer the configuration names on its loopback host and port, with the "
            "configured client and test users who sign in without a password. Not for "
            "production: it refuses any address but 127.0.0.1, ::1 and localhost."
        ),
    )
    config_option(server)
    server.add_argument(
        "--port", metavar="N", help="listen on this port (default: the configuration's)"
    )
    server.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:ROLE,ROLE",
        help="another user to sign in as (repeatable); alice (user, admin) and bob (user) "
        "are always offered",
    )
    server.add_argument(
        "--app-url",
        metavar="URL",
        help="where the app runs, to fetch its /k_jwks for private_key_jwt (default: the "
        f"origin of redirect-uri if configured, else {DEFAULT_APP_URL})",
    )
    server.add_argument(
        "--token-lifetime", metavar="SECONDS", default="300", help="token lifetime (default 300)"
    )
    server.set_defaults(handler=_dev_server)


def _dev_server(args: argparse.Namespace) -> int:
    from adapter.testing._dev_http import DevHTTPServer
    from adapter.testing._dev_issuer import DEFAULT_USERS, DevIssuer

    config = load_config(args.config)
    host, port, issuer = listen_address(config, args.port)
    users = {**DEFAULT_USERS, **parse_users(args.user)}
    app_url = args.app_url or default_app_url(config)
    _check_app_url(app_url)
    lifetime = _positive("--token-lifetime", args.token_lifetime, 86400)
    dev = DevIssuer(config, issuer, users, app_url, token_lifetime=lifetime, say=print_note)
    try:
        server = DevHTTPServer(host, port, dev.handle)
    except OSError as exc:
        dev.close()
        field = "--port" if args.port else _issuer_field(config)
        raise UsageError(_bind_problem(field, host, port, exc)) from None
    _banner(dev, config.source)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print_note("dev-server stopped")
    finally:
        server.server_close()
        dev.close()
    return 0


def listen_address(config: AdapterConfig, port_option: str | None) -> tuple[str, int, str]:
    """Where to listen and the issuer to serve: the configuration's, refused unless it is
    plain http on a loopback host; ``--port`` replaces its port."""
    from adapter.config._readers import is_loopback

    field = _issuer_field(config)
    parts = urlsplit(config.issuer)
    host = parts.hostname or ""
    if not is_loopback(host):
        raise UsageError(
            f"{field}: the dev server listens only on loopback (127.0.0.1, ::1, localhost), not "
            f"{host or 'an empty host'!r}; point {field} at http://127.0.0.1:PORT/ in a copy of "
            "the configuration for development"
        )
    if parts.scheme != "http":
        raise UsageError(
            f"{field}: the dev server speaks plain http on loopback; use http://{parts.netloc}/"
        )
    bind = "127.0.0.1" if host.lower() == "localhost" else host
    if not port_option:
        return bind, parts.port or 80, config.issuer.rstrip("/")
    port = _positive("--port", port_option, 65535)
    shown = f"[{host}]" if ":" in host else host
    issuer = urlunsplit(("http", f"{shown}:{port}", parts.path.rstrip("/"), "", ""))
    return bind, port, issuer


def parse_users(values: list[str]) -> dict[str, tuple[str, ...]]:
    """``NAME:role,role`` (or ``NAME`` alone, no roles) per ``--user``."""
    users: dict[str, tuple[str, ...]] = {}
    for value in values:
        match = _USER.fullmatch(value)
        roles = tuple(r for r in (match.group("roles") or "").split(",") if r) if match else ()
        if match is None or not all(_ROLE.fullmatch(role) for role in roles):
            raise UsageError(
                f"--user: {value[:80]!r} is not NAME:ROLE,ROLE (letters, digits, . _ @ -); "
                "for example --user carol:user,editor"
            )
        users[match.group("name")] = roles
    return users


def default_app_url(config: AdapterConfig) -> str:
    """The app's URL: the configured redirect URI without its callback path, else the default."""
    redirect_uri = config.web.redirect_uri
    if not redirect_uri:
        return DEFAULT_APP_URL
    callback = config.web.callback_path
    if redirect_uri.endswith(callback):
        return redirect_uri[: -len(callback)]
    parts = urlsplit(redirect_uri)
    return f"{parts.scheme}://{parts.netloc}"


def _check_app_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UsageError(f"--app-url: {url[:80]!r} is not an http(s) URL; e.g. {DEFAULT_APP_URL}")


def _positive(option: str, value: str, largest: int) -> int:
    if not value.isdigit() or not 0 < int(value) <= largest:
        raise UsageError(f"{option}: give a whole number from 1 to {largest}, not {value[:20]!r}")
    return int(value)


def _issuer_field(config: AdapterConfig) -> str:
    return "auth-server-url" if config.auth_server_url else "issuer"


def _bind_problem(field: str, host: str, port: int, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return (
        f"{field}: cannot listen on {host} port {port} ({reason}); stop what uses that port, "
        "or pass --port with a free one and name the same port in the app's configuration"
    )


def _banner(dev: DevIssuer, source: Path | None) -> None:
    from adapter.testing._dev_pages import BANNER

    root = urlsplit(dev.issuer)
    print_note(BANNER.upper())
    print_note(f"issuer {dev.issuer} (from {source or 'the configuration'})")
    print_note(f"client {dev.client.client_id!r} ({dev.client.method})")
    if dev.client.method == "private_key_jwt":
        print_note(f"the client's keys are fetched from {dev.jwks_url} (--app-url to change)")
    for name, roles in dev.users.items():
        print_note(f"user {name}: {', '.join(roles) or 'no roles'}")
    index = f"{root.scheme}://{root.netloc}/"
    print_note(f"sign in through the app; {index} describes this server; Ctrl-C stops it")
