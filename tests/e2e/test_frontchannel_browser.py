"""Front-channel logout in a real browser (Chromium): a page on the identity server's origin
(its ``/test/frame?src=...``, as Keycloak's logout page frames each client) frames the app's
front-channel logout endpoint with alice's ``iss`` and ``sid``; the frame renders (the app lets
the issuer's origin frame it) and her session ends on both processes of the app, which share
only Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from adapter.web.session import SessionCodec
from examples.starlette_app.app import create_app
from tests.app_server import free_port, serve
from tests.e2e.test_browser import browser, local_context, sign_in  # noqa: F401 - the fixture
from tests.idp_server import IdentityServer, ensure_installed
from tests.redis_server import RedisServer
from tests.web_client import web_client

SECRET = "frontchannel-e2e-client-secret-" + "e" * 40
SESSION_SECRET = "frontchannel-e2e-session-secret-" + "h" * 24


def write_config(directory: Path, issuer: str, redis_url: str) -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\nredis-url = "{redis_url}"\n'
        "frontchannel-logout = true\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[IdentityServer, list[Any], list[str]]]:
    """The identity server, and two processes of the app (A, B) sharing a Redis."""
    ensure_installed()
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    client = web_client(
        SECRET,
        base=urls[0],
        redirect_uris=[f"{url}/oidc/callback" for url in urls],
        # The test server puts sid in ID tokens for clients that ask for it in a logout.
        backchannel_logout_uri=f"{urls[0]}/oidc/backchannel-logout",
        backchannel_logout_session_required=True,
    )
    with ExitStack() as stack:
        idp = stack.enter_context(IdentityServer([client], tmp_dir=tmp_path))
        redis = stack.enter_context(RedisServer(tmp_path / "redis"))
        config = write_config(tmp_path, idp.issuer, redis.url)
        apps = [create_app(config) for _ in urls]
        for app, url in zip(apps, urls, strict=True):
            stack.enter_context(serve("asgi", app, int(url.rsplit(":", 1)[1])))
        yield idp, apps, urls


def test_a_page_of_the_issuer_frames_the_logout_and_her_sessions_end(
    browser: object,  # noqa: F811 - the fixture
    world: tuple[IdentityServer, list[Any], list[str]],
) -> None:
    idp, (app_a, app_b), (a, b) = world
    context = local_context(browser)
    page = context.new_page()
    page.goto(f"{a}/profile")
    sign_in(page)
    page.wait_for_url(f"{a}/profile")
    assert page.inner_text("#name") == "alice"
    page.goto(f"{b}/profile")  # the same cookie (one host): process B reads it too
    assert page.inner_text("#name") == "alice"
    for app in (app_a, app_b):
        assert app.shell.wait_until_live(10), "subscribed to the session events"

    cookie = next(c for c in context.cookies() if c["name"] == "oidc_session")
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web\0{idp.issuer}")
    document = codec.open(cookie["value"], "session")
    assert document is not None
    sid = document["d"]["claims"]["sid"]

    heard = app_a.shell.events_applied
    logout = f"{b}/oidc/frontchannel-logout?{urlencode({'iss': idp.issuer, 'sid': sid})}"
    page.goto(f"{idp.issuer}/test/frame?{urlencode({'src': logout})}")
    # Rendered inside the issuer's page: frame-ancestors lets the issuer's origin frame it.
    page.frame_locator("iframe").locator("text=Signed out").wait_for(timeout=10_000)
    assert app_a.shell.wait_for_events(heard + 1, timeout=10), "the logout reached process A"

    for url in (a, b):  # her cookie, as the browser still holds it: refused by both
        answer = context.request.get(
            f"{url}/profile", headers={"Accept": "application/json"}, max_redirects=0
        )
        assert answer.status == 401, f"signed out at {url}"
    # The server's session lives on here (this page did not end it, as Keycloak's would): a
    # new sign-in with that sid ends on a page, not in a loop of redirects.
    page.goto(f"{a}/profile")
    assert "sign out there first" in page.inner_text("body")
    context.close()
