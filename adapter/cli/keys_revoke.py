"""``keys revoke``: take a compromised key out at once: remove it from the configuration, list
its kid as revoked, and optionally make the identity server forget it (Keycloak's clear keys
cache, after the apps stop publishing the kid)."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapter.cli.common import (
    Subparsers,
    UsageError,
    command_line,
    config_option,
    load,
    warn,
)
from adapter.config._fields import ENV_NAME
from adapter.config._held_file import HeldFile
from adapter.config.model import AdapterConfig
from adapter.errors import TokenError
from adapter.keys.loader import load_key_ring


def add_revoke(parent: Subparsers) -> None:
    revoke = parent.add_parser(
        "revoke",
        help="take a compromised key out at once: remove it, list its kid as revoked, and "
        "optionally make the identity server forget it",
    )
    config_option(revoke)
    revoke.add_argument(
        "--kid",
        required=True,
        help="the kid of the key to revoke (write --kid=KID when it starts with '-')",
    )
    revoke.add_argument(
        "--write", action="store_true", help="edit the configuration (TOML) instead of printing"
    )
    revoke.add_argument(
        "--clear-server-cache",
        action="store_true",
        help="then ask the identity server to drop its cached copy of the client's keys "
        "(Keycloak's admin API; other servers: what to do by hand)",
    )
    revoke.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="with --clear-server-cache: the environment variable holding an admin's access "
        "token (default: the client's own service-account token)",
    )
    revoke.add_argument(
        "--jwks-url",
        metavar="URL",
        help="with --clear-server-cache: the app's published JWKS (https://app/k_jwks); wait "
        "until the revoked kid is gone from it before clearing the server's cache",
    )
    revoke.add_argument(
        "--wait",
        type=int,
        default=60,
        metavar="SECONDS",
        help="how long to wait for --jwks-url to drop the kid (default: %(default)s)",
    )
    revoke.set_defaults(handler=_keys_revoke)


def _keys_revoke(args: argparse.Namespace) -> int:
    path: Path = args.config
    _check_revoke_options(args)
    config = load(path)
    if config.credentials.keycloak_json:
        converted = path.with_name("adapter.toml")
        raise UsageError(
            f"--config: {path} is a keycloak.json, which holds a single key: nothing could sign "
            "after it; convert it first ("
            + command_line("config", "convert", "--config", path, "--out", converted)
            + "), stage a new key, then revoke"
        )
    if args.kid in config.credentials.revoked_kids and not any(
        key.kid == args.kid for key in load_key_ring(config).keys
    ):
        print(f"kid {args.kid} is already revoked in {path}")
    else:
        if args.clear_server_cache and not args.write:
            raise UsageError(
                "--clear-server-cache: needs --write: the server must forget the key after "
                "the apps stop publishing it, not before"
            )
        revoked = _revoke(args, path, config)
        if revoked is None:  # nothing written
            return 0
        config = revoked  # what signs from now on: never the revoked key
    if args.clear_server_cache:
        return _clear_server_cache(args, config)
    print(
        f"next: make the identity server forget kid {args.kid} once every app has reloaded: "
        + command_line(
            "keys", "revoke", "--config", path, f"--kid={args.kid}", "--clear-server-cache"
        )
        + " (with --jwks-url https://APP/k_jwks it waits for the apps), "
        "or in Keycloak's admin console Realm settings, Clear keys cache (the Action menu; "
        "the Cache tab in older consoles); see docs/compromised-key.md"
    )
    return 0


def _revoke(args: argparse.Namespace, path: Path, config: AdapterConfig) -> AdapterConfig | None:
    """Print the revocation and, with ``--write``, make it; the configuration as written (the
    revoked key gone), or ``None`` when nothing was written."""
    from adapter.keys.revoke import keystore_users, plan_revocation, revoked_text, shown_change

    plan = plan_revocation(config, args.kid)
    print("\n".join(plan.summary()))
    if path.suffix.lower() != ".toml":
        message = f"{path} is not TOML, which is the only format edited: {plan.by_hand()}"
        if args.write:
            raise UsageError(f"--write: {message}")
        print(f"# {message}")
        return None
    with HeldFile(path) as held:  # the write replaces exactly the file read here
        text = revoked_text(path, held.text, plan)
        if not args.write:
            print("\n# the change (nothing written; --write makes it):")
            print(shown_change(held.text, text, path), end="")
            return None
        held.replace(text)
    print(f"# written to {path}; every app that reloads it stops publishing {plan.kid}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown by the first load already
        written = load(path)
    users = keystore_users(written, plan.keystore)
    if users:
        print(
            f"the compromised key is still in {plan.keystore}, which {', '.join(users)} still "
            "use(s): move those keys to a new keystore, then destroy every copy of this file"
        )
    else:
        print(
            f"the compromised key is still on disk in {plan.keystore}: destroy it (and every "
            "copy: backups, other hosts); no configured key needs that file"
        )
    return written


def _check_revoke_options(args: argparse.Namespace) -> None:
    """Refuse what cannot work before anything is changed."""
    if args.admin_token_env is not None and not ENV_NAME.fullmatch(args.admin_token_env):
        raise UsageError(
            "--admin-token-env: give the NAME of an environment variable holding the token "
            "(never the token itself: it would stay in the shell's history)"
        )
    if args.jwks_url is not None:
        parts = urlsplit(args.jwks_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                "--jwks-url: give the app's JWKS URL, e.g. https://app.example.com/k_jwks"
            )


def _clear_server_cache(args: argparse.Namespace, config: AdapterConfig) -> int:
    from adapter.protocol import flows
    from adapter.protocol.client import OIDCClient
    from adapter.protocol.keycloak_admin import clear_keys_cache, clear_keys_cache_url

    url = clear_keys_cache_url(config.issuer)
    if url is None:
        raise UsageError(
            f"--clear-server-cache: {config.issuer} is not a Keycloak realm (.../realms/NAME), "
            "and other servers have no standard call for it: clear the server's cache of this "
            "client's keys by hand (oidc-provider keeps them until a signature fails at least "
            "60 s after its last fetch, so a stolen key stays valid there until a restart)"
        )
    with OIDCClient(config) as client:
        if args.jwks_url:
            _wait_until_unpublished(client.http, args)
        else:
            warn(
                f"clearing now: every app must already have reloaded (kid {args.kid} gone from "
                "its /k_jwks), or the server fetches it again; --jwks-url waits for that"
            )
        token = _admin_token(args, client)
        status = flows.run(
            clear_keys_cache(url, token, config.client_id),
            client.http,
            total_timeout=client.total_timeout,
        )
    print(f"the identity server dropped its cached client keys (POST {url}: {status})")
    return 0


def _admin_token(args: argparse.Namespace, client: Any) -> str:
    if args.admin_token_env:
        token = os.environ.get(args.admin_token_env, "").strip()
        if not token:
            raise UsageError(f"--admin-token-env: the variable {args.admin_token_env} is not set")
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise UsageError(
                f"--admin-token-env: {args.admin_token_env} does not hold an access token (it "
                "has characters a bearer token cannot have)"
            )
        return token
    try:
        access_token: str = client.client_credentials().access_token
    except TokenError as exc:
        raise UsageError(
            f"--clear-server-cache: the client's service-account token was refused ({exc}): "
            "enable the client's service account and give it realm-management manage-realm, "
            "or pass --admin-token-env"
        ) from None
    return access_token


def _retry_command(args: argparse.Namespace) -> str:
    """This run's ``--clear-server-cache`` again, for once the apps have reloaded (the
    revocation itself is written already)."""
    arguments = ["keys", "revoke", "--config", str(args.config), f"--kid={args.kid}"]
    arguments += ["--clear-server-cache", "--jwks-url", args.jwks_url, "--wait", str(args.wait)]
    if args.admin_token_env:
        arguments += ["--admin-token-env", args.admin_token_env]
    return command_line(*arguments)


def _wait_until_unpublished(http: Any, args: argparse.Namespace) -> None:
    """Poll the app's JWKS until ``kid`` is gone (the apps reload on their own schedule),
    through the client's own connection (its CA set and proxy)."""
    import time

    import httpx

    url, kid, wait, retry = args.jwks_url, args.kid, args.wait, _retry_command(args)

    deadline = time.monotonic() + max(wait, 0)
    problem = ""
    while True:
        try:
            published = {key.get("kid") for key in http.get(url).json()["keys"]}
            if kid not in published:
                return
            problem = f"still publishes kid {kid}"
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError) as error:
            problem = f"did not answer with a JWKS ({type(error).__name__})"
        except AttributeError:
            problem = "did not answer with a JWKS"
        if time.monotonic() >= deadline:
            raise UsageError(
                f"--jwks-url: {url} {problem} after {wait} s; reload the app (SIGHUP, or its "
                f"file watch), then run {retry}"
            )
        time.sleep(0.5)


