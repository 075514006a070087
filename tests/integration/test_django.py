"""The Django example (examples/django_app) behind the adapter, with real Django and the real
identity server: users sign in through the server's login pages (an httpx browser reaching the
wrapped WSGI application in-process), and Django sees them as its own users: ``request.user``,
``@login_required``, the admin, and the users in its database (SQLite, migrated here). Then
Django's own test client, with identities handed in as the WSGI middleware would, for what
happens when an identity changes.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import Identity, OIDCWSGIMiddleware
from tests.django_site import client, django_directory, write_adapter_config
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack

SECRET = "django-example-client-secret-" + "d" * 40
API = "urn:oidc-adapter:test-api"
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


@dataclass
class Site:
    idp: IdentityServer
    config: Path
    application: OIDCWSGIMiddleware

    def browser(self) -> Browser:
        transport = httpx.WSGITransport(app=self.application)
        return Browser(Stack(self.idp, self.config, {"wsgi": transport}), "wsgi")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = django_directory(tmp_path_factory)
    with IdentityServer(
        [client(APP, SECRET)], tmp_dir=tmp_path_factory.mktemp("idp"), accounts=ACCOUNTS
    ) as idp:
        config = write_adapter_config(directory, idp.issuer, SECRET)
        from django.core.wsgi import get_wsgi_application

        from adapter.integrations.django import wrap

        application = wrap(get_wsgi_application())  # what examples/django_app/wsgi.py does
        yield Site(idp, config, application)
        application.close()


def users() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects


def test_alice_signs_in_and_is_a_django_user_with_the_admin(site: Site) -> None:
    browser = site.browser()
    page = browser.log_in("/private", login="alice")
    assert page.status_code == 200, page.text
    assert "<dd id='username'>alice</dd>" in page.text
    assert "<dd id='authenticated'>True</dd>" in page.text
    me = browser.get("/api/whoami").json()
    assert me["authenticated"] is True
    assert me["username"] == "alice"
    assert (me["staff"], me["superuser"], me["groups"]) == (True, True, ["Users"])
    assert me["session"] is True, "logged in to Django's session"
    assert browser.get("/staff", headers=HTML).status_code == 200
    admin = browser.get("/admin/", headers=HTML)
    assert admin.status_code == 200
    assert "Site administration" in admin.text

    alice = users().get(username="alice")
    assert (alice.email, alice.first_name, alice.last_name) == (
        "alice@example.test",
        "Test",
        "User alice",
    )
    assert alice.is_staff
    assert alice.is_superuser
    assert not alice.has_usable_password(), "signs in through the identity server only"


def test_bob_is_signed_in_but_not_let_into_admin_pages(site: Site) -> None:
    browser = site.browser()
    assert browser.log_in("/private", login="bob").status_code == 200
    me = browser.get("/api/whoami").json()
    assert (me["username"], me["staff"], me["superuser"]) == ("bob", False, False)
    refused = browser.get("/staff", headers=HTML)
    assert refused.status_code == 403
    assert "Not allowed" in refused.text
    assert 'action="/oidc/logout"' in refused.text, "a way to sign in as someone else"
    api = browser.get("/staff", headers=JSON)
    assert api.status_code == 403
    assert api.json() == {"error": "forbidden", "missing": ["admin"], "kind": "role"}
    admin = browser.get("/admin/", headers=HTML)
    assert admin.status_code == 302, "Django's admin refuses a user who is not staff"
    assert admin.headers["location"].startswith("/admin/login/")
    assert users().get(username="bob").is_staff is False
    # admin_urls(): the 403 page (sign in as someone else), not Django's password form.
    login = browser.get(admin.headers["location"], headers=HTML)
    assert login.status_code == 403
    assert "Not allowed" in login.text
    assert 'action="/oidc/logout"' in login.text
    assert 'name="password"' not in login.text


def test_anonymous_users_are_asked_to_log_in(site: Site) -> None:
    browser = site.browser()
    assert "Not signed in" in browser.get("/").text
    for path in ("/private", "/staff", "/admin/"):
        asked = browser.get(path, headers=HTML)
        assert asked.status_code == 302
        assert asked.headers["location"].startswith("/oidc/login?next=")
    assert browser.get("/api/whoami", headers=JSON).status_code == 401


def test_bearer_tokens_are_users_for_one_request(site: Site) -> None:
    answer = httpx.post(
        site.idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API, "scope": "api:read"},
        auth=("django-app", SECRET),
    )
    token = answer.json()["access_token"]
    browser = site.browser()
    headers = {"Authorization": f"Bearer {token}", **JSON}
    me = browser.get("/api/whoami", headers=headers)
    assert me.status_code == 200
    assert me.json()["authenticated"] is True
    assert me.json()["session"] is False, "no Django session for a bearer request"
    assert "sessionid" not in me.headers.get("set-cookie", "")
    refused = browser.get("/staff", headers=headers)
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    browser.log_in("/private", login="alice")  # a browser session, then a token in it
    assert browser.get("/api/whoami", headers=headers).json()["username"] != "alice"
    assert browser.get("/api/whoami").json()["username"] == "alice", "the session stays"


def test_logging_out_of_the_adapter_logs_out_of_django(site: Site) -> None:
    browser = site.browser()
    browser.log_in("/private", login="alice")
    assert "Signed in as alice" in browser.get("/").text
    assert any(c.name == "sessionid" for c in browser.http.cookies.jar)
    csrf = browser.csrf("/private")
    out = browser.post(
        "/oidc/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert out.status_code in (302, 303)
    home = browser.get("/")
    assert "Not signed in" in home.text, "the Django session ended with the adapter's"


def test_the_admins_logout_ends_the_adapters_session(site: Site) -> None:
    browser = site.browser()
    browser.log_in("/admin/", login="alice")
    admin = browser.get("/admin/", headers=HTML)
    assert "Site administration" in admin.text
    assert 'action="/admin/logout/"' in admin.text, "the admin's own logout button"
    django_csrf = admin.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    linked = browser.get("/admin/logout/", headers=HTML)  # another site's link, say
    assert linked.status_code == 405, "a GET signs nobody out"
    assert 'name="csrf"' not in linked.text
    page = browser.post("/admin/logout/", data={"csrfmiddlewaretoken": django_csrf})
    assert page.status_code == 200, "a page posting the adapter's logout form"
    assert 'action="/oidc/logout"' in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    out = browser.post(
        "/oidc/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert out.status_code in (302, 303)
    assert browser.session_cookies() == {}, "the adapter's session ended"
    assert "Not signed in" in browser.get("/").text, "and Django's with it"
    again = browser.get("/admin/", headers=HTML)
    assert again.status_code == 302
    assert again.headers["location"].startswith("/oidc/login?next=")


# -- Django's test client: identities handed in as the WSGI middleware does ------------------


def identity(sub: str, roles: set[str], **claims: Any) -> Identity:
    return Identity(
        claims={"sub": sub, **claims},
        display_name=sub,
        roles=frozenset(roles),
        client_roles=frozenset(),
        scopes=frozenset({"authenticated"}),
        csrf_token="csrf",
    )


def test_a_role_change_reaches_the_django_user(site: Site) -> None:
    from django.test import Client

    browser = Client()
    staff = identity("carol", {"admin"}, email="carol@example.test", email_verified=True)
    me = json.loads(browser.get("/api/whoami", **{"oidc.identity": staff}).content)
    assert (me["username"], me["staff"], me["groups"]) == ("carol", True, [])
    demoted = identity("carol", {"user"}, email="carol@example.test", email_verified=True)
    me = json.loads(browser.get("/api/whoami", **{"oidc.identity": demoted}).content)
    assert (me["staff"], me["superuser"], me["groups"]) == (False, False, ["Users"])
    carol = users().get(username="carol")
    assert (carol.is_staff, carol.email) == (False, "carol@example.test")
    unverified = identity("carol", {"user"}, email="evil@example.test", email_verified=False)
    browser.get("/api/whoami", **{"oidc.identity": unverified})
    assert users().get(username="carol").email == "carol@example.test", "unverified: ignored"


def test_a_local_account_with_a_password_is_not_taken_over(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    from django.test import Client

    users().create_user("mallory", password="a-local-password")
    with caplog.at_level(logging.WARNING, logger="adapter.integrations.django"):
        me = Client().get("/api/whoami", **{"oidc.identity": identity("mallory", {"admin"})})
    assert json.loads(me.content)["authenticated"] is False
    assert "local account with a password" in caplog.text
    assert users().get(username="mallory").is_staff is False


def test_an_unverified_email_names_no_user(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """username_claim = "email": only an email the server verified names the Django user; an
    identity whose matching email is unverified (or not said to be verified) does not get into
    that user's account, and no other user is made for it."""
    from django.conf import settings
    from django.test import Client, override_settings

    by_email = {**settings.OIDC_ADAPTER, "username_claim": "email"}
    dave = "dave@example.test"
    with override_settings(OIDC_ADAPTER=by_email):
        owner = identity("dave", {"admin"}, email=dave, email_verified=True)
        me = json.loads(Client().get("/api/whoami", **{"oidc.identity": owner}).content)
        assert (me["username"], me["staff"]) == (dave, True)
        before = users().count()
        for verified in ({"email_verified": False}, {}, {"email_verified": "true"}):
            intruder = identity("eve", {"user"}, email=dave, **verified)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="adapter.integrations.django"):
                answer = Client().get("/api/whoami", **{"oidc.identity": intruder})
            me = json.loads(answer.content)
            assert (me["authenticated"], me["username"]) == (False, None), verified
            assert "email is verified (email_verified: true)" in caplog.text
        assert users().count() == before, "no user made for the unverified identity"
        assert users().get(username=dave).is_staff is True, "the owner's user is untouched"


