"""``oidc-adapter keys revoke`` as an operator meets it, offline: what it refuses (exit 2, one
line with the fix), what it writes, and that a revoked key cannot come back by an edit.

The identity server's side (the stolen key refused, the admin call) is in test_revoke.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.keys.keyring import default_kid
from tests.conftest import CliRunner

PASSWORD = "cli-revoke-store-pw"
ISSUER = "https://sso.example.com/realms/demo"
ENV = {"STORE_PW": PASSWORD}


def make_key(directory: Path, name: str) -> str:
    """A PKCS#12 keystore ``name``.p12; its kid (Keycloak's)."""
    private = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(private, common_name(name), 5, "ES256")
    write_keystore(directory / f"{name}.p12", "pkcs12", name, private, certificate, PASSWORD)
    return default_kid(private.public_key())


def table(name: str, **fields: str) -> str:
    lines = ["[[credentials.keys]]", f'keystore = "{name}.p12"', 'password-env = "STORE_PW"']
    lines += [f'{key.replace("_", "-")} = "{value}"' for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def config(directory: Path, *tables: str, issuer: str = ISSUER, credentials: str = "") -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'# the demo app\nissuer = "{issuer}"\nclient-id = "my-app"\n\n'
        f'[credentials]\nmethod = "private_key_jwt"\n{credentials}\n' + "\n".join(tables)
    )
    path.chmod(0o600)
    return path


def later(hours: int) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("oidc-adapter: error: "), stderr
    return lines[0]


def test_the_only_key_is_not_revoked_without_a_successor(tmp_path: Path, cli: CliRunner) -> None:
    a = make_key(tmp_path, "a")
    path = config(tmp_path, table("a"))
    before = path.read_text()
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert f"{a} is the active key and no next key is staged" in line
    assert f"(oidc-adapter keys rotate --config {path} --alias my-app-" in line
    assert "--alg ES256 --store-password-env STORE_PW --activate-in 0 --write)" in line
    assert path.read_text() == before


def test_an_unknown_kid_lists_the_configured_ones(tmp_path: Path, cli: CliRunner) -> None:
    a = make_key(tmp_path, "a")
    path = config(tmp_path, table("a"))
    refused = cli("keys", "revoke", "--config", str(path), "--kid", "nope", env=ENV)
    assert refused.returncode == 2
    assert one_error_line(refused.stderr).endswith(
        f"--kid: no configured key has kid nope; the keys are: {a}"
    )


def test_the_active_key_hands_over_to_the_next_due_soonest(tmp_path: Path, cli: CliRunner) -> None:
    a, b, c = (make_key(tmp_path, name) for name in ("a", "b", "c"))
    c_due = later(5)
    path = config(
        tmp_path,
        table("a", state="active"),
        "# the January key\n" + table("b", state="next", activate_at=later(2)),
        table("c", activate_at=c_due),
    )
    done = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert done.returncode == 0, done.stderr
    assert f"kid {b} (credentials.keys[1] (b.p12#b)) becomes the active key now" in done.stdout
    text = path.read_text()
    assert "# the demo app" in text
    assert "# the January key" in text  # comments stay with their tables
    document = tomllib.loads(text)
    assert [k["keystore"] for k in document["credentials"]["keys"]] == ["b.p12", "c.p12"]
    assert document["credentials"]["revoked-kids"] == [a]
    promoted, untouched = document["credentials"]["keys"]
    assert "state" not in promoted
    since = datetime.now(UTC) - datetime.fromisoformat(promoted["activate-at"])
    assert timedelta(0) <= since < timedelta(minutes=2)  # backdated a minute for clock skew
    assert untouched["activate-at"] == c_due  # the rest of the schedule is kept
    shown = cli("keys", "show", "--config", str(path), "--json", env=ENV)
    assert shown.returncode == 0, shown.stderr
    states = {row["kid"]: row["state"] for row in json.loads(shown.stdout)}
    assert states == {b: "active", c: "next"}