def add_clear_cache(parent: Subparsers) -> None:
    clear = parent.add_parser(
        "clear-server-cache",
        help="ask the identity server to drop its cached copy of the client's keys (after an "
        "encryption key's switch: Keycloak refetches them only for an unknown alg)",
    )
    config_option(clear)
    clear.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="the environment variable holding an admin's access token (default: the "
        "client's own service-account token)",
    )
    clear.set_defaults(handler=_keys_clear_cache)


def _keys_clear_cache(args: argparse.Namespace) -> int:
    from adapter.protocol import flows
    from adapter.protocol.client import OIDCClient
    from adapter.protocol.keycloak_admin import clear_keys_cache, clear_keys_cache_url

    if args.admin_token_env is not None and not ENV_NAME.fullmatch(args.admin_token_env):
        raise UsageError(
            "--admin-token-env: give the NAME of an environment variable holding the token "
            "(never the token itself: it would stay in the shell's history)"
        )
    config = load(args.config)
    url = clear_keys_cache_url(config.issuer)
    if url is None:
        raise UsageError(
            f"--config: {config.issuer} is not a Keycloak realm (.../realms/NAME), and other "
            "servers have no standard call for it: clear the server's cache of this client's "
            "keys by hand, or restart it"
        )
    with OIDCClient(config) as client:
        token = _admin_token(args, client)
        status = flows.run(
            clear_keys_cache(url, token, config.client_id),
            client.http,
            total_timeout=client.total_timeout,
        )
    print(f"the identity server dropped its cached client keys (POST {url}: {status})")
    return 0
