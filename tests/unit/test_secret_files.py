"""Files with secrets are checked: private modes and owners, regular files only, bounded size.

A keystore, a password file or a configuration with a secret written in it warns once (logger
``adapter``) when others can read or change it; anything but a regular file of sane size is
refused before it is read, so a FIFO cannot hang a reload and /dev/zero cannot fill memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapter import load_config, load_key_ring, read_keystore
from adapter.errors import ConfigError, KeystoreError
from adapter.keys.generate import parse_subject, self_signed_certificate, write_keystore

ISSUER = "https://sso.example.com/realms/demo"
STORE_PASSWORD = "st0re-Pa55-secret-4d1e"
CLIENT_SECRET = "client-Secret-Value-7b2f"
SESSION_SECRET = "session-Secret-Value-of-32-bytes-or-more-9a4c"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CERT = self_signed_certificate(EC_KEY, parse_subject("CN=secret-files"), 5, "ES256")
NOT_ROOT = os.name != "posix" or os.geteuid() != 0


@pytest.fixture
def warnings_logged(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """The WARNING messages of the ``adapter`` logger so far."""
    with caplog.at_level(logging.WARNING, logger="adapter"):
        yield lambda: [
            r.getMessage()
            for r in caplog.records
            if r.name.startswith("adapter") and r.levelno == logging.WARNING
        ]


@pytest.fixture(autouse=True)
def _no_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OIDC_TEST_SECRET", raising=False)


def keystore(directory: Path, kind: str, mode: int) -> Path:
    """A valid PKCS#12 or PEM keystore with ``mode`` (written 0600, then changed)."""
    path = directory / f"client.{kind}"
    write_keystore(path, "pkcs12" if kind == "p12" else "pem", "client", EC_KEY, CERT,
                   STORE_PASSWORD)  # fmt: skip
    path.chmod(mode)
    return path


def private_key_jwt(keystore: Path) -> dict[str, Any]:
    """A native configuration with one PKCS#12 key in ``keystore`` (password inline)."""
    key = {"keystore": str(keystore), "type": "PKCS12", "password": STORE_PASSWORD}
    return {
        "issuer": ISSUER,
        "client-id": "app",
        "credentials": {"method": "private_key_jwt", "keys": [key]},
    }


def secret_file_config(path: Path) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "client-id": "app",
        "credentials": {"method": "client_secret_basic", "secret-file": str(path)},
    }


def write_file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def fails_quickly(action: Callable[[], object], seconds: float = 10) -> BaseException:
    """The exception ``action`` raises, run in a thread that must end within ``seconds``.

    Should ``action`` block reading a FIFO, the FIFO is opened for writing and closed, which
    ends the read, and the test fails instead of hanging.
    """
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    blocked = worker.is_alive()
    if blocked:
        _release_fifo_readers()
        worker.join(seconds)
    assert not blocked, f"still reading after {seconds} s: a FIFO or endless file blocked it"
    assert raised, "no error was raised"
    return raised[0]


_FIFOS: list[Path] = []


def _release_fifo_readers() -> None:
    for fifo in _FIFOS:
        with contextlib.suppress(OSError):  # ENXIO: no reader is waiting on this one
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    if not hasattr(os, "mkfifo"):
        pytest.skip("this system has no FIFOs")
    path = tmp_path / "pipe.p12"
    os.mkfifo(path)
    _FIFOS.append(path)
    yield path
    _FIFOS.remove(path)


# --- warnings: keystores ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["p12", "pem"])
def test_readable_keystore_warns_once_naming_the_file_and_chmod(
    tmp_path: Path, kind: str, warnings_logged: Callable[[], list[str]]
) -> None:
    path = keystore(tmp_path, kind, 0o644)

    read_keystore(path, password=STORE_PASSWORD)
    read_keystore(path, password=STORE_PASSWORD)  # a reload: no second warning

    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert str(path) in logged[0]
    assert f"chmod 600 {path}" in logged[0]
    assert "\n" not in logged[0]
    assert STORE_PASSWORD not in logged[0]


@pytest.mark.parametrize("kind", ["p12", "pem"])
def test_private_keystore_does_not_warn(
    tmp_path: Path, kind: str, warnings_logged: Callable[[], list[str]]
) -> None:
    read_keystore(keystore(tmp_path, kind, 0o600), password=STORE_PASSWORD)

    assert warnings_logged() == []


def test_group_readable_keystore_through_the_configuration_warns(
    tmp_path: Path, warnings_logged: Callable[[], list[str]]
) -> None:
    path = keystore(tmp_path, "p12", 0o640)

    load_key_ring(load_config(private_key_jwt(path)))

    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert f"chmod 600 {path}" in logged[0]


