"""Revoking a compromised key: the plan (what leaves, what signs instead) and the edit.

A revoked key leaves the configuration at once, so every app that reloads it stops publishing
and using it; its kid goes to ``credentials.revoked-kids``, so that a later edit cannot bring
it back (:func:`adapter.keys.loader.refuse_if_revoked`). When the revoked key was the active
one, the staged ``next`` key due soonest signs from now on, which leaves the rest of the
schedule as it was; with no key staged there is nothing safe to sign with, and the revocation
is refused with the command that stages one.

The configuration is edited as text, table by table, so that its comments and layout survive;
the result is loaded in full before it is written, and must say what the plan says.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapter.config import AdapterConfig, KeyConfig, load_config
from adapter.config._convert import toml_string
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing, KeyState, SigningKey, default_kid
from adapter.keys.loader import load_key_ring, load_signing_key

_KEYS_HEADER = re.compile(r"^\s*\[\[\s*credentials\s*\.\s*keys\s*\]\]\s*(#.*)?$")
_CREDENTIALS_HEADER = re.compile(r"^\s*\[\s*credentials\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_SCHEDULE_LINE = re.compile(r"^\s*(state|activate-at)\s*=")
_REVOKED_LINE = re.compile(r"^\s*revoked-kids\s*=")


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


def plan_revocation(config: AdapterConfig, kid: str, now: datetime | None = None) -> Revocation:
    """Which key ``kid`` names, and what signs once it is gone; :class:`RevokeRefused` when the
    configuration has no such key or nothing could sign after it."""
    moment = now or datetime.now(UTC)
    credentials = config.credentials
    keys = [load_signing_key(key, credentials.algorithm) for key in credentials.keys]
    matches = [i for i, key in enumerate(keys) if kid in (key.kid, _spki_kid(key))]
    if not matches:
        known = ", ".join(key.kid for key in keys) or "none"
        raise RevokeRefused(f"--kid: no configured key has kid {kid}; the keys are: {known}")
    index = matches[0]
    revoked = keys[index]
    ring = KeyRing(keys, now=moment)
    was = ring.state_at(revoked, moment)
    promoted: tuple[int, SigningKey] | None = None
    if was is KeyState.ACTIVE:
        promoted = _next_due(ring, keys, moment, credentials.keys)
        if promoted is None:
            raise RevokeRefused(
                f"--kid: {kid} is the active key and no next key is staged to take over; "
                "stage one first (oidc-adapter keys rotate --config CONFIG --alias NEW "
                "--activate-in 0 --write), then revoke this one"
            )
    names = dict.fromkeys([*sorted(credentials.revoked_kids), revoked.kid, _spki_kid(revoked)])
    return Revocation(
        kid=revoked.kid,
        field=credentials.keys[index].field,
        keystore=credentials.keys[index].keystore,
        index=index,
        was=was,
        promoted=promoted[1] if promoted else None,
        promoted_index=promoted[0] if promoted else None,
        revoked_kids=tuple(names),
    )


def revoked_text(path: Path, text: str, plan: Revocation, now: datetime | None = None) -> str:
    """The TOML configuration ``text`` of ``path`` with ``plan`` applied, checked by loading it
    (keystores included): the revoked key is gone and the expected key signs."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    lines = text.splitlines()
    blocks = _key_blocks(lines)
    credentials = _table(lines, _CREDENTIALS_HEADER)
    if credentials is None or plan.index >= len(blocks):
        raise RevokeRefused(
            f"--write: {path} does not write its keys as [credentials] with "
            "[[credentials.keys]] tables; edit it by hand: remove the key's table and add "
            "its kid to credentials.revoked-kids"
        )
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, replacement), applied bottom-up
    if plan.promoted_index is not None:
        start, end = blocks[plan.promoted_index]
        kept = [line for line in lines[start + 1 : end] if not _SCHEDULE_LINE.match(line)]
        stamp = f"activate-at = {toml_string(_iso(moment))}  # promoted by keys revoke"
        edits.append((start, end, [lines[start], stamp, *kept]))
    start, end = blocks[plan.index]
    note = f"# kid {plan.kid} ({plan.keystore.name}) revoked {_iso(moment)} by keys revoke"
    edits.append((start, end, [note]))
    edits.append(_revoked_kids_edit(lines, credentials, plan.revoked_kids))
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = replacement
    result = "\n".join(lines) + "\n"
    _check(path, result, plan)
    return result


def _spki_kid(key: SigningKey) -> str:
    return default_kid(key.private_key.public_key())


def _next_due(
    ring: KeyRing, keys: list[SigningKey], now: datetime, configured: tuple[KeyConfig, ...]
) -> tuple[int, SigningKey] | None:
    """The staged key due soonest (a timed one before one marked next without a time)."""
    staged = [(i, key) for i, key in enumerate(keys) if ring.state_at(key, now) is KeyState.NEXT]
    if not staged:
        return None
    far = datetime.max.replace(tzinfo=UTC)
    return min(staged, key=lambda pair: configured[pair[0]].activate_at or far)


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
    lines: list[str], table: tuple[int, int], kids: tuple[str, ...]
) -> tuple[int, int, list[str]]:
    entry = f"revoked-kids = [{', '.join(toml_string(kid) for kid in kids)}]"
    start, end = table
    for index in range(start + 1, end):
        if _REVOKED_LINE.match(lines[index]):
            last = index
            while "]" not in lines[last].split("#", 1)[0] and last + 1 < end:
                last += 1  # an array written over several lines
            return index, last + 1, [entry]
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
