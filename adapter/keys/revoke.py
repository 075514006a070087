"""Revoking a compromised key: the plan (what leaves, what signs instead) and the edit.

A revoked key leaves the configuration at once, so every app that reloads it stops publishing
and using it; its kid goes to ``credentials.revoked-kids``, so that a later edit cannot bring
it back (:func:`adapter.keys.loader.refuse_if_revoked`). When the revoked key was the active
one, the staged ``next`` key due soonest signs from now on, which leaves the rest of the
schedule as it was; with no key staged there is nothing safe to sign with, and the revocation
is refused with the command that stages one.

The configuration is edited as text, table by table, so that its comments and layout survive;
the result is loaded in full before it is written, and must say what the plan says. The command
writes it through :class:`adapter.config._held_file.HeldFile`, which replaces exactly the file
that was read.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapter.config import AdapterConfig, load_config
from adapter.config._convert import toml_string
from adapter.config._fields import ENV_NAME
from adapter.config.key_options import KeyState
from adapter.errors import ConfigError
from adapter.keys.keyring import ClientKey, KeyRing, SigningKey, default_kid
from adapter.keys.loader import load_client_key, load_key_ring

_KEYS_HEADER = re.compile(r"^\s*\[\[\s*credentials\s*\.\s*keys\s*\]\]\s*(#.*)?$")
_CREDENTIALS_HEADER = re.compile(r"^\s*\[\s*credentials\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_SCHEDULE_LINE = re.compile(r"^\s*(state|activate-at)\s*=")
_REVOKED_LINE = re.compile(r"^\s*revoked-kids\s*=")
# Keys whose value is a secret (not the -env / -file spellings, which only name where it is).
_SECRET_LINE = re.compile(r'^(\s*"?[\w.-]*(?:password|secret|redis-url|proxy-url|proxy)"?\s*=).*')
PROMOTION_BACKDATE = timedelta(seconds=60)
_SECOND = timedelta(seconds=1)


class RevokeRefused(ConfigError):
    """The revocation cannot be made as asked; the message names the fix."""


@dataclass(frozen=True)
class Revocation:
    """What revoking one key changes, decided before anything is written."""

    kid: str
    field: str  # credentials.keys[N] of the revoked key
    keystore: Path
    index: int
    was: KeyState
    promoted: SigningKey | None  # the key that signs from now on, when the revoked one did
    promoted_index: int | None
    promoted_field: str | None
    promoted_at: datetime | None  # its new activate-at
    revoked_kids: tuple[str, ...]  # the new credentials.revoked-kids

    def summary(self) -> list[str]:
        """What changes, one line each, for the operator."""
        lines = [f"revoke kid {self.kid} ({self.field}, {self.keystore.name}): it was {self.was}"]
        if self.promoted is not None:
            lines.append(
                f"kid {self.promoted.kid} ({self.promoted.source}) becomes the active key now "
                "(it was next)"
            )
        lines.append(f"credentials.revoked-kids = [{', '.join(self.revoked_kids)}]")
        return lines

    def by_hand(self) -> str:
        """The same change in words, for a file the command does not edit."""
        steps = f"remove {self.field} ({self.keystore.name})"
        if self.promoted_field is not None and self.promoted_at is not None:
            steps += (
                f", set activate-at = {_iso(self.promoted_at)} in {self.promoted_field} (and "
                "drop its state)"
            )
        kids = ", ".join(f'"{kid}"' for kid in self.revoked_kids)
        return f"{steps}, and set credentials.revoked-kids = [{kids}]"


def plan_revocation(config: AdapterConfig, kid: str, now: datetime | None = None) -> Revocation:
    """Which key ``kid`` names, and what signs once it is gone; :class:`RevokeRefused` when the
    configuration has no such key or nothing could sign after it."""
    moment = now or datetime.now(UTC)
    credentials = config.credentials
    keys = [load_client_key(key, credentials.algorithm, config.profile) for key in credentials.keys]
    index = key_index(keys, kid)
    revoked = keys[index]
    ring = KeyRing(keys, now=moment)
    was = ring.state_at(revoked, moment)
    signs = was is KeyState.ACTIVE and isinstance(revoked, SigningKey)  # an enc key just goes
    successor = _successor(kid, ring, keys, moment, config) if signs else None
    names = dict.fromkeys([*sorted(credentials.revoked_kids), revoked.kid, _spki_kid(revoked)])
    promoted_index, promoted = successor or (None, None)
    return Revocation(
        kid=revoked.kid,
        field=credentials.keys[index].field,
        keystore=credentials.keys[index].keystore,
        index=index,
        was=was,
        promoted=promoted,
        promoted_index=promoted_index,
        promoted_field=None if promoted_index is None else credentials.keys[promoted_index].field,
        promoted_at=(
            None if promoted_index is None else _promoted_at(keys, (index, promoted_index), moment)
        ),
        revoked_kids=tuple(names),
    )


def key_index(keys: Sequence[ClientKey], kid: str) -> int:
    """The position of the key that ``kid`` names: its configured kid, or the one derived from
    its public key."""
    for index, key in enumerate(keys):
        if kid in (key.kid, _spki_kid(key)):
            return index
    known = ", ".join(key.kid for key in keys) or "none"
    raise RevokeRefused(f"--kid: no configured key has kid {kid}; the keys are: {known}")


def _successor(
    kid: str,
    ring: KeyRing,
    keys: Sequence[ClientKey],
    now: datetime,
    config: AdapterConfig,
) -> tuple[int, SigningKey]:
    """What signs once the active key ``kid`` is gone: the staged signing key due soonest (a
    timed one before one marked next without a time); :class:`RevokeRefused` when none is."""
    staged = [
        (i, key)
        for i, key in enumerate(keys)
        if isinstance(key, SigningKey) and ring.state_at(key, now) is KeyState.NEXT
    ]
    if not staged:
        raise RevokeRefused(
            f"--kid: {kid} is the active key and no next key is staged to take over; "
            f"stage one first ({stage_command(config, kid, now)}), then revoke this one"
        )
    far = datetime.max.replace(tzinfo=UTC)
    configured = config.credentials.keys
    return min(staged, key=lambda pair: configured[pair[0]].activate_at or far)


def stage_command(config: AdapterConfig, kid: str, now: datetime) -> str:
    """The ``keys rotate`` command that stages a key to take over from ``kid`` at once, as it
    runs: the configuration as given, a new alias whose keystore does not exist yet, the
    revoked key's algorithm and the variable its keystore password comes from."""
    path = config.source or Path("adapter.toml")
    keys = [
        load_client_key(key, config.credentials.algorithm, config.profile)
        for key in config.credentials.keys
    ]
    index = key_index(keys, kid)
    password = config.credentials.keys[index].password
    variable = password.source.removeprefix("env ") if password is not None else ""
    if not ENV_NAME.fullmatch(variable):
        variable = "KEYSTORE_PASSWORD"  # the password is not in a variable: one to set first
    base = re.sub(r"[^A-Za-z0-9._-]", "-", f"{config.client_id}-{now:%Y-%m-%d}").strip(".")
    alias, number = base, 1
    while (path.resolve().parent / f"{alias}.p12").exists():
        number += 1
        alias = f"{base}-{number}"
    arguments = ["keys", "rotate", "--config", str(path), "--alias", alias]
    arguments += ["--alg", keys[index].alg, "--store-password-env", variable]
    command = shlex.join(["oidc-adapter", *arguments, "--activate-in", "0", "--write"])
    if variable != "KEYSTORE_PASSWORD" or "KEYSTORE_PASSWORD" in os.environ:
        return command
    return f"export KEYSTORE_PASSWORD with the new keystore's password, then {command}"


