"""``oidc-adapter init`` then ``oidc-adapter doctor`` against the real test identity server.

init writes the configuration and keystore and says how to register the client; the client is
registered exactly so (its ``client_metadata``: a ``jwks_uri`` client whose keys the server
fetches from the app's ``/k_jwks``, here a real local HTTP server serving the bytes of
``oidc-adapter jwks``). doctor then reports all ok, and each broken deployment with its fix and
exit status: an unreachable ``/k_jwks``, a wrong issuer, a missing truststore (the server on
TLS from a CA made here by openssl), a clock off (this machine's clock as doctor reads it,
shifted in the doctor process), a key the server refuses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_tool
from tests.http_host import LocalHost, Seen
from tests.idp_server import IdentityServer
from tests.integration.test_cli_prompt import Terminal
from tests.redis_server import RedisServer

PASSWORD = "D0ctor-St0re-Pa55"
ENV = {"KS_PW": PASSWORD}
CLIENT = "shop"
# oidc-provider caches a client's JWKS for max(60 s, max-age): an hour here, so a key the app
# publishes after the server's first fetch stays unknown to it (a server with a stale cache).
JWKS_CACHE = {"Content-Type": "application/json", "Cache-Control": "max-age=3600"}

# doctor in a process whose clock, as doctor reads it, is shifted by argv[1] seconds.
SHIFTED_CLOCK = """
import sys, time
from adapter.cli import doctor, main

