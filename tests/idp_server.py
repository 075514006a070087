"""The test identity server: node ``oidc-provider`` (tests/idp/server.mjs) as a real process.

    with IdentityServer(clients=[{...}], tmp_dir=tmp_path) as idp:
        httpx.post(idp.metadata["token_endpoint"], ...)
        print(idp.logs())   # the server's own reasons for every refused request

The node dependencies are installed on first use (``npm ci``, pinned by package-lock.json).
Without node/npm the test is skipped, or fails when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.conftest import IN_CI
from tests.reverse_proxy import ReverseProxy, TestCA, free_port

IDP_DIR = Path(__file__).parent / "idp"
_LOCK_FILE = IDP_DIR / "package-lock.json"
_STAMP = IDP_DIR / "node_modules" / ".oidc-adapter-installed"


class IdentityServerError(RuntimeError):
    """The identity server did not start or answer; the message carries its output."""


def _unavailable(message: str) -> NoReturn:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _lock_digest() -> str:
    return hashlib.sha256(_LOCK_FILE.read_bytes()).hexdigest()


def ensure_installed() -> str:
    """Install tests/idp's node modules unless they match package-lock.json; return node's path."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed; the test identity server needs Node.js >= 20")
    digest = _lock_digest()
    if _STAMP.is_file() and _STAMP.read_text().strip() == digest:
        return node
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed; it installs the test identity server (tests/idp)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=IDP_DIR,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    if result.returncode != 0:
        _unavailable(f"npm ci in {IDP_DIR} failed:\n{result.stdout}\n{result.stderr}")
    _STAMP.write_text(digest + "\n")
    return node


