"""The policy enforcer in Chromium (issue 25), on the Starlette and Flask examples with the
keycloak.json files of examples/authorization, against the test identity server's stand-in for
Keycloak's Authorization Services (tests/idp/authorization.mjs).

The examples' files are what is tested: read as written (their ``${env.KEYCLOAK_URL}`` and
``${env.BANK_APP_SECRET}`` point them at the test server), and for a variant (no deny page,
``PERMISSIVE``, lazy loading) copied with that one change. Resources and grants are the
README's: alice may view and delete a bank account, read the API (not create there), open the
admins' page, and GET an account by method; bob may only view a bank account.

- alice passes where her grants allow and gets 403 where they do not, an unknown path too;
- bob views an account but may not DELETE it (a ``fetch`` from the page, same origin, his
  session cookie);
- an unknown path passes under ``PERMISSIVE``, a known one is still enforced;
- ``on-deny-redirect-to``: a denied page lands on the example's /access-denied;
- ``lazy-load-paths`` with a ``path-cache``: /admin's resource is found through the Protection
  API (``matchingUri``), looked up once for repeated visits (and another user's);
- ``http-method-as-scope``: GET passes with the ``GET`` scope granted, POST is denied.

One identity server for the module; each example is served on 127.0.0.1 (uvicorn, a threaded
WSGI server) from the module's start, and each test puts a freshly created example app behind
that address and uses a browser context of its own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.app_server import LateApp, answer_lifespan, serve
from tests.e2e.test_browser import browser, local_context, sign_in
from tests.idp_server import IdentityServer, ensure_installed
from tests.web_client import web_client

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_browser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "authorization"
SECRET = "bank-app-e2e-secret-" + "e" * 40
VIEW, CREATE = "urn:app.com:scopes:view", "urn:app.com:scopes:create"
# examples/authorization/README.md's resources and policies, as the stand-in takes them.
AUTHORIZATION: dict[str, Any] = {
    "resources": [
        {"name": "Example API", "uris": ["/api/*"], "scopes": [VIEW, CREATE]},
        {"name": "Bank Account", "uris": ["/account/{id}"], "scopes": ["view", "delete"]},
        {"name": "Admin", "uris": ["/admin"], "scopes": []},
        {
            "name": "Account Operations",
            "uris": ["/account/{id}"],
            "scopes": ["GET", "POST", "DELETE"],
        },
    ],
    "grants": {
        "alice": [
            f"Example API#{VIEW}",
            "Bank Account#view",
            "Bank Account#delete",
            "Admin",
            "Account Operations#GET",
        ],
        "bob": ["Bank Account#view"],
    },
}
ACCOUNTS = {  # the examples' /admin also asks for the role (@require)
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}


def resource_id(name: str) -> str:
    """The stand-in's id of a resource (``res-<n>``: its position from 1)."""
    names = [resource["name"] for resource in AUTHORIZATION["resources"]]
    return f"res-{names.index(name) + 1}"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LateAsgiApp:
    """An ASGI app given after its server listens (as :class:`tests.app_server.LateApp` is for
    WSGI): each test puts its own example app here. The apps it served are closed with the
    server's lifespan, on its event loop."""

    def __init__(self) -> None:
        self.app: OIDCMiddleware | None = None
        self.served: list[OIDCMiddleware] = []

    def use(self, app: OIDCMiddleware) -> None:
        self.app = app
        self.served.append(app)

    async def close_served(self) -> None:
        for served in self.served:
            await served.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send, self.close_served)
            return
        assert self.app is not None, "a test puts its app here first"
        await self.app(scope, receive, send)


