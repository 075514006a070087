"""What a first-time user and an on-call operator tripped on (issue 13), through the real CLI.

Each test runs ``oidc-adapter`` as a process and holds it to its exit status and its exact
stderr lines: typos named with the field they meant, commands that need only what they use,
the basics (version, help, the configuration as an argument), and backdates no server accepts.
"""

from __future__ import annotations

import base64
import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from adapter.jose import ASYMMETRIC_ALGORITHMS
from tests.conftest import CliRunner

STORE_PASSWORD = "St0re-Pa55-newcomer"
ENV = {"STORE_PW": STORE_PASSWORD, "COLUMNS": "200"}  # COLUMNS: help lines are not wrapped
ISSUER = "https://sso.example.com/realms/demo"


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr
    assert STORE_PASSWORD not in result.stdout + result.stderr
    return result.stderr.splitlines()


@pytest.fixture
def keystore(cli: CliRunner, tmp_path: Path) -> Path:
    made = cli("keys", "generate", "--alias", "app", "--out", "app.p12",
               "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return tmp_path / "app.p12"


def keycloak_json(directory: Path, **changes: object) -> Path:
    """A keycloak.json as Keycloak exports it for "Signed JWT", with ``changes`` applied
    (a value of None removes the field)."""
    document: dict[str, object] = {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "ssl-required": "external",
        "resource": "app",
        "credentials": {
            "jwt": {
                "client-keystore-file": "app.p12",
                "client-keystore-type": "PKCS12",
                "client-keystore-password": "${env.STORE_PW}",
                "client-key-alias": "app",
            }
        },
    }
    for name, value in changes.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    path = directory / "keycloak.json"
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)
    return path


def native_toml(directory: Path, extra: str = "", key: str = "") -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{ISSUER}"\nclient-id = "app"\n{extra}\n[credentials]\n'
        'method = "private_key_jwt"\n\n[[credentials.keys]]\nkeystore = "app.p12"\n'
        + (key or 'password-env = "STORE_PW"\nalias = "app"\n')
    )
    path.chmod(0o600)
    return path


# --- 3. typos are named ----------------------------------------------------------------------


