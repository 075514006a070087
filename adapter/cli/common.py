"""What every command shares: one line on stderr for an error (exit 2) or a warning, the
library's warnings printed as the command's own, passwords from environment variables or a
prompt (never from arguments), the configuration as the key and token commands load it, and
how times and fingerprints are printed."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import shlex
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from adapter.config._fields import ENV_NAME
from adapter.config.model import AdapterConfig, load_config
from adapter.keys.keyring import KeyRing
from adapter.keys.loader import load_key_ring

PROG = "oidc-adapter"
Subparsers = Any  # argparse's _SubParsersAction, which it does not export
CONFIG_HELP = "the adapter configuration: a native TOML/JSON file, or keycloak.json as exported"


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (exit 2, one line)."""


def command_line(*arguments: str | Path) -> str:
    """``oidc-adapter ARGUMENTS`` as a shell reads it: quoted where needed, so that a printed
    command runs as printed."""
    return shlex.join([PROG, *(str(argument) for argument in arguments)])


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def print_note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def log_warnings_as_the_command() -> None:
    """The library's warnings (a keystore others can read ...) as the command's own lines."""
    logger = logging.getLogger("adapter")
    if not any(isinstance(h, _CommandLogHandler) for h in logger.handlers):
        logger.addHandler(_CommandLogHandler(logging.WARNING))
        logger.propagate = False


class _CommandLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        print(f"{PROG}: {level}: {record.getMessage()}", file=sys.stderr)


def print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    warn(str(message))


def config_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config", required=required, type=Path, metavar="CONFIG", help=CONFIG_HELP
    )
    parser.add_argument(
        "--tenant",
        metavar="NAME",
        help="with a tenants file as CONFIG: work on this tenant's own configuration file",
    )


def choose_tenant(args: argparse.Namespace) -> None:
    """``--tenant NAME``: the command works on that tenant's own file (the one a rotation
    edits). A tenants file without ``--tenant`` is refused, naming its tenants, except by
    ``config check``, which checks every tenant."""
    from adapter.config.tenants import (
        is_tenants_file,
        load_tenant_config,
        tenant_file,
        tenant_names,
    )

    config: Path | None = getattr(args, "config", None)
    tenant: str | None = getattr(args, "tenant", None)
    checking = getattr(args, "command", None) == "config" and hasattr(args, "file")
    if tenant is not None:
        if config is None and checking:
            config = args.file
            args.file = None
        if config is None:
            raise UsageError("--tenant: give the tenants file as --config CONFIG")
        args.config = tenant_file(config, tenant)
        tenants_file, name = config, tenant
        TENANTS[args.config] = lambda web: load_tenant_config(tenants_file, name, web=web)
    elif config is not None and not checking and config.is_file() and is_tenants_file(config):
        names = ", ".join(tenant_names(config))
        raise UsageError(f"{config} lists tenants ({names}); name one with --tenant NAME")


def password_options(parser: argparse.ArgumentParser) -> None:
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


# A tenant's file (--tenant) -> how to load it over its tenants file's shared settings.
TENANTS: dict[Path, Callable[[bool], AdapterConfig]] = {}


def load(path: Path, web: bool = False) -> AdapterConfig:
    """The configuration without the middleware's settings (``web``: with them): all a key or
    token command uses; a tenant's (``--tenant``) over its tenants file's shared settings."""
    tenant = TENANTS.get(path)
    return tenant(web) if tenant is not None else load_config(path, web=web)


def ring_from_config(path: Path) -> tuple[AdapterConfig, KeyRing]:
    config = load(path)
    return config, load_key_ring(config)


def env_password(option: str, name: str | None) -> str | None:
    if name is None:
        return None
    if not ENV_NAME.fullmatch(name):  # perhaps the password itself: never echo it
        raise UsageError(f"{option}: give the NAME of an environment variable, not its value")
    if name not in os.environ:
        raise UsageError(f"{option}: environment variable {name} is not set; export it first")
    return os.environ[name]


def prompt(label: str, confirm: bool = False) -> str | None:
    if not sys.stdin.isatty():
        return None
    value = getpass.getpass(f"{label}: ")
    if confirm and getpass.getpass(f"{label} (again): ") != value:
        raise UsageError("the passwords do not match; run the command again")
    return value


def fingerprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    """As ``openssl x509 -fingerprint`` prints it: upper-case hex pairs joined by colons."""
    return certificate.fingerprint(algorithm).hex(":").upper()


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
