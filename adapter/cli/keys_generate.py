"""``keys generate``: a new key and self-signed certificate in a new keystore.

:class:`NewKeyRequest` and its options are shared with ``keys rotate``, which makes its new key
the same way (:func:`new_key`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from adapter.cli.common import (
    Subparsers,
    UsageError,
    command_line,
    env_password,
    fingerprint,
    password_options,
    prompt,
)
from adapter.jose import ASYMMETRIC_ALGORITHMS, key_type_name
from adapter.keys.generate import (
    FORMATS,
    common_name,
    generate_private_key,
    missing_directory,
    parse_subject,
    self_signed_certificate,
    write_keystore,
)
from adapter.keys.keyring import default_kid
from adapter.keys.keystore import keystore_type


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


def new_key_options(parser: argparse.ArgumentParser) -> None:
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
    password_options(parser)
    parser.add_argument(
        "--no-password", action="store_true", help="PEM only: write the key unencrypted"
    )


def add_generate(parent: Subparsers) -> None:
    generate = parent.add_parser(
        "generate", help="a new key and self-signed certificate in a keystore"
    )
    generate.add_argument("--alias", required=True, help="name of the key in the keystore")
    generate.add_argument(
        "--out", required=True, type=Path, help="keystore file to create (its directory must exist)"
    )
    new_key_options(generate)
    generate.set_defaults(handler=_keys_generate)


def _keys_generate(args: argparse.Namespace) -> int:
    new_key(NewKeyRequest.from_args(args), args.out)
    return 0


def new_key(request: NewKeyRequest, out: Path) -> tuple[str, str]:
    """Create the key ``request`` describes at ``out``; print it; return (alias, kid)."""
    format = check_new_key(request, out)
    store_password, key_password = _passwords(request, format)
    key = generate_private_key(request.alg, request.key_size)
    subject = parse_subject(request.subject) if request.subject else common_name(request.alias)
    certificate = self_signed_certificate(key, subject, request.days, request.alg)
    write_keystore(out, format, request.alias, key, certificate, store_password, key_password)
    kid = default_kid(key.public_key())
    alias = stored_alias(request, format)
    print(f"alias:       {alias}")
    print(f"kid:         {kid}")
    print(f"algorithm:   {request.alg} ({key_type_name(key)})")
    print(f"subject:     {certificate.subject.rfc4514_string()}")
    print(f"sha256:      {fingerprint(certificate, hashes.SHA256())}")
    print(f"keystore:    {out} ({format.upper()})")
    return alias, kid


def check_new_key(request: NewKeyRequest, out: Path) -> str:
    """Refuse what :func:`new_key` would refuse, before any prompt and without making
    anything (``keys rotate`` without ``--write`` stops here); the keystore format."""
    format = request.format or _format_from_extension(out)
    if not out.parent.is_dir():
        raise UsageError(missing_directory(out))
    if out.exists():
        raise UsageError(f"{out}: already exists; choose another --out or remove it")
    if not request.alias.strip():
        raise UsageError("--alias: must not be empty")
    _password_options(request, format)
    return format


def stored_alias(request: NewKeyRequest, format: str) -> str:
    """The alias as the keystore keeps it: JKS folds it to lower case."""
    return request.alias.lower() if format == "jks" else request.alias


def generate_command(request: NewKeyRequest, out: Path) -> str:
    """The ``keys generate`` command that makes the key ``request`` describes at ``out``."""
    arguments: list[str | Path] = ["keys", "generate", "--alias", request.alias, "--out", out]
    options = {
        "--format": request.format,
        "--alg": request.alg,
        "--key-size": request.key_size,
        "--days": request.days,
        "--subject": request.subject,
        "--store-password-env": request.store_password_env,
        "--key-password-env": request.key_password_env,
    }
    for option, value in options.items():
        if value is not None:
            arguments += [option, str(value)]
    if request.no_password:
        arguments.append("--no-password")
    return command_line(*arguments)


def _password_options(request: NewKeyRequest, format: str) -> tuple[str | None, str | None]:
    """The passwords the named environment variables hold (refused when one is not set), and
    ``--no-password`` only where it can apply."""
    store_password = env_password("--store-password-env", request.store_password_env)
    key_password = env_password("--key-password-env", request.key_password_env)
    if request.no_password and (
        format != "pem" or store_password is not None or key_password is not None
    ):
        raise UsageError("--no-password: only for --format pem, without password options")
    return store_password, key_password


def _passwords(request: NewKeyRequest, format: str) -> tuple[str | None, str | None]:
    """The store and key passwords: named environment variables, else the store password asked
    for (twice) on a terminal; none at all only with ``--no-password`` (an unencrypted PEM)."""
    store_password, key_password = _password_options(request, format)
    if store_password is None and not request.no_password:
        label = "Key password (empty: unencrypted)" if format == "pem" else "Keystore password"
        store_password = prompt(label, confirm=True)
        if store_password is None:
            raise UsageError(
                "--store-password-env: needed (no terminal to prompt on); name an "
                "environment variable that holds the password"
                + (", or pass --no-password for an unencrypted PEM" if format == "pem" else "")
            )
    return store_password, key_password


def _format_from_extension(path: Path) -> str:
    kind = keystore_type(path)  # raises when the extension says nothing
    if kind == "JWK":
        raise UsageError(f"--format: {path.suffix} files are not written; use pkcs12, jks or pem")
    return kind.lower()