class IdentityServer:
    """Runs ``node server.mjs config.json`` for the life of a ``with`` block.

    ``clients`` go to oidc-provider as-is (snake_case client metadata); ``ttl`` overrides token
    lifetimes in seconds (``AccessToken``, ``ClientCredentials``, ``IdToken``, ...). The other
    keywords are the remaining fields of the config file (see tests/idp/server.mjs).
    """

    def __init__(
        self,
        clients: list[dict[str, Any]],
        ttl: dict[str, int] | None = None,
        tmp_dir: Path | None = None,
        *,
        issuer: str | None = None,
        resource: str | None = None,
        opaque_resource: str | None = None,
        accounts: dict[str, dict[str, Any]] | None = None,
        jwks: dict[str, Any] | None = None,
        port: int = 0,
        startup_timeout: float = 60.0,  # generous: a loaded CI machine can stall a start
        tls: tuple[Path, Path] | None = None,
        ca: Path | None = None,
        internal_port: int | None = None,
        admin_clients: list[str] | None = None,
        features: dict[str, Any] | None = None,
        dpop_nonce: bool = False,
        mtls: bool | dict[str, str] = False,
        acr_values: list[str] | None = None,
        token_exchange: bool = False,
        introspect_jwt_access_tokens: bool = False,
        introspection_audience_check: bool = False,
        userinfo_only_claims: bool = False,
        authorization: dict[str, Any] | None = None,
    ) -> None:
        """``tls`` is (key, certificate), PEM files: the server answers HTTPS, and ``ca`` (a
        PEM file) is what this starter trusts while it waits for discovery. ``internal_port``
        (0: any) opens a plain-HTTP listener serving the same provider as seen at the issuer
        (tests/idp/server.mjs); its URL is then ``internal_url``. ``mtls`` (True, or the header
        names ``{"header": ..., "verified_header": ...}``) turns on mutual TLS (RFC 8705) with
        the client certificate a proxy in front forwards: see :func:`behind_mtls_nginx`.

        Keycloak 26 stand-ins (tests/idp/server.mjs has the details):

        ``acr_values`` (levels, lowest first, e.g. ``["silver", "gold"]``) turns on
        oidc-provider's acrValues. The login issues the highest of these levels that the
        authorization request names in ``acr_values`` (or in the claims parameter's
        ``id_token.acr``), else the lowest: with ``["silver", "gold"]``, acr "gold" when the
        request's ``acr_values`` contains "gold", else "silver". It stands in for Keycloak's
        step-up flows, where a higher level means a second factor: a request naming a level above
        the session's asks for a login again. ``max_age`` and ``prompt=login`` behave natively
        (``auth_time`` in the ID token). ``acr`` is in the ID token and in the JWT access tokens
        (as Keycloak puts it there); each login is logged
        (``{"event":"login","login":"alice","acr":"gold","client_id":"web"}``).

        ``token_exchange`` registers Keycloak 26.2's standard token exchange (V2, RFC 8693) for
        clients whose ``grant_types`` include ``urn:ietf:params:oauth:grant-type:token-exchange``;
        each exchange is logged (``{"event":"token_exchange","client_id":...,"audience":...,
        "outcome":"issued"|"refused",...}``).

        ``introspect_jwt_access_tokens`` lets the introspection endpoint answer for JWT access
        tokens (on by itself once a client has ``"lightweight_access_tokens": true``: its JWT
        access tokens carry no role claims, introspection still answers them);
        ``introspection_audience_check`` makes a token inactive for a caller that is neither its
        client nor in its ``aud``. Client metadata ``"included_client_audiences": [client_id,
        ...]`` adds those clients to the ``aud`` of the client's JWT access tokens (Keycloak's
        Audience mapper). Every introspection call is logged
        (``{"event":"introspection","client_id":...,"status":200,"active":true}``).

        Encrypted ID tokens / userinfo / introspection answers need ``features={"encryption":
        {"enabled": True}}`` (plus ``jwtUserinfo`` / ``jwtIntrospection`` as wanted); a fetch of
        a client's ``jwks_uri`` is logged with its ``"client_id"`` and ``"purpose":"jwks_uri"``.
        ``authorization`` (``{"resources": [{"name": "Bank Account", "uris": ["/account/{id}"],
        "scopes": ["view", "delete"]}], "grants": {"alice": ["Bank Account#view"]},
        "resource_server": client_id}``; the resource server defaults to the first client)
        stands in for Keycloak's Authorization Services (tests/idp/authorization.mjs): the UMA
        grant (``urn:ietf:params:oauth:grant-type:uma-ticket``) at the token endpoint, the
        Protection API under ``<issuer>/authz/protection`` with a PAT, and
        ``<issuer>/.well-known/uma2-configuration``; logged as ``{"event":"uma.grant",...}``,
        ``{"event":"uma.protection","action":...}`` and ``{"event":"uma.configuration"}``.
        ``userinfo_only_claims``: the ID token of a code flow carries ``sub`` (and ``acr``)
        only, the scopes' claims are at the UserInfo endpoint (oidc-provider's
        ``conformIdTokenClaims``; Keycloak clients whose mappers say "Add to userinfo" only).
        """
        config: dict[str, Any] = {"port": port, "clients": clients}
        optional = {
            "ttl": ttl,
            "issuer": issuer,
            "resource": resource,
            "opaque_resource": opaque_resource,
            "accounts": accounts,
            "jwks": jwks,  # the server's private signing JWKs (default: fresh ones)
            "tls": {"key": str(tls[0]), "cert": str(tls[1])} if tls is not None else None,
            "internal_port": internal_port,
            "admin_clients": admin_clients,  # may call the clear-keys-cache stand-in
            "features": features,  # oidc-provider feature entries, each replaced whole
            "dpop_nonce": dpop_nonce or None,  # token requests need the server's DPoP-Nonce
            # client certificates from the proxy's headers (True: nginx's, as ReverseProxy sets)
            "mtls": (mtls if isinstance(mtls, dict) else {}) if mtls else None,
            "acr_values": acr_values or None,  # step-up levels, lowest first
            "token_exchange": token_exchange or None,  # Keycloak's standard token exchange (V2)
            "introspect_jwt_access_tokens": introspect_jwt_access_tokens or None,
            "introspection_audience_check": introspection_audience_check or None,
            "userinfo_only_claims": userinfo_only_claims or None,
            "authorization": authorization,  # Keycloak Authorization Services (UMA) stand-in
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        self.config = config
        self.startup_timeout = startup_timeout
        self._tmp_dir = tmp_dir
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._output_changed = threading.Condition()
        self._readers: list[threading.Thread] = []
        self.ca = ca
        self.issuer = ""
        self.internal_url = ""  # the plain-HTTP listener, with internal_port
        self.metadata: dict[str, Any] = {}
        # Seconds from starting node to its READY line, and to the first discovery 200.
        self.ready_after = 0.0
        self.discovery_after = 0.0

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """Change the accounts' claims (roles ...) at the running server: it reads them anew
        for every token it issues. The file is replaced atomically (never read half-written)."""
        assert self._tmp_dir is not None, "start the server first"
        self.config["accounts"] = accounts
        path = self._tmp_dir / "idp-config.json"
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps(self.config, indent=2))
        staged.replace(path)

    def frame_url(self, src: str) -> str:
        """The server's page, on its own origin, whose only content is ``<iframe src=src>``
        (``src``: an http(s) URL on 127.0.0.1 or localhost): e.g. an app's front-channel logout
        endpoint framed by the issuer's origin, as a browser test needs it."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}/test/frame?{urlencode({'src': src})}"

    # -- output ------------------------------------------------------------------------------

    def logs(self) -> str:
        """Everything the server printed so far (its stderr, plus stdout after READY)."""
        with self._output_changed:
            return "".join(self._output)

    def wait_for_log(self, text: str, timeout: float = 5.0) -> bool:
        """Wait until ``text`` appears in the server's output (lines arrive via a reader thread)."""
        with self._output_changed:
            return self._output_changed.wait_for(lambda: text in "".join(self._output), timeout)

    def wait_until(self, condition: Callable[[str], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(self.logs())`` holds (lines arrive via a reader thread)."""
        with self._output_changed:
            return self._output_changed.wait_for(lambda: condition("".join(self._output)), timeout)

    def settled_logs(self, timeout: float = 5.0) -> str:
        """The server's output once it holds the lines of every request answered before this
        call, for counting what a test's requests caused (no sleep, no "long enough").

        A marker request follows them: a token request by a client no one configured, refused
        with its client_id logged. oidc-provider logs a request's event before it answers, and
        one node process writes its lines in order to one stderr, read in order by one thread:
        once the marker's line is here, so is every line written before it."""
        marker = f"settle-{secrets.token_hex(8)}"
        url = self.metadata["token_endpoint"]
        if self.internal_url:  # the issuer's host need not be reachable then
            url = self.internal_url + urlsplit(url).path
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=str(self.ca))
        data = {"grant_type": "client_credentials", "client_id": marker}
        answer = httpx.post(url, data=data, timeout=timeout, verify=verify)
        assert answer.status_code in (400, 401), answer.text[:300]
        line = f'"client_id":"{marker}"'
        assert self.wait_for_log(line, timeout), f"the marker {marker} was never logged"
        return self.logs()

    def _append(self, line: str) -> None:
        with self._output_changed:
            self._output.append(line)
            self._output_changed.notify_all()

    def _collect(self, stream: Any) -> None:
        for line in stream:
            self._append(line)

    def _read_stdout(self, stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
            if line.startswith("READY "):
                break
        lines.put(None)  # READY seen, or EOF: the starter stops waiting either way
        self._collect(stream)  # keep draining so the server can never block on a full pipe

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> IdentityServer:
        """Start node and wait for discovery. A start that prints no READY line in time is
        retried once: in two of about fifteen clean CI runs one start (of ~150 per run) stalled
        before READY with nothing on stderr but oidc-provider's runtime notice; 40 starts in a
        loop never did. Its start-up steps are now logged, so a stall names the step; the failed
        attempt's output goes to stderr, and a second stall fails the test."""
        try:
            return self._start()
        except IdentityServerError as first:
            if "printed no READY line" not in str(first):
                raise
            print(f"identity server start retried after: {first}", file=sys.stderr)
            self._output.clear()
            return self._start()

    def _start(self) -> IdentityServer:
        node = ensure_installed()
        if self._tmp_dir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="idp-")
            self._tmp_dir = Path(self._own_tmp.name)
        config_path = self._tmp_dir / "idp-config.json"
        config_path.write_text(json.dumps(self.config, indent=2))

        started = time.monotonic()
        process = subprocess.Popen(
            [node, "server.mjs", str(config_path)],
            cwd=IDP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(process.stdout, lines), daemon=True),
            threading.Thread(target=self._collect, args=(process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_ready(lines, started)
            self.ready_after = time.monotonic() - started
            self._wait_discovery(started)
            self.discovery_after = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def _fail(self, reason: str) -> IdentityServerError:
        code = self._process.poll() if self._process else None
        status = "running" if code is None else f"exit code {code}"
        return IdentityServerError(
            f"identity server {reason} ({status}); its output:\n{self.logs()}"
        )

    def _wait_ready(self, lines: queue.Queue[str | None], started: float) -> None:
        deadline = started + self.startup_timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._fail(f"printed no READY line within {self.startup_timeout} s") from None
            if line is None:
                # The reader drained stdout to EOF: stderr is complete once node has exited.
                if self._process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._process.wait(timeout=5)
                self._readers[1].join(timeout=5)
                raise self._fail("exited before it was ready")
            if line.startswith("READY "):
                self.issuer = line.removeprefix("READY ").strip()
                return
            if line.startswith("INTERNAL "):
                self.internal_url = line.removeprefix("INTERNAL ").strip()
            self._append(line)

    def _wait_discovery(self, started: float) -> None:
        base = self.issuer
        if self.internal_url:  # the issuer's host need not be reachable at all then
            base = self.internal_url + urlsplit(self.issuer).path
        url = f"{base}/.well-known/openid-configuration"
        deadline = started + self.startup_timeout
        delay = 0.01
        last = "no answer"
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=str(self.ca))
        with httpx.Client(timeout=5.0, verify=verify) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.get(url)
                except httpx.TransportError as error:
                    last = repr(error)
                else:
                    if response.status_code == 200:
                        self.metadata = response.json()
                        return
                    last = f"HTTP {response.status_code}: {response.text[:500]}"
                if self._process is not None and self._process.poll() is not None:
                    break
                time.sleep(delay)  # back-off between attempts; the response is the sync point
                delay = min(delay * 2, 0.5)
        raise self._fail(f"discovery at {url} did not answer 200: {last}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s); safe to call twice."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            for reader in self._readers:
                reader.join(timeout=5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None
            self._tmp_dir = None  # a restart makes a fresh one

    def __enter__(self) -> IdentityServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def identity_server(
    tmp_path_factory: pytest.TempPathFactory,
    clients: list[dict[str, Any]],
    **kwargs: Any,
) -> Iterator[IdentityServer]:
    """For fixtures: ``with identity_server(tmp_path_factory, clients) as idp: yield idp``."""
    with IdentityServer(clients, tmp_dir=tmp_path_factory.mktemp("idp"), **kwargs) as server:
        yield server


@contextlib.contextmanager
def behind_mtls_nginx(
    directory: Path,
    ca: TestCA,
    clients: list[dict[str, Any]],
    **kwargs: Any,
) -> Iterator[tuple[IdentityServer, ReverseProxy]]:
    """The identity server behind a real nginx that ends TLS and asks for client certificates
    (mutual TLS, RFC 8705), for the life of a ``with`` block::

        ca = TestCA(tmp_path / "tls")
        with behind_mtls_nginx(tmp_path, ca, clients) as (idp, proxy):
            idp.issuer          # https://127.0.0.1:<nginx port>, nginx's certificate from ``ca``
            ca.cert             # the PEM file a client trusts for it

    nginx verifies a client certificate against ``ca`` but lets every certificate through
    (``ssl_verify_client optional_no_ca``): one from ``ca`` arrives as verified (what
    ``tls_client_auth`` needs), a self-signed one as unverified (enough for
    ``self_signed_tls_client_auth``). ``kwargs`` go to :class:`IdentityServer`.
    """
    ensure_installed()
    idp_port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    with (
        ReverseProxy(directory / "nginx", ca, {"/": idp_port}, client_certificates=True) as proxy,
        IdentityServer(
            clients,
            tmp_dir=directory,
            port=idp_port,
            issuer=proxy.url,
            ca=ca.cert,
            mtls=True,
            **kwargs,
        ) as idp,
    ):
        yield idp, proxy