@dataclass
class World:
    idp: IdentityServer
    urls: dict[str, str]  # each example's address
    asgi: LateAsgiApp
    wsgi: LateApp
    directory: Path
    closing: ExitStack

    def serve(self, example: str, config: Path) -> str:
        """A fresh ``example`` app with ``config`` at the example's address; its URL."""
        if example == "starlette":
            self.asgi.use(create_starlette_app(config))
        else:
            app = create_flask_app(config)
            middleware = app.wsgi_app
            assert isinstance(middleware, OIDCWSGIMiddleware)
            self.closing.callback(middleware.close)
            self.wsgi.app = app
        return self.urls[example]

    def variant(self, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """A copy of examples/authorization/keycloak.json with ``change`` made to its
        ``policy-enforcer`` block."""
        document = json.loads((EXAMPLES / "keycloak.json").read_text())
        change(document["policy-enforcer"])
        path = self.directory / f"{name}.json"
        path.write_text(json.dumps(document, indent=2))
        path.chmod(0o600)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ensure_installed()
    directory = tmp_path_factory.mktemp("enforcer-e2e")
    asgi, wsgi = LateAsgiApp(), LateApp()
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        # Listening first: the identity server (port 0) cannot take the apps' ports.
        urls = {
            "starlette": stack.enter_context(serve("asgi", asgi)),
            "flask": stack.enter_context(serve("wsgi", wsgi)),
        }
        client = web_client(
            SECRET,
            client_id="bank-app",
            redirect_uris=[f"{url}/oidc/callback" for url in urls.values()],
            post_logout_redirect_uris=[f"{url}/oidc/logout" for url in urls.values()],
        )
        idp = stack.enter_context(
            IdentityServer(
                [client],
                tmp_dir=directory,
                issuer="http://127.0.0.1:{port}/realms/bank",
                accounts=ACCOUNTS,
                authorization=AUTHORIZATION,
            )
        )
        base, _, realm = idp.issuer.rpartition("/realms/")
        assert realm == "bank", "the examples' files name the realm bank"
        env.setenv("KEYCLOAK_URL", base + "/")  # what the examples' files read
        env.setenv("BANK_APP_SECRET", SECRET)
        closing = stack.enter_context(ExitStack())  # before the servers stop
        yield World(idp, urls, asgi, wsgi, directory, closing)


@pytest.fixture
def context(browser: object) -> Iterator[Any]:
    """A browser context of the test's own (its own cookies), reaching 127.0.0.1 only."""
    opened = local_context(browser)
    try:
        yield opened
    finally:
        opened.close()


def signed_in(context: Any, app: str, path: str, login: str) -> tuple[Any, int]:
    """A page of ``login`` signed in at ``app + path``, and the status that path answered."""
    page = context.new_page()
    page.goto(app + path)
    with page.expect_response(app + path) as landed:
        sign_in(page, login)
    page.wait_for_url(app + path)
    return page, landed.value.status


def visit(page: Any, url: str) -> int:
    answer = page.goto(url)
    assert answer is not None
    return int(answer.status)


def fetch(page: Any, method: str, path: str) -> tuple[int, Any]:
    """``fetch(path, {method})`` from the page (same origin: the session cookie goes along),
    asking for JSON; the status and the parsed answer."""
    status, body = page.evaluate(
        """async ([method, path]) => {
            const answer = await fetch(path, {method, headers: {Accept: 'application/json'}});
            return [answer.status, await answer.text()];
        }""",
        [method, path],
    )
    return int(status), json.loads(body)


def lines_since(idp: IdentityServer, before: str) -> list[dict[str, Any]]:
    """The server's JSON log lines written since ``before`` (an earlier ``settled_logs()``)."""
    found = []
    for line in idp.settled_logs()[len(before) :].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            found.append(event)
    return found


def grants(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The UMA grants the server answered, in order."""
    return [event for event in events if event.get("event") == "uma.grant"]


def without_deny_page(block: dict[str, Any]) -> None:
    del block["on-deny-redirect-to"]  # denied: the 403 page (or JSON), no redirect


EXAMPLE_APPS = pytest.mark.parametrize("example", ["starlette", "flask"])


@EXAMPLE_APPS
def test_alice_passes_where_her_grants_allow_and_gets_403_where_not(
    world: World, context: Any, example: str
) -> None:
    app = world.serve(example, world.variant("enforcing", without_deny_page))
    page, status = signed_in(context, app, "/account/1", "alice")
    assert status == 200
    assert json.loads(page.inner_text("body")) == {"account": "1", "viewed": True, "by": "alice"}
    assert fetch(page, "DELETE", "/account/1") == (
        200,
        {"account": "1", "deleted": True, "by": "alice"},
    )
    assert visit(page, f"{app}/api/whoami") == 200, "the API: viewing granted"
    assert json.loads(page.inner_text("body"))["sub"] == "alice"
    assert visit(page, f"{app}/profile") == 200, "a DISABLED path"
    assert page.inner_text("h1") == "Your profile"

    assert fetch(page, "POST", "/api/whoami") == (
        403,
        {"error": "forbidden", "missing": [f"/api/*#{CREATE}"], "kind": "permission"},
    ), "creating in the API: not granted"
    assert visit(page, f"{app}/admin") == 403, "no resource for /admin: ENFORCING denies"
    assert page.inner_text("h1") == "Not allowed"
    assert "a resource for this path" in page.inner_text("body")


@EXAMPLE_APPS
def test_bob_may_view_an_account_but_not_delete_it(
    world: World, context: Any, example: str
) -> None:
    app = world.serve(example, world.variant("enforcing", without_deny_page))
    page, status = signed_in(context, app, "/account/7", "bob")
    assert status == 200
    assert json.loads(page.inner_text("body")) == {"account": "7", "viewed": True, "by": "bob"}
    assert fetch(page, "DELETE", "/account/7") == (
        403,
        {"error": "forbidden", "missing": ["Bank Account#delete"], "kind": "permission"},
    )
    assert fetch(page, "GET", "/account/7")[0] == 200, "viewing still passes"
    assert visit(page, f"{app}/api/whoami") == 403, "no grant on the API"
    assert page.inner_text("h1") == "Not allowed"
    assert f"/api/*#{VIEW}" in page.inner_text("body")


@EXAMPLE_APPS
def test_an_unknown_path_passes_under_permissive(world: World, context: Any, example: str) -> None:
    def permissive(block: dict[str, Any]) -> None:
        without_deny_page(block)
        block["enforcement-mode"] = "PERMISSIVE"

    app = world.serve(example, world.variant("permissive", permissive))
    page, status = signed_in(context, app, "/admin", "alice")
    assert status == 200, "no resource for /admin: PERMISSIVE lets it pass"
    assert page.inner_text("#admin-area") == "alice"
    assert fetch(page, "POST", "/api/whoami")[0] == 403, "a configured path is still enforced"


@EXAMPLE_APPS
def test_a_denied_page_redirects_to_on_deny_redirect_to(
    world: World, context: Any, example: str
) -> None:
    app = world.serve(example, EXAMPLES / "keycloak.json")  # as written
    page, status = signed_in(context, app, "/account/3", "bob")
    assert status == 200
    with page.expect_response(f"{app}/api/whoami") as denied:
        page.goto(f"{app}/api/whoami")
    assert denied.value.status == 302
    assert page.url == f"{app}/access-denied", "Chromium followed the redirect"
    assert page.inner_text("h1") == "Access denied"
    assert page.inner_text("#denied") == "You may not do that."


@EXAMPLE_APPS
def test_lazy_loaded_paths_are_looked_up_once_per_path_cache_lifespan(
    world: World, browser: object, context: Any, example: str
) -> None:
    def lazy(block: dict[str, Any]) -> None:
        block["lazy-load-paths"] = True
        block["path-cache"] = {"max-entries": 100, "lifespan": 600000}  # ten minutes

    app = world.serve(example, world.variant("lazy", lazy))
    before = world.idp.settled_logs()
    page, status = signed_in(context, app, "/admin", "alice")
    assert status == 200, "/admin: no configured path, the server's resource Admin"
    assert page.inner_text("#admin-area") == "alice"
    for _ in range(3):
        assert visit(page, f"{app}/admin") == 200
    others = local_context(browser)  # bob: the path is known, his grant is asked
    try:
        bob, _ = signed_in(others, app, "/account/1", "bob")
        with bob.expect_response(f"{app}/admin") as denied:
            bob.goto(f"{app}/admin")
        assert denied.value.status == 302, "bob has no grant on Admin: to the deny page"
        assert bob.url == f"{app}/access-denied"
    finally:
        others.close()

    events = lines_since(world.idp, before)
    lookups = [
        event
        for event in events
        if event.get("event") == "uma.protection"
        and event.get("action") == "resource_set.list"
        and event.get("uri") == "/admin"
    ]
    assert len(lookups) == 1, lookups
    assert lookups[0]["matching_uri"] is True, "found by matchingUri (lazy loading)"
    assert lookups[0]["count"] == 1
    admin = [resource_id("Admin")]
    asked = [(e["sub"], e["outcome"]) for e in grants(events) if e["permissions"] == admin]
    assert asked == [("alice", "granted"), ("bob", "denied")], "alice's grant remembered"


@EXAMPLE_APPS
def test_http_method_as_scope(world: World, context: Any, example: str) -> None:
    app = world.serve(example, EXAMPLES / "keycloak-method-as-scope.json")  # as written
    before = world.idp.settled_logs()
    page, status = signed_in(context, app, "/account/5", "alice")
    assert status == 200, "GET: alice has the scope GET"
    assert json.loads(page.inner_text("body"))["viewed"] is True
    assert fetch(page, "POST", "/account/5") == (
        403,
        {"error": "forbidden", "missing": ["Account Operations#POST"], "kind": "permission"},
    )
    operations = resource_id("Account Operations")
    asked = [(e["permissions"], e["outcome"]) for e in grants(lines_since(world.idp, before))]
    assert asked == [
        ([f"{operations}#GET"], "granted"),
        ([f"{operations}#POST"], "denied"),
    ], "the request's method asked as the scope"
