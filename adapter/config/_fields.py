"""Typed reading of one configuration table, with messages that name the field and the fix.

Configuration arrives as parsed JSON or TOML, and (after ``${env.VAR}`` substitution, as
Keycloak does it) often as strings where a number or flag is meant; this reader accepts both
forms and turns everything else into a one-line :class:`ConfigError`. It remembers which fields
were read so the unread ones can be reported as unknown, with the closest known name: a typo
is the usual cause of a missing field, so the report also rides on the error when loading
fails (a warning alone would be lost exactly then).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from adapter.config._files import SECRET_LIMIT, FileRefused, read_private_file
from adapter.config.secret import Secret
from adapter.errors import ConfigError, ConfigWarning

T = TypeVar("T")

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_REFERENCE = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
ENV_REFERENCE = _ENV_REFERENCE  # ${env.VAR} or ${env.VAR:default}: name, default
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def substitute_env(value: str, field: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${env.VAR}`` and ``${env.VAR:default}`` in ``value``, as Keycloak adapters do.

    A variable that is not set and has no default is an error naming the field and the
    variable; the value itself is never quoted, since it may be a secret.
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{field}: environment variable {name} is not set; export it or write "
            f"${{env.{name}:default}}"
        )

    return _ENV_REFERENCE.sub(replace, value)


def written_literally(value: str) -> str:
    """What of ``value`` is written out rather than taken from ``${env.VAR}`` references (a
    reference's default counts as written): the part of a secret that the file itself holds.
    """
    return _ENV_REFERENCE.sub(lambda match: match.group(2) or "", value)


class Fields:
    """Reads the fields of one table; ``prefix`` is its dotted path for messages.

    ``known`` names every field this kind of table may hold. While loading succeeds, the fields
    nothing read are the unknown ones; when it fails half-way, only names outside ``known`` are,
    and ``known`` is also where a "did you mean" comes from.
    """

    def __init__(
        self,
        table: object,
        prefix: str,
        base_dir: Path,
        files: list[Path] | None = None,
        *,
        known: Iterable[str] = (),
    ) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{prefix or 'configuration'}: must be a table/object")
        self.table: Mapping[str, Any] = table
        self.prefix = prefix
        self.base_dir = base_dir
        self.known = frozenset(known)
        self.read: set[str] = set()
        self.files = files if files is not None else []  # every file read, shared with sub-tables

    def name(self, key: str) -> str:
        """The dotted name of ``key`` in this table, for messages."""
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (and not null)."""
        return self.table.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value of ``key`` as given (after env substitution for strings), or ``None``."""
        self.read.add(key)
        value = self.table.get(key)
        if isinstance(value, str):
            return substitute_env(value, self.name(key))
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        """A non-empty string field."""
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.name(key)}: must be a non-empty string")
        return value.strip()

    def required(self, key: str, what: str) -> str:
        """A string field that must be present; ``what`` explains what to put there."""
        value = self.string(key)
        if value is None:
            raise ConfigError(f"{self.name(key)}: missing; set it to {what}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        """A string field from a fixed set, matched case-insensitively."""
        options = tuple(choices)
        value = self.string(key)
        if value is None:
            return default
        for option in options:
            if option.lower() == value.lower():
                return option
        raise ConfigError(
            f"{self.name(key)}: {self.written(key)} is not valid; use one of {', '.join(options)}"
        )

    def flag(self, key: str, default: bool) -> bool:
        """A boolean field; ``"true"``/``"false"`` strings count (env substitution)."""
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{self.name(key)}: must be true or false")

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """A whole-number field within bounds; digit strings count (env substitution)."""
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.name(key)}: must be a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{self.name(key)}: must be at least {minimum}{upper}, not {value}")
        return value

    def strings(self, key: str, example: str) -> tuple[str, ...]:
        """A list of non-empty strings (a single string is a list of one); ``example`` shows
        one in the message for anything else."""
        value = self.raw(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{self.name(key)}: must be a list of strings such as {example}")
        return tuple(v.strip() for v in value)

    def path(self, key: str) -> Path | None:
        """A file path; relative paths resolve against the configuration file's directory."""
        value = self.string(key)
        if value is None:
            return None
        if "\0" in value:
            raise ConfigError(f"{self.name(key)}: contains a NUL character; fix the path")
        try:
            path = Path(value.removeprefix("classpath:")).expanduser()
        except RuntimeError:
            raise ConfigError(
                f"{self.name(key)}: cannot expand ~ (unknown user or no home); write the path "
                "out in full"
            ) from None
        return path if path.is_absolute() else self.base_dir / path

    def timestamp(self, key: str) -> datetime | None:
        """An RFC 3339 date-time with a zone (TOML datetimes are accepted as they are)."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str) and _RFC3339.fullmatch(value.strip()):
            with contextlib.suppress(ValueError):  # well-formed but impossible: month 13
                value = datetime.fromisoformat(value.strip().upper())
        if not isinstance(value, datetime):
            raise ConfigError(
                f"{self.name(key)}: not an RFC 3339 date-time; write e.g. 2026-12-01T00:00:00Z"
            )
        if value.tzinfo is None:
            raise ConfigError(
                f"{self.name(key)}: has no time zone; add Z or an offset such as +01:00"
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
            raise ConfigError(f"{self.name(key)}: is out of range; use a real date") from None

    def secret(self, key: str) -> Secret | None:
        """A secret from ``key``, ``key-env`` (a variable name) or ``key-file`` (a file path).

        At most one of the three may be given. The value never appears in messages.
        """
        spellings = (key, f"{key}-env", f"{key}-file")
        self.read.update(spellings)
        given = [k for k in spellings if self.has(k)]
        if len(given) > 1:
            raise ConfigError(
                f"{self.name(key)}: give only one of {', '.join(given)}; they conflict"
            )
        if self.has(f"{key}-env"):
            return self._secret_from_env(f"{key}-env")
        if self.has(f"{key}-file"):
            return self._secret_from_file(f"{key}-file")
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.name(key)}: must be a string")
        return Secret(value, "configuration")

    def _secret_from_env(self, key: str) -> Secret:
        # Not substituted: the field holds a variable's NAME. A value that is not a name may
        # be the secret itself, pasted into the wrong field, so it is never quoted.
        self.read.add(key)
        variable = self.table.get(key)
        if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
            raise ConfigError(
                f"{self.name(key)}: must be the NAME of an environment variable (letters, "
                "digits, _), not its value"
            )
        if variable not in os.environ:
            raise ConfigError(
                f"{self.name(key)}: environment variable {variable} is not set; export it "
                "before starting"
            )
        return Secret(os.environ[variable], f"env {variable}")

    def _secret_from_file(self, key: str) -> Secret:
        file = self.path(key)
        assert file is not None
        # A path built by ${env.…} substitution could hold anything: show it as written then.
        shown = self.written(key) if "${" in self.written(key) else str(file)
        self.files.append(file)
        what = key.removesuffix("-file")  # "password", "key-password", "secret" ...
        try:
            data = read_private_file(file, what=what, limit=SECRET_LIMIT, shown=shown)
        except FileRefused as exc:
            reason, fix = exc.reason, "check the file" if exc.missing else exc.fix
            shown = repr(shown) if exc.bad_name else shown
        else:
            try:
                return Secret(data.decode("utf-8").rstrip("\r\n"), f"file {shown}")
            except UnicodeDecodeError:
                reason, fix = "not UTF-8 text", "check the file"
        raise ConfigError(f"{self.name(key)}: cannot read {shown} ({reason}); {fix}")

    def written(self, key: str) -> str:
        """``key``'s value as written in the file (before ``${env.…}`` substitution), quoted."""
        return repr(self.table.get(key))

    def nested(self, key: str, build: Callable[[Fields], T], known: Iterable[str] = ()) -> T | None:
        """Build a value from the sub-table ``key`` (``None`` when absent), see :meth:`build`."""
        value = self.raw(key)
        if value is None:
            return None
        fields = Fields(value, self.name(key), self.base_dir, self.files, known=known)
        return fields.build(build)

    def build(self, build: Callable[[Fields], T], also_known: Iterable[str] = ()) -> T:
        """``build(self)``, then a warning about the fields nothing read; when ``build`` fails,
        its error names the unknown fields instead (one line), since a typo is the usual cause.
        """
        try:
            result = build(self)
        except ConfigError as error:
            unknown = self.unknown(also_known, failed=True)
            if not unknown:
                raise
            raise ConfigError(f"{error}; also, {self._report(unknown, also_known)}") from None
        self.warn_unknown(also_known)
        return result

    def unknown(self, also_known: Iterable[str] = (), *, failed: bool = False) -> list[str]:
        """The fields of this table that nothing read (after a failure: that no reader knows)."""
        ignored = self.read | set(also_known) | (self.known if failed else set())
        return sorted((str(k) for k in self.table if k not in ignored), key=str)

    def warn_unknown(self, also_known: Iterable[str] = ()) -> None:
        """Warn once about every field of this table that nothing read (typos, mostly)."""
        unknown = self.unknown(also_known)
        if unknown:
            warnings.warn(self._report(unknown, also_known), ConfigWarning, stacklevel=4)

    def _report(self, unknown: list[str], also_known: Iterable[str]) -> str:
        candidates = sorted(self.known | self.read | set(also_known))
        names = ", ".join(self.name(name) + did_you_mean(name, candidates) for name in unknown)
        return f"unknown configuration field(s) ignored: {names}"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean resource?)`` for the known name closest to a typo, or nothing."""
    import difflib  # only when a field is unknown

    others = [c for c in candidates if c != name]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
