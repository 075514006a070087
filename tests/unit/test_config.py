"""load_config: keycloak.json as exported, native TOML/JSON, ${env.VAR}, errors and warnings.

Parsing and validation only: no keystore is opened here (that is load_key_ring's job), so the
keystore paths in these configurations need not exist.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter import (
    AdapterConfig,
    ConfigError,
    ConfigWarning,
    CredentialsConfig,
    KeyConfig,
    Secret,
    WebConfig,
    load_config,
)
from adapter.keys.keystore import keystore_type

# Values that must never show up in a message or a repr.
CLIENT_SECRET = "cl1ent-S3cret-4f2a9e"
STORE_PASSWORD = "st0re-Passw0rd-81bc"
KEY_PASSWORD = "k3y-Passw0rd-77d0"
FILE_PASSWORD = "f1le-Passw0rd-c3e5"
ENV_PASSWORD = "env-Passw0rd-9a41"
SECRET_VALUES = (CLIENT_SECRET, STORE_PASSWORD, KEY_PASSWORD, FILE_PASSWORD, ENV_PASSWORD)

ISSUER = "https://sso.example.com/realms/demo"

# A confidential client, as the Keycloak admin console exports it (Clients > Action > Download
# adapter config > Keycloak OIDC JSON), plus the optional switches the console adds.
KEYCLOAK_EXPORT: dict[str, Any] = {
    "realm": "demo",
    "auth-server-url": "https://sso.example.com/",
    "ssl-required": "external",
    "resource": "my-app",
    "verify-token-audience": True,
    "credentials": {"secret": CLIENT_SECRET},
    "use-resource-role-mappings": True,
    "confidential-port": 0,
}

NATIVE_TOML = """\
issuer = "https://sso.example.com/realms/demo"
client-id = "my-app"

[credentials]
method = "private_key_jwt"
algorithm = "PS256"
assertion-lifetime = 30
assertion-audience = "token-endpoint"

[[credentials.keys]]
keystore = "keys/2026-11.p12"
password-env = "OIDC_TEST_KEYSTORE_PASSWORD"
alias = "my-app"
state = "active"

[[credentials.keys]]
keystore = "keys/2026-12.p12"
password-env = "OIDC_TEST_KEYSTORE_PASSWORD"
activate-at = "2026-12-01T00:00:00Z"

[[credentials.keys]]
keystore = "keys/2027-01.jks"
type = "JKS"
password-file = "secrets/keystore.pass"
key-password = "k3y-Passw0rd-77d0"
alias = "next-key"
kid = "my-kid-2027"
algorithm = "ES256"
activate-at = 2027-01-01T00:00:00+01:00

[[credentials.keys]]
keystore = "/etc/oidc/old.pem"
password = "st0re-Passw0rd-81bc"
state = "retired"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OIDC_TEST_* variable leaks in from the outside."""
    for name in (
        "OIDC_TEST_KEYSTORE_PASSWORD",
        "OIDC_TEST_HOST",
        "OIDC_TEST_REALM",
        "OIDC_TEST_SECRET",
        "OIDC_TEST_UNSET",
        "OIDC_TEST_PUBLIC",
        "OIDC_TEST_PORT",
        "OIDC_TEST_TIMEOUT",
        "OIDC_TEST_LIFETIME",
        "OIDC_TEST_ISSUER",
    ):
        monkeypatch.delenv(name, raising=False)


def write(directory: Path, name: str, content: str | dict[str, Any]) -> Path:
    """Write a configuration file (a dict is written as JSON) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(source: Path | dict[str, Any], *, base_dir: Path | None = None) -> str:
    """The message of the ConfigError that loading ``source`` raises, checked for hygiene."""
    with pytest.raises(ConfigError) as caught:
        load_config(source, base_dir=base_dir)
    message = str(caught.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    for value in SECRET_VALUES:
        assert value not in message, message
    return message


def native(**credentials: Any) -> dict[str, Any]:
    """A native configuration with the given [credentials] table."""
    return {"issuer": ISSUER, "client-id": "my-app", "credentials": credentials}


def native_key(**key: Any) -> dict[str, Any]:
    """A native private_key_jwt configuration with one key."""
    return native(method="private_key_jwt", keys=[{"keystore": "k.p12", **key}])


# 1. keycloak.json as exported ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth_server_url", "issuer"),
    [
        ("https://sso.example.com/", "https://sso.example.com/realms/demo"),
        ("https://sso.example.com", "https://sso.example.com/realms/demo"),
        ("https://sso.example.com/auth", "https://sso.example.com/auth/realms/demo"),
        ("https://sso.example.com/auth/", "https://sso.example.com/auth/realms/demo"),
        ("https://sso.example.com:8443/auth//", "https://sso.example.com:8443/auth/realms/demo"),
    ],
)
def test_keycloak_export_with_client_secret(
    tmp_path: Path, auth_server_url: str, issuer: str
) -> None:
    path = write(tmp_path, "keycloak.json", {**KEYCLOAK_EXPORT, "auth-server-url": auth_server_url})

    config = load_config(path)

    assert config.issuer == issuer
    assert config.client_id == "my-app"
    assert config.realm == "demo"
    assert config.auth_server_url == auth_server_url
    assert config.ssl_required == "external"
    assert config.confidential_port == 0
    assert config.verify_token_audience is True
    assert config.use_resource_role_mappings is True
    assert config.public_client is False
    assert config.bearer_only is False
    assert config.source == path
    assert config.unused_fields == ()
    credentials = config.credentials
    assert credentials.method == "client_secret_basic"
    assert isinstance(credentials.secret, Secret)
    assert credentials.secret.reveal() == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(credentials.secret)
    assert CLIENT_SECRET not in str(credentials.secret)
    assert credentials.keys == ()
    assert credentials.algorithm is None