def _promoted_at(keys: Sequence[ClientKey], leaving: tuple[int, int], now: datetime) -> datetime:
    """The new activate-at of the promoted key: a minute back, so that an app whose clock runs
    a little behind this one's finds a key active at once; never before another key's
    activation (it must be the latest). ``leaving``: the revoked and the promoted key."""
    earlier = [
        key.activate_at
        for i, key in enumerate(keys)
        if i not in leaving
        and isinstance(key, SigningKey)  # signing activations only: enc keys never sign
        and key.activate_at
        and key.activate_at <= now
    ]
    promoted_at = max([now - PROMOTION_BACKDATE, *(e + _SECOND for e in earlier)])
    return min(promoted_at, now).replace(microsecond=0)


def revoked_text(path: Path, text: str, plan: Revocation) -> str:
    """The TOML configuration ``text`` of ``path`` with ``plan`` applied, checked by loading it
    (keystores included): the revoked key is gone and the expected key signs. Line endings,
    comments and the other tables are kept as written."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    blocks = _key_blocks(lines)
    credentials = _table(lines, _CREDENTIALS_HEADER)
    wanted = [plan.index] + ([plan.promoted_index] if plan.promoted_index is not None else [])
    if credentials is None or len(blocks) != _configured_keys(text) or max(wanted) >= len(blocks):
        raise RevokeRefused(
            f"--write: {path} does not write its keys as [credentials] with "
            f"[[credentials.keys]] tables; edit it by hand: {plan.by_hand()}"
        )
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, replacement), applied bottom-up
    if plan.promoted_index is not None and plan.promoted_at is not None:
        start, end = blocks[plan.promoted_index]
        kept = [line for line in lines[start + 1 : end] if not _SCHEDULE_LINE.match(line)]
        stamp = f"activate-at = {toml_string(_iso(plan.promoted_at))}  # promoted by keys revoke"
        edits.append((start, end, [lines[start], stamp, *kept]))
    start, end = blocks[plan.index]
    note = f"# kid {plan.kid} ({plan.keystore.name}) revoked by keys revoke"
    edits.append((start, end, [note]))
    edits.append(_revoked_kids_edit(path, lines, credentials, plan))
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = replacement
    result = newline.join(lines) + newline
    _check(path, result, plan)
    return result


def removed_text(path: Path, text: str, index: int, kid: str) -> tuple[str, AdapterConfig]:
    """The TOML configuration ``text`` of ``path`` without its key ``index`` (kid ``kid``),
    and that configuration as it loads (keystores included); the rest is kept as written."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    blocks = _key_blocks(lines)
    if len(blocks) != _configured_keys(text) or index >= len(blocks):
        raise RevokeRefused(
            f"--write: {path} does not write its keys as [[credentials.keys]] tables; remove "
            f"credentials.keys[{index}] by hand"
        )
    start, end = blocks[index]
    lines[start:end] = [f"# kid {kid} removed by keys remove"]
    result = newline.join(lines) + newline
    try:
        config = load_config(tomllib.loads(result), base_dir=path.resolve().parent, web=False)
        ring = load_key_ring(config)
    except (tomllib.TOMLDecodeError, ConfigError) as error:
        raise RevokeRefused(
            f"{path}: without credentials.keys[{index}] the configuration would not load "
            f"({error}); edit it by hand"
        ) from None
    if kid in {key.kid for key in ring.keys}:
        raise RevokeRefused(f"{path}: kid {kid} is still configured after the edit")
    return result, config


