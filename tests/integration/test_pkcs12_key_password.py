"""PKCS#12 files whose key has its own password, as Java's KeyStore API and Keycloak write."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adapter import read_keystore
from adapter.errors import KeystoreError
from adapter.keys._pkcs12_mac import verify_mac
from tests.conftest import run_tool

STORE = "store-pass-1"
KEY = "key-pass-22"

WRITER = textwrap.dedent(
    """\
    import java.io.*;
    import java.security.*;

    public class TwoPasswords {
        public static void main(String[] args) throws Exception {
            KeyStore source = KeyStore.getInstance("JKS");
            source.load(new FileInputStream(args[0]), args[2].toCharArray());
            Key key = source.getKey("app", args[3].toCharArray());
            KeyStore target = KeyStore.getInstance("PKCS12");
            target.load(null, null);
            char[] keyPassword = args[3].toCharArray();
            target.setKeyEntry("app", key, keyPassword, source.getCertificateChain("app"));
            target.store(new FileOutputStream(args[1]), args[2].toCharArray());
        }
    }
    """
)


@pytest.fixture(scope="module")
def two_password_p12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("p12")
    jks = directory / "source.jks"
    run_tool("keytool", "-genkeypair", "-alias", "app", "-keyalg", "EC", "-groupname",
             "secp256r1", "-dname", "CN=app", "-storetype", "JKS", "-keystore", str(jks),
             "-storepass", STORE, "-keypass", KEY)  # fmt: skip
    source = directory / "TwoPasswords.java"
    source.write_text(WRITER)
    target = directory / "two.p12"
    run_tool("java", str(source), str(jks), str(target), STORE, KEY)
    return target


def test_key_password_opens_the_key(two_password_p12: Path) -> None:
    (entry,) = read_keystore(two_password_p12, password=STORE, key_password=KEY)
    assert entry.alias == "app"
    assert len(entry.cert_chain) == 1
    assert entry.cert_chain[0].public_key() == entry.private_key.public_key()


@pytest.mark.parametrize(
    ("store", "key", "reason"),
    [
        ("wrong-store", KEY, "wrong store password"),
        (STORE, "wrong-key", "check the key password"),
        (STORE, None, "the key has its own password"),
    ],
)
def test_each_wrong_password_is_named(
    two_password_p12: Path, store: str, key: str | None, reason: str
) -> None:
    with pytest.raises(KeystoreError, match=reason) as raised:
        read_keystore(two_password_p12, password=store, key_password=key)
    assert KEY not in str(raised.value)
    assert STORE not in str(raised.value)


@pytest.mark.parametrize("legacy", [False, True])
def test_mac_check_agrees_with_openssl(tmp_path: Path, legacy: bool) -> None:
    key, cert, store = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "s.p12"
    run_tool("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=mac",
             "-days", "1")  # fmt: skip
    flags = ["-legacy"] if legacy else []
    run_tool("openssl", "pkcs12", "-export", *flags, "-inkey", str(key), "-in", str(cert),
             "-passout", f"pass:{STORE}", "-out", str(store))  # fmt: skip
    data = store.read_bytes()
    assert verify_mac(data, STORE) is True
    assert verify_mac(data, STORE + "x") is False