def test_keycloak_export_defaults(tmp_path: Path) -> None:
    """Fields the export leaves out take Keycloak's (or the adapter's) defaults."""
    doc = {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "resource": "my-app",
        "credentials": {"secret": CLIENT_SECRET},
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config == AdapterConfig(
        issuer=ISSUER,
        client_id="my-app",
        credentials=CredentialsConfig(method="client_secret_basic", secret=Secret(CLIENT_SECRET)),
        realm="demo",
        auth_server_url="https://sso.example.com/",
        source=tmp_path / "keycloak.json",
    )
    assert config.ssl_required == "external"
    assert config.confidential_port == 8443
    assert config.pkce is True
    assert config.principal_attribute == "sub"


def test_keycloak_export_public_client(tmp_path: Path) -> None:
    doc = {
        "realm": "demo",
        "auth-server-url": "http://localhost:8080/",
        "ssl-required": "external",
        "resource": "my-spa",
        "public-client": True,
        "confidential-port": 0,
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config.issuer == "http://localhost:8080/realms/demo"
    assert config.client_id == "my-spa"
    assert config.public_client is True
    assert config.credentials == CredentialsConfig()
    assert config.credentials.method == "none"


def test_keycloak_export_bearer_only(tmp_path: Path) -> None:
    doc = {
        "realm": "demo",
        "bearer-only": True,
        "auth-server-url": "https://sso.example.com/auth/",
        "ssl-required": "external",
        "resource": "my-api",
        "verify-token-audience": True,
        "use-resource-role-mappings": True,
        "confidential-port": 0,
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config.issuer == "https://sso.example.com/auth/realms/demo"
    assert config.client_id == "my-api"
    assert config.bearer_only is True
    assert config.public_client is False
    assert config.credentials.method == "none"


def test_keycloak_realm_is_percent_encoded_in_issuer() -> None:
    config = load_config({**KEYCLOAK_EXPORT, "realm": "my realm/x"}, base_dir=Path("/srv"))

    assert config.issuer == "https://sso.example.com/realms/my%20realm%2Fx"
    assert config.realm == "my realm/x"


def test_resource_and_client_id_may_both_be_given_when_equal() -> None:
    config = load_config({**KEYCLOAK_EXPORT, "client-id": "my-app"})

    assert config.client_id == "my-app"


def test_issuer_agreeing_with_auth_server_url_and_realm_is_accepted() -> None:
    config = load_config({**KEYCLOAK_EXPORT, "issuer": ISSUER})

    assert config.issuer == ISSUER


# 2. keycloak.json credentials.jwt and secret-jwt ------------------------------------------------


@pytest.mark.parametrize("keystore_type_name", ["jks", "JKS", "PKCS12", "pkcs12"])
def test_keycloak_jwt_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keystore_type_name: str
) -> None:
    conf_dir = tmp_path / "conf"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {
            "jwt": {
                "client-keystore-file": "keys/client.jks",
                "client-keystore-type": keystore_type_name,
                "client-keystore-password": STORE_PASSWORD,
                "client-key-password": KEY_PASSWORD,
                "client-key-alias": "my-app",
                "token-timeout": 10,
                "algorithm": "RS256",
            }
        },
    }

    config = load_config(write(conf_dir, "keycloak.json", doc))

    credentials = config.credentials
    assert credentials.method == "private_key_jwt"
    assert credentials.assertion_lifetime == 10
    assert credentials.algorithm == "RS256"
    assert credentials.secret is None
    assert credentials.keys == (
        KeyConfig(
            keystore=conf_dir.resolve() / "keys" / "client.jks",
            field="credentials.jwt",
            type=keystore_type_name,
            password=Secret(STORE_PASSWORD),
            key_password=Secret(KEY_PASSWORD),
            alias="my-app",
            kid=None,
            algorithm="RS256",
            state="active",
            activate_at=None,
            certificate=None,
        ),
    )
    (key,) = credentials.keys
    assert key.keystore.is_absolute()
    assert key.password is not None
    assert key.password.reveal() == STORE_PASSWORD
    assert key.key_password is not None
    assert key.key_password.reveal() == KEY_PASSWORD
    # The type is kept as written; the keystore reader matches it in any case, like Keycloak.
    assert keystore_type(key.keystore, key.type) in ("JKS", "PKCS12")


def test_keycloak_jwt_as_the_console_exports_it(tmp_path: Path) -> None:
    """The console's template: placeholder path with spaces, lower-case type, no algorithm."""
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {
            "jwt": {
                "client-keystore-file": "REPLACE WITH THE LOCATION OF YOUR KEYSTORE FILE",
                "client-keystore-type": "jks",
                "client-keystore-password": "REPLACE WITH THE KEYSTORE PASSWORD",
                "client-key-password": "REPLACE WITH THE KEY PASSWORD IN KEYSTORE",
                "client-key-alias": "my-app",
                "token-timeout": 10,
            }
        },
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    (key,) = config.credentials.keys
    assert key.keystore == tmp_path.resolve() / "REPLACE WITH THE LOCATION OF YOUR KEYSTORE FILE"
    assert key.algorithm is None
    assert config.credentials.algorithm is None
    assert config.credentials.assertion_lifetime == 10


def test_keycloak_jwt_token_expiration_is_accepted(tmp_path: Path) -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {
            "jwt": {
                "client-keystore-file": "classpath:keystore-client.jks",
                "client-keystore-type": "JKS",
                "client-keystore-password": STORE_PASSWORD,
                "client-key-password": KEY_PASSWORD,
                "client-key-alias": "clientkey",
                "token-expiration": 10,
            }
        },
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config.credentials.assertion_lifetime == 10
    (key,) = config.credentials.keys
    # "classpath:" has no meaning outside Java: the rest is a path beside the config file.
    assert key.keystore == tmp_path.resolve() / "keystore-client.jks"
    assert key.alias == "clientkey"


def test_keycloak_jwt_without_token_timeout_defaults_to_keycloaks_10() -> None:
    doc = {**KEYCLOAK_EXPORT, "credentials": {"jwt": {"client-keystore-file": "/k/c.p12"}}}

    config = load_config(doc)

    assert config.credentials.assertion_lifetime == 10, "the Java adapter's default"
    (key,) = config.credentials.keys
    assert key.keystore == Path("/k/c.p12")
    assert key.password is None
    assert key.key_password is None
    assert key.alias is None


@pytest.mark.parametrize(
    ("filename", "expected_type"),
    [
        ("client.ks", "JKS"),
        ("client", "JKS"),
        ("client.jks", None),
        ("client.keystore", None),
        ("client.p12", None),
        ("client.PFX", None),
        ("client.pem", None),
        ("client.json", None),
        ("client.jwk", None),
        ("client.key", None),
    ],
)
def test_keycloak_jwt_keystore_type_defaults_to_jks_unless_the_extension_says_otherwise(
    filename: str, expected_type: str | None
) -> None:
    doc = {**KEYCLOAK_EXPORT, "credentials": {"jwt": {"client-keystore-file": filename}}}

    config = load_config(doc, base_dir=Path("/srv/app"))

    (key,) = config.credentials.keys
    assert key.keystore == Path("/srv/app") / filename
    assert key.type == expected_type


def test_keycloak_jwt_token_timeout_and_token_expiration_together_fail(tmp_path: Path) -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {
            "jwt": {
                "client-keystore-file": "k.jks",
                "client-keystore-password": STORE_PASSWORD,
                "token-timeout": 10,
                "token-expiration": 10,
            }
        },
    }

    message = config_error(write(tmp_path, "keycloak.json", doc))

    assert "credentials.jwt.token-timeout" in message
    assert "token-expiration" in message


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_keycloak_secret_jwt(tmp_path: Path, algorithm: str) -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {"secret-jwt": {"secret": CLIENT_SECRET, "algorithm": algorithm}},
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config.credentials == CredentialsConfig(
        method="client_secret_jwt",
        secret=Secret(CLIENT_SECRET),
        algorithm=algorithm,
        assertion_lifetime=10,  # Keycloak's default token-timeout
    )
    assert config.credentials.secret is not None
    assert config.credentials.secret.reveal() == CLIENT_SECRET


def test_keycloak_secret_jwt_defaults_to_hs256() -> None:
    doc = {**KEYCLOAK_EXPORT, "credentials": {"secret-jwt": {"secret": CLIENT_SECRET}}}

    assert load_config(doc).credentials.algorithm == "HS256"


# 3. ${env.VAR} substitution ------------------------------------------------------------------


def test_env_reference_inside_a_larger_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_HOST", "localhost:8080")

    config = load_config(
        {**KEYCLOAK_EXPORT, "auth-server-url": "http://${env.OIDC_TEST_HOST}/auth"}
    )

    assert config.issuer == "http://localhost:8080/auth/realms/demo"
    assert config.auth_server_url == "http://localhost:8080/auth"


def test_env_reference_with_default_uses_the_default_when_unset() -> None:
    config = load_config({**KEYCLOAK_EXPORT, "realm": "${env.OIDC_TEST_REALM:demo}"})

    assert config.realm == "demo"
    assert config.issuer == ISSUER


def test_env_reference_with_default_prefers_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_REALM", "prod")

    config = load_config({**KEYCLOAK_EXPORT, "realm": "${env.OIDC_TEST_REALM:demo}"})

    assert config.realm == "prod"
    assert config.issuer == "https://sso.example.com/realms/prod"


