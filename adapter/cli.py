"""The ``oidc-adapter`` command: create and inspect client keys, check and convert configuration.

Exit status 0 on success and 2 on any user error, which is reported as one line on stderr
naming the file, field or flag and the fix. Passwords come from environment variables named on
the command line, or from a prompt on a terminal; they are never accepted as arguments (they
would land in shell history and ``ps``) and never printed.

Each command's options are declared beside its handler (``_add_<command>``), as pip declares
``add_options`` beside ``run``; the key commands read the namespace once, into a
:class:`NewKeyRequest`. The key and token commands load the configuration without the
middleware's own settings: they work where only the client's credentials are at hand.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
import tomllib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter.config._convert import toml_string
from adapter.config._fields import ENV_NAME
from adapter.config._held_file import HeldFile
from adapter.config.access_rules import public_overlaps
from adapter.config.model import (
    KEYCLOAK_NO_EFFECT_FIELDS,
    AdapterConfig,
    KeyConfig,
    load_config,
)
from adapter.errors import AdapterError, ConfigError, TokenError
from adapter.jose import ASYMMETRIC_ALGORITHMS, default_algorithm, key_type_name
from adapter.keys._entry import KeyEntry, PasswordNeeded
from adapter.keys.generate import (
    FORMATS,
    common_name,
    generate_private_key,
    missing_directory,
    parse_subject,
    self_signed_certificate,
    write_keystore,
    write_private_file,
)
from adapter.keys.keyring import KeyRing, SigningKey, certificate_thumbprint, default_kid
from adapter.keys.keystore import keystore_type, read_keystore, select_entry
from adapter.keys.loader import load_key_ring

PROG = "oidc-adapter"
Subparsers = Any  # argparse's _SubParsersAction, which it does not export
CONFIG_HELP = "the adapter configuration: a native TOML/JSON file, or keycloak.json as exported"


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (exit 2, one line)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _print_warning
    _log_warnings_as_the_command()
    try:
        result: int = args.handler(args)
        return result
    except (AdapterError, UsageError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    except Exception as exc:  # a bug: report it without a traceback that may hold secrets
        print(f"{PROG}: internal error ({type(exc).__name__}); please report it", file=sys.stderr)
        return 1


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _log_warnings_as_the_command() -> None:
    """The library's warnings (a keystore others can read ...) as the command's own lines."""
    logger = logging.getLogger("adapter")
    if not any(isinstance(h, _CommandLogHandler) for h in logger.handlers):
        logger.addHandler(_CommandLogHandler(logging.WARNING))
        logger.propagate = False


class _CommandLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        print(f"{PROG}: {level}: {record.getMessage()}", file=sys.stderr)


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _warn(str(message))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oidc-adapter")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Client keys and configuration for oidc-adapter."
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys = commands.add_parser("keys", help="create and inspect client keys")
    verbs = keys.add_subparsers(dest="keys_command", required=True, metavar="VERB")
    for add in (_add_generate, _add_rotate, _add_revoke, _add_show, _add_export_cert):
        add(verbs)
    for add in (_add_jwks, _add_token, _add_assertion):
        add(commands)
    config = commands.add_parser("config", help="check or convert a configuration")
    verbs = config.add_subparsers(dest="config_command", required=True, metavar="VERB")
    for add in (_add_check, _add_convert):
        add(verbs)
    return parser


def _config_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config", required=required, type=Path, metavar="CONFIG", help=CONFIG_HELP
    )


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store-password-env",
        metavar="NAME",
        help="environment variable with the keystore password (default: prompt on a terminal)",
    )
    parser.add_argument(
        "--key-password-env",
        metavar="NAME",
        help="environment variable with the key password (default: the store password)",
    )


def _load(path: Path) -> AdapterConfig:
    """The configuration without the middleware's settings: all a key or token command uses."""
    return load_config(path, web=False)


def _ring_from_config(path: Path) -> tuple[AdapterConfig, KeyRing]:
    config = _load(path)
    return config, load_key_ring(config)


# --- passwords -------------------------------------------------------------------------------


