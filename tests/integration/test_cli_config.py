"""The CLI over a configuration: config check, jwks, keys show/export-cert, and every bad input.

Bad input must give exit status 2 and exactly one line on stderr naming the file or field,
with no traceback, and no password may appear anywhere in the output.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from adapter import ConfigError, load_config, load_key_ring
from tests.conftest import CliRunner, run_tool

STORE_PASSWORD = "St0re-Pa55-7f3a"
KEY_PASSWORD = "K3y-Pa55-91bd"
SECRETS = (STORE_PASSWORD, KEY_PASSWORD)
ENV = {"STORE_PW": STORE_PASSWORD, "KEY_PW": KEY_PASSWORD}


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one line on stderr containing every needle, nothing secret, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oidc-adapter: error: ")
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def keystores(cli: CliRunner, tmp_path: Path) -> Path:
    """Three keystores made by our own CLI: PKCS#12 (RSA), JKS (EC, own key password), PEM."""
    made = [
        cli("keys", "generate", "--alias", "rsa-2026", "--out", "rsa.p12",
            "--store-password-env", "STORE_PW", env=ENV),
        cli("keys", "generate", "--alias", "ec-next", "--out", "ec.jks", "--alg", "ES256",
            "--store-password-env", "STORE_PW", "--key-password-env", "KEY_PW", env=ENV),
        cli("keys", "generate", "--alias", "ed", "--out", "ed.pem", "--alg", "EdDSA",
            "--no-password"),
    ]  # fmt: skip
    for result in made:
        assert result.returncode == 0, result.stderr
        assert STORE_PASSWORD not in result.stdout
        assert KEY_PASSWORD not in result.stdout
    return tmp_path


def write_config(directory: Path, keys: str, extra: str = "") -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        textwrap.dedent(
            """\
            issuer = "https://sso.example.com/realms/demo"
            client-id = "my-app"
            {extra}
            [credentials]
            method = "private_key_jwt"
            """
        ).format(extra=extra)
        + textwrap.dedent(keys)
    )
    path.chmod(0o600)  # some hold a password inline: private, or a warning joins the output
    return path


GOOD_KEYS = """
    [[credentials.keys]]
    keystore = "rsa.p12"
    password-env = "STORE_PW"
    alias = "rsa-2026"
    state = "active"

    [[credentials.keys]]
    keystore = "ec.jks"
    password-env = "STORE_PW"
    key-password-env = "KEY_PW"
    alias = "ec-next"
    activate-at = "2099-01-01T00:00:00Z"

    [[credentials.keys]]
    keystore = "ed.pem"
    state = "retired"
"""


def test_config_check_summarises_keys_and_states(keystores: Path, cli: CliRunner) -> None:
    write_config(keystores, GOOD_KEYS)
    result = cli("config", "check", "--config", "adapter.toml", env=ENV)
    assert result.returncode == 0, result.stderr
    assert "issuer:        https://sso.example.com/realms/demo" in result.stdout
    assert "client:        my-app" in result.stdout
    assert "method:        private_key_jwt" in result.stdout
    key_lines = [line for line in result.stdout.splitlines() if line.startswith("key:")]
    assert [line.split()[1] for line in key_lines] == ["active", "next", "retired"]
    assert "activates 2099-01-01T00:00:00Z" in key_lines[1]
    assert result.stdout.rstrip().endswith("ok")
    assert result.stderr == ""


def test_jwks_prints_exactly_the_ring_bytes(
    keystores: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(keystores, GOOD_KEYS)
    result = cli("jwks", "--config", "adapter.toml", env=ENV)
    assert result.returncode == 0, result.stderr
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    ring = load_key_ring(load_config(path))
    assert result.stdout.encode("ascii") == ring.jwks_bytes, "the served bytes, no newline"
    published = json.loads(result.stdout)["keys"]
    assert [k["kty"] for k in published] == ["RSA", "EC", "OKP"]
    assert all("d" not in k for k in published)


def test_keys_show_config_reports_states_as_json(keystores: Path, cli: CliRunner) -> None:
    write_config(keystores, GOOD_KEYS)
    result = cli("keys", "show", "--config", "adapter.toml", "--json", env=ENV)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["state"], r["algorithm"], r["key"]) for r in rows] == [
        ("active", "RS256", "RSA-2048"),
        ("next", "ES256", "EC P-256"),
        ("retired", "EdDSA", "Ed25519"),
    ]
    assert rows[1]["activate_at"] == "2099-01-01T00:00:00Z"


