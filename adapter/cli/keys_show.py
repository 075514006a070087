"""``keys show`` and ``keys export-cert``: the keys of a keystore file or of a
configuration, described (kid, algorithm, certificate, state), or one of them exported as the
PEM certificate or public key to give the identity server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter.cli.common import (
    CONFIG_HELP,
    Subparsers,
    UsageError,
    env_password,
    fingerprint,
    password_options,
    prompt,
    ring_from_config,
    timestamp,
)
from adapter.jose import default_algorithm, key_type_name
from adapter.keys._entry import KeyEntry, PasswordNeeded
from adapter.keys.generate import write_private_file
from adapter.keys.keyring import KeyRing, SigningKey, certificate_thumbprint, default_kid
from adapter.keys.keystore import keystore_type, read_keystore, select_entry


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
    password_options(parser)


def _one_source(args: argparse.Namespace) -> None:
    if (args.file is None) == (args.config is None):
        raise UsageError("give either a keystore FILE or --config, not both or neither")


def _entries_from_file(args: argparse.Namespace) -> tuple[Path, list[KeyEntry]]:
    path: Path = args.file
    if args.type is None:
        _not_a_configuration(path)
    kind = keystore_type(path, args.type)
    password = env_password("--store-password-env", args.store_password_env)
    key_password = env_password("--key-password-env", args.key_password_env)
    if password is None and kind in ("PKCS12", "JKS"):
        password = prompt(f"Password for {path}")
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


def add_show(parent: Subparsers) -> None:
    show = parent.add_parser("show", help="list the keys of a keystore or configuration")
    _keystore_source(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_keys_show)


def _keys_show(args: argparse.Namespace) -> int:
    _one_source(args)
    if args.config is not None:
        _, ring = ring_from_config(args.config)
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
            print(f"\nnext switch: {timestamp(upcoming[0][0])} to kid {upcoming[0][1]}")
    return 0


def _configured_rows(ring: KeyRing) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for key in ring.keys:
        row = _describe(key.private_key, key.cert_chain, key.kid, key.alg)
        row = {"source": key.source, "state": ring.state_at(key, now).value, **row}
        if key.activate_at is not None:
            row["activate_at"] = timestamp(key.activate_at)
        rows.append(row)
    for enc in ring.encryption_keys:  # after the signing keys, as /k_jwks lists them
        row = _describe(enc.private_key, enc.cert_chain, enc.kid, enc.alg)
        row = {"source": enc.source, "use": "enc", "state": ring.state_at(enc, now).value, **row}
        if enc.activate_at is not None:
            row["activate_at"] = timestamp(enc.activate_at)
        if not enc.published:
            row["published"] = "no (retired: decrypts until removed)"
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
        row["not_before"] = timestamp(certificate.not_valid_before_utc)
        row["not_after"] = timestamp(certificate.not_valid_after_utc)
        row["sha1"] = fingerprint(certificate, hashes.SHA1())  # noqa: S303 - a fingerprint
        row["sha256"] = fingerprint(certificate, hashes.SHA256())
        row["x5t"] = certificate_thumbprint(certificate, hashes.SHA1())  # noqa: S303
        row["x5t#S256"] = certificate_thumbprint(certificate, hashes.SHA256())
        row["chain"] = len(chain)
    else:
        row["certificate"] = "none (no x5c / x5t published)"
    return row


def add_export_cert(parent: Subparsers) -> None:
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
        _, ring = ring_from_config(args.config)
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