def test_a_key_that_does_not_sign_is_just_removed(tmp_path: Path, cli: CliRunner) -> None:
    make_key(tmp_path, "a")
    b = make_key(tmp_path, "b")
    path = config(
        tmp_path,
        table("a", state="active"),
        table("b", activate_at=later(2)),
        credentials='revoked-kids = [\n  "old-1",\n  "old-2",\n]\n',
    )
    done = cli("keys", "revoke", "--config", str(path), f"--kid={b}", "--write", env=ENV)
    assert done.returncode == 0, done.stderr
    assert f"revoke kid {b} (credentials.keys[1], b.p12): it was next" in done.stdout
    assert "becomes the active key" not in done.stdout
    document = tomllib.loads(path.read_text())
    assert [k["keystore"] for k in document["credentials"]["keys"]] == ["a.p12"]
    assert document["credentials"]["keys"][0]["state"] == "active"
    assert document["credentials"]["revoked-kids"] == ["old-1", "old-2", b]


def test_without_write_nothing_changes_and_secrets_stay_hidden(
    tmp_path: Path, cli: CliRunner
) -> None:
    a = make_key(tmp_path, "a")
    make_key(tmp_path, "b")
    inline = f'[[credentials.keys]]\nkeystore = "a.p12"\npassword = "{PASSWORD}"\n'
    path = config(tmp_path, inline, table("b", activate_at=later(1)),
                  credentials='secret = "not-used-but-secret"\n')  # fmt: skip
    before = path.read_text()
    shown = cli("keys", "revoke", "--config", str(path), f"--kid={a}", env=ENV)
    assert shown.returncode == 0, shown.stderr
    assert path.read_text() == before
    assert "nothing written; --write makes it" in shown.stdout
    assert f'+revoked-kids = ["{a}"]' in shown.stdout
    assert '-password = "(hidden)"' in shown.stdout
    assert PASSWORD not in shown.stdout + shown.stderr
    assert "not-used-but-secret" not in shown.stdout + shown.stderr


def test_the_edit_keeps_what_it_does_not_change(tmp_path: Path, cli: CliRunner) -> None:
    """revoked-kids written as one string (or with a "#" in a kid), CRLF line endings, a
    symlinked file, its owner and mode: all kept, nothing else in the table lost."""
    a, _ = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    real = tmp_path / "real"
    real.mkdir()
    for name in ("a.p12", "b.p12"):
        (tmp_path / name).rename(real / name)
    settings = 'revoked-kids = "old#1"\nkey-switch-grace = 0\nassertion-lifetime = 30\n'
    path = config(real, table("a"), table("b", state="next"), credentials=settings)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    path.chmod(0o640)
    import os

    if os.getuid() == 0:
        os.chown(path, 65534, 65534)  # owned by someone else, as a deployed file is
    owner = path.stat().st_uid
    link = tmp_path / "adapter.toml"
    link.symlink_to(path)
    done = cli("keys", "revoke", "--config", str(link), f"--kid={a}", "--write", env=ENV)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink(), "the link is kept; the file it points to is edited"
    raw = path.read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    credentials = tomllib.loads(raw.decode())["credentials"]
    assert credentials["revoked-kids"] == ["old#1", a]
    assert credentials["key-switch-grace"] == 0
    assert credentials["assertion-lifetime"] == 30
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (owner, 0o640)
    assert sorted(p.name for p in real.iterdir()) == ["a.p12", "adapter.toml", "b.p12"]


# Runs the command as a process in which HOOK (module:name), once called between the read of the
# configuration and its write, performs SWAP: {"replace": [src, dst]} or {"append": [path, text]}.
# keys revoke: revoked_text has computed the edit. keys rotate: load_key_ring has checked the
# appended entry.
RACE = """
import importlib, json, os, sys
from adapter.cli import main

hook, swap = json.loads(sys.argv[1])
module_name, name = hook.split(":")
module = importlib.import_module(module_name)
original = getattr(module, name)

def racing(*args, **kwargs):
    result = original(*args, **kwargs)
    if "replace" in swap:
        os.replace(*swap["replace"])
    else:
        with open(swap["append"][0], "a") as file:
            file.write(swap["append"][1])
    return result

setattr(module, name, racing)
sys.exit(main(sys.argv[2:]))
"""
SWAPS = ["relinked", "renamed-over", "symlink-in-place", "edited"]
EDIT = "# an edit made meanwhile\n"