def test_env_reference_with_empty_default_and_several_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_TEST_HOST", "sso.example.com")

    config = load_config(
        {
            **KEYCLOAK_EXPORT,
            "auth-server-url": "https://${env.OIDC_TEST_HOST}${env.OIDC_TEST_PORT:}/auth",
        }
    )

    assert config.issuer == "https://sso.example.com/auth/realms/demo"


def test_env_reference_in_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)

    config = load_config({**KEYCLOAK_EXPORT, "credentials": {"secret": "${env.OIDC_TEST_SECRET}"}})

    assert config.credentials.secret is not None
    assert config.credentials.secret.reveal() == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(config)


def test_env_reference_in_keycloak_jwt_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_TEST_KEYSTORE_PASSWORD", STORE_PASSWORD)
    monkeypatch.setenv("OIDC_TEST_TIMEOUT", "10")
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {
            "jwt": {
                "client-keystore-file": "${env.OIDC_TEST_DIR:keys}/client.p12",
                "client-keystore-password": "${env.OIDC_TEST_KEYSTORE_PASSWORD}",
                "token-timeout": "${env.OIDC_TEST_TIMEOUT}",
            }
        },
    }

    config = load_config(write(tmp_path, "keycloak.json", doc))

    (key,) = config.credentials.keys
    assert key.keystore == tmp_path.resolve() / "keys" / "client.p12"
    assert key.password == Secret(STORE_PASSWORD)
    assert config.credentials.assertion_lifetime == 10


def test_env_reference_in_a_native_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_TEST_ISSUER", ISSUER)
    monkeypatch.setenv("OIDC_TEST_LIFETIME", "10")
    text = """\
issuer = "${env.OIDC_TEST_ISSUER}"
client-id = "${env.OIDC_TEST_CLIENT:my-app}"

[credentials]
method = "client_secret_jwt"
secret = "${env.OIDC_TEST_SECRET:fallback}"
assertion-lifetime = "${env.OIDC_TEST_LIFETIME}"
"""

    config = load_config(write(tmp_path, "adapter.toml", text))

    assert config.issuer == ISSUER
    assert config.client_id == "my-app"
    assert config.credentials.assertion_lifetime == 10
    assert config.credentials.secret == Secret("fallback")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("yes", True), ("1", True), ("false", False), ("0", False)],
)
def test_flags_given_as_strings_after_substitution(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("OIDC_TEST_PUBLIC", value)
    doc = {
        "issuer": ISSUER,
        "resource": "my-app",
        "public-client": "${env.OIDC_TEST_PUBLIC}",
        "bearer-only": "${env.OIDC_TEST_PUBLIC}",
        "verify-token-audience": value,
    }
    if not expected:
        doc["credentials"] = {"secret": CLIENT_SECRET}

    config = load_config(doc)

    assert config.public_client is expected
    assert config.bearer_only is expected
    assert config.verify_token_audience is expected


def test_integers_given_as_strings_after_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_PORT", "10")

    config = load_config(
        {
            **KEYCLOAK_EXPORT,
            "confidential-port": "${env.OIDC_TEST_PORT}",
            "min-time-between-jwks-requests": " 10 ",
            "token-minimum-time-to-live": "10",
        }
    )

    assert config.confidential_port == 10
    assert config.min_time_between_jwks_requests == 10
    assert config.token_minimum_time_to_live == 10


def test_missing_env_variable_without_default_names_field_and_variable(tmp_path: Path) -> None:
    doc = {**KEYCLOAK_EXPORT, "auth-server-url": "http://${env.OIDC_TEST_HOST}/auth"}
    path = write(tmp_path, "keycloak.json", doc)

    message = config_error(path)

    assert message.startswith(f"{path}: auth-server-url: ")
    assert "OIDC_TEST_HOST" in message
    assert "not set" in message


def test_missing_env_variable_in_a_secret_names_the_nested_field() -> None:
    doc = {**KEYCLOAK_EXPORT, "credentials": {"secret": "${env.OIDC_TEST_SECRET}"}}

    message = config_error(doc)

    assert message.startswith("credentials.secret: ")
    assert "OIDC_TEST_SECRET" in message


def test_missing_env_variable_in_a_key_names_the_key_field() -> None:
    message = config_error(native_key(alias="${env.OIDC_TEST_UNSET}"))

    assert message.startswith("credentials.keys[0].alias: ")
    assert "OIDC_TEST_UNSET" in message


# 4. native TOML and JSON ---------------------------------------------------------------------


def _expected_native_keys(conf_dir: Path) -> tuple[KeyConfig, ...]:
    return (
        KeyConfig(
            keystore=conf_dir / "keys" / "2026-11.p12",
            field="credentials.keys[0]",
            password=Secret(ENV_PASSWORD),
            alias="my-app",
            state="active",
        ),
        KeyConfig(
            keystore=conf_dir / "keys" / "2026-12.p12",
            field="credentials.keys[1]",
            password=Secret(ENV_PASSWORD),
            activate_at=datetime(2026, 12, 1, tzinfo=UTC),
        ),
        KeyConfig(
            keystore=conf_dir / "keys" / "2027-01.jks",
            field="credentials.keys[2]",
            type="JKS",
            password=Secret(FILE_PASSWORD),
            key_password=Secret(KEY_PASSWORD),
            alias="next-key",
            kid="my-kid-2027",
            algorithm="ES256",
            activate_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
        ),
        KeyConfig(
            keystore=Path("/etc/oidc/old.pem"),
            field="credentials.keys[3]",
            password=Secret(STORE_PASSWORD),
            state="retired",
        ),
    )


def test_native_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    write(conf_dir / "secrets", "keystore.pass", FILE_PASSWORD + "\n")
    monkeypatch.setenv("OIDC_TEST_KEYSTORE_PASSWORD", ENV_PASSWORD)
    monkeypatch.chdir(tmp_path)
    path = write(conf_dir, "adapter.toml", NATIVE_TOML)

    config = load_config(path)

    assert config.issuer == ISSUER
    assert config.client_id == "my-app"
    assert config.realm is None
    assert config.auth_server_url is None
    assert config.source == path
    credentials = config.credentials
    assert credentials.method == "private_key_jwt"
    assert credentials.algorithm == "PS256"
    assert credentials.assertion_lifetime == 30
    assert credentials.assertion_audience == "token-endpoint"
    assert credentials.secret is None
    assert credentials.keys == _expected_native_keys(conf_dir.resolve())
    # Sources of the secrets are recorded, values stay hidden.
    assert repr(credentials.keys[0].password) == "Secret(<from env OIDC_TEST_KEYSTORE_PASSWORD>)"
    password_file = conf_dir.resolve() / "secrets" / "keystore.pass"
    assert repr(credentials.keys[2].password) == f"Secret(<from file {password_file}>)"
    assert repr(credentials.keys[3].password) == "Secret(<from configuration>)"
    for value in SECRET_VALUES:
        assert value not in repr(config)


def test_native_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    write(conf_dir / "secrets", "keystore.pass", FILE_PASSWORD + "\n")
    monkeypatch.setenv("OIDC_TEST_KEYSTORE_PASSWORD", ENV_PASSWORD)
    document = json.loads(json.dumps(tomllib.loads(NATIVE_TOML), default=str))
    # JSON has no datetime: the TOML datetime becomes an RFC 3339 string.
    document["credentials"]["keys"][2]["activate-at"] = "2027-01-01T00:00:00+01:00"

    config = load_config(write(conf_dir, "adapter.json", document))

    assert config.issuer == ISSUER
    assert config.credentials.method == "private_key_jwt"
    assert config.credentials.keys == _expected_native_keys(conf_dir.resolve())


def test_native_dict_equals_native_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    write(conf_dir / "secrets", "keystore.pass", FILE_PASSWORD)
    monkeypatch.setenv("OIDC_TEST_KEYSTORE_PASSWORD", ENV_PASSWORD)
    from_file = load_config(write(conf_dir, "adapter.toml", NATIVE_TOML))

    from_dict = load_config(tomllib.loads(NATIVE_TOML), base_dir=conf_dir.resolve())

    assert from_dict.source is None
    assert from_dict.credentials == from_file.credentials
    assert from_dict.issuer == from_file.issuer


@pytest.mark.parametrize(
    "method", ["client_secret_basic", "client_secret_post", "CLIENT_SECRET_POST"]
)
def test_native_secret_methods(method: str) -> None:
    config = load_config(native(method=method, secret=CLIENT_SECRET))

    assert config.credentials.method == method.lower()
    assert config.credentials.secret == Secret(CLIENT_SECRET)
    assert config.credentials.algorithm is None


def test_native_client_secret_jwt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)

    config = load_config(
        native(method="client_secret_jwt", **{"secret-env": "OIDC_TEST_SECRET"}, algorithm="HS384")
    )

    assert config.credentials.method == "client_secret_jwt"
    assert config.credentials.algorithm == "HS384"
    assert config.credentials.secret == Secret(CLIENT_SECRET)
    assert repr(config.credentials.secret) == "Secret(<from env OIDC_TEST_SECRET>)"


