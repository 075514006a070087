"""The framework idioms in Chromium, on the examples as ``make demo*`` runs them (real servers,
private_key_jwt, the identity server's own pages).

For Starlette (``@require``), Flask (``@oidc.require``) and FastAPI (``Depends(require(...))``):
anonymous users are sent to sign in at /admin; bob (no admin role) gets the 403 page and its
button signs him out and starts a new login back to /admin, where alice signs in and sees the
admins' page. For FastAPI, Swagger UI (served from the app, no CDN) signs in at the identity
server through "Authorize" (the code flow with PKCE alone, in a popup, api:write ticked among the
API's scopes it offers) and calls protected routes with the token it got, DELETE included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples import demo
from tests.e2e.test_browser import browser, free_port, local_context, sign_in
from tests.idp_server import ensure_installed

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_browser


class Running:
    """An example app and the identity server, as ``make demo`` starts them."""

    def __init__(self, flavor: str, directory: Path) -> None:
        ensure_installed()
        app_port, idp_port = free_port(), free_port()
        config, idp_config, _ = demo.prepare(directory, app_port, idp_port)
        self.processes = demo.start(flavor, config, idp_config, app_port, log=directory / "idp.log")
        self.app = f"http://127.0.0.1:{app_port}"
        self.issuer = f"http://127.0.0.1:{idp_port}"


@pytest.fixture
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    servers = Running(str(request.param), tmp_path)
    try:
        yield servers
    finally:
        demo.stop(servers.processes)


@pytest.mark.parametrize("running", ["starlette", "flask", "fastapi"], indirect=True)
def test_admins_page_refuses_bob_and_lets_alice_in(browser: object, running: Running) -> None:
    app, issuer = running.app, running.issuer
    context = local_context(browser)
    page = context.new_page()
    page.goto(f"{app}/admin")
    assert page.url.startswith(issuer), "anonymous: sent to sign in"
    with page.expect_response(f"{app}/admin") as refused:
        sign_in(page, "bob")
    assert refused.value.status == 403
    page.wait_for_url(f"{app}/admin")
    assert page.inner_text("h1") == "Not allowed"
    assert page.locator("#admin-area").count() == 0

    page.click("text=Sign out and sign in as someone else")  # posts the session's CSRF token
    page.click("button[name=logout]")  # the server asks to confirm the sign-out
    # Signed out here and at the server, then a new login at once that returns to /admin.
    page.wait_for_selector("input[name=login]")
    assert page.url.startswith(issuer), "signed out: bob's session is gone, a new login asked"
    with page.expect_response(f"{app}/admin") as allowed:
        sign_in(page, "alice")
    assert allowed.value.status == 200
    page.wait_for_url(f"{app}/admin")
    assert page.inner_text("#admin-area") == "alice"
    context.close()


REPORTS = "#operations-default-reports_api_reports_get"
DELETE = "#operations-default-delete_report_api_reports__report_id__delete"


def execute(page: Any, app: str) -> tuple[Any, str]:
    """Swagger UI's "Execute" on GET /api/reports: the request it sent, the status it shows."""
    with page.expect_request(f"{app}/api/reports") as sent:
        page.click(f"{REPORTS} button.execute")
    status = page.locator(f"{REPORTS} .live-responses-table .response .response-col_status")
    return sent.value, status.inner_text().split()[0]  # "401\nUndocumented": the code


@pytest.mark.parametrize("running", ["fastapi"], indirect=True)
def test_swagger_ui_authorizes_at_the_identity_server(browser: object, running: Running) -> None:
    app, issuer = running.app, running.issuer
    context = local_context(browser)  # only 127.0.0.1: Swagger UI's files come from the app
    page = context.new_page()
    page.goto(f"{app}/docs")
    page.click(f"{REPORTS} .opblock-summary")
    page.click(f"{REPORTS} button.try-out__btn")
    sent, status = execute(page, app)
    assert "authorization" not in sent.headers
    assert status == "401", "not authorized yet"
    page.click(f"{REPORTS} button.btn-clear")

    page.click("button.authorize")
    flow = page.locator(".auth-container", has_text="authorizationCode with PKCE")
    assert flow.locator("input[data-name=clientId]").input_value() == demo.DOCS_CLIENT_ID
    # The code flow alone (no implicit, client credentials ...), offering every API scope.
    assert page.locator(".auth-container").count() == 1
    offered = flow.locator("input[type=checkbox]")
    names = {offered.nth(i).get_attribute("data-value") for i in range(offered.count())}
    assert names == {"openid", "api:read", "api:write"}
    write = flow.locator("input[data-value='api:write']")
    flow.locator(f"label[for='{write.get_attribute('id')}']").click()  # DELETE needs it
    assert write.is_checked()
    with page.expect_popup() as opened:
        flow.locator("button.authorize").click()
    popup = opened.value
    assert popup.url.startswith(issuer), "the popup signs in at the identity server"
    # Listening before the sign-in: /docs/oauth2-redirect hands the code back and closes the
    # popup at once, and a loaded machine let it close before a later wait began to listen.
    with popup.expect_event("close"):
        sign_in(popup, "alice")
    flow.get_by_text("Authorized", exact=True).wait_for()  # the token exchange is done
    page.click("button.btn-done")

    sent, status = execute(page, app)
    assert sent.headers["authorization"].startswith("Bearer ")
    assert status == "200"
    body = page.inner_text(f"{REPORTS} .live-responses-table .response-col_description pre")
    assert '"for": "alice"' in body
    app_cookies = [c for c in context.cookies(app) if c["name"].endswith("oidc_session")]
    assert app_cookies == [], "the call was authorized by the token, not by a session"

    # DELETE: the role admin and the scope api:write, both in alice's token from "Authorize".
    page.click(f"{DELETE} .opblock-summary")
    page.click(f"{DELETE} button.try-out__btn")
    page.fill(f"{DELETE} input[placeholder=report_id]", "7")
    with page.expect_request(f"{app}/api/reports/7") as deleting:
        page.click(f"{DELETE} button.execute")
    assert deleting.value.method == "DELETE"
    status = page.locator(f"{DELETE} .live-responses-table .response .response-col_status")
    assert status.inner_text().split()[0] == "200"
    body = page.inner_text(f"{DELETE} .live-responses-table .response-col_description pre")
    assert '"by": "alice"' in body
    context.close()
