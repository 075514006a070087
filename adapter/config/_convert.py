"""keycloak.json -> the native TOML configuration (``oidc-adapter config convert``).

A keycloak.json holds one client key; a rotation needs the native format's list of keys. The
conversion keeps every setting as written, ``${env.VAR}`` references included (the native
format substitutes them the same way), so one environment serves both files. It never writes a
secret: a secret written in keycloak.json becomes ``NAME-env`` naming a variable the user must
set, and the conversion says so. The result is loaded before it is handed out and must give
the same configuration as the original (issuer, client, method, key and its passwords).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.config._fields import ENV_REFERENCE, substitute_env
from adapter.config._settings import keycloak_names, setting_of, settings_of
from adapter.config.model import (
    KEYCLOAK_CREDENTIALS_FIELDS,
    KEYCLOAK_JWT_FIELDS,
    KEYCLOAK_NO_EFFECT_FIELDS,
    KEYCLOAK_PROVIDERS,
    KEYCLOAK_SECRET_JWT_FIELDS,
    KEYCLOAK_UNUSED_FIELDS,
    AdapterConfig,
    CredentialsConfig,
    KeyConfig,
    WebConfig,
    keycloak_keystore_type,
    load_config,
    read_document,
    top_level_fields,
)
from adapter.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CREDENTIALS = setting_of(AdapterConfig, "credentials").key
_METHOD = setting_of(CredentialsConfig, "method").key
_KEYS = setting_of(CredentialsConfig, "keys").key
_STATE = setting_of(KeyConfig, "state").key
_SECRET = frozenset(setting_of(CredentialsConfig, "secret").keycloak_spellings)
_FOR_CREDENTIALS = keycloak_names(CredentialsConfig)  # in the jwt table: not the key's
# What each top-level field holds, by every name it may be spelled with (both formats share
# the top level): secrets become -env references, paths are moved to the new file's directory.
_TOP_LEVEL_KINDS = {
    name: spec.kind
    for cls in (AdapterConfig, WebConfig)
    for spec in settings_of(cls)
    for name in (*spec.keys, *spec.keycloak)
}
# Fields the Java adapters act on and this adapter only checks (config check: "no effect"):
# not written, so the new file holds only what takes effect; listed as left out, with why.
_NO_EFFECT = KEYCLOAK_NO_EFFECT_FIELDS
# The attributes they fill and their native defaults, for comparing the result with the original.
_NO_EFFECT_DEFAULTS = {
    spec.name: spec.default for spec in settings_of(AdapterConfig) if spec.no_effect is not None
}
# The variable suggested for each secret written in keycloak.json (by its native field name).
_VARIABLES = {
    "secret": "OIDC_CLIENT_SECRET",
    "password": "OIDC_KEYSTORE_PASSWORD",
    "key-password": "OIDC_KEY_PASSWORD",
}


@dataclass(frozen=True)
class Variable:
    """An environment variable the converted file reads, and what it must hold."""

    name: str
    written: str | None = None  # the keycloak.json field whose literal value it must hold

    def describe(self, source: Path, out: str) -> str:
        if self.written is None:
            return f"{self.name} (as for {source.name})"
        return (
            f"set {self.name} to the {self.written} written in {source.name} "
            f"({out} names the variable, not the value)"
        )


@dataclass(frozen=True, repr=False)
class Conversion:
    """The native configuration: its TOML text and what the user must know about it."""

    text: str
    config: AdapterConfig  # the converted file as loaded (equal to keycloak.json's)
    variables: tuple[Variable, ...]
    left_out: tuple[str, ...]  # "name (why)" for each keycloak.json field not carried over


def convert_keycloak_json(source: Path, out: Path | None) -> Conversion:
    """Convert the keycloak.json at ``source`` for a file at ``out`` (``None``: beside it).

    Raises :class:`ConfigError` for a file that does not load, is native already, or cannot be
    moved to ``out``'s directory (a relative path built from ``${env.…}``).
    """
    original = load_config(source, web=False)
    if original.credentials.method != "none" and not original.credentials.keycloak_json:
        raise ConfigError(f"{source}: is in the native format already; nothing to convert")
    document = read_document(source)
    source_dir = source.resolve().parent
    converter = _Converter(source_dir, out.resolve().parent if out else source_dir)
    converter.reserved = _referenced(document)
    native = converter.top_level(document, original)
    text = to_toml(native, _header(source))
    if tomllib.loads(text) != native:  # the writer below is small: prove it on every use
        raise ConfigError(f"{source}: the converted TOML does not read back; please report it")
    with _environment(converter.values):
        converted = load_config(native, base_dir=converter.out_dir, web=False)
    if _comparable(converted) != _comparable(original):
        raise ConfigError(f"{source}: the conversion would change the configuration; report it")
    return Conversion(text, converted, tuple(converter.variables.values()), converter.left_out)


def _header(source: Path) -> str:
    return (
        f"# Converted from {source.name} by `oidc-adapter config convert`: the same issuer,\n"
        "# client, authentication and key. Secrets are not written here: each -env field names\n"
        "# the environment variable that holds one. Keys rotate with `oidc-adapter keys rotate`.\n"
    )


@dataclass
class _Converter:
    """Builds the native document, collecting the variables it reads."""

    source_dir: Path
    out_dir: Path
    variables: dict[str, Variable] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # new variable -> its secret value
    left_out: tuple[str, ...] = ()
    reserved: set[str] = field(default_factory=set)  # variables keycloak.json reads already

    def top_level(self, document: Mapping[str, Any], original: AdapterConfig) -> dict[str, Any]:
        native: dict[str, Any] = {}
        if self._issuer_is_literal(document):
            native["issuer"] = original.issuer  # what auth-server-url + realm name
        client = setting_of(AdapterConfig, "client_id")
        (resource,) = client.keycloak
        native[client.key] = document.get(client.key, document.get(resource))
        known = top_level_fields()
        for name, value in document.items():
            if value is None or name in native or name in (resource, _CREDENTIALS):
                continue
            if name in ("realm", "auth-server-url") and "issuer" in native:
                continue
            if name in _NO_EFFECT:  # read and checked, but nothing here depends on it
                self.left_out += (f"{name} (Java adapters only: {_NO_EFFECT[name]})",)
                continue
            if name in KEYCLOAK_UNUSED_FIELDS or name not in known:
                why = "Java adapters only" if name in KEYCLOAK_UNUSED_FIELDS else "unknown"
                self.left_out += (f"{name} ({why})",)
                continue
            native.update(self._field(document, name, value))
        credentials = document.get(_CREDENTIALS)
        if isinstance(credentials, Mapping):
            native[_CREDENTIALS] = self.credentials(credentials)
        return native

    @staticmethod
    def _issuer_is_literal(document: Mapping[str, Any]) -> bool:
        parts = [document.get(name) for name in ("realm", "auth-server-url")]
        written = all(isinstance(part, str) and "${" not in part for part in parts)
        return written and "issuer" not in document

    def _field(self, table: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
        """One top-level field of keycloak.json as the native format writes it (the same name:
        the top level is shared by both spellings)."""
        kind = _TOP_LEVEL_KINDS.get(name)
        if kind == "secret":
            return self.secret(table, name, name, name)
        if name.endswith("-env") and kind is None:  # the name of a variable holding a secret
            self._reads(value)
            return {name: value}
        if kind == "path" or (name.endswith("-file") and kind is None):
            return {name: self.path(value, name)}
        self._references(value)
        return {name: _without_nulls(value) if kind == "custom" else value}

    def credentials(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """keycloak.json's one provider (secret, jwt or secret-jwt) as a native method: each
        field of its table under the native name its setting has."""
        self._leave_unknown(table, KEYCLOAK_CREDENTIALS_FIELDS, f"{_CREDENTIALS}.")
        provider = next(name for name in KEYCLOAK_PROVIDERS if table.get(name) is not None)
        native: dict[str, Any] = {_METHOD: KEYCLOAK_PROVIDERS[provider]}
        if provider == "secret":  # in the credentials table itself
            native.update(self._native(table, CredentialsConfig, _SECRET, f"{_CREDENTIALS}."))
            return native
        where = f"{_CREDENTIALS}.{provider}."
        known = KEYCLOAK_JWT_FIELDS if provider == "jwt" else KEYCLOAK_SECRET_JWT_FIELDS
        self._leave_unknown(table[provider], known, where)
        native.update(self._native(table[provider], CredentialsConfig, known, where))
        if provider == "jwt":  # one key; its algorithm is the credentials' (written above)
            key = self._native(table[provider], KeyConfig, known - _FOR_CREDENTIALS, where)
            native[_KEYS] = [{**key, _STATE: "active"}]
        return native

    def _native(
        self, table: Mapping[str, Any], cls: type, known: frozenset[str], where: str
    ) -> dict[str, Any]:
        """The settings of ``cls`` that a table of keycloak.json holds (by the names in
        ``known``), under their native names; keycloak.json's default where it has one."""
        native: dict[str, Any] = {}
        for spec in settings_of(cls):
            names = [name for name in spec.keycloak if name in known]
            if not names:
                continue
            if spec.kind == "secret":
                native.update(self.secret(table, names[0], spec.key, where + names[0]))
                continue
            # Of two names (token-timeout, token-expiration), the newer one wins, as at load.
            value = next((table[n] for n in reversed(names) if table.get(n) is not None), None)
            if spec.kind == "path":
                value = self.path(value, where + names[0])
            else:
                self._references(value)
            if spec.name == "type":  # Keycloak's default depends on the keystore's extension
                keystore = table[setting_of(KeyConfig, "keystore").keycloak[0]]
                value = keycloak_keystore_type(str(keystore), value)
            elif value is None:
                value = spec.keycloak_default
            if value is not None:
                native[spec.key] = value
        return native

    def _leave_unknown(self, table: Mapping[str, Any], known: frozenset[str], prefix: str) -> None:
        """Fields no reader knows (the load warned about them) are not carried over."""
        self.left_out += tuple(f"{prefix}{name} (unknown)" for name in table if name not in known)

    def secret(
        self, table: Mapping[str, Any], name: str, target: str, where: str
    ) -> dict[str, Any]:
        """A secret as ``target-env`` (or ``target-file``): never its value."""
        for suffix in ("-env", "-file"):
            given = table.get(name + suffix)
            if given is not None:
                if suffix == "-env":
                    self._reads(given)
                    return {target + suffix: given}
                return {target + suffix: self.path(given, where + suffix)}
        value = table.get(name)
        if value is None:
            return {}
        reference = ENV_REFERENCE.fullmatch(value) if isinstance(value, str) else None
        if reference is not None:  # ${env.X} (a default written beside it is not carried over)
            self._reads(reference.group(1))
            return {target + "-env": reference.group(1)}
        return {
            target + "-env": self._variable_for(substitute_env(str(value), where), target, where)
        }

    def _variable_for(self, value: str, target: str, where: str) -> str:
        """The variable that will hold ``value``: one per distinct value, never in use already."""
        for name, held in self.values.items():
            if held == value:
                return name
        base = _VARIABLES.get(target, "OIDC_" + re.sub(r"[^A-Z0-9]", "_", target.upper()))
        name, number = base, 1
        while name in self.variables or name in self.reserved:
            number += 1
            name = f"{base}_{number}"
        self.variables[name] = Variable(name, where)
        self.values[name] = value
        return name

    def _reads(self, variable: Any) -> None:
        if isinstance(variable, str) and variable not in self.variables:
            self.variables[variable] = Variable(variable)

    def _references(self, value: Any) -> None:
        if isinstance(value, str):
            for match in ENV_REFERENCE.finditer(value):
                self._reads(match.group(1))
        elif isinstance(value, list):
            for item in value:
                self._references(item)

    def path(self, value: Any, where: str) -> Any:
        """A path as it reads from the new file's directory (relative paths are kept relative)."""
        self._references(value)
        if not isinstance(value, str) or self.out_dir == self.source_dir:
            return value
        text = value.removeprefix("classpath:")
        if text.startswith(("/", "~")):
            return value
        if "${" in text:
            raise ConfigError(
                f"{where}: {value!r} is relative and built from ${{env.…}}; write the new file "
                f"into {self.source_dir}{os.sep} or make the path absolute"
            )
        return os.path.relpath(self.source_dir / text, self.out_dir)