shift = float(sys.argv[1])
doctor._now = lambda: time.time() + shift
sys.exit(main(sys.argv[2:]))
"""


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, shift: float | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "adapter.cli", *args]
    if shift is not None:
        command = [sys.executable, "-c", SHIFTED_CLOCK, str(shift), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, **ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Deployment:
    directory: Path
    config: Path
    url: str
    report: dict[str, Any]
    host: LocalHost
    idp: IdentityServer
    served: dict[str, bytes]  # what the app's /k_jwks serves now

    def doctor(self, *args: str, shift: float | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("doctor", *args, cwd=self.directory, shift=shift)


def lines_by_check(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """doctor's check lines by check name (the second column)."""
    found = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "warn", "fail", "skip"):
            found[rest.split()[0]] = line
    return found


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert "PRIVATE KEY" not in output


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("init-doctor")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/realms/test"
    with LocalHost() as host:
        url = host.url("")
        made = run_cli(
            "init", "--issuer", issuer, "--client-id", CLIENT, "--url", url,
            "--out", "deploy", "--store-password-env", "KS_PW", "--yes", "--json",
            cwd=directory,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert_clean(made)
        report = json.loads(made.stdout)
        config = directory / report["config"]
        jwks = run_cli("jwks", "--config", str(config), cwd=directory)
        assert jwks.returncode == 0, jwks.stderr
        served = {"jwks": jwks.stdout.encode("ascii")}
        host.route("/k_jwks", lambda _: (200, JWKS_CACHE, served["jwks"]))
        clients = [report["client_metadata"]]
        with IdentityServer(clients, tmp_dir=directory, issuer=issuer, port=port) as idp:
            yield Deployment(directory, config, url, report, host, idp, served)


# --- init, then doctor: all ok ---------------------------------------------------------------


def test_init_writes_a_checked_configuration(deployment: Deployment) -> None:
    config = deployment.config
    assert config.stat().st_mode & 0o777 == 0o600
    keystore = deployment.directory / deployment.report["keystore"]
    assert keystore.stat().st_mode & 0o777 == 0o600
    checked = run_cli("config", "check", str(config), cwd=deployment.directory)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.rstrip().endswith("ok")
    assert f"client:        {CLIENT}" in checked.stdout
    assert deployment.report["key"]["kid"] in checked.stdout
    steps = {step["setting"]: step["value"] for step in deployment.report["keycloak"]["steps"]}
    assert steps["JWKS URL"] == f"{deployment.url}/k_jwks"
    assert steps["Client Authenticator"] == "Signed JWT"
    assert steps["Front channel logout"] == "Off"


def test_doctor_reports_all_ok_for_the_client_init_described(deployment: Deployment) -> None:
    result = deployment.doctor("--config", str(deployment.config), "--url", deployment.url)
    assert_clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_by_check(result)
    for name in ("config", "discovery", "clock", "auth", "k_jwks", "next", "redirect"):
        assert checks[name].startswith("ok "), checks[name]
    assert checks["tls"].startswith("skip "), "plain http to the test server: nothing to trust"
    assert checks["redis"].startswith("skip ")
    assert deployment.report["key"]["kid"] in checks["auth"]
    assert result.stdout.splitlines()[-1].startswith("doctor: ok")
    # The server itself fetched the keys from the app's /k_jwks to check the signature.
    fetches = [s for s in deployment.host.requests_to("/k_jwks") if not _from_doctor(s)]
    assert fetches, "the identity server never fetched /k_jwks"


def _from_doctor(seen: Seen) -> bool:
    return seen.headers.get("user-agent", "").startswith("oidc-adapter")


def test_doctor_without_url_skips_what_needs_it(deployment: Deployment) -> None:
    result = deployment.doctor("--config", str(deployment.config))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_by_check(result)
    assert checks["k_jwks"].startswith("skip ")
    assert "pass --url PUBLIC_URL" in checks["k_jwks"]
    assert checks["redirect"].startswith("skip ")
    assert checks["auth"].startswith("ok ")


# --- doctor on broken deployments ------------------------------------------------------------


def test_unreachable_jwks_fails_with_its_fix(deployment: Deployment) -> None:
    wrong = f"http://127.0.0.1:{free_port()}"
    result = deployment.doctor("--config", str(deployment.config), "--url", wrong)
    assert_clean(result)
    assert result.returncode == 2, result.stdout
    checks = lines_by_check(result)
    jwks = checks["k_jwks"]
    assert jwks.startswith("fail ")
    assert f"{wrong}/k_jwks: cannot be fetched" in jwks
    assert "; fix: the server fetches the client's keys from" in jwks
    assert checks["redirect"].startswith("fail ")
    assert f'fix: set redirect-uri = "{wrong}/oidc/callback"' in checks["redirect"]
    assert checks["auth"].startswith("ok "), "the server itself still reaches the real app"


def test_a_path_without_jwks_fails(deployment: Deployment) -> None:
    result = deployment.doctor(
        "--config", str(deployment.config), "--url", deployment.url + "/elsewhere"
    )
    assert result.returncode == 2, result.stdout
    jwks = lines_by_check(result)["k_jwks"]
    assert "/elsewhere/k_jwks answered HTTP 404; fix:" in jwks


def test_wrong_issuer_fails_with_the_servers_issuer(deployment: Deployment) -> None:
    issuer = deployment.idp.issuer
    text = deployment.config.read_text().replace(f'"{issuer}"', f'"{issuer}/"')
    wrong = write_beside(deployment.config, "wrong-issuer.toml", text)
    result = deployment.doctor("--config", str(wrong), "--url", deployment.url)
    assert_clean(result)
    assert result.returncode == 2, result.stdout
    checks = lines_by_check(result)
    discovery = checks["discovery"]
    assert discovery.startswith("fail ")
    assert f"the server says its issuer is '{issuer}'" in discovery
    assert f'fix: set issuer = "{issuer}" in {wrong}' in discovery
    assert checks["auth"].startswith("skip ")


def test_clock_two_minutes_off_fails(deployment: Deployment) -> None:
    for shift, side in ((120, "ahead of"), (-120, "behind")):
        result = deployment.doctor("--config", str(deployment.config), shift=shift)
        assert result.returncode == 2, result.stdout + result.stderr
        clock = lines_by_check(result)["clock"]
        assert clock.startswith("fail ")
        assert f"this machine's clock is 120 s {side} the server's" in clock
        assert "more than clock-skew = 30 tolerates; fix: synchronise the clocks" in clock


def test_clock_a_little_off_warns(deployment: Deployment) -> None:
    result = deployment.doctor("--config", str(deployment.config), shift=20)
    assert result.returncode == 1, result.stdout + result.stderr
    clock = lines_by_check(result)["clock"]
    assert clock.startswith("warn ")
    assert "20 s ahead of the server's" in clock
    assert result.stdout.splitlines()[-1].startswith("doctor: warn")


def test_a_key_the_server_refuses_fails_with_its_fix(deployment: Deployment) -> None:
    directory = deployment.config.parent
    # The server has fetched (and caches) the keys init made: the first doctor run.
    first = deployment.doctor("--config", str(deployment.config))
    assert lines_by_check(first)["auth"].startswith("ok ")
    made = run_cli(
        "keys", "generate", "--alias", "other", "--out", str(directory / "other.p12"),
        "--store-password-env", "KS_PW", cwd=directory,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    keystore = deployment.report["keystore"].rsplit("/", 1)[-1]
    alias = deployment.report["key"]["alias"]
    text = deployment.config.read_text()
    text = text.replace(f'"{keystore}"', '"other.p12"').replace(f'"{alias}"', '"other"')
    other = write_beside(deployment.config, "other-key.toml", text)
    jwks = run_cli("jwks", "--config", str(other), cwd=directory)
    original = deployment.served["jwks"]
    deployment.served["jwks"] = jwks.stdout.encode("ascii")  # the app publishes the new key
    try:
        result = deployment.doctor("--config", str(other), "--url", deployment.url)
    finally:
        deployment.served["jwks"] = original
    assert_clean(result)
    assert result.returncode == 2, result.stdout
    checks = lines_by_check(result)
    assert checks["k_jwks"].startswith("ok "), "the app serves the key: the server refuses it"
    auth = checks["auth"]
    assert auth.startswith("fail ")
    assert "the server refused key " in auth
    assert "invalid_client" in auth
    assert f"Keys > Use JWKS URL = {deployment.url}/k_jwks" in auth
    assert "keys export-cert --config" in auth


def test_a_staged_key_must_be_published(deployment: Deployment) -> None:
    directory = deployment.config.parent
    made = run_cli(
        "keys", "generate", "--alias", "staged", "--out", str(directory / "staged.p12"),
        "--store-password-env", "KS_PW", "--alg", "ES256", cwd=directory,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    entry = (
        '\n[[credentials.keys]]\nkeystore = "staged.p12"\npassword-env = "KS_PW"\n'
        'alias = "staged"\nactivate-at = "2099-01-01T00:00:00Z"\n'
    )
    staged = write_beside(deployment.config, "staged.toml", deployment.config.read_text() + entry)
    result = deployment.doctor("--config", str(staged), "--url", deployment.url)
    assert result.returncode == 2, result.stdout + result.stderr
    checks = lines_by_check(result)
    assert checks["k_jwks"].startswith("fail "), "the app still serves the old key set"
    assert "fix: the app there runs another configuration" in checks["k_jwks"]
    assert checks["next"].startswith("fail ")
    assert "(activates 2099-01-01T00:00:00Z)" in checks["next"]
    assert "fix: every replica must publish a key before any signs with it" in checks["next"]

    jwks = run_cli("jwks", "--config", str(staged), cwd=directory)
    original = deployment.served["jwks"]
    deployment.served["jwks"] = jwks.stdout.encode("ascii")  # the app runs the new set
    try:
        result = deployment.doctor("--config", str(staged), "--url", deployment.url)
    finally:
        deployment.served["jwks"] = original
    assert result.returncode == 0, result.stdout
    checks = lines_by_check(result)
    assert checks["next"].startswith("ok ")
    assert checks["auth"].startswith("ok "), "the active key signs, not the staged one"


def test_redis_answers_or_fails_without_its_password(
    deployment: Deployment, tmp_path: Path
) -> None:
    password = "redis-Pa55-for-doctor"
    with RedisServer(tmp_path / "redis", password=password) as redis:
        text = 'redis-url-env = "DOCTOR_REDIS_URL"\n' + deployment.config.read_text()
        config = write_beside(deployment.config, "redis.toml", text)
        env = {"DOCTOR_REDIS_URL": redis.url}
        result = run_cli("doctor", "--config", str(config), cwd=deployment.directory, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        line = lines_by_check(result)["redis"]
        assert line == f"ok    redis      Redis at redis://127.0.0.1:{redis.port} answers"
        redis.stop()
        result = run_cli("doctor", "--config", str(config), cwd=deployment.directory, env=env)
    assert password not in result.stdout + result.stderr
    assert result.returncode == 2, result.stdout
    line = lines_by_check(result)["redis"]
    assert line.startswith(f"fail  redis      Redis at redis://127.0.0.1:{redis.port} does not")
    assert "; fix: start it, or fix redis-url" in line


def test_a_failing_middleware_setting_is_one_failed_check(deployment: Deployment) -> None:
    text = 'session-secret-env = "DOCTOR_UNSET_SECRET"\n' + deployment.config.read_text()
    config = write_beside(deployment.config, "no-secret.toml", text)
    result = deployment.doctor("--config", str(config), "--url", deployment.url)
    assert result.returncode == 2, result.stdout + result.stderr
    checks = lines_by_check(result)
    assert checks["middleware"].startswith("fail ")
    assert "DOCTOR_UNSET_SECRET is not set" in checks["middleware"]
    assert checks["auth"].startswith("ok "), "the client's checks still run"


def write_beside(config: Path, name: str, text: str) -> Path:
    path = config.with_name(name)
    path.write_text(text)
    path.chmod(0o600)
    return path


# --- TLS: the server's CA is not trusted without a truststore ---------------------------------


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate from it for IP 127.0.0.1: (CA, server key, server certificate)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    run_tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "2", "-subj", "/CN=doctor test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    key, csr, cert = directory / "tls.key", directory / "tls.csr", directory / "tls.pem"
    extensions = directory / "tls.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run_tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", "/CN=doctor test server")  # fmt: skip
    run_tool("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", "7", "-days", "2", "-out", str(cert),
             "-extfile", str(extensions))  # fmt: skip
    return ca, key, cert


def test_missing_truststore_fails_and_the_truststore_fixes_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    ca, key, cert = make_pki(tmp_path)
    clients = [deployment.report["client_metadata"]]
    with IdentityServer(
        clients,
        tmp_dir=tmp_path,
        issuer="https://127.0.0.1:{port}/realms/test",
        tls=(key, cert),
        ca=ca,
    ) as idp:
        text = deployment.config.read_text().replace(deployment.idp.issuer, idp.issuer)
        plain = write_beside(deployment.config, "tls.toml", text)
        result = deployment.doctor("--config", str(plain), "--url", deployment.url)
        assert_clean(result)
        assert result.returncode == 2, result.stdout + result.stderr
        checks = lines_by_check(result)
        tls = checks["tls"]
        assert tls.startswith("fail ")
        assert "certificate verify failed" in tls
        assert "fix: trust the server's CA with truststore = " in tls
        assert checks["discovery"].startswith("skip ")

        trusted = write_beside(
            deployment.config, "tls-trusted.toml", f'truststore = "{ca}"\n' + text
        )
        result = deployment.doctor("--config", str(trusted), "--url", deployment.url)
        assert result.returncode == 0, result.stdout + result.stderr
        checks = lines_by_check(result)
        assert checks["tls"].startswith("ok ")
        assert f"from {ca}" in checks["tls"]
        assert checks["auth"].startswith("ok ")


# --- init on a terminal ----------------------------------------------------------------------


def test_init_asks_on_a_terminal(tmp_path: Path) -> None:
    terminal = Terminal("init", cwd=tmp_path)
    terminal.expect(b"Issuer URL, or the path of a keycloak.json: ")
    terminal.type("https://sso.example.com/realms/demo")
    terminal.expect(b"Client id (Keycloak: Client ID): ")
    terminal.type("typed-app")
    terminal.expect(b"The app's public URL (e.g. https://app.example.com): ")
    terminal.type("https://app.example.com/")
    terminal.expect(b"Does the app accept bearer tokens (APIs)? [y/N]: ")
    terminal.type("y")
    terminal.expect(b"Keystore password: ")
    terminal.type(PASSWORD)
    terminal.expect(b"Keystore password (again): ")
    terminal.type(PASSWORD)
    assert terminal.finish() == 0, terminal.output
    assert PASSWORD.encode() not in terminal.output
    output = terminal.output.decode()
    assert "JWKS URL = https://app.example.com/k_jwks" in output
    assert "Included Client Audience = typed-app  (and the same on every other" in output
    assert "Set KEYSTORE_PASSWORD to the keystore password" in output
    text = (tmp_path / "adapter.toml").read_text()
    assert 'password-env = "KEYSTORE_PASSWORD"' in text
    assert 'redirect-uri = "https://app.example.com/oidc/callback"' in text
