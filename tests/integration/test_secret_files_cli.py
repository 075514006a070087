"""The CLI over a configuration that other users can read: it works, and says so once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CliRunner

CLIENT_SECRET = "cli-Secret-Value-5e8a"


def test_config_check_warns_once_about_a_readable_configuration_with_a_secret(
    tmp_path: Path, cli: CliRunner
) -> None:
    path = tmp_path / "keycloak.json"
    path.write_text(
        json.dumps(
            {
                "realm": "demo",
                "auth-server-url": "https://sso.example.com/",
                "resource": "app",
                "credentials": {"secret": CLIENT_SECRET},
            }
        )
    )
    path.chmod(0o644)

    result = cli("config", "check", "--config", "keycloak.json")

    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "keycloak.json" in lines[0]
    assert "chmod 600 keycloak.json" in lines[0]
    assert CLIENT_SECRET not in result.stdout + result.stderr