def test_native_client_secret_jwt_defaults_to_hs256() -> None:
    config = load_config(native(method="client_secret_jwt", secret=CLIENT_SECRET))

    assert config.credentials.algorithm == "HS256"


def test_native_assertion_options() -> None:
    config = load_config(
        native(
            method="client_secret_jwt",
            secret=CLIENT_SECRET,
            **{
                "assertion-backdate": 5,
                "assertion-typ": "JWT",
                "assertion-x5t": True,
                "assertion-x5t-s256": "true",
            },
        )
    )

    assert config.credentials.assertion_backdate == 5
    assert config.credentials.assertion_typ == "JWT"
    assert config.credentials.assertion_x5t is True
    assert config.credentials.assertion_x5t_s256 is True
    assert config.credentials.assertion_audience == "issuer"
    assert config.credentials.assertion_lifetime == 60


def test_native_key_state_next_with_activate_at_and_case_insensitive_state() -> None:
    config = load_config(native_key(state="NEXT", **{"activate-at": "2026-12-01T01:00:00+01:00"}))

    (key,) = config.credentials.keys
    assert key.state == "next"
    assert key.activate_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert key.activate_at is not None
    assert key.activate_at.utcoffset() is not None


def test_native_key_certificate_path_resolves_against_base_dir() -> None:
    config = load_config(native_key(certificate="certs/k.crt"), base_dir=Path("/srv/app"))

    (key,) = config.credentials.keys
    assert key.keystore == Path("/srv/app/k.p12")
    assert key.certificate == Path("/srv/app/certs/k.crt")
    assert key.state is None
    assert key.activate_at is None


@pytest.mark.parametrize(
    "audience",
    [
        "issuer",
        "token-endpoint",
        "https://sso.example.com/realms/demo/protocol/openid-connect/token",
        "http://localhost:8080/realms/demo",
        "https://sso.example.com",
    ],
)
def test_assertion_audience_accepted(audience: str) -> None:
    config = load_config(
        native(method="client_secret_jwt", secret=CLIENT_SECRET, **{"assertion-audience": audience})
    )

    assert config.credentials.assertion_audience == audience


@pytest.mark.parametrize(
    "audience",
    ["Issuer", "token_endpoint", "audience", "ftp://sso.example.com/x", "https://", "/token"],
)
def test_assertion_audience_rejected(audience: str) -> None:
    message = config_error(
        native(method="client_secret_jwt", secret=CLIENT_SECRET, **{"assertion-audience": audience})
    )

    assert message.startswith("credentials.assertion-audience: ")
    assert "issuer, token-endpoint or an http(s) URL" in message


@pytest.mark.parametrize("lifetime", [0, 3601, "abc", 1.5, True])
def test_assertion_lifetime_out_of_range_or_wrong_type(lifetime: object) -> None:
    message = config_error(
        native(method="client_secret_jwt", secret=CLIENT_SECRET, **{"assertion-lifetime": lifetime})
    )

    assert message.startswith("credentials.assertion-lifetime: ")


# 5. errors ------------------------------------------------------------------------------------


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    text = (
        "{\n"
        '  "realm": "demo",\n'
        f'  "credentials": {{"secret": "{CLIENT_SECRET}"}}\n'
        '  "resource": "my-app"\n'
        "}\n"
    )
    path = write(tmp_path, "keycloak.json", text)

    message = config_error(path)

    assert message.startswith(f"{path}: not valid JSON (line 4, column 3")
    assert "fix the syntax" in message


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    text = f'issuer = "{ISSUER}"\nclient-id = \n[credentials]\nsecret = "{CLIENT_SECRET}"\n'
    path = write(tmp_path, "adapter.toml", text)

    message = config_error(path)

    assert message.startswith(f"{path}: not valid TOML (")
    assert "line 2" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "keycloak.json"

    message = config_error(path)

    assert message == f"{path}: configuration file not found; check the path"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    message = config_error(tmp_path)

    assert message.startswith(f"{tmp_path}: cannot read the configuration (")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "keycloak.json"
    path.write_bytes(b'{"realm": "d\xe9mo"}')

    message = config_error(path)

    assert message == f"{path}: cannot read the configuration (not UTF-8 text)"


@pytest.mark.parametrize("document", ["[]", '"text"', "42"])
def test_top_level_must_be_an_object(tmp_path: Path, document: str) -> None:
    path = write(tmp_path, "keycloak.json", document)

    message = config_error(path)

    assert message == f"{path}: configuration: must be a table/object"


def test_file_errors_are_prefixed_with_the_path(tmp_path: Path) -> None:
    doc = {key: value for key, value in KEYCLOAK_EXPORT.items() if key != "resource"}
    path = write(tmp_path, "keycloak.json", doc)

    message = config_error(path)

    assert message == (f"{path}: client-id: missing; set client-id (or resource, in keycloak.json)")


def test_missing_client_id_and_resource() -> None:
    message = config_error({"issuer": ISSUER, "public-client": True})

    assert message.startswith("client-id: missing")


def test_resource_and_client_id_disagreeing() -> None:
    message = config_error({**KEYCLOAK_EXPORT, "client-id": "other-app"})

    assert message.startswith("client-id: disagrees with resource")


def test_missing_issuer_and_auth_server_url() -> None:
    doc = {"realm": "demo", "resource": "my-app", "credentials": {"secret": CLIENT_SECRET}}

    message = config_error(doc)

    assert message.startswith("issuer: missing")
    assert "auth-server-url" in message


def test_auth_server_url_without_realm() -> None:
    doc = {key: value for key, value in KEYCLOAK_EXPORT.items() if key != "realm"}

    message = config_error(doc)

    assert message.startswith("realm: missing")
    assert "auth-server-url" in message


def test_issuer_disagreeing_with_auth_server_url_and_realm() -> None:
    message = config_error({**KEYCLOAK_EXPORT, "issuer": "https://sso.example.com/realms/other"})

    assert message.startswith("issuer: ")
    assert "disagrees with auth-server-url + realm" in message
    assert "https://sso.example.com/realms/demo" in message


