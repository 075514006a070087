"""What a person sees when signing in goes wrong: a page with a way back, in both shells; JSON
clients get JSON, other clients the short plain answer; an app's own template replaces the
page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from examples.flask_app.app import create_app as create_flask_app
from tests.integration.test_middleware import stack  # noqa: F401 - the module's servers
from tests.web_client import APP, Browser, Stack

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(params=["asgi", "wsgi"])
def browser(stack: Stack, request: pytest.FixtureRequest) -> Browser:  # noqa: F811
    return Browser(stack, str(request.param))


def cancelled_callback(browser: Browser) -> str:
    start = browser.get("/oidc/login?next=/profile")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    return f"/oidc/callback?error=access_denied&state={state}"


def test_a_cancelled_login_offers_a_way_back(browser: Browser) -> None:
    page = browser.get(cancelled_callback(browser), headers=HTML)
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Sign-in cancelled</h1>" in page.text
    assert 'href="/oidc/login"' in page.text, "try again"
    assert 'href="/"' in page.text, "back to the app"
    api = browser.get(cancelled_callback(browser), headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/json", "JSON clients: JSON, as the 403"
    assert api.json()["error_description"].startswith("the identity server refused the login")
    other = browser.get(cancelled_callback(browser), headers={"Accept": "*/*"})
    assert other.headers["content-type"].startswith("text/plain"), "other clients: as before"


def test_an_expired_login_page(browser: Browser) -> None:
    page = browser.get("/oidc/callback?code=x&state=unknown", headers=HTML)
    assert page.status_code == 400
    assert "<h1>This sign-in has expired</h1>" in page.text


def test_server_down_at_login_is_a_page(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "down.toml"
    text = stack.config.read_text().replace(stack.idp.issuer, "http://127.0.0.1:9")
    config.write_text(text)
    config.chmod(0o600)
    app = create_flask_app(config)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP) as client:
        page = client.get("/oidc/login", headers=HTML)
    assert page.status_code == 502
    assert "<h1>Sign-in is unavailable</h1>" in page.text


def test_the_app_can_bring_its_own_page(stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    template = tmp_path / "error.html"
    template.write_text("<main class='ours'>$title: $message <a href='$retry'>again</a></main>")
    config = tmp_path / "own.toml"
    text = stack.config.read_text().replace(
        'client-id = "web"\n', f'client-id = "web"\nerror-page = "{template}"\n'
    )
    config.write_text(text)
    config.chmod(0o600)
    app = create_flask_app(config)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP) as client:
        page = client.get("/oidc/callback?code=x&state=nope", headers=HTML)
    assert page.status_code == 400
    assert page.text.startswith("<main class='ours'>This sign-in has expired: ")
    assert "<a href='/oidc/login'>again</a>" in page.text
