"""The command line with a tenants file (docs/tenants.md): ``config check`` checks every tenant
and prints the JWKS URL each realm needs; the key commands take ``--tenant NAME`` and edit only
that tenant's file (a running app's reload then changes that tenant's ``/k_jwks`` only);
without ``--tenant`` they refuse a tenants file, naming its tenants."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest

from adapter import OIDCWSGIMiddleware
from tests.conftest import CliRunner
from tests.integration.test_cli_revoke import ENV, make_key, one_error_line, table

SESSION = "cli-tenants-session-secret-0123456789"


def tenants(directory: Path) -> Path:
    """acme (native, private_key_jwt with a keystore) by prefix; globex (keycloak.json) by host."""
    (directory / "tenants").mkdir()
    make_key(directory / "tenants", "acme-a")
    acme = directory / "tenants" / "acme.toml"
    acme.write_text(
        'issuer = "https://sso.example.com/realms/acme"\nclient-id = "app"\n'
        '[credentials]\nmethod = "private_key_jwt"\n' + table("acme-a")
    )
    acme.chmod(0o600)
    (directory / "tenants" / "globex.json").write_text(
        json.dumps(
            {
                "realm": "globex",
                "auth-server-url": "https://sso.example.com/",
                "resource": "app",
                "public-client": True,
            }
        )
    )
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "{SESSION}"\n'
        '[[tenants]]\nname = "acme"\nconfig = "tenants/acme.toml"\npath-prefix = "/acme"\n'
        '[[tenants]]\nname = "globex"\nconfig = "tenants/globex.json"\n'
        'host = "globex.example.com"\n'
    )
    path.chmod(0o600)
    return path


def test_config_check_checks_every_tenant_and_prints_its_jwks_url(
    tmp_path: Path, cli: CliRunner
) -> None:
    tenants(tmp_path)
    checked = cli("config", "check", "adapter.toml", env=ENV)
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert "tenant:        acme (path-prefix /acme)" in out
    assert "tenant:        globex (host globex.example.com)" in out
    assert "jwks url:      https://<your app's host>/acme/k_jwks" in out
    assert "jwks url:      https://globex.example.com/k_jwks" in out
    assert "issuer:        https://sso.example.com/realms/acme" in out
    assert "issuer:        https://sso.example.com/realms/globex" in out
    assert out.rstrip().endswith("ok: 2 tenants")
    one = cli("config", "check", "adapter.toml", "--tenant", "globex", env=ENV)
    assert one.returncode == 0, one.stderr
    assert "realms/globex" in one.stdout
    assert "realms/acme" not in one.stdout


def test_keys_rotate_with_tenant_edits_only_that_tenants_file(
    tmp_path: Path, cli: CliRunner
) -> None:
    path = tenants(tmp_path)
    shared_before = path.read_text()
    globex_before = (tmp_path / "tenants" / "globex.json").read_text()
    rotated = cli(
        "keys", "rotate", "--config", "adapter.toml", "--tenant", "acme", "--alias", "acme-b",
        "--store-password-env", "STORE_PW", "--write", env=ENV,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    acme = tomllib.loads((tmp_path / "tenants" / "acme.toml").read_text())
    assert [k["keystore"] for k in acme["credentials"]["keys"]] == ["acme-a.p12", "acme-b.p12"]
    assert (tmp_path / "tenants" / "acme-b.p12").exists()
    assert path.read_text() == shared_before
    assert (tmp_path / "tenants" / "globex.json").read_text() == globex_before
    jwks = cli("jwks", "--config", "adapter.toml", "--tenant", "acme", env=ENV)
    assert jwks.returncode == 0, jwks.stderr
    assert len(json.loads(jwks.stdout)["keys"]) == 2


def test_a_tenants_file_without_tenant_is_refused_naming_its_tenants(
    tmp_path: Path, cli: CliRunner
) -> None:
    tenants(tmp_path)
    refused = cli("jwks", "--config", "adapter.toml", env=ENV)
    assert refused.returncode == 2
    assert one_error_line(refused.stderr).endswith(
        "adapter.toml lists tenants (acme, globex); name one with --tenant NAME"
    )
    unknown = cli("jwks", "--config", "adapter.toml", "--tenant", "initech", env=ENV)
    assert unknown.returncode == 2
    assert one_error_line(unknown.stderr).endswith(
        "no tenant 'initech' (its tenants: acme, globex)"
    )


def test_a_rotation_with_tenant_and_a_reload_change_only_that_tenants_jwks(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``keys rotate --tenant acme --write`` while the app runs, then ``reload()``: acme's
    ``/k_jwks`` publishes the staged key, globex's answers exactly as before."""
    path = tenants(tmp_path)
    make_key(tmp_path / "tenants", "globex-a")
    globex = tmp_path / "tenants" / "globex.toml"
    globex.write_text(
        'issuer = "https://sso.example.com/realms/globex"\nclient-id = "app"\n'
        '[credentials]\nmethod = "private_key_jwt"\n' + table("globex-a")
    )
    globex.chmod(0o600)
    path.write_text(path.read_text().replace("tenants/globex.json", "tenants/globex.toml"))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    middleware = OIDCWSGIMiddleware(lambda environ, start: [], path)
    http = httpx.Client(transport=httpx.WSGITransport(app=middleware))

    def kids(url: str) -> list[str]:
        answer = http.get(url)
        assert answer.status_code == 200, answer.text
        return [key["kid"] for key in answer.json()["keys"]]

    acme_before = kids("http://app.example.com/acme/k_jwks")
    globex_page = http.get("http://globex.example.com/k_jwks")
    assert len(acme_before) == 1
    assert len(globex_page.json()["keys"]) == 1
    rotated = cli(
        "keys", "rotate", "--config", "adapter.toml", "--tenant", "acme", "--alias", "acme-b",
        "--store-password-env", "STORE_PW", "--write", env=ENV,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    assert middleware.reload() is True
    acme_after = kids("http://app.example.com/acme/k_jwks")
    assert set(acme_before) < set(acme_after)  # the staged key is published before it signs
    assert len(acme_after) == 2
    again = http.get("http://globex.example.com/k_jwks")
    assert again.content == globex_page.content
    assert again.headers["etag"] == globex_page.headers["etag"]
    http.close()
    middleware.close()