@pytest.mark.parametrize("url", ["sso.example.com/auth", "ftp://sso.example.com", "https:///x"])
def test_auth_server_url_that_is_not_an_http_url(url: str) -> None:
    message = config_error({**KEYCLOAK_EXPORT, "auth-server-url": url})

    assert message.startswith("auth-server-url: ")
    assert "not an http(s) URL with a host" in message


@pytest.mark.parametrize(
    "issuer", ["https://sso.example.com/realms/demo?x=1", "https://sso.example.com/r#frag"]
)
def test_issuer_with_query_or_fragment(issuer: str) -> None:
    message = config_error({"issuer": issuer, "client-id": "app", "public-client": True})

    assert message == "issuer: must not contain a query or fragment"


def test_unknown_method() -> None:
    message = config_error(native(method="client_secret_magic", secret=CLIENT_SECRET))

    assert message.startswith("credentials.method: 'client_secret_magic' is not valid")
    assert "private_key_jwt" in message


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (
            native(method="private_key_jwt", algorithm="RS999", keys=[{"keystore": "k.p12"}]),
            "credentials.algorithm",
        ),
        (
            native(method="private_key_jwt", algorithm="HS256", keys=[{"keystore": "k.p12"}]),
            "credentials.algorithm",
        ),
        (native_key(algorithm="RS999"), "credentials.keys[0].algorithm"),
        (native_key(algorithm="HS512"), "credentials.keys[0].algorithm"),
        (
            native(method="client_secret_jwt", secret=CLIENT_SECRET, algorithm="RS256"),
            "credentials.algorithm",
        ),
        (
            {
                **KEYCLOAK_EXPORT,
                "credentials": {"jwt": {"client-keystore-file": "k.jks", "algorithm": "HS256"}},
            },
            "credentials.jwt.algorithm",
        ),
        (
            {
                **KEYCLOAK_EXPORT,
                "credentials": {"jwt": {"client-keystore-file": "k.jks", "algorithm": "RS999"}},
            },
            "credentials.jwt.algorithm",
        ),
        (
            {
                **KEYCLOAK_EXPORT,
                "credentials": {"secret-jwt": {"secret": CLIENT_SECRET, "algorithm": "RS256"}},
            },
            "credentials.secret-jwt.algorithm",
        ),
    ],
)
def test_unknown_algorithm(document: dict[str, Any], field: str) -> None:
    message = config_error(document)

    assert message.startswith(f"{field}: unknown algorithm ")
    assert "use one of" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {**KEYCLOAK_EXPORT, "confidential-port": "abc"},
            "confidential-port: must be a whole number",
        ),
        (
            {**KEYCLOAK_EXPORT, "confidential-port": 70000},
            "confidential-port: must be at least 0 and at most 65535, not 70000",
        ),
        ({**KEYCLOAK_EXPORT, "public-client": 3}, "public-client: must be true or false"),
        ({**KEYCLOAK_EXPORT, "public-client": "maybe"}, "public-client: must be true or false"),
        ({**KEYCLOAK_EXPORT, "bearer-only": 1}, "bearer-only: must be true or false"),
        ({**KEYCLOAK_EXPORT, "realm": 5}, "realm: must be a non-empty string"),
        ({**KEYCLOAK_EXPORT, "resource": "  "}, "resource: must be a non-empty string"),
        ({**KEYCLOAK_EXPORT, "credentials": "secret"}, "credentials: must be a table/object"),
        (
            {**KEYCLOAK_EXPORT, "credentials": {"secret": 12345}},
            "credentials.secret: must be a string",
        ),
        (
            {**KEYCLOAK_EXPORT, "ssl-required": "sometimes"},
            "ssl-required: 'sometimes' is not valid; use one of external, all, none",
        ),
        (
            {**KEYCLOAK_EXPORT, "connection-timeout-millis": 0},
            "connection-timeout-millis: must be at least 1, not 0",
        ),
    ],
)
def test_wrong_types_and_values(document: dict[str, Any], expected: str) -> None:
    message = config_error(document)

    assert message.startswith(expected)


def test_state_bogus() -> None:
    message = config_error(native_key(state="bogus", password=STORE_PASSWORD))

    assert message == (
        "credentials.keys[0].state: 'bogus' is not valid; use one of next, active, retired"
    )


@pytest.mark.parametrize("activate_at", ["2026-12-01T00:00:00", datetime(2026, 12, 1)])
def test_activate_at_without_time_zone(activate_at: object) -> None:
    message = config_error(native_key(password=STORE_PASSWORD, **{"activate-at": activate_at}))

    assert message.startswith("credentials.keys[0].activate-at: has no time zone")


def test_activate_at_without_time_zone_in_toml(tmp_path: Path) -> None:
    text = (
        f'issuer = "{ISSUER}"\nclient-id = "my-app"\n[credentials]\n'
        'method = "private_key_jwt"\n[[credentials.keys]]\nkeystore = "k.p12"\n'
        "activate-at = 2026-12-01T00:00:00\n"
    )
    path = write(tmp_path, "adapter.toml", text)

    message = config_error(path)

    assert message.startswith(f"{path}: credentials.keys[0].activate-at: has no time zone")


@pytest.mark.parametrize(
    "activate_at",
    ["next tuesday", "2026-13-01T00:00:00Z", 20261201, "2026-12-01", "20261201T000000Z"],
)
def test_activate_at_not_a_time(activate_at: object) -> None:
    message = config_error(native_key(**{"activate-at": activate_at}))

    assert message.startswith("credentials.keys[0].activate-at: ")
    assert "RFC 3339" in message


@pytest.mark.parametrize("state", ["active", "retired"])
def test_activate_at_together_with_a_state_other_than_next(state: str) -> None:
    message = config_error(
        native_key(state=state, password=STORE_PASSWORD, **{"activate-at": "2026-12-01T00:00:00Z"})
    )

    assert message.startswith("credentials.keys[0].state: ")
    assert "activate-at" in message
    assert repr(state) in message


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"password": STORE_PASSWORD, "password-env": "OIDC_TEST_KEYSTORE_PASSWORD"}, "password"),
        ({"password": STORE_PASSWORD, "password-file": "pw.txt"}, "password"),
        (
            {"key-password": KEY_PASSWORD, "key-password-env": "OIDC_TEST_KEYSTORE_PASSWORD"},
            "key-password",
        ),
    ],
)
def test_password_given_twice(given: dict[str, str], field: str) -> None:
    message = config_error(native_key(**given))

    assert message.startswith(f"credentials.keys[0].{field}: give only one of ")
    assert "they conflict" in message


def test_secret_given_twice() -> None:
    message = config_error(
        native(method="client_secret_basic", secret=CLIENT_SECRET, **{"secret-file": "s.txt"})
    )

    assert message == "credentials.secret: give only one of secret, secret-file; they conflict"


def test_password_env_naming_an_unset_variable() -> None:
    message = config_error(native_key(**{"password-env": "OIDC_TEST_UNSET"}))

    assert message == (
        "credentials.keys[0].password-env: environment variable OIDC_TEST_UNSET is not set; "
        "export it before starting"
    )


def test_password_file_missing(tmp_path: Path) -> None:
    message = config_error(native_key(**{"password-file": "missing.pass"}), base_dir=tmp_path)

    assert message.startswith("credentials.keys[0].password-file: cannot read ")
    assert str(tmp_path / "missing.pass") in message
    assert "check the file" in message


