"""``make demo``: a client key made with our CLI, the test identity server, an example app.

The app's client authenticates with private_key_jwt; the identity server fetches the app's
public keys from its ``/k_jwks`` ("Use JWKS URL"). Run ``python -m examples.demo [starlette |
flask | fastapi | django]``; stop with Ctrl-C. The browser tests call :func:`prepare` and
:func:`start` too, so the demo is what the tests prove.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
IDP_DIR = ROOT / "tests" / "idp"
CLIENT_ID = "demo-app"
DOCS_CLIENT_ID = "demo-app-docs"  # the FastAPI example's Swagger UI: a public client, PKCE
# Each example's pages, as the console lists them (a test asks each for alice: none is a 404).
PAGES = {
    "starlette": ("/", "/profile", "/admin", "/api/whoami", "/downstream"),
    "flask": ("/", "/profile", "/admin", "/api/whoami", "/downstream"),
    "fastapi": ("/", "/profile", "/admin", "/api/reports", "/docs"),
    "django": ("/", "/private", "/staff", "/api/whoami", "/admin/"),
}
DEFAULT_PORTS = (8000, 9000)  # the app's and the identity server's: make demo PORT= IDP_PORT=
USERS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}


def prepare(
    directory: Path, app_port: int, idp_port: int, public_url: str | None = None
) -> tuple[Path, Path, dict[str, str]]:
    """Keystore, adapter configuration and identity-server configuration in ``directory``.

    ``public_url`` is where browsers (and the server, for ``/k_jwks``) reach the app when a
    reverse proxy stands in front of it, e.g. ``https://127.0.0.1:8443/myapp``. Returns the two
    configuration paths and the environment the app needs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    (directory / "keystore.password").write_text(password + "\n")
    (directory / "keystore.password").chmod(0o600)
    keystore = directory / "demo-app.p12"
    if keystore.exists():
        keystore.unlink()
    env = {**os.environ, "DEMO_KEYSTORE_PASSWORD": password}
    subprocess.run(
        [sys.executable, "-m", "adapter.cli", "keys", "generate", "--alias", CLIENT_ID,
         "--out", str(keystore), "--store-password-env", "DEMO_KEYSTORE_PASSWORD"],
        check=True, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    app = public_url or f"http://127.0.0.1:{app_port}"
    issuer = f"http://127.0.0.1:{idp_port}"
    adapter_config = directory / "adapter.toml"
    adapter_config.write_text(
        f'issuer = "{issuer}"\n'
        f'client-id = "{CLIENT_ID}"\n'
        "# /docs and /openapi.json: the FastAPI example's Swagger UI, read before sign-in\n"
        'public-paths = ["/", "/docs", "/openapi.json"]\n'
        'scope = "openid profile email roles"\n'
        'session-secret-file = "session.secret"\n'
        "# /api/whoami is this app's API: the service account's tokens are issued for it\n"
        'token-audiences = ["urn:oidc-adapter:test-api"]\n'
        "\n[credentials]\n"
        'method = "private_key_jwt"\n'
        "\n[[credentials.keys]]\n"
        f'keystore = "{keystore.name}"\n'
        'password-file = "keystore.password"\n'
        f'alias = "{CLIENT_ID}"\n'
    )
    (directory / "session.secret").write_text(secrets.token_urlsafe(32) + "\n")
    (directory / "session.secret").chmod(0o600)
    idp_config = directory / "idp.json"
    client = {
        "client_id": CLIENT_ID,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks_uri": f"{app}/k_jwks",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{app}/oidc/callback"],
        "post_logout_redirect_uris": [f"{app}/oidc/logout"],  # back from a logout there
        # A logout at the server (its own pages, an admin) reaches the app too.
        "backchannel_logout_uri": f"{app}/oidc/backchannel-logout",
        "backchannel_logout_session_required": True,
    }
    docs = {
        "client_id": DOCS_CLIENT_ID,
        "token_endpoint_auth_method": "none",  # in a browser: no secret to keep
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [f"{app}/docs/oauth2-redirect"],
    }
    idp_config.write_text(
        json.dumps(
            {"port": idp_port, "issuer": issuer, "clients": [client, docs], "accounts": USERS}
        )
    )
    return adapter_config, idp_config, {"OIDC_ADAPTER_CONFIG": str(adapter_config)}


