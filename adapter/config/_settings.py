"""Each configuration setting declared once: on its dataclass field, as metadata.

A field of :class:`~adapter.config.model.AdapterConfig` (and of the other configuration
dataclasses) says, in one place, its default, how the files spell it (the native key and
keycloak.json's name), its bounds or choices and what it means::

    session_max_age: int = setting(
        28800, key="session-max-age", bounds=(60, 30 * 86400), doc="seconds a session lasts"
    )

Everything else reads that: :func:`read_settings` reads the fields of a table in one loop,
each with the :class:`~adapter.config._fields.Fields` reader its type calls for (a flag, a whole
number, a string, one of a ``Literal``'s words, a list of strings, a path, a secret, a time);
the lists of known field names, ``config convert``'s mapping from keycloak.json and the tests
that hold docs/configuration.md to the code are built from :func:`settings_of`.

A field whose reading needs more than its type (a URL checked against ``ssl-required``, a
cookie name, the ``[[access]]`` rules) names its reader (``read=``), a function given the table,
the setting and the values read before it in the same table; a field that needs what the loop
cannot give (the issuer from ``realm`` and ``auth-server-url``, the credentials table) is
``built=True``: the table's builder reads it, still taking its key and default from here.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from adapter.config._fields import Fields
from adapter.config.secret import Secret

T = TypeVar("T")

Kind = Literal[
    "flag", "integer", "string", "choice", "strings", "path", "secret", "timestamp", "custom"
]
_METADATA = "adapter.setting"
_SECRET_SUFFIXES = ("", "-env", "-file")
_KINDS: dict[object, Kind] = {
    bool: "flag",
    int: "integer",
    str: "string",
    Path: "path",
    Secret: "secret",
    datetime: "timestamp",
}


@dataclass(frozen=True)
class Setting:
    """One configuration field as the files spell it (see the module's docstring)."""

    key: str  # the native spelling, e.g. "session-max-age"
    keycloak: tuple[str, ...] = ()  # keycloak.json's spelling(s), where they differ
    bounds: tuple[int, int | None] = (0, None)  # whole numbers: minimum and maximum
    doc: str = ""  # what it means, in one line
    example: str = ""  # lists: shown in the message for a value that is not one
    also: tuple[str, ...] = ()  # further native keys read into the same field
    no_effect: str | None = None  # read and checked but changes nothing here: why (config check)
    only_with: str | None = None  # read only when this other field (of the table) is set
    keycloak_default: Any = None  # keycloak.json's default, where it differs from the native one
    read: Reader | None = None
    built: bool = False  # read by the table's builder, not by read_settings
    kind: Kind | None = None  # what the file holds; from the field's type unless given
    # Filled in by settings_of from the dataclass field:
    name: str = ""  # the attribute, e.g. "session_max_age"
    default: Any = None  # dataclasses.MISSING for a required field
    choices: tuple[str, ...] = ()  # a Literal's words
    frozen: bool = False  # a frozenset of strings rather than a tuple

    @property
    def keys(self) -> tuple[str, ...]:
        """The native keys of this field (without a secret's ``-env`` and ``-file``)."""
        return (self.key, *self.also)

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every native field name it is read from: a secret's ``-env`` and ``-file`` too."""
        return self._spelled(self.keys)

    @property
    def keycloak_spellings(self) -> tuple[str, ...]:
        """keycloak.json's names for it, a secret's ``-env`` and ``-file`` included."""
        return self._spelled(self.keycloak)

    def _spelled(self, names: tuple[str, ...]) -> tuple[str, ...]:
        if self.kind != "secret":
            return names
        return tuple(name + suffix for name in names for suffix in _SECRET_SUFFIXES)


# What a reader of its own receives: the table, the setting, the values read before it.
Reader = Callable[[Fields, Setting, Mapping[str, Any]], Any]


def about(
    *,
    key: str,
    keycloak: str | tuple[str, ...] = (),
    bounds: tuple[int, int | None] = (0, None),
    doc: str = "",
    example: str = "",
    also: tuple[str, ...] = (),
    no_effect: str | None = None,
    only_with: str | None = None,
    keycloak_default: Any = None,
    read: Reader | None = None,
    built: bool = False,
    kind: Kind | None = None,
) -> Mapping[str, Setting]:
    """The metadata of a setting without a default (``field(metadata=about(...))``: a required
    field, which the type checker then knows as one)."""
    names = (keycloak,) if isinstance(keycloak, str) else keycloak
    spec = Setting(
        key=key,
        keycloak=names,
        bounds=bounds,
        doc=doc,
        example=example,
        also=also,
        no_effect=no_effect,
        only_with=only_with,
        keycloak_default=keycloak_default,
        read=read,
        built=built,
        kind=kind,
    )
    return {_METADATA: spec}


def setting(default: T, **spec: Any) -> T:
    """A dataclass field with ``default`` that is the setting ``spec`` describes (the keyword
    arguments of :func:`about`)."""
    field: T = dataclasses.field(default=default, metadata=about(**spec))
    return field


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings of a configuration dataclass, in the order of its fields (the order they
    are read in). Fields without setting metadata (where it was loaded from ...) are left out.
    """
    hints = get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_METADATA)
        if spec is None:
            continue
        hint = _optional_inner(hints[field.name])
        kind = spec.kind or _kind_of(hint)
        if kind is None or kind == "custom":
            if spec.read is None and not spec.built:
                raise TypeError(f"{cls.__name__}.{field.name}: give its reader (read=)")
            kind = "custom"
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        found.append(
            dataclasses.replace(
                spec,
                name=field.name,
                default=default,
                kind=kind,
                choices=tuple(get_args(hint)) if get_origin(hint) is Literal else (),
                frozen=get_origin(hint) is frozenset,
            )
        )
    return tuple(found)


def setting_of(cls: type, name: str) -> Setting:
    """The setting behind the attribute ``name`` of ``cls``."""
    for spec in settings_of(cls):
        if spec.name == name:
            return spec
    raise KeyError(f"{cls.__name__}.{name} is not a setting")


def native_names(cls: type) -> frozenset[str]:
    """Every native field name the settings of ``cls`` are read from."""
    return frozenset(name for spec in settings_of(cls) for name in spec.spellings)


def keycloak_names(cls: type) -> frozenset[str]:
    """Every keycloak.json name given for the settings of ``cls``."""
    return frozenset(name for spec in settings_of(cls) for name in spec.keycloak_spellings)


def read_settings(
    fields: Fields,
    cls: type,
    *,
    keycloak: bool = False,
    aliases: bool = False,
    only: Collection[str] | None = None,
    into: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read the settings of ``cls`` from ``fields`` in their order, skipping those the
    builder reads (``built``) and those whose ``only_with`` field is not set; the result is
    keyword arguments for ``cls``.

    ``keycloak``: read only the settings keycloak.json has, by keycloak.json's names (a table
    of keycloak.json's own, such as ``credentials.jwt``). ``aliases``: keycloak.json's name is
    accepted beside the native one in the same table (the top level, which both share); when
    both are given, the native one wins. ``only``: just these (attribute names), for a builder
    that reads some first; ``into``: the values read so far, which are not read again.
    """
    values: dict[str, Any] = {} if into is None else into
    for spec in settings_of(cls):
        if spec.built or spec.name in values or (only is not None and spec.name not in only):
            continue
        if spec.only_with is not None and values.get(spec.only_with) is None:
            continue
        if keycloak:
            if spec.keycloak:
                values[spec.name] = _typed(fields, spec, spec.keycloak[0], spec.default)
            continue
        if spec.read is not None:
            values[spec.name] = spec.read(fields, spec, values)
            continue
        default = spec.default
        for alias in spec.keycloak if aliases else ():
            default = _typed(fields, spec, alias, default)
        values[spec.name] = _typed(fields, spec, spec.key, default)
    return values


def _typed(fields: Fields, spec: Setting, key: str, default: Any) -> Any:
    """``key`` read as the kind of ``spec`` says, ``default`` when absent."""
    if spec.kind == "flag":
        return fields.flag(key, default)
    if spec.kind == "integer":
        return fields.integer(key, default, *spec.bounds)
    if spec.kind == "string":
        return fields.string(key, default)
    if spec.kind == "choice":
        return fields.choice(key, spec.choices, default or "") or default
    if spec.kind == "strings":
        strings = fields.strings(key, spec.example)
        return frozenset(strings) if spec.frozen else strings
    if spec.kind == "path":
        return fields.path(key)
    if spec.kind == "secret":
        return fields.secret(key)
    if spec.kind == "timestamp":
        return fields.timestamp(key)
    raise TypeError(f"{spec.name}: a {spec.kind} setting has no reader of its own")


def _optional_inner(hint: Any) -> Any:
    """``X`` for ``X | None``; any other type as it is."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _kind_of(hint: Any) -> Kind | None:
    origin = get_origin(hint)
    if origin is Literal:
        return "choice"
    if origin in (tuple, frozenset) and get_args(hint)[0] is str:
        return "strings"
    return _KINDS.get(hint)