@dataclass
class Swap:
    """A configuration in real/, a decoy in elsewhere/, and the swap to make between them."""

    given: Path  # the --config path
    path: Path  # the file it leads to when the command starts
    decoy: Path
    action: dict[str, list[str]]
    before: dict[Path, bytes]

    def race(self, hook: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", RACE, json.dumps([hook, self.action]), *args],
            capture_output=True, text=True, check=False, cwd=self.path.parent.parent,
            env={**os.environ, **ENV}, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip

    def assert_refused_and_nothing_written(
        self, swap: str, raced: subprocess.CompletedProcess[str]
    ) -> None:
        assert raced.returncode == 2, raced.stdout + raced.stderr
        line = one_error_line(raced.stderr)
        expected = "was replaced, re-linked or edited while the command ran; nothing was written"
        assert expected in line
        assert "written to" not in raced.stdout
        assert "appended to" not in raced.stdout
        path, decoy, was = self.path, self.decoy, self.before
        assert decoy.read_bytes() == was[decoy], "the file swapped in is untouched"
        if swap == "relinked":
            assert path.read_bytes() == was[path], "nor the file read"
        if swap == "renamed-over":
            assert path.read_bytes() == was[decoy], "the file renamed over it is untouched"
        if swap == "edited":
            assert path.read_bytes() == was[path] + EDIT.encode()
        leftovers = [p.name for p in self.path.parent.iterdir() if p.name.startswith(".")]
        assert leftovers == [], "no temporary file left behind"


def swapped(tmp_path: Path, swap: str, *tables: str) -> Swap:
    """The configuration of ``tables`` in real/ (keys a and b there too), and the ``swap``:
    the symlink given pointed elsewhere, another file renamed over it, a symlink put in its
    place, or an edit in place."""
    real, elsewhere = tmp_path / "real", tmp_path / "elsewhere"
    real.mkdir()
    elsewhere.mkdir()
    path = config(real, *tables)
    for name in ("a.p12", "b.p12"):
        (tmp_path / name).rename(real / name)
    decoy = elsewhere / "adapter.toml"
    decoy.write_text("# another file: not to be written by the command\n")
    given = path
    if swap == "relinked":
        given = tmp_path / "adapter.toml"
        given.symlink_to(path)
        (tmp_path / "new-link").symlink_to(decoy)
        action = {"replace": [str(tmp_path / "new-link"), str(given)]}
    elif swap == "renamed-over":
        (real / "other.toml").write_bytes(decoy.read_bytes())
        action = {"replace": [str(real / "other.toml"), str(path)]}
    elif swap == "symlink-in-place":
        (real / "sneaky").symlink_to(decoy)
        action = {"replace": [str(real / "sneaky"), str(path)]}
    else:
        action = {"append": [str(path), EDIT]}
    before = {file: file.read_bytes() for file in (path, decoy)}
    return Swap(given, path, decoy, action, before)


@pytest.mark.parametrize("swap", SWAPS)
def test_a_file_swapped_between_read_and_write_is_not_written(tmp_path: Path, swap: str) -> None:
    """keys revoke --write replaces exactly the file it read: when, after the read, the symlink
    given is pointed elsewhere, another file is renamed over the configuration, a symlink is put
    in its place, or it is edited in place, the command refuses (exit 2, one line) and writes
    nothing, neither to the configuration nor to the file swapped in."""
    make_key(tmp_path, "a")
    b = make_key(tmp_path, "b")
    race = swapped(tmp_path, swap, table("a", state="active"), table("b", activate_at=later(2)))
    raced = race.race(
        "adapter.keys.revoke:revoked_text",
        "keys", "revoke", "--config", str(race.given), f"--kid={b}", "--write",
    )  # fmt: skip
    race.assert_refused_and_nothing_written(swap, raced)


@pytest.mark.parametrize("swap", SWAPS)
def test_rotate_writes_only_the_file_it_read(tmp_path: Path, swap: str) -> None:
    """keys rotate --write holds its file the same way: a swap after the read (while the
    appended entry is checked) makes it refuse, write nothing and remove the keystore it made."""
    make_key(tmp_path, "a")
    make_key(tmp_path, "b")
    race = swapped(tmp_path, swap, table("a", state="active"), table("b", state="retired"))
    raced = race.race(
        "adapter.cli.keys_rotate:load_key_ring",
        "keys", "rotate", "--config", str(race.given), "--alias", "c", "--alg", "ES256",
        "--store-password-env", "STORE_PW", "--write",
    )  # fmt: skip
    race.assert_refused_and_nothing_written(swap, raced)
    assert "the new entry was not kept (nor its keystore)" in raced.stderr
    assert not (race.path.parent / "c.p12").exists(), "the keystore made for it is removed"


def test_an_admin_token_given_as_the_option_is_not_echoed(tmp_path: Path, cli: CliRunner) -> None:
    a, _ = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    path = config(tmp_path, table("b", state="active"), credentials=f'revoked-kids = ["{a}"]\n')
    token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2ln"
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--clear-server-cache",
                  "--admin-token-env", token, env=ENV)  # fmt: skip
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert "--admin-token-env: give the NAME of an environment variable" in line
    assert token not in refused.stdout + refused.stderr


