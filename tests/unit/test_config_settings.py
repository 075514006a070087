"""Each configuration setting is declared once, on its dataclass field (adapter/config/_settings
.py): these tests hold the loader, the reference docs and the closed sets of words to it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from adapter.config import _settings, model
from adapter.config._fields import Fields
from adapter.config._settings import Setting, settings_of
from adapter.config.key_options import KeyState, KeyStateName
from adapter.config.model import (
    AdapterConfig,
    CredentialsConfig,
    KeyConfig,
    WebConfig,
    load_config,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
CLASSES = (AdapterConfig, WebConfig, CredentialsConfig, KeyConfig)
ISSUER = "https://sso.example.com/realms/demo"
TOP = {"issuer": ISSUER, "client-id": "my-app"}


def every_setting() -> Iterator[tuple[type, Setting]]:
    for cls in CLASSES:
        for spec in settings_of(cls):
            yield cls, spec


def ids(value: object) -> str:
    return value.name if isinstance(value, Setting) else getattr(value, "__name__", "")


# 1. the dataclass default is what loading gives when the file says nothing --------------------

# The least each table needs; what it gives is not compared.
MINIMAL: dict[type, dict[str, Any]] = {
    AdapterConfig: {**TOP, "public-client": True},
    WebConfig: {**TOP, "public-client": True},
    CredentialsConfig: {**TOP, "credentials": {"method": "client_secret_basic", "secret": "s"}},
    KeyConfig: {
        **TOP,
        "credentials": {"method": "private_key_jwt", "keys": [{"keystore": "/k/client.p12"}]},
    },
}


def loaded(cls: type, config: AdapterConfig) -> object:
    if cls is WebConfig:
        return config.web
    if cls is CredentialsConfig:
        return config.credentials
    if cls is KeyConfig:
        return config.credentials.keys[0]
    return config


def given(cls: type) -> set[str]:
    """The keys the minimal table of ``cls`` sets (their defaults cannot be seen loading it)."""
    minimal = MINIMAL[cls]
    keys = set(minimal) | set(minimal.get("credentials", {}))
    return keys | {key for table in minimal.get("credentials", {}).get("keys", []) for key in table}


UNGIVEN = [(cls, spec) for cls, spec in every_setting() if spec.key not in given(cls)]


def test_every_setting_but_the_few_a_table_needs_is_compared() -> None:
    assert len(UNGIVEN) >= len(list(every_setting())) - 8


@pytest.mark.parametrize(("cls", "spec"), UNGIVEN, ids=ids)
def test_the_default_is_what_an_empty_field_loads_as(cls: type, spec: Setting) -> None:
    minimal = MINIMAL[cls]
    config = load_config(minimal, base_dir=Path("/srv"))

    assert getattr(loaded(cls, config), spec.name) == spec.default


def test_keycloak_json_defaults_are_its_own() -> None:
    """keycloak.json's assertion lifetime defaults to the Java adapter's, and its keystore type
    to JKS when the extension does not tell it: both declared on the settings."""
    lifetime = _settings.setting_of(CredentialsConfig, "assertion_lifetime")
    keystore_type = _settings.setting_of(KeyConfig, "type")
    document = {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "resource": "my-app",
        "credentials": {"jwt": {"client-keystore-file": "/k/client.bin"}},
    }

    credentials = load_config(document).credentials

    assert credentials.assertion_lifetime == lifetime.keycloak_default == 10
    assert credentials.keys[0].type == keystore_type.keycloak_default == "JKS"


def test_a_keys_lock_fields_default_to_its_password_settings() -> None:
    passwords = tuple(
        _settings.setting_of(KeyConfig, name).key for name in ("password", "key_password")
    )

    assert KeyConfig(keystore=Path("/k"), field="").lock_fields == passwords


# 2. every setting is read from its own names, and nothing else is -----------------------------


def test_each_table_spells_each_name_once() -> None:
    for cls in CLASSES:
        names = [name for spec in settings_of(cls) for name in spec.spellings]
        assert len(names) == len(set(names)), cls.__name__
    top = [
        name
        for cls in (AdapterConfig, WebConfig)
        for spec in settings_of(cls)
        for name in (*spec.spellings, *spec.keycloak_spellings)
    ]
    assert len(top) == len(set(top)), "the top level holds AdapterConfig's and WebConfig's"


# What a table of each kind may hold, by its dotted prefix.
def known_at(prefix: str) -> frozenset[str]:
    if prefix == "":
        return model.top_level_fields()
    if prefix == "credentials":
        return model.NATIVE_CREDENTIALS_FIELDS | model.KEYCLOAK_CREDENTIALS_FIELDS
    if re.fullmatch(r"credentials\.keys\[\d+\]", prefix):
        return model.NATIVE_KEY_FIELDS
    if prefix == "credentials.jwt":
        return model.KEYCLOAK_JWT_FIELDS
    if prefix == "credentials.secret-jwt":
        return model.KEYCLOAK_SECRET_JWT_FIELDS
    assert prefix.startswith("access["), prefix
    return frozenset(
        {"path", "methods", "roles", "client-roles", "scopes", "any-role", "dpop", "acr", "max-age"}
    )


RICH = [
    {
        **TOP,
        "truststore": "/etc/ca.pem",  # its companions are read only beside it
        "truststore-password": "p",
        "session-secret": "x" * 32,
        "access": [{"path": "/admin/*", "roles": ["admin"], "acr": ["gold"], "max-age": 60}],
        "credentials": {
            "method": "private_key_jwt",
            "keys": [{"keystore": "/k/a.p12"}, {"keystore": "/k/b.p12", "state": "next"}],
        },
    },
    {**TOP, "credentials": {"method": "client_secret_jwt", "secret": "s"}},
    {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "resource": "my-app",
        "credentials": {"jwt": {"client-keystore-file": "/k/client.jks"}},
    },
    {**TOP, "credentials": {"secret-jwt": {"secret": "s"}}},
    {**TOP, "credentials": {"secret": "s"}},
]


@pytest.mark.parametrize("document", RICH)
def test_every_field_the_loader_reads_is_known(
    document: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names behind "unknown" and "did you mean" cover everything the readers ask for."""
    asked: set[tuple[str, str]] = set()
    raw, has = Fields.raw, Fields.has

    def recording_raw(self: Fields, key: str) -> Any:
        asked.add((self.prefix, key))
        return raw(self, key)

    def recording_has(self: Fields, key: str) -> bool:
        asked.add((self.prefix, key))
        return has(self, key)

    monkeypatch.setattr(Fields, "raw", recording_raw)
    monkeypatch.setattr(Fields, "has", recording_has)

    load_config(document)

    assert asked
    assert {(prefix, key) for prefix, key in asked if key not in known_at(prefix)} == set()