def _env_password(option: str, name: str | None) -> str | None:
    if name is None:
        return None
    if not ENV_NAME.fullmatch(name):  # perhaps the password itself: never echo it
        raise UsageError(f"{option}: give the NAME of an environment variable, not its value")
    if name not in os.environ:
        raise UsageError(f"{option}: environment variable {name} is not set; export it first")
    return os.environ[name]


def _prompt(label: str, confirm: bool = False) -> str | None:
    if not sys.stdin.isatty():
        return None
    value = getpass.getpass(f"{label}: ")
    if confirm and getpass.getpass(f"{label} (again): ") != value:
        raise UsageError("the passwords do not match; run the command again")
    return value


# --- keys generate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewKeyRequest:
    """What ``keys generate`` and ``keys rotate`` are asked to make, read once from the
    command line."""

    alias: str
    alg: str
    days: int
    format: str | None = None
    key_size: int | None = None
    subject: str | None = None
    store_password_env: str | None = None
    key_password_env: str | None = None
    no_password: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NewKeyRequest:
        return cls(
            alias=args.alias,
            alg=args.alg,
            days=args.days,
            format=args.format,
            key_size=args.key_size,
            subject=args.subject,
            store_password_env=args.store_password_env,
            key_password_env=args.key_password_env,
            no_password=args.no_password,
        )


def _new_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help=f"keystore format: {', '.join(FORMATS)} (default: from the file's extension)",
    )
    parser.add_argument(
        "--alg",
        choices=ASYMMETRIC_ALGORITHMS,
        default="RS256",
        metavar="ALG",
        help=f"signing algorithm: {', '.join(ASYMMETRIC_ALGORITHMS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--key-size", type=int, metavar="BITS", help="RSA modulus size (default: 2048)"
    )
    parser.add_argument(
        "--days", type=int, default=365, help="certificate validity in days (default: %(default)s)"
    )
    parser.add_argument(
        "--subject",
        metavar="DN",
        help="certificate subject, e.g. CN=my-app,O=Example (default: CN=ALIAS)",
    )
    _password_options(parser)
    parser.add_argument(
        "--no-password", action="store_true", help="PEM only: write the key unencrypted"
    )


def _add_generate(parent: Subparsers) -> None:
    generate = parent.add_parser(
        "generate", help="a new key and self-signed certificate in a keystore"
    )
    generate.add_argument("--alias", required=True, help="name of the key in the keystore")
    generate.add_argument(
        "--out", required=True, type=Path, help="keystore file to create (its directory must exist)"
    )
    _new_key_options(generate)
    generate.set_defaults(handler=_keys_generate)


def _keys_generate(args: argparse.Namespace) -> int:
    _new_key(NewKeyRequest.from_args(args), args.out)
    return 0


def _new_key(request: NewKeyRequest, out: Path) -> tuple[str, str]:
    """Create the key ``request`` describes at ``out``; print it; return (alias, kid)."""
    format = request.format or _format_from_extension(out)
    if not out.parent.is_dir():  # before any password prompt
        raise UsageError(missing_directory(out))
    store_password = _env_password("--store-password-env", request.store_password_env)
    key_password = _env_password("--key-password-env", request.key_password_env)
    if request.no_password:
        if format != "pem" or store_password is not None or key_password is not None:
            raise UsageError("--no-password: only for --format pem, without password options")
    elif store_password is None:
        label = "Key password (empty: unencrypted)" if format == "pem" else "Keystore password"
        store_password = _prompt(label, confirm=True)
        if store_password is None:
            raise UsageError(
                "--store-password-env: needed (no terminal to prompt on); name an "
                "environment variable that holds the password"
                + (", or pass --no-password for an unencrypted PEM" if format == "pem" else "")
            )
    if out.exists():
        raise UsageError(f"{out}: already exists; choose another --out or remove it")
    if not request.alias.strip():
        raise UsageError("--alias: must not be empty")
    key = generate_private_key(request.alg, request.key_size)
    subject = parse_subject(request.subject) if request.subject else common_name(request.alias)
    certificate = self_signed_certificate(key, subject, request.days, request.alg)
    write_keystore(out, format, request.alias, key, certificate, store_password, key_password)
    kid = default_kid(key.public_key())
    stored_alias = request.alias.lower() if format == "jks" else request.alias  # JKS folds case
    print(f"alias:       {stored_alias}")
    print(f"kid:         {kid}")
    print(f"algorithm:   {request.alg} ({key_type_name(key)})")
    print(f"subject:     {certificate.subject.rfc4514_string()}")
    print(f"sha256:      {_fingerprint(certificate, hashes.SHA256())}")
    print(f"keystore:    {out} ({format.upper()})")
    return stored_alias, kid


