"""``keys remove``: the last step of a rotation: take a retired key's entry out of the
configuration (a revoked kid's entry too), and say whether its keystore file is still needed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from adapter.cli.common import Subparsers, UsageError, command_line, config_option, load
from adapter.config._held_file import HeldFile
from adapter.config.key_options import KeyState
from adapter.config.model import AdapterConfig
from adapter.keys.keyring import EncryptionKey, KeyRing, default_kid
from adapter.keys.loader import load_client_key


def add_remove(parent: Subparsers) -> None:
    remove = parent.add_parser(
        "remove",
        help="take a retired key out of the configuration (the last step of a rotation)",
    )
    config_option(remove)
    remove.add_argument(
        "--kid",
        required=True,
        help="the kid of the retired key (write --kid=KID when it starts with '-')",
    )
    remove.add_argument(
        "--write", action="store_true", help="edit the configuration (TOML) instead of printing"
    )
    remove.set_defaults(handler=_keys_remove)


def _keys_remove(args: argparse.Namespace) -> int:
    from adapter.keys.revoke import keystore_users, removed_text, shown_change

    path: Path = args.config
    config = load(path)
    if config.credentials.keycloak_json:
        raise UsageError(
            f"--config: {path} is a keycloak.json, which holds a single key: it cannot lose it"
        )
    index = _removable(args, path, config)
    field = config.credentials.keys[index].field
    keystore = config.credentials.keys[index].keystore
    print(f"remove kid {args.kid} ({field}, {keystore.name})")
    if path.suffix.lower() != ".toml":
        message = f"{path} is not TOML, which is the only format edited: remove {field} by hand"
        if args.write:
            raise UsageError(f"--write: {message}")
        print(f"# {message}")
        return 0
    with HeldFile(path) as held:  # the write replaces exactly the file read here
        text, after = removed_text(path, held.text, index, args.kid)
        if not args.write:
            print("\n# the change (nothing written; --write makes it):")
            print(shown_change(held.text, text, path, "removed"), end="")
            return 0
        held.replace(text)
    print(f"# written to {path}; every app that reloads it stops publishing {args.kid}")
    users = keystore_users(after, keystore)
    if users:
        print(f"{keystore} is still used by {', '.join(users)}: keep it")
    else:
        print(
            f"{keystore} is used by no other configured key: delete it once every app has "
            "reloaded (destroy every copy if the key was compromised)"
        )
    return 0


def _removable(args: argparse.Namespace, path: Path, config: AdapterConfig) -> int:
    """The position of the key ``--kid`` names; refused while it signs or is about to."""
    from adapter.keys.revoke import key_index

    credentials = config.credentials
    keys = [load_client_key(key, credentials.algorithm, config.profile) for key in credentials.keys]
    index = key_index(keys, args.kid)
    key = keys[index]
    if {key.kid, default_kid(key.private_key.public_key())} & credentials.revoked_kids:
        return index  # a revoked key may always leave
    now = datetime.now(UTC)
    state = KeyRing(keys, now=now).state_at(key, now)
    revoke = command_line("keys", "revoke", "--config", path, f"--kid={args.kid}", "--write")
    if state is KeyState.ACTIVE and isinstance(key, EncryptionKey):
        raise UsageError(
            f"--kid: {args.kid} is an active encryption key: the server may encrypt to it; "
            f'set state = "retired" in {credentials.keys[index].field} first, then clear the '
            "server's key cache (keys clear-server-cache)"
        )
    if state is KeyState.ACTIVE:
        raise UsageError(
            f"--kid: {args.kid} is the active key: it signs now; stage a next key with keys "
            "rotate and let it take over (the old key is then retired), or, if it was "
            f"compromised: {revoke}"
        )
    if state is KeyState.NEXT:
        when = f" (takes over at {key.activate_at:%Y-%m-%dT%H:%M:%SZ})" if key.activate_at else ""
        raise UsageError(
            f"--kid: {args.kid} is staged as next{when}; it is removed only once retired: "
            f'set state = "retired" in {credentials.keys[index].field} first, or, if it was '
            f"compromised: {revoke}"
        )
    return index