@pytest.mark.parametrize(
    ("url_field", "url", "ssl_required"),
    [
        ("issuer", "http://sso.example.com/realms/demo", None),
        ("issuer", "http://sso.example.com/realms/demo", "external"),
        ("issuer", "http://8.8.8.8/realms/demo", "EXTERNAL"),
        ("issuer", "http://localhost:8080/realms/demo", "all"),
        ("auth-server-url", "http://sso.example.com/auth", "external"),
    ],
)
def test_plain_http_refused(url_field: str, url: str, ssl_required: str | None) -> None:
    doc: dict[str, Any] = {"client-id": "my-app", "public-client": True, url_field: url}
    if url_field == "auth-server-url":
        doc["realm"] = "demo"
    if ssl_required is not None:
        doc["ssl-required"] = ssl_required

    message = config_error(doc)

    assert message.startswith(f"{url_field}: plain http to ")
    assert "use https" in message


@pytest.mark.parametrize(
    ("url", "ssl_required"),
    [
        ("http://localhost:8080/realms/demo", "external"),
        ("http://localhost/realms/demo", None),
        ("http://127.0.0.1:8080/realms/demo", "external"),
        ("http://[::1]:8080/realms/demo", "external"),
        ("http://10.1.2.3/realms/demo", "external"),
        ("http://192.168.1.10/realms/demo", "external"),
        ("http://sso.example.com/realms/demo", "none"),
        ("http://sso.example.com/realms/demo", "None"),
        ("https://sso.example.com/realms/demo", "all"),
    ],
)
def test_plain_http_allowed(url: str, ssl_required: str | None) -> None:
    doc: dict[str, Any] = {"issuer": url, "client-id": "my-app", "public-client": True}
    if ssl_required is not None:
        doc["ssl-required"] = ssl_required

    config = load_config(doc)

    assert config.issuer == url
    assert config.ssl_required == (ssl_required or "external").lower()


@pytest.mark.parametrize("keys", [None, []])
def test_private_key_jwt_without_keys(keys: object) -> None:
    credentials: dict[str, Any] = {"method": "private_key_jwt", "secret": CLIENT_SECRET}
    if keys is not None:
        credentials["keys"] = keys

    message = config_error(native(**credentials))

    assert message.startswith("credentials.keys: missing; private_key_jwt needs")


def test_keys_given_as_a_table_not_a_list() -> None:
    credentials = {"method": "private_key_jwt", "keys": {"keystore": "k.p12"}}

    message = config_error(native(**credentials))

    assert message.startswith("credentials.keys: must be a list of key tables")


def test_key_without_keystore() -> None:
    message = config_error(
        native(method="private_key_jwt", keys=[{"keystore": "a.p12"}, {"alias": "x"}])
    )

    assert message == "credentials.keys[1].keystore: missing; give the keystore file path"


def test_key_that_is_not_a_table() -> None:
    message = config_error(native(method="private_key_jwt", keys=["k.p12"]))

    assert message == "credentials.keys[0]: must be a table/object"


@pytest.mark.parametrize(
    "method", ["client_secret_basic", "client_secret_post", "client_secret_jwt"]
)
def test_secret_method_without_secret(method: str) -> None:
    message = config_error(native(method=method))

    assert message.startswith("credentials.secret: missing; ")
    assert method in message


def test_confidential_client_without_credentials(tmp_path: Path) -> None:
    doc = {key: value for key, value in KEYCLOAK_EXPORT.items() if key != "credentials"}
    path = write(tmp_path, "keycloak.json", doc)

    message = config_error(path)

    assert message.startswith(f"{path}: credentials: missing; ")
    assert "public-client" in message


@pytest.mark.parametrize(
    "credentials",
    [
        {"secret": CLIENT_SECRET},
        {"method": "client_secret_basic", "secret": CLIENT_SECRET},
        {"jwt": {"client-keystore-file": "k.jks", "client-keystore-password": STORE_PASSWORD}},
    ],
)
def test_public_client_with_credentials(credentials: dict[str, Any]) -> None:
    message = config_error({**KEYCLOAK_EXPORT, "public-client": True, "credentials": credentials})

    assert message.startswith("public-client: a public client has no credentials")


@pytest.mark.parametrize(
    ("credentials", "found"),
    [
        ({}, "none"),
        ({"secret": CLIENT_SECRET, "jwt": {"client-keystore-file": "k.jks"}}, "secret, jwt"),
        (
            {"secret-jwt": {"secret": CLIENT_SECRET}, "jwt": {"client-keystore-file": "k.jks"}},
            "jwt, secret-jwt",
        ),
    ],
)
def test_keycloak_credentials_need_exactly_one_provider(
    credentials: dict[str, Any], found: str
) -> None:
    message = config_error({**KEYCLOAK_EXPORT, "credentials": credentials})

    assert message == (f"credentials: needs exactly one of secret, jwt, secret-jwt (found {found})")


def test_keycloak_jwt_without_keystore_file() -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {"jwt": {"client-keystore-password": STORE_PASSWORD}},
    }

    message = config_error(doc)

    assert message.startswith("credentials.jwt.client-keystore-file: missing")


def test_keycloak_secret_jwt_without_secret() -> None:
    message = config_error(
        {**KEYCLOAK_EXPORT, "credentials": {"secret-jwt": {"algorithm": "HS512"}}}
    )

    assert message == "credentials.secret-jwt.secret: missing; give the client secret"


# 6. unknown and unused fields ----------------------------------------------------------------


def test_unknown_fields_warn_with_dotted_paths(tmp_path: Path) -> None:
    doc = {
        "issuer": ISSUER,
        "client-id": "my-app",
        "clientid": "typo",
        "redirect-url": "https://app.example.com/cb",
        "credentials": {
            "method": "private_key_jwt",
            "assertion-lifetme": 30,
            "keys": [
                {"keystore": "a.p12", "pasword": STORE_PASSWORD},
                {"keystore": "b.p12", "colour": "blue"},
            ],
        },
    }

    with pytest.warns(ConfigWarning) as record:
        config = load_config(write(tmp_path, "adapter.json", doc))

    messages = [str(warning.message) for warning in record]
    assert sorted(messages) == sorted(
        [
            "unknown configuration field(s) ignored: credentials.keys[0].pasword "
            "(did you mean password?)",
            "unknown configuration field(s) ignored: credentials.keys[1].colour",
            "unknown configuration field(s) ignored: credentials.assertion-lifetme "
            "(did you mean assertion-lifetime?)",
            "unknown configuration field(s) ignored: clientid (did you mean client-id?), "
            "redirect-url (did you mean redirect-uri?)",
        ]
    )
    assert all(warning.category is ConfigWarning for warning in record)
    for message in messages:
        assert STORE_PASSWORD not in message
    assert config.credentials.keys[0].password is None
    assert config.unused_fields == ()


def test_unknown_fields_in_keycloak_credentials_warn() -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "realm-name": "demo",
        "credentials": {
            "jwt": {
                "client-keystore-file": "k.jks",
                "client-keystore-pasword": STORE_PASSWORD,
            }
        },
    }

    with pytest.warns(ConfigWarning) as record:
        load_config(doc)

    assert sorted(str(warning.message) for warning in record) == [
        "unknown configuration field(s) ignored: credentials.jwt.client-keystore-pasword "
        "(did you mean client-keystore-password?)",
        "unknown configuration field(s) ignored: realm-name",
    ]