def keystore_users(config: AdapterConfig, keystore: Path) -> list[str]:
    """The entries of ``config`` whose keys come from the file ``keystore``."""
    target = keystore.resolve()
    return [key.field for key in config.credentials.keys if key.keystore.resolve() == target]


def shown_change(before: str, after: str, path: Path, label: str = "revoked") -> str:
    """The edit as a unified diff, with any secret written in the file masked."""
    masked = [
        [_SECRET_LINE.sub(r'\1 "(hidden)"', line) for line in text.splitlines()]
        for text in (before, after)
    ]
    old, new = masked
    diff = difflib.unified_diff(old, new, str(path), f"{path} ({label})", n=1, lineterm="")
    return "\n".join(diff) + "\n"


def _configured_keys(text: str) -> int:
    document = tomllib.loads(text)
    keys = document.get("credentials", {}).get("keys", [])
    return len(keys) if isinstance(keys, list) else -1


def _spki_kid(key: ClientKey) -> str:
    return default_kid(key.private_key.public_key())


def _key_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """Each [[credentials.keys]] table as (header line, end): the end is after its last
    ``name = value`` line, so comments written above the next table stay with that table."""
    blocks = []
    for start, line in enumerate(lines):
        if _KEYS_HEADER.match(line):
            blocks.append((start, _table_end(lines, start)))
    return blocks


def _table(lines: list[str], header: re.Pattern[str]) -> tuple[int, int] | None:
    for start, line in enumerate(lines):
        if header.match(line):
            return start, _table_end(lines, start)
    return None


def _table_end(lines: list[str], start: int) -> int:
    end = start + 1
    for index in range(start + 1, len(lines)):
        if _ANY_HEADER.match(lines[index]):
            break
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            end = index + 1
    return end


def _revoked_kids_edit(
    path: Path, lines: list[str], table: tuple[int, int], plan: Revocation
) -> tuple[int, int, list[str]]:
    """Replace the revoked-kids entry (however it is written: a string, an array over several
    lines) or add one under [credentials]."""
    entry = f"revoked-kids = [{', '.join(toml_string(kid) for kid in plan.revoked_kids)}]"
    start, end = table
    for index in range(start + 1, end):
        if _REVOKED_LINE.match(lines[index]):
            for last in range(index + 1, end + 1):
                try:
                    tomllib.loads("\n".join(lines[index:last]))
                except tomllib.TOMLDecodeError:
                    continue
                return index, last, [entry]
            raise RevokeRefused(
                f"--write: cannot tell where credentials.revoked-kids ends in {path}; edit it "
                f"by hand: {plan.by_hand()}"
            )
    return start + 1, start + 1, [entry]


def _check(path: Path, text: str, plan: Revocation) -> None:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RevokeRefused(
            f"{path}: the edit would break the TOML ({error}); edit by hand"
        ) from None
    config = load_config(document, base_dir=path.resolve().parent, web=False)
    ring = load_key_ring(config)
    if plan.kid in {key.kid for key in ring.keys}:
        raise RevokeRefused(f"{path}: kid {plan.kid} is still configured after the edit")
    if plan.promoted is not None and ring.active().kid != plan.promoted.kid:
        raise RevokeRefused(
            f"{path}: after the edit kid {ring.active().kid} would sign, not "
            f"{plan.promoted.kid}; edit by hand"
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
