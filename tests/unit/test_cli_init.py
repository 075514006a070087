"""``oidc-adapter init`` without a server: what it writes, what it refuses, its JSON.

Each run is the real command in a process (no terminal: it never asks); bad input gives exit
status 2 and one line naming the flag or file and the fix, and nothing is left behind.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapter import load_config, load_key_ring
from tests.conftest import CliRunner

PASSWORD = "In1t-St0re-Pa55"
ENV = {"KS_PW": PASSWORD}
ISSUER = "https://sso.example.com/realms/demo"
URL = "https://app.example.com"
FLAGS = ("--issuer", ISSUER, "--client-id", "my-app", "--url", URL)
NON_INTERACTIVE = ("--store-password-env", "KS_PW", "--yes")


def init(cli: CliRunner, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli("init", *args, env=ENV)
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oidc-adapter: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_json_shape(cli: CliRunner, tmp_path: Path) -> None:
    result = init(cli, *FLAGS, *NON_INTERACTIVE, "--alg", "ES256", "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert set(report) == {
        "config", "keystore", "issuer", "client_id", "url", "key", "password_env",
        "checked", "not_copied", "keycloak", "client_metadata", "next",
    }  # fmt: skip
    assert report["config"] == "adapter.toml"
    assert report["keystore"].startswith("my-app-")
    assert report["keystore"].endswith(".p12")
    assert (report["issuer"], report["client_id"], report["url"]) == (ISSUER, "my-app", URL)
    assert set(report["key"]) == {"alias", "kid", "algorithm", "type", "sha256"}
    assert (report["key"]["algorithm"], report["key"]["type"]) == ("ES256", "EC P-256")
    assert (report["password_env"], report["checked"]) == ("KS_PW", True)
    assert report["keycloak"]["realm"] == "demo"
    steps = report["keycloak"]["steps"]
    assert all(set(step) == {"where", "setting", "value", "when"} for step in steps)
    settings = {step["setting"]: step for step in steps}
    assert settings["Client authentication"]["value"] == "On"
    assert settings["Client Authenticator"]["value"] == "Signed JWT"
    assert settings["Signature algorithm"]["value"] == "ES256"
    assert settings["Use JWKS URL"]["value"] == "On"
    assert settings["JWKS URL"]["value"] == f"{URL}/k_jwks"
    assert settings["Valid redirect URIs"]["value"] == f"{URL}/oidc/callback"
    assert settings["Valid post logout redirect URIs"]["value"] == f"{URL}/oidc/logout"
    assert settings["Backchannel logout URL"]["value"] == f"{URL}/oidc/backchannel-logout"
    assert settings["Front channel logout"]["value"] == "Off"
    assert settings["Included Client Audience"]["value"] == "my-app"
    assert settings["Included Client Audience"]["when"].startswith("only if")
    assert settings["Client ID"]["when"] is None
    metadata = report["client_metadata"]
    assert metadata["token_endpoint_auth_method"] == "private_key_jwt"
    assert metadata["token_endpoint_auth_signing_alg"] == "ES256"
    assert metadata["jwks_uri"] == f"{URL}/k_jwks"
    assert report["next"][0] == "oidc-adapter config check adapter.toml"
    assert report["next"][1] == f"oidc-adapter doctor --config adapter.toml --url {URL}"


def test_the_written_file_passes_config_check(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = init(cli, *FLAGS, *NON_INTERACTIVE, "--url", URL + "/shop/")
    assert result.returncode == 0, result.stderr
    config_path = tmp_path / "adapter.toml"
    assert config_path.stat().st_mode & 0o777 == 0o600
    text = config_path.read_text()
    assert PASSWORD not in text
    document = tomllib.loads(text)
    assert document["redirect-uri"] == f"{URL}/shop/oidc/callback"
    assert document["credentials"]["method"] == "private_key_jwt"
    (key,) = document["credentials"]["keys"]
    assert key["password-env"] == "KS_PW"
    assert (tmp_path / key["keystore"]).stat().st_mode & 0o777 == 0o600
    checked = cli("config", "check", "adapter.toml", env=ENV)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    monkeypatch.setenv("KS_PW", PASSWORD)
    ring = load_key_ring(load_config(config_path))
    assert ring.active().kid in result.stdout
    assert "JWKS URL = https://app.example.com/shop/k_jwks" in result.stdout


def test_refuses_to_overwrite_a_configuration(cli: CliRunner, tmp_path: Path) -> None:
    existing = tmp_path / "adapter.toml"
    existing.write_text("# mine\n")
    result = init(cli, *FLAGS, *NON_INTERACTIVE)
    assert_refused(result, "adapter.toml: already exists", "never overwrites", "--out")
    assert existing.read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.toml"], "no keystore made"
    assert result.stdout == ""


def test_a_second_run_refuses_and_keeps_the_first(cli: CliRunner, tmp_path: Path) -> None:
    first = init(cli, *FLAGS, *NON_INTERACTIVE)
    assert first.returncode == 0, first.stderr
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = init(cli, *FLAGS, *NON_INTERACTIVE, "--alg", "PS256")
    assert_refused(second, "already exists")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_out_directory_is_made_one_level_deep(cli: CliRunner, tmp_path: Path) -> None:
    result = init(cli, *FLAGS, *NON_INTERACTIVE, "--out", "deploy")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "deploy").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "deploy" / "adapter.toml").is_file()
    deeper = init(cli, *FLAGS, *NON_INTERACTIVE, "--out", "no/such/dir")
    assert_refused(deeper, "--out: no/such/dir", "mkdir -p no/such/dir")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--issuer", ISSUER, "--url", URL), ("--client-id: needed",)),
        (("--client-id", "a", "--url", URL), ("--issuer: needed",)),
        (("--issuer", ISSUER, "--client-id", "a"), ("--url: needed",)),
        ((*FLAGS[:4], "--url", "app.example.com"), ("--url:", "https://app.example.com")),
        (("--issuer", "ftp://x/realms/a", *FLAGS[2:]), ("issuer:", "http(s) URL")),
    ],
)
def test_bad_or_missing_answers(
    cli: CliRunner, tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    assert_refused(init(cli, *args, *NON_INTERACTIVE), *needles)
    assert list(tmp_path.iterdir()) == []


def test_yes_needs_the_password_variable(cli: CliRunner, tmp_path: Path) -> None:
    result = init(cli, *FLAGS, "--yes")
    assert_refused(result, "--store-password-env: needed")
    unset = init(cli, *FLAGS, "--yes", "--store-password-env", "NOT_SET_ANYWHERE")
    assert_refused(unset, "NOT_SET_ANYWHERE is not set")
    assert list(tmp_path.iterdir()) == []


def test_issuer_and_client_from_keycloak_json(cli: CliRunner, tmp_path: Path) -> None:
    exported = {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "ssl-required": "all",
        "resource": "legacy-app",
        "credentials": {"secret": "a-secret-from-the-console"},
        "confidential-port": 0,
        "verify-token-audience": True,
    }
    (tmp_path / "keycloak.json").write_text(json.dumps(exported))
    (tmp_path / "keycloak.json").chmod(0o600)
    result = init(cli, "--keycloak-json", "keycloak.json", "--url", URL, *NON_INTERACTIVE, "--json")
    assert result.returncode == 0, result.stderr
    assert "a-secret-from-the-console" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["issuer"], report["client_id"]) == (ISSUER, "legacy-app")
    assert report["not_copied"] == ["verify-token-audience"]
    document = tomllib.loads((tmp_path / "adapter.toml").read_text())
    assert document["ssl-required"] == "all"
    assert "a-secret-from-the-console" not in (tmp_path / "adapter.toml").read_text()
    disagreeing = init(
        cli, "--keycloak-json", "keycloak.json", "--client-id", "other", "--url", URL,
        "--out", "again", *NON_INTERACTIVE,
    )  # fmt: skip
    assert_refused(disagreeing, "--client-id: 'other' differs from", "'legacy-app'")


@pytest.mark.parametrize(("alg", "written"), [("RS256", None), ("PS256", "PS256"), ("EdDSA", None)])
def test_the_key_signs_with_the_algorithm_asked_for(
    cli: CliRunner, tmp_path: Path, alg: str, written: str | None
) -> None:
    result = init(cli, *FLAGS, *NON_INTERACTIVE, "--alg", alg)
    assert result.returncode == 0, result.stderr
    (key,) = tomllib.loads((tmp_path / "adapter.toml").read_text())["credentials"]["keys"]
    assert key.get("algorithm") == written  # only where the key's type does not say it
    checked = cli("config", "check", "adapter.toml", env=ENV)
    assert checked.returncode == 0, checked.stderr
    assert f"key:           active  {alg}" in checked.stdout
