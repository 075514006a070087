"""Encryption keys from real keystores, as /k_jwks serves them, and ``keys rotate --use enc``.

Keystores are PKCS#12 (the adapter's writer), JKS made by keytool (RSA and EC), PEM and a JWK
file; each enc key is published by the WSGI middleware's /k_jwks with ``use: enc`` and an
explicit ``alg``, and a token encrypted (by joserfc, as a server would) to the published key
decrypts with the configured one.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey

from adapter import OIDCWSGIMiddleware, load_config, load_key_ring
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.protocol.jwe import expected_id_tokens, signed_token
from tests.app_server import hello
from tests.conftest import CliRunner, run_tool

PASSWORD = "Enc-St0re-pw-41c2"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
SERVER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
INNER = sign_compact(
    encode_header({"alg": "RS256"}), {"sub": "alice"}, make_signer("RS256", SERVER)
)


def keytool(*args: str) -> None:
    run_tool("keytool", *args, input=b"")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("enc-stores")
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_keystore(
        directory / "sig.p12", "pkcs12", "sig", signing,
        self_signed_certificate(signing, common_name("sig"), 5), PASSWORD,
    )  # fmt: skip
    p12 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_keystore(
        directory / "enc.p12", "pkcs12", "enc-p12", p12,
        self_signed_certificate(p12, common_name("enc-p12"), 5), PASSWORD,
    )  # fmt: skip
    for alias, args in (
        ("enc-rsa", ("-keyalg", "RSA", "-keysize", "2048")),
        ("enc-ec", ("-keyalg", "EC", "-groupname", "secp384r1")),
    ):
        keytool("-genkeypair", "-keystore", str(directory / "enc.jks"), "-storetype", "JKS",
                "-storepass", PASSWORD, "-keypass", PASSWORD, "-alias", alias, *args,
                "-dname", f"CN={alias}", "-validity", "2")  # fmt: skip
    pem_key = ec.generate_private_key(ec.SECP256R1())
    write_keystore(
        directory / "enc.pem", "pem", "enc-pem", pem_key,
        self_signed_certificate(pem_key, common_name("enc-pem"), 5, "ES256"), None,
    )  # fmt: skip
    jwk_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    member = RSAKey.import_key(jwk_key).as_dict(private=True)
    member.update({"kid": "enc-jwk", "alg": "RSA-OAEP", "use": "enc"})
    (directory / "enc.jwk").write_text(json.dumps(member))
    for path in directory.iterdir():
        path.chmod(0o600)
    return directory


CONFIG = """\
issuer = "https://sso.example.com/realms/demo"
client-id = "my-app"
session-secret = "enc-keys-session-secret-0123456789abcdef"
id-token-encrypted-response-alg = "RSA-OAEP-256"
id-token-encrypted-response-enc = "A256GCM"

[credentials]
method = "private_key_jwt"

[[credentials.keys]]
keystore = "sig.p12"
password-env = "ENC_STORE_PW"

[[credentials.keys]]
keystore = "enc.p12"
password-env = "ENC_STORE_PW"
use = "enc"

[[credentials.keys]]
keystore = "enc.jks"
password-env = "ENC_STORE_PW"
alias = "enc-rsa"
use = "enc"
algorithm = "RSA-OAEP-256"
state = "next"

[[credentials.keys]]
keystore = "enc.jks"
password-env = "ENC_STORE_PW"
alias = "enc-ec"
use = "enc"
algorithm = "ECDH-ES+A128KW"

[[credentials.keys]]
keystore = "enc.pem"
use = "enc"
algorithm = "ECDH-ES"

