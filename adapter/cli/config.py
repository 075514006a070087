"""``config check`` and ``config convert``: the whole configuration loaded and described
offline (the middleware's settings included), and a keycloak.json written as the native TOML
configuration that rotation needs."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from adapter.cli.common import (
    CONFIG_HELP,
    Subparsers,
    UsageError,
    command_line,
    config_option,
    load,
    print_note,
    timestamp,
)
from adapter.config._fields import ENV_NAME
from adapter.config.access_rules import public_overlaps
from adapter.config.model import KEYCLOAK_NO_EFFECT_FIELDS, AdapterConfig
from adapter.config.profile import what_it_enforces
from adapter.config.tenants import TenantConfig, is_tenants_file, load_tenants
from adapter.errors import ConfigError
from adapter.keys.generate import missing_directory, write_private_file
from adapter.keys.loader import load_key_ring


def add_check(parent: Subparsers) -> None:
    check = parent.add_parser("check", help="load and validate everything, offline")
    check.add_argument("file", nargs="?", type=Path, metavar="CONFIG", help=CONFIG_HELP)
    config_option(check, required=False)
    check.set_defaults(handler=_config_check)


def _config_check(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if args.tenant is None and is_tenants_file(path):
        tenants = load_tenants(path)  # every tenant, as a start would
        for tenant in tenants.tenants:
            print(f"tenant:        {tenant.name} ({_found_by(tenant)})")
            _describe(tenant.config, tenant.config.source or path)
            print(f"jwks url:      {_jwks_url(tenant)}  (this realm's client: Use JWKS URL)")
            print()
        print(f"ok: {len(tenants.tenants)} tenants")
        return 0
    _describe(_load_for_the_middleware(path), path)
    print("ok")
    return 0


def _found_by(tenant: TenantConfig) -> str:
    if tenant.host is not None:
        return f"host {tenant.host}"
    if tenant.path_prefix is not None:
        return f"path-prefix {tenant.path_prefix}"
    return "named by the app's tenant_resolver"


def _jwks_url(tenant: TenantConfig) -> str:
    """Where this tenant's ``/k_jwks`` is, as its realm must be told."""
    jwks = tenant.config.web.jwks_path
    redirect = tenant.config.web.redirect_uri
    if redirect:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect))
    elif tenant.host is not None:
        origin = f"https://{tenant.host}"
    else:
        origin = "https://<your app's host>"
    return f"{origin}{tenant.path_prefix or ''}{jwks}"


def _describe(config: AdapterConfig, path: Path) -> None:
    """What ``config check`` says about one configuration (one tenant's, in a tenants file)."""
    from adapter.protocol._connection import Connection

    ring = load_key_ring(config)
    connection = Connection.from_config(config, ring)  # opens what a start would open
    print(f"configuration: {path}")
    print(f"issuer:        {config.issuer}")
    print(f"client:        {config.client_id}")
    print(f"method:        {_method(config)}")
    now = datetime.now(UTC)
    for key in ring.keys:
        state = ring.state_at(key, now).value
        when = f", activates {timestamp(key.activate_at)}" if key.activate_at else ""
        print(f"key:           {state:<8}{key.alg:<7}kid={key.kid}  {key.source}{when}")
    for enc in ring.encryption_keys:  # decrypt what the server encrypts (ID tokens)
        state = ring.state_at(enc, now).value
        when = f", activates {timestamp(enc.activate_at)}" if enc.activate_at else ""
        shown = "" if enc.published else ", not published"
        print(f"enc key:       {state:<8}{enc.alg:<7} kid={enc.kid}  {enc.source}{when}{shown}")
    if config.credentials.revoked_kids:
        revoked = ", ".join(sorted(config.credentials.revoked_kids))
        print(f"revoked:       {revoked} (never loaded, signed with or published again)")
    for label, value in connection.describe():
        print(f"{label + ':':<15}{value}")
    for rule_text in what_it_enforces(config.profile):
        print(f"profile:       {config.profile}: {rule_text}")
    for rule, public in public_overlaps(config.web.access_rules, config.web.public_paths):
        print(
            f"access:        [[access]] {rule.describe()} lies in public path {public}: "
            "the rule wins there (no anonymous access; sign-in and the rule are required)"
        )
    if config.policy_enforcer is not None:
        print(f"enforcer:      {config.policy_enforcer.summary()}")
    if config.unused_fields:
        print(f"not used:      {', '.join(config.unused_fields)}")
    for name in config.no_effect_fields:
        print(f"no effect:     {name} ({KEYCLOAK_NO_EFFECT_FIELDS[name]})")
    web = ", ".join(config.web_fields) or "none set here (all defaults)"
    print("commands:      keys, jwks, assertion and token need all of the above but no web setting")
    print(f"middleware:    also its web settings: {web}")