def test_keys_under_a_secret_method_warn_as_unused() -> None:
    with pytest.warns(ConfigWarning, match=r"ignored: credentials\.keys$"):
        config = load_config(
            native(method="client_secret_basic", secret=CLIENT_SECRET, keys=[{"keystore": "k"}])
        )

    assert config.credentials.keys == ()


def test_keycloak_fields_without_use_do_not_warn_and_are_listed(tmp_path: Path) -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "enable-cors": True,
        "cors-max-age": 1000,
        "realm-public-key": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        # Not read, so an unset variable in it is no error.
        "truststore-password": "${env.OIDC_TEST_UNSET}",
        "autodetect-bearer-only": True,
        "principal-attribute": "preferred_username",
        "always-refresh-token": False,
        "token-minimum-time-to-live": 10,
        "min-time-between-jwks-requests": 10,
        "public-key-cache-ttl": 86400,
        "connection-timeout-millis": 3000,
        "socket-timeout-millis": 4000,
    }

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(write(tmp_path, "keycloak.json", doc))

    assert config.unused_fields == (
        "cors-max-age",
        "enable-cors",
        "realm-public-key",
        "truststore-password",
    )
    assert config.autodetect_bearer_only is True
    assert config.principal_attribute == "preferred_username"
    assert config.connection_timeout_millis == 3000
    assert config.socket_timeout_millis == 4000


# 7. password files and secret hygiene --------------------------------------------------------


@pytest.mark.parametrize("ending", ["", "\n", "\r\n", "\n\n"])
def test_password_file_relative_to_config_dir_with_line_end_stripped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    conf_dir = tmp_path / "conf"
    write(conf_dir / "secrets", "ks.pass", FILE_PASSWORD + ending)
    monkeypatch.chdir(tmp_path)
    doc = native_key(**{"password-file": "secrets/ks.pass", "key-password-file": "secrets/ks.pass"})

    config = load_config(write(conf_dir, "adapter.json", doc))

    (key,) = config.credentials.keys
    assert key.password is not None
    assert key.password.reveal() == FILE_PASSWORD
    assert key.key_password == Secret(FILE_PASSWORD)
    assert FILE_PASSWORD not in repr(key.password)
    assert FILE_PASSWORD not in str(key.password)
    assert "secrets/ks.pass" in repr(key.password)


def test_password_file_absolute_path(tmp_path: Path) -> None:
    password_file = write(tmp_path / "run", "pw", FILE_PASSWORD + "\n")

    config = load_config(
        native_key(**{"password-file": str(password_file)}), base_dir=tmp_path / "elsewhere"
    )

    assert config.credentials.keys[0].password == Secret(FILE_PASSWORD)


def test_secret_file_for_the_client_secret(tmp_path: Path) -> None:
    write(tmp_path, "client.secret", CLIENT_SECRET + "\n")

    config = load_config(
        native(method="client_secret_post", **{"secret-file": "client.secret"}), base_dir=tmp_path
    )

    assert config.credentials.secret == Secret(CLIENT_SECRET)


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret(CLIENT_SECRET, "env CLIENT_SECRET")

    assert repr(secret) == "Secret(<from env CLIENT_SECRET>)"
    assert str(secret) == repr(secret)
    assert f"{secret}" == repr(secret)
    assert CLIENT_SECRET not in repr([secret])
    assert secret.reveal() == CLIENT_SECRET
    assert Secret("a") == Secret("a", "elsewhere")
    assert Secret("a") != Secret("b")


def test_config_repr_never_contains_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDC_TEST_KEYSTORE_PASSWORD", ENV_PASSWORD)
    write(tmp_path, "pw.txt", FILE_PASSWORD)
    keycloak_jwt = load_config(
        {
            **KEYCLOAK_EXPORT,
            "credentials": {
                "jwt": {
                    "client-keystore-file": "k.jks",
                    "client-keystore-password": STORE_PASSWORD,
                    "client-key-password": KEY_PASSWORD,
                }
            },
        }
    )
    keycloak_secret = load_config(KEYCLOAK_EXPORT)
    keycloak_secret_jwt = load_config(
        {**KEYCLOAK_EXPORT, "credentials": {"secret-jwt": {"secret": CLIENT_SECRET}}}
    )
    native_config = load_config(
        native(
            method="private_key_jwt",
            keys=[
                {"keystore": "a.p12", "password-env": "OIDC_TEST_KEYSTORE_PASSWORD"},
                {"keystore": "b.p12", "password-file": "pw.txt", "key-password": KEY_PASSWORD},
                {"keystore": "c.p12", "password": STORE_PASSWORD},
            ],
        ),
        base_dir=tmp_path,
    )

    for config in (keycloak_jwt, keycloak_secret, keycloak_secret_jwt, native_config):
        for text in (repr(config), str(config), repr(config.credentials)):
            for value in SECRET_VALUES:
                assert value not in text


# 8. load_config(dict) ------------------------------------------------------------------------


def test_dict_with_base_dir_resolves_relative_paths(tmp_path: Path) -> None:
    doc = {
        **KEYCLOAK_EXPORT,
        "credentials": {"jwt": {"client-keystore-file": "keys/client.p12"}},
    }

    config = load_config(doc, base_dir=tmp_path)

    assert config.source is None
    assert config.credentials.keys[0].keystore == tmp_path / "keys" / "client.p12"


def test_dict_with_base_dir_as_string(tmp_path: Path) -> None:
    config = load_config(native_key(), base_dir=str(tmp_path))

    assert config.credentials.keys[0].keystore == tmp_path / "k.p12"


def test_dict_without_base_dir_resolves_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config(native_key())

    assert config.credentials.keys[0].keystore == Path.cwd() / "k.p12"


def test_dict_errors_have_no_file_prefix() -> None:
    message = config_error({"issuer": ISSUER, "public-client": True})

    assert message == "client-id: missing; set client-id (or resource, in keycloak.json)"


def test_file_with_base_dir_override(tmp_path: Path) -> None:
    path = write(tmp_path / "conf", "adapter.json", native_key())

    config = load_config(str(path), base_dir=tmp_path / "other")

    assert config.source == path
    assert config.credentials.keys[0].keystore == tmp_path / "other" / "k.p12"


def test_dict_input_is_not_modified() -> None:
    doc = native_key(password=STORE_PASSWORD)
    snapshot = json.dumps(doc, sort_keys=True)

    load_config(doc)

    assert json.dumps(doc, sort_keys=True) == snapshot


# Hostile or odd input that once escaped as a traceback must be a ConfigError (DESIGN.md rule 4).


def test_keystore_path_with_unknown_user_home() -> None:
    message = config_error(native_key(keystore="~no-such-user-oidc-test/k.p12"))

    assert message.startswith("credentials.keys[0].keystore: ")


def test_password_file_with_nul_byte(tmp_path: Path) -> None:
    message = config_error(native_key(**{"password-file": "pw\x00.txt"}), base_dir=tmp_path)

    assert message.startswith("credentials.keys[0].password-file: ")


def test_integer_string_with_too_many_digits() -> None:
    message = config_error({**KEYCLOAK_EXPORT, "confidential-port": "9" * 5000})

    assert message.startswith("confidential-port: ")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("keycloak.json", '{"confidential-port": ' + "9" * 5000 + "}"),
        ("a.toml", "x = " + "9" * 5000),
    ],
)
def test_file_with_a_number_too_long_to_parse(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)

    message = config_error(path)

    assert message.startswith(f"{path}: not valid ")


def test_issuer_with_user_info_is_refused_without_echoing_it() -> None:
    message = config_error(
        {
            "issuer": "https://user:hunter2@sso.example.com/r",
            "client-id": "a",
            "public-client": True,
        }
    )

    assert message.startswith("issuer: must not contain user:password@")
    assert "hunter2" not in message