[[credentials.keys]]
keystore = "enc.jwk"
use = "enc"
"""


@pytest.fixture
def config_path(stores: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENC_STORE_PW", PASSWORD)
    path = stores / "adapter.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def test_k_jwks_publishes_encryption_keys_from_every_keystore_type(config_path: Path) -> None:
    middleware = OIDCWSGIMiddleware(hello, str(config_path))
    with httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://app") as http:
        answer = http.get("/k_jwks")
    assert answer.status_code == 200
    published = answer.json()["keys"]
    assert [(k["use"], k["alg"], k["kty"], k.get("crv")) for k in published] == [
        ("sig", "RS256", "RSA", None),
        ("enc", "RSA-OAEP-256", "RSA", None),  # PKCS#12: RSA's default
        ("enc", "RSA-OAEP-256", "RSA", None),  # JKS by keytool, next: published
        ("enc", "ECDH-ES+A128KW", "EC", "P-384"),  # JKS by keytool
        ("enc", "ECDH-ES", "EC", "P-256"),  # PEM
        ("enc", "RSA-OAEP", "RSA", None),  # a JWK's own alg
    ]
    assert published[-1]["kid"] == "enc-jwk"
    for jwk in published:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert PASSWORD not in json.dumps(jwk)
    assert "x5c" in published[1]
    assert "x5c" in published[3]
    assert answer.content == load_key_ring(load_config(config_path, web=False)).jwks_bytes


@pytest.mark.parametrize("index", [1, 2, 3, 4, 5])
def test_a_token_encrypted_to_a_published_key_decrypts(config_path: Path, index: int) -> None:
    """What a server does with /k_jwks: encrypt to the enc key, by its alg and kid."""
    config = load_config(config_path, web=False)
    ring = load_key_ring(config)
    jwk = json.loads(ring.jwks_bytes)["keys"][index]
    public = (RSAKey if jwk["kty"] == "RSA" else ECKey).import_key(jwk)  # type: ignore[attr-defined]
    enc = "A128CBC-HS256"
    token = jwe.encrypt_compact(
        {"alg": jwk["alg"], "enc": enc, "kid": jwk["kid"]},
        INNER,
        public,
        algorithms=[jwk["alg"], enc],
    )
    expected = expected_id_tokens(config, ring)
    relaxed = type(expected)(expected.keys, (jwk["alg"],), (enc,))
    assert signed_token(token, relaxed) == INNER
    if jwk["alg"] != "RSA-OAEP-256":
        with pytest.raises(Exception, match="not expected"):
            signed_token(token, expected)  # the configured alg/enc only


def test_keys_rotate_use_enc_stages_an_encryption_key(
    stores: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = stores.parent / "rotate-enc"
    directory.mkdir()
    for name in ("sig.p12", "enc.p12"):
        (directory / name).write_bytes((stores / name).read_bytes())
        (directory / name).chmod(0o600)
    config = directory / "adapter.toml"
    config.write_text(
        'issuer = "https://sso.example.com/realms/demo"\nclient-id = "my-app"\n'
        'id-token-encrypted-response-alg = "RSA-OAEP-256"\n'
        '[credentials]\nmethod = "private_key_jwt"\n'
        '[[credentials.keys]]\nkeystore = "sig.p12"\npassword-env = "ENC_STORE_PW"\n'
        '[[credentials.keys]]\nkeystore = "enc.p12"\npassword-env = "ENC_STORE_PW"\nuse = "enc"\n'
    )
    config.chmod(0o600)
    env = {"ENC_STORE_PW": PASSWORD}
    base = ["keys", "rotate", "--config", str(config), "--alias", "enc-2027", "--use", "enc",
            "--store-password-env", "ENC_STORE_PW"]  # fmt: skip
    dry = cli(*base, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "RSA-OAEP-256 encryption key" in dry.stdout
    assert 'use = "enc"\nalgorithm = "RSA-OAEP-256"' in dry.stdout
    assert not (directory / "enc-2027.p12").exists()
    written = cli(*base, "--write", env=env)
    assert written.returncode == 0, written.stderr
    out = written.stdout
    assert "Use JWKS URL" in out
    assert "ID token encryption key management algorithm" in out
    assert "fetches the JWKS again only for an unknown alg" in out
    assert 'mark the old encryption key (credentials.keys[1]) state = "retired"' in out
    assert f"oidc-adapter keys clear-server-cache --config {config}" in out
    assert PASSWORD not in out + written.stderr
    monkeypatch.setenv("ENC_STORE_PW", PASSWORD)
    loaded = load_config(config, web=False)
    assert [(k.use, k.algorithm, k.state) for k in loaded.credentials.keys][-1] == (
        "enc",
        "RSA-OAEP-256",
        None,
    )
    assert loaded.credentials.keys[-1].activate_at is not None
    again = cli(*base, env=env)
    assert again.returncode == 2
    assert "is already staged as next" in again.stderr
    ec_key = cli("keys", "rotate", "--config", str(config), "--alias", "enc-ec", "--use", "enc",
                 "--enc-alg", "ECDH-ES+A256KW", "--store-password-env", "ENC_STORE_PW",
                 "--force", env=env)  # fmt: skip
    assert ec_key.returncode == 0, ec_key.stderr
    assert "ECDH-ES+A256KW encryption key" in ec_key.stdout
    assert "id-token-encrypted-response-alg is RSA-OAEP-256" in ec_key.stderr


def test_keys_clear_server_cache_needs_a_keycloak_realm(tmp_path: Path, cli: CliRunner) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text(
        'issuer = "https://idp.example.com"\nclient-id = "a"\n'
        '[credentials]\nmethod = "client_secret_basic"\nsecret-env = "S"\n'
    )
    result = cli("keys", "clear-server-cache", "--config", str(config), env={"S": "x" * 20})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is not a Keycloak realm" in lines[0]


def test_keys_rotate_use_enc_under_a_public_client_is_refused(
    tmp_path: Path, cli: CliRunner
) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text('issuer = "https://idp.example.com"\nclient-id = "a"\npublic-client = true\n')
    result = cli("keys", "rotate", "--config", str(config), "--alias", "x", "--use", "enc")
    assert result.returncode == 2
    assert "a public client holds no keys" in result.stderr


def _copy_config(stores: Path, directory: Path, text: str) -> Path:
    directory.mkdir()
    for name in ("sig.p12", "enc.p12", "enc.pem"):
        (directory / name).write_bytes((stores / name).read_bytes())
        (directory / name).chmod(0o600)
    config = directory / "adapter.toml"
    config.write_text(text)
    config.chmod(0o600)
    return config


KEYS_ONLY = """\
issuer = "https://sso.example.com/realms/demo"
client-id = "my-app"