def _format_from_extension(path: Path) -> str:
    kind = keystore_type(path)  # raises when the extension says nothing
    if kind == "JWK":
        raise UsageError(f"--format: {path.suffix} files are not written; use pkcs12, jks or pem")
    return kind.lower()


# --- keys rotate -----------------------------------------------------------------------------


def _add_rotate(parent: Subparsers) -> None:
    rotate = parent.add_parser(
        "rotate", help="stage a rotation: a new key, and the configuration entry that adds it"
    )
    _config_option(rotate)
    rotate.add_argument("--alias", required=True, help="name of the new key")
    rotate.add_argument(
        "--out",
        type=Path,
        help="keystore to create (default: ALIAS.p12 beside the configuration)",
    )
    rotate.add_argument(
        "--activate-in",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="when the new key takes over (default 3600: well past any server's JWKS cache)",
    )
    rotate.add_argument(
        "--write", action="store_true", help="append the entry to the configuration (TOML)"
    )
    rotate.add_argument(
        "--force", action="store_true", help="stage a key although another is still next"
    )
    _new_key_options(rotate)
    rotate.set_defaults(handler=_keys_rotate)


def _keys_rotate(args: argparse.Namespace) -> int:
    request = NewKeyRequest.from_args(args)
    path: Path = args.config
    config = _load(path)
    _check_rotatable(path, config, args.write, request)
    if args.activate_in < 0:
        raise UsageError("--activate-in: must be 0 or more seconds")
    _check_nothing_staged(config, args.force)
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "-", request.alias).strip(".") or "key"
    out: Path = args.out or path.resolve().parent / f"{safe_name}.p12"
    alias, kid = _new_key(request, out)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.activate_in)
    entry = _rotation_entry(request, path, config, out, alias, when)
    print()
    print(entry, end="")
    if args.write:
        try:
            _append_checked(path, entry)
        except AdapterError as error:
            out.unlink(missing_ok=True)
            raise UsageError(f"the new entry was not kept (nor its keystore): {error}") from None
        print(f"# appended to {path}; kid {kid} takes over at {_time(when)}")
    return 0


def _check_rotatable(path: Path, config: AdapterConfig, write: bool, key: NewKeyRequest) -> None:
    method = config.credentials.method
    if method != "private_key_jwt":
        raise UsageError(f"--config: the method is {method}; keys rotate only for private_key_jwt")
    if config.credentials.keycloak_json:
        raise UsageError(
            f"--config: {path} is a keycloak.json, which holds a single key: no rotation can "
            f"be staged in it; convert it first: {PROG} config convert --config {path} --out "
            f"{path.with_name('adapter.toml')}, then rotate with that file"
        )
    if write and path.suffix.lower() != ".toml":
        raise UsageError(
            "--write: only TOML configurations are edited; add the printed entry to the "
            f"credentials.keys list of {path} by hand"
        )
    if write and not (key.store_password_env or key.no_password):
        raise UsageError(
            "--store-password-env: needed with --write, so that the configuration can name "
            "where the password comes from"
        )