def test_enable_pkce_is_keycloaks_name_for_pkce() -> None:
    config = load_config({**KEYCLOAK_EXPORT, "enable-pkce": False})

    assert config.pkce is False


def test_method_none_on_a_confidential_client_is_refused() -> None:
    message = config_error(native(method="none"))

    assert message.startswith('credentials.method: "none" is a public client')


def test_native_credentials_without_method() -> None:
    message = config_error(native(**{"secret-env": "SOME_VARIABLE"}))

    assert message.startswith("credentials.method: missing")


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "keycloak.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(KEYCLOAK_EXPORT).encode())

    assert load_config(path).client_id == "my-app"


def test_a_value_in_an_env_field_is_never_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password pasted where the variable's name belongs must not reach the message."""
    monkeypatch.setenv("KEYSTORE_PASSWORD", "Hunter2-secret!")
    for value in ("${env.KEYSTORE_PASSWORD}", "Hunter2-secret!"):
        message = config_error(native_key(**{"password-env": value}))
        assert message.startswith("credentials.keys[0].password-env: must be the NAME")
        assert "Hunter2" not in message


def test_secret_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(b"\xffs3cr3t-PASSWORD\n")
    message = config_error(native_key(**{"password-file": "pw"}), base_dir=tmp_path)
    assert "not UTF-8 text" in message
    assert "s3cr3t" not in message


def test_secret_file_path_from_env_is_shown_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKY", "Hunter2-secret")
    message = config_error(native_key(**{"password-file": "${env.LEAKY}"}), base_dir=tmp_path)
    assert "${env.LEAKY}" in message
    assert "Hunter2" not in message


@pytest.mark.parametrize(
    "doc",
    [
        {
            "issuer": "https://a:hunter2@x.example/r",
            "auth-server-url": "https://x.example",
            "realm": "r",
        },
        {
            "issuer": "https://x.example/realms/r",
            "auth-server-url": "https://a:hunter2@x.example",
            "realm": "r",
        },
    ],
)
def test_url_passwords_are_refused_before_any_comparison(doc: dict[str, Any]) -> None:
    message = config_error({**doc, "client-id": "a", "public-client": True})
    assert "user:password@" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["https://[::1", "http://[zz]/"])
def test_unparseable_urls(url: str) -> None:
    message = config_error({"issuer": url, "client-id": "a", "public-client": True})
    assert message.startswith("issuer: ")


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59"])
def test_activate_at_out_of_range(when: str) -> None:
    message = config_error(native_key(**{"activate-at": when}))
    assert message.startswith("credentials.keys[0].activate-at: is out of range")


def test_activate_at_is_normalised_to_utc() -> None:
    config = load_config(native_key(**{"activate-at": "2026-12-01T01:00:00+01:00"}))
    assert config.credentials.keys[0].activate_at == datetime(2026, 12, 1, tzinfo=UTC)


# 7. typos are named, also when they make loading fail (issue 13) -------------------------------


def test_a_typo_that_makes_loading_fail_is_named_in_the_error() -> None:
    document = {**KEYCLOAK_EXPORT, "resorce": KEYCLOAK_EXPORT["resource"]}
    del document["resource"]

    message = config_error(document)

    assert message == (
        "client-id: missing; set client-id (or resource, in keycloak.json); also, unknown "
        "configuration field(s) ignored: resorce (did you mean resource?)"
    )


def test_a_typo_in_a_nested_table_that_makes_loading_fail_is_named() -> None:
    document = {**KEYCLOAK_EXPORT, "credentials": {"jwtt": {"client-keystore-file": "k.p12"}}}

    assert config_error(document) == (
        "credentials: needs exactly one of secret, jwt, secret-jwt (found none); also, unknown "
        "configuration field(s) ignored: credentials.jwtt (did you mean jwt?)"
    )


def test_known_fields_not_yet_read_are_not_called_unknown_when_loading_fails() -> None:
    """Loading stops at the first problem: fields after it are unread but not unknown."""
    document = {**native(method="client_secret_basic"), "session-max-age": 5, "scope": "openid"}

    message = config_error(document)

    assert message.startswith("credentials.secret: missing")
    assert "unknown" not in message


def test_typos_in_a_key_table_are_named_when_it_fails() -> None:
    document = native(method="private_key_jwt", keys=[{"keystor": "k.p12"}])

    assert config_error(document) == (
        "credentials.keys[0].keystore: missing; give the keystore file path; also, unknown "
        "configuration field(s) ignored: credentials.keys[0].keystor (did you mean keystore?)"
    )


def test_every_field_this_module_reads_is_known() -> None:
    """The lists behind "unknown" and "did you mean" name every field config.py reads (a new
    field must be added there, or a failing load would call it unknown)."""
    import re

    import adapter.config.model as module

    source = Path(module.__file__).read_text()
    read = set(re.findall(r'fields\.\w+\(\s*"([a-z0-9-]+)"', source))
    read |= set(re.findall(r'\("[a-z_]+", "([a-z0-9-]+)", "/', source))  # the path fields
    known = (
        module.top_level_fields()
        | module.NATIVE_CREDENTIALS_FIELDS
        | module.NATIVE_KEY_FIELDS
        | module.KEYCLOAK_CREDENTIALS_FIELDS
        | module.KEYCLOAK_SECRET_JWT_FIELDS
        | module.KEYCLOAK_JWT_FIELDS
    )
    assert read - known == set()


# 8. the key and token commands need no web setting (issue 13) ----------------------------------


def test_web_settings_are_neither_read_nor_checked_without_web() -> None:
    document = {
        **native_key(password="p"),
        "session-secret-env": "OIDC_TEST_UNSET",
        "session-max-age": 5,
        "public-paths": "not a list",
    }

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the web settings are not unknown either
        config = load_config(document, web=False)

    assert config.web == WebConfig()
    assert config.web_fields == ("public-paths", "session-max-age", "session-secret-env")
    assert config_error(document).startswith("public-paths: must be a list")


# 9. backdating keeps the lifetime honest (issue 13) ---------------------------------------------


@pytest.mark.parametrize(
    ("backdate", "lifetime", "expected"),
    [
        (
            60,
            120,
            "credentials.assertion-backdate: 60 s makes every assertion at least 60 s old when "
            "sent, and servers that refuse assertions older than 60 s from iat (Keycloak) "
            "refuse them all; use less than 60",
        ),
        (
            90,
            60,
            "credentials.assertion-backdate: 90 s makes every assertion at least 60 s old when "
            "sent, and servers that refuse assertions older than 60 s from iat (Keycloak) "
            "refuse them all; use less than 60",
        ),
        (
            30,
            30,
            "credentials.assertion-backdate: 30 s is not less than assertion-lifetime (30 s), "
            "so every assertion would have expired when made; backdate less or make the "
            "lifetime longer",
        ),
    ],
)
def test_backdates_no_server_accepts_are_refused(
    backdate: int, lifetime: int, expected: str
) -> None:
    document = native(
        method="client_secret_jwt",
        secret=CLIENT_SECRET,
        **{"assertion-backdate": backdate, "assertion-lifetime": lifetime},
    )

    assert config_error(document) == expected


def test_a_backdate_within_the_window_is_accepted() -> None:
    document = native(
        method="client_secret_jwt",
        secret=CLIENT_SECRET,
        **{"assertion-backdate": 59, "assertion-lifetime": 60},
    )

    assert load_config(document).credentials.assertion_backdate == 59
