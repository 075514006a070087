"""``keys rotate``: stage a rotation: a new key, and the configuration entry that adds it
with an ``activate-at`` (printed, or appended with ``--write`` after the edited file is checked
to load, keystores included). ``--use enc`` stages an encryption key (published for the server
to encrypt ID tokens to) and prints the identity server's steps: Keycloak picks a client's
encryption key by ``alg`` and refetches the client's keys only for an unknown one, so its
cache is cleared after the switch (``keys clear-server-cache``)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapter.cli.common import (
    Subparsers,
    UsageError,
    command_line,
    config_option,
    load,
    timestamp,
    warn,
)
from adapter.cli.keys_generate import (
    NewKeyRequest,
    check_new_key,
    generate_command,
    new_key,
    new_key_options,
    stored_alias,
)
from adapter.config._convert import toml_string
from adapter.config._held_file import HeldFile
from adapter.config.key_options import EC_KEY_MANAGEMENT, KEY_MANAGEMENT_ALGORITHMS
from adapter.config.model import AdapterConfig, KeyConfig, load_config
from adapter.errors import AdapterError, ConfigError
from adapter.keys.loader import load_key_ring


def add_rotate(parent: Subparsers) -> None:
    rotate = parent.add_parser(
        "rotate", help="stage a rotation: a new key, and the configuration entry that adds it"
    )
    config_option(rotate)
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
    rotate.add_argument(
        "--use",
        choices=("sig", "enc"),
        default="sig",
        help="sig: a signing key (default); enc: an encryption key the server encrypts ID "
        "tokens to (see --enc-alg)",
    )
    rotate.add_argument(
        "--enc-alg",
        choices=KEY_MANAGEMENT_ALGORITHMS,
        default=None,
        metavar="ALG",
        help="with --use enc: the key management algorithm, one of "
        f"{', '.join(KEY_MANAGEMENT_ALGORITHMS)} (default: the configured "
        "id-token-encrypted-response-alg, else RSA-OAEP-256); an ECDH-ES one makes an EC key",
    )
    new_key_options(rotate)
    rotate.set_defaults(handler=_keys_rotate)


def _keys_rotate(args: argparse.Namespace) -> int:
    request = NewKeyRequest.from_args(args)
    path: Path = args.config
    config = load(path)
    use: str = args.use
    enc_alg = _enc_alg(args, config) if use == "enc" else None
    if enc_alg in EC_KEY_MANAGEMENT and request.alg.startswith(("RS", "PS")):
        request = dataclasses.replace(request, alg="ES256")  # ECDH-ES needs an EC key
    _check_rotatable(path, config, args.write, request, use)
    if args.activate_in < 0:
        raise UsageError("--activate-in: must be 0 or more seconds")
    _check_nothing_staged(config, args.force, use)
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "-", request.alias).strip(".") or "key"
    out: Path = args.out or path.resolve().parent / f"{safe_name}.p12"
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.activate_in)
    if not args.write:
        return _dry_run(request, path, config, out, when, enc_alg)
    alias, kid = new_key(request, out)
    entry = _rotation_entry(request, path, config, out, alias, when, enc_alg)
    print()
    print(entry, end="")
    try:
        _append_checked(path, entry)
    except AdapterError as error:
        out.unlink(missing_ok=True)
        raise UsageError(f"the new entry was not kept (nor its keystore): {error}") from None
    print(f"# appended to {path}; kid {kid} takes over at {timestamp(when)}")
    if enc_alg is not None:
        print(_encryption_steps(path, config, kid, enc_alg, when))
    return 0


def _enc_alg(args: argparse.Namespace, config: AdapterConfig) -> str:
    """The new encryption key's algorithm: as asked, else the configured ID tokens' one
    (the server picks the key by it), else RSA-OAEP-256."""
    configured = config.id_token_encrypted_response_alg
    chosen: str = args.enc_alg or configured or "RSA-OAEP-256"
    if configured is not None and chosen != configured:
        warn(
            f"--enc-alg {chosen}: id-token-encrypted-response-alg is {configured}; the server "
            f"encrypts to a key with that alg, so change both (here and at the server) together"
        )
    return chosen


def _encryption_steps(path: Path, config: AdapterConfig, kid: str, alg: str, when: datetime) -> str:
    """What to do at the identity server around an encryption key's switch."""
    old = [
        key.field for key in config.credentials.keys if key.use == "enc" and key.state != "retired"
    ]
    retire = (
        f'mark the old encryption key ({", ".join(old)}) state = "retired": it still decrypts, '
        "and is no longer published"
        if old
        else "(no older encryption key to retire)"
    )
    clear = command_line("keys", "clear-server-cache", "--config", path)
    return "\n".join(
        [
            f"# encryption key {kid} ({alg}) is published from each app's next reload and "
            "decrypts from then on.",
            '# At the identity server (Keycloak: the client\'s Keys tab, "Use JWKS URL" on, '
            "the app's /k_jwks;",
            '# Advanced, "ID token encryption key management algorithm" '
            f"= {alg} and a content encryption algorithm).",
            "# Keycloak picks a client's encryption key by alg and fetches the JWKS again only "
            "for an unknown alg, so after the switch:",
            f"#  1. once every app publishes kid {kid} and {timestamp(when)} has passed, {retire};",
            f"#  2. clear the server's cache of the client's keys: {clear}",
            "#     (or Realm settings, Clear keys cache in the admin console);",
            "#  3. later remove the retired key: oidc-adapter keys remove --config "
            f"{path} --kid=KID --write",
        ]
    )


