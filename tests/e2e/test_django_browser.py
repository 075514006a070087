"""The Django example in Chromium: the wrapped Django WSGI application served on a real socket
(wsgiref, threaded), the real identity server, a real browser. Alice (admin) signs in, Django
knows her (``request.user``), ``@login_required`` and the admin-only view let her in, and so does
Django's admin; bob gets the 403 page; an anonymous visitor is sent to log in; both users exist
in Django's database with what their roles map to.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.app_server import LateApp, serve
from tests.django_site import client, django_directory, write_adapter_config
from tests.e2e.test_browser import browser, local_context, sign_in  # noqa: F401
from tests.idp_server import IdentityServer

SECRET = "django-e2e-client-secret-" + "e" * 40
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}


@dataclass
class Site:
    url: str
    issuer: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = django_directory(tmp_path_factory)
    late = LateApp()
    with (
        serve("wsgi", late) as url,  # the port is taken before the identity server picks one
        IdentityServer(
            [client(url, SECRET)], tmp_dir=tmp_path_factory.mktemp("idp"), accounts=ACCOUNTS
        ) as idp,
    ):
        write_adapter_config(directory, idp.issuer, SECRET)
        from django.core.wsgi import get_wsgi_application

        from adapter.integrations.django import wrap

        late.app = application = wrap(get_wsgi_application())
        yield Site(url, idp.issuer)
        application.close()


def user(username: str) -> Any:
    """The Django user, read in a thread of its own: Playwright's event loop runs in this one,
    and Django refuses database calls from a thread with a running loop."""

    def read() -> Any:
        from django.contrib.auth import get_user_model

        found = get_user_model().objects.get(username=username)
        found.group_names = [g.name for g in found.groups.all()]
        return found

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def test_alice_and_bob_in_chromium(site: Site, browser: object) -> None:  # noqa: F811
    context = local_context(browser)
    page = context.new_page()
    page.goto(f"{site.url}/private")
    assert page.url.startswith(site.issuer), "anonymous: sent to the identity server"
    sign_in(page, "alice")
    page.wait_for_url(f"{site.url}/private")
    assert page.inner_text("#username") == "alice"
    assert page.inner_text("#authenticated") == "True", "request.user.is_authenticated"
    assert page.inner_text("#staff") == "True"
    assert page.goto(f"{site.url}/staff").status == 200
    assert page.inner_text("#who") == "alice"
    admin = page.goto(f"{site.url}/admin/")
    assert admin.status == 200
    assert "Site administration" in page.content()
    # The admin's own "Log out" (admin_urls()): the adapter's logout, at the server too.
    page.click("#logout-form button")
    page.click("button[name=logout]")  # the identity server asks to confirm the sign-out
    page.wait_for_url(f"{site.url}/")
    assert page.inner_text("#greeting") == "Not signed in."
    page.goto(f"{site.url}/admin/")
    assert page.url.startswith(site.issuer), "signed out: the admin asks to sign in again"
    context.close()

    context = local_context(browser)
    page = context.new_page()
    page.goto(f"{site.url}/private")
    sign_in(page, "bob")
    page.wait_for_url(f"{site.url}/private")
    assert page.inner_text("#username") == "bob"
    refused = page.goto(f"{site.url}/staff")
    assert refused.status == 403
    assert "Not allowed" in page.content()
    refused_admin = page.goto(f"{site.url}/admin/")
    assert page.url.startswith(f"{site.url}/admin/login/"), "not staff: Django's admin refuses"
    assert refused_admin is not None
    assert refused_admin.status == 403, "the 403 page, not Django's password form"
    assert "Not allowed" in page.content()
    context.close()

    alice, bob = user("alice"), user("bob")
    assert (alice.is_staff, alice.is_superuser, alice.email) == (True, True, "alice@example.test")
    assert (bob.is_staff, bob.is_superuser) == (False, False)
    assert bob.group_names == ["Users"]


def test_anonymous_visitor_is_asked_to_log_in(site: Site, browser: object) -> None:  # noqa: F811
    context = local_context(browser)
    page = context.new_page()
    page.goto(f"{site.url}/")
    assert page.inner_text("#greeting") == "Not signed in."
    page.goto(f"{site.url}/staff")
    assert page.url.startswith(site.issuer)
    assert "login" in page.content().lower()
    context.close()
