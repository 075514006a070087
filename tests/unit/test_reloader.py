"""The reloader: a fix that only adds a file is applied, and an edit during a load is not lost."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.reload import Reloader
from adapter.state import AdapterState

HEAD = 'issuer = "https://sso.example.com/r"\nclient-id = "app"\n[credentials]\n'
PRIVATE = 'method = "private_key_jwt"\n'


def keystore(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    write_keystore(
        path,
        "pkcs12",
        "k",
        key,
        self_signed_certificate(key, common_name("k"), 2, "ES256"),
        "pw-123456",
    )


def entry(name: str, state: str = "active") -> str:
    return f'[[credentials.keys]]\nkeystore = "{name}"\npassword = "pw-123456"\nstate = "{state}"\n'


class Holder:
    def __init__(self, config: Path) -> None:
        self.state = AdapterState.load(config)

    def swap(self, state: AdapterState) -> None:
        self.state = state


def test_a_missing_file_that_appears_later_is_picked_up(tmp_path: Path) -> None:
    keystore(tmp_path / "a.p12")
    config = tmp_path / "adapter.toml"
    config.write_text(HEAD + PRIVATE + entry("a.p12"))
    holder = Holder(config)
    reloader = Reloader(config, lambda: holder.state, holder.swap)
    config.write_text(HEAD + PRIVATE + entry("a.p12", "retired") + entry("b.p12"))
    assert not reloader.poll(), "b.p12 does not exist yet"
    assert reloader.status.last_error is not None
    assert "b.p12" in reloader.status.last_error
    keystore(tmp_path / "b.p12")  # the fix: only the new file appears
    assert reloader.poll()
    assert reloader.status.last_error is None
    assert len(holder.state.ring.keys) == 2


def test_failures_are_counted_and_logged_once(tmp_path: Path, caplog: object) -> None:
    keystore(tmp_path / "a.p12")
    config = tmp_path / "adapter.toml"
    config.write_text(HEAD + PRIVATE + entry("a.p12"))
    holder = Holder(config)
    reloader = Reloader(config, lambda: holder.state, holder.swap)
    config.write_text("[broken")
    for _ in range(3):
        assert not reloader.poll()
    assert reloader.status.failures == 3
    assert caplog.text.count("reload refused") == 1  # type: ignore[attr-defined]


def test_status_reads_in_iso_8601_and_as_json() -> None:
    import json

    from adapter.reload import ReloadStatus

    status = ReloadStatus(loaded_at=1_796_140_800.0, last_attempt=None, reloads=2)
    document = json.loads(status.to_json())
    assert document["loaded_at"] == "2026-12-01T16:00:00Z"
    assert document["last_attempt"] is None
    assert document["reloads"] == 2


def test_an_unknown_field_on_reload_is_logged_with_the_file_and_shown_in_status(
    tmp_path: Path, caplog: object
) -> None:
    import json
    import logging
    import warnings

    keystore(tmp_path / "a.p12")
    config = tmp_path / "adapter.toml"
    config.write_text(HEAD + PRIVATE + entry("a.p12"))
    holder = Holder(config)
    reloader = Reloader(config, lambda: holder.state, holder.swap)
    typo = HEAD.replace('client-id = "app"\n', 'client-id = "app"\nclock-skw = 5\n')
    config.write_text(typo + PRIVATE + entry("a.p12"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning escapes (it names the library)
        with caplog.at_level(logging.WARNING, logger="adapter.reload"):  # type: ignore[attr-defined]
            assert reloader.reload()
    logged = [r.message for r in caplog.records if r.name == "adapter.reload"]  # type: ignore[attr-defined]
    assert len(logged) == 1
    assert str(config) in logged[0]
    assert "clock-skw" in logged[0]
    assert "did you mean clock-skew?" in logged[0]
    (warning,) = reloader.status.warnings
    assert "clock-skw" in warning
    assert "did you mean clock-skew?" in warning
    assert json.loads(reloader.status.to_json())["warnings"] == [warning]
    config.write_text(HEAD + PRIVATE + entry("a.p12"))  # fixed: the warning goes
    assert reloader.reload()
    assert reloader.status.warnings == ()