def test_export_cert_of_active_key_and_public_key(keystores: Path, cli: CliRunner) -> None:
    write_config(keystores, GOOD_KEYS)
    cert = cli("keys", "export-cert", "--config", "adapter.toml", env=ENV)
    assert cert.returncode == 0, cert.stderr
    assert cert.stdout.startswith("-----BEGIN CERTIFICATE-----")
    shown = run_tool("openssl", "x509", "-noout", "-subject", input=cert.stdout.encode())
    assert b"CN" in shown.stdout
    assert b"rsa-2026" in shown.stdout
    public = cli("keys", "export-cert", "ed.pem", "--public-key")
    assert public.returncode == 0, public.stderr
    assert public.stdout.startswith("-----BEGIN PUBLIC KEY-----")


# --- bad input ------------------------------------------------------------------------------


def with_key(keystore: str, **fields: str) -> str:
    lines = ["[[credentials.keys]]", f'keystore = "{keystore}"']
    lines += [f'{name.replace("_", "-")} = "{value}"' for name, value in fields.items()]
    return "\n".join(lines) + "\n"


BAD_CONFIGS = {
    "wrong store password": (
        with_key("rsa.p12", password="not-the-password"),
        ("credentials.keys[0]", "rsa.p12", "store password"),
    ),
    "wrong key password": (
        with_key("ec.jks", password_env="STORE_PW", key_password="wrong-key-pw"),
        ("credentials.keys[0]", "ec.jks", "key password"),
    ),
    "wrong JKS store password": (
        with_key("ec.jks", password="wrong-store-pw"),
        ("ec.jks", "store password"),
    ),
    "missing alias": (
        with_key("rsa.p12", password_env="STORE_PW", alias="nope"),
        ("rsa.p12", "'nope'", "rsa-2026"),
    ),
    "unknown type": (
        with_key("rsa.p12", password_env="STORE_PW", type="XYZ"),
        ("rsa.p12", "'XYZ'", "PKCS12"),
    ),
    "missing keystore": (
        with_key("gone.p12", password_env="STORE_PW"),
        ("gone.p12", "not found"),
    ),
    "algorithm not matching the key": (
        with_key("rsa.p12", password_env="STORE_PW", algorithm="ES256"),
        ("credentials.keys[0].algorithm", "ES256", "RSA-2048"),
    ),
    "missing password variable": (
        with_key("rsa.p12", password_env="NO_SUCH_VARIABLE"),
        ("credentials.keys[0].password-env", "NO_SUCH_VARIABLE"),
    ),
    "unknown algorithm": (
        with_key("rsa.p12", password_env="STORE_PW", algorithm="RS999"),
        ("credentials.keys[0].algorithm", "RS999"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
@pytest.mark.parametrize("verb", [("config", "check"), ("jwks",)])
def test_bad_configuration_is_one_line_exit_2(
    case: str, verb: tuple[str, ...], keystores: Path, cli: CliRunner
) -> None:
    keys, needles = BAD_CONFIGS[case]
    write_config(keystores, keys)
    result = cli(*verb, "--config", "adapter.toml", env=ENV)
    assert_user_error(result, *needles)
    assert result.stdout == ""


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_raises_config_error_in_the_library(
    case: str, keystores: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, needles = BAD_CONFIGS[case]
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write_config(keystores, keys)
    with pytest.raises(ConfigError) as raised:
        load_key_ring(load_config(path))
    message = str(raised.value)
    assert "\n" not in message
    assert all(needle in message for needle in needles), message
    assert all(secret not in message for secret in SECRETS)
    assert "not-the-password" not in message
    assert "wrong-key-pw" not in message


def test_corrupt_files(keystores: Path, cli: CliRunner) -> None:
    (keystores / "junk.p12").write_bytes(b"\x30\x82\x01\x00" + bytes(range(200)))
    truncated = (keystores / "ec.jks").read_bytes()[:300]
    (keystores / "cut.jks").write_bytes(truncated)
    (keystores / "bad.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    (keystores / "bad.json").write_text('{"kty": "RSA", "d": "x"}')
    for name in ("junk.p12", "cut.jks", "bad.pem", "bad.json"):
        (keystores / name).chmod(0o600)  # keystores are private, or a warning joins the output
    cases = [
        ("junk.p12", ("junk.p12", "not a PKCS#12")),
        ("cut.jks", ("cut.jks", "JKS")),
        ("bad.pem", ("bad.pem", "corrupt")),
        ("bad.json", ("bad.json", "malformed")),
    ]
    for name, needles in cases:
        result = cli("keys", "show", name, "--store-password-env", "STORE_PW", env=ENV)
        assert_user_error(result, *needles)


def test_rsa_1024_is_refused(tmp_path: Path, cli: CliRunner) -> None:
    run_tool("openssl", "genrsa", "-out", str(tmp_path / "weak.pem"), "1024")
    run_tool(
        "keytool", "-genkeypair", "-alias", "weak", "-keyalg", "RSA", "-keysize", "1024",
        "-dname", "CN=weak", "-storetype", "PKCS12", "-keystore", str(tmp_path / "weak.p12"),
        "-storepass", STORE_PASSWORD,
    )  # fmt: skip
    for name in ("weak.pem", "weak.p12"):
        (tmp_path / name).chmod(0o600)  # keystores are private, or a warning joins the output
    assert_user_error(cli("keys", "show", "weak.pem"), "weak.pem", "1024 bits", "2048")
    result = cli("keys", "show", "weak.p12", "--store-password-env", "STORE_PW", env=ENV)
    assert_user_error(result, "weak.p12", "1024 bits")


def test_cli_password_problems(keystores: Path, cli: CliRunner) -> None:
    assert_user_error(
        cli("keys", "show", "rsa.p12", "--store-password-env", "UNSET_VARIABLE"),
        "--store-password-env",
        "UNSET_VARIABLE",
    )
    assert_user_error(cli("keys", "show", "rsa.p12"), "rsa.p12", "--store-password-env")
    wrong = {"STORE_PW": "definitely-wrong"}
    assert_user_error(
        cli("keys", "show", "rsa.p12", "--store-password-env", "STORE_PW", env=wrong),
        "rsa.p12",
        "store password",
    )
    assert_user_error(
        cli("keys", "show", "ec.jks", "--store-password-env", "STORE_PW", env=ENV),
        "ec.jks",
        "key password",
    )
    assert_user_error(
        cli("keys", "generate", "--alias", "a", "--out", "new.p12"),
        "--store-password-env",
    )
    assert not (keystores / "new.p12").exists()


def test_generate_refuses_to_overwrite_and_bad_options(keystores: Path, cli: CliRunner) -> None:
    before = (keystores / "rsa.p12").read_bytes()
    result = cli("keys", "generate", "--alias", "x", "--out", "rsa.p12",
                 "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip
    assert_user_error(result, "rsa.p12", "already exists")
    assert (keystores / "rsa.p12").read_bytes() == before
    assert_user_error(
        cli(
            "keys",
            "generate",
            "--alias",
            "x",
            "--out",
            "x.pem",
            "--key-size",
            "1024",
            "--no-password",
        ),
        "--key-size",
    )
    assert_user_error(
        cli(
            "keys",
            "generate",
            "--alias",
            "x",
            "--out",
            "x.pem",
            "--subject",
            "not a dn",
            "--no-password",
        ),
        "--subject",
    )
    assert_user_error(cli("keys", "generate", "--alias", "x", "--out", "x.txt"), "x.txt")


def test_jks_without_the_extra_names_the_extra(keystores: Path, cli: CliRunner) -> None:
    blocker = keystores / "no-pyjks"
    (blocker / "jks").mkdir(parents=True)
    (blocker / "jks" / "__init__.py").write_text("raise ImportError('pyjks hidden by the test')\n")
    env = {**ENV, "PYTHONPATH": str(blocker)}
    result = cli("keys", "show", "ec.jks", "--store-password-env", "STORE_PW", env=env)
    assert_user_error(result, "ec.jks", "oidc-adapter[jks]")


def test_malformed_keycloak_json(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "keycloak.json").write_text('{"realm": "demo", "resource": }')
    assert_user_error(
        cli("config", "check", "--config", "keycloak.json"), "keycloak.json", "line 1"
    )


def test_unknown_field_is_a_warning_on_stderr(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "keycloak.json").write_text(
        json.dumps(
            {
                "realm": "demo",
                "auth-server-url": "https://sso.example.com/",
                "resource": "app",
                "credentials": {"secret": "s3cr3t-value"},
                "realm-pubic-key": "typo",
            }
        )
    )
    result = cli("config", "check", "--config", "keycloak.json")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr
    assert "realm-pubic-key" in result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert "issuer:        https://sso.example.com/realms/demo" in result.stdout


def test_password_options_take_names_never_values(keystores: Path, cli: CliRunner) -> None:
    result = cli("keys", "show", "rsa.p12", "--store-password-env", STORE_PASSWORD)
    assert_user_error(result, "--store-password-env", "NAME")


def test_unencrypted_pem_must_be_asked_for(tmp_path: Path, cli: CliRunner) -> None:
    assert_user_error(cli("keys", "generate", "--alias", "a", "--out", "a.pem"), "--no-password")
    assert not (tmp_path / "a.pem").exists()
    made = cli("keys", "generate", "--alias", "CN=odd, name+x", "--out", "b.pem", "--no-password")
    assert made.returncode == 0, made.stderr
    shown = cli("keys", "show", "b.pem", "--json")
    assert json.loads(shown.stdout)[0]["subject"] == "CN=CN=odd\\, name\\+x"


def test_keys_rotate_stages_a_new_key(keystores: Path, cli: CliRunner) -> None:
    write_config(keystores, GOOD_KEYS)
    (keystores / "adapter.toml").chmod(0o600)
    before = (keystores / "adapter.toml").read_text()
    # GOOD_KEYS stages ec-next already: another rotation beside it needs --force.
    printed = cli("keys", "rotate", "--config", "adapter.toml", "--alias", "rsa-2027",
                  "--store-password-env", "STORE_PW", "--activate-in", "7200", "--force",
                  env=ENV)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert printed.stderr == (
        "oidc-adapter: warning: credentials.keys[1] (ec.jks) is already staged as next (takes "
        "over at 2099-01-01T00:00:00Z); staging another beside it (--force)\n"
    )
    assert "[[credentials.keys]]" in printed.stdout
    assert 'keystore = "rsa-2027.p12"' in printed.stdout
    assert 'password-env = "STORE_PW"' in printed.stdout
    assert (keystores / "adapter.toml").read_text() == before, "printing changes nothing"
    assert not (keystores / "rsa-2027.p12").exists(), "nor makes a keystore (a dry run)"
    written = cli("keys", "rotate", "--config", "adapter.toml", "--alias", "ec-2027",
                  "--out", "ec-2027.p12", "--alg", "ES256", "--store-password-env", "STORE_PW",
                  "--write", "--force", env=ENV)  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert (keystores / "adapter.toml").stat().st_mode & 0o777 == 0o600, "mode kept"
    check = cli("keys", "show", "--config", "adapter.toml", env=ENV)
    assert check.returncode == 0, check.stderr
    assert "next switch:" in check.stdout
    rows = json.loads(cli("keys", "show", "--config", "adapter.toml", "--json", env=ENV).stdout)
    assert rows[-1]["state"] == "next"
    assert rows[-1]["algorithm"] == "ES256"
    pss = cli("keys", "rotate", "--config", "adapter.toml", "--alias", 'odd "name"/../x',
              "--alg", "PS256", "--store-password-env", "STORE_PW", "--write", "--force",
              env=ENV)  # fmt: skip
    assert pss.returncode == 0, pss.stderr
    assert (keystores / "odd-name-.-x.p12").exists() or any(keystores.glob("odd*.p12"))
    rows = json.loads(cli("keys", "show", "--config", "adapter.toml", "--json", env=ENV).stdout)
    assert rows[-1]["algorithm"] == "PS256", "a PS256 key gets its algorithm line"


def test_keys_rotate_refuses_to_edit_keycloak_json(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "keycloak.json").write_text(
        json.dumps(
            {
                "realm": "r",
                "auth-server-url": "https://sso.example.com",
                "resource": "a",
                "credentials": {"jwt": {"client-keystore-file": "k.p12"}},
            }
        )
    )
    result = cli("keys", "rotate", "--config", "keycloak.json", "--alias", "x", "--write",
                 "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip
    assert_user_error(result, "--config", "single key", "config convert")
    (tmp_path / "secret.toml").write_text(
        'issuer = "https://sso.example.com/r"\nclient-id = "a"\n[credentials]\n'
        'method = "client_secret_basic"\nsecret = "s"\n'
    )
    (tmp_path / "secret.toml").chmod(0o600)  # an inline secret: private, or a warning joins
    refused = cli("keys", "rotate", "--config", "secret.toml", "--alias", "x",
                  "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip
    assert_user_error(refused, "private_key_jwt")
    typed = cli("keys", "rotate", "--config", "secret.toml", "--alias", "x", "--write")
    assert typed.returncode == 2


def test_config_check_names_keycloak_fields_without_effect(tmp_path: Path, cli: CliRunner) -> None:
    """Keycloak users see which of their keycloak.json fields do nothing here, and why."""
    config = tmp_path / "keycloak.json"
    config.write_text(
        json.dumps(
            {
                "realm": "demo",
                "auth-server-url": "https://sso.example.com/",
                "resource": "app",
                "credentials": {"secret-jwt": {"secret": "s3cr3t-value"}},
                "enable-cors": True,
                "always-refresh-token": True,
                "confidential-port": 0,
                "use-resource-role-mappings": True,
            }
        )
    )
    config.chmod(0o600)
    result = cli("config", "check", "--config", "keycloak.json")
    assert result.returncode == 0, result.stderr
    assert "not used:      enable-cors" in result.stdout
    assert "no effect:     always-refresh-token (" in result.stdout
    assert "no effect:     confidential-port (" in result.stdout
    assert "use-resource-role-mappings" not in result.stdout, "it has an effect now"
    assert "assertion lifetime 10 s" in result.stdout, "Keycloak's default token-timeout"


def test_config_check_refuses_an_enforcer_field_it_cannot_honour(
    tmp_path: Path, cli: CliRunner
) -> None:
    """A keycloak.json whose policy-enforcer block asks for what this adapter cannot do is
    refused by name (issue 25), never loaded with the check silently missing."""
    block = {
        "paths": [
            {"path": "/a"},
            {"path": "/b"},
            {"path": "/c", "methods": [{"method": "GET", "scopes-enforcement-mode": "SOME"}]},
        ]
    }
    for enforcer, needles in (
        (block, ("policy-enforcer.paths[2].methods[0].scopes-enforcement-mode", "ALL, ANY")),
        (
            {"claim-information-point": {"http": {"url": "http://claims.example"}}},
            ("policy-enforcer.claim-information-point.http", "claims provider"),
        ),
    ):
        (tmp_path / "keycloak.json").write_text(
            json.dumps(
                {
                    "realm": "demo",
                    "auth-server-url": "https://sso.example.com/",
                    "resource": "app",
                    "public-client": True,
                    "policy-enforcer": enforcer,
                }
            )
        )
        assert_user_error(cli("config", "check", "--config", "keycloak.json"), *needles)