def _dry_run(
    request: NewKeyRequest,
    path: Path,
    config: AdapterConfig,
    out: Path,
    when: datetime,
    enc_alg: str | None = None,
) -> int:
    """What ``--write`` would do, refused where it would be refused; nothing is made."""
    format = check_new_key(request, out)
    alias = stored_alias(request, format)
    what = f"{enc_alg} encryption" if enc_alg else request.alg
    print(f"would create: {out} ({format.upper()}, {what} key, alias {alias})")
    print(_rotation_entry(request, path, config, out, alias, when, enc_alg), end="")
    print()
    if path.suffix.lower() == ".toml":
        print("# nothing written (a dry run): run the same command with --write to create the")
        print(f"# keystore and append this entry to {path}")
        if not (request.store_password_env or request.no_password):
            print("# (--write also needs --store-password-env NAME: the variable that holds the")
            print("# keystore password, which the entry names)")
    else:
        print(f"# nothing written (a dry run); {path} is edited by hand: create the key with")
        print(f"#   {generate_command(request, out)}")
        print("# then add this entry to its credentials.keys list")
    return 0


def _check_rotatable(
    path: Path, config: AdapterConfig, write: bool, key: NewKeyRequest, use: str = "sig"
) -> None:
    method = config.credentials.method
    if method == "none" and use == "enc":
        raise UsageError(
            "--use: a public client holds no keys; encryption needs a confidential one"
        )
    if method != "private_key_jwt" and use == "sig":
        raise UsageError(
            f"--config: the method is {method}; keys rotate only for private_key_jwt (or an "
            "encryption key: --use enc)"
        )
    if config.credentials.keycloak_json:
        raise UsageError(
            f"--config: {path} is a keycloak.json, which holds a single key: no rotation can "
            "be staged in it; convert it first: "
            + command_line("config", "convert", "--config", path, "--out", _converted(path))
            + ", then rotate with that file"
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


def _converted(path: Path) -> Path:
    """Where the suggested ``config convert`` writes: adapter.toml beside ``path``."""
    return path.with_name("adapter.toml")


def _check_nothing_staged(config: AdapterConfig, force: bool, use: str = "sig") -> None:
    """Two rotations at once are usually a mistake (a command run twice): ask for --force."""
    now = datetime.now(UTC)
    staged = [key for key in config.credentials.keys if key.use == use and _is_next(key, now)]
    if not staged:
        return
    key = staged[0]
    when = f" (takes over at {timestamp(key.activate_at)})" if key.activate_at else ""
    found = f"{key.field} ({key.keystore.name}) is already staged as next{when}"
    if not force:
        raise UsageError(
            f"--force: {found}; let that rotation finish first, or pass --force to stage "
            "another beside it"
        )
    warn(f"{found}; staging another beside it (--force)")


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
    enc_alg: str | None = None,
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
    lines += [f"alias = {toml_string(alias)}", f'activate-at = "{timestamp(when)}"']
    if enc_alg is not None:
        lines += ['use = "enc"', f"algorithm = {toml_string(enc_alg)}"]
        return "\n".join(lines) + "\n"
    default = config.credentials.algorithm or _default_for(request.alg)
    if request.alg != default:
        lines.append(f"algorithm = {toml_string(request.alg)}")
    return "\n".join(lines) + "\n"


def _default_for(alg: str) -> str:
    """The algorithm a key made for ``alg`` signs with when the configuration names none."""
    return "RS256" if alg.startswith(("RS", "PS")) else alg