def test_a_revoked_key_cannot_come_back(tmp_path: Path, cli: CliRunner) -> None:
    a = make_key(tmp_path, "a")
    make_key(tmp_path, "b")
    path = config(
        tmp_path,
        table("a", kid="renamed-copy"),  # the stolen key under another kid
        table("b", activate_at=later(1)),
        credentials=f'revoked-kids = ["{a}"]\n',
    )
    refused = cli("config", "check", str(path), env=ENV)
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert f"kid {a} is listed in credentials.revoked-kids" in line
    assert "credentials.keys[0]" in line
    assert "keys rotate" in line


def test_keycloak_json_is_converted_first(tmp_path: Path, cli: CliRunner) -> None:
    a = make_key(tmp_path, "a")
    path = tmp_path / "keycloak.json"
    path.write_text(
        json.dumps(
            {
                "realm": "demo",
                "auth-server-url": "https://sso.example.com/",
                "resource": "my-app",
                "credentials": {
                    "jwt": {
                        "client-keystore-file": "a.p12",
                        "client-keystore-type": "PKCS12",
                        "client-keystore-password": "${env.STORE_PW}",
                        "client-key-alias": "a",
                    }
                },
            }
        )
    )
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", env=ENV)
    assert refused.returncode == 2
    assert "convert it first (oidc-adapter config convert" in one_error_line(refused.stderr)


def test_json_configurations_are_edited_by_hand(tmp_path: Path, cli: CliRunner) -> None:
    a, b = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    keys = [
        {"keystore": "a.p12", "password-env": "STORE_PW"},
        {"keystore": "b.p12", "password-env": "STORE_PW", "activate-at": later(1)},
    ]
    path = tmp_path / "adapter.json"
    path.write_text(
        json.dumps(
            {
                "issuer": ISSUER,
                "client-id": "my-app",
                "credentials": {"method": "private_key_jwt", "keys": keys},
            }
        )
    )
    before = path.read_text()
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--write", env=ENV)
    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert "is not TOML, which is the only format edited" in line
    assert "remove credentials.keys[0] (a.p12), set activate-at = " in line
    assert (
        f'in credentials.keys[1] (and drop its state), and set credentials.revoked-kids = ["{a}"]'
        in line
    )
    shown = cli("keys", "revoke", "--config", str(path), f"--kid={a}", env=ENV)
    assert shown.returncode == 0, shown.stderr
    assert f"kid {b} (credentials.keys[1]" in shown.stdout
    assert "remove credentials.keys[0]" in shown.stdout
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://login.example.com", "is not a Keycloak realm"),
        ("https://sso.example.com/realms/demo", "needs --write"),
    ],
)
def test_clearing_the_server_cache_needs_keycloak_and_the_change_first(
    tmp_path: Path, cli: CliRunner, issuer: str, expected: str
) -> None:
    a, _ = make_key(tmp_path, "a"), make_key(tmp_path, "b")
    already = f'revoked-kids = ["{a}"]\n' if "realms" not in issuer else ""
    tables = [table("b", state="active")] if already else [table("a"), table("b", state="next")]
    path = config(tmp_path, *tables, issuer=issuer, credentials=already)
    refused = cli("keys", "revoke", "--config", str(path), f"--kid={a}", "--clear-server-cache",
                  env=ENV)  # fmt: skip
    assert refused.returncode == 2
    assert expected in one_error_line(refused.stderr)