def start(
    flavor: str,
    adapter_config: Path,
    idp_config: Path,
    app_port: int,
    log: Path | None = None,
    *,
    root_path: str | None = None,
    idp_env: dict[str, str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start the identity server and the example app; both answer when this returns.

    ``log`` receives the identity server's output (its stderr logs every key fetch and error).
    ``root_path`` runs the app as a reverse proxy's backend mounted there: uvicorn with
    ``--root-path --proxy-headers --forwarded-allow-ips``, Flask behind werkzeug's ``ProxyFix``
    (which takes the prefix from ``X-Forwarded-Prefix``). ``idp_env`` adds to the identity
    server's environment (``NODE_EXTRA_CA_CERTS`` to trust a test CA).
    """
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed (the test identity server needs Node.js 20+)")
    output = log.open("wb") if log is not None else None
    idp = subprocess.Popen(
        [node, "server.mjs", str(idp_config)],
        cwd=IDP_DIR,
        env={**os.environ, **(idp_env or {})},
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )
    app = start_app(flavor, adapter_config, app_port, root_path=root_path)
    processes = [idp, app]
    issuer = json.loads(idp_config.read_text())["issuer"]
    try:
        wait_until_up(f"{issuer}/.well-known/openid-configuration", processes)
        wait_until_up(f"http://127.0.0.1:{app_port}/", processes)
    except BaseException:
        stop(processes)
        raise
    return processes


def start_app(
    flavor: str, adapter_config: Path, app_port: int, *, root_path: str | None = None
) -> subprocess.Popen[bytes]:
    """Start one example app process (see :func:`start`); it answers once it is up."""
    env = {
        **os.environ,
        "OIDC_ADAPTER_CONFIG": str(adapter_config),
        "EXAMPLE_API_URL": f"http://127.0.0.1:{app_port}",
        "EXAMPLE_SWAGGER_CLIENT_ID": DOCS_CLIENT_ID,
        "PYTHONPATH": str(ROOT),
    }
    if flavor == "django":
        env["DJANGO_DATABASE"] = str(adapter_config.parent / "django.sqlite3")
        manage = [sys.executable, "-m", "examples.django_app.manage"]
        subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
        command = [*manage, "runserver", f"127.0.0.1:{app_port}", "--noreload", "--insecure"]
        return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    if flavor == "flask":
        factory = "create_app_behind_proxy" if root_path else "create_app"
        command = [sys.executable, "-m", "flask", "--app", f"examples.flask_app.app:{factory}",
                   "run", "--host", "127.0.0.1", "--port", str(app_port)]  # fmt: skip
    else:
        module = "fastapi_app" if flavor == "fastapi" else "starlette_app"
        command = [sys.executable, "-m", "uvicorn", "--factory",
                   f"examples.{module}.app:create_app", "--host", "127.0.0.1",
                   "--port", str(app_port)]  # fmt: skip
        if root_path:
            command += ["--root-path", root_path, "--proxy-headers",
                        "--forwarded-allow-ips", "127.0.0.1"]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def wait_until_up(url: str, processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Poll ``url`` until it answers (bounded; the answer is the synchronisation point).

    The bound is generous: a loaded 2-core CI machine once kept the identity server from
    listening for over 30 s (it generates its RSA key at start); a stuck server still fails.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"a process exited before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(delay)  # back-off between polls
        delay = min(delay * 2, 0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def banner(flavor: str, app_port: int, idp_port: int) -> str:
    """What the console shows once both servers answer: where to go and whom to sign in as."""
    app = f"http://127.0.0.1:{app_port}"
    pages = [f"{app}{path}" for path in PAGES[flavor]]
    users = "\n".join(
        f"    {name:<6} roles: {', '.join(claims['realm_access']['roles'])}"
        for name, claims in USERS.items()
    )
    return (
        f"\n  The {flavor} example runs at {app}/\n    "
        + "\n    ".join(pages)
        + f"\n  Identity server: http://127.0.0.1:{idp_port}  (any password; any other name "
        "signs in as a plain user)\n"
        + users
        + f"\n  The server fetches the app's keys from {app}/k_jwks\n  Ctrl-C stops both.\n"
    )


def watch(processes: dict[str, subprocess.Popen[bytes]], interval: float = 0.5) -> int:
    """Wait for Ctrl-C (0) or for a server to die (1, naming it), whichever comes first.

    A demo whose identity server died would otherwise sit there answering 502s; saying which
    process stopped, and exiting non-zero, is what makes ``make demo`` fail visibly.
    """
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # after the children started
    while True:
        if signal.sigtimedwait(stop_signals, interval) is not None:
            return 0
        for name, process in processes.items():
            if process.poll() is not None:
                print(
                    f"demo: the {name} stopped (exit status {process.returncode}); "
                    "stopping the demo",
                    file=sys.stderr,
                    flush=True,
                )
                return 1


def ports_in_use(*ports: int) -> list[int]:
    """Those of ``ports`` something on this machine already listens on (127.0.0.1)."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                taken.append(port)
    return taken


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("flavor", nargs="?", default="starlette", choices=sorted(PAGES))
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS[0], help="the app's port")
    parser.add_argument(
        "--idp-port", type=int, default=DEFAULT_PORTS[1], help="the identity server's port"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(sys.argv[1:] if argv is None else argv)
    flavor, app_port, idp_port = args.flavor, args.port, args.idp_port
    taken = ports_in_use(app_port, idp_port)
    if taken:
        names = " and ".join(f"port {port}" for port in taken)
        verb = "are" if len(taken) > 1 else "is"
        target = "demo" if flavor == "starlette" else f"demo-{flavor}"
        print(
            f"demo: {names} {verb} in use (another demo still running?); choose others: "
            f"make {target} PORT={app_port + 1} IDP_PORT={idp_port + 1}",
            file=sys.stderr,
        )
        sys.exit(2)  # 2: nothing started (1 is a server that died while the demo ran)
    adapter_config, idp_config, _ = prepare(ROOT / "demo", app_port, idp_port)
    processes = start(flavor, adapter_config, idp_config, app_port)
    print(banner(flavor, app_port, idp_port), flush=True)
    try:
        status = watch({"identity server": processes[0], f"{flavor} app": processes[1]})
    finally:
        stop(processes)
    sys.exit(status)


if __name__ == "__main__":
    main()
