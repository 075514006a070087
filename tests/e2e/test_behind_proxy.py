"""The examples as they run in production: under ``/myapp/`` behind a real nginx that ends TLS.

nginx (Debian's, started here with its own config on a private port) serves
``https://127.0.0.1:PORT/myapp/`` with a certificate from a CA this test makes with openssl,
strips the prefix and passes ``X-Forwarded-*``; uvicorn runs with ``--root-path --proxy-headers``
and Flask behind werkzeug's ``ProxyFix``. The identity server (trusting the test CA) fetches
the app's keys from ``https://127.0.0.1:PORT/myapp/k_jwks`` through nginx. Chromium signs in,
lands back on the page it asked for, logs out, and a ``next`` outside the prefix stays inside.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import demo
from tests.e2e.test_browser import browser, free_port, local_context, sign_in  # noqa: F401
from tests.idp_server import ensure_installed
from tests.reverse_proxy import ReverseProxy, TestCA


@pytest.mark.parametrize("flavor", ["starlette", "flask"])
def test_sign_in_under_a_prefix_behind_tls_nginx(
    browser: object,  # noqa: F811 - the fixture
    flavor: str,
    tmp_path: Path,
) -> None:
    ensure_installed()
    app_port, idp_port = free_port(), free_port()
    ca = TestCA(tmp_path / "tls")
    with ReverseProxy(tmp_path / "nginx", ca, {"/myapp/": app_port}) as proxy:
        public = f"{proxy.url}/myapp"
        adapter_config, idp_config, _ = demo.prepare(tmp_path, app_port, idp_port, public)
        processes = demo.start(
            flavor,
            adapter_config,
            idp_config,
            app_port,
            log=tmp_path / "idp.log",
            root_path="/myapp",
            idp_env={"NODE_EXTRA_CA_CERTS": str(ca.cert)},
        )
        issuer = f"http://127.0.0.1:{idp_port}"
        try:
            # The browser does not know the test CA: the TLS under test is nginx's to the
            # app and the identity server's to nginx; the page's own checks are below.
            context = local_context(browser, ignore_https_errors=True)
            page = context.new_page()
            page.goto(f"{public}/profile?from=browser")
            # The server accepts only the registered https://.../myapp/oidc/callback: signing
            # in at all proves the adapter built its redirect_uri from the public URL.
            assert page.url.startswith(issuer), page.url
            sign_in(page)
            page.wait_for_url(f"{public}/profile?from=browser")
            assert page.inner_text("#name") == "alice"
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["__Secure-oidc_session_myapp"]
            assert session["path"] == "/myapp"
            assert session["secure"] is True
            assert session["httpOnly"] is True
            log = (tmp_path / "idp.log").read_text()
            assert f'"url":"{public}/k_jwks","status":200' in log, "fetched through nginx"
            assert "/myapp/k_jwks" in proxy.access_log()

            page.click("#logout")
            page.click("button[name=logout]")  # the server asks to confirm the sign-out
            page.wait_for_url(f"{public}/")
            assert "Not signed in" in page.inner_text("#greeting")

            page.goto(f"{public}/oidc/login?next=/other")
            sign_in(page)
            page.wait_for_url(f"{public}/other")  # inside the prefix, never the site's /other
            context.close()
        finally:
            demo.stop(processes)