# 3. docs/configuration.md documents every setting, with the default the code has --------------

DOCS_TEXT = DOCS.read_text(encoding="utf-8")


@pytest.mark.parametrize(("cls", "spec"), list(every_setting()), ids=ids)
def test_the_reference_names_every_setting(cls: type, spec: Setting) -> None:
    for name in (*spec.keys, *spec.keycloak):
        assert re.search(rf"`(\[\[)?{re.escape(name)}(\]\])?`", DOCS_TEXT), (
            f"docs/configuration.md does not mention `{name}` ({cls.__name__}.{spec.name})"
        )


# The sections of the reference and the settings their tables describe.
SECTIONS = {
    "## Top level": (AdapterConfig, WebConfig),
    "## `credentials` in the native format": (CredentialsConfig,),
    "### `[[credentials.keys]]`": (KeyConfig,),
}


def documented_defaults() -> Iterator[tuple[str, str, str]]:
    """(section, native key, the default the docs give) for each table row that names
    settings in its first cell and starts its second with a value in backticks."""
    section = ""
    for line in DOCS_TEXT.splitlines():
        if line.startswith("## ") or (line.startswith("### ") and "credentials.keys" in line):
            section = line
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if section not in SECTIONS or len(cells) < 3 or not cells[1].startswith("`"):
            continue
        keys = re.findall(r"`([a-z0-9-]+)`", cells[0])
        values = re.findall(r"`([^`]*)`", cells[1].split(" (")[0])
        if len(values) == 1:
            values *= len(keys)
        yield from ((section, key, value) for key, value in zip(keys, values, strict=False))


def as_documented(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | frozenset) and not value:
        return "[]"
    return str(value)


def test_the_reference_gives_the_defaults_the_code_has() -> None:
    compared = 0
    for section, key, written in documented_defaults():
        specs = [
            spec
            for cls in SECTIONS[section]
            for spec in settings_of(cls)
            if key in spec.keys and spec.default not in (None, dataclasses.MISSING)
        ]
        for spec in specs:
            assert written == as_documented(spec.default), (
                f"docs/configuration.md gives {key} the default {written!r}; the code has "
                f"{spec.default!r}"
            )
            compared += 1
    assert compared >= 30  # the tables were found


# 4. the closed sets of words are declared once ------------------------------------------------


def test_key_states_are_the_rotation_states() -> None:
    assert get_args(KeyStateName) == tuple(state.value for state in KeyState)


@pytest.mark.parametrize(("cls", "spec"), list(every_setting()), ids=ids)
def test_choices_come_from_the_fields_literal(cls: type, spec: Setting) -> None:
    if spec.kind == "choice":
        assert spec.choices, f"{cls.__name__}.{spec.name}"
        assert spec.default is None or spec.default in spec.choices
    else:
        assert spec.choices == ()


def test_the_choices_a_file_may_give() -> None:
    assert model.METHODS == (
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "none",
    )
    assert _settings.setting_of(CredentialsConfig, "method").choices == model.METHODS
    assert _settings.setting_of(WebConfig, "session_store").choices == model.SESSION_STORES
    assert _settings.setting_of(AdapterConfig, "ssl_required").choices == model.SSL_REQUIRED
    assert _settings.setting_of(AdapterConfig, "truststore_type").choices == model.TRUSTSTORE_TYPES
    assert model.TRUSTSTORE_TYPES == ("PKCS12", "JKS", "PEM")
    assert _settings.setting_of(KeyConfig, "state").choices == model.KEY_STATES


def test_config_check_explains_every_setting_without_effect() -> None:
    assert model.KEYCLOAK_NO_EFFECT_FIELDS == {
        "always-refresh-token": "tokens are refreshed shortly before they expire",
        "autodetect-bearer-only": "API requests always get 401, browser navigations a login",
        "confidential-port": "https is decided by ssl-required, redirect-uri and the request",
        "pkce": "PKCE S256 is always used",
        "enable-pkce": "PKCE S256 is always used",
    }