def _check_nothing_staged(config: AdapterConfig, force: bool) -> None:
    """Two rotations at once are usually a mistake (a command run twice): ask for --force."""
    now = datetime.now(UTC)
    staged = [key for key in config.credentials.keys if _is_next(key, now)]
    if not staged:
        return
    key = staged[0]
    when = f" (takes over at {_time(key.activate_at)})" if key.activate_at else ""
    found = f"{key.field} ({key.keystore.name}) is already staged as next{when}"
    if not force:
        raise UsageError(
            f"--force: {found}; let that rotation finish first, or pass --force to stage "
            "another beside it"
        )
    _warn(f"{found}; staging another beside it (--force)")


def _is_next(key: KeyConfig, now: datetime) -> bool:
    if key.activate_at is not None:
        return key.activate_at > now
    return key.state == "next"


def _append_checked(path: Path, entry: str) -> None:
    """Append ``entry``, in the file's own line endings; the new text is validated first
    (keystores included), and replaces exactly the file that was read (:class:`HeldFile`)."""
    with HeldFile(path) as held:
        newline = "\r\n" if "\r\n" in held.text else "\n"
        text = held.text.rstrip("\r\n") + newline + entry.replace("\n", newline)
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: the entry would break the TOML ({error})") from None
        load_key_ring(load_config(document, base_dir=held.target.parent, web=False))
        held.replace(text)


def _rotation_entry(
    request: NewKeyRequest,
    path: Path,
    config: AdapterConfig,
    out: Path,
    alias: str,
    when: datetime,
) -> str:
    base = path.resolve().parent
    try:
        keystore = str(out.resolve().relative_to(base))
    except ValueError:
        keystore = str(out.resolve())
    lines = ["", "[[credentials.keys]]", f"keystore = {toml_string(keystore)}"]
    if request.store_password_env:
        lines.append(f"password-env = {toml_string(request.store_password_env)}")
    elif not request.no_password:
        lines.append('# password-env = "NAME"  (the variable holding the password you typed)')
    if request.key_password_env:
        lines.append(f"key-password-env = {toml_string(request.key_password_env)}")
    lines += [f"alias = {toml_string(alias)}", f'activate-at = "{_time(when)}"']
    default = config.credentials.algorithm or _default_for(request.alg)
    if request.alg != default:
        lines.append(f"algorithm = {toml_string(request.alg)}")
    return "\n".join(lines) + "\n"


def _default_for(alg: str) -> str:
    """The algorithm a key made for ``alg`` signs with when the configuration names none."""
    return "RS256" if alg.startswith(("RS", "PS")) else alg


# --- keys revoke ----------------------------------------------------------------------------


def _add_revoke(parent: Subparsers) -> None:
    revoke = parent.add_parser(
        "revoke",
        help="take a compromised key out at once: remove it, list its kid as revoked, and "
        "optionally make the identity server forget it",
    )
    _config_option(revoke)
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
    from adapter.keys.revoke import plan_revocation, revoked_text, shown_change

    path: Path = args.config
    _check_revoke_options(args)
    config = _load(path)
    if config.credentials.keycloak_json:
        raise UsageError(
            f"--config: {path} is a keycloak.json, which holds a single key: nothing could sign "
            f"after it; convert it first ({PROG} config convert --config {path} --out "
            f"{path.with_name('adapter.toml')}), stage a new key, then revoke"
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
        plan = plan_revocation(config, args.kid)
        print("\n".join(plan.summary()))
        if path.suffix.lower() != ".toml":
            message = f"{path} is not TOML, which is the only format edited: {plan.by_hand()}"
            if args.write:
                raise UsageError(f"--write: {message}")
            print(f"# {message}")
            return 0
        with HeldFile(path) as held:  # the write replaces exactly the file read here
            text = revoked_text(path, held.text, plan)
            if not args.write:
                print("\n# the change (nothing written; --write makes it):")
                print(shown_change(held.text, text, path), end="")
                return 0
            held.replace(text)
        print(f"# written to {path}; every app that reloads it stops publishing {plan.kid}")
    if args.clear_server_cache:
        return _clear_server_cache(args, config)
    print(
        f"next: make the identity server forget kid {args.kid}: --clear-server-cache, or in "
        "Keycloak's admin console Realm settings, Clear keys cache (the Action menu; the Cache "
        "tab in older consoles); see docs/key-rotation.md, A compromised key"
    )
    return 0


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
            _wait_until_unpublished(client.http, args.jwks_url, args.kid, args.wait)
        else:
            _warn(
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


def _wait_until_unpublished(http: Any, url: str, kid: str, wait: int) -> None:
    """Poll the app's JWKS until ``kid`` is gone (the apps reload on their own schedule),
    through the client's own connection (its CA set and proxy)."""
    import time

    import httpx

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
                f"file watch), then run {PROG} keys revoke --config CONFIG --kid={kid} "
                "--clear-server-cache"
            )
        time.sleep(0.5)


# --- keys show / export-cert -----------------------------------------------------------------


def _keystore_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE", help="a keystore file")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG",
        help="instead of FILE: the keys of this " + CONFIG_HELP.removeprefix("the "),
    )
    parser.add_argument(
        "--type", help="keystore type: PKCS12, JKS, PEM or JWK (default: from the extension)"
    )
    _password_options(parser)


