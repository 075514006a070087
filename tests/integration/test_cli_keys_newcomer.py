"""The key commands as a newcomer meets them (issue 21, the newcomer's path): a plain
``keys rotate`` is a dry run, ``config convert`` writes only what takes effect, ``config check``
shows the revoked kids, ``keys remove`` ends a rotation, ``keys revoke`` says the compromised
file is still on disk, and every command the CLI prints runs as printed.

The revocation's admin call against the real identity server is in test_revoke.py.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.cli import main
from tests.conftest import CliRunner
from tests.integration.test_cli_revoke import (
    ENV,
    PASSWORD,
    config,
    later,
    make_key,
    one_error_line,
    table,
)


def run_printed(command: str, monkeypatch: pytest.MonkeyPatch, directory: Path) -> int:
    """Run a command line the CLI printed, verbatim, as a shell would split it."""
    argv = shlex.split(command)
    assert argv[0] == "oidc-adapter", command
    monkeypatch.chdir(directory)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    try:
        return main(argv[1:])
    except SystemExit as exit:
        return int(exit.code or 0)


# --- keys rotate without --write: a true dry run ----------------------------------------------


def test_rotate_without_write_makes_nothing_and_the_write_run_then_works(
    tmp_path: Path, cli: CliRunner
) -> None:
    make_key(tmp_path, "a")
    path = config(tmp_path, table("a"))
    before = path.read_text()
    command = ("keys", "rotate", "--config", "adapter.toml", "--alias", "b", "--alg", "ES256",
               "--store-password-env", "STORE_PW")  # fmt: skip

    dry = cli(*command, env=ENV)

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == (
        f"would create: {tmp_path / 'b.p12'} (PKCS12, ES256 key, alias b)"
    )
    assert '[[credentials.keys]]\nkeystore = "b.p12"\npassword-env = "STORE_PW"\n' in dry.stdout
    assert "nothing written (a dry run): run the same command with --write" in dry.stdout
    assert not (tmp_path / "b.p12").exists(), "no keystore made"
    assert path.read_text() == before
    written = cli(*command, "--write", env=ENV)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "b.p12").exists()
    assert [k["keystore"] for k in tomllib.loads(path.read_text())["credentials"]["keys"]] == [
        "a.p12",
        "b.p12",
    ]


def test_rotate_dry_run_refuses_what_write_would(tmp_path: Path, cli: CliRunner) -> None:
    make_key(tmp_path, "a")
    config(tmp_path, table("a"))
    (tmp_path / "b.p12").write_bytes(b"taken")

    taken = cli("keys", "rotate", "--config", "adapter.toml", "--alias", "b", env=ENV)
    unset = cli("keys", "rotate", "--config", "adapter.toml", "--alias", "c",
                "--store-password-env", "NOT_SET_ANYWHERE", env=ENV)  # fmt: skip

    assert taken.returncode == unset.returncode == 2
    assert one_error_line(taken.stderr).endswith(
        "b.p12: already exists; choose another --out or remove it"
    )
    assert one_error_line(unset.stderr).endswith(
        "--store-password-env: environment variable NOT_SET_ANYWHERE is not set; export it first"
    )
    assert not (tmp_path / "c.p12").exists()


def test_rotate_dry_run_of_a_json_configuration_prints_the_generate_command(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_key(tmp_path, "a")
    path = tmp_path / "adapter.json"
    path.write_text(json.dumps({
        "issuer": "https://sso.example.com/realms/demo", "client-id": "my-app",
        "credentials": {"method": "private_key_jwt",
                        "keys": [{"keystore": "a.p12", "password-env": "STORE_PW"}]},
    }))  # fmt: skip

    dry = cli("keys", "rotate", "--config", "adapter.json", "--alias", "my key", "--alg", "ES256",
              "--store-password-env", "STORE_PW", env=ENV)  # fmt: skip

    assert dry.returncode == 0, dry.stderr
    generate = next(line for line in dry.stdout.splitlines() if "keys generate" in line)
    assert not (tmp_path / "my-key.p12").exists()
    assert run_printed(generate.removeprefix("#").strip(), monkeypatch, tmp_path) == 0
    assert (tmp_path / "my-key.p12").exists()


# --- config convert: only what takes effect ---------------------------------------------------


def test_convert_leaves_out_the_fields_that_have_no_effect(tmp_path: Path, cli: CliRunner) -> None:
    make_key(tmp_path, "a")
    no_effect = {"confidential-port": 0, "autodetect-bearer-only": True,
                 "always-refresh-token": True, "enable-pkce": False}  # fmt: skip
    (tmp_path / "keycloak.json").write_text(json.dumps({
        "realm": "demo", "auth-server-url": "https://sso.example.com/", "resource": "my-app",
        "credentials": {"jwt": {"client-keystore-file": "a.p12", "client-keystore-type": "PKCS12",
                                "client-keystore-password": "${env.STORE_PW}",
                                "client-key-alias": "a"}},
        **no_effect,
    }))  # fmt: skip

    done = cli("config", "convert", "--config", "keycloak.json", "--out", "adapter.toml", env=ENV)

    assert done.returncode == 0, done.stderr
    text = (tmp_path / "adapter.toml").read_text()
    for name in no_effect:
        assert name not in text
    left_out = next(line for line in done.stdout.splitlines() if line.startswith("left out: "))
    for name in no_effect:
        assert f"{name} (Java adapters only: " in left_out
    check = cli("config", "check", "adapter.toml", env=ENV)
    assert check.returncode == 0, check.stderr
    assert "no effect:" not in check.stdout


def test_the_commands_convert_prints_run_as_printed(
    tmp_path: Path,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_key(tmp_path, "a")
    (tmp_path / "keycloak.json").write_text(json.dumps({
        "realm": "demo", "auth-server-url": "https://sso.example.com/", "resource": "my app",
        "credentials": {"jwt": {"client-keystore-file": "a.p12", "client-keystore-type": "PKCS12",
                                "client-keystore-password": "${env.STORE_PW}",
                                "client-key-alias": "a"}},
    }))  # fmt: skip

    done = cli("config", "convert", "--config", "keycloak.json", "--out", "my adapter.toml",
               env=ENV)  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    check = next(line for line in lines if line.startswith("next: ")).removeprefix("next: ")
    rotate = next(line for line in lines if line.startswith("then, ")).split(": ", 1)[1]
    assert "--store-password-env STORE_PW" in rotate
    assert run_printed(check, monkeypatch, tmp_path) == 0
    assert run_printed(rotate, monkeypatch, tmp_path) == 0
    assert "would create: " in capsys.readouterr().out


# --- config check, keys remove, keys revoke: the end of a key ---------------------------------


def test_config_check_shows_the_revoked_kids(tmp_path: Path, cli: CliRunner) -> None:
    make_key(tmp_path, "b")
    path = config(tmp_path, table("b"), credentials='revoked-kids = ["old-2", "old-1"]\n')

    check = cli("config", "check", str(path), env=ENV)

    assert check.returncode == 0, check.stderr
    assert "revoked:       old-1, old-2 (never loaded, signed with or published again)" in (
        check.stdout.splitlines()
    )


def test_remove_takes_a_retired_key_out(tmp_path: Path, cli: CliRunner) -> None:
    a, b = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    path = config(tmp_path, table("a", state="retired"), "# the new key\n" + table("b"))
    before = path.read_text()

    dry = cli("keys", "remove", "--config", str(path), f"--kid={a}", env=ENV)

    assert dry.returncode == 0, dry.stderr
    assert f"remove kid {a} (credentials.keys[0], a.p12)" in dry.stdout
    assert "nothing written; --write makes it" in dry.stdout
    assert '-keystore = "a.p12"' in dry.stdout
    assert path.read_text() == before
    done = cli("keys", "remove", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"{tmp_path / 'a.p12'} is used by no other configured key: delete it once every app has "
        "reloaded (destroy every copy if the key was compromised)"
    )
    text = path.read_text()
    assert "# the new key" in text
    assert [k["keystore"] for k in tomllib.loads(text)["credentials"]["keys"]] == ["b.p12"]
    shown = json.loads(cli("keys", "show", "--config", str(path), "--json", env=ENV).stdout)
    assert [row["kid"] for row in shown] == [b]


def test_remove_says_when_the_keystore_is_still_used(tmp_path: Path, cli: CliRunner) -> None:
    make_key(tmp_path, "a")
    path = config(
        tmp_path,
        table("a", state="retired", kid="old-name"),
        table("a", kid="new-name"),  # the same key file under another kid
    )

    done = cli("keys", "remove", "--config", str(path), "--kid", "old-name", "--write", env=ENV)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"{tmp_path / 'a.p12'} is still used by credentials.keys[0]: keep it"
    )


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ((("a", {}), ("b", {"state": "retired"})), "is the active key: it signs now"),
        ((("b", {}), ("a", {"activate_at": later(2)})), "is staged as next (takes over at "),
    ],
)
def test_remove_refuses_a_key_that_signs_or_will(
    tmp_path: Path,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tables: tuple[tuple[str, dict[str, str]], ...],
    expected: str,
) -> None:
    a, _ = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    path = config(tmp_path, *(table(name, **fields) for name, fields in tables))
    before = path.read_text()

    refused = cli("keys", "remove", "--config", str(path), f"--kid={a}", "--write", env=ENV)

    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert f"--kid: {a} {expected}" in line
    assert path.read_text() == before
    if "active" in expected:  # the printed fix for a compromised key runs as printed
        revoke = line.split("compromised: ", 1)[1]
        assert run_printed(revoke, monkeypatch, tmp_path) == 2  # no next key: refused, as it says
    else:
        revoke = line.split("compromised: ", 1)[1]
        assert run_printed(revoke, monkeypatch, tmp_path) == 0
        assert a not in {
            k.get("kid") for k in tomllib.loads(path.read_text())["credentials"]["keys"]
        }


def test_revoke_says_the_compromised_file_is_still_on_disk(tmp_path: Path, cli: CliRunner) -> None:
    a = make_key(tmp_path, "a")
    make_key(tmp_path, "b")
    path = config(tmp_path, table("a"), table("b", state="next"))

    done = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)

    assert done.returncode == 0, done.stderr
    assert (
        f"the compromised key is still on disk in {tmp_path / 'a.p12'}: destroy it (and every "
        "copy: backups, other hosts); no configured key needs that file"
    ) in done.stdout.splitlines()
    assert (tmp_path / "a.p12").exists(), "the command never deletes a file"


# --- every printed command runs as printed ----------------------------------------------------


def test_the_rotate_command_a_revoke_refusal_prints_runs_as_printed(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal to revoke the only key names the command that stages a successor: run
    verbatim, it does, and the revocation then goes through."""
    directory = tmp_path / "with space"
    directory.mkdir()
    a = make_key(directory, "a")
    path = config(directory, table("a"))
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert refused.returncode == 2
    printed = re.search(r"stage one first \((.*)\), then revoke", one_error_line(refused.stderr))
    assert printed is not None, refused.stderr

    assert run_printed(printed.group(1), monkeypatch, tmp_path) == 0

    stamp = f"my-app-{datetime.now(UTC):%Y-%m-%d}"
    assert (directory / f"{stamp}.p12").exists()
    done = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert done.returncode == 0, done.stderr
    assert f"revoke kid {a} (credentials.keys[0], a.p12): it was retired" in done.stdout


