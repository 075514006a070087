"""The examples in a real browser (Debian's Chromium, headless, driven by Playwright).

For each example: a protected URL redirects to the identity server; sign in; consent; land on
the original URL with the claims shown; the downstream call works; log out; the protected URL
redirects again. The identity server fetched the app's /k_jwks to check its client assertion.
The servers are the ones ``make demo`` runs (examples/demo.py), on free ports.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples import demo
from tests.conftest import IN_CI
from tests.idp_server import ensure_installed

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("node") is None:
        message = "Chromium (apt-get install chromium) and node are needed for browser tests"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def local_context(
    browser: object, *, ignore_https_errors: bool = False, also: tuple[str, ...] = ()
) -> Any:
    """A browser context that reaches only this machine's servers (the identity server's
    dev pages load web fonts from the internet, which this machine does not reach); ``also``:
    more origins on this machine (``http://localhost:PORT``)."""
    context = browser.new_context(ignore_https_errors=ignore_https_errors)  # type: ignore[attr-defined]
    allowed = ("http://127.0.0.1", "https://127.0.0.1", *also)
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(allowed) else route.abort(),
    )
    return context


def sign_in(page: Any, login: str = "alice") -> None:
    """On the identity server's dev login page: any password, then consent."""
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any-password")
    page.click("button[type=submit]")
    page.click("button[type=submit]")  # consent


@pytest.mark.parametrize("flavor", ["starlette", "flask"])
def test_sign_in_downstream_and_sign_out(browser: object, flavor: str, tmp_path: Path) -> None:
    ensure_installed()
    app_port, idp_port = free_port(), free_port()
    adapter_config, idp_config, _ = demo.prepare(tmp_path, app_port, idp_port)
    processes = demo.start(flavor, adapter_config, idp_config, app_port, log=tmp_path / "idp.log")
    app = f"http://127.0.0.1:{app_port}"
    issuer = f"http://127.0.0.1:{idp_port}"
    try:
        context = local_context(browser)
        page = context.new_page()
        page.goto(f"{app}/profile?from=browser")
        assert page.url.startswith(issuer), page.url
        sign_in(page)
        page.wait_for_url(f"{app}/profile?from=browser")
        assert page.inner_text("#name") == "alice"
        # The claims read as a table: times as dates, the nonce (meaningless to a reader) hidden.
        assert page.inner_text("#claim-sub").endswith("alice")
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.inner_text("#claim-exp"))
        assert page.locator("#claim-nonce").count() == 0
        assert "admin" in page.inner_text("#roles")
        log = (tmp_path / "idp.log").read_text()
        assert f"http://127.0.0.1:{app_port}/k_jwks" in log, "the server fetched the app's keys"

        page.click("text=Call the downstream API")
        # Two calls, each labelled: with alice's own token the API sees alice; with the app's
        # service-account token it sees the app.
        as_user = json.loads(page.inner_text("#as-user"))
        as_service = json.loads(page.inner_text("#as-service"))
        assert as_user == {"sub": "alice", "client_id": demo.CLIENT_ID}
        assert as_service["client_id"] == demo.CLIENT_ID
        assert as_service["sub"] != "alice"
        assert "your own access token" in page.inner_text("body")
        assert "service-account token" in page.inner_text("body")

        page.goto(f"{app}/profile")
        page.click("#logout")
        page.click("button[name=logout]")  # the server asks to confirm the sign-out
        page.wait_for_url(f"{app}/")
        assert "Not signed in" in page.inner_text("#greeting")
        page.goto(f"{app}/profile")
        assert page.url.startswith(issuer), "signed out: the protected page asks to log in"
        context.close()
    finally:
        demo.stop(processes)


def test_a_cancelled_login_offers_a_way_back(browser: object, tmp_path: Path) -> None:
    """At the identity server, the user cancels: the app shows a page that says so, with a way
    to try again (back to the server's login) and a way back to the app."""
    ensure_installed()
    app_port, idp_port = free_port(), free_port()
    adapter_config, idp_config, _ = demo.prepare(tmp_path, app_port, idp_port)
    processes = demo.start("starlette", adapter_config, idp_config, app_port)
    app = f"http://127.0.0.1:{app_port}"
    try:
        context = local_context(browser)
        page = context.new_page()
        page.goto(f"{app}/profile")
        page.click("text=[ Cancel ]")
        page.wait_for_url(f"{app}/oidc/callback*")
        assert page.inner_text("h1") == "Sign-in cancelled"
        page.click("text=Try again")
        assert page.url.startswith(f"http://127.0.0.1:{idp_port}"), "back at the server's login"
        page.go_back()
        page.click("text=Back to the start page")
        page.wait_for_url(f"{app}/")
        assert "Not signed in" in page.inner_text("#greeting")
        context.close()
    finally:
        demo.stop(processes)