def _one_source(args: argparse.Namespace) -> None:
    if (args.file is None) == (args.config is None):
        raise UsageError("give either a keystore FILE or --config, not both or neither")


def _entries_from_file(args: argparse.Namespace) -> tuple[Path, list[KeyEntry]]:
    path: Path = args.file
    if args.type is None:
        _not_a_configuration(path)
    kind = keystore_type(path, args.type)
    password = _env_password("--store-password-env", args.store_password_env)
    key_password = _env_password("--key-password-env", args.key_password_env)
    if password is None and kind in ("PKCS12", "JKS"):
        password = _prompt(f"Password for {path}")
    try:
        return path, read_keystore(path, type=kind, password=password, key_password=key_password)
    except PasswordNeeded as needed:
        option = "--store-password-env" if needed.which == "store" else "--key-password-env"
        raise UsageError(
            f"{needed.problem}; name the variable that holds the {needed.which} password with "
            f"{option} NAME"
        ) from None


def _not_a_configuration(path: Path) -> None:
    """Refuse a configuration given where a keystore belongs (``keys show keycloak.json``)."""
    if path.suffix.lower() == ".toml" or _is_configuration_json(path):
        raise UsageError(f"{path}: is a configuration, not a keystore; use --config {path}")


def _is_configuration_json(path: Path) -> bool:
    if path.suffix.lower() != ".json" or not path.is_file() or path.stat().st_size > 1 << 20:
        return False
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError):
        return False
    markers = {"realm", "resource", "auth-server-url", "issuer", "client-id", "credentials"}
    return isinstance(document, dict) and "kty" not in document and bool(markers & set(document))


def _add_show(parent: Subparsers) -> None:
    show = parent.add_parser("show", help="list the keys of a keystore or configuration")
    _keystore_source(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_keys_show)