def _config_path(args: argparse.Namespace) -> Path:
    if (args.file is None) == (args.config is None):
        raise UsageError("give the configuration as CONFIG or as --config CONFIG (one of them)")
    path: Path = args.file or args.config
    return path


def _load_for_the_middleware(path: Path) -> AdapterConfig:
    """Everything, the middleware's settings included; an error in those says that only the
    middleware needs them (the key and token commands would work)."""
    try:
        return load(path, web=True)
    except ConfigError as error:
        failure = error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already shown by the first load
        try:
            load(path)
        except ConfigError:
            raise failure from None
    raise ConfigError(
        f"{failure} (a middleware setting: keys, jwks, assertion and token work without it)"
    )


def _method(config: AdapterConfig) -> str:
    credentials = config.credentials
    if credentials.method not in ("private_key_jwt", "client_secret_jwt"):
        return credentials.method
    backdate = credentials.assertion_backdate
    return (
        f"{credentials.method} (assertion lifetime {credentials.assertion_lifetime} s, "
        f"audience {credentials.assertion_audience}"
        + (f", backdated {backdate} s" if backdate else "")
        + ")"
    )


def add_convert(parent: Subparsers) -> None:
    convert = parent.add_parser(
        "convert", help="write a keycloak.json as the native TOML configuration (for rotation)"
    )
    convert.add_argument(
        "--config", required=True, type=Path, metavar="KEYCLOAK_JSON", help="the keycloak.json"
    )
    convert.add_argument(
        "--out",
        type=Path,
        metavar="TOML",
        help="the new file, e.g. adapter.toml (never overwritten; default: print to stdout)",
    )
    convert.set_defaults(handler=_config_convert)


def _config_convert(args: argparse.Namespace) -> int:
    from adapter.config._convert import convert_keycloak_json

    out: Path | None = args.out
    if out is not None and out.exists():
        raise UsageError(f"{out}: already exists; choose another --out or remove it")
    if out is not None and not out.parent.is_dir():
        raise UsageError(missing_directory(out))
    conversion = convert_keycloak_json(args.config, out)
    shown = str(out) if out is not None else "the new file"
    notes = [f"environment: {v.describe(args.config, shown)}" for v in conversion.variables]
    if conversion.left_out:
        notes.append(f"left out: {', '.join(conversion.left_out)}")
    say: Callable[[str], None] = print
    if out is None:
        sys.stdout.write(conversion.text)
        say = print_note
    else:
        write_private_file(out, conversion.text.encode("utf-8"))
        config = conversion.config
        print(f"wrote {out}: issuer {config.issuer}, client {config.client_id}, {_method(config)}")
    for note in notes:
        say(note)
    if out is not None:
        say(f"next: {command_line('config', 'check', out)}")
        rotate = _rotate_command(conversion.config, out)
        if rotate is not None:
            say(f"then, to stage a new key (a dry run until --write): {rotate}")
    return 0


def _rotate_command(config: AdapterConfig, out: Path) -> str | None:
    """The ``keys rotate`` command for the converted file, as it runs: a new alias of the
    client and the day, and the variable the converted key's password comes from."""
    credentials = config.credentials
    if credentials.method != "private_key_jwt" or not credentials.keys:
        return None
    alias = f"{config.client_id}-{datetime.now(UTC):%Y-%m-%d}"
    arguments: list[str | Path] = ["keys", "rotate", "--config", out, "--alias", alias]
    password = credentials.keys[0].password
    variable = password.source.removeprefix("env ") if password is not None else ""
    if ENV_NAME.fullmatch(variable):
        arguments += ["--store-password-env", variable]
    return command_line(*arguments)