def test_a_typo_that_breaks_loading_is_named_with_the_field_it_meant(
    keystore: Path, cli: CliRunner
) -> None:
    keycloak_json(keystore.parent, resource=None, resorce="app")

    result = cli("config", "check", "keycloak.json", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: error: keycloak.json: client-id: missing; set client-id (or resource, in "
        "keycloak.json); also, unknown configuration field(s) ignored: resorce (did you mean "
        "resource?)"
    ]
    assert result.stdout == ""


def test_a_typo_in_the_credentials_is_named(keystore: Path, cli: CliRunner) -> None:
    keycloak_json(keystore.parent, credentials={"jwtt": {"client-keystore-file": "app.p12"}})

    result = cli("jwks", "--config", "keycloak.json", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: error: keycloak.json: credentials: needs exactly one of secret, jwt, "
        "secret-jwt (found none); also, unknown configuration field(s) ignored: "
        "credentials.jwtt (did you mean jwt?)"
    ]


def test_a_misspelt_password_field_is_named_and_the_missing_one_too(
    keystore: Path, cli: CliRunner
) -> None:
    jwt = {"client-keystore-file": "app.p12", "client-keystore-passwrd": "${env.STORE_PW}"}
    keycloak_json(keystore.parent, credentials={"jwt": jwt})

    result = cli("keys", "show", "--config", "keycloak.json", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: warning: unknown configuration field(s) ignored: "
        "credentials.jwt.client-keystore-passwrd (did you mean client-keystore-password?)",
        f"oidc-adapter: error: keycloak.json: credentials.jwt.client-keystore-password: "
        f"{keystore.resolve()}: the keystore is protected by a password; set "
        'client-keystore-password, e.g. "${env.KEYSTORE_PASSWORD}"',
    ]


def test_a_missing_password_names_the_native_field(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent, key='alias = "app"\n')

    result = cli("jwks", "--config", "adapter.toml", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        f"oidc-adapter: error: adapter.toml: credentials.keys[0].password: {keystore.resolve()}: "
        "the keystore is protected by a password; set password-env (or password-file, or "
        "password)"
    ]


def test_keys_show_of_a_configuration_suggests_config(keystore: Path, cli: CliRunner) -> None:
    keycloak_json(keystore.parent)
    native_toml(keystore.parent)

    for name in ("keycloak.json", "adapter.toml"):
        result = cli("keys", "show", name, env=ENV)
        assert result.returncode == 2
        assert stderr_lines(result) == [
            f"oidc-adapter: error: {name}: is a configuration, not a keystore; use --config {name}"
        ]


def test_a_missing_output_directory_is_named(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("keys", "generate", "--alias", "a", "--out", "keys/new.p12",
                 "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: error: keys/new.p12: the directory keys/ does not exist; create the "
        "directory keys/"
    ]
    assert not (tmp_path / "keys").exists()


# --- 2. each command needs only what it uses -------------------------------------------------

BROKEN_WEB = 'session-secret-env = "NO_SUCH_SESSION_SECRET"\nsession-max-age = 5\n'


def test_key_commands_need_no_web_setting(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent, BROKEN_WEB)

    for command in (
        ("keys", "show", "--config", "adapter.toml"),
        ("jwks", "--config", "adapter.toml"),
        ("assertion", "--config", "adapter.toml"),
        ("keys", "export-cert", "--config", "adapter.toml"),
        ("keys", "rotate", "--config", "adapter.toml", "--alias", "app-2",
         "--store-password-env", "STORE_PW", "--write"),
    ):  # fmt: skip
        result = cli(*command, env=ENV)
        assert result.returncode == 0, (command, result.stderr)
        assert stderr_lines(result) == [], command


def test_config_check_says_which_part_needs_a_failing_setting(
    keystore: Path, cli: CliRunner
) -> None:
    native_toml(keystore.parent, BROKEN_WEB)

    result = cli("config", "check", "adapter.toml", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: error: adapter.toml: session-secret-env: environment variable "
        "NO_SUCH_SESSION_SECRET is not set; export it before starting (a middleware setting: "
        "keys, jwks, assertion and token work without it)"
    ]


def test_config_check_lists_what_each_part_needs(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent, 'public-paths = ["/"]\nsession-secret-env = "SESSION"\n')

    result = cli("config", "check", "adapter.toml", env={**ENV, "SESSION": "s" * 32})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == [
        "commands:      keys, jwks, assertion and token need all of the above but no web setting",
        "middleware:    also its web settings: public-paths, session-secret-env",
        "ok",
    ]


# --- 7. CLI basics ---------------------------------------------------------------------------


def test_version(cli: CliRunner) -> None:
    result = cli("--version")

    assert result.returncode == 0
    assert result.stdout == f"oidc-adapter {version('oidc-adapter')}\n"


def test_config_check_takes_the_path_as_an_argument_or_option(
    keystore: Path, cli: CliRunner
) -> None:
    native_toml(keystore.parent)

    positional = cli("config", "check", "adapter.toml", env=ENV)
    option = cli("config", "check", "--config", "adapter.toml", env=ENV)
    both = cli("config", "check", "adapter.toml", "--config", "adapter.toml", env=ENV)
    neither = cli("config", "check", env=ENV)

    assert positional.returncode == option.returncode == 0, positional.stderr + option.stderr
    assert positional.stdout == option.stdout
    for result in (both, neither):
        assert result.returncode == 2
        assert stderr_lines(result) == [
            "oidc-adapter: error: give the configuration as CONFIG or as --config CONFIG (one "
            "of them)"
        ]


def test_help_lists_every_algorithm_and_the_defaults(cli: CliRunner) -> None:
    for verb in ("generate", "rotate"):
        result = cli("keys", verb, "--help", env=ENV)
        assert result.returncode == 0
        lines = result.stdout.splitlines()
        alg = next(line for line in lines if line.lstrip().startswith("--alg ALG"))
        assert f"{', '.join(ASYMMETRIC_ALGORITHMS)} (default: RS256)" in alg
        days = next(line for line in lines if line.lstrip().startswith("--days DAYS"))
        assert days.split(maxsplit=2)[2] == "certificate validity in days (default: 365)"


def test_every_option_of_every_command_has_help() -> None:
    """Walks the parser itself: one function, every subcommand."""
    import argparse

    from adapter.cli import _parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for verb, child in action.choices.items():
                    missing += walk(child, f"{name} {verb}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(_parser(), "oidc-adapter") == []


def test_jwks_prints_the_served_bytes_or_pretty(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent)

    exact = cli("jwks", "--config", "adapter.toml", env=ENV)
    pretty = cli("jwks", "--config", "adapter.toml", "--pretty", env=ENV)

    assert exact.returncode == pretty.returncode == 0
    assert not exact.stdout.endswith("\n"), "the served bytes, nothing added"
    assert "\n" not in exact.stdout
    assert " " not in exact.stdout
    assert pretty.stdout == json.dumps(json.loads(exact.stdout), indent=2) + "\n"


# --- 10. backdating --------------------------------------------------------------------------


def test_a_backdate_no_keycloak_accepts_is_refused(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent)
    path = keystore.parent / "adapter.toml"
    text = path.read_text().replace(
        'method = "private_key_jwt"\n', 'method = "private_key_jwt"\nassertion-backdate = 90\n'
    )
    path.write_text(text)

    result = cli("assertion", "--config", "adapter.toml", env=ENV)

    assert result.returncode == 2
    assert stderr_lines(result) == [
        "oidc-adapter: error: adapter.toml: credentials.assertion-backdate: 90 s makes every "
        "assertion at least 60 s old when sent, and servers that refuse assertions older than "
        "60 s from iat (Keycloak) refuse them all; use less than 60"
    ]


def test_a_backdated_assertion_keeps_its_lifetime(keystore: Path, cli: CliRunner) -> None:
    native_toml(keystore.parent)
    path = keystore.parent / "adapter.toml"
    path.write_text(
        path.read_text().replace(
            'method = "private_key_jwt"\n',
            'method = "private_key_jwt"\nassertion-backdate = 20\nassertion-lifetime = 45\n',
        )
    )

    result = cli("assertion", "--config", "adapter.toml", env=ENV)

    assert result.returncode == 0, result.stderr
    payload = result.stdout.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 45
    assert claims["nbf"] == claims["iat"]