[credentials]
method = "private_key_jwt"

[[credentials.keys]]
keystore = "sig.p12"
password-env = "ENC_STORE_PW"
kid = "sig-1"

[[credentials.keys]]
keystore = "enc.p12"
password-env = "ENC_STORE_PW"
use = "enc"
kid = "enc-old"
state = "retired"

[[credentials.keys]]
keystore = "enc.pem"
use = "enc"
algorithm = "ECDH-ES"
kid = "enc-new"
"""


def test_check_show_and_remove_know_encryption_keys(stores: Path, cli: CliRunner) -> None:
    config = _copy_config(stores, stores.parent / "show-enc", KEYS_ONLY)
    env = {"ENC_STORE_PW": PASSWORD}
    checked = cli("config", "check", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "enc key:       retired RSA-OAEP-256 kid=enc-old" in checked.stdout
    assert "not published" in checked.stdout
    assert "enc key:       active  ECDH-ES" in checked.stdout
    rows = json.loads(cli("keys", "show", "--config", str(config), "--json", env=env).stdout)
    assert [(r.get("use", "sig"), r["kid"], r["state"]) for r in rows] == [
        ("sig", "sig-1", "active"),
        ("enc", "enc-old", "retired"),
        ("enc", "enc-new", "active"),
    ]
    refused = cli("keys", "remove", "--config", str(config), "--kid=enc-new", "--write", env=env)
    assert refused.returncode == 2
    assert "is an active encryption key" in refused.stderr
    removed = cli("keys", "remove", "--config", str(config), "--kid=enc-old", "--write", env=env)
    assert removed.returncode == 0, removed.stderr
    assert 'kid = "enc-old"' not in config.read_text()
    jwks = json.loads(cli("jwks", "--config", str(config), env=env).stdout)
    assert [k["kid"] for k in jwks["keys"]] == ["sig-1", "enc-new"]


def test_revoking_keys_beside_encryption_keys(stores: Path, cli: CliRunner) -> None:
    """A signing key's revocation promotes a signing key, never an encryption key; an
    encryption key is revoked on its own (no successor needed: it never signs)."""
    text = KEYS_ONLY.replace('state = "retired"\n', "") + (
        '\n[[credentials.keys]]\nkeystore = "enc.p12"\npassword-env = "ENC_STORE_PW"\n'
        'kid = "sig-next"\nstate = "next"\n'
    )
    config = _copy_config(stores, stores.parent / "revoke-enc", text)
    env = {"ENC_STORE_PW": PASSWORD}
    enc = cli("keys", "revoke", "--config", str(config), "--kid=enc-new", "--write", env=env)
    assert enc.returncode == 0, enc.stderr
    text_after = config.read_text()
    assert 'kid = "enc-new"' not in text_after
    assert "enc-new" in text_after  # listed in revoked-kids
    signing = cli("keys", "revoke", "--config", str(config), "--kid=sig-1", "--write", env=env)
    assert signing.returncode == 0, signing.stderr
    jwks = json.loads(cli("jwks", "--config", str(config), env=env).stdout)
    assert [(k["kid"], k["use"]) for k in jwks["keys"]] == [("sig-next", "sig"), ("enc-old", "enc")]