def _keys_show(args: argparse.Namespace) -> int:
    _one_source(args)
    if args.config is not None:
        _, ring = _ring_from_config(args.config)
        rows = _configured_rows(ring)
    else:
        rows = _keystore_rows(*_entries_from_file(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for index, row in enumerate(rows):
        if index:
            print()
        for name, value in row.items():
            print(f"{name + ':':<13}{value}")
    if args.config is not None:
        now = datetime.now(UTC)
        upcoming = sorted(
            (k.activate_at, k.kid) for k in ring.keys if k.activate_at and k.activate_at > now
        )
        if upcoming:
            print(f"\nnext switch: {_time(upcoming[0][0])} to kid {upcoming[0][1]}")
    return 0


def _configured_rows(ring: KeyRing) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for key in ring.keys:
        row = _describe(key.private_key, key.cert_chain, key.kid, key.alg)
        row = {"source": key.source, "state": ring.state_at(key, now).value, **row}
        if key.activate_at is not None:
            row["activate_at"] = _time(key.activate_at)
        rows.append(row)
    return rows


def _keystore_rows(path: Path, entries: list[KeyEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        kid = entry.kid or default_kid(entry.private_key.public_key())
        row = _describe(entry.private_key, entry.cert_chain, kid, None)
        names = {"alias": entry.alias} if entry.alias is not None else {}
        rows.append({"keystore": str(path), **names, **row})
    return rows


def _describe(
    key: Any, chain: Sequence[x509.Certificate], kid: str, alg: str | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": key_type_name(key),
        "algorithm": alg or default_algorithm(key),
        "kid": kid,
    }
    if chain:
        certificate = chain[0]
        row["subject"] = certificate.subject.rfc4514_string()
        row["issuer"] = certificate.issuer.rfc4514_string()
        row["not_before"] = _time(certificate.not_valid_before_utc)
        row["not_after"] = _time(certificate.not_valid_after_utc)
        row["sha1"] = _fingerprint(certificate, hashes.SHA1())  # noqa: S303 - a fingerprint
        row["sha256"] = _fingerprint(certificate, hashes.SHA256())
        row["x5t"] = certificate_thumbprint(certificate, hashes.SHA1())  # noqa: S303
        row["x5t#S256"] = certificate_thumbprint(certificate, hashes.SHA256())
        row["chain"] = len(chain)
    else:
        row["certificate"] = "none (no x5c / x5t published)"
    return row


def _add_export_cert(parent: Subparsers) -> None:
    export = parent.add_parser(
        "export-cert", help="the PEM certificate (or public key) to give the identity server"
    )
    _keystore_source(export)
    export.add_argument("--alias", help="with FILE: the key to export (default: the only one)")
    export.add_argument("--kid", help="with --config: the key to export (default: the active one)")
    export.add_argument(
        "--public-key", action="store_true", help="export the public key, not the certificate"
    )
    export.add_argument("--out", type=Path, help="write to this new file instead of stdout")
    export.set_defaults(handler=_keys_export_cert)


def _keys_export_cert(args: argparse.Namespace) -> int:
    _one_source(args)
    if args.config is not None:
        if args.alias:
            raise UsageError("--alias: goes with a keystore file; with --config use --kid")
        _, ring = _ring_from_config(args.config)
        key: SigningKey | KeyEntry = _by_kid(ring, args.kid)
    else:
        if args.kid:
            raise UsageError("--kid: goes with --config; with a keystore file use --alias")
        path, entries = _entries_from_file(args)
        key = select_entry(path, entries, args.alias)
    if args.public_key:
        data = key.private_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
    elif key.cert_chain:
        data = key.cert_chain[0].public_bytes(Encoding.PEM)
    else:
        raise UsageError("this key has no certificate; use --public-key to export its public key")
    if args.out is not None:
        write_private_file(args.out, data)
    else:
        sys.stdout.write(data.decode("ascii"))
    return 0


def _by_kid(ring: KeyRing, kid: str | None) -> SigningKey:
    if kid is None:
        return ring.active()
    for key in ring.keys:
        if key.kid == kid:
            return key
    kids = ", ".join(k.kid for k in ring.keys) or "none"
    raise UsageError(f"--kid: no configured key has kid {kid!r}; the kids are {kids}")


# --- jwks, token, assertion ------------------------------------------------------------------


def _add_jwks(parent: Subparsers) -> None:
    jwks = parent.add_parser("jwks", help="print exactly the bytes /k_jwks will serve")
    _config_option(jwks)
    jwks.add_argument(
        "--pretty", action="store_true", help="indented for reading (not the served bytes)"
    )
    jwks.set_defaults(handler=_jwks)


def _jwks(args: argparse.Namespace) -> int:
    _, ring = _ring_from_config(args.config)
    if args.pretty:
        print(json.dumps(json.loads(ring.jwks_bytes), indent=2))
    else:
        sys.stdout.buffer.write(ring.jwks_bytes)  # byte for byte, no newline added
    return 0


def _add_token(parent: Subparsers) -> None:
    token = parent.add_parser(
        "token", help="a client_credentials token with the configured authentication"
    )
    _config_option(token)
    token.add_argument("--scope", help="space-separated scopes to ask for")
    token.add_argument("--resource", help="the API the token is for (RFC 8707)")
    token.set_defaults(handler=_token)


def _token(args: argparse.Namespace) -> int:
    from adapter.protocol.client import OIDCClient

    with OIDCClient(_load(args.config)) as client:
        try:
            tokens = client.client_credentials(args.scope, args.resource)
        except TokenError as exc:
            raise UsageError(f"the identity server refused the token request: {exc}") from None
    print(tokens.to_json())
    return 0


def _add_assertion(parent: Subparsers) -> None:
    assertion = parent.add_parser("assertion", help="print a fresh client assertion (JWT)")
    _config_option(assertion)
    assertion.set_defaults(handler=_assertion)


def _assertion(args: argparse.Namespace) -> int:
    from adapter.protocol.client import OIDCClient

    with OIDCClient(_load(args.config)) as client:
        if client.config.credentials.assertion_audience == "token-endpoint":
            client.metadata()  # the audience is the discovered token endpoint
        print(client.client_assertion())
    return 0


# --- config check / convert ------------------------------------------------------------------


def _add_check(parent: Subparsers) -> None:
    check = parent.add_parser("check", help="load and validate everything, offline")
    check.add_argument("file", nargs="?", type=Path, metavar="CONFIG", help=CONFIG_HELP)
    _config_option(check, required=False)
    check.set_defaults(handler=_config_check)


def _config_check(args: argparse.Namespace) -> int:
    from adapter.protocol._connection import Connection

    path = _config_path(args)
    config = _load_for_the_middleware(path)
    ring = load_key_ring(config)
    connection = Connection.from_config(config)  # opens the truststore, as a start would
    print(f"configuration: {path}")
    print(f"issuer:        {config.issuer}")
    print(f"client:        {config.client_id}")
    print(f"method:        {_method(config)}")
    now = datetime.now(UTC)
    for key in ring.keys:
        state = ring.state_at(key, now).value
        when = f", activates {_time(key.activate_at)}" if key.activate_at else ""
        print(f"key:           {state:<8}{key.alg:<7}kid={key.kid}  {key.source}{when}")
    for label, value in connection.describe():
        print(f"{label + ':':<15}{value}")
    for rule, public in public_overlaps(config.web.access_rules, config.web.public_paths):
        print(
            f"access:        [[access]] {rule.describe()} lies in public path {public}: "
            "the rule wins there (no anonymous access; sign-in and the rule are required)"
        )
    if config.unused_fields:
        print(f"not used:      {', '.join(config.unused_fields)}")
    for name in config.no_effect_fields:
        print(f"no effect:     {name} ({KEYCLOAK_NO_EFFECT_FIELDS[name]})")
    web = ", ".join(config.web_fields) or "none set here (all defaults)"
    print("commands:      keys, jwks, assertion and token need all of the above but no web setting")
    print(f"middleware:    also its web settings: {web}")
    print("ok")
    return 0


def _config_path(args: argparse.Namespace) -> Path:
    if (args.file is None) == (args.config is None):
        raise UsageError("give the configuration as CONFIG or as --config CONFIG (one of them)")
    path: Path = args.file or args.config
    return path


def _load_for_the_middleware(path: Path) -> AdapterConfig:
    """Everything, the middleware's settings included; an error in those says that only the
    middleware needs them (the key and token commands would work)."""
    try:
        return load_config(path)
    except ConfigError as error:
        failure = error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already shown by the first load
        try:
            load_config(path, web=False)
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


def _add_convert(parent: Subparsers) -> None:
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
        say = _note
    else:
        write_private_file(out, conversion.text.encode("utf-8"))
        config = conversion.config
        print(f"wrote {out}: issuer {config.issuer}, client {config.client_id}, {_method(config)}")
    for note in notes:
        say(note)
    if out is not None:
        say(f"next: {PROG} config check {out}, then keys rotate --config {out}")
    return 0


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _fingerprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    """As ``openssl x509 -fingerprint`` prints it: upper-case hex pairs joined by colons."""
    return certificate.fingerprint(algorithm).hex(":").upper()


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    raise SystemExit(main())