def test_the_clear_cache_command_a_timeout_prints_runs_as_printed(
    tmp_path: Path,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, _ = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    path = config(tmp_path, table("b"), credentials=f'revoked-kids = ["{a}"]\n')
    jwks = "http://127.0.0.1:9/k_jwks"  # nothing answers: the wait times out

    first = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--clear-server-cache",
                "--jwks-url", jwks, "--wait", "0", "--admin-token-env", "ADMIN_TOKEN",
                env={**ENV, "ADMIN_TOKEN": "t"})  # fmt: skip

    assert first.returncode == 2
    line = one_error_line(first.stderr)
    retry = line.split("then run ", 1)[1]
    assert retry == (
        f"oidc-adapter keys revoke --config {path} --kid={a} --clear-server-cache --jwks-url "
        f"{jwks} --wait 0 --admin-token-env ADMIN_TOKEN"
    )
    monkeypatch.setenv("ADMIN_TOKEN", "t")
    assert run_printed(retry, monkeypatch, tmp_path) == 2  # the same wait, not a usage error
    assert capsys.readouterr().err.strip().splitlines()[-1] == line


def test_remove_takes_out_an_entry_of_a_revoked_kid_whatever_its_state(
    tmp_path: Path, cli: CliRunner
) -> None:
    a, b = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    path = config(tmp_path, table("b"), table("a", state="next"),
                  credentials=f'revoked-kids = ["{a}"]\n')  # fmt: skip
    refused = cli("config", "check", str(path), env=ENV)
    assert refused.returncode == 2, "the entry of a revoked kid does not load"

    done = cli("keys", "remove", "--config", str(path), f"--kid={a}", "--write", env=ENV)

    assert done.returncode == 0, done.stderr
    check = cli("config", "check", str(path), env=ENV)
    assert check.returncode == 0, check.stderr
    assert f"revoked:       {a} (never loaded, signed with or published again)" in check.stdout
    assert f"kid={b}" in check.stdout