def test_symlink_to_a_private_keystore_is_read_without_warning(
    tmp_path: Path, warnings_logged: Callable[[], list[str]]
) -> None:
    target = keystore(tmp_path, "p12", 0o600)
    link = tmp_path / "mounted.p12"  # as Kubernetes mounts secrets: a symlink to the file
    link.symlink_to(target)

    assert read_keystore(link, password=STORE_PASSWORD)
    assert warnings_logged() == []


@pytest.mark.skipif(NOT_ROOT, reason="giving a file to another user needs root (CI runs as root)")
def test_keystore_owned_by_another_user_warns_with_chown(
    tmp_path: Path, warnings_logged: Callable[[], list[str]]
) -> None:
    path = keystore(tmp_path, "p12", 0o600)
    os.chown(path, 1234, -1)

    read_keystore(path, password=STORE_PASSWORD)

    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert str(path) in logged[0]
    assert "uid 1234" in logged[0]
    assert f"chown {os.geteuid()} {path}" in logged[0]


# --- warnings: secret files -------------------------------------------------------------------


def test_readable_secret_file_warns_once_naming_the_file_and_chmod(
    tmp_path: Path, warnings_logged: Callable[[], list[str]]
) -> None:
    secret = write_file(tmp_path / "client.secret", CLIENT_SECRET + "\n", 0o644)

    config = load_config(secret_file_config(secret))
    load_config(secret_file_config(secret))

    assert config.credentials.secret is not None
    assert config.credentials.secret.reveal() == CLIENT_SECRET
    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert str(secret) in logged[0]
    assert f"chmod 600 {secret}" in logged[0]
    assert CLIENT_SECRET not in logged[0]


def test_private_secret_file_does_not_warn(
    tmp_path: Path, warnings_logged: Callable[[], list[str]]
) -> None:
    secret = write_file(tmp_path / "client.secret", CLIENT_SECRET, 0o600)

    load_config(secret_file_config(secret))

    assert warnings_logged() == []


# --- warnings: the configuration file ---------------------------------------------------------

INLINE_SECRETS = {
    "native secret": {
        "issuer": ISSUER,
        "client-id": "app",
        "credentials": {"method": "client_secret_basic", "secret": CLIENT_SECRET},
    },
    "session secret": {
        "issuer": ISSUER,
        "client-id": "app",
        "public-client": True,
        "session-secret": SESSION_SECRET,
    },
    "keycloak.json keystore password": {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com",
        "resource": "app",
        "credentials": {
            "jwt": {"client-keystore-file": "k.p12", "client-keystore-password": STORE_PASSWORD}
        },
    },
    "keycloak.json secret with an env default": {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com",
        "resource": "app",
        "credentials": {"secret": "${env.OIDC_TEST_SECRET:" + CLIENT_SECRET + "}"},
    },
}


@pytest.mark.parametrize("case", list(INLINE_SECRETS))
def test_readable_configuration_with_an_inline_secret_warns_once(
    tmp_path: Path, case: str, warnings_logged: Callable[[], list[str]]
) -> None:
    path = write_file(tmp_path / "keycloak.json", json.dumps(INLINE_SECRETS[case]), 0o644)

    load_config(path)
    load_config(path)

    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert str(path) in logged[0]
    assert f"chmod 600 {path}" in logged[0]
    for value in (CLIENT_SECRET, SESSION_SECRET, STORE_PASSWORD):
        assert value not in logged[0]


@pytest.mark.parametrize("case", list(INLINE_SECRETS))
def test_private_configuration_with_an_inline_secret_does_not_warn(
    tmp_path: Path, case: str, warnings_logged: Callable[[], list[str]]
) -> None:
    path = write_file(tmp_path / "keycloak.json", json.dumps(INLINE_SECRETS[case]), 0o600)

    load_config(path)

    assert warnings_logged() == []


SECRETS_ELSEWHERE = {
    "secret-env": {"method": "client_secret_basic", "secret-env": "OIDC_TEST_SECRET"},
    "secret-file": {"method": "client_secret_basic", "secret-file": "client.secret"},
    "${env.VAR}": {"method": "client_secret_basic", "secret": "${env.OIDC_TEST_SECRET}"},
}


@pytest.mark.parametrize("case", list(SECRETS_ELSEWHERE))
def test_readable_configuration_without_an_inline_secret_does_not_warn(
    tmp_path: Path,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: Callable[[], list[str]],
) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)
    write_file(tmp_path / "client.secret", CLIENT_SECRET, 0o600)
    document = {"issuer": ISSUER, "client-id": "app", "credentials": SECRETS_ELSEWHERE[case]}
    path = write_file(tmp_path / "adapter.json", json.dumps(document), 0o644)

    load_config(path)

    assert warnings_logged() == []