def _without_nulls(node: Any) -> Any:
    """A nested value (the policy-enforcer block) without JSON's nulls, which TOML cannot
    write and which mean "not given" to both loaders."""
    if isinstance(node, Mapping):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [_without_nulls(item) for item in node if item is not None]
    return node


def _referenced(node: Any) -> set[str]:
    """Every variable a document names: in ``${env.…}`` references and ``-env`` fields."""
    if isinstance(node, Mapping):
        names = {v for k, v in node.items() if str(k).endswith("-env") and isinstance(v, str)}
        return names.union(*(_referenced(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced(item) for item in node))
    if isinstance(node, str):
        return {match.group(1) for match in ENV_REFERENCE.finditer(node)}
    return set()


def _comparable(config: AdapterConfig) -> AdapterConfig:
    """``config`` without what only says how it was written (spelling, field names, paths
    spelled relative to another directory)."""
    credentials = config.credentials
    keys = tuple(
        dataclasses.replace(
            key,
            keystore=key.keystore.resolve(),
            certificate=key.certificate.resolve() if key.certificate else None,
            algorithm=key.algorithm or credentials.algorithm,
            field="",
            lock_fields=("", ""),
        )
        for key in credentials.keys
    )
    return dataclasses.replace(
        config,
        **_NO_EFFECT_DEFAULTS,  # left out on purpose: they change nothing
        no_effect_fields=(),
        credentials=dataclasses.replace(credentials, keys=keys, keycloak_json=False),
        realm=None,
        auth_server_url=None,
        truststore=config.truststore.resolve() if config.truststore else None,
        source=None,
        unused_fields=(),
        secret_files=tuple(path.resolve() for path in config.secret_files),
    )


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """The new variables set to keycloak.json's values while the result is checked (only in
    this process, only for the check)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


# --- TOML ------------------------------------------------------------------------------------


def to_toml(document: Mapping[str, Any], header: str = "") -> str:
    """``document`` as TOML: its top-level values, then ``[credentials]`` and its keys."""
    lines = [header] if header else []
    tables = {k: v for k, v in document.items() if isinstance(v, Mapping)}
    lines += [_pair(k, v) for k, v in document.items() if k not in tables]
    for name, table in tables.items():
        arrays = {k: v for k, v in table.items() if _is_table_array(v)}
        lines += ["", f"[{_key(name)}]"]
        lines += [_pair(k, v) for k, v in table.items() if k not in arrays]
        for array, items in arrays.items():
            for item in items:
                lines += ["", f"[[{_key(name)}.{_key(array)}]]"]
                lines += [_pair(k, v) for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _pair(key: str, value: Any) -> str:
    return f"{_key(key)} = {_value(value)}"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).replace("infinity", "inf")
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(_pair(str(k), v) for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write a {type(value).__name__} value in TOML")


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, DEL aside (TOML wants it escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