def test_anonymous_and_unwrapped_requests_through_django_s_test_client(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    from django.test import Client

    from adapter.web._guard import MiddlewareMissing

    with caplog.at_level(logging.WARNING, logger="adapter.integrations.django"):
        answer = Client().get("/private")
    assert answer.status_code == 302, "no wrapper: anonymous, and Django's login_required"
    assert answer["Location"] == "/oidc/login?next=/private", "settings.LOGIN_URL"
    assert "adapter.integrations.django.wrap(get_wsgi_application())" in caplog.text
    with pytest.raises(MiddlewareMissing, match=re.escape("adapter.integrations.django.wrap(")):
        Client().get("/staff")  # a role-protected view fails closed, and says why
    anonymous = {"oidc.identity": None}  # what the middleware hands in on a public path
    api = Client().get("/staff", HTTP_ACCEPT="application/json", **anonymous)
    assert api.status_code == 401
    assert api["WWW-Authenticate"] == 'Bearer realm="django-app"'
    assert api["Content-Type"] == "application/json", "JSON for a client that asks for it"
    assert api.json()["error"] == "unauthorized"
    page = Client().get("/staff", HTTP_ACCEPT="text/html", QUERY_STRING="tab=1", **anonymous)
    assert page["Location"] == "/oidc/login?next=%2Fstaff%3Ftab%3D1"


def test_settings_errors_name_the_fix(site: Site) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from adapter.integrations.django import OIDCMiddleware, adapter_settings

    with (
        override_settings(OIDC_ADAPTER={"config": "x.toml", "staff_role": ["admin"]}),
        pytest.raises(ImproperlyConfigured, match="unknown key 'staff_role'"),
    ):
        adapter_settings()
    with (
        override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]),
        pytest.raises(
            ImproperlyConfigured, match=re.escape("add 'adapter.integrations.django.OIDCBackend'")
        ),
    ):
        OIDCMiddleware(lambda request: None)


def test_without_django_the_error_names_the_extra() -> None:
    """A process without Django (its modules blocked): importing adapter.integrations.django
    says what to install. (The adapter itself imports Django nowhere else.)"""
    code = (
        "import sys; sys.modules['django'] = None\n"
        "import adapter\n"
        "try:\n    import adapter.integrations.django\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'oidc-adapter[django]'" in result.stdout