def test_world_writable_configuration_warns_even_without_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings_logged: Callable[[], list[str]]
) -> None:
    monkeypatch.setenv("OIDC_TEST_SECRET", CLIENT_SECRET)
    document = {
        "issuer": ISSUER,
        "client-id": "app",
        "credentials": SECRETS_ELSEWHERE["secret-env"],
    }
    path = write_file(tmp_path / "adapter.json", json.dumps(document), 0o666)

    load_config(path)
    load_config(path)

    logged = warnings_logged()
    assert len(logged) == 1, logged
    assert str(path) in logged[0]
    assert "writable" in logged[0]
    assert f"chmod 600 {path}" in logged[0]


# --- refused before reading: not a regular file, too large -------------------------------------


def test_fifo_as_keystore_is_refused_without_blocking(tmp_path: Path, fifo: Path) -> None:
    config = load_config(private_key_jwt(fifo))

    error = fails_quickly(lambda: load_key_ring(config))

    assert isinstance(error, KeystoreError), repr(error)
    message = str(error)
    assert message.startswith("credentials.keys[0]: ")
    assert str(fifo) in message
    assert "FIFO" in message
    assert "not a regular file" in message


def test_fifo_as_secret_file_is_refused_without_blocking(tmp_path: Path, fifo: Path) -> None:
    error = fails_quickly(lambda: load_config(secret_file_config(fifo)))

    assert isinstance(error, ConfigError), repr(error)
    message = str(error)
    assert message.startswith("credentials.secret-file: ")
    assert str(fifo) in message
    assert "FIFO" in message


def test_fifo_as_configuration_is_refused_without_blocking(fifo: Path) -> None:
    error = fails_quickly(lambda: load_config(fifo))

    assert isinstance(error, ConfigError), repr(error)
    assert str(fifo) in str(error)
    assert "FIFO" in str(error)


@pytest.fixture
def special_file(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """/dev/zero, a directory or a listening Unix socket, by the test's parameter."""
    if request.param == "/dev/zero":
        if not Path("/dev/zero").exists():
            pytest.skip("/dev/zero does not exist here")
        yield Path("/dev/zero")
    elif request.param == "a directory":
        (tmp_path / "folder.p12").mkdir()
        yield tmp_path / "folder.p12"
    else:
        if not hasattr(socket, "AF_UNIX"):
            pytest.skip("this system has no Unix sockets")
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(tmp_path / "sock.p12"))
            server.listen()
            yield tmp_path / "sock.p12"


@pytest.mark.parametrize("where", ["keystore", "secret file"])
@pytest.mark.parametrize("special_file", ["/dev/zero", "a directory", "a socket"], indirect=True)
def test_device_directory_or_socket_is_refused_before_reading(
    where: str, special_file: Path
) -> None:
    path = special_file
    if where == "keystore":
        config = load_config(private_key_jwt(path))
        action: Callable[[], object] = lambda: load_key_ring(config)  # noqa: E731
        field = "credentials.keys[0]: "
    else:
        action = lambda: load_config(secret_file_config(path))  # noqa: E731
        field = "credentials.secret-file: "

    error = fails_quickly(action)

    assert isinstance(error, ConfigError), repr(error)
    message = str(error)
    assert message.startswith(field), message
    assert str(path) in message
    assert "not a regular file" in message


def test_oversized_keystore_is_refused_naming_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "huge.p12"
    path.write_bytes(b"\x30" * (2 << 20))
    path.chmod(0o600)
    config = load_config(private_key_jwt(path))

    with pytest.raises(KeystoreError) as raised:
        load_key_ring(config)

    message = str(raised.value)
    assert message.startswith("credentials.keys[0]: ")
    assert str(path) in message
    assert "1 MiB" in message


def test_oversized_secret_file_is_refused_naming_the_bound(tmp_path: Path) -> None:
    secret = write_file(tmp_path / "client.secret", "x" * (64 * 1024 + 1), 0o600)

    with pytest.raises(ConfigError) as raised:
        load_config(secret_file_config(secret))

    message = str(raised.value)
    assert message.startswith("credentials.secret-file: ")
    assert str(secret) in message
    assert "64 KiB" in message


def test_read_stays_bounded_when_the_file_grew_after_its_size_was_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = write_file(tmp_path / "client.secret", "x" * (256 * 1024), 0o600)
    real_stat, real_fstat = os.stat, os.fstat

    def small(status: os.stat_result) -> os.stat_result:
        fields = list(status[:10])
        fields[6] = 16  # st_size: what the file measured before it grew
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", lambda *a, **k: small(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: small(real_fstat(fd)))
    with pytest.raises(ConfigError) as raised:
        load_config(secret_file_config(secret))
    monkeypatch.undo()

    assert "64 KiB" in str(raised.value)
