"""The ``oidc-adapter`` command: create and inspect client keys, check configuration.

Exit status 0 on success and 2 on any user error, which is reported as one line on stderr
naming the file, field or flag and the fix. Passwords come from environment variables named on
the command line, or from a prompt on a terminal; they are never accepted as arguments (they
would land in shell history and ``ps``) and never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import stat
import sys
import tomllib
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter._fields import ENV_NAME
from adapter.config import KEYCLOAK_NO_EFFECT_FIELDS, AdapterConfig, load_config
from adapter.errors import AdapterError, ConfigError, TokenError
from adapter.jose import ASYMMETRIC_ALGORITHMS, default_algorithm, key_type_name
from adapter.keys._entry import KeyEntry
from adapter.keys.generate import (
    FORMATS,
    common_name,
    generate_private_key,
    parse_subject,
    self_signed_certificate,
    write_keystore,
    write_private_file,
)
from adapter.keys.keyring import KeyRing, SigningKey, certificate_thumbprint, default_kid
from adapter.keys.keystore import keystore_type, read_keystore, select_entry
from adapter.keys.loader import load_key_ring

PROG = "oidc-adapter"


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
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Client keys and configuration for oidc-adapter.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser("keys", help="create and inspect client keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="VERB")

    generate = key_commands.add_parser(
        "generate", help="a new key and self-signed certificate in a keystore"
    )
    generate.add_argument("--alias", required=True, help="name of the key in the keystore")
    generate.add_argument("--out", required=True, type=Path, help="keystore file to create")
    _new_key_options(generate)
    generate.set_defaults(handler=_keys_generate)

    rotate = key_commands.add_parser(
        "rotate", help="stage a rotation: a new key, and the configuration entry that adds it"
    )
    rotate.add_argument("--config", required=True, type=Path)
    rotate.add_argument("--alias", required=True, help="name of the new key")
    rotate.add_argument("--out", type=Path, help="keystore to create (default: ALIAS.p12 "
                        "beside the configuration)")  # fmt: skip
    rotate.add_argument(
        "--activate-in",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="when the new key takes over (default 3600: well past any server's JWKS cache)",
    )
    rotate.add_argument("--write", action="store_true", help="append the entry to the config")
    _new_key_options(rotate)
    rotate.set_defaults(handler=_keys_rotate)

    show = key_commands.add_parser("show", help="list the keys of a keystore or configuration")
    _keystore_source(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_keys_show)

    export = key_commands.add_parser(
        "export-cert", help="the PEM certificate (or public key) to give the identity server"
    )
    _keystore_source(export)
    export.add_argument("--alias", help="the key to export (default: the only one)")
    export.add_argument("--kid", help="with --config: the key to export (default: active)")
    export.add_argument("--public-key", action="store_true", help="export the public key")
    export.add_argument("--out", type=Path, help="write to this file instead of stdout")
    export.set_defaults(handler=_keys_export_cert)

    jwks = commands.add_parser("jwks", help="print exactly the bytes /k_jwks will serve")
    jwks.add_argument("--config", required=True, type=Path)
    jwks.set_defaults(handler=_jwks)

    token = commands.add_parser(
        "token", help="a client_credentials token with the configured authentication"
    )
    token.add_argument("--config", required=True, type=Path)
    token.add_argument("--scope", help="space-separated scopes to ask for")
    token.add_argument("--resource", help="the API the token is for (RFC 8707)")
    token.set_defaults(handler=_token)

    assertion = commands.add_parser("assertion", help="print a fresh client assertion (JWT)")
    assertion.add_argument("--config", required=True, type=Path)
    assertion.set_defaults(handler=_assertion)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="VERB")
    check = config_commands.add_parser("check", help="load and validate everything, offline")
    check.add_argument("--config", required=True, type=Path)
    check.set_defaults(handler=_config_check)
    return parser


def _new_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, help="default: from --out's extension")
    parser.add_argument("--alg", choices=ASYMMETRIC_ALGORITHMS, default="RS256")
    parser.add_argument("--key-size", type=int, help="RSA modulus bits (default 2048)")
    parser.add_argument("--days", type=int, default=365, help="certificate validity")
    parser.add_argument("--subject", help="certificate subject DN (default CN=ALIAS)")
    _password_options(parser)
    parser.add_argument(
        "--no-password", action="store_true", help="PEM only: write the key unencrypted"
    )


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store-password-env", metavar="NAME", help="environment variable with the password"
    )
    parser.add_argument(
        "--key-password-env",
        metavar="NAME",
        help="environment variable with the key password (default: the store password)",
    )


def _keystore_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="keystore file")
    parser.add_argument("--config", type=Path, help="use the keys of this configuration")
    parser.add_argument("--type", help="keystore type (default: from the extension)")
    _password_options(parser)


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


def _keys_generate(args: argparse.Namespace) -> int:
    _new_key(args, args.out)
    return 0


def _new_key(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    """Create the key ``args`` describe at ``out``; print it; return (alias, kid)."""
    format = args.format or _format_from_extension(out)
    store_password = _env_password("--store-password-env", args.store_password_env)
    key_password = _env_password("--key-password-env", args.key_password_env)
    if args.no_password:
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
    if not args.alias.strip():
        raise UsageError("--alias: must not be empty")
    key = generate_private_key(args.alg, args.key_size)
    subject = parse_subject(args.subject) if args.subject else common_name(args.alias)
    certificate = self_signed_certificate(key, subject, args.days, args.alg)
    write_keystore(out, format, args.alias, key, certificate, store_password, key_password)
    kid = default_kid(key.public_key())
    stored_alias = args.alias.lower() if format == "jks" else args.alias  # JKS folds case
    print(f"alias:       {stored_alias}")
    print(f"kid:         {kid}")
    print(f"algorithm:   {args.alg} ({key_type_name(key)})")
    print(f"subject:     {certificate.subject.rfc4514_string()}")
    print(f"sha256:      {_fingerprint(certificate, hashes.SHA256())}")
    print(f"keystore:    {out} ({format.upper()})")
    return stored_alias, kid


def _keys_rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.credentials.method != "private_key_jwt":
        raise UsageError(
            f"--config: the method is {config.credentials.method}; keys rotate only for "
            "private_key_jwt"
        )
    if args.write and args.config.suffix.lower() != ".toml":
        raise UsageError(
            "--write: only native TOML configurations are edited; add the printed entry by "
            "hand (a keycloak.json holds a single key: move to the native format to rotate)"
        )
    if args.write and not (args.store_password_env or args.no_password):
        raise UsageError(
            "--store-password-env: needed with --write, so that the configuration can name "
            "where the password comes from"
        )
    if args.activate_in < 0:
        raise UsageError("--activate-in: must be 0 or more seconds")
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "-", args.alias).strip(".") or "key"
    out: Path = args.out or args.config.resolve().parent / f"{safe_name}.p12"
    alias, kid = _new_key(args, out)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.activate_in)
    entry = _rotation_entry(args, config, out, alias, when)
    print()
    print(entry, end="")
    if args.write:
        try:
            _append_checked(args.config, entry)
        except AdapterError as error:
            out.unlink(missing_ok=True)
            raise UsageError(f"the new entry was not kept (nor its keystore): {error}") from None
        print(f"# appended to {args.config}; kid {kid} takes over at {_time(when)}")
    return 0


def _append_checked(path: Path, entry: str) -> None:
    """Append ``entry``; the new text is validated first and replaces the file atomically (a
    watcher never reads half a file)."""
    original = path.read_text(encoding="utf-8")
    text = original.rstrip("\n") + "\n" + entry
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: the entry would break the TOML ({error})") from None
    load_key_ring(load_config(document, base_dir=path.resolve().parent))
    temporary = path.with_name(f".{path.name}.new")
    mode = stat.S_IMODE(path.stat().st_mode)  # the configuration may hold secrets: keep its mode
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _rotation_entry(
    args: argparse.Namespace, config: AdapterConfig, out: Path, alias: str, when: datetime
) -> str:
    base = args.config.resolve().parent
    try:
        keystore = str(out.resolve().relative_to(base))
    except ValueError:
        keystore = str(out.resolve())
    quoted = json.dumps  # TOML basic strings take JSON's escapes
    lines = ["", "[[credentials.keys]]", f"keystore = {quoted(keystore)}"]
    if args.store_password_env:
        lines.append(f"password-env = {quoted(args.store_password_env)}")
    elif not args.no_password:
        lines.append('# password-env = "NAME"  (the variable holding the password you typed)')
    if args.key_password_env:
        lines.append(f"key-password-env = {quoted(args.key_password_env)}")
    lines += [f"alias = {quoted(alias)}", f'activate-at = "{_time(when)}"']
    default = config.credentials.algorithm or _default_for(args.alg)
    if args.alg != default:
        lines.append(f"algorithm = {quoted(args.alg)}")
    return "\n".join(lines) + "\n"


def _default_for(alg: str) -> str:
    """The algorithm a key made for ``alg`` signs with when the configuration names none."""
    return "RS256" if alg.startswith(("RS", "PS")) else alg


def _format_from_extension(path: Path) -> str:
    kind = keystore_type(path)  # raises when the extension says nothing
    if kind == "JWK":
        raise UsageError(f"--format: {path.suffix} files are not written; use pkcs12, jks or pem")
    return kind.lower()


# --- keys show / export-cert -----------------------------------------------------------------


def _entries_from_file(args: argparse.Namespace) -> tuple[Path, list[KeyEntry]]:
    path: Path = args.file
    kind = keystore_type(path, args.type)
    password = _env_password("--store-password-env", args.store_password_env)
    key_password = _env_password("--key-password-env", args.key_password_env)
    if password is None and kind in ("PKCS12", "JKS"):
        password = _prompt(f"Password for {path}")
    try:
        return path, read_keystore(path, type=kind, password=password, key_password=key_password)
    except ConfigError as exc:
        if password is None and "password" in str(exc):
            raise UsageError(f"{exc} (--store-password-env NAME)") from None
        raise


def _ring_from_config(path: Path) -> tuple[AdapterConfig, KeyRing]:
    config = load_config(path)
    return config, load_key_ring(config)


def _keys_show(args: argparse.Namespace) -> int:
    _one_source(args)
    rows: list[dict[str, Any]] = []
    if args.config is not None:
        _, ring = _ring_from_config(args.config)
        now = datetime.now(UTC)
        for key in ring.keys:
            row = _describe(key.private_key, key.cert_chain, key.kid, key.alg)
            row = {"source": key.source, "state": ring.state_at(key, now).value, **row}
            if key.activate_at is not None:
                row["activate_at"] = _time(key.activate_at)
            rows.append(row)
    else:
        path, entries = _entries_from_file(args)
        for entry in entries:
            kid = entry.kid or default_kid(entry.private_key.public_key())
            row = _describe(entry.private_key, entry.cert_chain, kid, None)
            names = {"alias": entry.alias} if entry.alias is not None else {}
            rows.append({"keystore": str(path), **names, **row})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for index, row in enumerate(rows):
        if index:
            print()
        for name, value in row.items():
            print(f"{name + ':':<13}{value}")
    if args.config is not None:
        upcoming = sorted(
            (k.activate_at, k.kid) for k in ring.keys if k.activate_at and k.activate_at > now
        )
        if upcoming:
            print(f"\nnext switch: {_time(upcoming[0][0])} to kid {upcoming[0][1]}")
    return 0


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


def _one_source(args: argparse.Namespace) -> None:
    if (args.file is None) == (args.config is None):
        raise UsageError("give either a keystore FILE or --config, not both or neither")


# --- jwks, config check ----------------------------------------------------------------------


def _jwks(args: argparse.Namespace) -> int:
    _, ring = _ring_from_config(args.config)
    sys.stdout.buffer.write(ring.jwks_bytes + b"\n")
    return 0


def _token(args: argparse.Namespace) -> int:
    from adapter.client import OIDCClient

    with OIDCClient(args.config) as client:
        try:
            tokens = client.client_credentials(args.scope, args.resource)
        except TokenError as exc:
            raise UsageError(f"the identity server refused the token request: {exc}") from None
    print(tokens.to_json())
    return 0


def _assertion(args: argparse.Namespace) -> int:
    from adapter.client import OIDCClient

    with OIDCClient(args.config) as client:
        if client.config.credentials.assertion_audience == "token-endpoint":
            client.metadata()  # the audience is the discovered token endpoint
        print(client.client_assertion())
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from adapter._connection import Connection

    config, ring = _ring_from_config(args.config)
    connection = Connection.from_config(config)  # opens the truststore, as a start would
    credentials = config.credentials
    print(f"configuration: {args.config}")
    print(f"issuer:        {config.issuer}")
    print(f"client:        {config.client_id}")
    method = credentials.method
    if method in ("private_key_jwt", "client_secret_jwt"):
        method += (
            f" (assertion lifetime {credentials.assertion_lifetime} s, "
            f"audience {credentials.assertion_audience})"
        )
    print(f"method:        {method}")
    now = datetime.now(UTC)
    for key in ring.keys:
        state = ring.state_at(key, now).value
        when = f", activates {_time(key.activate_at)}" if key.activate_at else ""
        print(f"key:           {state:<8}{key.alg:<7}kid={key.kid}  {key.source}{when}")
    for label, value in connection.describe():
        print(f"{label + ':':<15}{value}")
    if config.unused_fields:
        print(f"not used:      {', '.join(config.unused_fields)}")
    for name in config.no_effect_fields:
        print(f"no effect:     {name} ({KEYCLOAK_NO_EFFECT_FIELDS[name]})")
    print("ok")
    return 0


def _fingerprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    """As ``openssl x509 -fingerprint`` prints it: upper-case hex pairs joined by colons."""
    return certificate.fingerprint(algorithm).hex(":").upper()


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    raise SystemExit(main())
